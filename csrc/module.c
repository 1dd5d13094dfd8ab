/* mapshare._core: the only file that includes Python.h.
 *
 * It parses arguments, releases the GIL around every wait, and maps each ms_status to
 * exactly one Python exception class (registered from Python by mapshare._errors, so
 * that the hierarchy is policy, defined in one place).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "pycompat.h" /* C-API newer than the 3.9 floor */

#include "layout.h"
#include "ring.h"
#include "segment.h"
#include "sync.h"
#include "atomics.h"

#include <string.h>

/* ---- errors ------------------------------------------------------------------------- */

#define N_STATUS 32
static PyObject *error_classes[N_STATUS];

static PyObject *set_errors(PyObject *mod, PyObject *mapping)
{
    (void)mod;
    if (!PyDict_Check(mapping)) {
        PyErr_SetString(PyExc_TypeError, "expected a dict {status: exception class}");
        return NULL;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(mapping, &pos, &key, &value)) {
        long code = PyLong_AsLong(key);
        if (code < 0 || code >= N_STATUS) {
            PyErr_SetString(PyExc_ValueError, "status code out of range");
            return NULL;
        }
        Py_INCREF(value);
        Py_XSETREF(error_classes[code], value);
    }
    Py_RETURN_NONE;
}

static const char *status_text(ms_status st)
{
    switch (st) {
    case MS_E_OS: return "operating system error";
    case MS_E_NOT_FOUND: return "no such segment";
    case MS_E_EXISTS: return "a segment of that name already exists";
    case MS_E_PERMISSION: return "permission denied";
    case MS_E_LAYOUT: return "invalid or corrupt segment layout";
    case MS_E_TIMEOUT: return "timed out";
    case MS_E_INTERRUPTED: return "interrupted";
    case MS_E_OWNER_DIED: return "the previous owner died while holding the lock; "
                                 "it is now held by you";
    case MS_E_FULL: return "channel is full";
    case MS_E_EMPTY: return "channel is empty";
    case MS_E_CLOSED: return "end of channel: closed for sending and drained";
    case MS_E_TOO_LARGE: return "message is larger than the channel can ever hold";
    case MS_E_NOT_OWNER: return "lock is not held by this thread";
    case MS_E_NO_SPACE: return "no space left to reserve the storage";
    case MS_E_BUSY: return "busy";
    case MS_E_INITIALIZING: return "segment is still being initialized by its creator";
    case MS_E_DESTROYED: return "segment was destroyed";
    case MS_E_BROKEN: return "a sender died without closing the channel, and none is left";
    case MS_E_FAULT: return "the segment's memory vanished (truncated by another process?)";
    case MS_E_INVALID: return "invalid argument";
    case MS_E_VALUE: return "value out of range";
    case MS_E_ATTACH_LIMIT: return "the attach table is full of live processes";
    default: return "error";
    }
}

/* Raise the exception for `st`.  `what` names the object or operation. */
static PyObject *raise_status(ms_status st, int err, const char *what)
{
    if (st == MS_E_INTERRUPTED && PyErr_Occurred())
        return NULL;  /* the signal handler's exception (KeyboardInterrupt) */
    PyObject *cls = (st > 0 && st < N_STATUS) ? error_classes[st] : NULL;
    if (!cls)
        cls = st == MS_E_TIMEOUT ? PyExc_TimeoutError : PyExc_OSError;
    if (st == MS_E_OS || (err && (st == MS_E_NOT_FOUND || st == MS_E_EXISTS ||
                                  st == MS_E_PERMISSION || st == MS_E_NO_SPACE))) {
        /* OSError subclasses get (errno, strerror, filename) like the builtins */
#ifdef _WIN32
        /* OSError(errno, strerror, filename, winerror): errno is derived from winerror */
        PyObject *args = Py_BuildValue("(issi)", 0, status_text(st), what ? what : "", err);
#else
        PyObject *args = Py_BuildValue("(isss)", err, err ? strerror(err) : status_text(st),
                                       what ? what : "", status_text(st));
#endif
        if (args) {
            PyErr_SetObject(cls, args);
            Py_DECREF(args);
        }
        return NULL;
    }
    if (what)
        PyErr_Format(cls, "%s: %s", what, status_text(st));
    else
        PyErr_SetString(cls, status_text(st));
    return NULL;
}

/* ---- waiting with the GIL released ------------------------------------------------- */

typedef struct gil_wait {
    PyThreadState *ts;   /* saved thread state while the GIL is released */
    int main_thread;
} gil_wait;

/* ms_wait_opts.interrupted: reacquire the GIL, run signal handlers (which may raise
 * KeyboardInterrupt), release it again. */
static int check_signals(void *arg)
{
    gil_wait *g = (gil_wait *)arg;
    if (!g->main_thread)
        return 0;
    PyEval_RestoreThread(g->ts);
    int r = PyErr_CheckSignals();
    g->ts = PyEval_SaveThread();
    return r < 0;
}

static int is_main_thread(void)
{
    return _PyOS_IsMainThread();
}

/* Keyword arguments of the METH_FASTCALL methods, by name, without private APIs. */
static int fast_kwargs(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                       const char *const *names, PyObject **out, Py_ssize_t nout,
                       const char *fname)
{
    if (nargs > nout) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments", fname, nout);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        out[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t j;
        for (j = 0; j < nout; j++)
            if (PyUnicode_CompareWithASCIIString(key, names[j]) == 0)
                break;
        if (j == nout) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R",
                         fname, key);
            return -1;
        }
        if (j < nargs) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument %R",
                         fname, key);
            return -1;
        }
        out[j] = args[nargs + k];
    }
    return 0;
}

static int parse_timeout(PyObject *obj, int64_t *out)
{
    if (obj == NULL || obj == Py_None) {
        *out = -1;
        return 0;
    }
    if (PyBool_Check(obj) || !(PyFloat_Check(obj) || PyIndex_Check(obj))) {
        PyErr_Format(PyExc_TypeError, "timeout must be None or a number of seconds, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    double t = PyFloat_AsDouble(obj);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (t != t || t < 0) {
        PyErr_SetString(PyExc_ValueError, "timeout must be None or a number >= 0");
        return -1;
    }
    *out = t > 9e9 ? -1 : (int64_t)(t * 1e9);
    return 0;
}

/* Validate a timeout before a fast path that may not need it, so that a wrong one is
 * refused whether or not the call would have waited.  None and a float >= 0 cost one
 * comparison; anything else goes through the full parse. */
static inline int timeout_check(PyObject *obj)
{
    if (obj == Py_None || (PyFloat_CheckExact(obj) && PyFloat_AS_DOUBLE(obj) >= 0))
        return 0;
    int64_t unused;
    return parse_timeout(obj, &unused);
}

/* Sizes, offsets, lengths and counts: an int (never a bool) that fits the C type.
 * PyArg's "K" and "I" wrap silently (2**64 + 16 became 16), so every such argument goes
 * through here and an out-of-range value is a ValueError naming the argument. */
static int u64_arg(PyObject *obj, const char *what, unsigned long long max,
                   unsigned long long *out)
{
    if (PyBool_Check(obj) || !PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what,
                     Py_TYPE(obj)->tp_name);
        return 0;
    }
    PyObject *i = PyNumber_Index(obj);
    if (!i)
        return 0;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(i, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        Py_DECREF(i);
        return 0;
    }
    if (overflow < 0 || (!overflow && v < 0)) {
        PyErr_Format(PyExc_ValueError, "%s must be >= 0, not %R", what, i);
        Py_DECREF(i);
        return 0;
    }
    unsigned long long u = overflow ? PyLong_AsUnsignedLongLong(i) : (unsigned long long)v;
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        u = max;
        overflow = 2;  /* beyond 2**64 - 1 */
    }
    if (overflow == 2 || u > max) {
        PyErr_Format(PyExc_ValueError, "%s %R is too large (at most %llu)", what, i, max);
        Py_DECREF(i);
        return 0;
    }
    Py_DECREF(i);
    *out = u;
    return 1;
}

#define U64_CONVERTER(fname, what, max)                                      \
    static int fname(PyObject *obj, void *out)                               \
    {                                                                        \
        return u64_arg(obj, what, max, (unsigned long long *)out);           \
    }

U64_CONVERTER(conv_size, "size", (unsigned long long)INT64_MAX)
U64_CONVERTER(conv_offset, "offset", ULLONG_MAX)
U64_CONVERTER(conv_length, "length", ULLONG_MAX)
U64_CONVERTER(conv_dev, "dev", ULLONG_MAX)
U64_CONVERTER(conv_ino, "ino", ULLONG_MAX)

/* unsigned 32-bit counts and values (semaphores) */
static int u32_arg(PyObject *obj, const char *what, unsigned int *out)
{
    unsigned long long v;
    if (!u64_arg(obj, what, UINT32_MAX, &v))
        return 0;
    *out = (unsigned int)v;
    return 1;
}

static int conv_count(PyObject *obj, void *out) { return u32_arg(obj, "n", out); }

/* Py_ssize_t counts and byte lengths (loan sizes, batch sizes): never a bool, never
 * negative (PyArg's "n" takes True as 1). */
static int ssize_arg(PyObject *obj, const char *what, Py_ssize_t *out)
{
    unsigned long long v;
    if (!u64_arg(obj, what, (unsigned long long)PY_SSIZE_T_MAX, &v))
        return 0;
    *out = (Py_ssize_t)v;
    return 1;
}
static int conv_loan_size(PyObject *obj, void *out) { return ssize_arg(obj, "n", out); }
static int conv_max_messages(PyObject *obj, void *out)
{
    return ssize_arg(obj, "max_messages", out);
}
static int conv_value(PyObject *obj, void *out) { return u32_arg(obj, "value", out); }
static int conv_maximum(PyObject *obj, void *out) { return u32_arg(obj, "maximum", out); }

/* ---- Segment ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    ms_segment seg;
    int open;
    Py_ssize_t exports;       /* buffers exported by this object and its windows */
    int locks_held;           /* user-lock acquisitions through this handle */
    int64_t spin_ns;
    PyObject *weakreflist;
    Py_ssize_t waiting;       /* threads inside a GIL-released call on this handle */
    int unmap_pending;        /* closed while in use: 1 unmap when the last export goes,
                               * 2 when this object is deallocated */
    int keep_mapping;         /* closed while a lock or a waiting thread needed it: never
                               * unmap (a robust-list entry or C code still points in) */
    Py_ssize_t internal_refs; /* references held by this package's Lock and Channel objects,
                               * which touch the mapping only through the open checks of
                               * this object: close() does not count them as users of the
                               * memory (see _segment.Segment._close) */
} SegmentObject;

/* The mapping lives as long as anything exported from it: close() detaches at once but
 * leaves the unmapping to the release of the last buffer (numpy keeps a memoryview as its
 * base without holding an export of its own, so refusing or force-releasing would leave
 * arrays pointing at unmapped memory). */
static void seg_export_released(SegmentObject *s)
{
    if (s->exports == 0 && s->unmap_pending == 1 && !s->keep_mapping) {
        s->unmap_pending = 0;
        ms_segment_close(&s->seg);
    }
}

/* Every call that releases the GIL while it uses a handle's mappings counts itself in,
 * so that close() from another thread refuses instead of unmapping under it. */
static PyThreadState *seg_wait_begin(SegmentObject *s)
{
    s->waiting++;
    return PyEval_SaveThread();
}

static void seg_wait_end(SegmentObject *s, PyThreadState *ts)
{
    PyEval_RestoreThread(ts);
    s->waiting--;
}

#define SEG_ALLOW_THREADS(s, stmt)              \
    do {                                        \
        PyThreadState *_ts = seg_wait_begin(s); \
        stmt;                                   \
        seg_wait_end(s, _ts);                   \
    } while (0)

static PyTypeObject Segment_Type;

static int seg_check(SegmentObject *self)
{
    if (!self->open) {
        PyErr_SetString(PyExc_ValueError, "segment is closed");
        return -1;
    }
    if (self->seg.faulted) {
        raise_status(MS_E_FAULT, 0, NULL);
        return -1;
    }
    return 0;
}

static int seg_check_header(SegmentObject *self)
{
    if (seg_check(self) < 0)
        return -1;
    if (!self->seg.hdr) {
        PyErr_SetString(PyExc_TypeError, "a raw segment has no mapshare header");
        return -1;
    }
    return 0;
}

/* A call that touched shared memory without a guard may have faulted: the SIGBUS
 * handler then quarantined the mapping and set seg.faulted.  Report it at once. */
#define FAULTED(s) ((s)->seg.faulted)
#define RET_NONE(s) do { if (FAULTED(s)) return raise_status(MS_E_FAULT, 0, NULL); Py_RETURN_NONE; } while (0)
#define RET_TRUE(s) do { if (FAULTED(s)) return raise_status(MS_E_FAULT, 0, NULL); Py_RETURN_TRUE; } while (0)
#define RET_FALSE(s) do { if (FAULTED(s)) return raise_status(MS_E_FAULT, 0, NULL); Py_RETURN_FALSE; } while (0)
#define RET_OBJ(s, o)                                   \
    do {                                                \
        PyObject *_o = (o);                             \
        if (_o && FAULTED(s)) {                         \
            Py_DECREF(_o);                              \
            return raise_status(MS_E_FAULT, 0, NULL);   \
        }                                               \
        return _o;                                      \
    } while (0)

static SegmentObject *new_segment_object(void)
{
    SegmentObject *self = PyObject_New(SegmentObject, &Segment_Type);
    if (!self)
        return NULL;
    memset(&self->seg, 0, sizeof self->seg);
    self->seg.obj.handle = MS_NO_HANDLE;
    self->open = 0;
    self->exports = 0;
    self->locks_held = 0;
    self->spin_ns = 50000;
    self->waiting = 0;
    self->unmap_pending = 0;
    self->keep_mapping = 0;
    self->internal_refs = 0;
    self->weakreflist = NULL;
    return self;
}

static PyObject *core_create(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"osname", "name", "kind", "size", "path", "mode", "lifetime",
                             "flags", "init", NULL};
    const char *osname, *name, *path = NULL;
    unsigned int kind, mode = 0600, lifetime = MS_LIFETIME_SHARED, flags = 0;
    unsigned long long size;
    PyObject *init = Py_None;
    (void)mod;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ssIO&|zIIIO:create", kwlist, &osname, &name,
                                     &kind, conv_size, &size, &path, &mode, &lifetime, &flags,
                                     &init))
        return NULL;
    ms_kind_init_fn fn = NULL;
    void *arg = NULL;
    uint32_t initv[2] = {0, 0};
    if (kind == MS_KIND_EVENT) {
        fn = ms_event_init;
        initv[0] = init != Py_None && PyObject_IsTrue(init) ? 1 : 0;
        arg = initv;
    } else if (kind == MS_KIND_SEMAPHORE) {
        if (!PyArg_ParseTuple(init, "O&O&:semaphore init", conv_value, &initv[0],
                              conv_maximum, &initv[1]))
            return NULL;
        fn = ms_semaphore_init;
        arg = initv;
    } else if (kind == MS_KIND_CHANNEL) {
        fn = ms_ring_init;
    }
    SegmentObject *self = new_segment_object();
    if (!self)
        return NULL;
    int err = 0;
    ms_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ms_segment_create(&self->seg, osname, path, name, kind, size, mode, lifetime, flags,
                           fn, arg, &err);
    Py_END_ALLOW_THREADS
    if (st != MS_OK) {
        Py_DECREF(self);
        return raise_status(st, err, path ? path : name);
    }
    self->open = 1;
    return (PyObject *)self;
}

