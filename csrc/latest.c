/* Latest: a seqlock over a few buffers (see latest.h, layout.h and
 * docs/design/layout.md, "Latest").
 *
 * Why a reader's copy is never torn: a writer stores an odd seq into a buffer (release,
 * then a release fence) before it changes any byte of it, and the even seq of the new
 * version after the last byte (release).  A reader loads seq (acquire), copies, issues an
 * acquire fence and reloads seq: if both loads saw the same even value, no store of a
 * writer that overwrote the buffer can have been seen by the copy.
 *
 * Why several buffers: the writer always fills the buffer after the published one, so a
 * reader that started on version v is disturbed only if buffers - 1 further versions
 * were published while it copied (with 3 buffers: two whole sets).
 *
 * Untrusted memory: version, seq, length and kind are copied into locals and checked;
 * the buffer index is always version % the validated buffer count, a length beyond
 * max_size is never used, and the retry loop is bounded in time.  A published seq that
 * disagrees with a version that did not move is MS_E_LAYOUT (a writer never leaves that
 * state).  Every access runs under ms_p_guarded_call (a truncated object gives
 * MS_E_FAULT, never SIGBUS). */
#include "latest.h"
#include "atomics.h"

#include <string.h>

#if defined(_MSC_VER) && !defined(__clang__)
#define fence_release() MemoryBarrier()
#define fence_acquire() MemoryBarrier()
#else
#define fence_release() __atomic_thread_fence(__ATOMIC_RELEASE)
#define fence_acquire() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#endif

#define ALIGN64(n) (((uint64_t)(n) + 63u) & ~(uint64_t)63u)

/* Retries that only spin before a reader starts yielding the CPU between them. */
#define SPIN_TRIES 64

static uint64_t stride_of(uint64_t max_size)
{
    return MS_LATEST_BUF_HEADER + ALIGN64(max_size);
}

uint64_t ms_latest_area_size(uint64_t max_size, uint32_t buffers)
{
    if (max_size > MS_LATEST_SIZE_MAX || buffers < 2 || buffers > MS_LATEST_BUFFERS_MAX)
        return 0;
    return stride_of(max_size) * buffers;
}

ms_status ms_latest_init(ms_header *h, void *arg, int *err)
{
    ms_latest *lt = (ms_latest *)h->kind_area;
    const ms_latest_params *p = (const ms_latest_params *)arg;
    if (!p)
        return MS_E_INVALID;
    uint64_t need = ms_latest_area_size(p->max_size, p->buffers);
    if (!need || h->size < need)
        return MS_E_INVALID;
    memset(lt, 0, sizeof *lt);
    lt->max_size = p->max_size;
    lt->buf_offset = 0;
    lt->buf_stride = stride_of(p->max_size);
    lt->buffers = p->buffers;
    /* version 0: the empty value in buffer 0 (seq 0, length 0): the user area is zero */
    return ms_p_lock_init(lt->write_lock, err);
}

ms_status ms_latest_bind(ms_latest_handle *l, ms_segment *seg)
{
    memset(l, 0, sizeof *l);
    if (seg->kind != MS_KIND_LATEST || !seg->hdr || !seg->data)
        return MS_E_LAYOUT;
    ms_latest *lt = (ms_latest *)seg->hdr->kind_area;
    uint64_t max = ms_load_relaxed64(&lt->max_size);
    uint64_t off = ms_load_relaxed64(&lt->buf_offset);
    uint64_t stride = ms_load_relaxed64(&lt->buf_stride);
    uint32_t n = ms_load_relaxed32(&lt->buffers);
    uint64_t need = ms_latest_area_size(max, n);
    if (!need || stride != stride_of(max) || off % 64 != 0 || off > seg->size ||
        need > seg->size - off || ((uintptr_t)seg->data) % 64 != 0)
        return MS_E_LAYOUT;
    l->seg = seg;
    l->lt = lt;
    l->bufs = seg->data + off;
    l->max_size = max;
    l->stride = stride;
    l->buffers = n;
    return MS_OK;
}

