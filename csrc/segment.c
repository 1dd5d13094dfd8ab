/* Segments: the life cycle of one named object.
 *
 * Every value read from the header is copied once into a local and checked against
 * the real size of the mapping before it is used (see layout.h).
 */
#include "segment.h"
#include "atomics.h"

#include <stdio.h>
#include <string.h>

uint64_t ms_round_up(uint64_t v, uint64_t to)
{
    return (v + to - 1) / to * to;
}

static ms_status map_header(ms_segment *seg, int writable, int *err)
{
    void *p;
    ms_status st = ms_p_map(&seg->obj, 0, MS_HEADER_SIZE,
                            writable ? MS_ACCESS_WRITE : MS_ACCESS_READ, &p, err);
    if (st != MS_OK)
        return st;
    seg->hdr = (ms_header *)p;
    seg->hdr_len = MS_HEADER_SIZE;
    seg->hdr_writable = writable;
    ms_p_map_watch(p, MS_HEADER_SIZE, &seg->faulted);
    return MS_OK;
}

static ms_status map_data(ms_segment *seg, uint64_t data_offset, int *err)
{
    if (seg->size == 0)
        return MS_OK;
    uint64_t gran = ms_p_granularity();
    uint64_t start = data_offset / gran * gran;
    uint64_t end = ms_round_up(data_offset + seg->size, ms_p_page_size());
    void *p;
    if (end - start > (uint64_t)SIZE_MAX)
        return MS_E_NO_SPACE;
    ms_status st = ms_p_map(&seg->obj, start, (size_t)(end - start), seg->access, &p, err);
    if (st != MS_OK)
        return st;
    seg->map = p;
    seg->map_len = (size_t)(end - start);
    seg->data = (uint8_t *)p + (data_offset - start);
    ms_p_map_watch(p, seg->map_len, &seg->faulted);
    return MS_OK;
}

ms_status ms_segment_create(ms_segment *seg, const char *osname, const char *path,
                            const char *name, uint32_t kind, uint64_t size,
                            unsigned mode, uint32_t lifetime, unsigned flags,
                            ms_kind_init_fn init, void *init_arg, int *err)
{
    ms_status st;
    size_t name_len = strlen(name);
    memset(seg, 0, sizeof *seg);
    seg->obj.handle = MS_NO_HANDLE;
    if (name_len > MS_NAME_MAX || kind == 0 || kind > MS_KIND_MAX)
        return MS_E_INVALID;
    if (size > UINT64_MAX / 2)
        return MS_E_NO_SPACE;
    uint64_t total = MS_HEADER_SIZE + ms_round_up(size, ms_p_page_size());
    st = ms_p_object_create(osname, path, total, mode, flags, &seg->obj, err);
    if (st != MS_OK)
        return st;
    st = ms_p_waitctx_open(osname, flags, &seg->ctx, err);
    if (st == MS_OK)
        st = map_header(seg, 1, err);
    if (st != MS_OK)
        goto fail;

    ms_header *h = seg->hdr;
    /* Fresh storage reads as zero; magic stays 0 until everything else is written. */
    h->version = MS_LAYOUT_VERSION;
    h->kind = kind;
    h->header_size = MS_HEADER_SIZE;
    h->lifetime = lifetime;
    h->size = size;
    h->data_offset = MS_HEADER_SIZE;
    h->total_size = total;
    h->creator_pid = ms_p_pid();
    h->creator_uid = ms_p_uid();
    h->creator_start = ms_p_process_start(h->creator_pid);
    h->created_ns = ms_p_realtime_ns();
    h->state = MS_STATE_READY;
    h->flags = path ? MS_FLAG_FILE_BACKED : 0;
    h->name_len = (uint32_t)name_len;
    h->mode = mode;
    memcpy(h->name, name, name_len);
    if ((st = ms_p_lock_init(h->meta_lock, err)) != MS_OK ||
        (st = ms_p_lock_init(h->user_lock, err)) != MS_OK)
        goto fail;
    h->attach[0].pid = h->creator_pid;
    h->attach[0].count = 1;
    h->attach[0].start = h->creator_start;
    if (init && (st = init(h, init_arg, err)) != MS_OK)
        goto fail;
    ms_store64(&h->magic, MS_MAGIC);

    seg->size = size;
    seg->total = total;
    seg->kind = kind;
    seg->lifetime = lifetime;
    seg->flags = h->flags;
    seg->access = MS_ACCESS_WRITE;
    seg->attached = 1;
    if ((st = map_data(seg, MS_HEADER_SIZE, err)) != MS_OK)
        goto fail;
    return MS_OK;

fail:
    ms_segment_close(seg);
    if (path)
        remove(path);  /* the platform layer created the file; take it away again */
    else
        ms_p_object_unlink(osname, flags, NULL);
    return st;
}

