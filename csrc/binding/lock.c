/* mapshare._core.Lock: the robust lock in a segment's header, as an object.
 *
 * acquire/release/__enter__/__exit__ are C methods so that `with lock:` runs no Python
 * frame at all; the uncontended path is a try-lock before any wait option is worked out.
 * The lock keeps its segment object (and so the mapping: internal_refs) alive.
 */
#include "binding.h"

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

