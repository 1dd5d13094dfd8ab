/* mapshare._core.Lock: the robust lock in a segment's header, as an object.
 *
 * acquire/release/__enter__/__exit__ are C methods so that `with lock:` runs no Python
 * frame at all; the uncontended path is a try-lock before any wait option is worked out.
 * The lock keeps its segment object (and so the mapping: internal_refs) alive.
 */
#include "binding.h"
#if defined(__linux__)
#include <pthread.h>
#endif

#if defined(__GNUC__)
#define MS_ALWAYS_INLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define MS_ALWAYS_INLINE __forceinline
#else
#define MS_ALWAYS_INLINE inline
#endif
#if defined(__GNUC__)
#define MS_NOINLINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define MS_NOINLINE __declspec(noinline)
#else
#define MS_NOINLINE
#endif

typedef struct {
    PyObject_HEAD
    SegmentObject *seg;
    void *area;       /* the lock in the header, fixed for the mapping's lifetime */
} LockObject;

static PyObject *Lock_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"segment", NULL};
    PyObject *segobj;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!:Lock", kwlist, &Segment_Type, &segobj))
        return NULL;
    SegmentObject *seg = (SegmentObject *)segobj;
    if (seg_check_header(seg) < 0)
        return NULL;
    LockObject *self = (LockObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    Py_INCREF(segobj);
    self->seg = seg;
    self->area = seg->seg.hdr->user_lock;
    seg->internal_refs++;
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
    SegmentObject *seg = self->seg;
    if (seg_check(seg) < 0)
        return NULL;
    if (!seg->seg.hdr_writable)
        return raise_named(seg, MS_E_PERMISSION, "lock of",
                           "the segment was opened read-only");
    ms_wait_opts o;
    if (tobj != Py_None && wait_args(tobj, NULL, seg, &o) < 0)
        return NULL;
    int err = 0;
    ms_status st = ms_p_lock_acquire(seg->seg.ctx, MS_SLOT_USER_LOCK, self->area, 0, &err);
    if (st == MS_E_TIMEOUT && tobj == Py_None && wait_args(tobj, NULL, seg, &o) < 0)
        return NULL;
    if (st == MS_E_TIMEOUT && o.timeout_ns != 0)
        WAIT_WITHOUT_GIL(seg, o,
                         st = ms_lock_acquire(&seg->seg, MS_SLOT_USER_LOCK, self->area, &o,
                                              &err));
    /* One bit per lock area, not a count: whoever takes a lock over (after its holder
     * thread exited, say) owns the single hold, so a dead thread's acquisition through
     * this handle does not block close() forever. */
    if (st == MS_OK || st == MS_E_OWNER_DIED)
        seg->locks_held |= 1;
    if (st == MS_OK)
        RET_TRUE(seg);
    if (st == MS_E_TIMEOUT)
        RET_FALSE(seg);
    if (st == MS_E_ALREADY_HELD)
        return raise_named(seg, st, "the lock of", NULL);
    raise_status(st, err, "lock");
    PyObject *died = ms_error_class(MS_E_OWNER_DIED);
    if (st == MS_E_OWNER_DIED && died && PyErr_ExceptionMatches(died)) {
        /* tell the handler which lock it now holds */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (value && PyObject_SetAttrString(value, "lock", (PyObject *)self) < 0)
            PyErr_Clear();
        PyErr_Restore(type, value, tb);
    }
    return NULL;
}

static PyObject *lock_release(LockObject *self)
{
    SegmentObject *seg = self->seg;
    if (seg_check(seg) < 0)
        return NULL;
    int err = 0;
    ms_status st = ms_lock_release(&seg->seg, MS_SLOT_USER_LOCK, self->area, &err);
    if (st != MS_OK)
        return raise_status(st, err, "release");
    seg->locks_held &= ~1;
    RET_NONE(seg);
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
    return lock_release(self);
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
    PyObject *r = lock_release(self);
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
    ms_p_lock_inspect(self->area, &held, &holder, &dead);
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

PyTypeObject Lock_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mapshare._core.Lock",
    .tp_basicsize = sizeof(LockObject),
    .tp_dealloc = (destructor)Lock_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The robust lock of a segment (mechanism only; see mapshare.Lock).",
    .tp_methods = Lock_methods,
    .tp_new = Lock_new,
};


