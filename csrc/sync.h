/* Waiting, waking and the synchronization objects: lock, event, semaphore and change
 * notification.  Spin briefly, then sleep on a futex-style word; waiter counts keep
 * the uncontended path free of system calls. */
#ifndef MS_SYNC_H
#define MS_SYNC_H

#include "segment.h"

typedef struct ms_wait_opts {
    int64_t timeout_ns;             /* -1: no limit; 0: do not wait */
    int64_t spin_ns;                /* busy-wait this long before sleeping */
    /* Called when a sleep was interrupted by a signal or a slice ended; returns
     * nonzero when the caller must give up (e.g. a Python exception is pending). */
    int (*interrupted)(void *arg);
    void *arg;
    /* Channel fast path: do not wait for a busy send/receive lock either; report
     * MS_E_RETRY_NO_GIL so the caller can retry without holding what it holds (the GIL). */
    int try_only;
    /* If set: the caller's own peer-table entry count word; while asleep, the waiter
     * adds MS_SLEEPER to it, so that a waiter that dies in its sleep can be subtracted
     * from the shared waiter count by whoever finds it dead (see channel.c). */
    volatile uint32_t *mark;
} ms_wait_opts;

#define MS_SLEEPER 0x10000u   /* attach-entry count: low 16 bits handles, high sleepers */

/* How long a non-blocking channel call (timeout 0) may wait for a lock held by another
 * sender or receiver that is in the middle of its own, short, operation. */
#define MS_LOCK_NOWAIT_NS 50000000LL

/* Longest single sleep: bounds how late a periodic check (signals on a non-main
 * thread, dead peers) can run. */
#define MS_SLICE_NS 100000000LL

typedef int (*ms_pred_fn)(void *arg);

/* Busy-wait up to spin_ns for pred(arg), yielding the CPU now and then; 1 if it came. */
int ms_spin_until(ms_pred_fn pred, void *arg, int64_t spin_ns);

/* Wait until pred(parg) is true.  `word` changes whenever pred may have become true;
 * wakers change it and call ms_p_wake32 when *waiters != 0. */
ms_status ms_wait_for(ms_segment *seg, unsigned slot, volatile uint32_t *word,
                      volatile uint32_t *waiters, ms_pred_fn pred, void *parg,
                      const ms_wait_opts *o);

/* One object of a multi-object wait (ms_wait_any).  The owner of each kind fills it:
 * `ready` is that kind's predicate, `word`/`waiters` the same futex word and waiter count
 * its single-object wait uses, so the kind's existing wakers wake a multi-object waiter
 * too. */
typedef struct ms_waitable {
    ms_segment *seg;             /* whose wait context the word belongs to */
    unsigned slot;               /* the word's wait slot (Windows named events) */
    volatile uint32_t *word;     /* changes whenever `ready` may have become true */
    volatile uint32_t *waiters;  /* the count wakers check before a system call */
    ms_pred_fn ready; void *arg; /* 1 when the object is ready now */
    /* Optional (NULL): like ms_wait_opts.mark, the waiter's own peer-table count word
     * for this object, raised by MS_SLEEPER while asleep so that a waiter that dies in
     * its sleep can be subtracted from *waiters by whoever finds it dead.  Added after
     * the spec's six fields; callers zero the struct before a filler fills it. */
    volatile uint32_t *mark;
} ms_waitable;

/* Wait until at least one is ready; ready[i] = 1 for each ready one. */
ms_status ms_wait_any(ms_waitable *items, size_t n, const ms_wait_opts *o, uint8_t *ready);
/* More precisely: MS_OK with ready[] filled (a snapshot: another process may take what
 * was ready before the caller gets to it), MS_E_TIMEOUT (ready[] all 0), MS_E_INTERRUPTED
 * (o->interrupted said stop), MS_E_FAULT (an item's segment faulted), MS_E_INVALID
 * (n == 0), MS_E_NO_SPACE.  Every `ready` must be free of effects that matter (it runs
 * many times, for items the caller will not act on): ms_semaphore_waitable's looks for a
 * unit, it does not take one.  It spins first (o->spin_ns), then sleeps on every word at
 * once (ms_p_wait32_many) in slices of at most MS_SLICE_NS, calling o->interrupted
 * between them; where the platform cannot (ms_p_wait_many_max() < n), or after
 * ms_wait_any_polling(1), it polls (see sync.c). */

