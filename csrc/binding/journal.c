/* mapshare._core's journal functions: the mechanism of mapshare.Journal (_journal.py).
 *
 * Module-level functions over buffers (the mmap objects of the journal's meta and segment
 * files): a held Py_buffer keeps the mapping alive for the call, and an mmap with exports
 * refuses to close, so no pointer outlives its mapping.  Record work runs under the fault
 * guard (a file truncated under us is SegmentFaultError, never SIGBUS); waits and lock
 * acquisitions release the GIL and come back for signals every slice.
 */
#include "binding.h"
#include "../journal.h"
#include "../platform/platform.h"
#include "../sync.h"

#define J_SLICE_NS 100000000LL   /* longest sleep between signal checks */
#define J_RO_SLICE_NS 2000000LL  /* read-only waiters cannot count themselves: re-check */
#define J_SPIN_NS 50000LL        /* a reader at the tail spins this long before sleeping, as
                                  * a Channel receiver does: an appender on another core
                                  * usually commits the next record within it, and a futex
                                  * wake costs the appender a system call per record */

typedef struct {
    volatile uint32_t *word;
    uint32_t expected;
} jspin;

static int word_moved(void *arg)
{
    jspin *p = (jspin *)arg;
    return ms_load_sc32(p->word) != p->expected;
}

typedef struct {
    Py_buffer view;
    uint8_t *base;
    uint64_t size;
} jbuf;

static int jbuf_get(PyObject *obj, int writable, jbuf *b)
{
    if (PyObject_GetBuffer(obj, &b->view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return -1;
    b->base = (uint8_t *)b->view.buf;
    b->size = (uint64_t)b->view.len;
    return 0;
}

static int off_in(jbuf *b, unsigned long long off, unsigned long long n)
{
    if (off % (n >= 8 ? 8 : 4) || off > b->size || n > b->size - off) {
        PyErr_SetString(PyExc_ValueError, "journal: offset out of range");
        return -1;
    }
    return 0;
}

static PyObject *j_raise(ms_status st, int err, const char *what)
{
    return raise_status(st, err, what);
}

/* ---- the wait context: the named objects of a journal on Windows -------------------- */

/* The meta file's wait id (src/mapshare/_journal.py M_WAIT_ID): a random u64 written at
 * creation, from which Windows names the journal's mutex (the append lock) and semaphore
 * (the readers' wait) -- "/mapshare.journal.<id in hex>" + the platform layer's '#' suffix.
 * The slot keys of a journal's words are their byte offsets in the meta file. */
#define JM_WAIT_ID 32

#ifdef _WIN32
/* Windows has no cross-process futex or robust mutex inside a mapping: the lock and the
 * waits go through named kernel objects (csrc/platform/windows.c), reached through a
 * wait context per journal.  Contexts are kept for the process's lifetime in a small
 * table keyed by wait id (found under the GIL, which every caller holds here): a journal
 * opened again reuses its context, and a handle closed while another thread of this
 * process still sleeps on it cannot pull the context from under that sleeper. */
typedef struct {
    uint64_t id;
    ms_waitctx *ctx;
} jctx_entry;
static jctx_entry *jctx_tab;
static size_t jctx_n, jctx_cap;

static int jctx(jbuf *mb, ms_waitctx **out)
{
    int err = 0;
    char name[64];
    ms_waitctx *ctx;
    uint64_t id;
    if (mb->size < JM_WAIT_ID + 8) {
        j_raise(MS_E_LAYOUT, 0, "journal meta file");
        return -1;
    }
    id = ms_load64(mb->base + JM_WAIT_ID);
    if (id == 0) {
        /* a journal made before the wait id existed: it has no names on Windows */
        j_raise(MS_E_LAYOUT, 0, "journal meta file without a wait id");
        return -1;
    }
    for (size_t i = 0; i < jctx_n; i++)
        if (jctx_tab[i].id == id) {
            *out = jctx_tab[i].ctx;
            return 0;
        }
    if (jctx_n == jctx_cap) {
        size_t cap = jctx_cap ? jctx_cap * 2 : 16;
        jctx_entry *t = (jctx_entry *)PyMem_Realloc(jctx_tab, cap * sizeof *t);
        if (!t) {
            PyErr_NoMemory();
            return -1;
        }
        jctx_tab = t;
        jctx_cap = cap;
    }
    snprintf(name, sizeof name, "/mapshare.journal.%016llx", (unsigned long long)id);
    ms_status st = ms_p_waitctx_open(name, 0, &ctx, &err);
    if (st != MS_OK) {
        j_raise(st, err, "journal wait context");
        return -1;
    }
    jctx_tab[jctx_n].id = id;
    jctx_tab[jctx_n].ctx = ctx;
    jctx_n++;
    *out = ctx;
    return 0;
}
#else
/* Linux: the robust mutex and the futex live in the meta file itself. */
static int jctx(jbuf *mb, ms_waitctx **out)
{
    (void)mb;
    *out = NULL;
    return 0;
}
#endif

/* ---- records under the fault guard -------------------------------------------------- */

typedef struct {
    jbuf *b;
    uint64_t first, off, index, len, hint, limit;
    const void *data;
    uint64_t out1, out2, out3;
    uint32_t kind;
} jcall;

static ms_status g_put(void *arg)
{
    jcall *c = (jcall *)arg;
    uint64_t payload;
    ms_status st = ms_j_reserve(c->b->base, c->b->size, c->first, c->off, c->index, c->len,
                                c->kind, &payload);
    if (st != MS_OK)
        return st;
    memcpy(c->b->base + payload, c->data, c->len);
    return ms_j_commit(c->b->base, c->b->size, c->first, c->off, c->index, &c->out1);
}

static ms_status g_reserve(void *arg)
{
    jcall *c = (jcall *)arg;
    return ms_j_reserve(c->b->base, c->b->size, c->first, c->off, c->index, c->len, c->kind,
                        &c->out1);
}

static ms_status g_commit(void *arg)
{
    jcall *c = (jcall *)arg;
    return ms_j_commit(c->b->base, c->b->size, c->first, c->off, c->index, &c->out1);
}

static ms_status g_find(void *arg)
{
    jcall *c = (jcall *)arg;
    return ms_j_find(c->b->base, c->b->size, c->first, c->index, c->hint, (int)c->limit,
                     &c->out1, &c->out2,
                     &c->out3, &c->kind);
}

static ms_status g_scan(void *arg)
{
    jcall *c = (jcall *)arg;
    ms_j_scan(c->b->base, c->b->size, c->first, c->off, c->index, c->limit, &c->out1, &c->out2);
    return MS_OK;
}

static ms_status g_zero(void *arg)
{
    jcall *c = (jcall *)arg;
    c->out1 = ms_j_zero(c->b->base, c->b->size, c->off, c->limit);
    return MS_OK;
}

static int u64s(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, const char *fname,
                unsigned long long *out)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments", fname, want);
        return -1;
    }
    for (Py_ssize_t i = 1; i < want; i++)
        if (u64_arg(args[i], fname, UINT64_MAX, &out[i - 1]) < 0)
            return -1;
    return 0;
}