/* ---- mapshare._core.MPLock: the C half of mapshare.multiprocessing.Lock and RLock ----
 *
 * multiprocessing's SemLock is a C type: `with lock:` and lock.acquire() run no Python
 * frame.  This type gives the drop-in classes the same: acquire(block=True,
 * timeout=None), release(), __enter__ and __exit__ with the standard signatures, return
 * values and exceptions, over a robust mapshare Lock bound once by _bind().  It keeps
 * which thread of this process holds the lock and, for an RLock, how many times: the
 * robust lock word knows the holder thread, but not the recursion, and the Python class
 * (Condition) asks for both.  Policy that is not on the hot path stays in Python. */

typedef struct {
    PyObject_HEAD
    LockObject *lock;     /* the robust lock (a mapshare._core.Lock), NULL until _bind */
    unsigned long owner;  /* thread ident of the holder in this process, when level > 0 */
    long level;           /* acquisitions by that thread not yet released (0: not held here) */
    int recursive;        /* RLock: the holder may acquire again */
} MPLockObject;

/* The calling thread's ident, the value threading.get_ident() gives.  On Linux that is
 * pthread_self() (CPython's thread_pthread.h); calling it directly skips
 * PyThread_get_thread_ident's initialisation check on every acquire, the uncontended
 * Lock's hot path. */
#if defined(__linux__)
#define mplock_me() ((unsigned long)pthread_self())
#else
#define mplock_me() PyThread_get_thread_ident()
#endif

static PyObject *MPLock_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    (void)args; (void)kw;  /* the Python subclass's __init__ takes its own arguments */
    return type->tp_alloc(type, 0);
}

static void MPLock_dealloc(MPLockObject *self)
{
    /* the Python subclasses' subtype_dealloc drops the reference to their type */
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int MPLock_traverse(MPLockObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->lock);
    return 0;
}

static int MPLock_clear(MPLockObject *self)
{
    Py_CLEAR(self->lock);
    return 0;
}

static int mplock_bound(MPLockObject *self)
{
    if (self->lock)
        return 0;
    PyErr_SetString(PyExc_ValueError, "MPLock: no lock bound (call _bind first)");
    return -1;
}

/* _bind(lock, recursive): the robust lock to use, once */
static PyObject *MPLock__bind(MPLockObject *self, PyObject *args)
{
    PyObject *lock;
    int recursive;
    if (!PyArg_ParseTuple(args, "O!p:_bind", &Lock_Type, &lock, &recursive))
        return NULL;
    if (self->lock) {
        PyErr_SetString(PyExc_ValueError, "MPLock: a lock is already bound");
        return NULL;
    }
    Py_INCREF(lock);
    self->lock = (LockObject *)lock;
    self->recursive = recursive;
    self->level = 0;
    Py_RETURN_NONE;
}

/* time.sleep(seconds): the standard Lock waits out its timeout when it cannot get the
 * lock; so does a thread asking again for a Lock it holds (nobody else can free it). */
static PyObject *sleep_seconds(PyObject *seconds)
{
    PyObject *time = PyImport_ImportModule("time");
    if (!time)
        return NULL;
    PyObject *r = PyObject_CallMethod(time, "sleep", "O", seconds);
    Py_DECREF(time);
    return r;
}

/* acquire(block=True, timeout=None), all of it; MPLock_acquire below is its uncontended
 * no-argument case */