ms_status ms_segment_validate(ms_segment *seg, const ms_object_stat *st)
{
    const ms_header *h = seg->hdr;
    uint64_t magic = ms_load64(&h->magic);
    if (magic == 0)
        return MS_E_INITIALIZING;
    if (magic != MS_MAGIC)
        return MS_E_LAYOUT;
    uint32_t version = ms_load_relaxed32(&h->version);
    uint32_t kind = ms_load_relaxed32(&h->kind);
    uint32_t header_size = ms_load_relaxed32(&h->header_size);
    uint32_t lifetime = ms_load_relaxed32(&h->lifetime);
    uint32_t flags = ms_load_relaxed32(&h->flags);
    uint32_t name_len = ms_load_relaxed32(&h->name_len);
    uint64_t size = ms_load_relaxed64(&h->size);
    uint64_t data_offset = ms_load_relaxed64(&h->data_offset);
    uint64_t total = ms_load_relaxed64(&h->total_size);
    if (version != MS_LAYOUT_VERSION)
        return MS_E_LAYOUT;
    if (kind == 0 || kind > MS_KIND_MAX || header_size != MS_HEADER_SIZE ||
        data_offset != MS_HEADER_SIZE || name_len > MS_NAME_MAX + 1 ||
        (lifetime != MS_LIFETIME_PERSISTENT && lifetime != MS_LIFETIME_SHARED))
        return MS_E_LAYOUT;
    /* size <= total - data_offset <= the real object size, without overflow */
    if (total < data_offset || total > st->size || size > total - data_offset)
        return MS_E_LAYOUT;
    seg->size = size;
    seg->total = total;
    seg->kind = kind;
    seg->lifetime = lifetime;
    seg->flags = flags;
    return MS_OK;
}

struct validate_args { ms_segment *seg; const ms_object_stat *st; };

static ms_status validate_fn(void *arg)
{
    struct validate_args *a = (struct validate_args *)arg;
    return ms_segment_validate(a->seg, a->st);
}

ms_status ms_segment_open(ms_segment *seg, const char *osname, const char *path,
                          uint32_t expected_kind, int access, int raw,
                          unsigned flags, int *err)
{
    ms_status st;
    ms_object_stat ost;
    memset(seg, 0, sizeof *seg);
    seg->obj.handle = MS_NO_HANDLE;
    seg->access = access;
    seg->raw = raw;
    /* The header must be writable to take locks and register, even for read-only data
     * access; fall back to a read-only header if the object refuses writing. */
    int want_write = access != MS_ACCESS_READ || !raw;
    st = ms_p_object_open(osname, path, want_write, flags, &seg->obj, err);
    if (st == MS_E_PERMISSION && want_write && access == MS_ACCESS_READ)
        st = ms_p_object_open(osname, path, 0, flags, &seg->obj, err);
    if (st != MS_OK)
        return st;
    if ((st = ms_p_object_stat(&seg->obj, &ost, err)) != MS_OK)
        goto fail;
    if (raw) {
        seg->size = ost.size;
        seg->total = ost.size;
        if (seg->size == 0) {
            st = MS_E_LAYOUT;
            goto fail;
        }
        st = map_data(seg, 0, err);
        if (st != MS_OK)
            goto fail;
        return MS_OK;
    }
    if (ost.size < MS_HEADER_SIZE) {
        /* shm_open happened, ftruncate not yet: still being created (or abandoned) */
        st = ost.size == 0 ? MS_E_INITIALIZING : MS_E_LAYOUT;
        goto fail;
    }
    if ((st = ms_p_waitctx_open(osname, flags, &seg->ctx, err)) != MS_OK)
        goto fail;
    if ((st = map_header(seg, seg->obj.writable, err)) != MS_OK)
        goto fail;
    {
        struct validate_args va = { seg, &ost };
        st = ms_p_guarded_call(validate_fn, &va);
    }
    if (st != MS_OK)
        goto fail;
    if (expected_kind && seg->kind != expected_kind) {
        st = MS_E_LAYOUT;
        goto fail;
    }
    if (ms_load32(&seg->hdr->state) == MS_STATE_DESTROYED) {
        st = MS_E_DESTROYED;
        goto fail;
    }
    if (!seg->obj.writable && access != MS_ACCESS_READ) {
        st = MS_E_PERMISSION;
        goto fail;
    }
    if ((st = map_data(seg, MS_HEADER_SIZE, err)) != MS_OK)
        goto fail;
    return MS_OK;
fail:
    ms_segment_close(seg);
    return st;
}