/* journal_put(buf, first_index, off, index, data, kind) -> next offset */
static PyObject *j_put(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[3], kind;
    jbuf b;
    Py_buffer data;
    (void)m;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "journal_put takes 6 arguments");
        return NULL;
    }
    if (u64s(args, 4, 4, "journal_put", a) < 0 || u64_arg(args[5], "kind", UINT32_MAX, &kind) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[4], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    if (jbuf_get(args[0], 1, &b) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    jcall c = {&b, a[0], a[1], a[2], (uint64_t)data.len, 0, 0, data.buf, 0, 0, 0, (uint32_t)kind};
    ms_status st = ms_p_guarded_call(g_put, &c);
    PyBuffer_Release(&b.view);
    PyBuffer_Release(&data);
    if (st != MS_OK)
        return j_raise(st, 0, "journal record");
    return PyLong_FromUnsignedLongLong(c.out1);
}

/* journal_reserve(buf, first_index, off, index, n, kind) -> payload offset */
static PyObject *j_reserve(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[5];
    jbuf b;
    (void)m;
    if (u64s(args, nargs, 6, "journal_reserve", a) < 0 || a[4] > UINT32_MAX ||
        jbuf_get(args[0], 1, &b) < 0)
        return PyErr_Occurred() ? NULL : j_raise(MS_E_INVALID, 0, "journal record kind");
    jcall c = {&b, a[0], a[1], a[2], a[3], 0, 0, NULL, 0, 0, 0, (uint32_t)a[4]};
    ms_status st = ms_p_guarded_call(g_reserve, &c);
    PyBuffer_Release(&b.view);
    if (st != MS_OK)
        return j_raise(st, 0, "journal record");
    return PyLong_FromUnsignedLongLong(c.out1);
}

/* journal_commit(buf, first_index, off, index) -> next offset */
static PyObject *j_commit(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[3];
    jbuf b;
    (void)m;
    if (u64s(args, nargs, 4, "journal_commit", a) < 0 || jbuf_get(args[0], 1, &b) < 0)
        return NULL;
    jcall c = {&b, a[0], a[1], a[2], 0, 0, 0, NULL, 0, 0, 0, 0};
    ms_status st = ms_p_guarded_call(g_commit, &c);
    PyBuffer_Release(&b.view);
    if (st != MS_OK)
        return j_raise(st, 0, "journal record");
    return PyLong_FromUnsignedLongLong(c.out1);
}

/* journal_find(buf, first_index, index, hint, scan) -> (offset, payload offset, length,
 * kind) */
static PyObject *j_find(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[4];
    jbuf b;
    (void)m;
    if (u64s(args, nargs, 5, "journal_find", a) < 0 || jbuf_get(args[0], 0, &b) < 0)
        return NULL;
    jcall c = {&b, a[0], 0, a[1], 0, a[2], a[3] != 0, NULL, 0, 0, 0, 0};
    ms_status st = ms_p_guarded_call(g_find, &c);
    PyBuffer_Release(&b.view);
    if (st != MS_OK)
        return j_raise(st, 0, "journal record");
    return Py_BuildValue("(KKKI)", (unsigned long long)c.out1, (unsigned long long)c.out2,
                         (unsigned long long)c.out3, (unsigned int)c.kind);
}

/* journal_scan(buf, first_index, off, index, limit) -> (end offset, end index) */
static PyObject *j_scan(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[4];
    jbuf b;
    (void)m;
    if (u64s(args, nargs, 5, "journal_scan", a) < 0 || jbuf_get(args[0], 0, &b) < 0)
        return NULL;
    jcall c = {&b, a[0], a[1], a[2], 0, 0, a[3], NULL, a[1], a[2], 0, 0};
    ms_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ms_p_guarded_call(g_scan, &c);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b.view);
    if (st != MS_OK)
        return j_raise(st, 0, "journal segment");
    return Py_BuildValue("(KK)", (unsigned long long)c.out1, (unsigned long long)c.out2);
}