static MS_NOINLINE PyObject *mplock_acquire_full(MPLockObject *self, PyObject *const *args,
                                                 Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *block = Py_True, *timeout = Py_None;
    if (nargs || kwnames) {
        static const char *const kwlist[] = {"block", "timeout"};
        PyObject *vals[2] = {Py_True, Py_None};
        if (fast_kwargs(args, nargs, kwnames, kwlist, vals, 2, "acquire") < 0)
            return NULL;
        block = vals[0];
        timeout = vals[1];
    }
    if (mplock_bound(self) < 0)
        return NULL;
    unsigned long me = mplock_me();
    LockObject *lk = self->lock;
    SegmentObject *seg = lk->seg;
    if (seg->open && !seg->seg.faulted && seg->seg.hdr_writable &&
        (block == Py_True || block == Py_False) &&
        (timeout == Py_None || PyFloat_CheckExact(timeout) || PyLong_CheckExact(timeout)) &&
        !(self->recursive && self->level > 0 && self->owner == me)) {
        /* the uncontended path: one try, right for any (block, timeout) of these types;
         * the standard lock refuses a timeout that is not a number even when free, so
         * anything else takes the full path */
        int err = 0;
        ms_status st = ms_p_lock_acquire(seg->seg.ctx, MS_SLOT_USER_LOCK, lk->area, 0, &err);
        /* a holder that died holding it: taken over (the standard lock would stay
         * locked forever; docs/multiprocessing.md), and consistent again already */
        if ((st == MS_OK || st == MS_E_OWNER_DIED) && !seg->seg.faulted) {
            seg->locks_held |= 1;
            self->owner = me;
            self->level = 1;
            Py_RETURN_TRUE;
        }
        if (st == MS_OK || st == MS_E_OWNER_DIED) {
            seg->locks_held |= 1;
            self->owner = me;
            self->level = 1;
            return raise_status(MS_E_FAULT, 0, NULL);
        }
        /* anything else (busy, held by this thread, a dead holder): the full path */
    }
    if (self->recursive && self->level > 0 && self->owner == me) {
        if (self->level == LONG_MAX) {
            PyErr_SetString(PyExc_OverflowError, "RLock: too many acquisitions");
            return NULL;
        }
        self->level++;
        Py_RETURN_TRUE;
    }
    /* the standard (block, timeout) pair as a mapshare timeout: no block is one try
     * (the timeout ignored), a negative timeout counts as 0, None waits forever */
    PyObject *t;
    int b = block == Py_True ? 1 : PyObject_IsTrue(block);
    if (b < 0)
        return NULL;
    if (!b) {
        t = PyFloat_FromDouble(0.0);
    } else if (timeout == Py_None) {
        t = Py_NewRef(Py_None);
    } else {
        double d = PyFloat_AsDouble(timeout);
        if (d == -1.0 && PyErr_Occurred())
            return NULL;
        t = PyFloat_FromDouble(d > 0 ? d : 0.0);
    }
    if (!t)
        return NULL;
    PyObject *r = lock_acquire(self->lock, t);
    if (!r) {
        PyObject *died = ms_error_class(MS_E_OWNER_DIED);
        PyObject *held = ms_error_class(MS_E_ALREADY_HELD);
        if (died && PyErr_ExceptionMatches(died)) {
            /* its holder died holding it: taken over (the standard lock would stay
             * locked forever; docs/multiprocessing.md) */
            PyErr_Clear();
            r = Py_NewRef(Py_True);
        } else if (held && PyErr_ExceptionMatches(held)) {
            /* this thread holds it (a Lock, or an RLock whose count was forgotten):
             * nobody else can release it, so the answer is known */
            PyErr_Clear();
            if (t == Py_None) {
                Py_DECREF(t);
                PyErr_SetString(PyExc_RuntimeError,
                                "this thread already holds this Lock (not reentrant): "
                                "blocking here would deadlock; use RLock");
                return NULL;
            }
            PyObject *s = sleep_seconds(t);
            Py_DECREF(t);
            if (!s)
                return NULL;
            Py_DECREF(s);
            Py_RETURN_FALSE;
        } else {
            Py_DECREF(t);
            return NULL;
        }
    }
    Py_DECREF(t);
    if (r == Py_True) {
        self->owner = me;
        self->level = 1;
    }
    return r;
}