static inline ms_latest_buf *buf_of(ms_latest_handle *l, uint64_t version)
{
    return (ms_latest_buf *)(l->bufs + (version % l->buffers) * l->stride);
}

/* ---- the sleeper table ------------------------------------------------------------
 *
 * A thread about to sleep in wait_for_update claims a free entry (pid 0 -> its pid by
 * CAS, then its process's start time), sleeps with the entry's count as the wait's
 * `mark` (ms_wait_for raises it by MS_SLEEPER while the thread is counted in `waiters`),
 * and frees the entry when it wakes (count, start, then pid to 0).  A thread killed in
 * its sleep leaves its entry with its dead pid and MS_SLEEPER: a writer whose wake-ups
 * keep finding nobody scans the table and gives those back from `waiters`.  When every
 * entry is taken, a sleeper sleeps unlisted (counted in `waiters` only), as before the
 * table existed. */

static volatile uint32_t self_pid;
static volatile uint64_t self_start;

/* This process's start time, read from the system once per process (a forked child
 * reads its own: its pid differs). */
static uint64_t my_start(uint32_t me)
{
    if (ms_load32(&self_pid) == me)
        return ms_load64(&self_start);
    uint64_t st = ms_p_process_start(me);
    ms_store64(&self_start, st);
    ms_store32(&self_pid, me);
    return st;
}

static ms_latest_sleeper *claim_sleeper(ms_latest *lt)
{
    uint32_t me = ms_p_pid();
    uint64_t start = my_start(me);
    for (unsigned i = 0; i < MS_LATEST_SLEEPERS; i++) {
        ms_latest_sleeper *e = &lt->sleepers[i];
        uint32_t zero = 0;
        if (ms_load_relaxed32(&e->pid) == 0 && ms_cas32(&e->pid, &zero, me)) {
            /* start is 0 until stored: a reaper then checks only that the pid exists */
            ms_store32(&e->count, 0);
            ms_store64(&e->start, start);
            return e;
        }
    }
    return NULL;
}

static void release_sleeper(ms_latest_sleeper *e)
{
    if (ms_load_relaxed32(&e->pid) != ms_p_pid())
        return;  /* rewritten by a forger: not ours to free any more */
    ms_store32(&e->count, 0);
    ms_store64(&e->start, 0);
    ms_store32(&e->pid, 0);
}

/* Free the entries of dead processes, giving their sleepers back from `waiters` (never
 * below zero: a scribbled count must not wrap around).  An entry is freed by whoever
 * moves its pid to MS_PID_REAPING first.  Returns the sleepers given back. */
static uint32_t reap_sleepers(ms_latest *lt)
{
    uint32_t given = 0;
    for (unsigned i = 0; i < MS_LATEST_SLEEPERS; i++) {
        ms_latest_sleeper *e = &lt->sleepers[i];
        uint32_t pid = ms_load32(&e->pid);
        if (pid == 0 || pid == MS_PID_REAPING || pid == MS_PID_CLAIMING)
            continue;
        /* alive or unknown (-1): leave it */
        if (ms_p_process_alive(pid, ms_load64(&e->start)) != 0)
            continue;
        if (!ms_cas32(&e->pid, &pid, MS_PID_REAPING))
            continue;
        uint32_t sleepers = ms_xchg32(&e->count, 0) / MS_SLEEPER;
        if (sleepers) {
            uint32_t w = ms_load32(&lt->waiters);
            while (!ms_cas32(&lt->waiters, &w, w > sleepers ? w - sleepers : 0))
                ;
            given += sleepers;
        }
        ms_store64(&e->start, 0);
        ms_store32(&e->pid, 0);
    }
    return given;
}

struct reap_args {
    ms_latest *lt;
    uint32_t given;
};