/* journal_zero(buf, start, end) -> bytes that were not zero */
static PyObject *j_zero(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[2];
    jbuf b;
    (void)m;
    if (u64s(args, nargs, 3, "journal_zero", a) < 0 || jbuf_get(args[0], 1, &b) < 0)
        return NULL;
    jcall c = {&b, 0, a[0], 0, 0, 0, a[1], NULL, 0, 0, 0, 0};
    ms_status st = ms_p_guarded_call(g_zero, &c);
    PyBuffer_Release(&b.view);
    if (st != MS_OK)
        return j_raise(st, 0, "journal segment");
    return PyLong_FromUnsignedLongLong(c.out1);
}

static ms_status g_retable(void *arg)
{
    jcall *c = (jcall *)arg;
    c->out1 = ms_j_retable(c->b->base, c->b->size, c->first, c->limit);
    return MS_OK;
}

/* journal_retable(buf, first_index, limit) -> offset-table entries rewritten */
static PyObject *j_retable(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[2];
    jbuf b;
    (void)m;
    if (u64s(args, nargs, 3, "journal_retable", a) < 0 || jbuf_get(args[0], 1, &b) < 0)
        return NULL;
    jcall c = {&b, a[0], 0, 0, 0, 0, a[1], NULL, 0, 0, 0, 0};
    ms_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ms_p_guarded_call(g_retable, &c);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b.view);
    if (st != MS_OK)
        return j_raise(st, 0, "journal segment");
    return PyLong_FromUnsignedLongLong(c.out1);
}

/* journal_seg_init(buf, seq, first_index) */
static PyObject *j_seg_init(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[2];
    jbuf b;
    (void)m;
    if (u64s(args, nargs, 3, "journal_seg_init", a) < 0 || jbuf_get(args[0], 1, &b) < 0)
        return NULL;
    ms_status st = ms_j_seg_init(b.base, b.size, a[0], a[1]);
    PyBuffer_Release(&b.view);
    if (st != MS_OK)
        return j_raise(st, 0, "journal segment");
    Py_RETURN_NONE;
}

/* journal_seg_check(buf, seq) -> first_index */
static PyObject *j_seg_check(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[1];
    uint64_t first = 0;
    jbuf b;
    (void)m;
    if (u64s(args, nargs, 2, "journal_seg_check", a) < 0 || jbuf_get(args[0], 0, &b) < 0)
        return NULL;
    ms_status st = b.size < MS_J_SEG_HDR ? MS_E_LAYOUT : ms_j_seg_check(b.base, b.size, a[0], &first);
    PyBuffer_Release(&b.view);
    if (st != MS_OK)
        return j_raise(st == MS_E_INVALID ? MS_E_LAYOUT : st, 0, "journal segment header");
    return PyLong_FromUnsignedLongLong(first);
}