/* ---- attach table ------------------------------------------------------------------ */

static ms_status meta_lock(ms_segment *seg, int *err)
{
    if (!seg->hdr || !seg->hdr_writable)
        return MS_E_PERMISSION;
    /* The meta lock is only ever held for a few microseconds; 5 s means a live process
     * is stuck inside it, which we report rather than wait on forever. */
    ms_status st = ms_p_lock_acquire(seg->ctx, MS_SLOT_META_LOCK, seg->hdr->meta_lock,
                                     5000000000LL, err);
    if (st == MS_E_OWNER_DIED)
        st = MS_OK;  /* the table is still well-formed slot by slot: reaping fixes counts */
    return st;
}

static void meta_unlock(ms_segment *seg)
{
    ms_p_lock_release(seg->ctx, MS_SLOT_META_LOCK, seg->hdr->meta_lock, NULL);
}

static int reap_locked(ms_header *h, int *live)
{
    int removed = 0;
    uint32_t me = ms_p_pid();
    *live = 0;
    for (unsigned i = 0; i < MS_ATTACH_SLOTS; i++) {
        uint32_t pid = ms_load_relaxed32(&h->attach[i].pid);
        if (!pid)
            continue;
        uint64_t start = ms_load_relaxed64(&h->attach[i].start);
        if (pid != me && ms_p_process_alive(pid, start) == 0) {
            ms_store32(&h->attach[i].count, 0);
            ms_store32(&h->attach[i].pid, 0);
            removed++;
        } else {
            (*live)++;
        }
    }
    return removed;
}

/* Does any live process remain attached?  Stops at the first live one (clearing the
 * dead entries met on the way), so the answer costs one liveness check in the common
 * case rather than one per attached process.  The liveness rule of the attach table for
 * reclaiming: a change to how attachment is recorded plugs in here. */
static int any_live_locked(ms_header *h)
{
    uint32_t me = ms_p_pid();
    for (unsigned i = 0; i < MS_ATTACH_SLOTS; i++) {
        uint32_t pid = ms_load_relaxed32(&h->attach[i].pid);
        if (!pid)
            continue;
        if (pid == me ||
            ms_p_process_alive(pid, ms_load_relaxed64(&h->attach[i].start)) != 0)
            return 1;
        ms_store32(&h->attach[i].count, 0);
        ms_store32(&h->attach[i].pid, 0);
    }
    return 0;
}

static ms_status attach_impl(ms_segment *seg, int *err)
{
    if (seg->raw || seg->attached)
        return MS_OK;
    ms_status st = meta_lock(seg, err);
    if (st != MS_OK)
        return st;
    ms_header *h = seg->hdr;
    if (ms_load32(&h->state) == MS_STATE_DESTROYED) {
        meta_unlock(seg);
        return MS_E_DESTROYED;
    }
    uint32_t me = ms_p_pid();
    int live, free_slot = -1;
    /* Reap only when the table is full: checking every attached process's liveness on
     * each open made opening cost O(attached processes) under the meta lock. */
    for (int pass = 0; pass < 2 && free_slot < 0; pass++) {
        if (pass == 1)
            reap_locked(h, &live);
        for (unsigned i = 0; i < MS_ATTACH_SLOTS; i++) {
            uint32_t pid = ms_load_relaxed32(&h->attach[i].pid);
            if (pid == me) {
                ms_store32(&h->attach[i].count, ms_load_relaxed32(&h->attach[i].count) + 1);
                seg->attached = 1;
                meta_unlock(seg);
                return MS_OK;
            }
            if (!pid && free_slot < 0)
                free_slot = (int)i;
        }
    }
    if (free_slot < 0) {
        meta_unlock(seg);
        return MS_E_BUSY;
    }
    h->attach[free_slot].start = ms_p_process_start(me);
    ms_store32(&h->attach[free_slot].count, 1);
    ms_store32(&h->attach[free_slot].pid, me);
    seg->attached = 1;
    meta_unlock(seg);
    return MS_OK;
}