/* Tests: force = 1 makes every ms_wait_any poll, 0 lets it use the platform's
 * multi-word sleep where there is one, -1 only asks.  Returns the setting now. */
int ms_wait_any_polling(int force);

/* Wake everyone waiting on word if anyone is: bumps word first.  Returns -2 when the
 * waiter count was 0 (no system call), else what ms_p_wake32 returned. */
int ms_wake_waiters(ms_segment *seg, unsigned slot, volatile uint32_t *word,
                    volatile uint32_t *waiters);
/* The same, for a caller whose change was a sequentially consistent store
 * (ms_store_sc64): no extra fence needed. */
int ms_wake_waiters_sc(ms_segment *seg, unsigned slot, volatile uint32_t *word,
                       volatile uint32_t *waiters);

/* Locks (area is inside seg's header). */
ms_status ms_lock_acquire(ms_segment *seg, unsigned slot, void *area, const ms_wait_opts *o,
                          int *err);
ms_status ms_lock_release(ms_segment *seg, unsigned slot, void *area, int *err);

/* Change notification. */
uint32_t ms_change_count(ms_segment *seg);
/* A wait on the change counter moving away from `since`; *c is the caller's storage for
 * the predicate's argument (it must outlive the wait). */
typedef struct ms_change_since { ms_header *h; uint32_t since; } ms_change_since;
void ms_change_waitable(ms_segment *seg, ms_change_since *c, uint32_t since, ms_waitable *w);
void ms_change_notify(ms_segment *seg);
ms_status ms_change_wait(ms_segment *seg, uint32_t since, const ms_wait_opts *o,
                         uint32_t *now);

/* Event: `e` is either the kind area of an MS_KIND_EVENT segment or 8 bytes at an
 * 8-aligned offset of a segment's user area; `slot` its wait key. */
ms_status ms_event_init(ms_header *h, void *arg, int *err);
void ms_event_init_at(ms_event *e, uint32_t state);
void ms_event_set(ms_segment *seg, unsigned slot, ms_event *e);
void ms_event_clear(ms_event *e);
int ms_event_is_set(ms_event *e);
ms_status ms_event_wait(ms_segment *seg, unsigned slot, ms_event *e, const ms_wait_opts *o);
/* Ready while set. */
void ms_event_waitable(ms_segment *seg, unsigned slot, ms_event *e, ms_waitable *w);

/* Semaphore, placed like an event (16 bytes).  arg of init: uint32_t[2] {value, maximum}. */
ms_status ms_semaphore_init(ms_header *h, void *arg, int *err);
ms_status ms_semaphore_init_at(ms_semaphore *s, uint32_t value, uint32_t maximum);
ms_status ms_semaphore_acquire(ms_segment *seg, unsigned slot, ms_semaphore *s,
                               const ms_wait_opts *o);
ms_status ms_semaphore_release(ms_segment *seg, unsigned slot, ms_semaphore *s, uint32_t n);
/* Wait until a unit is available, without taking it (for asyncio: the unit is then
 * taken on the event loop's thread). */
ms_status ms_semaphore_wait_available(ms_segment *seg, unsigned slot, ms_semaphore *s,
                                      const ms_wait_opts *o);
/* Ready while a unit is available (it is not taken). */
void ms_semaphore_waitable(ms_segment *seg, unsigned slot, ms_semaphore *s, ms_waitable *w);

#endif