static PyObject *j_max_payload(PyObject *m, PyObject *arg)
{
    unsigned long long size;
    (void)m;
    if (u64_arg(arg, "segment_size", UINT64_MAX, &size) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(ms_j_max_payload(size));
}

/* journal_crc32c(data, crc=0) */
static PyObject *j_crc(PyObject *m, PyObject *args)
{
    Py_buffer data;
    unsigned int crc = 0;
    (void)m;
    if (!PyArg_ParseTuple(args, "y*|I:journal_crc32c", &data, &crc))
        return NULL;
    uint32_t r = ms_crc32c(crc, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(r);
}

/* ---- meta words ---------------------------------------------------------------------- */

/* journal_load(buf, off) -> u64 (acquire) */
static PyObject *j_load(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[1];
    jbuf b;
    (void)m;
    if (u64s(args, nargs, 2, "journal_load", a) < 0 || jbuf_get(args[0], 0, &b) < 0)
        return NULL;
    if (off_in(&b, a[0], 8) < 0) {
        PyBuffer_Release(&b.view);
        return NULL;
    }
    uint64_t v = ms_load64(b.base + a[0]);
    PyBuffer_Release(&b.view);
    return PyLong_FromUnsignedLongLong(v);
}

/* journal_store(buf, off, value) (release) */
static PyObject *j_store(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[2];
    jbuf b;
    (void)m;
    if (u64s(args, nargs, 3, "journal_store", a) < 0 || jbuf_get(args[0], 1, &b) < 0)
        return NULL;
    if (off_in(&b, a[0], 8) < 0) {
        PyBuffer_Release(&b.view);
        return NULL;
    }
    ms_store_sc64(b.base + a[0], a[1]);
    PyBuffer_Release(&b.view);
    Py_RETURN_NONE;
}

/* journal_store_max(buf, off, value): raise the word to value if it is lower. */
static PyObject *j_store_max(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[2];
    jbuf b;
    (void)m;
    if (u64s(args, nargs, 3, "journal_store_max", a) < 0 || jbuf_get(args[0], 1, &b) < 0)
        return NULL;
    if (off_in(&b, a[0], 8) < 0) {
        PyBuffer_Release(&b.view);
        return NULL;
    }
    volatile uint64_t *w = (volatile uint64_t *)(b.base + a[0]);
    uint64_t cur = ms_load64(w);
    while (cur < a[1] && !ms_cas64(w, &cur, (uint64_t)a[1]))
        ;
    PyBuffer_Release(&b.view);
    Py_RETURN_NONE;
}

/* journal_lock_init(buf, off) */
static PyObject *j_lock_init(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[1];
    jbuf b;
    int err = 0;
    (void)m;
    if (u64s(args, nargs, 2, "journal_lock_init", a) < 0 || jbuf_get(args[0], 1, &b) < 0)
        return NULL;
    if (off_in(&b, a[0], MS_LOCK_AREA) < 0) {
        PyBuffer_Release(&b.view);
        return NULL;
    }
    ms_status st = ms_p_lock_init(b.base + a[0], &err);
    PyBuffer_Release(&b.view);
    if (st != MS_OK)
        return j_raise(st, err, "journal append lock");
    Py_RETURN_NONE;
}

/* Take the robust lock at `area`: one try with the GIL, then slices without it, checking
 * signals between them.  MS_E_INTERRUPTED: a Python exception is set. */
static ms_status lock_slices(ms_waitctx *ctx, unsigned slot, void *area, int64_t timeout,
                             int *err)
{
    ms_status st = ms_p_lock_acquire(ctx, slot, area, 0, err);
    uint64_t start = ms_p_monotonic_ns();
    while (st == MS_E_TIMEOUT && timeout != 0) {
        int64_t slice = J_SLICE_NS;
        if (timeout > 0) {
            int64_t left = timeout - (int64_t)(ms_p_monotonic_ns() - start);
            if (left <= 0)
                break;
            if (left < slice)
                slice = left;
        }
        Py_BEGIN_ALLOW_THREADS
        st = ms_p_lock_acquire(ctx, slot, area, slice, err);
        Py_END_ALLOW_THREADS
        if (st == MS_E_TIMEOUT || st == MS_E_INTERRUPTED) {
            st = MS_E_TIMEOUT;
            if (PyErr_CheckSignals() < 0)
                return MS_E_INTERRUPTED;
        }
    }
    return st;
}

/* journal_lock(buf, off, timeout) -> 0 acquired, 1 acquired and its previous holder died
 * (the caller repairs, then releases), -1 timed out. */
static PyObject *j_lock(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[1];
    int64_t timeout;
    jbuf b;
    int err = 0;
    (void)m;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "journal_lock takes 3 arguments");
        return NULL;
    }
    if (u64s(args, 2, 2, "journal_lock", a) < 0 || parse_timeout(args[2], &timeout) < 0)
        return NULL;
    if (jbuf_get(args[0], 1, &b) < 0)
        return NULL;
    ms_waitctx *ctx;
    if (off_in(&b, a[0], MS_LOCK_AREA) < 0 || jctx(&b, &ctx) < 0) {
        PyBuffer_Release(&b.view);
        return NULL;
    }
    ms_status st = lock_slices(ctx, (unsigned)a[0], b.base + a[0], timeout, &err);
    PyBuffer_Release(&b.view);
    if (st == MS_E_INTERRUPTED)
        return NULL;
    if (st == MS_OK)
        return PyLong_FromLong(0);
    if (st == MS_E_OWNER_DIED)
        return PyLong_FromLong(1);
    if (st == MS_E_TIMEOUT)
        return PyLong_FromLong(-1);
    return j_raise(st, err, "journal append lock");
}

/* journal_unlock(buf, off) */
static PyObject *j_unlock(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[1];
    jbuf b;
    int err = 0;
    (void)m;
    if (u64s(args, nargs, 2, "journal_unlock", a) < 0 || jbuf_get(args[0], 1, &b) < 0)
        return NULL;
    ms_waitctx *ctx;
    if (off_in(&b, a[0], MS_LOCK_AREA) < 0 || jctx(&b, &ctx) < 0) {
        PyBuffer_Release(&b.view);
        return NULL;
    }
    ms_status st = ms_p_lock_release(ctx, (unsigned)a[0], b.base + a[0], &err);
    PyBuffer_Release(&b.view);
    if (st != MS_OK)
        return j_raise(st, err, "journal append lock");
    Py_RETURN_NONE;
}

/* journal_wait(buf, word_off, waiters_off, expected, timeout) -> True if the word moved
 * away from `expected`, False on timeout.  waiters_off: the waiter count beside the word
 * (counted only in a writable buffer: a read-only waiter cannot count itself, so it
 * re-checks every J_RO_SLICE_NS instead). */
static PyObject *j_wait(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[3];
    int64_t timeout;
    jbuf b;
    (void)m;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "journal_wait takes 5 arguments");
        return NULL;
    }
    if (u64s(args, 4, 4, "journal_wait", a) < 0 || parse_timeout(args[4], &timeout) < 0)
        return NULL;
    if (jbuf_get(args[0], 0, &b) < 0)
        return NULL;
    ms_waitctx *ctx;
    if (off_in(&b, a[0], 4) < 0 || off_in(&b, a[1], 4) < 0 || jctx(&b, &ctx) < 0) {
        PyBuffer_Release(&b.view);
        return NULL;
    }
    volatile uint32_t *word = (volatile uint32_t *)(b.base + a[0]);
    volatile uint32_t *waiters = (volatile uint32_t *)(b.base + a[1]);
    uint32_t expected = (uint32_t)a[2];
    int counted = !b.view.readonly;
    int moved = 0;
    uint64_t start = ms_p_monotonic_ns();
    if (timeout != 0 && ms_load_sc32(word) == expected) {
        jspin sp = {word, expected};
        int64_t spin = timeout > 0 && timeout < J_SPIN_NS ? timeout : J_SPIN_NS;
        Py_BEGIN_ALLOW_THREADS
        ms_spin_until(word_moved, &sp, spin);
        Py_END_ALLOW_THREADS
    }
    if (counted)
        ms_add32(waiters, 1);
    for (;;) {
        if (ms_load_sc32(word) != expected) {
            moved = 1;
            break;
        }
        int64_t slice = counted ? J_SLICE_NS : J_RO_SLICE_NS;
        if (timeout >= 0) {
            int64_t left = timeout - (int64_t)(ms_p_monotonic_ns() - start);
            if (left <= 0)
                break;
            if (left < slice)
                slice = left;
        }
        Py_BEGIN_ALLOW_THREADS
        ms_p_wait32(ctx, (unsigned)a[0], word, expected, slice);
        Py_END_ALLOW_THREADS
        if (PyErr_CheckSignals() < 0) {
            if (counted)
                ms_add32(waiters, (uint32_t)-1);
            PyBuffer_Release(&b.view);
            return NULL;
        }
    }
    if (counted)
        ms_add32(waiters, (uint32_t)-1);
    PyBuffer_Release(&b.view);
    return PyBool_FromLong(moved);
}

