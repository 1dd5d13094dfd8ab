/* mapshare._core.Latest: a latest-value slot (csrc/latest.c) bound to a Segment.
 *
 * get() and set() are each one C call with the GIL held: a read never waits (it retries
 * while the value changes under it), and a set waits only for another writer, in which
 * case -- and for values above SET_NOGIL_BYTES -- it runs again with the GIL released.
 */
#include "binding.h"
#include "../latest.h"

typedef struct {
    PyObject_HEAD
    SegmentObject *segobj;
    ms_latest_handle l;
    int bound;
    int readonly;              /* bound to a read-only mapping: set() refused */
} LatestObject;

/* Larger values are copied with the GIL released (a copy of this size costs ~10 µs). */
#define SET_NOGIL_BYTES 262144u

static const ms_wait_opts try_opts = {0, 0, NULL, NULL, 1, NULL};

static PyObject *Latest_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"segment", NULL};
    PyObject *segobj;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!:Latest", kwlist, &Segment_Type, &segobj))
        return NULL;
    SegmentObject *s = (SegmentObject *)segobj;
    if (seg_check_header(s) < 0)
        return NULL;
    int readonly = !s->seg.hdr_writable || s->seg.access != MS_ACCESS_WRITE;
    LatestObject *self = (LatestObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    ms_status st = ms_latest_bind(&self->l, &s->seg);
    if (st != MS_OK) {
        Py_DECREF(self);
        return raise_status(st, 0, "latest");
    }
    Py_INCREF(segobj);
    self->segobj = s;
    s->internal_refs++;
    self->bound = 1;
    self->readonly = readonly;
    return (PyObject *)self;
}