static ms_status reap_fn(void *arg)
{
    struct reap_args *a = (struct reap_args *)arg;
    a->given = reap_sleepers(a->lt);
    return MS_OK;
}

uint32_t ms_latest_reap_sleepers(ms_latest_handle *l)
{
    struct reap_args a = { l->lt, 0 };
    if (ms_p_guarded_call(reap_fn, &a) == MS_E_FAULT)
        ms_segment_fault(l->seg);
    return a.given;
}

/* ---- writing --------------------------------------------------------------------- */

struct write_args {
    ms_latest_handle *l;
    const void *data;
    size_t n;
    uint32_t kind;
    const ms_wait_opts *o;
    uint64_t *version;
};

static ms_status write_fn(void *arg)
{
    struct write_args *a = (struct write_args *)arg;
    ms_latest_handle *l = a->l;
    ms_latest *lt = l->lt;
    ms_status st = ms_lock_acquire(l->seg, MS_SLOT_WRITE_LOCK, lt->write_lock, a->o, NULL);
    if (st == MS_E_OWNER_DIED) {
        /* The dead writer never stored the version of what it was writing, so readers
         * still see the last complete value; writing the next version into the same
         * buffer again is all the repair there is. */
        ms_add64(&lt->writer_deaths, 1);
        st = MS_OK;
    }
    if (st != MS_OK)
        return st;
    uint64_t nv = ms_load_relaxed64(&lt->version) + 1;
    ms_latest_buf *b = buf_of(l, nv);
    ms_store64(&b->seq, 2 * nv + 1);
    fence_release();
    b->length = a->n;
    b->kind = a->kind;
    memcpy((uint8_t *)b + MS_LATEST_BUF_HEADER, a->data, a->n);
    ms_store64(&b->seq, 2 * nv);
    ms_store_sc64(&lt->version, nv);
    ms_lock_release(l->seg, MS_SLOT_WRITE_LOCK, lt->write_lock, NULL);
    /* readers asleep in wait_for_update: a system call only when there are some */
    int n = ms_wake_waiters_sc(l->seg, MS_SLOT_VERSION, &lt->update_seq, &lt->waiters);
    if (n == 0 && ++l->idle_wakes >= MS_LATEST_REPAIR_AFTER) {
        /* `waiters` says someone sleeps, yet wake-ups keep finding nobody: a sleeper
         * may have been killed in its sleep; give its count back */
        l->idle_wakes = 0;
        reap_sleepers(lt);
    } else if (n != 0) {
        l->idle_wakes = 0;
    }
    if (a->version)
        *a->version = nv;
    return MS_OK;
}

ms_status ms_latest_write(ms_latest_handle *l, const void *data, size_t n, uint32_t kind,
                          const ms_wait_opts *o, uint64_t *version)
{
    if (n > l->max_size)
        return MS_E_TOO_LARGE;
    struct write_args a = { l, data, n, kind, o, version };
    ms_status st = ms_p_guarded_call(write_fn, &a);
    if (st == MS_E_FAULT)
        ms_segment_fault(l->seg);
    return st;
}

/* ---- reading --------------------------------------------------------------------- */

/* Between two attempts: spin a little, then yield; 0 while the budget lasts. */
static int backoff(unsigned tries, uint64_t *start)
{
    if (tries < SPIN_TRIES) {
        for (int i = 0; i < 16; i++)
            ms_cpu_relax();
        return 0;
    }
    uint64_t now = ms_p_monotonic_ns();
    if (*start == 0)
        *start = now;
    else if (now - *start > (uint64_t)MS_LATEST_READ_BUDGET_NS)
        return -1;
    ms_p_yield();
    return 0;
}

/* One attempt at locating the published value: MS_OK with v filled (seq even, length
 * checked), MS_E_INTERRUPTED to retry (the version moved), MS_E_LAYOUT. */