/* journal_wake(buf, word_off, waiters_off): bump the word, wake its sleepers if any. */
static PyObject *j_wake(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[2];
    jbuf b;
    (void)m;
    if (u64s(args, nargs, 3, "journal_wake", a) < 0 || jbuf_get(args[0], 1, &b) < 0)
        return NULL;
    ms_waitctx *ctx;
    if (off_in(&b, a[0], 4) < 0 || off_in(&b, a[1], 4) < 0 || jctx(&b, &ctx) < 0) {
        PyBuffer_Release(&b.view);
        return NULL;
    }
    volatile uint32_t *word = (volatile uint32_t *)(b.base + a[0]);
    ms_add32(word, 1);   /* sequentially consistent: ordered before the waiter-count read */
    if (ms_load_sc32((volatile uint32_t *)(b.base + a[1])) != 0)
        ms_p_wake32(ctx, (unsigned)a[0], word, 1);
    PyBuffer_Release(&b.view);
    Py_RETURN_NONE;
}

/* The meta words the one-call append uses (src/mapshare/_journal.py M_*). */
#define JM_LOCK 64
#define JM_COMMITTED 128
#define JM_TAIL_SEQ 136
#define JM_TAIL_OFF 144
#define JM_NOTIFY 192
#define JM_WAITERS 196
#define JM_SIZE 8192

/* The one-call append under the lock, shared by journal_append and
 * JournalAppender.append: returns the record's index (>= 0), or -1: segment `seq` is full
 * (the caller rolls under the lock and retries), -2: the tail is another segment now (the
 * caller maps it and retries), -3: the lock's previous holder died: the lock is HELD, the
 * caller repairs the tail, releases it and retries, -99: a signal handler raised (a
 * Python exception is set), -100: *st (with *err) says what failed. */
static long long append_core(jbuf *mb, jbuf *sb, uint64_t first, uint64_t seq,
                             const void *data, uint64_t len, uint32_t kind, ms_status *st,
                             int *err)
{
    *st = MS_OK;
    if (mb->size < JM_SIZE)
        return -100;
    ms_waitctx *ctx;
    if (jctx(mb, &ctx) < 0)
        return -99;
    void *area = mb->base + JM_LOCK;
    *st = lock_slices(ctx, JM_LOCK, area, -1, err);
    if (*st == MS_E_INTERRUPTED)
        return -99;
    if (*st == MS_E_OWNER_DIED)
        return -3;
    if (*st != MS_OK)
        return -100;
    if (ms_load64(mb->base + JM_TAIL_SEQ) != seq) {
        ms_p_lock_release(ctx, JM_LOCK, area, err);
        return -2;
    }
    uint64_t index = ms_load64(mb->base + JM_COMMITTED);
    jcall c = {sb, first, ms_load64(mb->base + JM_TAIL_OFF), index, len, 0, 0, data, 0, 0, 0,
               kind};
    *st = ms_p_guarded_call(g_put, &c);
    if (*st == MS_OK) {
        ms_store64(mb->base + JM_TAIL_OFF, c.out1);
        ms_store_sc64(mb->base + JM_COMMITTED, index + 1);
    }
    ms_p_lock_release(ctx, JM_LOCK, area, err);
    if (*st == MS_E_FULL)
        return -1;
    if (*st != MS_OK)
        return -100;
    volatile uint32_t *word = (volatile uint32_t *)(mb->base + JM_NOTIFY);
    ms_add32(word, 1);   /* sequentially consistent: ordered before the waiter-count read */
    if (ms_load_sc32((volatile uint32_t *)(mb->base + JM_WAITERS)) != 0)
        ms_p_wake32(ctx, JM_NOTIFY, word, 1);
    return (long long)index;
}

/* journal_append(meta, seg, first_index, seq, data, kind) -> the record's index (>= 0),
 * or -1 (full), -2 (rolled), -3 (previous holder died: the lock is HELD), as
 * append_core.  One call takes the append lock, writes, checksums and commits the record,
 * publishes the index and wakes sleeping readers (the "os-batch" hot path). */