/* acquire() and `with lock:` with no arguments on a free lock: the checks and the try of
 * mplock_acquire_full's uncontended path, nothing else, so that this function saves no
 * registers for the rest.  The lock taken from a holder that died is taken too (as
 * there); anything else -- arguments, a closed or faulted segment, an RLock's holder
 * asking again, a busy lock -- is mplock_acquire_full's (whose first step is this try
 * again: cheap, and right, since this one changed nothing). */
static PyObject *MPLock_acquire(MPLockObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    LockObject *lk = self->lock;
    if (!nargs && !kwnames && lk && !(self->recursive && self->level > 0)) {
        SegmentObject *seg = lk->seg;
        if (seg->open && !seg->seg.faulted && seg->seg.hdr_writable) {
            int err = 0;
            ms_status st = ms_p_lock_acquire(seg->seg.ctx, MS_SLOT_USER_LOCK, lk->area, 0,
                                             &err);
            if ((st == MS_OK || st == MS_E_OWNER_DIED) && !seg->seg.faulted) {
                seg->locks_held |= 1;
                self->owner = mplock_me();
                self->level = 1;
                Py_RETURN_TRUE;
            }
            if (st == MS_OK || st == MS_E_OWNER_DIED) {
                seg->locks_held |= 1;
                self->owner = mplock_me();
                self->level = 1;
                return raise_status(MS_E_FAULT, 0, NULL);
            }
        }
    }
    return mplock_acquire_full(self, args, nargs, kwnames);
}

/* After the platform release failed (or could not be tried): the full path reports why,
 * and this process's record of the holder goes back to what it was. */
static MS_NOINLINE PyObject *mplock_release_rest(MPLockObject *self, long level,
                                                 unsigned long owner)
{
    PyObject *r = lock_release(self->lock);
    if (r)
        return r;
    /* not released: this process's record of the holder stays as it was */
    self->level = level;
    self->owner = owner;
    PyObject *not_owner = ms_error_class(MS_E_NOT_OWNER);
    if (!self->recursive && not_owner && PyErr_ExceptionMatches(not_owner)) {
        int held = 0, dead = 0;
        uint32_t holder = 0;
        if (seg_check_header(self->lock->seg) < 0)
            return NULL;
        ms_p_lock_inspect(self->lock->area, &held, &holder, &dead);
        if (!held) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "semaphore or lock released too many times");
        }
    }
    return NULL;
}

/* release(), all of it (an RLock's count, an unbound object, a closed segment) */
static MS_NOINLINE PyObject *mplock_release_full(MPLockObject *self)
{
    if (mplock_bound(self) < 0)
        return NULL;
    if (self->recursive) {
        /* only an RLock asks who is releasing: a Lock's robust word knows its holder */
        unsigned long me = mplock_me();
        if (self->level <= 0 || self->owner != me) {
            PyErr_SetString(PyExc_AssertionError,
                            "attempt to release recursive lock not owned by thread");
            return NULL;
        }
        if (self->level > 1) {
            self->level--;
            Py_RETURN_NONE;
        }
    }
    long level = self->level;
    unsigned long owner = self->owner;
    self->level = 0;
    SegmentObject *seg = self->lock->seg;
    if (seg->open && !seg->seg.faulted) {
        int err = 0;
        /* the platform call itself, as acquire's try: ms_lock_release adds nothing */
        ms_status st = ms_p_lock_release(seg->seg.ctx, MS_SLOT_USER_LOCK, self->lock->area,
                                         &err);
        if (st == MS_OK) {
            seg->locks_held &= ~1;
            if (seg->seg.faulted)
                return raise_status(MS_E_FAULT, 0, NULL);
            Py_RETURN_NONE;
        }
    }
    return mplock_release_rest(self, level, owner);
}

