/* mapshare._core.Semaphore: a bounded semaphore (csrc/sync.c) in a segment, as an object.
 *
 * Built once from (segment, offset) like Event: kind, offset, access and tag are checked
 * at construction (and that what is there can be a semaphore: a maximum of at least 1,
 * a value not above it), the address kept.  acquire/release/__enter__/__exit__ are C
 * methods.  The semaphore keeps its segment object (and so the mapping) alive.
 */
#include "binding.h"

typedef struct {
    PyObject_HEAD
    SegmentObject *seg;
    ms_semaphore *s;
    unsigned slot;
} SemaphoreObject;

/* A try that never waits: the uncontended acquire needs no wait options. */
static const ms_wait_opts try_once = {0, 0, NULL, NULL, 0, NULL};

/* Semaphore(segment, offset=None, init=None): as Event; `init` is (value, maximum). */
static PyObject *Semaphore_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"segment", "offset", "init", NULL};
    PyObject *segobj, *offobj = Py_None, *init = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!|OO:Semaphore", kwlist, &Segment_Type,
                                     &segobj, &offobj, &init))
        return NULL;
    SegmentObject *seg = (SegmentObject *)segobj;
    unsigned int value = 0, maximum = 0;
    int creating = init != Py_None;
    if (creating && !PyArg_ParseTuple(init, "O&O&:Semaphore init", conv_value, &value,
                                      conv_maximum, &maximum))
        return NULL;
    unsigned slot;
    ms_semaphore *s = (ms_semaphore *)sync_area(seg, offobj, MS_KIND_SEMAPHORE,
                                                sizeof(ms_semaphore), MS_SLOT_SEMAPHORE,
                                                &slot, creating);
    if (!s)
        return NULL;
    if (creating) {
        ms_status st = ms_semaphore_init_at(s, value, maximum);
        if (st != MS_OK)
            return raise_status(st, 0, "semaphore: need 0 <= value <= maximum and "
                                       "maximum >= 1");
    } else if (offobj != Py_None) {
        uint32_t v = ms_load32(&s->value), m = ms_load32(&s->maximum);
        if (m < 1 || v > m) {
            PyObject *name = PyObject_GetAttrString(segobj, "name");
            if (name)
                PyErr_Format(ms_error_class(MS_E_LAYOUT) ? ms_error_class(MS_E_LAYOUT)
                                                         : PyExc_ValueError,
                             "no semaphore at offset %S of segment %R (value %u, maximum %u)",
                             offobj, name, (unsigned)v, (unsigned)m);
            Py_XDECREF(name);
            return NULL;
        }
    }
    if (FAULTED(seg))
        return raise_status(MS_E_FAULT, 0, NULL);
    SemaphoreObject *self = (SemaphoreObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    Py_INCREF(segobj);
    self->seg = seg;
    self->s = s;
    self->slot = slot;
    seg->internal_refs++;
    return (PyObject *)self;
}

static void Semaphore_dealloc(SemaphoreObject *self)
{
    if (self->seg)
        self->seg->internal_refs--;
    Py_XDECREF(self->seg);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *sem_acquire(SemaphoreObject *self, PyObject *tobj)
{
    SegmentObject *seg = self->seg;
    if (seg_check(seg) < 0 || timeout_check(tobj) < 0)
        return NULL;
    if (ms_semaphore_acquire(&seg->seg, self->slot, self->s, &try_once) == MS_OK)
        RET_TRUE(seg);
    ms_wait_opts o;
    if (wait_args(tobj, NULL, seg, &o) < 0)
        return NULL;
    if (o.timeout_ns == 0)
        RET_FALSE(seg);
    ms_status st;
    WAIT_WITHOUT_GIL(seg, o, st = ms_semaphore_acquire(&seg->seg, self->slot, self->s, &o));
    if (st == MS_OK)
        RET_TRUE(seg);
    if (st == MS_E_TIMEOUT)
        RET_FALSE(seg);
    return raise_status(FAULTED(seg) ? MS_E_FAULT : st, 0, "acquire");
}

static PyObject *Semaphore_acquire(SemaphoreObject *self, PyObject *const *args,
                                   Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && !kwnames)
        return sem_acquire(self, Py_None);
    if (nargs == 1 && !kwnames)
        return sem_acquire(self, args[0]);
    static const char *const kwlist[] = {"timeout"};
    PyObject *vals[1] = {Py_None};
    if (fast_kwargs(args, nargs, kwnames, kwlist, vals, 1, "acquire") < 0)
        return NULL;
    return sem_acquire(self, vals[0]);
}

static PyObject *sem_release(SemaphoreObject *self, unsigned int n)
{
    if (seg_check(self->seg) < 0)
        return NULL;
    ms_status st = ms_semaphore_release(&self->seg->seg, self->slot, self->s, n);
    if (st != MS_OK)
        return raise_named(self->seg, st, "semaphore", NULL);
    RET_NONE(self->seg);
}