static ms_status detach_impl(ms_segment *seg, int *last, int *err)
{
    *last = 0;
    if (seg->raw || !seg->attached || seg->faulted)
        return MS_OK;
    ms_status st = meta_lock(seg, err);
    if (st != MS_OK)
        return st;
    ms_header *h = seg->hdr;
    uint32_t me = ms_p_pid();
    for (unsigned i = 0; i < MS_ATTACH_SLOTS; i++) {
        if (ms_load_relaxed32(&h->attach[i].pid) == me) {
            uint32_t c = ms_load_relaxed32(&h->attach[i].count);
            if (c <= 1) {
                ms_store32(&h->attach[i].count, 0);
                ms_store32(&h->attach[i].pid, 0);
            } else {
                ms_store32(&h->attach[i].count, c - 1);
            }
            break;
        }
    }
    seg->attached = 0;
    /* Last user?  One live process is enough to know it is not: stop at the first
     * (reaping the dead met on the way), so closing costs one liveness check rather than
     * one per attached process.  ms_segment_reap (gc) still sweeps the whole table. */
    int live = 0;
    for (unsigned i = 0; i < MS_ATTACH_SLOTS && !live; i++) {
        uint32_t pid = ms_load_relaxed32(&h->attach[i].pid);
        if (!pid)
            continue;
        if (pid != me &&
            ms_p_process_alive(pid, ms_load_relaxed64(&h->attach[i].start)) == 0) {
            ms_store32(&h->attach[i].count, 0);
            ms_store32(&h->attach[i].pid, 0);
        } else {
            live = 1;
        }
    }
    if (live == 0 && seg->lifetime == MS_LIFETIME_SHARED &&
        ms_load32(&h->state) != MS_STATE_DESTROYED) {
        /* A file-backed segment's data outlives its name: the file stays openable. */
        if (!(seg->flags & MS_FLAG_FILE_BACKED))
            ms_store32(&h->state, MS_STATE_DESTROYED);
        *last = 1;
    }
    meta_unlock(seg);
    return MS_OK;
}

static ms_status reap_impl(ms_segment *seg, int *removed, int *empty, int *err)
{
    *removed = 0;
    *empty = 0;
    ms_status st = meta_lock(seg, err);
    if (st != MS_OK)
        return st;
    int live;
    *removed = reap_locked(seg->hdr, &live);
    if (live == 0 && seg->lifetime == MS_LIFETIME_SHARED &&
        ms_load32(&seg->hdr->state) != MS_STATE_DESTROYED) {
        if (!(seg->flags & MS_FLAG_FILE_BACKED))
            ms_store32(&seg->hdr->state, MS_STATE_DESTROYED);
        *empty = 1;
    }
    meta_unlock(seg);
    return MS_OK;
}

static ms_status mark_destroyed_impl(ms_segment *seg, int *err)
{
    if (seg->flags & MS_FLAG_FILE_BACKED)
        return MS_OK;  /* the name goes, the file's data stays openable by path */
    ms_status st = meta_lock(seg, err);
    if (st != MS_OK)
        return st;
    ms_store32(&seg->hdr->state, MS_STATE_DESTROYED);
    meta_unlock(seg);
    return MS_OK;
}

/* The attach-table operations touch the shared header (meta lock, table, state): run
 * them under the fault guard, so that an object truncated by a peer gives MS_E_FAULT
 * (and quarantines the mappings) instead of SIGBUS -- close() included. */
struct table_args { ms_segment *seg; int op; int *a, *b, *err; };

static ms_status table_fn(void *arg)
{
    struct table_args *t = (struct table_args *)arg;
    switch (t->op) {
    case 0: return attach_impl(t->seg, t->err);
    case 1: return detach_impl(t->seg, t->a, t->err);
    case 2: return reap_impl(t->seg, t->a, t->b, t->err);
    default: return mark_destroyed_impl(t->seg, t->err);
    }
}

static ms_status table_call(ms_segment *seg, int op, int *a, int *b, int *err)
{
    if (seg->faulted)
        return MS_E_FAULT;
    struct table_args t = { seg, op, a, b, err };
    ms_status st = ms_p_guarded_call(table_fn, &t);
    if (st == MS_E_FAULT) {
        seg->attached = 0;
        ms_segment_fault(seg);
    }
    return st;
}

ms_status ms_segment_attach(ms_segment *seg, int *err)
{
    return table_call(seg, 0, NULL, NULL, err);
}