static ms_status locate(ms_latest_handle *l, ms_latest_view *v)
{
    ms_latest *lt = l->lt;
    uint64_t ver = ms_load64(&lt->version);
    ms_latest_buf *b = buf_of(l, ver);
    uint64_t s = ms_load64(&b->seq);
    if (s != 2 * ver) {
        /* the buffer was taken for a newer version -- which the version then shows */
        if (ms_load64(&lt->version) != ver)
            return MS_E_INTERRUPTED;
        return MS_E_LAYOUT;
    }
    uint64_t len = ms_load_relaxed64(&b->length);
    uint32_t kind = ms_load_relaxed32(&b->kind);
    if (len > l->max_size) {
        fence_acquire();
        if (ms_load_relaxed64(&b->seq) != s)
            return MS_E_INTERRUPTED;
        return MS_E_LAYOUT;
    }
    uint32_t index = (uint32_t)(ver % l->buffers);
    v->buffer = index;
    v->offset = (uint64_t)(((uint8_t *)b - l->seg->data)) + MS_LATEST_BUF_HEADER;
    v->ptr = (const uint8_t *)b + MS_LATEST_BUF_HEADER;
    v->length = len;
    v->version = ver;
    v->seq = s;
    v->kind = kind;
    return MS_OK;
}

struct read_args {
    ms_latest_handle *l;
    ms_alloc_fn alloc;
    void *arg;
    uint64_t *version;
    uint32_t *kind;
    ms_latest_view *view;   /* peek: locate only */
};

static ms_status read_fn(void *arg)
{
    struct read_args *a = (struct read_args *)arg;
    ms_latest_handle *l = a->l;
    uint64_t start = 0;
    for (unsigned tries = 0;; tries++) {
        ms_latest_view v;
        ms_status st = locate(l, &v);
        if (st == MS_OK) {
            if (a->view) {
                *a->view = v;
                return MS_OK;
            }
            uint8_t *dst = a->alloc(a->arg, (size_t)v.length);
            if (!dst)
                return MS_E_INVALID;
            memcpy(dst, v.ptr, (size_t)v.length);
            fence_acquire();
            if (ms_load_relaxed64(&buf_of(l, v.version)->seq) == v.seq) {
                *a->version = v.version;
                *a->kind = v.kind;
                return MS_OK;
            }
        } else if (st != MS_E_INTERRUPTED) {
            return st;
        }
        if (backoff(tries, &start) < 0)
            return MS_E_TIMEOUT;
    }
}

static ms_status run_read(struct read_args *a)
{
    ms_status st = ms_p_guarded_call(read_fn, a);
    if (st == MS_E_FAULT)
        ms_segment_fault(a->l->seg);
    return st;
}

ms_status ms_latest_read(ms_latest_handle *l, ms_alloc_fn alloc, void *arg,
                         uint64_t *version, uint32_t *kind)
{
    struct read_args a = { l, alloc, arg, version, kind, NULL };
    return run_read(&a);
}

ms_status ms_latest_peek(ms_latest_handle *l, ms_latest_view *v)
{
    struct read_args a = { l, NULL, NULL, NULL, NULL, v };
    return run_read(&a);
}

static ms_status check_fn(void *arg)
{
    void **p = (void **)arg;
    ms_latest_handle *l = (ms_latest_handle *)p[0];
    const ms_latest_view *v = (const ms_latest_view *)p[1];
    fence_acquire();
    ms_latest_buf *b = (ms_latest_buf *)(l->bufs + (uint64_t)(v->buffer % l->buffers) * l->stride);
    return ms_load_relaxed64(&b->seq) == v->seq ? MS_OK : MS_E_OVERWRITTEN;
}

ms_status ms_latest_check(ms_latest_handle *l, const ms_latest_view *v)
{
    void *p[2] = { l, (void *)v };
    ms_status st = ms_p_guarded_call(check_fn, p);
    if (st == MS_E_FAULT)
        ms_segment_fault(l->seg);
    return st;
}