static PyObject *core_open(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"osname", "path", "kind", "access", "raw", "flags", NULL};
    const char *osname, *path = NULL;
    unsigned int kind = 0, flags = 0;
    int access = MS_ACCESS_WRITE, raw = 0;
    (void)mod;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sz|IipI:open", kwlist, &osname, &path, &kind,
                                     &access, &raw, &flags))
        return NULL;
    SegmentObject *self = new_segment_object();
    if (!self)
        return NULL;
    int err = 0;
    ms_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ms_segment_open(&self->seg, osname, path, kind, access, raw, flags, &err);
    Py_END_ALLOW_THREADS
    if (st != MS_OK) {
        Py_DECREF(self);
        return raise_status(st, err, path ? path : osname);
    }
    self->open = 1;
    return (PyObject *)self;
}

static PyObject *core_unlink(PyObject *mod, PyObject *args)
{
    const char *osname;
    unsigned int flags = 0;
    (void)mod;
    if (!PyArg_ParseTuple(args, "s|I:unlink", &osname, &flags))
        return NULL;
    int err = 0;
    ms_status st = ms_p_object_unlink(osname, flags, &err);
    if (st != MS_OK)
        return raise_status(st, err, osname);
    Py_RETURN_NONE;
}

static int list_append(const char *osname, void *arg)
{
    PyObject *s = PyUnicode_DecodeFSDefault(osname);
    if (!s || PyList_Append((PyObject *)arg, s) < 0) {
        Py_XDECREF(s);
        return -1;   /* stop: a Python error is set */
    }
    Py_DECREF(s);
    return 0;
}

/* list_objects(flags=0) -> list of the OS names of mapshare objects ("/mapshare.x"). */
static PyObject *core_list_objects(PyObject *mod, PyObject *args)
{
    unsigned int flags = 0;
    (void)mod;
    if (!PyArg_ParseTuple(args, "|I:list_objects", &flags))
        return NULL;
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    int err = 0;
    ms_status st = ms_p_object_list(flags, list_append, out, &err);
    if (PyErr_Occurred()) {
        Py_DECREF(out);
        return NULL;
    }
    if (st != MS_OK) {
        Py_DECREF(out);
        return raise_status(st, err, "list_objects");
    }
    if (PyList_Sort(out) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* Remove a name only if it still names the object (dev, ino) we used: a name that was
 * re-created by someone else since must not be taken from them. */
static PyObject *core_unlink_if_same(PyObject *mod, PyObject *args)
{
    const char *osname;
    unsigned long long dev, ino;
    unsigned int flags = 0;
    (void)mod;
    if (!PyArg_ParseTuple(args, "sO&O&|I:unlink_if_same", &osname, conv_dev, &dev, conv_ino,
                          &ino, &flags))
        return NULL;
    ms_object obj;
    ms_object_stat st;
    int err = 0;
    ms_status s = ms_p_object_open(osname, NULL, 0, flags, &obj, &err);
    if (s == MS_E_NOT_FOUND)
        Py_RETURN_FALSE;
    if (s != MS_OK)
        return raise_status(s, err, osname);
    s = ms_p_object_stat(&obj, &st, &err);
    ms_p_object_close(&obj);
    if (s != MS_OK)
        return raise_status(s, err, osname);
    if (st.dev != dev || st.ino != ino)
        Py_RETURN_FALSE;
    s = ms_p_object_unlink(osname, flags, &err);
    if (s == MS_E_NOT_FOUND)
        Py_RETURN_FALSE;
    if (s != MS_OK)
        return raise_status(s, err, osname);
    Py_RETURN_TRUE;
}

/* reclaim(osname, flags=0, unfinished_ok=False) -> int (RECLAIM_*): see
 * ms_segment_reclaim. */
static PyObject *core_reclaim(PyObject *mod, PyObject *args)
{
    const char *osname;
    unsigned int flags = 0;
    int unfinished_ok = 0;
    (void)mod;
    if (!PyArg_ParseTuple(args, "s|Ip:reclaim", &osname, &flags, &unfinished_ok))
        return NULL;
    int err = 0, result = MS_RECLAIM_KEPT;
    ms_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ms_segment_reclaim(osname, flags, unfinished_ok, &result, &err);
    Py_END_ALLOW_THREADS
    if (st == MS_E_PERMISSION || st == MS_E_FAULT || st == MS_E_LAYOUT)
        return PyLong_FromLong(MS_RECLAIM_KEPT);  /* not ours to take */
    if (st != MS_OK)
        return raise_status(st, err, osname);
    return PyLong_FromLong(result);
}

static PyObject *core_process_alive(PyObject *mod, PyObject *args)
{
    unsigned int pid;
    unsigned long long start = 0;
    (void)mod;
    if (!PyArg_ParseTuple(args, "I|K:process_alive", &pid, &start))
        return NULL;
    return PyLong_FromLong(ms_p_process_alive(pid, start));
}

static PyObject *core_process_start(PyObject *mod, PyObject *args)
{
    unsigned int pid;
    (void)mod;
    if (!PyArg_ParseTuple(args, "I:process_start", &pid))
        return NULL;
    return PyLong_FromUnsignedLongLong(ms_p_process_start(pid));
}

static void *lock_area(SegmentObject *self, int which, unsigned *slot);

/* Release the locks this thread holds through this handle (a normal exit or a collected
 * handle is not a crash: the next acquirer must not be told the owner died).  Locks held
 * by other threads stay held.  Returns how many remain held. */
static int seg_release_own_locks(SegmentObject *self)
{
    for (int which = 0; which < 3 && self->locks_held; which++) {
        if (!(self->locks_held & (1 << which)))
            continue;
        unsigned slot;
        void *area = self->seg.hdr && !self->seg.faulted ? lock_area(self, which, &slot) : NULL;
        if (area && ms_lock_release(&self->seg, slot, area, NULL) == MS_OK)
            self->locks_held &= ~(1 << which);
    }
    return self->locks_held != 0;
}

/* Detach and close the handle.  force: the exit path (interpreter exit, a collected
 * handle): release this thread's locks instead of refusing, and when a lock stays held by
 * another thread or a thread still waits inside, detach but leave the mapping in place.
 * Returns -1 with an exception set (not forced), else whether this was the last user. */
static int segment_close_impl(SegmentObject *self, int detach, int force, int defer,
                              const char *remove_osname, unsigned remove_flags)
{
    if (self->locks_held > 0) {
        if (!force) {
            PyErr_SetString(PyExc_BufferError,
                            "cannot close: a lock in this segment is held through this handle");
            return -1;
        }
        if (seg_release_own_locks(self))
            self->keep_mapping = 1;
    }
    if (self->waiting > 0) {
        if (!force) {
            PyErr_Format(PyExc_BufferError,
                         "cannot close: %zd thread(s) are waiting in this segment",
                         self->waiting);
            return -1;
        }
        self->keep_mapping = 1;
    }
    int last = 0;
    /* Closed before the GIL is let go below: no other thread starts using the mapping
     * from here on (every entry point checks `open`). */
    self->open = 0;
    if (detach && self->seg.attached && !self->seg.faulted) {
        int err = 0;
        ms_status st;
        Py_BEGIN_ALLOW_THREADS
        st = ms_segment_detach(&self->seg, &last, &err);
        Py_END_ALLOW_THREADS
        (void)st;  /* a stuck meta lock must not stop us from closing */
    }
    self->seg.attached = 0;
    if (last && remove_osname) {
        /* the last user removes the name, under the meta lock: a reclaimer that already
         * replaced it with a new object keeps its object */
        int removed = 0;
        Py_BEGIN_ALLOW_THREADS
        ms_segment_remove_name(&self->seg, remove_osname, remove_flags, &removed, NULL);
        Py_END_ALLOW_THREADS
    }
    if (self->keep_mapping)
        return last;
    if (defer)
        self->unmap_pending = 2;
    else if (self->exports > 0)
        self->unmap_pending = 1;
    else
        ms_segment_close(&self->seg);
    return last;
}

static void Segment_dealloc(SegmentObject *self)
{
    if (self->weakreflist)
        PyObject_ClearWeakRefs((PyObject *)self);
    /* Exports keep us alive, so none remain here. */
    if (self->open) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        segment_close_impl(self, 1, 1, 0, NULL, 0);
        PyErr_Restore(et, ev, tb);
    } else if (self->unmap_pending && !self->keep_mapping) {
        ms_segment_close(&self->seg);
    }
    PyObject_Del(self);
}

static int Segment_getbuffer(SegmentObject *self, Py_buffer *view, int flags)
{
    if (!self->open || self->seg.faulted || (!self->seg.data && self->seg.size)) {
        PyErr_SetString(PyExc_BufferError, "segment is closed");
        view->obj = NULL;
        return -1;
    }
    int readonly = self->seg.access == MS_ACCESS_READ;
    static char empty;
    void *ptr = self->seg.data ? (void *)self->seg.data : (void *)&empty;
    if (PyBuffer_FillInfo(view, (PyObject *)self, ptr, (Py_ssize_t)self->seg.size, readonly,
                          flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void Segment_releasebuffer(SegmentObject *self, Py_buffer *view)
{
    (void)view;
    self->exports--;
    seg_export_released(self);
}

static PyBufferProcs Segment_as_buffer = {
    (getbufferproc)Segment_getbuffer,
    (releasebufferproc)Segment_releasebuffer,
};

static PyObject *Segment_close(SegmentObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"detach", "force", "defer", "remove", "flags", NULL};
    int detach = 1, force = 0, defer = 0;
    const char *remove = NULL;
    unsigned int flags = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|pppzI:close", kwlist, &detach, &force,
                                     &defer, &remove, &flags))
        return NULL;
    if (!self->open)
        Py_RETURN_FALSE;
    int last = segment_close_impl(self, detach, force, defer, remove, flags);
    if (last < 0)
        return NULL;
    return PyBool_FromLong(last);
}

static PyObject *Segment_attach(SegmentObject *self, PyObject *unused)
{
    (void)unused;
    if (seg_check_header(self) < 0)
        return NULL;
    int err = 0;
    ms_status st;
    SEG_ALLOW_THREADS(self, st = ms_segment_attach(&self->seg, &err));
    if (st == MS_E_ATTACH_LIMIT && error_classes[st]) {
        /* AttachLimitError(message, limit) */
        PyObject *msg = PyUnicode_FromFormat(
            "attach: the attach table is full: %u processes are attached already, the most "
            "one object allows (a process takes one slot however many handles it opens)",
            (unsigned)self->seg.slots);
        PyObject *ex = msg ? PyObject_CallFunction(error_classes[st], "OI", msg,
                                                   (unsigned)self->seg.slots) : NULL;
        Py_XDECREF(msg);
        if (ex) {
            PyErr_SetObject(error_classes[st], ex);
            Py_DECREF(ex);
        }
        return NULL;
    }
    if (st != MS_OK)
        return raise_status(st, err, "attach");
    Py_RETURN_NONE;
}

/* In a forked child: the parent's registration and lock holdings are not ours. */
static PyObject *Segment_after_fork(SegmentObject *self, PyObject *unused)
{
    (void)unused;
    self->locks_held = 0;
    if (!self->open || self->seg.raw || self->seg.faulted)
        Py_RETURN_NONE;
    ms_segment_after_fork(&self->seg, NULL);
    Py_RETURN_NONE;
}

static PyObject *Segment_reap(SegmentObject *self, PyObject *unused)
{
    (void)unused;
    if (seg_check_header(self) < 0)
        return NULL;
    int err = 0, removed = 0, empty = 0;
    ms_status st;
    SEG_ALLOW_THREADS(self, st = ms_segment_reap(&self->seg, &removed, &empty, &err));
    if (st != MS_OK)
        return raise_status(st, err, "reap");
    return Py_BuildValue("(iO)", removed, empty ? Py_True : Py_False);
}

/* remove_name(osname, flags=0) -> bool: unlink osname if it still names this object,
 * under its meta lock.  Works on a closed handle whose mapping is still present. */
static PyObject *Segment_remove_name(SegmentObject *self, PyObject *args)
{
    const char *osname;
    unsigned int flags = 0;
    if (!PyArg_ParseTuple(args, "s|I:remove_name", &osname, &flags))
        return NULL;
    if (self->seg.obj.handle == MS_NO_HANDLE) {
        PyErr_SetString(PyExc_ValueError, "segment is closed");
        return NULL;
    }
    int err = 0, removed = 0;
    ms_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ms_segment_remove_name(&self->seg, osname, flags, &removed, &err);
    Py_END_ALLOW_THREADS
    if (st != MS_OK)
        return raise_status(st, err, osname);
    return PyBool_FromLong(removed);
}

static PyObject *Segment_mark_destroyed(SegmentObject *self, PyObject *unused)
{
    (void)unused;
    if (seg_check_header(self) < 0)
        return NULL;
    int err = 0;
    ms_status st;
    SEG_ALLOW_THREADS(self, st = ms_segment_mark_destroyed(&self->seg, &err));
    if (st != MS_OK)
        return raise_status(st, err, "unlink");
    Py_RETURN_NONE;
}

static PyObject *Segment_stat(SegmentObject *self, PyObject *unused)
{
    (void)unused;
    if (seg_check(self) < 0)
        return NULL;
    ms_object_stat st;
    int err = 0;
    ms_status s = ms_p_object_stat(&self->seg.obj, &st, &err);
    if (s != MS_OK)
        return raise_status(s, err, "stat");
    return Py_BuildValue("{sKsIsIsKsKsL}", "size", (unsigned long long)st.size, "uid", st.uid,
                         "mode", st.mode, "dev", (unsigned long long)st.dev, "ino",
                         (unsigned long long)st.ino, "mtime_ns", (long long)st.mtime_ns);
}

struct header_copy { ms_header h; };

static ms_status copy_header_fn(void *arg)
{
    void **a = (void **)arg;
    memcpy(a[0], a[1], sizeof(ms_header));
    return MS_OK;
}

static ms_status copy_table_fn(void *arg)
{
    void **a = (void **)arg;
    memcpy(a[0], a[1], *(size_t *)a[2]);
    return MS_OK;
}

static PyObject *attach_list(const ms_attach *table, unsigned n)
{
    PyObject *list = PyList_New(0);
    if (!list)
        return NULL;
    for (unsigned i = 0; i < n; i++) {
        if (!table[i].pid)
            continue;
        int alive = ms_p_process_alive(table[i].pid, table[i].start);
        PyObject *t = Py_BuildValue("{sIsIsKsi}", "pid", table[i].pid, "count", table[i].count,
                                    "start", (unsigned long long)table[i].start, "alive", alive);
        if (!t || PyList_Append(list, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(t);
    }
    return list;
}

static PyObject *lock_info(void *area)
{
    int held = 0, dead = 0;
    uint32_t holder = 0;
    ms_p_lock_inspect(area, &held, &holder, &dead);
    return Py_BuildValue("{sOsIsO}", "held", held ? Py_True : Py_False, "holder", holder,
                         "holder_dead", dead ? Py_True : Py_False);
}

/* A snapshot of the header, copied once, for info() and the CLI. */
static PyObject *Segment_header(SegmentObject *self, PyObject *unused)
{
    (void)unused;
    if (seg_check_header(self) < 0)
        return NULL;
    ms_header *h = PyMem_Malloc(sizeof(ms_header));
    if (!h)
        return PyErr_NoMemory();
    void *a[2] = {h, self->seg.hdr};
    ms_status st = ms_p_guarded_call(copy_header_fn, a);
    if (st != MS_OK) {
        PyMem_Free(h);
        ms_segment_fault(&self->seg);
        return raise_status(st, 0, "header");
    }
    uint32_t name_len = h->name_len > MS_NAME_MAX + 1 ? MS_NAME_MAX + 1 : h->name_len;
    PyObject *d = Py_BuildValue(
        "{sKsIsIsIsKsKsKsIsIsKsKsIsIsIsN}",
        "magic", (unsigned long long)h->magic, "version", h->version, "kind", h->kind,
        "lifetime", h->lifetime, "size", (unsigned long long)h->size,
        "data_offset", (unsigned long long)h->data_offset,
        "total_size", (unsigned long long)h->total_size, "creator_pid", h->creator_pid,
        "creator_uid", h->creator_uid, "creator_start", (unsigned long long)h->creator_start,
        "created_ns", (unsigned long long)h->created_ns, "state", h->state, "flags", h->flags,
        "mode", h->mode, "name", PyUnicode_DecodeUTF8(h->name, name_len, "replace"));
    if (!d)
        goto fail;
    PyObject *v;
#define SETITEM(key, expr)                                                          \
    do {                                                                            \
        v = (expr);                                                                 \
        if (!v || PyDict_SetItemString(d, key, v) < 0) { Py_XDECREF(v); goto fail; } \
        Py_DECREF(v);                                                               \
    } while (0)
    SETITEM("change_count", PyLong_FromUnsignedLong(h->change_seq));
    SETITEM("change_waiters", PyLong_FromUnsignedLong(h->change_waiters));
    {
        /* the whole table (no hint trusted) as far as it has storage, copied once under
         * the fault guard */
        uint32_t lim = self->seg.hdr->attach_reserved;
        if (lim > self->seg.slots)
            lim = self->seg.slots;
        size_t len = (size_t)lim * sizeof(ms_attach);
        ms_attach *t = PyMem_Malloc(len ? len : 1);
        if (!t) {
            PyErr_NoMemory();
            goto fail;
        }
        void *ta[3] = {t, self->seg.table, &len};
        if (ms_p_guarded_call(copy_table_fn, ta) != MS_OK) {
            PyMem_Free(t);
            ms_segment_fault(&self->seg);
            raise_status(MS_E_FAULT, 0, "header");
            goto fail;
        }
        v = attach_list(t, lim);
        PyMem_Free(t);
        if (!v || PyDict_SetItemString(d, "attached", v) < 0) {
            Py_XDECREF(v);
            goto fail;
        }
        Py_DECREF(v);
    }
    SETITEM("attach_slots", PyLong_FromUnsignedLong(self->seg.slots));
    {
        /* every process counted as an opener, read-only ones included, where the OS can
         * tell (None where it cannot) */
        uint32_t pids[256];
        unsigned n = 0;
        int err = 0;
        if (ms_p_object_openers(&self->seg.obj, pids, 256, &n, &err) != MS_OK) {
            SETITEM("openers", Py_NewRef(Py_None));
        } else {
            PyObject *l = PyList_New(0);
            for (unsigned i = 0; l && i < n && i < 256; i++) {
                PyObject *x = PyLong_FromUnsignedLong(pids[i]);
                if (!x || PyList_Append(l, x) < 0)
                    Py_CLEAR(l);
                Py_XDECREF(x);
            }
            SETITEM("openers", l);
            SETITEM("openers_count", PyLong_FromUnsignedLong(n));
        }
    }
    SETITEM("lock", lock_info(self->seg.hdr->user_lock));
    if (h->kind == MS_KIND_EVENT) {
        ms_event *e = (ms_event *)h->kind_area;
        SETITEM("event_set", PyBool_FromLong(e->state != 0));
        SETITEM("waiters", PyLong_FromUnsignedLong(e->waiters));
    } else if (h->kind == MS_KIND_SEMAPHORE) {
        ms_semaphore *s = (ms_semaphore *)h->kind_area;
        SETITEM("value", PyLong_FromUnsignedLong(s->value));
        SETITEM("maximum", PyLong_FromUnsignedLong(s->maximum));
        SETITEM("waiters", PyLong_FromUnsignedLong(s->waiters));
    } else if (h->kind == MS_KIND_CHANNEL) {
        ms_ring *r = (ms_ring *)h->kind_area;
        SETITEM("senders", attach_list(r->senders, MS_RING_PEERS));
        SETITEM("receivers", attach_list(r->receivers, MS_RING_PEERS));
        uint64_t q = r->tail - r->head;
        SETITEM("capacity", PyLong_FromUnsignedLongLong(r->capacity));
        SETITEM("queued_bytes", PyLong_FromUnsignedLongLong(q <= r->capacity ? q : 0));
        SETITEM("queued_messages",
                PyLong_FromUnsignedLongLong(r->sent_messages >= r->received_messages
                                                ? r->sent_messages - r->received_messages : 0));
        SETITEM("sent_messages", PyLong_FromUnsignedLongLong(r->sent_messages));
        SETITEM("received_messages", PyLong_FromUnsignedLongLong(r->received_messages));
        SETITEM("high_water", PyLong_FromUnsignedLongLong(r->high_water));
        SETITEM("redelivered", PyLong_FromUnsignedLongLong(r->redelivered));
        SETITEM("abandoned", PyLong_FromUnsignedLongLong(r->abandoned));
        SETITEM("closed", PyBool_FromLong((r->flags & MS_RING_CLOSED) != 0));
        SETITEM("send_waiters", PyLong_FromUnsignedLong(r->send_waiters));
        SETITEM("receive_waiters", PyLong_FromUnsignedLong(r->recv_waiters));
        SETITEM("send_lock", lock_info(((ms_ring *)self->seg.hdr->kind_area)->send_lock));
        SETITEM("recv_lock", lock_info(((ms_ring *)self->seg.hdr->kind_area)->recv_lock));
    }
#undef SETITEM
    PyMem_Free(h);
    return d;
fail:
    Py_XDECREF(d);
    PyMem_Free(h);
    return NULL;
}

static int parse_range(SegmentObject *self, unsigned long long offset, unsigned long long n)
{
    if (offset > self->seg.size || n > self->seg.size - offset) {
        PyErr_Format(PyExc_ValueError,
                     "range [%llu, %llu + %llu) is outside the segment (size %llu)", offset,
                     offset, n, (unsigned long long)self->seg.size);
        return -1;
    }
    return 0;
}

static PyObject *Segment_read(SegmentObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"n", "offset", NULL};
    PyObject *nobj = Py_None;
    unsigned long long offset = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO&:read", kwlist, &nobj, conv_offset,
                                     &offset))
        return NULL;
    if (seg_check(self) < 0)
        return NULL;
    unsigned long long n;
    if (nobj == Py_None) {
        n = offset <= self->seg.size ? self->seg.size - offset : 0;
    } else {
        if (!u64_arg(nobj, "n", ULLONG_MAX, &n))
            return NULL;
    }
    if (parse_range(self, offset, n) < 0)
        return NULL;
    if (n > PY_SSIZE_T_MAX)
        return PyErr_NoMemory();
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    if (!b)
        return NULL;
    ms_status st;
    char *dst = PyBytes_AS_STRING(b);
    const uint8_t *src = self->seg.data + offset;
    if (n >= 65536) {
        SEG_ALLOW_THREADS(self, st = ms_p_guarded_copy(dst, src, n));
    } else {
        st = ms_p_guarded_copy(dst, src, n);
    }
    if (st != MS_OK) {
        Py_DECREF(b);
        ms_segment_fault(&self->seg);
        return raise_status(st, 0, "read");
    }
    return b;
}