static PyObject *Semaphore_release(SemaphoreObject *self, PyObject *const *args,
                                   Py_ssize_t nargs, PyObject *kwnames)
{
    unsigned int n = 1;
    if (nargs || kwnames) {
        static const char *const kwlist[] = {"n"};
        PyObject *vals[1] = {NULL};
        if (fast_kwargs(args, nargs, kwnames, kwlist, vals, 1, "release") < 0)
            return NULL;
        if (vals[0] && !conv_count(vals[0], &n))
            return NULL;
    }
    return sem_release(self, n);
}

/* _wait_available(timeout, spin): wait for a unit to be there without taking it (the
 * worker thread of acquire_async; the loop's thread takes it) */
static PyObject *Semaphore__wait_available(SemaphoreObject *self, PyObject *args)
{
    PyObject *tobj, *sobj;
    if (!PyArg_ParseTuple(args, "OO:_wait_available", &tobj, &sobj))
        return NULL;
    SegmentObject *seg = self->seg;
    if (seg_check(seg) < 0)
        return NULL;
    ms_wait_opts o;
    if (wait_args(tobj, sobj, seg, &o) < 0)
        return NULL;
    ms_status st;
    WAIT_WITHOUT_GIL(seg, o,
                     st = ms_semaphore_wait_available(&seg->seg, self->slot, self->s, &o));
    if (st == MS_OK)
        RET_TRUE(seg);
    if (st == MS_E_TIMEOUT)
        RET_FALSE(seg);
    return raise_status(FAULTED(seg) ? MS_E_FAULT : st, 0, "wait");
}

static PyObject *Semaphore_enter(SemaphoreObject *self, PyObject *unused)
{
    (void)unused;
    PyObject *r = sem_acquire(self, Py_None);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *Semaphore_exit(SemaphoreObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args; (void)nargs;
    PyObject *r = sem_release(self, 1);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *Semaphore_get_value(SemaphoreObject *self, void *c)
{
    (void)c;
    if (seg_check(self->seg) < 0)
        return NULL;
    RET_OBJ(self->seg, PyLong_FromUnsignedLong(ms_load32(&self->s->value)));
}

static PyObject *Semaphore_get_maximum(SemaphoreObject *self, void *c)
{
    (void)c;
    if (seg_check(self->seg) < 0)
        return NULL;
    RET_OBJ(self->seg, PyLong_FromUnsignedLong(ms_load32(&self->s->maximum)));
}

int ms_binding_semaphore_waitable(PyObject *obj, ms_waitable *w)
{
    SemaphoreObject *self = (SemaphoreObject *)obj;
    if (seg_check(self->seg) < 0)
        return -1;
    ms_semaphore_waitable(&self->seg->seg, self->slot, self->s, w);
    return 0;
}

static PyMethodDef Semaphore_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))Semaphore_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire($self, timeout=None)\n--\n\n"
     "Take a unit: timeout=None waits forever, 0 tries once; returns False on timeout."},
    {"release", (PyCFunction)(void (*)(void))Semaphore_release, METH_FASTCALL | METH_KEYWORDS,
     "release($self, n=1)\n--\n\n"
     "Return n units and wake waiters (SemaphoreOverflowError above the maximum)."},
    {"_wait_available", (PyCFunction)Semaphore__wait_available, METH_VARARGS,
     "_wait_available($self, timeout, spin, /)\n--\n\n"
     "Wait for a unit to be there without taking it."},
    {"__enter__", (PyCFunction)Semaphore_enter, METH_NOARGS, "acquire()"},
    {"__exit__", (PyCFunction)(void (*)(void))Semaphore_exit, METH_FASTCALL, "release()"},
    {NULL}
};

static PyGetSetDef Semaphore_getset[] = {
    {"value", (getter)Semaphore_get_value, NULL, "Units available now.", NULL},
    {"maximum", (getter)Semaphore_get_maximum, NULL, "The bound.", NULL},
    {NULL}
};

PyTypeObject Semaphore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mapshare._core.Semaphore",
    .tp_basicsize = sizeof(SemaphoreObject),
    .tp_dealloc = (destructor)Semaphore_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A bounded semaphore in a segment (mechanism only; see mapshare.Semaphore).",
    .tp_methods = Semaphore_methods,
    .tp_getset = Semaphore_getset,
    .tp_new = Semaphore_new,
};

/* ---- mapshare._core.MPSemaphore: the C half of mapshare.multiprocessing.Semaphore and
 * BoundedSemaphore ----
 *
 * As MPLock (lock.c) for the locks: acquire(block=True, timeout=None), release(),
 * __enter__ and __exit__ with the standard signatures, return values and exceptions, as
 * C methods over a mapshare Semaphore bound once by _bind(), so that `with sem:` runs no
 * Python frame (the standard SemLock's are C too). */

typedef struct {
    PyObject_HEAD
    SemaphoreObject *sem;  /* NULL until _bind */
    int bounded;           /* BoundedSemaphore: a release above the bound is ValueError */
    int zero_bound;        /* a BoundedSemaphore(0): every release is one too many (a
                            * mapshare semaphore's maximum is at least 1) */
} MPSemaphoreObject;

