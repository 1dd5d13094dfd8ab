/* Latest: the newest value of something in one segment (layout.h, ms_latest).
 *
 * One writer at a time (serialised by a robust lock) publishes whole values into the
 * next of a few buffers; readers copy the current one and validate it with its sequence
 * word, so they never write shared memory, never wait for the writer and never see a
 * torn value.  See docs/design/layout.md, "Latest", for the protocol. */
#ifndef MS_LATEST_H
#define MS_LATEST_H

#include "sync.h"
#include "channel.h"  /* ms_alloc_fn */

/* The argument of ms_latest_init (through ms_segment_create). */
typedef struct ms_latest_params {
    uint64_t max_size;         /* 0 .. MS_LATEST_SIZE_MAX */
    uint32_t buffers;          /* 2 .. MS_LATEST_BUFFERS_MAX */
} ms_latest_params;

/* The user area a slot of these parameters needs (0 if they are invalid). */
uint64_t ms_latest_area_size(uint64_t max_size, uint32_t buffers);

typedef struct ms_latest_handle {
    ms_segment *seg;
    ms_latest *lt;
    uint8_t *bufs;           /* buffer 0 */
    uint64_t max_size;       /* validated copies of line 0 */
    uint64_t stride;
    uint32_t buffers;
    volatile int abort_waits;  /* set by ms_latest_abort_waits: this handle's waits end */
    uint32_t idle_wakes;     /* wake-ups in a row that woke nobody (writer side) */
} ms_latest_handle;

/* After this many wake-ups in a row that found nobody asleep although `waiters` said
 * someone was, a writer looks for sleepers that died in their sleep (reap_sleepers). */
#define MS_LATEST_REPAIR_AFTER 32u

/* A view: where the value of `version` is, and the sequence word that validates it. */
typedef struct ms_latest_view {
    const uint8_t *ptr;
    uint64_t offset;         /* of ptr in the user area */
    uint64_t length;
    uint64_t version;
    uint64_t seq;
    uint32_t buffer;
    uint32_t kind;
} ms_latest_view;

/* How long a reader keeps retrying while the writer replaces the value faster than it
 * can copy it, before giving up with MS_E_TIMEOUT. */
#define MS_LATEST_READ_BUDGET_NS 1000000000LL

ms_status ms_latest_init(ms_header *h, void *arg, int *err);
ms_status ms_latest_bind(ms_latest_handle *l, ms_segment *seg);

/* Publish n bytes of kind `kind` (MS_REC_KIND_*) as the next version (*version).  Waits
 * per `o` for another writer only: MS_E_TIMEOUT.  MS_E_TOO_LARGE beyond max_size. */
ms_status ms_latest_write(ms_latest_handle *l, const void *data, size_t n, uint32_t kind,
                          const ms_wait_opts *o, uint64_t *version);
/* Copy the newest complete value into alloc(arg, length) (NULL: MS_E_INVALID);
 * alloc may be called again with another length if the value changed meanwhile.
 * MS_E_LAYOUT on an inconsistent header, MS_E_TIMEOUT when no complete copy could be
 * made within MS_LATEST_READ_BUDGET_NS (the value changing continuously). */
ms_status ms_latest_read(ms_latest_handle *l, ms_alloc_fn alloc, void *arg,
                         uint64_t *version, uint32_t *kind);
/* Locate the newest complete value without copying; ms_latest_check says whether it is
 * still intact (MS_OK) or was replaced since (MS_E_OVERWRITTEN). */
ms_status ms_latest_peek(ms_latest_handle *l, ms_latest_view *v);
ms_status ms_latest_check(ms_latest_handle *l, const ms_latest_view *v);
/* Copy bytes [offset, offset + n) of the value v (from ms_latest_peek) to dst: MS_OK if
 * v was still intact after the copy (dst then holds its bytes), MS_E_OVERWRITTEN if it
 * was replaced before or during it (dst holds garbage: peek again).  n == 0 only checks.
 * MS_E_INVALID for a range beyond max_size. */
ms_status ms_latest_copy(ms_latest_handle *l, const ms_latest_view *v, uint64_t offset,
                         void *dst, size_t n);
/* The newest version (one load). */
uint64_t ms_latest_version(ms_latest_handle *l);
/* Wait until the version is > since; *now = the version seen. */
ms_status ms_latest_wait(ms_latest_handle *l, uint64_t since, const ms_wait_opts *o,
                         uint64_t *now);
/* Give back the sleepers of dead processes from the slot's waiter count (what a writer
 * does after MS_LATEST_REPAIR_AFTER idle wake-ups); returns how many it gave back. */
uint32_t ms_latest_reap_sleepers(ms_latest_handle *l);
/* Make every wait of this handle return now (MS_OK, whatever the version): a handle
 * being closed ends the waits that a cancelled asyncio call left in worker threads.
 * Wakes every sleeper of the slot's word (others just look again). */
void ms_latest_abort_waits(ms_latest_handle *l);
/* For ms_wait_any: ready once the version is > a->since (or *a->abort is set). */
typedef struct ms_latest_waitarg {
    ms_latest *lt;
    uint64_t since;
    volatile int *abort;   /* NULL: not abortable */
    ms_latest_handle *l;   /* ms_latest_waitable_listed: whose sleeper entry ... */
    ms_latest_sleeper *sleeper;  /* ... this is (NULL: none, sleeps unlisted) */
} ms_latest_waitarg;
void ms_latest_waitable(ms_latest_handle *l, ms_latest_waitarg *a, uint64_t since,
                        ms_waitable *w);
/* ms_latest_waitable, also claiming a sleeper entry as the waiter's mark (so that a
 * multi-object waiter killed asleep is repaired like wait_for_update's); the caller
 * must call ms_latest_waitable_done(a) once the wait is over. */
void ms_latest_waitable_listed(ms_latest_handle *l, ms_latest_waitarg *a, uint64_t since,
                               ms_waitable *w);
void ms_latest_waitable_done(ms_latest_waitarg *a);

typedef struct ms_latest_stats {
    uint64_t version, max_size, length, writer_deaths;
    uint32_t buffers, waiters, kind, reserved;
} ms_latest_stats;
ms_status ms_latest_statistics(ms_latest_handle *l, ms_latest_stats *st);

#endif