static PyObject *Segment_write(SegmentObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"data", "offset", NULL};
    Py_buffer buf;
    unsigned long long offset = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|O&:write", kwlist, &buf, conv_offset,
                                     &offset))
        return NULL;
    if (seg_check(self) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    if (self->seg.access == MS_ACCESS_READ) {
        PyBuffer_Release(&buf);
        return raise_status(MS_E_PERMISSION, 0, "write to a segment opened with access='r'");
    }
    if (parse_range(self, offset, (unsigned long long)buf.len) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    ms_status st;
    if (buf.len >= 65536) {
        SEG_ALLOW_THREADS(self, st = ms_p_guarded_copy(self->seg.data + offset, buf.buf,
                                                       (size_t)buf.len));
    } else {
        st = ms_p_guarded_copy(self->seg.data + offset, buf.buf, (size_t)buf.len);
    }
    Py_ssize_t n = buf.len;
    PyBuffer_Release(&buf);
    if (st != MS_OK) {
        ms_segment_fault(&self->seg);
        return raise_status(st, 0, "write");
    }
    return PyLong_FromSsize_t(n);
}

static PyObject *Segment_flush(SegmentObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"offset", "length", "durable", NULL};
    unsigned long long offset = 0;
    PyObject *lobj = Py_None;
    int durable = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O&Op:flush", kwlist, conv_offset, &offset,
                                     &lobj, &durable))
        return NULL;
    if (seg_check(self) < 0)
        return NULL;
    unsigned long long n = self->seg.size > offset ? self->seg.size - offset : 0;
    if (lobj != Py_None && !u64_arg(lobj, "length", ULLONG_MAX, &n))
        return NULL;
    if (parse_range(self, offset, n) < 0)
        return NULL;
    if (self->seg.access == MS_ACCESS_COPY)
        Py_RETURN_NONE;  /* private pages have nowhere to go */
    int err = 0;
    ms_status st = MS_OK;
    PyThreadState *ts = seg_wait_begin(self);
    if (n)
        st = ms_p_flush(&self->seg.obj, self->seg.data + offset, (size_t)n, durable, &err);
    if (st == MS_OK && self->seg.hdr && self->seg.hdr_writable)
        st = ms_p_flush(&self->seg.obj, self->seg.hdr, self->seg.hdr_len, durable, &err);
    seg_wait_end(self, ts);
    if (st != MS_OK)
        return raise_status(st, err, "flush");
    Py_RETURN_NONE;
}

/* ---- Window: a buffer over part of a mapping ---------------------------------------- */

typedef struct {
    PyObject_HEAD
    SegmentObject *owner;     /* keeps the mapping alive */
    uint8_t *ptr;
    Py_ssize_t len;
    int readonly;
    int valid;
    void *map_base;           /* own mapping (seg.view) to unmap, or NULL */
    size_t map_len;
    Py_ssize_t exports;
    int kind;                 /* 0 view, 1 loan, 2 received message */
    PyObject *chan;           /* kinds 1 and 2: the ChannelObject it belongs to */
    PyObject *mv;             /* the memoryview handed out by __enter__ */
    PyObject *exp;            /* the WindowExport that memoryview is made from */
    int internal;             /* counted in owner->internal_refs: this window never points
                               * into the owner's mapping unless through an export (a loan
                               * or received view), or it has a mapping of its own */
    uint64_t offset;          /* of ptr in the segment's user area */
} WindowObject;

/* The exporter of a loan's or received message's memoryview.  numpy keeps the
 * exporting object as an array's base (np.ndarray(buffer=view)) -- or the memoryview
 * itself (np.frombuffer) -- without holding a buffer export, so releasing the memoryview
 * cannot tell whether an array still points in.  This object can: it is referenced only
 * by its window, by the memoryview, and by whatever array took it as its base.  It holds
 * one export of the window for as long as it lives, so an array that outlives the block
 * keeps the mapping alive and is reported (BufferError), never left dangling. */
typedef struct {
    PyObject_HEAD
    WindowObject *w;
} WindowExportObject;

static PyTypeObject WindowExport_Type;

static PyTypeObject Window_Type;
static PyObject *str_release;

/* Finish a loan (commit if ok, else abort) or a received view (consume). */
static PyObject *window_finish(WindowObject *w, int ok);

static WindowObject *new_window(SegmentObject *owner, uint8_t *ptr, Py_ssize_t len,
                                int readonly, int kind)
{
    WindowObject *w = PyObject_New(WindowObject, &Window_Type);
    if (!w)
        return NULL;
    Py_INCREF(owner);
    w->owner = owner;
    w->ptr = ptr;
    w->len = len;
    w->readonly = readonly;
    w->valid = 1;
    w->map_base = NULL;
    w->map_len = 0;
    w->exports = 0;
    w->kind = kind;
    w->chan = NULL;
    w->mv = NULL;
    w->exp = NULL;
    w->offset = owner->seg.data && ptr ? (uint64_t)(ptr - owner->seg.data) : 0;
    /* A loan or received view shows its memory only through WindowExport objects, which
     * count as exports; a bare segment subview (kind 0 without a mapping of its own) is
     * what numpy keeps as a base without an export, so its reference must count. */
    w->internal = kind != 0;
    if (w->internal)
        owner->internal_refs++;
    return w;
}

static PyObject *window_export_new(WindowObject *w)
{
    WindowExportObject *e = PyObject_New(WindowExportObject, &WindowExport_Type);
    if (!e)
        return NULL;
    Py_INCREF(w);
    e->w = w;
    w->exports++;
    w->owner->exports++;
    return (PyObject *)e;
}

static void WindowExport_dealloc(WindowExportObject *self)
{
    WindowObject *w = self->w;
    w->exports--;
    w->owner->exports--;
    seg_export_released(w->owner);
    Py_DECREF(w);
    PyObject_Del(self);
}

static int WindowExport_getbuffer(WindowExportObject *self, Py_buffer *view, int flags)
{
    /* Valid as long as this object lives (it holds the window's export), even after the
     * window was finished: the mapping is still there. */
    WindowObject *w = self->w;
    static char empty;
    return PyBuffer_FillInfo(view, (PyObject *)self, w->len ? (void *)w->ptr : &empty,
                             w->len, w->readonly, flags);
}

static PyBufferProcs WindowExport_as_buffer = {
    (getbufferproc)WindowExport_getbuffer,
    NULL,
};

static PyTypeObject WindowExport_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mapshare._core.WindowExport",
    .tp_basicsize = sizeof(WindowExportObject),
    .tp_dealloc = (destructor)WindowExport_dealloc,
    .tp_as_buffer = &WindowExport_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The exporter of a loan's or received message's memoryview (internal).",
};

/* Drop the window's own references to what __enter__ handed out (a finished or
 * abandoned loan or view); whatever still uses them keeps the mapping alive. */