/* The body of both release() and __exit__: a Lock's (not an RLock's) release on an open
 * segment is mplock_release_full's platform call and nothing else, so that this function
 * saves no registers for the rest. */
static MS_ALWAYS_INLINE PyObject *mplock_release(MPLockObject *self)
{
    LockObject *lk = self->lock;
    if (lk && !self->recursive) {
        SegmentObject *seg = lk->seg;
        if (seg->open && !seg->seg.faulted) {
            long level = self->level;
            unsigned long owner = self->owner;
            self->level = 0;
            int err = 0;
            ms_status st = ms_p_lock_release(seg->seg.ctx, MS_SLOT_USER_LOCK, lk->area, &err);
            if (st == MS_OK) {
                seg->locks_held &= ~1;
                if (seg->seg.faulted)
                    return raise_status(MS_E_FAULT, 0, NULL);
                Py_RETURN_NONE;
            }
            return mplock_release_rest(self, level, owner);
        }
    }
    return mplock_release_full(self);
}

static PyObject *MPLock_release(MPLockObject *self, PyObject *unused)
{
    (void)unused;
    return mplock_release(self);
}

static PyObject *MPLock_exit(MPLockObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args; (void)nargs;
    return mplock_release(self);
}

static PyObject *MPLock_get_owner(MPLockObject *self, void *c)
{
    (void)c;
    if (self->level <= 0)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(self->owner);
}

static int MPLock_set_owner(MPLockObject *self, PyObject *v, void *c)
{
    (void)c;
    if (!v || v == Py_None) {
        self->level = 0;
        return 0;
    }
    unsigned long o = PyLong_AsUnsignedLong(v);
    if (o == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    self->owner = o;
    if (self->level <= 0)
        self->level = 1;
    return 0;
}

static PyObject *MPLock_get_level(MPLockObject *self, void *c)
{
    (void)c;
    return PyLong_FromLong(self->level);
}

static int MPLock_set_level(MPLockObject *self, PyObject *v, void *c)
{
    (void)c;
    long l = v ? PyLong_AsLong(v) : 0;
    if (l == -1 && PyErr_Occurred())
        return -1;
    self->level = l > 0 ? l : 0;
    return 0;
}

static PyMethodDef MPLock_methods[] = {
    {"_bind", (PyCFunction)MPLock__bind, METH_VARARGS,
     "_bind($self, lock, recursive, /)\n--\n\nUse `lock` (a mapshare._core.Lock); once."},
    {"acquire", (PyCFunction)(void (*)(void))MPLock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire($self, block=True, timeout=None)\n--\n\n"
     "Take the lock (again, for an RLock's holder): True, or False when block is false or\n"
     "timeout seconds pass.  A holder that died hands the lock over (True)."},
    {"release", (PyCFunction)MPLock_release, METH_NOARGS,
     "release($self, /)\n--\n\nUndo one acquire(); the last one frees the lock."},
    {"__enter__", (PyCFunction)(void (*)(void))MPLock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire()"},
    {"__exit__", (PyCFunction)(void (*)(void))MPLock_exit, METH_FASTCALL, "release()"},
    {NULL}
};

static PyGetSetDef MPLock_getset[] = {
    {"_owner", (getter)MPLock_get_owner, (setter)MPLock_set_owner,
     "Thread ident of the holder in this process, or None.", NULL},
    {"_level", (getter)MPLock_get_level, (setter)MPLock_set_level,
     "Acquisitions by the holder in this process not yet released.", NULL},
    {NULL}
};

PyTypeObject MPLock_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mapshare._core.MPLock",
    .tp_basicsize = sizeof(MPLockObject),
    .tp_dealloc = (destructor)MPLock_dealloc,
    .tp_traverse = (traverseproc)MPLock_traverse,
    .tp_clear = (inquiry)MPLock_clear,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The C half of mapshare.multiprocessing.Lock and RLock (mechanism only).",
    .tp_methods = MPLock_methods,
    .tp_getset = MPLock_getset,
    .tp_new = MPLock_new,
};