static PyObject *j_append(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[2], kind;
    jbuf mb, sb;
    Py_buffer data;
    int err = 0;
    ms_status st = MS_OK;
    (void)m;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "journal_append takes 6 arguments");
        return NULL;
    }
    if (u64_arg(args[2], "first_index", UINT64_MAX, &a[0]) < 0 ||
        u64_arg(args[3], "seq", UINT64_MAX, &a[1]) < 0 ||
        u64_arg(args[5], "kind", UINT32_MAX, &kind) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[4], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    if (jbuf_get(args[0], 1, &mb) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (jbuf_get(args[1], 1, &sb) < 0) {
        PyBuffer_Release(&mb.view);
        PyBuffer_Release(&data);
        return NULL;
    }
    long long result = append_core(&mb, &sb, a[0], a[1], data.buf, (uint64_t)data.len,
                                   (uint32_t)kind, &st, &err);
    PyBuffer_Release(&sb.view);
    PyBuffer_Release(&mb.view);
    PyBuffer_Release(&data);
    if (result == -99)
        return NULL;
    if (result == -100)
        return j_raise(st == MS_OK ? MS_E_LAYOUT : st, err,
                       st == MS_OK || st == MS_E_INVALID ? "journal append lock"
                                                          : "journal record");
    return PyLong_FromLongLong(result);
}

/* ---- files ---------------------------------------------------------------------------- */

static int fd_arg(PyObject *obj, int *fd)
{
    int v = PyObject_AsFileDescriptor(obj);
    if (v < 0)
        return -1;
    *fd = v;
    return 0;
}

/* journal_allocate(fd, size): the file is `size` bytes with its storage allocated
 * (NoSpaceError on a full disk, here and not as a fault on the mapping later). */
static PyObject *j_allocate(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long size;
    int fd, err = 0;
    ms_status st;
    (void)m;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "journal_allocate takes 2 arguments");
        return NULL;
    }
    if (fd_arg(args[0], &fd) < 0 || u64_arg(args[1], "size", (unsigned long long)INT64_MAX, &size) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    st = ms_p_file_allocate(fd, size, &err);
    Py_END_ALLOW_THREADS
    if (st != MS_OK)
        return j_raise(st, err, "journal file");
    Py_RETURN_NONE;
}

/* journal_flock(fd, exclusive): take (True) or drop (False) the whole-file lock of the
 * group commit; the OS drops it when its holder dies. */
static PyObject *j_flock(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    int fd, ex, err = 0;
    ms_status st;
    (void)m;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "journal_flock takes 2 arguments");
        return NULL;
    }
    if (fd_arg(args[0], &fd) < 0 || (ex = PyObject_IsTrue(args[1])) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    st = ms_p_file_lock(fd, ex, &err);
    Py_END_ALLOW_THREADS
    if (st != MS_OK)
        return j_raise(st, err, "journal flush lock");
    Py_RETURN_NONE;
}

/* journal_restrict(path, mode): the permission of a journal's file or directory (the
 * owner-only DACL on Windows, chmod on POSIX). */
static PyObject *j_restrict(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *bytes = NULL;
    unsigned long long mode;
    int err = 0;
    ms_status st;
    (void)m;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "journal_restrict takes 2 arguments");
        return NULL;
    }
    if (u64_arg(args[1], "mode", 07777, &mode) < 0)
        return NULL;
    /* UTF-8, what the platform layer's paths are (Windows widens them) */
    if (!PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "journal_restrict: path must be a str");
        return NULL;
    }
    if (!(bytes = PyUnicode_AsUTF8String(args[0])))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    st = ms_p_path_restrict(PyBytes_AS_STRING(bytes), (unsigned)mode, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(bytes);
    if (st != MS_OK)
        return j_raise(st, err, "journal file permission");
    Py_RETURN_NONE;
}

/* ---- JournalAppender: Journal.append as one C call ------------------------------------ */

/* A "process"-mode journal's append, bound at open (Journal.append is this object's
 * append method): one C call from Python to a committed record, no Python frame around
 * it.  It keeps the meta and tail-segment mmaps and takes their buffers per call (an mmap
 * with exports refuses to close, so neither can be unmapped under a call, even one waiting
 * for the lock without the GIL).  Everything but the hot path goes to `slow(data, code)`,
 * the Python policy: code -1 (full: roll), -2 (another segment is the tail), -3 (the
 * lock's previous holder died: the lock is held, repair first), -4 (too large, or
 * released: the general path raises the right error). */
typedef struct {
    PyObject_HEAD
    PyObject *meta;
    PyObject *seg;
    PyObject *slow;
    uint64_t first;
    uint64_t seq;
} JAppenderObject;

static int ja_traverse(JAppenderObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->meta);
    Py_VISIT(self->seg);
    Py_VISIT(self->slow);
    return 0;
}

static int ja_clear(JAppenderObject *self)
{
    Py_CLEAR(self->meta);
    Py_CLEAR(self->seg);
    Py_CLEAR(self->slow);
    return 0;
}

static void ja_dealloc(JAppenderObject *self)
{
    PyObject_GC_UnTrack(self);
    ja_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *ja_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *meta, *seg, *slow;
    unsigned long long first, seq;
    static char *kw[] = {"meta", "seg", "first_index", "seq", "slow", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOKKO:JournalAppender", kw, &meta, &seg,
                                     &first, &seq, &slow))
        return NULL;
    if (!PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "JournalAppender: slow must be callable");
        return NULL;
    }
    JAppenderObject *self = (JAppenderObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    Py_INCREF(meta);
    Py_INCREF(seg);
    Py_INCREF(slow);
    self->meta = meta;
    self->seg = seg;
    self->slow = slow;
    self->first = first;
    self->seq = seq;
    return (PyObject *)self;
}

static PyObject *ja_slow(JAppenderObject *self, PyObject *data, long long code)
{
    PyObject *slow = self->slow;
    if (!slow) {
        PyErr_SetString(PyExc_ValueError, "journal is closed");
        return NULL;
    }
    Py_INCREF(slow);
    PyObject *r = PyObject_CallFunction(slow, "OL", data, code);
    Py_DECREF(slow);
    return r;
}

