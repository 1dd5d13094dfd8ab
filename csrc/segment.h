/* Segments: create, open, validate, attach and detach the objects of layout.h. */
#ifndef MS_SEGMENT_H
#define MS_SEGMENT_H

#include "layout.h"
#include "platform/platform.h"

typedef struct ms_segment {
    ms_object obj;
    ms_waitctx *ctx;
    ms_header *hdr;         /* the header page and attach table, shared; NULL if raw */
    size_t hdr_len;         /* == data_offset */
    ms_attach *table;       /* the attach table inside the header mapping */
    uint32_t slots;         /* its entries (validated) */
    uint32_t slot;          /* this handle's entry: a hint, checked against the pid */
    uint64_t data_offset;   /* validated */
    int hdr_writable;
    void *map;              /* the mapping that contains the user area (NULL if size 0) */
    size_t map_len;
    uint8_t *data;          /* start of the user area inside map */
    /* validated copies of header fields: never re-read from shared memory */
    uint64_t size;
    uint64_t total;
    uint32_t kind;
    uint32_t lifetime;
    uint32_t flags;
    int access;
    int raw;
    int attached;           /* counted as attached: an opener (platform lock), and... */
    int in_table;           /* ...registered in the attach table (writable header) */
    int no_opener_lock;     /* forked child without a description of its own: the
                             * inherited opener lock is the parent's, never ours to drop */
    volatile int faulted;   /* a SIGBUS was caught: the mappings are quarantined */
} ms_segment;

/* Initialise the kind area before publication (may be NULL). */
typedef ms_status (*ms_kind_init_fn)(ms_header *hdr, void *arg, int *err);

ms_status ms_segment_create(ms_segment *seg, const char *osname, const char *path,
                            const char *name, uint32_t kind, uint64_t size,
                            unsigned mode, uint32_t lifetime, unsigned flags,
                            ms_kind_init_fn init, void *init_arg, int *err);

/* Open and validate (does not attach).  expected_kind 0 accepts any kind.
 * raw: map the whole object as the user area, no header. */
ms_status ms_segment_open(ms_segment *seg, const char *osname, const char *path,
                          uint32_t expected_kind, int access, int raw,
                          unsigned flags, int *err);

/* Validate the published header against the mapping; fills seg's local copies. */
ms_status ms_segment_validate(ms_segment *seg, const ms_object_stat *st);

/* Count this handle as attached, whatever its access: every attacher takes the object's
 * opener count (ms_p_object_share); one with a writable header also registers its
 * process in the attach table (pid, start, handle count), reaping dead entries only when
 * the table is full.  MS_E_ATTACH_LIMIT: attach_slots live processes already attached.
 * MS_E_DESTROYED: the object was destroyed meanwhile. */
ms_status ms_segment_attach(ms_segment *seg, int *err);

/* Detach this handle; *last = 1 when the lifetime is shared and no other user remains
 * (no live process in the attach table, no other opener): the state is then DESTROYED
 * (if the header is writable) and the caller removes the name. */
ms_status ms_segment_detach(ms_segment *seg, int *last, int *err);

/* THE liveness check for whoever removes a name it does not use itself (gc, collect,
 * create over an abandoned name): sweep dead entries from the attach table; *empty = 1
 * when the lifetime is shared, no live process is in the table and no other handle
 * counts as an opener (read-only openers included).  The state is then DESTROYED and
 * this handle holds the object exclusively until it is closed, so nobody can attach
 * while the caller removes the name.  Call it from a handle that is not attached
 * (open without ms_segment_attach); it needs a writable header. */
ms_status ms_segment_reap(ms_segment *seg, int *removed, int *empty, int *err);

/* In a forked child, for a handle the parent had attached: count it for the child
 * (its own opener count, and its pid in the table if the header is writable). */
ms_status ms_segment_after_fork(ms_segment *seg, int *err);

/* Mark DESTROYED (explicit unlink). */
ms_status ms_segment_mark_destroyed(ms_segment *seg, int *err);

/* Unmap and close; does not detach. */
void ms_segment_close(ms_segment *seg);

/* Called after MS_E_FAULT: quarantine the mappings. */
void ms_segment_fault(ms_segment *seg);

/* Map [offset, offset+length) of the user area with `access` as a separate view.
 * base and base_len: what to unmap later; ptr: the first requested byte. */
ms_status ms_segment_map_range(ms_segment *seg, uint64_t offset, uint64_t length,
                               int access, void **base, size_t *base_len, uint8_t **ptr,
                               int *err);

/* Results of ms_segment_reclaim */
#define MS_RECLAIM_KEPT       0   /* in use, persistent, or not ours to judge */
#define MS_RECLAIM_REMOVED    1   /* the name was removed: it can be created again */
#define MS_RECLAIM_ABSENT     2   /* the name is gone already (or names another object) */
#define MS_RECLAIM_UNFINISHED 3   /* header never published, creator not known dead */

/* Remove the name osname if it names an object nobody can use any more: one marked
 * DESTROYED, a 'shared' one whose attached processes all died (judged by the attach
 * table's liveness rule under the object's meta lock, which also marks it DESTROYED so a
 * racing opener fails), or one whose creator died before publishing the header
 * (unfinished_ok: also when the creator is unknown -- the caller judged it by age).
 * Persistent objects are data and are never reclaimed.  Only that very object's name is
 * removed, never one re-created since. */
ms_status ms_segment_reclaim(const char *osname, unsigned flags, int unfinished_ok,
                             int *result, int *err);

/* Remove osname if it still names seg's object, under seg's meta lock (so it cannot race
 * with a reclaimer that already replaced the name). */
ms_status ms_segment_remove_name(ms_segment *seg, const char *osname, unsigned flags,
                                 int *removed, int *err);

uint64_t ms_round_up(uint64_t v, uint64_t to);

#endif