static void window_drop(WindowObject *w)
{
    Py_CLEAR(w->mv);
    Py_CLEAR(w->exp);
}

static int Window_getbuffer(WindowObject *self, Py_buffer *view, int flags)
{
    if (!self->valid) {
        PyErr_SetString(PyExc_BufferError, "this view was released");
        view->obj = NULL;
        return -1;
    }
    static char empty;
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->len ? (void *)self->ptr : &empty,
                          self->len, self->readonly, flags) < 0)
        return -1;
    self->exports++;
    self->owner->exports++;
    return 0;
}

static void Window_releasebuffer(WindowObject *self, Py_buffer *view)
{
    (void)view;
    self->exports--;
    self->owner->exports--;
    seg_export_released(self->owner);
}

static PyBufferProcs Window_as_buffer = {
    (getbufferproc)Window_getbuffer,
    (releasebufferproc)Window_releasebuffer,
};

static int window_invalidate(WindowObject *self)
{
    if (self->exports > 0) {
        PyErr_Format(PyExc_BufferError,
                     "%zd memoryview(s) or array(s) still use this view; release them first",
                     self->exports);
        return -1;
    }
    if (self->valid && self->map_base) {
        { ms_p_map_unwatch(self->map_base); ms_p_unmap(self->map_base, self->map_len); }
        self->map_base = NULL;
    }
    self->valid = 0;
    return 0;
}

static PyObject *Window_release(WindowObject *self, PyObject *unused)
{
    (void)unused;
    if (self->kind != 0) {
        PyErr_SetString(PyExc_TypeError, "loans and received views are released by their channel");
        return NULL;
    }
    if (window_invalidate(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static void Window_dealloc(WindowObject *self)
{
    if (self->map_base)
        { ms_p_map_unwatch(self->map_base); ms_p_unmap(self->map_base, self->map_len); }
    Py_XDECREF(self->exp);
    Py_XDECREF(self->mv);
    Py_XDECREF(self->chan);
    if (self->owner && self->internal)
        self->owner->internal_refs--;
    Py_XDECREF(self->owner);
    PyObject_Del(self);
}

static PyObject *Window_enter(WindowObject *self, PyObject *unused)
{
    (void)unused;
    if (self->kind == 0) {
        Py_INCREF(self);
        return (PyObject *)self;
    }
    if (self->mv) {
        PyErr_SetString(PyExc_RuntimeError, "this loan or view was already entered");
        return NULL;
    }
    self->exp = window_export_new(self);
    if (!self->exp)
        return NULL;
    self->mv = PyMemoryView_FromObject(self->exp);
    if (!self->mv) {
        Py_CLEAR(self->exp);
        return NULL;
    }
    Py_INCREF(self->mv);
    return self->mv;
}

static PyObject *Window_exit(WindowObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (self->kind == 0) {
        if (window_invalidate(self) < 0)
            return NULL;
        Py_RETURN_FALSE;
    }
    int ok = nargs < 1 || args[0] == Py_None;
    if (self->mv) {
        /* Release our memoryview; if a view of it is still in use, the finish below
         * sees the remaining export and says so.  Referenced by more than us and the
         * `with ... as` name, it may be the base of a numpy array (np.frombuffer and
         * np.ndarray(buffer=) keep the memoryview, not an export): releasing it would
         * leave that array pointing at memory about to be reused or unmapped.  Keep it
         * then: its export keeps the mapping alive and the finish reports the escape.
         * (Not when an exception leaves the block: its traceback's frames hold names of
         * the view, which are no escape.) */
        if (!ok || Py_REFCNT(self->mv) <= 2) {
            PyObject *r = PyObject_CallMethodNoArgs(self->mv, str_release);
            if (r)
                Py_DECREF(r);
            else
                PyErr_Clear();
        }
    }
    /* If an array took the exporter as its base, it survives this and its export
     * remains: the finish below reports it. */
    window_drop(self);
    PyObject *r = window_finish(self, ok);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *Window_get_released(WindowObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(!self->valid);
}

static PyObject *Window_get_nbytes(WindowObject *self, void *c)
{
    (void)c;
    return PyLong_FromSsize_t(self->len);
}

static PyObject *Window_get_offset(WindowObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLongLong(self->offset);
}

static PyMethodDef Window_methods[] = {
    {"release", (PyCFunction)Window_release, METH_NOARGS,
     "Unmap this view.  Raises BufferError while memoryviews of it are in use."},
    {"__enter__", (PyCFunction)Window_enter, METH_NOARGS,
     "A loan or received message: a memoryview of it (a segment view: itself)."},
    {"__exit__", (PyCFunction)(void (*)(void))Window_exit, METH_FASTCALL,
     "A loan is sent (or discarded on an exception), a received message consumed."},
    {NULL}
};

static PyGetSetDef Window_getset[] = {
    {"released", (getter)Window_get_released, NULL, "True once released.", NULL},
    {"nbytes", (getter)Window_get_nbytes, NULL, "Length in bytes.", NULL},
    {"offset", (getter)Window_get_offset, NULL,
     "Offset of the first byte in the segment's user area.", NULL},
    {NULL}
};

static PyTypeObject Window_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mapshare._core.Window",
    .tp_basicsize = sizeof(WindowObject),
    .tp_dealloc = (destructor)Window_dealloc,
    .tp_as_buffer = &Window_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A buffer over part of a mapping: a segment view, a channel loan or a "
              "received message.",
    .tp_methods = Window_methods,
    .tp_getset = Window_getset,
};

static PyObject *Segment_map_view(SegmentObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"offset", "length", "access", NULL};
    unsigned long long offset, length;
    int access = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&O&|i:map_view", kwlist, conv_offset, &offset,
                                     conv_length, &length, &access))
        return NULL;
    if (seg_check(self) < 0)
        return NULL;
    if (access < 0)
        access = self->seg.access;
    if (access == MS_ACCESS_WRITE && self->seg.access == MS_ACCESS_READ)
        return raise_status(MS_E_PERMISSION, 0, "writable view of a read-only segment");
    if (parse_range(self, offset, length) < 0)
        return NULL;
    if (length == 0) {
        PyErr_SetString(PyExc_ValueError, "a view needs length >= 1");
        return NULL;
    }
    void *base;
    size_t base_len;
    uint8_t *ptr;
    int err = 0;
    ms_status st = ms_segment_map_range(&self->seg, offset, length, access, &base, &base_len,
                                        &ptr, &err);
    if (st != MS_OK)
        return raise_status(st, err, "view");
    WindowObject *w = new_window(self, ptr, (Py_ssize_t)length, access == MS_ACCESS_READ, 0);
    if (!w) {
        ms_p_map_unwatch(base);
        ms_p_unmap(base, base_len);
        return NULL;
    }
    w->map_base = base;
    w->internal = 1;  /* its own mapping: the owner's can go */
    self->internal_refs++;
    w->map_len = base_len;
    w->offset = offset;
    return (PyObject *)w;
}

/* subview(offset, length) -> Window: read-only, inside this handle's own mapping (no
 * new mapping).  An array built on it keeps the Window -- hence this object and its
 * mapping -- alive, and cannot be made writable (the Window exports read-only). */
static PyObject *Segment_subview(SegmentObject *self, PyObject *args)
{
    unsigned long long offset, length;
    if (!PyArg_ParseTuple(args, "KK:subview", &offset, &length))
        return NULL;
    if (seg_check(self) < 0)
        return NULL;
    if (parse_range(self, offset, length) < 0)
        return NULL;
    uint8_t *ptr = self->seg.data ? self->seg.data + offset : NULL;
    WindowObject *w = new_window(self, ptr, (Py_ssize_t)length, 1, 0);
    if (w)
        w->offset = offset;
    return (PyObject *)w;
}

/* ---- locks, change notification, event, semaphore ---------------------------------- */

static void *lock_area(SegmentObject *self, int which, unsigned *slot)
{
    switch (which) {
    case 0: *slot = MS_SLOT_USER_LOCK; return self->seg.hdr->user_lock;
    case 1: *slot = MS_SLOT_META_LOCK; return self->seg.hdr->meta_lock;
    default: return NULL;
    }
}

static int wait_args(PyObject *tobj, PyObject *sobj, SegmentObject *self, ms_wait_opts *o)
{
    if (parse_timeout(tobj, &o->timeout_ns) < 0)
        return -1;
    o->spin_ns = self->spin_ns;
    if (sobj && sobj != Py_None) {
        double s = PyFloat_AsDouble(sobj);
        if (s == -1.0 && PyErr_Occurred())
            return -1;
        o->spin_ns = s <= 0 ? 0 : (int64_t)(s * 1e9);
    }
    o->interrupted = check_signals;
    o->try_only = 0;
    o->mark = NULL;
    return 0;
}

/* lock_acquire(timeout=None, spin=None, which=0): METH_FASTCALL, and the uncontended
 * path (a try-lock) runs before any wait options are worked out. */
static PyObject *Segment_lock_acquire(SegmentObject *self, PyObject *const *args,
                                      Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const kwlist[] = {"timeout", "spin", "which"};
    PyObject *vals[3] = {Py_None, Py_None, NULL};
    if (fast_kwargs(args, nargs, kwnames, kwlist, vals, 3, "lock_acquire") < 0)
        return NULL;
    PyObject *tobj = vals[0], *sobj = vals[1];
    int which = 0;
    if (vals[2]) {
        which = (int)PyLong_AsLong(vals[2]);
        if (which == -1 && PyErr_Occurred())
            return NULL;
    }
    if (seg_check_header(self) < 0)
        return NULL;
    if (!self->seg.hdr_writable)
        return raise_status(MS_E_PERMISSION, 0, "lock of a segment opened read-only");
    ms_wait_opts o;
    if (tobj != Py_None || sobj != Py_None) {
        if (wait_args(tobj, sobj, self, &o) < 0)
            return NULL;
    }
    unsigned slot;
    void *area = lock_area(self, which, &slot);
    if (!area) {
        PyErr_SetString(PyExc_ValueError, "no such lock");
        return NULL;
    }
    int err = 0;
    ms_status st = ms_p_lock_acquire(self->seg.ctx, slot, area, 0, &err);
    gil_wait g = {NULL, 0};
    if (st == MS_E_TIMEOUT && tobj == Py_None && sobj == Py_None) {
        if (wait_args(tobj, sobj, self, &o) < 0)
            return NULL;
    }
    if (st == MS_E_TIMEOUT && o.timeout_ns != 0) {
        g.main_thread = is_main_thread();
        o.arg = &g;
        g.ts = seg_wait_begin(self);
        st = ms_lock_acquire(&self->seg, slot, area, &o, &err);
        seg_wait_end(self, g.ts);
    }
    /* One bit per lock area, not a count: whoever takes a lock over (after its holder
     * thread exited, say) owns the single hold, so a dead thread's acquisition through
     * this handle does not block close() forever. */
    if (st == MS_OK || st == MS_E_OWNER_DIED)
        self->locks_held |= 1 << which;
    if (st == MS_OK)
        RET_TRUE(self);
    if (st == MS_E_TIMEOUT)
        RET_FALSE(self);
    if (st == MS_E_BUSY) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this thread already holds the lock (mapshare.Lock is not reentrant)");
        return NULL;
    }
    return raise_status(st, err, "lock");
}

static PyObject *Segment_lock_release(SegmentObject *self, PyObject *const *args,
                                      Py_ssize_t nargs)
{
    int which = 0;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "lock_release() takes at most 1 argument");
        return NULL;
    }
    if (nargs == 1) {
        which = (int)PyLong_AsLong(args[0]);
        if (which == -1 && PyErr_Occurred())
            return NULL;
    }
    if (seg_check_header(self) < 0)
        return NULL;
    unsigned slot;
    void *area = lock_area(self, which, &slot);
    if (!area) {
        PyErr_SetString(PyExc_ValueError, "no such lock");
        return NULL;
    }
    int err = 0;
    ms_status st = ms_lock_release(&self->seg, slot, area, &err);
    if (st != MS_OK)
        return raise_status(st, err, "release");
    self->locks_held &= ~(1 << which);
    RET_NONE(self);
}

static PyObject *Segment_lock_state(SegmentObject *self, PyObject *args)
{
    int which = 0;
    if (!PyArg_ParseTuple(args, "|i:lock_state", &which))
        return NULL;
    if (seg_check_header(self) < 0)
        return NULL;
    unsigned slot;
    void *area = lock_area(self, which, &slot);
    if (!area) {
        PyErr_SetString(PyExc_ValueError, "no such lock");
        return NULL;
    }
    return lock_info(area);
}

static PyObject *Segment_notify(SegmentObject *self, PyObject *unused)
{
    (void)unused;
    if (seg_check_header(self) < 0)
        return NULL;
    if (!self->seg.hdr_writable)
        return raise_status(MS_E_PERMISSION, 0, "notify on a segment opened read-only");
    ms_change_notify(&self->seg);
    RET_NONE(self);
}

static PyObject *Segment_change_count(SegmentObject *self, PyObject *unused)
{
    (void)unused;
    if (seg_check_header(self) < 0)
        return NULL;
    RET_OBJ(self, PyLong_FromUnsignedLong(ms_change_count(&self->seg)));
}

static PyObject *Segment_wait_change(SegmentObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"since", "timeout", "spin", NULL};
    unsigned long since;
    PyObject *tobj = Py_None, *sobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "k|OO:wait_change", kwlist, &since, &tobj, &sobj))
        return NULL;
    if (seg_check_header(self) < 0)
        return NULL;
    if (!self->seg.hdr_writable)
        return raise_status(MS_E_PERMISSION, 0, "wait on a segment opened read-only");
    ms_wait_opts o;
    if (wait_args(tobj, sobj, self, &o) < 0)
        return NULL;
    gil_wait g = {NULL, is_main_thread()};
    o.arg = &g;
    uint32_t now = ms_change_count(&self->seg);
    ms_status st = MS_OK;
    if (now == (uint32_t)since) {
        g.ts = seg_wait_begin(self);
        st = ms_change_wait(&self->seg, (uint32_t)since, &o, &now);
        seg_wait_end(self, g.ts);
    }
    if (st != MS_OK)
        return raise_status(FAULTED(self) ? MS_E_FAULT : st, 0, "wait_for_change");
    RET_OBJ(self, PyLong_FromUnsignedLong(now));
}

/* The event or semaphore an operation works on: the kind area of a named object
 * (offset None) or `need` bytes at an 8-aligned offset of the user area. */