static PyObject *ja_append(JAppenderObject *self, PyObject *data)
{
    if (!self->meta || !self->seg)
        return ja_slow(self, data, -4);
    /* held for the call: a retarget() or release() from another thread while this one
     * waits for the lock without the GIL leaves these alive */
    PyObject *meta = self->meta, *seg = self->seg;
    uint64_t first = self->first, seq = self->seq;
    Py_buffer d;
    jbuf mb, sb;
    int err = 0;
    ms_status st = MS_OK;
    if (PyObject_GetBuffer(data, &d, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_INCREF(meta);
    Py_INCREF(seg);
    long long result;
    /* A mapping this handle closed meanwhile (close(); or its _refresh dropped a segment
     * truncate_before removed before a roll retargeted us) refuses its buffer: the
     * policy path then raises "closed" or finds the tail again. */
    if (jbuf_get(meta, 1, &mb) < 0) {
        PyErr_Clear();
        result = -4;
    } else if (jbuf_get(seg, 1, &sb) < 0) {
        PyErr_Clear();
        PyBuffer_Release(&mb.view);
        result = -2;
    } else {
        result = append_core(&mb, &sb, first, seq, d.buf, (uint64_t)d.len, 0, &st, &err);
        PyBuffer_Release(&sb.view);
        PyBuffer_Release(&mb.view);
    }
    PyBuffer_Release(&d);
    Py_DECREF(seg);
    Py_DECREF(meta);
    if (result >= 0)
        return PyLong_FromLongLong(result);
    if (result == -99)
        return NULL;
    if (result == -100) {
        if (st == MS_E_TOO_LARGE)
            return ja_slow(self, data, -4);
        return j_raise(st == MS_OK ? MS_E_LAYOUT : st, err,
                       st == MS_OK || st == MS_E_INVALID ? "journal append lock"
                                                          : "journal record");
    }
    return ja_slow(self, data, result);
}

static PyObject *ja_retarget(JAppenderObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long first, seq;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "retarget takes 3 arguments");
        return NULL;
    }
    if (u64_arg(args[1], "first_index", UINT64_MAX, &first) < 0 ||
        u64_arg(args[2], "seq", UINT64_MAX, &seq) < 0)
        return NULL;
    Py_INCREF(args[0]);
    Py_XSETREF(self->seg, args[0]);
    self->first = first;
    self->seq = seq;
    Py_RETURN_NONE;
}

static PyObject *ja_release(JAppenderObject *self, PyObject *unused)
{
    (void)unused;
    Py_CLEAR(self->meta);
    Py_CLEAR(self->seg);
    Py_RETURN_NONE;
}

static PyMethodDef ja_methods[] = {
    {"append", (PyCFunction)ja_append, METH_O,
     "append(data) -> index: lock, write, checksum, commit, publish, wake in one call."},
    {"retarget", (PyCFunction)(void (*)(void))ja_retarget, METH_FASTCALL,
     "retarget(seg, first_index, seq): appends go to this tail segment from now on."},
    {"release", (PyCFunction)ja_release, METH_NOARGS,
     "release(): drop the mmaps (the journal closes them); append then goes to slow."},
    {NULL, NULL, 0, NULL}
};

MS_BINDING_API PyTypeObject JournalAppender_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mapshare._core.JournalAppender",
    .tp_basicsize = sizeof(JAppenderObject),
    .tp_dealloc = (destructor)ja_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "JournalAppender(meta, seg, first_index, seq, slow): a journal's one-call "
              "append (Journal.append in 'process' mode).",
    .tp_traverse = (traverseproc)ja_traverse,
    .tp_clear = (inquiry)ja_clear,
    .tp_methods = ja_methods,
    .tp_new = ja_new,
};

/* ---- the tail reader: records in batches ------------------------------------------- */

#define J_BATCH_MAX 256

typedef struct {
    jbuf *b;
    uint64_t first, pos, end, hint;
    uint64_t n;
    uint64_t payload[J_BATCH_MAX], len[J_BATCH_MAX];
} jbatch;

/* Follow trusted records from `pos` while below `end`: each at the hint (where the last
 * one ended: sequential reading), else through the offset table. */
static ms_status g_batch(void *arg)
{
    jbatch *c = (jbatch *)arg;
    uint64_t off, payload, len, next, hint = c->hint;
    uint32_t kind;
    while (c->n < J_BATCH_MAX && c->pos + c->n < c->end) {
        uint64_t index = c->pos + c->n;
        if (hint && ms_j_check(c->b->base, c->b->size, c->first, hint, index, &payload, &len,
                               &kind, &next) == MS_OK) {
            off = hint;
        } else if (ms_j_find(c->b->base, c->b->size, c->first, index, 0, 0, &off, &payload,
                             &len, &kind) == MS_OK) {
            next = payload + ((len + 7) & ~(uint64_t)7);
        } else {
            break;   /* in the next segment (a roll), or damage: the caller decides */
        }
        (void)off;
        c->payload[c->n] = payload;
        c->len[c->n] = len;
        c->n++;
        hint = next;
    }
    c->hint = hint;
    return MS_OK;
}

/* journal_batch(meta, seg, first_index, pos, hint, max) -> (records, hint): up to `max`
 * committed records from index `pos` found in segment `seg` (an mmap), as a list of
 * (index, read-only memoryview) in one call, and the offset after the last one (the hint
 * for the next call).  An empty list: nothing committed from `pos` yet, or `pos` is not
 * in this segment.  The tail reader's iteration: one C call per batch of records. */
