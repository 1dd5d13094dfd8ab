/* mapshare._core.Window: a buffer over part of a mapping -- a segment's view
 * (map_view, subview), a channel's loan, or a received message -- and the WindowExport
 * objects whose buffers a loan or received view hands out.
 */
#include "binding.h"


WindowObject *new_window(SegmentObject *owner, uint8_t *ptr, Py_ssize_t len, int readonly,
                         int kind)
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
    w->seq = -1;
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

PyTypeObject WindowExport_Type = {
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
void window_drop(WindowObject *w)
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
            ms_module_state *state = ms_state();
            PyObject *r = state ? PyObject_CallMethodNoArgs(self->mv, state->str_release)
                                : PyObject_CallMethod(self->mv, "release", NULL);
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

static PyObject *Window_get_seq(WindowObject *self, void *c)
{
    (void)c;
    return PyLong_FromLongLong(self->seq);
}

static PyGetSetDef Window_getset[] = {
    {"released", (getter)Window_get_released, NULL, "True once released.", NULL},
    {"nbytes", (getter)Window_get_nbytes, NULL, "Length in bytes.", NULL},
    {"offset", (getter)Window_get_offset, NULL,
     "Offset of the first byte in the segment's user area.", NULL},
    {"seq", (getter)Window_get_seq, NULL,
     "A topic loan: the sequence number it was published as, once its block ended "
     "without an exception (-1 before, if it was discarded, and for other windows).", NULL},
    {NULL}
};

PyTypeObject Window_Type = {
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