static void *sync_area(SegmentObject *self, PyObject *offobj, uint32_t kind, size_t need,
                       unsigned default_slot, unsigned *slot, int creating)
{
    if (seg_check_header(self) < 0)
        return NULL;
    if (!self->seg.hdr_writable) {
        raise_status(MS_E_PERMISSION, 0, "synchronization object opened read-only");
        return NULL;
    }
    if (offobj == NULL || offobj == Py_None) {
        if (self->seg.kind != kind) {
            PyErr_SetString(PyExc_TypeError, "wrong kind of segment for this operation");
            return NULL;
        }
        *slot = default_slot;
        return self->seg.hdr->kind_area;
    }
    if (self->seg.kind != MS_KIND_SEGMENT) {
        /* the data area of a channel (or of a lock, event or semaphore) is theirs: an
         * event written into a ring would silently corrupt it */
        PyErr_SetString(PyExc_TypeError,
                        "events and semaphores can be placed only in a plain segment");
        return NULL;
    }
    unsigned long long off;
    if (!u64_arg(offobj, "offset", ULLONG_MAX, &off))
        return NULL;
    if (off % 8 != 0 || off > self->seg.size || need > self->seg.size - off) {
        PyErr_Format(PyExc_ValueError,
                     "offset %llu must be a multiple of 8 with %zu bytes inside the segment",
                     off, need);
        return NULL;
    }
    if (self->seg.access != MS_ACCESS_WRITE) {
        raise_status(MS_E_PERMISSION, 0, "synchronization object in a segment not opened 'rw'");
        return NULL;
    }
    *slot = MS_SLOT_USER_BASE + (unsigned)(off / 8);
    uint8_t *p = self->seg.data + off;
    if (!creating) {
        /* the tag is the last word of both structures, written last by their init */
        uint32_t want = kind == MS_KIND_EVENT ? MS_EVENT_TAG : MS_SEMAPHORE_TAG;
        if (ms_load32((const uint32_t *)(p + need - 4)) != want) {
            raise_status(MS_E_LAYOUT, 0,
                         kind == MS_KIND_EVENT ? "no event was created at this offset"
                                               : "no semaphore was created at this offset");
            return NULL;
        }
    }
    return p;
}

#define EVENT_AREA_X(offobj, slot, creating)                                                \
    ((ms_event *)sync_area(self, offobj, MS_KIND_EVENT, sizeof(ms_event), MS_SLOT_EVENT, &slot, \
                           creating))
#define SEM_AREA_X(offobj, slot, creating)                                            \
    ((ms_semaphore *)sync_area(self, offobj, MS_KIND_SEMAPHORE, sizeof(ms_semaphore), \
                               MS_SLOT_SEMAPHORE, &slot, creating))
#define EVENT_AREA(offobj, slot) EVENT_AREA_X(offobj, slot, 0)
#define SEM_AREA(offobj, slot) SEM_AREA_X(offobj, slot, 0)

static PyObject *Segment_event_init(SegmentObject *self, PyObject *args)
{
    PyObject *off;
    int state = 0;
    unsigned slot;
    if (!PyArg_ParseTuple(args, "O|p:event_init", &off, &state))
        return NULL;
    ms_event *e = EVENT_AREA_X(off, slot, 1);
    if (!e)
        return NULL;
    ms_event_init_at(e, (uint32_t)state);
    RET_NONE(self);
}

static PyObject *Segment_event_set(SegmentObject *self, PyObject *args)
{
    PyObject *off = Py_None;
    unsigned slot;
    if (!PyArg_ParseTuple(args, "|O:event_set", &off))
        return NULL;
    ms_event *e = EVENT_AREA(off, slot);
    if (!e)
        return NULL;
    ms_event_set(&self->seg, slot, e);
    RET_NONE(self);
}

static PyObject *Segment_event_clear(SegmentObject *self, PyObject *args)
{
    PyObject *off = Py_None;
    unsigned slot;
    if (!PyArg_ParseTuple(args, "|O:event_clear", &off))
        return NULL;
    ms_event *e = EVENT_AREA(off, slot);
    if (!e)
        return NULL;
    ms_event_clear(e);
    RET_NONE(self);
}

static PyObject *Segment_event_is_set(SegmentObject *self, PyObject *args)
{
    PyObject *off = Py_None;
    unsigned slot;
    if (!PyArg_ParseTuple(args, "|O:event_is_set", &off))
        return NULL;
    ms_event *e = EVENT_AREA(off, slot);
    if (!e)
        return NULL;
    RET_OBJ(self, PyBool_FromLong(ms_event_is_set(e)));
}

static PyObject *Segment_event_wait(SegmentObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"timeout", "spin", "offset", NULL};
    PyObject *tobj = Py_None, *sobj = Py_None, *off = Py_None;
    unsigned slot;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OOO:event_wait", kwlist, &tobj, &sobj, &off))
        return NULL;
    ms_event *e = EVENT_AREA(off, slot);
    if (!e)
        return NULL;
    ms_wait_opts o;
    if (wait_args(tobj, sobj, self, &o) < 0)
        return NULL;
    if (ms_event_is_set(e))
        RET_TRUE(self);
    if (o.timeout_ns == 0)
        RET_FALSE(self);
    gil_wait g = {NULL, is_main_thread()};
    o.arg = &g;
    g.ts = seg_wait_begin(self);
    ms_status st = ms_event_wait(&self->seg, slot, e, &o);
    seg_wait_end(self, g.ts);
    if (st == MS_OK)
        RET_TRUE(self);
    if (st == MS_E_TIMEOUT)
        RET_FALSE(self);
    return raise_status(st, 0, "wait");
}

static PyObject *Segment_sem_init(SegmentObject *self, PyObject *args)
{
    PyObject *off;
    unsigned int value, maximum;
    unsigned slot;
    if (!PyArg_ParseTuple(args, "OO&O&:sem_init", &off, conv_value, &value, conv_maximum,
                          &maximum))
        return NULL;
    ms_semaphore *s = SEM_AREA_X(off, slot, 1);
    if (!s)
        return NULL;
    if (ms_semaphore_init_at(s, value, maximum) != MS_OK) {
        PyErr_SetString(PyExc_ValueError, "need 0 <= value <= maximum and maximum >= 1");
        return NULL;
    }
    RET_NONE(self);
}

static PyObject *Segment_sem_acquire(SegmentObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"timeout", "spin", "offset", NULL};
    PyObject *tobj = Py_None, *sobj = Py_None, *off = Py_None;
    unsigned slot;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OOO:sem_acquire", kwlist, &tobj, &sobj, &off))
        return NULL;
    ms_semaphore *s = SEM_AREA(off, slot);
    if (!s)
        return NULL;
    ms_wait_opts o;
    if (wait_args(tobj, sobj, self, &o) < 0)
        return NULL;
    ms_wait_opts once = o;
    once.timeout_ns = 0;
    if (ms_semaphore_acquire(&self->seg, slot, s, &once) == MS_OK)
        RET_TRUE(self);
    if (o.timeout_ns == 0)
        RET_FALSE(self);
    gil_wait g = {NULL, is_main_thread()};
    o.arg = &g;
    g.ts = seg_wait_begin(self);
    ms_status st = ms_semaphore_acquire(&self->seg, slot, s, &o);
    seg_wait_end(self, g.ts);
    if (st == MS_OK)
        RET_TRUE(self);
    if (st == MS_E_TIMEOUT)
        RET_FALSE(self);
    return raise_status(st, 0, "acquire");
}

static PyObject *Segment_sem_wait_available(SegmentObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"timeout", "spin", "offset", NULL};
    PyObject *tobj = Py_None, *sobj = Py_None, *off = Py_None;
    unsigned slot;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OOO:sem_wait_available", kwlist, &tobj, &sobj,
                                     &off))
        return NULL;
    ms_semaphore *s = SEM_AREA(off, slot);
    if (!s)
        return NULL;
    ms_wait_opts o;
    if (wait_args(tobj, sobj, self, &o) < 0)
        return NULL;
    gil_wait g = {NULL, is_main_thread()};
    o.arg = &g;
    g.ts = seg_wait_begin(self);
    ms_status st = ms_semaphore_wait_available(&self->seg, slot, s, &o);
    seg_wait_end(self, g.ts);
    if (st == MS_OK)
        RET_TRUE(self);
    if (st == MS_E_TIMEOUT)
        RET_FALSE(self);
    return raise_status(st, 0, "wait");
}

static PyObject *Segment_sem_release(SegmentObject *self, PyObject *args)
{
    unsigned int n = 1;
    PyObject *off = Py_None;
    unsigned slot;
    if (!PyArg_ParseTuple(args, "|O&O:sem_release", conv_count, &n, &off))
        return NULL;
    ms_semaphore *s = SEM_AREA(off, slot);
    if (!s)
        return NULL;
    if (ms_semaphore_release(&self->seg, slot, s, n) != MS_OK) {
        PyErr_SetString(PyExc_ValueError, "semaphore released more times than its maximum");
        return NULL;
    }
    RET_NONE(self);
}

static PyObject *Segment_sem_value(SegmentObject *self, PyObject *args)
{
    PyObject *off = Py_None;
    unsigned slot;
    if (!PyArg_ParseTuple(args, "|O:sem_value", &off))
        return NULL;
    ms_semaphore *s = SEM_AREA(off, slot);
    if (!s)
        return NULL;
    return Py_BuildValue("(III)", ms_load32(&s->value), ms_load32(&s->maximum),
                         ms_load32(&s->waiters));
}

/* ---- Segment attributes ------------------------------------------------------------- */

static PyObject *Segment_get_size(SegmentObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLongLong(self->seg.size);
}
static ms_status copy_name_fn(void *arg)
{
    void **a = (void **)arg;
    const ms_header *h = (const ms_header *)a[1];
    uint32_t len = h->name_len;
    if (len > MS_NAME_MAX + 1)
        len = MS_NAME_MAX + 1;
    memcpy(a[0], h->name, len);
    *(uint32_t *)a[2] = len;
    return MS_OK;
}

/* The logical name in the header, without building the whole header() snapshot (open()
 * checks it on every call). */
static PyObject *Segment_get_name(SegmentObject *self, void *c)
{
    (void)c;
    if (seg_check_header(self) < 0)
        return NULL;
    char buf[MS_NAME_MAX + 1];
    uint32_t len = 0;
    void *a[3] = {buf, self->seg.hdr, &len};
    ms_status st = ms_p_guarded_call(copy_name_fn, a);
    if (st != MS_OK) {
        ms_segment_fault(&self->seg);
        return raise_status(st, 0, "name");
    }
    return PyUnicode_DecodeUTF8(buf, len, "replace");
}

static PyObject *Segment_get_kind(SegmentObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLong(self->seg.kind);
}
static PyObject *Segment_get_lifetime(SegmentObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLong(self->seg.lifetime);
}
static PyObject *Segment_get_flags(SegmentObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLong(self->seg.flags);
}
static PyObject *Segment_get_access(SegmentObject *self, void *c)
{
    (void)c;
    return PyLong_FromLong(self->seg.access);
}
static PyObject *Segment_get_closed(SegmentObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(!self->open);
}
static PyObject *Segment_get_faulted(SegmentObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(self->seg.faulted);
}
static PyObject *Segment_get_exports(SegmentObject *self, void *c)
{
    (void)c;
    return PyLong_FromSsize_t(self->exports);
}
static PyObject *Segment_get_internal_refs(SegmentObject *self, void *c)
{
    (void)c;
    return PyLong_FromSsize_t(self->internal_refs);
}
static PyObject *Segment_get_attached(SegmentObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(self->seg.attached);
}
static PyObject *Segment_get_header_writable(SegmentObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(self->seg.hdr_writable);
}
static PyObject *Segment_get_spin(SegmentObject *self, void *c)
{
    (void)c;
    return PyFloat_FromDouble((double)self->spin_ns / 1e9);
}
static int Segment_set_spin(SegmentObject *self, PyObject *v, void *c)
{
    (void)c;
    double s = v ? PyFloat_AsDouble(v) : 0;
    if (s == -1.0 && PyErr_Occurred())
        return -1;
    self->spin_ns = s <= 0 ? 0 : (int64_t)(s * 1e9);
    return 0;
}

static PyGetSetDef Segment_getset[] = {
    {"size", (getter)Segment_get_size, NULL, "User area size in bytes.", NULL},
    {"name", (getter)Segment_get_name, NULL, "The logical name in the header.", NULL},
    {"kind", (getter)Segment_get_kind, NULL, "KIND_* of the header.", NULL},
    {"lifetime", (getter)Segment_get_lifetime, NULL, "LIFETIME_* of the header.", NULL},
    {"flags", (getter)Segment_get_flags, NULL, "FLAG_* of the header.", NULL},
    {"access", (getter)Segment_get_access, NULL, "ACCESS_* of the data mapping.", NULL},
    {"closed", (getter)Segment_get_closed, NULL, "True after close().", NULL},
    {"faulted", (getter)Segment_get_faulted, NULL, "True after the memory vanished.", NULL},
    {"exports", (getter)Segment_get_exports, NULL, "Buffers currently exported.", NULL},
    {"internal_refs", (getter)Segment_get_internal_refs, NULL,
     "References held by Lock and Channel objects (not users of the memory).", NULL},
    {"attached", (getter)Segment_get_attached, NULL,
     "Counted as attached (in the attach table, or by its opener lock if read-only).", NULL},
    {"header_writable", (getter)Segment_get_header_writable, NULL,
     "The header is mapped writable (locks and registration possible).", NULL},
    {"spin", (getter)Segment_get_spin, (setter)Segment_set_spin,
     "Seconds to busy-wait before sleeping in waits through this handle.", NULL},
    {NULL}
};

