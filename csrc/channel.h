/* Channels: a bounded MPMC queue of variable-size messages in one segment.
 *
 * Senders are serialised by send_lock and move only the tail; receivers are serialised
 * by recv_lock and move only the head; so a sender and a receiver never contend, and a
 * single sender with a single receiver is a plain SPSC ring.  See layout.h for the
 * record format and the crash-safety argument. */
#ifndef MS_CHANNEL_H
#define MS_CHANNEL_H

#include "sync.h"

typedef struct ms_channel {
    ms_segment *seg;
    ms_ring *ring;
    uint8_t *buf;          /* ring bytes (the segment's user area) */
    uint64_t cap;          /* validated copies */
    uint64_t max_message;
    int sender_registered;
    int receiver_registered;
    int loan_open;         /* this handle holds send_lock for a loan */
    int view_open;         /* this handle holds recv_lock for a view */
    uint64_t loan_pos;     /* tail position of the loaned record */
    uint64_t loan_size;    /* payload bytes reserved */
    uint64_t view_next;    /* head after the viewed record */
    /* Process-local hints that spare a cache miss per message: head and tail only grow,
     * so an old value is a safe lower bound, refreshed only when it says "no room" or
     * "nothing there". */
    uint64_t cached_head;  /* sender side */
    uint64_t cached_tail;  /* receiver side */
    int send_slot;         /* our entry in the ring's senders / receivers tables */
    int recv_slot;
    unsigned idle_wakes_s; /* consecutive wake-ups that found nobody (see channel.c) */
    unsigned idle_wakes_r;
    uint32_t loan_kind;    /* MS_REC_KIND_* the open loan is published with */
    uint32_t view_kind;    /* MS_REC_KIND_* of the viewed record */
    /* Broken-peer edge: ring->sender_deaths and ->abandoned as of this handle's last
     * report; MS_E_BROKEN fills the broken_* fields with what it reports. */
    uint64_t seen_deaths;
    uint64_t seen_abandoned;
    uint64_t broken_deaths;
    uint64_t broken_abandoned;
    uint32_t broken_pid;
    int hot_skip;          /* the receiver did not keep up this lap (see hot_window_wait) */
    unsigned hot_misses;
    volatile int abort_waits; /* set by ms_channel_abort_waits(): wait_readable/writable return */
    /* A broken edge (MS_E_BROKEN, broken_* filled) that a multi-object wait found and
     * reported as "ready": the next receiving call on this handle reports it, even one
     * that does not wait (else a wait loop would find it ready again and again). */
    int broken_held;
} ms_channel;

ms_status ms_ring_init(ms_header *h, void *arg, int *err);
ms_status ms_channel_bind(ms_channel *ch, ms_segment *seg);
uint64_t ms_channel_max_message(uint64_t capacity);

ms_status ms_channel_send(ms_channel *ch, const void *data, size_t n, const ms_wait_opts *o);

/* Zero-copy send: reserve n payload bytes (holding send_lock), write them at *ptr, then
 * commit (publish `used` <= n bytes, with kind ch->loan_kind, which the loan sets to
 * MS_REC_KIND_BYTES and the caller may change before committing) or abort.
 * The loan and view calls are per handle: a second loan (view) on a handle that has
 * one open is the caller's to prevent (the same thread would deadlock on the lock it
 * holds; another thread simply waits for it). */
ms_status ms_channel_loan(ms_channel *ch, size_t n, uint8_t **ptr, const ms_wait_opts *o);
ms_status ms_channel_commit(ms_channel *ch, size_t used);
ms_status ms_channel_abort(ms_channel *ch);

/* Receive: wait for a message and hold recv_lock with ptr and len pointing at it inside
 * the ring (its kind in ch->view_kind); ms_channel_consume() releases it and moves the
 * head past it, ms_channel_unconsume() releases it and leaves it queued.
 *
 * Broken peers (every receiving call that would wait): MS_E_BROKEN is an edge, not a
 * level.  It is returned when the channel is empty, no registered sender is alive, and
 * senders died without closing (SIGKILL, os._exit) since this handle last reported it;
 * it is reported once (ch->broken_* say how many died, the last pid, the loans they
 * abandoned), after which the handle waits normally. */
ms_status ms_channel_peek(ms_channel *ch, const uint8_t **ptr, size_t *len,
                          const ms_wait_opts *o);
ms_status ms_channel_consume(ms_channel *ch);
ms_status ms_channel_unconsume(ms_channel *ch);

/* Copy-out receive in one call: calls alloc(arg, len) to get a destination (NULL: give
 * up with MS_E_INVALID, message stays queued), copies, consumes. */
typedef uint8_t *(*ms_alloc_fn)(void *arg, size_t len);
ms_status ms_channel_receive(ms_channel *ch, ms_alloc_fn alloc, void *arg,
                             const ms_wait_opts *o);

/* Batches: one lock and one wake-up for many messages.
 * receive_batch waits (per `o`) for at least one message, then takes up to `max`
 * without waiting more; alloc(arg, len) gives each destination.  *count = received.
 * send_batch sends get(arg, i) for i in [0, n) in order, waiting while full; *count =
 * how many were sent (all of them unless an error is returned). */
ms_status ms_channel_receive_batch(ms_channel *ch, ms_alloc_fn alloc, void *arg, size_t max,
                                   size_t *count, const ms_wait_opts *o);
typedef int (*ms_get_fn)(void *arg, size_t i, const uint8_t **ptr, size_t *len);
ms_status ms_channel_send_batch(ms_channel *ch, ms_get_fn get, void *arg, size_t n,
                                size_t *count, const ms_wait_opts *o);

/* Wait, without taking anything, until a message (or the end) is there, or until
 * `need` bytes are free: for callers that must not consume on another thread. */
ms_status ms_channel_wait_readable(ms_channel *ch, const ms_wait_opts *o);
ms_status ms_channel_wait_writable(ms_channel *ch, size_t n, const ms_wait_opts *o);

/* A multi-object wait (ms_wait_any) on this handle receiving: ready when a message is
 * there, the channel is closed (EndOfChannel) or a broken edge is pending (looked for
 * before the first sleep and then at most every half slice: it costs system calls),
 * which is then held for the next receiving call (see broken_held); or once
 * ms_channel_abort_waits() was called.  *a is the caller's storage for the predicate's
 * argument.  Registers this process as a receiver (as a blocking receive does), so that
 * a waiter killed in its sleep is subtracted from the waiter count. */
typedef struct ms_channel_waitarg { ms_channel *ch; uint64_t next_check; } ms_channel_waitarg;
void ms_channel_waitable(ms_channel *ch, ms_channel_waitarg *a, ms_waitable *w);

ms_status ms_channel_close_sending(ms_channel *ch);
/* Make this handle's ms_channel_wait_readable/_writable calls return at once (MS_OK),
 * now and from now on: for closing a handle that an abandoned waiter still uses. */
void ms_channel_abort_waits(ms_channel *ch);
void ms_channel_detach(ms_channel *ch);

typedef struct ms_channel_stats {
    uint64_t capacity, max_message, queued_bytes, queued_messages_estimate;
    uint64_t sent_messages, sent_bytes, received_messages, received_bytes;
    uint64_t high_water, redelivered, abandoned;
    uint64_t sender_deaths;
    uint32_t senders_alive, receivers_alive, send_waiters, recv_waiters;
    int closed;
} ms_channel_stats;
void ms_channel_statistics(ms_channel *ch, ms_channel_stats *st);

#endif
