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

static ms_status map_header(ms_segment *seg, size_t len, int writable, int *err)
{
    void *p;
    ms_status st = ms_p_map(&seg->obj, 0, len, writable ? MS_ACCESS_WRITE : MS_ACCESS_READ,
                            &p, err);
    if (st != MS_OK)
        return st;
    seg->hdr = (ms_header *)p;
    seg->hdr_len = len;
    seg->hdr_writable = writable;
    ms_p_map_watch(p, len, &seg->faulted);
    return MS_OK;
}

static void unmap_header(ms_segment *seg)
{
    ms_p_map_unwatch(seg->hdr);
    ms_p_unmap(seg->hdr, seg->hdr_len);
    seg->hdr = NULL;
    seg->table = NULL;
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
    /* Storage for the header page and the user area now; the rest of the attach table
     * (64 KiB) page by page as attachers reach it, so that an object costs one page
     * more than its user area until more than 128 processes attach. */
    st = ms_p_object_create(osname, path, total, mode, flags | MS_OBJ_RESERVE_LATER,
                            &seg->obj, err);
    if (st != MS_OK)
        return st;
    if ((st = ms_p_object_reserve(&seg->obj, 0, MS_HEADER_PAGE, err)) != MS_OK ||
        (st = ms_p_object_reserve(&seg->obj, MS_HEADER_SIZE, total - MS_HEADER_SIZE, err))
            != MS_OK)
        goto fail;
    st = ms_p_waitctx_open(osname, flags, &seg->ctx, err);
    if (st == MS_OK)
        st = map_header(seg, MS_HEADER_SIZE, 1, err);
    if (st == MS_OK)
        st = ms_p_object_share(&seg->obj, err);  /* fresh: nobody can hold it exclusively */
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
    h->attach_offset = MS_ATTACH_OFFSET;
    h->attach_slots = MS_ATTACH_SLOTS;
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
    seg->table = (ms_attach *)((uint8_t *)h + MS_ATTACH_OFFSET);
    seg->slots = MS_ATTACH_SLOTS;
    seg->data_offset = MS_HEADER_SIZE;
    seg->table[0].pid = h->creator_pid;
    seg->table[0].count = 1;
    seg->table[0].start = h->creator_start;
    seg->slot = 0;
    h->attach_end = 1;
    h->attach_hint = 1;
    h->attach_reserved = (MS_HEADER_PAGE - MS_ATTACH_OFFSET) / sizeof(ms_attach);
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
    seg->in_table = 1;
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
    uint64_t attach_offset = ms_load_relaxed64(&h->attach_offset);
    uint32_t slots = ms_load_relaxed32(&h->attach_slots);
    /* Another layout (a newer mapshare's, or version 1): nothing past `version` means
     * what this code thinks, so it is refused before anything else is read, with a
     * status of its own (0 was never a version: that header is just invalid). */
    if (version != MS_LAYOUT_VERSION)
        return version == 0 ? MS_E_LAYOUT : MS_E_VERSION;
    if (kind == 0 || kind > MS_KIND_MAX || name_len > MS_NAME_MAX + 1 ||
        (lifetime != MS_LIFETIME_PERSISTENT && lifetime != MS_LIFETIME_SHARED))
        return MS_E_LAYOUT;
    /* header page, then the table, inside [0, data_offset), which the header mapping
     * covers; every term is bounded before it is added, so nothing overflows */
    if (slots == 0 || slots > MS_ATTACH_SLOTS_MAX ||
        attach_offset < offsetof(ms_header, attach_head) || data_offset < MS_HEADER_PAGE ||
        attach_offset % sizeof(ms_attach) != 0 ||
        attach_offset > (uint64_t)MS_ATTACH_SLOTS_MAX * sizeof(ms_attach) ||
        header_size != data_offset || data_offset % 8 != 0 ||
        attach_offset + (uint64_t)slots * sizeof(ms_attach) > data_offset ||
        data_offset > 2 * (uint64_t)MS_ATTACH_SLOTS_MAX * sizeof(ms_attach))
        return MS_E_LAYOUT;
    /* size <= total - data_offset <= the real object size, without overflow */
    if (total < data_offset || total > st->size || size > total - data_offset)
        return MS_E_LAYOUT;
    seg->data_offset = data_offset;
    seg->slots = slots;
    seg->table = (ms_attach *)((uint8_t *)seg->hdr + attach_offset);
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
    /* Only the size is used here, and ms_p_object_open has just read it (one fstat per
     * open, not two: opening is meant to cost about one attach). */
    memset(&ost, 0, sizeof ost);
    ost.size = seg->obj.size;
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
    if (ost.size < MS_HEADER_PAGE) {
        /* shm_open happened, ftruncate not yet: still being created (or abandoned) */
        st = ost.size == 0 ? MS_E_INITIALIZING : MS_E_LAYOUT;
        goto fail;
    }
    if ((st = ms_p_waitctx_open(osname, flags, &seg->ctx, err)) != MS_OK)
        goto fail;
    /* One mapping for the header page and the table: guess this version's size, map
     * again in the rare case the header says otherwise. */
    if ((st = map_header(seg, ost.size >= MS_HEADER_SIZE ? MS_HEADER_SIZE : MS_HEADER_PAGE,
                         seg->obj.writable, err)) != MS_OK)
        goto fail;
    {
        struct validate_args va = { seg, &ost };
        st = ms_p_guarded_call(validate_fn, &va);
    }
    if (st == MS_OK && seg->data_offset != seg->hdr_len) {
        uint64_t table_offset = (uint64_t)((uint8_t *)seg->table - (uint8_t *)seg->hdr);
        unmap_header(seg);
        if ((st = map_header(seg, (size_t)seg->data_offset, seg->obj.writable, err)) == MS_OK) {
            /* the header may have changed in between: validate the new mapping again */
            struct validate_args va = { seg, &ost };
            st = ms_p_guarded_call(validate_fn, &va);
            if (st == MS_OK && (seg->data_offset != seg->hdr_len ||
                                (uint64_t)((uint8_t *)seg->table - (uint8_t *)seg->hdr) !=
                                    table_offset))
                st = MS_E_LAYOUT;
        }
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
    if ((st = map_data(seg, seg->data_offset, err)) != MS_OK)
        goto fail;
    return MS_OK;
fail:
    ms_segment_close(seg);
    return st;
}

/* ---- attach table ------------------------------------------------------------------ */

/* Rebuild the hints from the slots: attach_end is one past the last used slot,
 * attach_hint the first free one (or attach_end).  O(slots): after a holder of the meta
 * lock died, or when the hints read back inconsistent. */
/* How many leading entries may be read: those with storage (attach_reserved, checked).
 * Every entry past it is free. */
static uint32_t table_limit(const ms_segment *seg)
{
    uint32_t r = ms_load_relaxed32(&seg->hdr->attach_reserved);
    return r < seg->slots ? r : seg->slots;
}

static void table_rebuild(ms_segment *seg)
{
    ms_attach *t = seg->table;
    uint32_t end = 0, hint = UINT32_MAX, lim = table_limit(seg);
    for (uint32_t i = 0; i < lim; i++) {
        if (ms_load_relaxed32(&t[i].pid))
            end = i + 1;
        else if (hint == UINT32_MAX)
            hint = i;
    }
    if (hint > end)
        hint = end;
    ms_store32(&seg->hdr->attach_end, end);
    ms_store32(&seg->hdr->attach_hint, hint);
}

/* The hints, read once and checked (the caller holds the meta lock). */
static void table_hints(ms_segment *seg, uint32_t *end, uint32_t *hint)
{
    *end = ms_load_relaxed32(&seg->hdr->attach_end);
    *hint = ms_load_relaxed32(&seg->hdr->attach_hint);
    if (*end > table_limit(seg) || *hint > *end) {
        table_rebuild(seg);
        *end = ms_load_relaxed32(&seg->hdr->attach_end);
        *hint = ms_load_relaxed32(&seg->hdr->attach_hint);
    }
}

/* Slot i was just freed: keep "no free slot before the hint" and shrink the end past
 * trailing free slots. */
static void table_freed(ms_segment *seg, uint32_t i)
{
    uint32_t end, hint;
    table_hints(seg, &end, &hint);
    if (i < hint)
        ms_store32(&seg->hdr->attach_hint, i);
    if (i + 1 == end) {
        while (end > 0 && !ms_load_relaxed32(&seg->table[end - 1].pid))
            end--;
        ms_store32(&seg->hdr->attach_end, end);
        if (ms_load_relaxed32(&seg->hdr->attach_hint) > end)
            ms_store32(&seg->hdr->attach_hint, end);
    }
}

static void slot_free(ms_segment *seg, uint32_t i)
{
    ms_store32(&seg->table[i].count, 0);
    ms_store32(&seg->table[i].pid, 0);
    table_freed(seg, i);
}

static ms_status meta_lock(ms_segment *seg, int *err)
{
    if (!seg->hdr || !seg->hdr_writable)
        return MS_E_PERMISSION;
    /* The meta lock is held for microseconds (a sweep of a full table: milliseconds).
     * One holder keeping it for a whole 5 s slice is a live process stuck inside it,
     * which we report rather than wait on forever.  But thousands of attachers queued on
     * an overloaded machine can make us wait longer than that while the lock changes
     * hands all along: as long as each slice ends with another holder, wait on. */
    uint32_t last_holder = 0;
    ms_status st;
    for (;;) {
        st = ms_p_lock_acquire(seg->ctx, MS_SLOT_META_LOCK, seg->hdr->meta_lock,
                               5000000000LL, err);
        if (st != MS_E_TIMEOUT)
            break;
        int held = 0, dead = 0;
        uint32_t holder = 0;
        ms_p_lock_inspect(seg->hdr->meta_lock, &held, &holder, &dead);
        /* The same holder for a whole slice: stuck.  Live, or dead without the kernel
         * having marked the lock owner-died (its robust list could not be walked): then
         * no wait would ever end, so this one must not either. */
        (void)dead;
        if (held && holder == last_holder)
            break;
        last_holder = held ? holder : 0;
    }
    if (st == MS_E_OWNER_DIED) {
        /* the table is still well-formed slot by slot; the hints may be half-updated */
        table_rebuild(seg);
        st = MS_OK;
    }
    return st;
}

static void meta_unlock(ms_segment *seg)
{
    ms_p_lock_release(seg->ctx, MS_SLOT_META_LOCK, seg->hdr->meta_lock, NULL);
}

/* Sweep the whole table: free the entries of dead processes. */
static int reap_locked(ms_segment *seg, int *live)
{
    int removed = 0;
    uint32_t me = ms_p_pid(), end, hint;
    ms_attach *t = seg->table;
    *live = 0;
    table_hints(seg, &end, &hint);
    (void)hint;
    /* the whole table, not just up to the end hint: gc trusts no hint */
    uint32_t lim = table_limit(seg);
    for (uint32_t i = 0; i < lim; i++) {
        uint32_t pid = ms_load_relaxed32(&t[i].pid);
        if (!pid)
            continue;
        uint64_t start = ms_load_relaxed64(&t[i].start);
        if (pid != me && ms_p_process_alive(pid, start) == 0) {
            ms_store32(&t[i].count, 0);
            ms_store32(&t[i].pid, 0);
            removed++;
        } else {
            (*live)++;
        }
    }
    table_rebuild(seg);
    return removed;
}

/* Is a process other than a dead one in [0, end)?  Stops at the first live entry: one is
 * enough to know the object is in use.  With `reap`, frees the dead met on the way. */
static int table_any_live(ms_segment *seg, int reap)
{
    uint32_t me = ms_p_pid();
    uint32_t end = ms_load_relaxed32(&seg->hdr->attach_end), lim = table_limit(seg);
    if (end > lim || !reap)
        end = lim;  /* without the lock, or if it reads wrong, trust no hint */
    for (uint32_t i = 0; i < end; i++) {
        uint32_t pid = ms_load_relaxed32(&seg->table[i].pid);
        if (!pid)
            continue;
        if (pid == me || ms_p_process_alive(pid, ms_load_relaxed64(&seg->table[i].start)) != 0)
            return 1;
        if (reap)
            slot_free(seg, i);
    }
    return 0;
}

/* Take this handle's opener count.  An exclusive holder is a last user removing the
 * object: it is DESTROYED (or, file-backed, about to lose its name) within microseconds;
 * wait for that rather than fail, at most as long as for the meta lock. */
static ms_status share(ms_segment *seg, int *err)
{
    uint64_t deadline = 0;
    if (seg->no_opener_lock)
        return MS_OK;
    for (;;) {
        ms_status st = ms_p_object_share(&seg->obj, err);
        if (st != MS_E_IN_USE)
            return st;
        if (ms_load32(&seg->hdr->state) == MS_STATE_DESTROYED)
            return MS_E_DESTROYED;
        uint64_t now = ms_p_monotonic_ns();
        if (!deadline)
            deadline = now + 5000000000ULL;
        else if (now > deadline)
            return MS_E_IN_USE;
        ms_p_yield();
    }
}

static void unshare(ms_segment *seg)
{
    if (!seg->no_opener_lock)
        ms_p_object_unshare(&seg->obj);
}

static ms_status attach_impl(ms_segment *seg, int *err)
{
    if (seg->raw || seg->attached)
        return MS_OK;
    ms_header *h = seg->hdr;
    ms_status st = share(seg, err);
    if (st != MS_OK)
        return st;
    if (!seg->hdr_writable) {
        /* read-only: counted by the opener lock alone (it cannot write the table) */
        if (ms_load32(&h->state) == MS_STATE_DESTROYED) {
            unshare(seg);
            return MS_E_DESTROYED;
        }
        seg->attached = 1;
        return MS_OK;
    }
    if ((st = meta_lock(seg, err)) != MS_OK) {
        unshare(seg);
        return st;
    }
    if (ms_load32(&h->state) == MS_STATE_DESTROYED) {
        st = MS_E_DESTROYED;
        goto out;
    }
    ms_attach *t = seg->table;
    uint32_t me = ms_p_pid(), end, hint, slot;
    int rebuilt = 0, reaped = 0;
    for (;;) {
        table_hints(seg, &end, &hint);
        /* this process's other handles share its entry */
        for (uint32_t i = 0; i < end; i++) {
            if (ms_load_relaxed32(&t[i].pid) == me) {
                ms_store32(&t[i].count, ms_load_relaxed32(&t[i].count) + 1);
                seg->slot = i;
                goto attached;
            }
        }
        /* no free slot before the hint; look from there, then past the end (and past
         * the reserved entries, all free) */
        uint32_t lim = table_limit(seg);
        for (slot = hint; slot < lim && ms_load_relaxed32(&t[slot].pid); slot++)
            if (slot >= end)
                break;  /* a used slot past the end: the hints are wrong */
        if (slot < lim && slot >= end && ms_load_relaxed32(&t[slot].pid)) {
            if (rebuilt) {
                st = MS_E_LAYOUT;  /* changing under the meta lock: not ours to fix */
                goto out;
            }
            table_rebuild(seg);
            rebuilt = 1;
            continue;
        }
        if (slot < seg->slots)
            break;
        if (reaped) {
            st = MS_E_ATTACH_LIMIT;
            goto out;
        }
        /* Full: only now check liveness, so that opening costs no per-process system
         * call while there is room.  (The sweep rebuilds the hints.) */
        int live;
        reap_locked(seg, &live);
        reaped = rebuilt = 1;
    }
    if (slot >= table_limit(seg)) {
        /* A page of the table never used yet: reserve its storage before writing (a
         * hole written on a full /dev/shm would be SIGBUS), then say so. */
        uint64_t table_off = (uint64_t)((uint8_t *)t - (uint8_t *)h);
        uint64_t off = (table_off + (uint64_t)slot * sizeof(ms_attach)) / 4096 * 4096;
        if ((st = ms_p_object_reserve(&seg->obj, off, 4096, err)) != MS_OK)
            goto out;
        uint64_t upto = (off + 4096 - table_off) / sizeof(ms_attach);
        ms_store32(&h->attach_reserved, upto < seg->slots ? (uint32_t)upto : seg->slots);
    }
    /* end before pid: a process dying here leaves the end too far, never too short */
    if (slot >= end)
        ms_store32(&h->attach_end, slot + 1);
    t[slot].start = ms_p_process_start(me);
    ms_store32(&t[slot].count, 1);
    ms_store32(&t[slot].pid, me);
    ms_store32(&h->attach_hint, slot + 1);
    seg->slot = slot;
attached:
    seg->attached = 1;
    seg->in_table = 1;
out:
    meta_unlock(seg);
    if (st != MS_OK)
        unshare(seg);
    return st;
}

/* No live process in the table (checked by the caller) and lifetime shared: is this the
 * last user?  Only if no other handle counts as an opener either; then mark the object
 * DESTROYED (a file-backed segment's data outlives its name: the file stays openable). */
static int last_user(ms_segment *seg)
{
    if (seg->lifetime != MS_LIFETIME_SHARED ||
        ms_load32(&seg->hdr->state) == MS_STATE_DESTROYED)
        return 0;
    /* (a forked child without a description of its own goes by the table alone, as
     * before opener locks: the inherited lock is the parent's) */
    if (!seg->no_opener_lock && ms_p_object_others(&seg->obj))
        return 0;
    if (seg->hdr_writable && !(seg->flags & MS_FLAG_FILE_BACKED))
        ms_store32(&seg->hdr->state, MS_STATE_DESTROYED);
    return 1;
}

static ms_status detach_impl(ms_segment *seg, int *last, int *err)
{
    *last = 0;
    if (seg->raw || !seg->attached || seg->faulted)
        return MS_OK;
    /* Let go of the opener lock first, before leaving the table: two users closing at
     * once must not each see the other's lock after the other saw its entry gone (the
     * lock would otherwise last until the descriptor is closed and unmapped). */
    unshare(seg);
    if (!seg->in_table) {
        /* A read-only opener cannot take the meta lock nor mark the state: it only
         * tells its caller whether nobody else is left (who then removes the name). */
        seg->attached = 0;
        if (!table_any_live(seg, 0))
            *last = last_user(seg);
        return MS_OK;
    }
    ms_status st = meta_lock(seg, err);
    if (st != MS_OK)
        return st;
    ms_attach *t = seg->table;
    uint32_t me = ms_p_pid(), end, hint, i = seg->slot;
    table_hints(seg, &end, &hint);
    if (i >= seg->slots || ms_load_relaxed32(&t[i].pid) != me)
        for (i = 0; i < end && ms_load_relaxed32(&t[i].pid) != me; i++)
            ;
    if (i < seg->slots && ms_load_relaxed32(&t[i].pid) == me) {
        uint32_t c = ms_load_relaxed32(&t[i].count);
        if (c <= 1)
            slot_free(seg, i);
        else
            ms_store32(&t[i].count, c - 1);
    }
    seg->attached = 0;
    seg->in_table = 0;
    /* Last user?  One live process is enough to know it is not: stop at the first
     * (reaping the dead met on the way), so closing costs one liveness check rather than
     * one per attached process.  ms_segment_reap (gc) still sweeps the whole table. */
    if (!table_any_live(seg, 1))
        *last = last_user(seg);
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
    *removed = reap_locked(seg, &live);
    if (live == 0 && !seg->attached)
        *empty = last_user(seg);
    meta_unlock(seg);
    return MS_OK;
}

static ms_status after_fork_impl(ms_segment *seg, int *err)
{
    if (seg->raw || !seg->attached)
        return MS_OK;
    seg->attached = 0;
    seg->in_table = 0;
    /* The inherited description is the parent's, with the parent's opener lock, and our
     * inherited mappings keep it alive: take a description of our own and move the
     * mappings to it.  Without one (no /proc), count through the table alone. */
    if (!seg->no_opener_lock && ms_p_object_after_fork(&seg->obj, NULL) == MS_OK) {
        int rw = seg->hdr_writable ? MS_ACCESS_WRITE : MS_ACCESS_READ;
        ms_p_remap(&seg->obj, seg->hdr, 0, seg->hdr_len, rw, NULL);
        if (seg->map)
            ms_p_remap(&seg->obj, seg->map,
                       seg->data_offset - (uint64_t)(seg->data - (uint8_t *)seg->map),
                       seg->map_len, seg->access, NULL);
    } else {
        seg->no_opener_lock = 1;
    }
    return attach_impl(seg, err);
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
    case 4: return after_fork_impl(t->seg, t->err);
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
        seg->in_table = 0;
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

ms_status ms_segment_after_fork(ms_segment *seg, int *err)
{
    return table_call(seg, 4, NULL, NULL, err);
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
    uint64_t data_offset = seg->raw ? 0 : seg->data_offset;
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
        /* The one last-user rule (the attach table, then the opener locks of every
         * handle, read-only ones included) decides, under the lock every attacher
         * takes: an opener racing with us either registered first (we keep the object)
         * or finds it DESTROYED and fails.  last_user() marks it DESTROYED. */
        if (seg->data_offset == seg->hdr_len && !table_any_live(seg, 1) && last_user(seg))
            reclaim = 1;
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
    if (ost.size < MS_HEADER_PAGE) {
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
    /* this version's header area (page and attach table); a header naming another size
     * is not ours to judge (reclaim_fn keeps it) */
    if ((st = map_header(&seg, ost.size >= MS_HEADER_SIZE ? MS_HEADER_SIZE : MS_HEADER_PAGE, 1,
                         err)) != MS_OK)
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