static PyMethodDef Segment_methods[] = {
    {"close", (PyCFunction)(void (*)(void))Segment_close, METH_VARARGS | METH_KEYWORDS,
     "close(detach=True) -> bool: unmap; True if this was the last user of a shared "
     "segment (which is then destroyed and its name must be removed)."},
    {"attach", (PyCFunction)Segment_attach, METH_NOARGS,
     "Count this handle as attached: the opener lock, and the attach table if the header "
     "is writable."},
    {"after_fork", (PyCFunction)Segment_after_fork, METH_NOARGS,
     "Register the forked child as a user of the segment."},
    {"reap", (PyCFunction)Segment_reap, METH_NOARGS,
     "reap() -> (removed, empty): drop dead processes from the attach table."},
    {"subview", (PyCFunction)Segment_subview, METH_VARARGS,
     "subview(offset, length) -> Window: read-only, inside this handle's mapping."},
    {"remove_name", (PyCFunction)Segment_remove_name, METH_VARARGS,
     "remove_name(osname, flags=0) -> bool: unlink osname if it still names this object "
     "(under its meta lock)."},
    {"mark_destroyed", (PyCFunction)Segment_mark_destroyed, METH_NOARGS,
     "Mark the header DESTROYED so that nobody attaches again."},
    {"stat", (PyCFunction)Segment_stat, METH_NOARGS, "Facts about the OS object."},
    {"header", (PyCFunction)Segment_header, METH_NOARGS, "A snapshot of the header."},
    {"read", (PyCFunction)(void (*)(void))Segment_read, METH_VARARGS | METH_KEYWORDS,
     "read(n=None, offset=0) -> bytes"},
    {"write", (PyCFunction)(void (*)(void))Segment_write, METH_VARARGS | METH_KEYWORDS,
     "write(data, offset=0) -> int"},
    {"flush", (PyCFunction)(void (*)(void))Segment_flush, METH_VARARGS | METH_KEYWORDS,
     "flush(offset=0, length=None, durable=False)"},
    {"map_view", (PyCFunction)(void (*)(void))Segment_map_view, METH_VARARGS | METH_KEYWORDS,
     "map_view(offset, length, access=-1) -> Window"},
    {"lock_acquire", (PyCFunction)(void (*)(void))Segment_lock_acquire,
     METH_FASTCALL | METH_KEYWORDS, "lock_acquire(timeout=None, spin=None, which=0) -> bool"},
    {"lock_release", (PyCFunction)(void (*)(void))Segment_lock_release, METH_FASTCALL,
     "lock_release(which=0)"},
    {"lock_state", (PyCFunction)Segment_lock_state, METH_VARARGS, "lock_state(which=0) -> dict"},
    {"notify", (PyCFunction)Segment_notify, METH_NOARGS, "Bump the change counter and wake."},
    {"change_count", (PyCFunction)Segment_change_count, METH_NOARGS, "The change counter."},
    {"wait_change", (PyCFunction)(void (*)(void))Segment_wait_change,
     METH_VARARGS | METH_KEYWORDS, "wait_change(since, timeout=None, spin=None) -> int"},
    {"event_init", (PyCFunction)Segment_event_init, METH_VARARGS,
     "event_init(offset, state=False): place an event in the user area"},
    {"event_set", (PyCFunction)Segment_event_set, METH_VARARGS, "event_set(offset=None)"},
    {"event_clear", (PyCFunction)Segment_event_clear, METH_VARARGS, "event_clear(offset=None)"},
    {"event_is_set", (PyCFunction)Segment_event_is_set, METH_VARARGS,
     "event_is_set(offset=None) -> bool"},
    {"event_wait", (PyCFunction)(void (*)(void))Segment_event_wait, METH_VARARGS | METH_KEYWORDS,
     "event_wait(timeout=None, spin=None, offset=None) -> bool"},
    {"sem_init", (PyCFunction)Segment_sem_init, METH_VARARGS,
     "sem_init(offset, value, maximum): place a semaphore in the user area"},
    {"sem_acquire", (PyCFunction)(void (*)(void))Segment_sem_acquire,
     METH_VARARGS | METH_KEYWORDS, "sem_acquire(timeout=None, spin=None, offset=None) -> bool"},
    {"sem_wait_available", (PyCFunction)(void (*)(void))Segment_sem_wait_available,
     METH_VARARGS | METH_KEYWORDS,
     "sem_wait_available(timeout=None, spin=None, offset=None) -> bool: a unit is there"},
    {"sem_release", (PyCFunction)Segment_sem_release, METH_VARARGS,
     "sem_release(n=1, offset=None)"},
    {"sem_value", (PyCFunction)Segment_sem_value, METH_VARARGS,
     "sem_value(offset=None) -> (value, maximum, waiters)"},
    {NULL}
};

static PyTypeObject Segment_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mapshare._core.Segment",
    .tp_basicsize = sizeof(SegmentObject),
    .tp_dealloc = (destructor)Segment_dealloc,
    .tp_as_buffer = &Segment_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A mapped mapshare object (mechanism only; see mapshare.Segment).",
    .tp_weaklistoffset = offsetof(SegmentObject, weakreflist),
    .tp_methods = Segment_methods,
    .tp_getset = Segment_getset,
};

/* ---- Lock: the lock of a segment's header as an object ------------------------------ */

/* acquire/release/__enter__/__exit__ are C methods so that `with lock:` runs no Python
 * frame at all. */
typedef struct {
    PyObject_HEAD
    SegmentObject *seg;
} LockObject;

static PyObject *Lock_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"segment", NULL};
    PyObject *segobj;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!:Lock", kwlist, &Segment_Type, &segobj))
        return NULL;
    LockObject *self = (LockObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    Py_INCREF(segobj);
    self->seg = (SegmentObject *)segobj;
    self->seg->internal_refs++;
    return (PyObject *)self;
}

static void Lock_dealloc(LockObject *self)
{
    if (self->seg)
        self->seg->internal_refs--;
    Py_XDECREF(self->seg);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *lock_acquire(LockObject *self, PyObject *tobj)
{
    PyObject *a[1] = {tobj};
    PyObject *r = Segment_lock_acquire(self->seg, a, 1, NULL);
    if (!r && error_classes[MS_E_OWNER_DIED] &&
        PyErr_ExceptionMatches(error_classes[MS_E_OWNER_DIED])) {
        /* tell the handler which lock it now holds */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (value && PyObject_SetAttrString(value, "lock", (PyObject *)self) < 0)
            PyErr_Clear();
        PyErr_Restore(type, value, tb);
    }
    return r;
}

static PyObject *Lock_acquire(LockObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    PyObject *tobj = Py_None;
    if (nargs == 1 && !kwnames) {
        tobj = args[0];
    } else if (nargs || kwnames) {
        static const char *const kwlist[] = {"timeout"};
        PyObject *vals[1] = {Py_None};
        if (fast_kwargs(args, nargs, kwnames, kwlist, vals, 1, "acquire") < 0)
            return NULL;
        tobj = vals[0];
    }
    return lock_acquire(self, tobj);
}

static PyObject *Lock_release(LockObject *self, PyObject *unused)
{
    (void)unused;
    return Segment_lock_release(self->seg, NULL, 0);
}

static PyObject *Lock_enter(LockObject *self, PyObject *unused)
{
    (void)unused;
    PyObject *r = lock_acquire(self, Py_None);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *Lock_exit(LockObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args; (void)nargs;
    PyObject *r = Segment_lock_release(self->seg, NULL, 0);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *Lock_locked(LockObject *self, PyObject *unused)
{
    (void)unused;
    if (seg_check_header(self->seg) < 0)
        return NULL;
    int held = 0, dead = 0;
    uint32_t holder = 0;
    ms_p_lock_inspect(self->seg->seg.hdr->user_lock, &held, &holder, &dead);
    return PyBool_FromLong(held);
}

static PyMethodDef Lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))Lock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire($self, timeout=None)\n--\n\n"
     "Wait for the lock: timeout=None forever, 0 try once, else seconds.  Returns True\n"
     "when acquired, False on timeout.  Raises OwnerDiedError, with the lock held, if its\n"
     "previous holder died holding it (the exception's .lock is this lock)."},
    {"release", (PyCFunction)Lock_release, METH_NOARGS,
     "release($self, /)\n--\n\nRelease the lock (NotOwnerError if this thread does not hold it)."},
    {"locked", (PyCFunction)Lock_locked, METH_NOARGS,
     "locked($self, /)\n--\n\nTrue if any thread of any process holds the lock."},
    {"__enter__", (PyCFunction)Lock_enter, METH_NOARGS, "acquire()"},
    {"__exit__", (PyCFunction)(void (*)(void))Lock_exit, METH_FASTCALL, "release()"},
    {NULL}
};

static PyTypeObject Lock_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mapshare._core.Lock",
    .tp_basicsize = sizeof(LockObject),
    .tp_dealloc = (destructor)Lock_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The robust lock of a segment (mechanism only; see mapshare.Lock).",
    .tp_methods = Lock_methods,
    .tp_new = Lock_new,
};

/* ---- Channel ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    SegmentObject *segobj;
    ms_channel ch;
    WindowObject *loan;       /* open loan window, if any */
    WindowObject *view;       /* open received view, if any */
    unsigned long loan_thread; /* the thread that opened the loan (view) */
    unsigned long view_thread;
    int bound;
} ChannelObject;

static PyTypeObject Channel_Type;

static PyObject *Channel_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"segment", NULL};
    PyObject *segobj;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!:Channel", kwlist, &Segment_Type, &segobj))
        return NULL;
    SegmentObject *s = (SegmentObject *)segobj;
    if (seg_check_header(s) < 0)
        return NULL;
    if (!s->seg.hdr_writable || s->seg.access != MS_ACCESS_WRITE)
        return raise_status(MS_E_PERMISSION, 0, "a channel needs read-write access");
    ChannelObject *self = (ChannelObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    ms_status st = ms_channel_bind(&self->ch, &s->seg);
    if (st != MS_OK) {
        Py_DECREF(self);
        return raise_status(st, 0, "channel");
    }
    Py_INCREF(segobj);
    self->segobj = s;
    s->internal_refs++;
    self->bound = 1;
    return (PyObject *)self;
}

static int ch_check(ChannelObject *self)
{
    if (!self->bound || !self->segobj->open) {
        PyErr_SetString(PyExc_ValueError, "channel is closed");
        return -1;
    }
    if (self->segobj->seg.faulted) {
        raise_status(MS_E_FAULT, 0, NULL);
        return -1;
    }
    return 0;
}

/* Status -> exception for channel calls: BrokenChannelError carries what it reports, and
 * MS_E_BUSY (this thread holds the lock the call needs) says which. */
static PyObject *ch_raise(ChannelObject *self, ms_status st)
{
    if (st == MS_E_BROKEN) {
        ms_channel *c = &self->ch;
        PyObject *exc = PyObject_CallFunction(
            error_classes[MS_E_BROKEN], "s",
            c->broken_deaths == 1
                ? "a sender died without closing the channel, and no sender is left"
                : "senders died without closing the channel, and no sender is left");
        if (!exc)
            return NULL;
        PyObject *pid = PyLong_FromUnsignedLong(c->broken_pid);
        PyObject *n = PyLong_FromUnsignedLongLong(c->broken_deaths);
        PyObject *ab = PyLong_FromUnsignedLongLong(c->broken_abandoned);
        if (pid && n && ab && PyObject_SetAttrString(exc, "pid", pid) == 0 &&
            PyObject_SetAttrString(exc, "dead_senders", n) == 0 &&
            PyObject_SetAttrString(exc, "abandoned", ab) == 0)
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_XDECREF(pid);
        Py_XDECREF(n);
        Py_XDECREF(ab);
        Py_DECREF(exc);
        return NULL;
    }
    if (st == MS_E_BUSY && ((self->ch.loan_open &&
                             self->loan_thread == PyThread_get_thread_ident()) ||
                            (self->ch.view_open &&
                             self->view_thread == PyThread_get_thread_ident()))) {
        PyErr_SetString(PyExc_RuntimeError,
                        self->ch.loan_open ? "this thread has a loan open on this channel "
                                             "handle: finish it first"
                                           : "this thread has a received view open on this "
                                             "channel handle: finish it first");
        return NULL;
    }
    return raise_status(st, 0, NULL);
}

static void Channel_dealloc(ChannelObject *self)
{
    if (self->bound && self->segobj && self->segobj->open)
        ms_channel_detach(&self->ch);
    if (self->loan)
        window_drop(self->loan);
    if (self->view)
        window_drop(self->view);
    Py_XDECREF(self->loan);
    Py_XDECREF(self->view);
    if (self->segobj)
        self->segobj->internal_refs--;
    Py_XDECREF(self->segobj);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Channel_detach(ChannelObject *self, PyObject *unused)
{
    (void)unused;
    if (self->bound && self->segobj->open) {
        if (self->loan) {
            self->loan->valid = 0;
            window_drop(self->loan);
            Py_CLEAR(self->loan);
        }
        if (self->view) {
            self->view->valid = 0;
            window_drop(self->view);
            Py_CLEAR(self->view);
        }
        SEG_ALLOW_THREADS(self->segobj, ms_channel_detach(&self->ch));
    }
    self->bound = 0;
    Py_RETURN_NONE;
}

static int channel_opts(ChannelObject *self, PyObject *tobj, ms_wait_opts *o)
{
    if (parse_timeout(tobj, &o->timeout_ns) < 0)
        return -1;
    o->spin_ns = self->segobj->spin_ns;
    o->interrupted = check_signals;
    o->arg = NULL;
    o->try_only = 0;
    o->mark = NULL;
    return 0;
}

static const ms_wait_opts fast_opts = {0, 0, NULL, NULL, 1};

static PyObject *channel_send(ChannelObject *self, PyObject *data, PyObject *tobj);

/* send(data, timeout=None) */
static PyObject *Channel_send(ChannelObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    PyObject *data, *tobj = Py_None;
    if (nargs < 1 || nargs > 2 || (kwnames && PyTuple_GET_SIZE(kwnames) > 0)) {
        static const char *const kwlist[] = {"data", "timeout"};
        PyObject *vals[2] = {NULL, Py_None};
        if (fast_kwargs(args, nargs, kwnames, kwlist, vals, 2, "send") < 0)
            return NULL;
        if (!vals[0]) {
            PyErr_SetString(PyExc_TypeError, "send() missing required argument 'data'");
            return NULL;
        }
        data = vals[0];
        tobj = vals[1];
    } else {
        data = args[0];
        if (nargs == 2)
            tobj = args[1];
    }
    return channel_send(self, data, tobj);
}

static PyObject *zero_timeout;

/* send_nowait(data) */
static PyObject *Channel_send_nowait(ChannelObject *self, PyObject *data)
{
    return channel_send(self, data, zero_timeout);
}

static PyObject *channel_send(ChannelObject *self, PyObject *data, PyObject *tobj)
{
    if (tobj != zero_timeout && timeout_check(tobj) < 0)
        return NULL;
    if (ch_check(self) < 0)
        return NULL;
    const char *p;
    Py_ssize_t n;
    Py_buffer buf;
    int have_buf = 0;
    if (PyBytes_CheckExact(data)) {
        p = PyBytes_AS_STRING(data);
        n = PyBytes_GET_SIZE(data);
    } else {
        if (PyObject_GetBuffer(data, &buf, PyBUF_CONTIG_RO) < 0)
            return NULL;
        have_buf = 1;
        p = buf.buf;
        n = buf.len;
    }
    ms_status st;
    if (n < 65536) {
        st = ms_channel_send(&self->ch, p, (size_t)n, &fast_opts);
    } else {
        st = MS_E_BUSY;  /* big copies run without the GIL */
    }
    if (st == MS_E_FULL || st == MS_E_BUSY) {
        ms_wait_opts o;
        if (channel_opts(self, tobj, &o) < 0) {
            if (have_buf)
                PyBuffer_Release(&buf);
            return NULL;
        }
        if (st == MS_E_BUSY || o.timeout_ns != 0) {
            gil_wait g = {NULL, is_main_thread()};
            o.arg = &g;
            g.ts = seg_wait_begin(self->segobj);
            st = ms_channel_send(&self->ch, p, (size_t)n, &o);
            seg_wait_end(self->segobj, g.ts);
        }
    }
    if (have_buf)
        PyBuffer_Release(&buf);
    if (st != MS_OK)
        return ch_raise(self, st);
    RET_NONE(self->segobj);
}

static uint8_t *alloc_bytes(void *arg, size_t len)
{
    PyObject **out = (PyObject **)arg;
    *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    return *out ? (uint8_t *)PyBytes_AS_STRING(*out) : NULL;
}

struct alloc_nogil { PyObject *result; gil_wait *g; };

static uint8_t *alloc_bytes_nogil(void *arg, size_t len)
{
    struct alloc_nogil *a = (struct alloc_nogil *)arg;
    PyEval_RestoreThread(a->g->ts);
    a->result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    a->g->ts = PyEval_SaveThread();
    return a->result ? (uint8_t *)PyBytes_AS_STRING(a->result) : NULL;
}

static PyObject *channel_receive(ChannelObject *self, PyObject *tobj);

/* receive(timeout=None) -> bytes */
static PyObject *Channel_receive(ChannelObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    PyObject *tobj = Py_None;
    if (nargs > 1 || (kwnames && PyTuple_GET_SIZE(kwnames) > 0)) {
        static const char *const kwlist[] = {"timeout"};
        PyObject *vals[1] = {Py_None};
        if (fast_kwargs(args, nargs, kwnames, kwlist, vals, 1, "receive") < 0)
            return NULL;
        tobj = vals[0];
    } else if (nargs == 1) {
        tobj = args[0];
    }
    return channel_receive(self, tobj);
}

/* receive_nowait() -> bytes */
static PyObject *Channel_receive_nowait(ChannelObject *self, PyObject *unused)
{
    (void)unused;
    return channel_receive(self, zero_timeout);
}

static PyObject *channel_receive(ChannelObject *self, PyObject *tobj)
{
    if (tobj != zero_timeout && timeout_check(tobj) < 0)
        return NULL;
    if (ch_check(self) < 0)
        return NULL;
    PyObject *result = NULL;
    ms_status st = ms_channel_receive(&self->ch, alloc_bytes, &result, &fast_opts);
    if (st == MS_OK)
        RET_OBJ(self->segobj, result);
    if (st == MS_E_INVALID && PyErr_Occurred())
        return NULL;
    if (st == MS_E_EMPTY || st == MS_E_BUSY) {
        ms_wait_opts o;
        if (channel_opts(self, tobj, &o) < 0)
            return NULL;
        if (st == MS_E_BUSY || o.timeout_ns != 0) {
            gil_wait g = {NULL, is_main_thread()};
            struct alloc_nogil an = {NULL, &g};
            o.arg = &g;
            g.ts = seg_wait_begin(self->segobj);
            st = ms_channel_receive(&self->ch, alloc_bytes_nogil, &an, &o);
            seg_wait_end(self->segobj, g.ts);
            if (st == MS_OK)
                return an.result;
            if (st == MS_E_INVALID && PyErr_Occurred())
                return NULL;
            Py_XDECREF(an.result);
        }
    }
    return ch_raise(self, st);
}

/* receive_many(max_messages, timeout=None) -> list[bytes] */
struct list_alloc { PyObject *list; };

static uint8_t *alloc_append(void *arg, size_t len)
{
    struct list_alloc *a = (struct list_alloc *)arg;
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    if (!b)
        return NULL;
    int rc = PyList_Append(a->list, b);
    Py_DECREF(b);  /* the list holds it */
    return rc < 0 ? NULL : (uint8_t *)PyBytes_AS_STRING(b);
}

static PyObject *Channel_receive_many(ChannelObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"max_messages", "timeout", NULL};
    Py_ssize_t max;
    PyObject *tobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|O:receive_many", kwlist, conv_max_messages,
                                     &max, &tobj))
        return NULL;
    if (max < 1) {
        PyErr_SetString(PyExc_ValueError, "max_messages must be >= 1");
        return NULL;
    }
    PyObject *first = channel_receive(self, tobj);
    if (!first)
        return NULL;
    PyObject *list = PyList_New(0);
    if (!list || PyList_Append(list, first) < 0) {
        Py_DECREF(first);
        Py_XDECREF(list);
        return NULL;
    }
    Py_DECREF(first);
    if (max > 1 && !self->segobj->seg.faulted) {
        struct list_alloc la = {list};
        size_t count = 0;
        ms_status st = ms_channel_receive_batch(&self->ch, alloc_append, &la, (size_t)max - 1,
                                                &count, &fast_opts);
        if (st == MS_E_INVALID && PyErr_Occurred()) {
            Py_DECREF(list);
            return NULL;
        }
        /* the first message is delivered; anything unusual now surfaces on the next call */
    }
    return list;
}