/* Part of a value located by ms_latest_peek, copied straight into the caller's memory
 * (a result the caller allocated from the value's own header: one copy, not two).  The
 * seq is checked before (no copy of a buffer already reused) and after the copy, as in
 * read_fn: with the header read in between, everything taken since the peek belongs to
 * one value.  The range is bounded by max_size (the buffer's storage), whatever the
 * caller passes. */
struct copy_args {
    ms_latest_handle *l;
    const ms_latest_view *v;
    uint64_t offset;
    uint8_t *dst;
    size_t n;
};

static ms_status copy_fn(void *arg)
{
    struct copy_args *a = (struct copy_args *)arg;
    ms_latest_handle *l = a->l;
    ms_latest_buf *b = (ms_latest_buf *)(l->bufs +
                                         (uint64_t)(a->v->buffer % l->buffers) * l->stride);
    if (ms_load64(&b->seq) != a->v->seq)
        return MS_E_OVERWRITTEN;
    if (a->n) {
        memcpy(a->dst, (const uint8_t *)b + MS_LATEST_BUF_HEADER + a->offset, a->n);
        fence_acquire();
        if (ms_load_relaxed64(&b->seq) != a->v->seq)
            return MS_E_OVERWRITTEN;
    }
    return MS_OK;
}

ms_status ms_latest_copy(ms_latest_handle *l, const ms_latest_view *v, uint64_t offset,
                         void *dst, size_t n)
{
    if (offset > l->max_size || (uint64_t)n > l->max_size - offset)
        return MS_E_INVALID;
    struct copy_args a = { l, v, offset, (uint8_t *)dst, n };
    ms_status st = ms_p_guarded_call(copy_fn, &a);
    if (st == MS_E_FAULT)
        ms_segment_fault(l->seg);
    return st;
}

/* ---- versions and waiting -------------------------------------------------------- */

uint64_t ms_latest_version(ms_latest_handle *l)
{
    return ms_load64(&l->lt->version);
}

static int newer_pred(void *arg)
{
    ms_latest_waitarg *a = (ms_latest_waitarg *)arg;
    return ms_load64(&a->lt->version) > a->since || (a->abort && *a->abort);
}

struct wait_args {
    ms_latest_handle *l;
    ms_latest_waitarg w;
    const ms_wait_opts *o;
};

static ms_status wait_fn(void *arg)
{
    struct wait_args *a = (struct wait_args *)arg;
    ms_latest_handle *l = a->l;
    const ms_wait_opts *o = a->o;
    if (newer_pred(&a->w))
        return MS_OK;
    if (o->timeout_ns == 0)
        return MS_E_TIMEOUT;
    /* spin here, before claiming a sleeper entry: a wait that the spin satisfies (the
     * usual case with a busy writer) touches no table */
    ms_wait_opts rest = *o;
    if (o->spin_ns > 0) {
        uint64_t start = ms_p_monotonic_ns();
        int64_t budget = o->spin_ns;
        if (o->timeout_ns > 0 && o->timeout_ns < budget)
            budget = o->timeout_ns;
        if (ms_spin_until(newer_pred, &a->w, budget))
            return MS_OK;
        rest.spin_ns = 0;
        if (o->timeout_ns > 0) {
            uint64_t spent = ms_p_monotonic_ns() - start;
            rest.timeout_ns = spent >= (uint64_t)o->timeout_ns
                                  ? 0 : o->timeout_ns - (int64_t)spent;
            if (rest.timeout_ns == 0)
                return newer_pred(&a->w) ? MS_OK : MS_E_TIMEOUT;
        }
    }
    ms_latest_sleeper *e = claim_sleeper(l->lt);
    rest.mark = e ? &e->count : NULL;   /* NULL: the table is full, sleep unlisted */
    ms_status st = ms_wait_for(l->seg, MS_SLOT_VERSION, &l->lt->update_seq, &l->lt->waiters,
                               newer_pred, &a->w, &rest);
    if (e)
        release_sleeper(e);
    return st;
}