static PyObject *j_batch(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long a[4];
    jbuf mb, sb;
    (void)m;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "journal_batch takes 6 arguments");
        return NULL;
    }
    if (u64s(args + 1, 5, 5, "journal_batch", a) < 0)
        return NULL;
    if (jbuf_get(args[0], 0, &mb) < 0)
        return NULL;
    if (mb.size < JM_SIZE) {
        PyBuffer_Release(&mb.view);
        return j_raise(MS_E_LAYOUT, 0, "journal meta file");
    }
    uint64_t committed = ms_load64(mb.base + JM_COMMITTED);
    PyBuffer_Release(&mb.view);
    if (jbuf_get(args[1], 0, &sb) < 0)
        return NULL;
    jbatch c;
    c.b = &sb;
    c.first = a[0];
    c.pos = a[1];
    c.hint = a[2];
    c.n = 0;
    uint64_t want = a[3] < J_BATCH_MAX ? a[3] : J_BATCH_MAX;
    c.end = committed;
    if (c.pos < c.end && c.end - c.pos > want)
        c.end = c.pos + want;
    ms_status st = c.pos < c.end ? ms_p_guarded_call(g_batch, &c) : MS_OK;
    PyBuffer_Release(&sb.view);
    if (st != MS_OK)
        return j_raise(st, 0, "journal record");
    PyObject *list = PyList_New((Py_ssize_t)c.n);
    PyObject *ro = NULL;
    if (!list)
        return NULL;
    if (c.n) {
        /* one read-only view of the mapping per batch; each record is a slice of it (the
         * mmap stays mapped while any of them lives) */
        PyObject *mv = PyMemoryView_FromObject(args[1]);
        if (mv) {
            ro = PyObject_CallMethod(mv, "toreadonly", NULL);
            Py_DECREF(mv);
        }
        if (!ro)
            goto fail;
    }
    for (uint64_t k = 0; k < c.n; k++) {
        PyObject *lo = PyLong_FromUnsignedLongLong(c.payload[k]);
        PyObject *hi = PyLong_FromUnsignedLongLong(c.payload[k] + c.len[k]);
        PyObject *sl = lo && hi ? PySlice_New(lo, hi, NULL) : NULL;
        Py_XDECREF(lo);
        Py_XDECREF(hi);
        PyObject *view = sl ? PyObject_GetItem(ro, sl) : NULL;
        Py_XDECREF(sl);
        PyObject *idx = view ? PyLong_FromUnsignedLongLong(c.pos + k) : NULL;
        PyObject *rec = idx ? PyTuple_Pack(2, idx, view) : NULL;
        Py_XDECREF(idx);
        Py_XDECREF(view);
        if (!rec)
            goto fail;
        PyList_SET_ITEM(list, (Py_ssize_t)k, rec);
    }
    Py_XDECREF(ro);
    return Py_BuildValue("(NK)", list, (unsigned long long)c.hint);
fail:
    Py_XDECREF(ro);
    Py_DECREF(list);
    return NULL;
}

#define FAST(name, fn, doc) {name, (PyCFunction)(void (*)(void))fn, METH_FASTCALL, doc}
MS_BINDING_API PyMethodDef ms_journal_methods[] = {
    FAST("journal_append", j_append,
         "journal_append(meta, seg, first_index, seq, data, kind) -> index | -1 | -2 | -3"),
    FAST("journal_put", j_put, "journal_put(buf, first_index, off, index, data, kind) -> next"),
    FAST("journal_reserve", j_reserve, "journal_reserve(buf, first_index, off, index, n, kind) -> payload"),
    FAST("journal_commit", j_commit, "journal_commit(buf, first_index, off, index) -> next"),
    FAST("journal_batch", j_batch, "journal_batch(meta, seg, first_index, pos, hint, max) -> (records, hint)"),
    FAST("journal_find", j_find, "journal_find(buf, first_index, index, hint, scan) -> (off, payload, len, kind)"),
    FAST("journal_scan", j_scan, "journal_scan(buf, first_index, off, index, limit) -> (off, index)"),
    FAST("journal_retable", j_retable, "journal_retable(buf, first_index, limit) -> entries rewritten"),
    FAST("journal_zero", j_zero, "journal_zero(buf, start, end) -> bytes cleared"),
    FAST("journal_seg_init", j_seg_init, "journal_seg_init(buf, seq, first_index)"),
    FAST("journal_seg_check", j_seg_check, "journal_seg_check(buf, seq) -> first_index"),
    {"journal_max_payload", j_max_payload, METH_O, "journal_max_payload(segment_size) -> int"},
    {"journal_crc32c", j_crc, METH_VARARGS, "journal_crc32c(data, crc=0) -> int"},
    FAST("journal_load", j_load, "journal_load(buf, off) -> int"),
    FAST("journal_store", j_store, "journal_store(buf, off, value)"),
    FAST("journal_store_max", j_store_max, "journal_store_max(buf, off, value)"),
    FAST("journal_lock_init", j_lock_init, "journal_lock_init(buf, off)"),
    FAST("journal_lock", j_lock, "journal_lock(buf, off, timeout) -> 0 | 1 (owner died) | -1"),
    FAST("journal_unlock", j_unlock, "journal_unlock(buf, off)"),
    FAST("journal_wait", j_wait, "journal_wait(buf, word_off, waiters_off, expected, timeout) -> bool"),
    FAST("journal_wake", j_wake, "journal_wake(buf, word_off, waiters_off)"),
    FAST("journal_allocate", j_allocate, "journal_allocate(fd, size)"),
    FAST("journal_flock", j_flock, "journal_flock(fd, exclusive)"),
    FAST("journal_restrict", j_restrict, "journal_restrict(path, mode)"),
    {NULL, NULL, 0, NULL}
};