ms_status ms_segment_detach(ms_segment *seg, int *last, int *err)
{
    *last = 0;
    if (seg->faulted)
        return MS_OK;
    return table_call(seg, 1, last, NULL, err);
}

ms_status ms_segment_reap(ms_segment *seg, int *removed, int *empty, int *err)
{
    *removed = 0;
    *empty = 0;
    return table_call(seg, 2, removed, empty, err);
}

ms_status ms_segment_mark_destroyed(ms_segment *seg, int *err)
{
    return table_call(seg, 3, NULL, NULL, err);
}

void ms_segment_close(ms_segment *seg)
{
    if (seg->map)
        ms_p_map_unwatch(seg->map);
    if (seg->hdr)
        ms_p_map_unwatch(seg->hdr);
    if (seg->faulted) {
        /* Quarantined pages may still be on a robust list or exported: never unmap. */
        seg->map = NULL;
        seg->hdr = NULL;
    }
    if (seg->map)
        ms_p_unmap(seg->map, seg->map_len);
    seg->map = NULL;
    seg->data = NULL;
    if (seg->hdr)
        ms_p_unmap(seg->hdr, seg->hdr_len);
    seg->hdr = NULL;
    if (seg->ctx)
        ms_p_waitctx_close(seg->ctx);
    seg->ctx = NULL;
    ms_p_object_close(&seg->obj);
}

void ms_segment_fault(ms_segment *seg)
{
    /* may run after the signal handler already quarantined one of the two mappings and
     * set the flag: quarantining again is harmless */
    seg->faulted = 1;
    if (seg->hdr)
        ms_p_quarantine(seg->hdr, seg->hdr_len);
    if (seg->map)
        ms_p_quarantine(seg->map, seg->map_len);
}

ms_status ms_segment_map_range(ms_segment *seg, uint64_t offset, uint64_t length,
                               int access, void **base, size_t *base_len, uint8_t **ptr,
                               int *err)
{
    if (offset > seg->size || length > seg->size - offset || length == 0)
        return MS_E_INVALID;
    uint64_t data_offset = seg->raw ? 0 : MS_HEADER_SIZE;
    uint64_t abs = data_offset + offset;
    uint64_t gran = ms_p_granularity();
    uint64_t start = abs / gran * gran;
    uint64_t len = abs + length - start;
    if (len > (uint64_t)SIZE_MAX)
        return MS_E_NO_SPACE;
    void *p;
    ms_status st = ms_p_map(&seg->obj, start, (size_t)len, access, &p, err);
    if (st != MS_OK)
        return st;
    *base = p;
    *base_len = (size_t)len;
    *ptr = (uint8_t *)p + (abs - start);
    ms_p_map_watch(p, (size_t)len, NULL);
    return MS_OK;
}

/* ---- reclaiming a name nobody can use any more ------------------------------------- */

/* Unlink osname only if it still names the object `obj` (dev, ino): a name re-created by
 * someone else since must not be taken from them.  Callers hold the object's meta lock
 * (or won its unfinished-header claim), so two reclaimers never both get here for one
 * object, and a closer removing its own name re-checks under the same lock. */
static int unlink_if_same(const char *osname, unsigned flags, const ms_object *obj)
{
    ms_object_stat mine, now;
    ms_object cur;
    if (ms_p_object_stat(obj, &mine, NULL) != MS_OK)
        return 0;
    if (ms_p_object_open(osname, NULL, 0, flags, &cur, NULL) != MS_OK)
        return 0;
    ms_status st = ms_p_object_stat(&cur, &now, NULL);
    ms_p_object_close(&cur);
    if (st != MS_OK || now.dev != mine.dev || now.ino != mine.ino)
        return 0;
    return ms_p_object_unlink(osname, flags, NULL) == MS_OK;
}

struct reclaim_args {
    ms_segment *seg;
    const ms_object_stat *ost;
    const char *osname;
    unsigned flags;
    int unfinished_ok;
    int *result;
    int *err;
};