ms_status ms_latest_wait(ms_latest_handle *l, uint64_t since, const ms_wait_opts *o,
                         uint64_t *now)
{
    struct wait_args a = { l, { l->lt, since, &l->abort_waits }, o };
    ms_status st = ms_p_guarded_call(wait_fn, &a);
    if (st == MS_E_FAULT)
        ms_segment_fault(l->seg);
    if (now)
        *now = ms_latest_version(l);
    return st;
}

static ms_status abort_fn(void *arg)
{
    ms_latest_handle *l = (ms_latest_handle *)arg;
    ms_wake_waiters(l->seg, MS_SLOT_VERSION, &l->lt->update_seq, &l->lt->waiters);
    return MS_OK;
}

void ms_latest_abort_waits(ms_latest_handle *l)
{
    l->abort_waits = 1;
    ms_fence();
    if (ms_p_guarded_call(abort_fn, l) == MS_E_FAULT)
        ms_segment_fault(l->seg);
}

void ms_latest_waitable(ms_latest_handle *l, ms_latest_waitarg *a, uint64_t since,
                        ms_waitable *w)
{
    a->lt = l->lt;
    a->since = since;
    a->abort = NULL;
    a->l = NULL;
    a->sleeper = NULL;
    w->seg = l->seg;
    w->slot = MS_SLOT_VERSION;
    w->word = &l->lt->update_seq;
    w->waiters = &l->lt->waiters;
    w->ready = newer_pred;
    w->arg = a;
}

static ms_status claim_fn(void *arg)
{
    ms_latest_waitarg *a = (ms_latest_waitarg *)arg;
    a->sleeper = claim_sleeper(a->lt);
    return MS_OK;
}

void ms_latest_waitable_listed(ms_latest_handle *l, ms_latest_waitarg *a, uint64_t since,
                               ms_waitable *w)
{
    ms_latest_waitable(l, a, since, w);
    if (ms_p_guarded_call(claim_fn, a) == MS_E_FAULT) {
        ms_segment_fault(l->seg);
        a->sleeper = NULL;  /* the wait sees the fault and ends */
    }
    a->l = l;
    w->mark = a->sleeper ? &a->sleeper->count : NULL;
}

static ms_status release_fn(void *arg)
{
    release_sleeper((ms_latest_sleeper *)arg);
    return MS_OK;
}

void ms_latest_waitable_done(ms_latest_waitarg *a)
{
    if (!a->l || !a->sleeper)
        return;
    if (ms_p_guarded_call(release_fn, a->sleeper) == MS_E_FAULT)
        ms_segment_fault(a->l->seg);
    a->sleeper = NULL;
}

static ms_status stats_fn(void *arg)
{
    void **p = (void **)arg;
    ms_latest_handle *l = (ms_latest_handle *)p[0];
    ms_latest_stats *st = (ms_latest_stats *)p[1];
    ms_latest_view v;
    struct read_args a = { l, NULL, NULL, NULL, NULL, &v };
    ms_status s = read_fn(&a);
    if (s != MS_OK)
        return s;
    st->version = v.version;
    st->length = v.length;
    st->kind = v.kind;
    st->max_size = l->max_size;
    st->buffers = l->buffers;
    st->waiters = ms_load_relaxed32(&l->lt->waiters);
    st->writer_deaths = ms_load_relaxed64(&l->lt->writer_deaths);
    st->reserved = 0;
    return MS_OK;
}

ms_status ms_latest_statistics(ms_latest_handle *l, ms_latest_stats *st)
{
    void *p[2] = { l, st };
    ms_status s = ms_p_guarded_call(stats_fn, p);
    if (s == MS_E_FAULT)
        ms_segment_fault(l->seg);
    return s;
}