static PyObject *MPSemaphore_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    (void)args; (void)kw;  /* the Python subclass's __init__ takes its own arguments */
    return type->tp_alloc(type, 0);
}

static void MPSemaphore_dealloc(MPSemaphoreObject *self)
{
    /* the Python subclasses' subtype_dealloc drops the reference to their type */
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->sem);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int MPSemaphore_traverse(MPSemaphoreObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->sem);
    return 0;
}

static int MPSemaphore_clear(MPSemaphoreObject *self)
{
    Py_CLEAR(self->sem);
    return 0;
}

/* _bind(semaphore, bounded, maxvalue) */
static PyObject *MPSemaphore__bind(MPSemaphoreObject *self, PyObject *args)
{
    PyObject *sem;
    int bounded;
    long long maxvalue;
    if (!PyArg_ParseTuple(args, "O!pL:_bind", &Semaphore_Type, &sem, &bounded, &maxvalue))
        return NULL;
    if (self->sem) {
        PyErr_SetString(PyExc_ValueError, "MPSemaphore: a semaphore is already bound");
        return NULL;
    }
    Py_INCREF(sem);
    self->sem = (SemaphoreObject *)sem;
    self->bounded = bounded;
    self->zero_bound = bounded && maxvalue == 0;
    Py_RETURN_NONE;
}

static int mpsem_bound(MPSemaphoreObject *self)
{
    if (self->sem)
        return 0;
    PyErr_SetString(PyExc_ValueError, "MPSemaphore: no semaphore bound (call _bind first)");
    return -1;
}

static PyObject *MPSemaphore_acquire(MPSemaphoreObject *self, PyObject *const *args,
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
    if (mpsem_bound(self) < 0)
        return NULL;
    int b = block == Py_True ? 1 : PyObject_IsTrue(block);
    if (b < 0)
        return NULL;
    if (b && timeout == Py_None)
        return sem_acquire(self->sem, Py_None);
    /* no block is one try (the timeout ignored); a negative timeout counts as 0 */
    double d = 0.0;
    if (b) {
        d = PyFloat_AsDouble(timeout);
        if (d == -1.0 && PyErr_Occurred())
            return NULL;
    }
    PyObject *t = PyFloat_FromDouble(d > 0 ? d : 0.0);
    if (!t)
        return NULL;
    PyObject *r = sem_acquire(self->sem, t);
    Py_DECREF(t);
    return r;
}

static PyObject *mpsem_release(MPSemaphoreObject *self)
{
    if (mpsem_bound(self) < 0)
        return NULL;
    if (self->zero_bound) {
        PyErr_SetString(PyExc_ValueError, "semaphore or lock released too many times");
        return NULL;
    }
    PyObject *r = sem_release(self->sem, 1);
    if (!r && self->bounded && PyErr_ExceptionMatches(PyExc_ValueError)) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "semaphore or lock released too many times");
    }
    return r;
}

static PyObject *MPSemaphore_release(MPSemaphoreObject *self, PyObject *unused)
{
    (void)unused;
    return mpsem_release(self);
}

static PyObject *MPSemaphore_exit(MPSemaphoreObject *self, PyObject *const *args,
                                  Py_ssize_t nargs)
{
    (void)args; (void)nargs;
    return mpsem_release(self);
}

static PyMethodDef MPSemaphore_methods[] = {
    {"_bind", (PyCFunction)MPSemaphore__bind, METH_VARARGS,
     "_bind($self, semaphore, bounded, maxvalue, /)\n--\n\n"
     "Use `semaphore` (a mapshare._core.Semaphore); once."},
    {"acquire", (PyCFunction)(void (*)(void))MPSemaphore_acquire,
     METH_FASTCALL | METH_KEYWORDS,
     "acquire($self, block=True, timeout=None)\n--\n\n"
     "Take a unit: True, or False when block is false or timeout seconds pass."},
    {"release", (PyCFunction)MPSemaphore_release, METH_NOARGS,
     "release($self, /)\n--\n\n"
     "Give a unit back (ValueError above a BoundedSemaphore's initial value)."},
    {"__enter__", (PyCFunction)(void (*)(void))MPSemaphore_acquire,
     METH_FASTCALL | METH_KEYWORDS, "acquire()"},
    {"__exit__", (PyCFunction)(void (*)(void))MPSemaphore_exit, METH_FASTCALL, "release()"},
    {NULL}
};

PyTypeObject MPSemaphore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mapshare._core.MPSemaphore",
    .tp_basicsize = sizeof(MPSemaphoreObject),
    .tp_dealloc = (destructor)MPSemaphore_dealloc,
    .tp_traverse = (traverseproc)MPSemaphore_traverse,
    .tp_clear = (inquiry)MPSemaphore_clear,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The C half of mapshare.multiprocessing.Semaphore and BoundedSemaphore "
              "(mechanism only).",
    .tp_methods = MPSemaphore_methods,
    .tp_new = MPSemaphore_new,
};