/* send_many(messages, timeout=None) -> int */
#define SEND_CHUNK 256
struct buf_array { Py_buffer *bufs; };

static int get_buf(void *arg, size_t i, const uint8_t **ptr, size_t *len)
{
    struct buf_array *a = (struct buf_array *)arg;
    *ptr = (const uint8_t *)a->bufs[i].buf;
    *len = (size_t)a->bufs[i].len;
    return 0;
}

static PyObject *Channel_send_many(ChannelObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"messages", "timeout", NULL};
    PyObject *iterable, *tobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:send_many", kwlist, &iterable, &tobj))
        return NULL;
    if (ch_check(self) < 0)
        return NULL;
    ms_wait_opts o;
    if (channel_opts(self, tobj, &o) < 0)
        return NULL;
    PyObject *it = PyObject_GetIter(iterable);
    if (!it)
        return NULL;
    Py_buffer bufs[SEND_CHUNK];
    Py_ssize_t total = 0;
    ms_status st = MS_OK;
    for (;;) {
        size_t n = 0;
        PyObject *item;
        while (n < SEND_CHUNK && (item = PyIter_Next(it)) != NULL) {
            int rc = PyObject_GetBuffer(item, &bufs[n], PyBUF_CONTIG_RO);
            Py_DECREF(item);
            if (rc < 0)
                break;
            n++;
        }
        if (PyErr_Occurred()) {
            for (size_t i = 0; i < n; i++)
                PyBuffer_Release(&bufs[i]);
            Py_DECREF(it);
            return NULL;
        }
        if (n == 0)
            break;
        struct buf_array ba = {bufs};
        size_t count = 0;
        gil_wait g = {NULL, is_main_thread()};
        o.arg = &g;
        g.ts = seg_wait_begin(self->segobj);
        st = ms_channel_send_batch(&self->ch, get_buf, &ba, n, &count, &o);
        seg_wait_end(self->segobj, g.ts);
        for (size_t i = 0; i < n; i++)
            PyBuffer_Release(&bufs[i]);
        total += (Py_ssize_t)count;
        if (st != MS_OK || n < SEND_CHUNK)
            break;
    }
    Py_DECREF(it);
    if (st != MS_OK)
        return ch_raise(self, st);
    return PyLong_FromSsize_t(total);
}

/* loan(n, timeout=None) -> Window (writable, inside the ring) */
static PyObject *Channel_loan(ChannelObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"n", "timeout", "_kind", NULL};
    Py_ssize_t n;
    PyObject *tobj = Py_None;
    unsigned int kind = MS_REC_KIND_BYTES;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|O$I:loan", kwlist, conv_loan_size, &n,
                                     &tobj, &kind))
        return NULL;
    if (kind > 255) {
        PyErr_SetString(PyExc_ValueError, "_kind must be < 256");
        return NULL;
    }
    if (ch_check(self) < 0)
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "loan size must be >= 0");
        return NULL;
    }
    /* Another thread's loan: wait for the send lock it holds, like another process. */
    if (self->loan && self->loan_thread == PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError, "this thread already has an open loan on this "
                                            "channel handle");
        return NULL;
    }
    ms_wait_opts o;
    if (channel_opts(self, tobj, &o) < 0)
        return NULL;
    uint8_t *ptr = NULL;
    gil_wait g = {NULL, is_main_thread()};
    o.arg = &g;
    g.ts = seg_wait_begin(self->segobj);
    ms_status st = ms_channel_loan(&self->ch, (size_t)n, &ptr, &o);
    seg_wait_end(self->segobj, g.ts);
    if (st != MS_OK)
        return ch_raise(self, st);
    self->ch.loan_kind = kind;
    self->loan_thread = PyThread_get_thread_ident();
    WindowObject *w = new_window(self->segobj, ptr, n, 0, 1);
    if (!w) {
        ms_channel_abort(&self->ch);
        return NULL;
    }
    Py_INCREF(self);
    w->chan = (PyObject *)self;
    Py_INCREF(w);
    self->loan = w;
    return (PyObject *)w;
}

static PyObject *channel_commit(ChannelObject *self, WindowObject *w, Py_ssize_t used)
{
    if (w->exports > 0) {
        /* Publishing memory that someone can still write would let them change a
         * message after it was sent: refuse, and give the space back. */
        Py_ssize_t e = w->exports;
        w->valid = 0;
        self->loan = NULL;
        ms_channel_abort(&self->ch);
        Py_DECREF(w);
        PyErr_Format(PyExc_BufferError,
                     "%zd view(s) of the loan are still in use; the message was not sent", e);
        return NULL;
    }
    w->valid = 0;
    self->loan = NULL;
    Py_DECREF(w);
    ms_status st = ms_channel_commit(&self->ch, (size_t)used);
    if (st != MS_OK)
        return ch_raise(self, st);
    RET_NONE(self->segobj);
}

static PyObject *channel_abort(ChannelObject *self, WindowObject *w)
{
    w->valid = 0;
    self->loan = NULL;
    Py_DECREF(w);
    ms_channel_abort(&self->ch);
    RET_NONE(self->segobj);
}

/* commit(window, used=None) */
static PyObject *Channel_commit(ChannelObject *self, PyObject *args)
{
    PyObject *wobj, *uobj = Py_None;
    if (!PyArg_ParseTuple(args, "O|O:commit", &wobj, &uobj))
        return NULL;
    if (!self->loan || (PyObject *)self->loan != wobj) {
        PyErr_SetString(PyExc_RuntimeError, "not the open loan of this channel");
        return NULL;
    }
    WindowObject *w = self->loan;
    Py_ssize_t used = w->len;
    if (uobj != Py_None) {
        used = PyLong_AsSsize_t(uobj);
        if (used == -1 && PyErr_Occurred())
            return NULL;
        if (used < 0 || used > w->len) {
            PyErr_SetString(PyExc_ValueError, "used must be between 0 and the loan size");
            return NULL;
        }
    }
    return channel_commit(self, w, used);
}

static PyObject *Channel_abort(ChannelObject *self, PyObject *args)
{
    PyObject *wobj;
    if (!PyArg_ParseTuple(args, "O:abort", &wobj))
        return NULL;
    if (!self->loan || (PyObject *)self->loan != wobj)
        Py_RETURN_NONE;
    return channel_abort(self, self->loan);
}

/* receive_view(timeout=None) -> Window (read-only, inside the ring) */
static PyObject *Channel_receive_view(ChannelObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"timeout", NULL};
    PyObject *tobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:receive_view", kwlist, &tobj))
        return NULL;
    if (timeout_check(tobj) < 0)
        return NULL;
    if (ch_check(self) < 0)
        return NULL;
    if (self->view && self->view_thread == PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError, "this thread already has an open view on this "
                                            "channel handle");
        return NULL;
    }
    const uint8_t *ptr = NULL;
    size_t len = 0;
    ms_status st = ms_channel_peek(&self->ch, &ptr, &len, &fast_opts);
    if (st == MS_E_EMPTY || st == MS_E_BUSY) {
        ms_wait_opts o;
        if (channel_opts(self, tobj, &o) < 0)
            return NULL;
        if (st == MS_E_BUSY || o.timeout_ns != 0) {
            gil_wait g = {NULL, is_main_thread()};
            o.arg = &g;
            g.ts = seg_wait_begin(self->segobj);
            st = ms_channel_peek(&self->ch, &ptr, &len, &o);
            seg_wait_end(self->segobj, g.ts);
        }
    }
    if (st != MS_OK)
        return ch_raise(self, st);
    self->view_thread = PyThread_get_thread_ident();
    WindowObject *w = new_window(self->segobj, (uint8_t *)ptr, (Py_ssize_t)len, 1, 2);
    if (!w) {
        ms_channel_unconsume(&self->ch);
        return NULL;
    }
    Py_INCREF(self);
    w->chan = (PyObject *)self;
    Py_INCREF(w);
    self->view = w;
    return (PyObject *)w;
}

static PyObject *channel_consume(ChannelObject *self, WindowObject *w, int keep)
{
    Py_ssize_t e = w->exports;
    w->valid = 0;
    self->view = NULL;
    Py_DECREF(w);
    ms_status st = keep ? ms_channel_unconsume(&self->ch) : ms_channel_consume(&self->ch);
    if (st != MS_OK)
        return ch_raise(self, st);
    if (e > 0 && !keep) {
        PyErr_Format(PyExc_BufferError,
                     "%zd view(s) of the received message outlived its block; the message "
                     "was consumed and its memory will be reused", e);
        return NULL;
    }
    RET_NONE(self->segobj);
}

/* consume(window, keep=False): finish a received view */
static PyObject *Channel_consume(ChannelObject *self, PyObject *args)
{
    PyObject *wobj;
    int keep = 0;
    if (!PyArg_ParseTuple(args, "O|p:consume", &wobj, &keep))
        return NULL;
    if (!self->view || (PyObject *)self->view != wobj) {
        PyErr_SetString(PyExc_RuntimeError, "not the open view of this channel");
        return NULL;
    }
    return channel_consume(self, self->view, keep);
}

static PyObject *window_finish(WindowObject *w, int ok)
{
    ChannelObject *ch = (ChannelObject *)w->chan;
    if (!ch)
        Py_RETURN_NONE;
    if (w->kind == 1) {
        if (ch->loan != w)
            Py_RETURN_NONE;  /* already finished */
        return ok ? channel_commit(ch, w, w->len) : channel_abort(ch, w);
    }
    if (ch->view != w)
        Py_RETURN_NONE;
    return channel_consume(ch, w, 0);
}

/* wait_readable(timeout) / wait_writable(n, timeout) -> bool: for asyncio helpers */
static PyObject *Channel_wait_readable(ChannelObject *self, PyObject *args)
{
    PyObject *tobj = Py_None;
    if (!PyArg_ParseTuple(args, "|O:wait_readable", &tobj))
        return NULL;
    if (ch_check(self) < 0)
        return NULL;
    ms_wait_opts o;
    if (channel_opts(self, tobj, &o) < 0)
        return NULL;
    gil_wait g = {NULL, is_main_thread()};
    o.arg = &g;
    g.ts = seg_wait_begin(self->segobj);
    ms_status st = ms_channel_wait_readable(&self->ch, &o);
    seg_wait_end(self->segobj, g.ts);
    if (st == MS_OK)
        RET_TRUE(self->segobj);
    if (st == MS_E_TIMEOUT)
        RET_FALSE(self->segobj);
    return ch_raise(self, st);
}

static PyObject *Channel_wait_writable(ChannelObject *self, PyObject *args)
{
    Py_ssize_t n;
    PyObject *tobj = Py_None;
    if (!PyArg_ParseTuple(args, "n|O:wait_writable", &n, &tobj))
        return NULL;
    if (ch_check(self) < 0)
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "n must be >= 0");
        return NULL;
    }
    ms_wait_opts o;
    if (channel_opts(self, tobj, &o) < 0)
        return NULL;
    gil_wait g = {NULL, is_main_thread()};
    o.arg = &g;
    g.ts = seg_wait_begin(self->segobj);
    ms_status st = ms_channel_wait_writable(&self->ch, (size_t)n, &o);
    seg_wait_end(self->segobj, g.ts);
    if (st == MS_OK)
        RET_TRUE(self->segobj);
    if (st == MS_E_TIMEOUT)
        RET_FALSE(self->segobj);
    return ch_raise(self, st);
}