static void Latest_dealloc(LatestObject *self)
{
    if (self->segobj)
        self->segobj->internal_refs--;
    Py_XDECREF(self->segobj);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int lt_check(LatestObject *self)
{
    if (!self->bound || !self->segobj->open) {
        PyErr_SetString(PyExc_ValueError, "latest is closed");
        return -1;
    }
    if (self->segobj->seg.faulted) {
        raise_status(MS_E_FAULT, 0, NULL);
        return -1;
    }
    return 0;
}

static PyObject *Latest_detach(LatestObject *self, PyObject *unused)
{
    (void)unused;
    self->bound = 0;
    Py_RETURN_NONE;
}

static PyObject *lt_raise(LatestObject *self, ms_status st)
{
    if (st == MS_E_TOO_LARGE)
        return raise_named(self->segobj, st, "latest",
                           "value is larger than the slot's max_size");
    if (st == MS_E_TIMEOUT)
        return raise_named(self->segobj, st, "latest",
                           "no complete copy of the value could be made: it was replaced "
                           "faster than it could be copied for 1 s");
    return raise_named(self->segobj, st, "latest", NULL);
}

static PyObject *do_set(LatestObject *self, PyObject *data, uint32_t kind)
{
    if (lt_check(self) < 0)
        return NULL;
    if (self->readonly)
        return raise_status(MS_E_PERMISSION, 0, "a read-only Latest cannot be set");
    Py_buffer b;
    if (PyObject_GetBuffer(data, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    uint64_t version = 0;
    ms_status st = MS_E_TIMEOUT;
    if ((size_t)b.len <= SET_NOGIL_BYTES)
        st = ms_latest_write(&self->l, b.buf, (size_t)b.len, kind, &try_opts, &version);
    if (st == MS_E_TIMEOUT) {
        /* another writer holds the lock (or a large copy): wait without the GIL */
        ms_wait_opts o = {-1, self->segobj->spin_ns, check_signals, NULL, 0, NULL};
        WAIT_WITHOUT_GIL(self->segobj, o,
                         st = ms_latest_write(&self->l, b.buf, (size_t)b.len, kind, &o,
                                              &version));
    }
    PyBuffer_Release(&b);
    if (st != MS_OK)
        return lt_raise(self, st);
    RET_OBJ(self->segobj, PyLong_FromUnsignedLongLong(version));
}

static PyObject *Latest_set(LatestObject *self, PyObject *data)
{
    return do_set(self, data, MS_REC_KIND_BYTES);
}

static PyObject *Latest_set_kind(LatestObject *self, PyObject *args)
{
    PyObject *data;
    unsigned int kind;
    if (!PyArg_ParseTuple(args, "OI:_set_kind", &data, &kind))
        return NULL;
    if (kind > 255) {
        PyErr_SetString(PyExc_ValueError, "kind must be < 256");
        return NULL;
    }
    return do_set(self, data, kind);
}

/* alloc callback: a bytes object of len (replacing one of another length) */
static uint8_t *alloc_bytes(void *arg, size_t len)
{
    PyObject **res = (PyObject **)arg;
    if (*res && (size_t)PyBytes_GET_SIZE(*res) == len)
        return (uint8_t *)PyBytes_AS_STRING(*res);
    Py_CLEAR(*res);
    if (len > (size_t)PY_SSIZE_T_MAX)
        return NULL;
    *res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    return *res ? (uint8_t *)PyBytes_AS_STRING(*res) : NULL;
}

static PyObject *do_get(LatestObject *self, int with_kind)
{
    if (lt_check(self) < 0)
        return NULL;
    PyObject *res = NULL;
    uint64_t version = 0;
    uint32_t kind = 0;
    ms_status st = ms_latest_read(&self->l, alloc_bytes, &res, &version, &kind);
    if (st != MS_OK) {
        Py_XDECREF(res);
        if (st == MS_E_INVALID && PyErr_Occurred())
            return NULL;
        return lt_raise(self, st);
    }
    if (FAULTED(self->segobj)) {
        Py_XDECREF(res);
        return raise_status(MS_E_FAULT, 0, NULL);
    }
    PyObject *v = PyLong_FromUnsignedLongLong(version);
    if (!v) {
        Py_DECREF(res);
        return NULL;
    }
    PyObject *t = PyTuple_New(with_kind ? 3 : 2);
    if (!t) {
        Py_DECREF(res);
        Py_DECREF(v);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, res);
    PyTuple_SET_ITEM(t, 1, v);
    if (with_kind) {
        PyObject *k = PyLong_FromUnsignedLong(kind);
        if (!k) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, 2, k);
    }
    return t;
}

static PyObject *Latest_get(LatestObject *self, PyObject *unused)
{
    (void)unused;
    return do_get(self, 0);
}

static PyObject *Latest_get_kind(LatestObject *self, PyObject *unused)
{
    (void)unused;
    return do_get(self, 1);
}

/* _peek() -> (offset, length, version, kind, buffer, seq) */
static PyObject *Latest_peek(LatestObject *self, PyObject *unused)
{
    (void)unused;
    if (lt_check(self) < 0)
        return NULL;
    ms_latest_view v;
    ms_status st = ms_latest_peek(&self->l, &v);
    if (st != MS_OK)
        return lt_raise(self, st);
    RET_OBJ(self->segobj,
            Py_BuildValue("KKKIIK", (unsigned long long)v.offset,
                          (unsigned long long)v.length, (unsigned long long)v.version,
                          v.kind, v.buffer, (unsigned long long)v.seq));
}

/* _check(buffer, seq): None if that buffer still holds that value, else Overwritten */
static PyObject *Latest_check(LatestObject *self, PyObject *args)
{
    unsigned int buffer;
    unsigned long long seq;
    if (!PyArg_ParseTuple(args, "IK:_check", &buffer, &seq))
        return NULL;
    if (lt_check(self) < 0)
        return NULL;
    ms_latest_view v;
    memset(&v, 0, sizeof v);
    v.buffer = buffer;
    v.seq = seq;
    ms_status st = ms_latest_check(&self->l, &v);
    if (st == MS_E_OVERWRITTEN)
        return raise_named(self->segobj, st, "latest",
                           "the value was replaced while the view was in use");
    if (st != MS_OK)
        return lt_raise(self, st);
    RET_NONE(self->segobj);
}

/* _copy_into(buffer, seq, offset, dest) -> bool: copy len(dest) bytes of the value that
 * _peek located, from `offset` in it, into dest (a writable contiguous buffer, or None to
 * only check); False if the value was replaced before or during the copy (dest then
 * holds garbage: peek again).  get_array's one copy, straight into the result. */
static PyObject *Latest_copy_into(LatestObject *self, PyObject *args)
{
    unsigned int buffer;
    unsigned long long seq, offset;
    PyObject *dest;
    if (!PyArg_ParseTuple(args, "IKKO:_copy_into", &buffer, &seq, &offset, &dest))
        return NULL;
    if (lt_check(self) < 0)
        return NULL;
    Py_buffer b;
    b.buf = NULL;
    b.len = 0;
    if (dest != Py_None &&
        PyObject_GetBuffer(dest, &b, PyBUF_WRITABLE | PyBUF_ANY_CONTIGUOUS) < 0)
        return NULL;
    ms_latest_view v;
    memset(&v, 0, sizeof v);
    v.buffer = buffer;
    v.seq = seq;
    ms_status st = ms_latest_copy(&self->l, &v, offset, b.buf, (size_t)b.len);
    if (dest != Py_None)
        PyBuffer_Release(&b);
    if (st == MS_E_OVERWRITTEN)
        Py_RETURN_FALSE;
    if (st == MS_E_INVALID) {
        PyErr_SetString(PyExc_ValueError, "range beyond the slot's max_size");
        return NULL;
    }
    if (st != MS_OK)
        return lt_raise(self, st);
    if (FAULTED(self->segobj))
        return raise_status(MS_E_FAULT, 0, NULL);
    Py_RETURN_TRUE;
}

/* _wait(since, timeout=None) -> version */
static PyObject *Latest_wait(LatestObject *self, PyObject *args)
{
    unsigned long long since;
    PyObject *tobj = Py_None;
    if (!PyArg_ParseTuple(args, "K|O:_wait", &since, &tobj))
        return NULL;
    ms_wait_opts o;
    if (wait_args(tobj, NULL, self->segobj, &o) < 0)
        return NULL;
    if (lt_check(self) < 0)
        return NULL;
    uint64_t now = 0;
    ms_status st;
    WAIT_WITHOUT_GIL(self->segobj, o, st = ms_latest_wait(&self->l, since, &o, &now));
    if (st == MS_E_INTERRUPTED && PyErr_Occurred())
        return NULL;
    if (self->l.abort_waits) {
        PyErr_SetString(PyExc_ValueError, "latest is closed");
        return NULL;
    }
    if (st != MS_OK)
        return raise_named(self->segobj, st, "latest",
                           st == MS_E_TIMEOUT ? "no newer version within the timeout" : NULL);
    RET_OBJ(self->segobj, PyLong_FromUnsignedLongLong(now));
}

/* _statistics() -> (version, max_size, length, kind, buffers, waiters, writer_deaths) */
static PyObject *Latest_abort_waits(LatestObject *self, PyObject *unused)
{
    (void)unused;
    if (self->bound && self->segobj->open && !self->segobj->seg.faulted)
        ms_latest_abort_waits(&self->l);
    Py_RETURN_NONE;
}

static PyObject *Latest_statistics(LatestObject *self, PyObject *unused)
{
    (void)unused;
    if (lt_check(self) < 0)
        return NULL;
    ms_latest_stats s;
    ms_status st = ms_latest_statistics(&self->l, &s);
    if (st != MS_OK)
        return lt_raise(self, st);
    RET_OBJ(self->segobj,
            Py_BuildValue("KKKIIIK", (unsigned long long)s.version,
                          (unsigned long long)s.max_size, (unsigned long long)s.length,
                          s.kind, s.buffers, s.waiters,
                          (unsigned long long)s.writer_deaths));
}

static PyObject *Latest_get_version(LatestObject *self, void *c)
{
    (void)c;
    if (lt_check(self) < 0)
        return NULL;
    RET_OBJ(self->segobj, PyLong_FromUnsignedLongLong(ms_latest_version(&self->l)));
}

static PyObject *Latest_get_max_size(LatestObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLongLong(self->l.max_size);
}

static PyObject *Latest_get_buffers(LatestObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLong(self->l.buffers);
}

static PyObject *Latest_get_closed(LatestObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(!self->bound || !self->segobj->open);
}

int ms_binding_latest_waitable(PyObject *obj, ms_waitable *w, ms_latest_waitarg *a,
                               uint64_t since)
{
    LatestObject *self = (LatestObject *)obj;
    if (lt_check(self) < 0)
        return -1;
    ms_latest_waitable_listed(&self->l, a, since, w);
    return 0;
}

static PyMethodDef Latest_methods[] = {
    {"set", (PyCFunction)Latest_set, METH_O,
     "set(data) -> int: publish the bytes of data as the next version; returns it."},
    {"get", (PyCFunction)Latest_get, METH_NOARGS,
     "get() -> (bytes, int): a copy of the newest complete value and its version."},
    {"_set_kind", (PyCFunction)Latest_set_kind, METH_VARARGS,
     "_set_kind(data, kind) -> int: set() with an encoding kind."},
    {"_get_kind", (PyCFunction)Latest_get_kind, METH_NOARGS,
     "_get_kind() -> (bytes, version, kind)."},
    {"_peek", (PyCFunction)Latest_peek, METH_NOARGS,
     "_peek() -> (offset, length, version, kind, buffer, seq): where the value is."},
    {"_check", (PyCFunction)Latest_check, METH_VARARGS,
     "_check(buffer, seq): raise Overwritten if the viewed value was replaced."},
    {"_copy_into", (PyCFunction)Latest_copy_into, METH_VARARGS,
     "_copy_into(buffer, seq, offset, dest) -> bool: copy part of the peeked value into "
     "dest; False if it was replaced."},
    {"_wait", (PyCFunction)Latest_wait, METH_VARARGS,
     "_wait(since, timeout=None) -> int: wait for a version > since."},
    {"_statistics", (PyCFunction)Latest_statistics, METH_NOARGS,
     "_statistics() -> (version, max_size, length, kind, buffers, waiters, writer_deaths)"},
    {"_detach", (PyCFunction)Latest_detach, METH_NOARGS, "Stop using the segment."},
    {"_abort_waits", (PyCFunction)Latest_abort_waits, METH_NOARGS,
     "End this handle's waits now (they raise ValueError: closed)."},
    {NULL, NULL, 0, NULL}
};

static PyGetSetDef Latest_getset[] = {
    {"version", (getter)Latest_get_version, NULL,
     "The newest version (0 before the first set; +1 per set).", NULL},
    {"max_size", (getter)Latest_get_max_size, NULL, "Largest value, in bytes.", NULL},
    {"buffers", (getter)Latest_get_buffers, NULL, "Number of value buffers.", NULL},
    {"closed", (getter)Latest_get_closed, NULL, "Whether this handle is closed.", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

PyTypeObject Latest_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mapshare._core.Latest",
    .tp_basicsize = sizeof(LatestObject),
    .tp_dealloc = (destructor)Latest_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Latest(segment): the latest-value slot of a Latest segment.",
    .tp_methods = Latest_methods,
    .tp_getset = Latest_getset,
    .tp_new = Latest_new,
};