static ms_status reclaim_fn(void *arg)
{
    struct reclaim_args *a = (struct reclaim_args *)arg;
    ms_segment *seg = a->seg;
    ms_header *h = seg->hdr;
    uint64_t magic = ms_load64(&h->magic);
    if (magic == 0) {
        /* Never published.  Its creator wrote its pid and start time first; if that
         * process is gone (or the caller judged it abandoned by age), claim the object
         * by moving magic off 0 -- only the claim's winner unlinks. */
        uint32_t pid = ms_load_relaxed32(&h->creator_pid);
        uint64_t start = ms_load_relaxed64(&h->creator_start);
        int dead = pid && start && ms_p_process_alive(pid, start) == 0;
        if (!dead && !a->unfinished_ok) {
            *a->result = MS_RECLAIM_UNFINISHED;
            return MS_OK;
        }
        uint64_t expected = 0;
        if (!ms_cas64(&h->magic, &expected, MS_MAGIC_RECLAIMED)) {
            *a->result = MS_RECLAIM_KEPT;  /* published just now, or another claimed it */
            return MS_OK;
        }
        *a->result = unlink_if_same(a->osname, a->flags, &seg->obj) ? MS_RECLAIM_REMOVED
                                                                    : MS_RECLAIM_ABSENT;
        return MS_OK;
    }
    if (ms_segment_validate(seg, a->ost) != MS_OK) {
        *a->result = MS_RECLAIM_KEPT;  /* not ours to judge: corrupt or foreign */
        return MS_OK;
    }
    ms_status st = meta_lock(seg, a->err);
    if (st != MS_OK)
        return st;
    int reclaim = ms_load32(&h->state) == MS_STATE_DESTROYED;
    if (!reclaim && seg->lifetime == MS_LIFETIME_SHARED &&
        !(seg->flags & MS_FLAG_FILE_BACKED)) {
        /* The liveness rule of the attach table (any_live_locked) decides, under the lock
         * every attacher takes: an opener racing with us either registered first (we
         * keep the object) or finds it DESTROYED and fails. */
        if (!any_live_locked(h)) {
            ms_store32(&h->state, MS_STATE_DESTROYED);
            reclaim = 1;
        }
    }
    if (reclaim)
        *a->result = unlink_if_same(a->osname, a->flags, &seg->obj) ? MS_RECLAIM_REMOVED
                                                                    : MS_RECLAIM_ABSENT;
    else
        *a->result = MS_RECLAIM_KEPT;
    meta_unlock(seg);
    return MS_OK;
}

ms_status ms_segment_reclaim(const char *osname, unsigned flags, int unfinished_ok,
                             int *result, int *err)
{
    ms_segment seg;
    ms_object_stat ost;
    ms_status st;
    *result = MS_RECLAIM_KEPT;
    memset(&seg, 0, sizeof seg);
    seg.obj.handle = MS_NO_HANDLE;
    st = ms_p_object_open(osname, NULL, 1, flags, &seg.obj, err);
    if (st == MS_E_NOT_FOUND) {
        *result = MS_RECLAIM_ABSENT;
        return MS_OK;
    }
    if (st != MS_OK)
        return st;
    if ((st = ms_p_object_stat(&seg.obj, &ost, err)) != MS_OK)
        goto out;
    if (ost.size < MS_HEADER_SIZE) {
        /* shm_open done, no header yet: nothing tells who made it but its age */
        if (ost.size == 0 && unfinished_ok)
            *result = unlink_if_same(osname, flags, &seg.obj) ? MS_RECLAIM_REMOVED
                                                              : MS_RECLAIM_ABSENT;
        else
            *result = ost.size == 0 ? MS_RECLAIM_UNFINISHED : MS_RECLAIM_KEPT;
        goto out;
    }
    if ((st = ms_p_waitctx_open(osname, flags, &seg.ctx, err)) != MS_OK)
        goto out;
    if ((st = map_header(&seg, 1, err)) != MS_OK)
        goto out;
    {
        struct reclaim_args ra = { &seg, &ost, osname, flags, unfinished_ok, result, err };
        st = ms_p_guarded_call(reclaim_fn, &ra);
        if (st == MS_E_FAULT)
            ms_segment_fault(&seg);
    }
out:
    ms_segment_close(&seg);
    return st;
}

ms_status ms_segment_remove_name(ms_segment *seg, const char *osname, unsigned flags,
                                 int *removed, int *err)
{
    *removed = 0;
    if (seg->raw || !seg->hdr || !seg->hdr_writable || seg->faulted) {
        *removed = unlink_if_same(osname, flags, &seg->obj);
        return MS_OK;
    }
    ms_status st = meta_lock(seg, err);
    if (st != MS_OK)
        return st;
    *removed = unlink_if_same(osname, flags, &seg->obj);
    meta_unlock(seg);
    return MS_OK;
}