static PyObject *Channel_after_fork(ChannelObject *self, PyObject *unused)
{
    (void)unused;
    /* The parent's loan or view is held by the parent's thread, not by us. */
    self->ch.sender_registered = 0;
    self->ch.receiver_registered = 0;
    self->ch.loan_open = 0;
    self->ch.view_open = 0;
    if (self->loan) {
        self->loan->valid = 0;
        window_drop(self->loan);
        Py_CLEAR(self->loan);
    }
    if (self->view) {
        self->view->valid = 0;
        window_drop(self->view);
        Py_CLEAR(self->view);
    }
    Py_RETURN_NONE;
}

/* _view_kind() -> int: the MS_REC_KIND_* of the message in this thread's open view */
static PyObject *Channel_view_kind(ChannelObject *self, PyObject *unused)
{
    (void)unused;
    if (!self->view || self->view_thread != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError, "no received view open on this thread");
        return NULL;
    }
    return PyLong_FromUnsignedLong(self->ch.view_kind);
}

/* _abort_waits(): the asyncio helpers' waits on this handle return now and from now on */
static PyObject *Channel_abort_waits(ChannelObject *self, PyObject *unused)
{
    (void)unused;
    if (self->bound && self->segobj->open)
        ms_channel_abort_waits(&self->ch);
    Py_RETURN_NONE;
}

static PyObject *Channel_close_sending(ChannelObject *self, PyObject *unused)
{
    (void)unused;
    if (ch_check(self) < 0)
        return NULL;
    ms_status st = ms_channel_close_sending(&self->ch);
    if (st != MS_OK)
        return ch_raise(self, st);
    RET_NONE(self->segobj);
}

static PyObject *Channel_statistics(ChannelObject *self, PyObject *unused)
{
    (void)unused;
    if (ch_check(self) < 0)
        return NULL;
    ms_channel_stats s;
    ms_channel_statistics(&self->ch, &s);
    return Py_BuildValue(
        "{sKsKsKsKsKsKsKsKsKsKsKsKsIsIsIsIsO}", "capacity", (unsigned long long)s.capacity,
        "max_message", (unsigned long long)s.max_message,
        "queued_bytes", (unsigned long long)s.queued_bytes,
        "queued_messages", (unsigned long long)s.queued_messages_estimate,
        "sent_messages", (unsigned long long)s.sent_messages,
        "sent_bytes", (unsigned long long)s.sent_bytes,
        "received_messages", (unsigned long long)s.received_messages,
        "received_bytes", (unsigned long long)s.received_bytes,
        "high_water", (unsigned long long)s.high_water,
        "redelivered", (unsigned long long)s.redelivered,
        "abandoned", (unsigned long long)s.abandoned,
        "dead_senders", (unsigned long long)s.sender_deaths, "senders", s.senders_alive,
        "receivers", s.receivers_alive, "send_waiters", s.send_waiters,
        "receive_waiters", s.recv_waiters, "closed", s.closed ? Py_True : Py_False);
}

static PyObject *Channel_get_max_message(ChannelObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLongLong(self->ch.max_message);
}

static PyObject *Channel_get_capacity(ChannelObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLongLong(self->ch.cap);
}

static PyGetSetDef Channel_getset[] = {
    {"max_message", (getter)Channel_get_max_message, NULL, "Largest message in bytes.", NULL},
    {"capacity", (getter)Channel_get_capacity, NULL, "Ring size in bytes.", NULL},
    {NULL}
};

static PyMethodDef Channel_methods[] = {
    {"send", (PyCFunction)(void (*)(void))Channel_send, METH_FASTCALL | METH_KEYWORDS,
     "send($self, data, timeout=None)\n--\n\n"
     "Send a bytes-like object, waiting while the channel is full: timeout=None waits\n"
     "forever, 0 does not wait (ChannelFull), else seconds (WaitTimeout).\n"
     "MessageTooLargeError if it can never fit; EndOfChannel after close_sending()."},
    {"send_nowait", (PyCFunction)Channel_send_nowait, METH_O,
     "send_nowait($self, data, /)\n--\n\nSend without waiting; ChannelFull if there is no room."},
    {"receive", (PyCFunction)(void (*)(void))Channel_receive, METH_FASTCALL | METH_KEYWORDS,
     "receive($self, timeout=None)\n--\n\n"
     "Receive the next message as bytes, waiting while the channel is empty: timeout=None\n"
     "waits forever, 0 does not wait (ChannelEmpty), else seconds (WaitTimeout).\n"
     "EndOfChannel once closed and drained; BrokenChannelError once (per handle) when a\n"
     "sender died without closing and none is left, then it waits normally."},
    {"receive_nowait", (PyCFunction)Channel_receive_nowait, METH_NOARGS,
     "receive_nowait($self, /)\n--\n\nReceive without waiting; ChannelEmpty if there is nothing."},
    {"send_many", (PyCFunction)(void (*)(void))Channel_send_many, METH_VARARGS | METH_KEYWORDS,
     "send_many($self, messages, timeout=None)\n--\n\n"
     "Send every bytes-like object of an iterable, in order, taking the lock and waking\n"
     "receivers once per batch instead of once per message.  Returns how many were sent."},
    {"receive_many", (PyCFunction)(void (*)(void))Channel_receive_many,
     METH_VARARGS | METH_KEYWORDS,
     "receive_many($self, max_messages, timeout=None)\n--\n\n"
     "Wait for one message (as receive()), then take up to max_messages in all that are\n"
     "already there, under one lock.  Returns a list of bytes."},
    {"close_sending", (PyCFunction)Channel_close_sending, METH_NOARGS,
     "close_sending($self, /)\n--\n\n"
     "Close the channel for sending: receivers drain what is queued, then get\n"
     "EndOfChannel; later sends raise EndOfChannel.  Permanent."},
    {"loan", (PyCFunction)(void (*)(void))Channel_loan, METH_VARARGS | METH_KEYWORDS,
     "loan($self, n, timeout=None, *, _kind=0)\n--\n\n"
     "Reserve n bytes inside the ring: `with ch.loan(n) as buf:` gives a writable\n"
     "memoryview, sent when the block ends and discarded if it raises.  While the loan\n"
     "is open this handle holds the send lock (other senders wait)."},
    {"_commit", (PyCFunction)Channel_commit, METH_VARARGS, "_commit(window, used=None)"},
    {"_abort", (PyCFunction)Channel_abort, METH_VARARGS, "_abort(window)"},
    {"receive_view", (PyCFunction)(void (*)(void))Channel_receive_view,
     METH_VARARGS | METH_KEYWORDS,
     "receive_view($self, timeout=None)\n--\n\n"
     "`with ch.receive_view() as view:` gives the next message as a read-only memoryview\n"
     "inside the ring, without copying; it is consumed when the block ends, however it\n"
     "ends (a receiver killed inside the block leaves it queued, for redelivery).  While\n"
     "the view is open this handle holds the receive lock (other receivers wait)."},
    {"_consume", (PyCFunction)Channel_consume, METH_VARARGS, "_consume(window, keep=False)"},
    {"_statistics", (PyCFunction)Channel_statistics, METH_NOARGS, "Counters as a dict."},
    {"_detach", (PyCFunction)Channel_detach, METH_NOARGS, "Leave the peer tables."},
    {"_view_kind", (PyCFunction)Channel_view_kind, METH_NOARGS,
     "The kind of the message in this thread's open view."},
    {"_abort_waits", (PyCFunction)Channel_abort_waits, METH_NOARGS,
     "Make the asyncio helpers' waits on this handle return."},
    {"_after_fork", (PyCFunction)Channel_after_fork, METH_NOARGS, "Reset in a forked child."},
    {"_wait_readable", (PyCFunction)Channel_wait_readable, METH_VARARGS,
     "_wait_readable(timeout=None) -> bool: a message or the end is there"},
    {"_wait_writable", (PyCFunction)Channel_wait_writable, METH_VARARGS,
     "_wait_writable(n, timeout=None) -> bool: n bytes would fit"},
    {NULL}
};

static PyTypeObject Channel_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mapshare._core.Channel",
    .tp_basicsize = sizeof(ChannelObject),
    .tp_dealloc = (destructor)Channel_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The ring of a channel segment (mechanism only; see mapshare.Channel).",
    .tp_methods = Channel_methods,
    .tp_getset = Channel_getset,
    .tp_new = Channel_new,
};

/* ---- module ------------------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"set_errors", set_errors, METH_O, "Register {status: exception class}."},
    {"create", (PyCFunction)(void (*)(void))core_create, METH_VARARGS | METH_KEYWORDS,
     "create(osname, name, kind, size, path=None, mode=0o600, lifetime=2, flags=0, "
     "init=None) -> Segment"},
    {"open", (PyCFunction)(void (*)(void))core_open, METH_VARARGS | METH_KEYWORDS,
     "open(osname, path, kind=0, access=2, raw=False, flags=0) -> Segment"},
    {"unlink", core_unlink, METH_VARARGS, "unlink(osname, flags=0)"},
    {"list_objects", core_list_objects, METH_VARARGS,
     "list_objects(flags=0) -> sorted OS names of the mapshare objects"},
    {"reclaim", core_reclaim, METH_VARARGS,
     "reclaim(osname, flags=0, unfinished_ok=False) -> RECLAIM_*: remove a name nobody "
     "can use any more (see ms_segment_reclaim)."},
    {"unlink_if_same", core_unlink_if_same, METH_VARARGS,
     "unlink_if_same(osname, dev, ino, flags=0) -> bool"},
    {"process_alive", core_process_alive, METH_VARARGS,
     "process_alive(pid, start=0) -> 1 alive, 0 dead, -1 unknown"},
    {"process_start", core_process_start, METH_VARARGS, "process_start(pid) -> int"},
    {NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "mapshare._core",
    "The C core of mapshare: memory layout, waiting, locks and the channel ring.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__core(void)
{
    zero_timeout = PyLong_FromLong(0);
    str_release = PyUnicode_InternFromString("release");
    if (!zero_timeout || !str_release)
        return NULL;
    if (PyType_Ready(&Segment_Type) < 0 || PyType_Ready(&Window_Type) < 0 ||
        PyType_Ready(&WindowExport_Type) < 0 ||
        PyType_Ready(&Channel_Type) < 0 || PyType_Ready(&Lock_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m)
        return NULL;
    Py_INCREF(&Segment_Type);
    PyModule_AddObject(m, "Segment", (PyObject *)&Segment_Type);
    Py_INCREF(&Window_Type);
    PyModule_AddObject(m, "Window", (PyObject *)&Window_Type);
    Py_INCREF(&Channel_Type);
    PyModule_AddObject(m, "Channel", (PyObject *)&Channel_Type);
    Py_INCREF(&Lock_Type);
    PyModule_AddObject(m, "Lock", (PyObject *)&Lock_Type);
#define ADD_INT(name, value) PyModule_AddIntConstant(m, name, (long)(value))
    ADD_INT("KIND_SEGMENT", MS_KIND_SEGMENT);
    ADD_INT("KIND_LOCK", MS_KIND_LOCK);
    ADD_INT("KIND_EVENT", MS_KIND_EVENT);
    ADD_INT("KIND_SEMAPHORE", MS_KIND_SEMAPHORE);
    ADD_INT("KIND_CHANNEL", MS_KIND_CHANNEL);
    ADD_INT("KIND_LINK", MS_KIND_LINK);
    ADD_INT("RECLAIM_KEPT", MS_RECLAIM_KEPT);
    ADD_INT("RECLAIM_REMOVED", MS_RECLAIM_REMOVED);
    ADD_INT("RECLAIM_ABSENT", MS_RECLAIM_ABSENT);
    ADD_INT("RECLAIM_UNFINISHED", MS_RECLAIM_UNFINISHED);
    ADD_INT("LIFETIME_PERSISTENT", MS_LIFETIME_PERSISTENT);
    ADD_INT("LIFETIME_SHARED", MS_LIFETIME_SHARED);
    ADD_INT("ACCESS_READ", MS_ACCESS_READ);
    ADD_INT("ACCESS_WRITE", MS_ACCESS_WRITE);
    ADD_INT("ACCESS_COPY", MS_ACCESS_COPY);
    ADD_INT("FLAG_FILE_BACKED", MS_FLAG_FILE_BACKED);
    ADD_INT("OBJ_FOLLOW_SYMLINKS", MS_OBJ_FOLLOW_SYMLINKS);
    ADD_INT("OBJ_GLOBAL", MS_OBJ_GLOBAL);
    ADD_INT("STATE_READY", MS_STATE_READY);
    ADD_INT("STATE_DESTROYED", MS_STATE_DESTROYED);
    ADD_INT("HEADER_SIZE", MS_HEADER_SIZE);
    ADD_INT("LAYOUT_VERSION", MS_LAYOUT_VERSION);
    ADD_INT("NAME_MAX", MS_NAME_MAX);
    ADD_INT("ATTACH_SLOTS", MS_ATTACH_SLOTS);
    ADD_INT("HEADER_PAGE", MS_HEADER_PAGE);
    ADD_INT("PAGE_SIZE", ms_p_page_size());
    ADD_INT("GRANULARITY", ms_p_granularity());
    ADD_INT("RECORD_HEADER", MS_REC_HEADER);
    PyModule_AddObject(m, "MAGIC", PyLong_FromUnsignedLongLong(MS_MAGIC));
    ADD_INT("E_OS", MS_E_OS);
    ADD_INT("E_NOT_FOUND", MS_E_NOT_FOUND);
    ADD_INT("E_EXISTS", MS_E_EXISTS);
    ADD_INT("E_PERMISSION", MS_E_PERMISSION);
    ADD_INT("E_LAYOUT", MS_E_LAYOUT);
    ADD_INT("E_TIMEOUT", MS_E_TIMEOUT);
    ADD_INT("E_INTERRUPTED", MS_E_INTERRUPTED);
    ADD_INT("E_OWNER_DIED", MS_E_OWNER_DIED);
    ADD_INT("E_FULL", MS_E_FULL);
    ADD_INT("E_EMPTY", MS_E_EMPTY);
    ADD_INT("E_CLOSED", MS_E_CLOSED);
    ADD_INT("E_TOO_LARGE", MS_E_TOO_LARGE);
    ADD_INT("E_NOT_OWNER", MS_E_NOT_OWNER);
    ADD_INT("E_NO_SPACE", MS_E_NO_SPACE);
    ADD_INT("E_BUSY", MS_E_BUSY);
    ADD_INT("E_INITIALIZING", MS_E_INITIALIZING);
    ADD_INT("E_DESTROYED", MS_E_DESTROYED);
    ADD_INT("E_BROKEN", MS_E_BROKEN);
    ADD_INT("E_FAULT", MS_E_FAULT);
    ADD_INT("E_INVALID", MS_E_INVALID);
    ADD_INT("E_VALUE", MS_E_VALUE);
    ADD_INT("E_ATTACH_LIMIT", MS_E_ATTACH_LIMIT);
#undef ADD_INT
#ifdef _WIN32
    PyModule_AddStringConstant(m, "PLATFORM", "windows");
#elif defined(__APPLE__)
    PyModule_AddStringConstant(m, "PLATFORM", "darwin");
#else
    PyModule_AddStringConstant(m, "PLATFORM", "linux");
#endif
    return m;
}
