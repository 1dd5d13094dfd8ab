/* mapshare._core.Event: an event (csrc/sync.c) in a segment, as an object.
 *
 * Built once from (segment, offset): the kind, the offset, the access and the tag are
 * checked at construction and the event's address kept, so set/clear/is_set/wait run no
 * checks but "is the segment still open".  The event keeps its segment object (and so
 * the mapping: internal_refs) alive, as a Lock does.
 */
#include "binding.h"

typedef struct {
    PyObject_HEAD
    SegmentObject *seg;
    ms_event *e;
    unsigned slot;
} EventObject;

/* Event(segment, offset=None, init=None): the kind area of a named event (offset None)
 * or the event at `offset` of a plain segment; `init` not None writes a new event there
 * first, set if init is true. */
static PyObject *Event_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"segment", "offset", "init", NULL};
    PyObject *segobj, *offobj = Py_None, *init = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!|OO:Event", kwlist, &Segment_Type, &segobj,
                                     &offobj, &init))
        return NULL;
    SegmentObject *seg = (SegmentObject *)segobj;
    int creating = init != Py_None;
    int state = creating ? PyObject_IsTrue(init) : 0;
    if (state < 0)
        return NULL;
    unsigned slot;
    ms_event *e = (ms_event *)sync_area(seg, offobj, MS_KIND_EVENT, sizeof(ms_event),
                                        MS_SLOT_EVENT, &slot, creating);
    if (!e)
        return NULL;
    if (creating) {
        ms_event_init_at(e, (uint32_t)state);
    } else if (offobj != Py_None) {
        uint32_t now = ms_load32(&e->state);
        if (now > 1) {
            PyObject *name = PyObject_GetAttrString(segobj, "name");
            if (name)
                PyErr_Format(ms_error_class(MS_E_LAYOUT) ? ms_error_class(MS_E_LAYOUT)
                                                         : PyExc_ValueError,
                             "no event at offset %S of segment %R (state %u)", offobj, name,
                             (unsigned)now);
            Py_XDECREF(name);
            return NULL;
        }
    }
    if (FAULTED(seg))
        return raise_status(MS_E_FAULT, 0, NULL);
    EventObject *self = (EventObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    Py_INCREF(segobj);
    self->seg = seg;
    self->e = e;
    self->slot = slot;
    seg->internal_refs++;
    return (PyObject *)self;
}

static void Event_dealloc(EventObject *self)
{
    if (self->seg)
        self->seg->internal_refs--;
    Py_XDECREF(self->seg);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Event_set(EventObject *self, PyObject *unused)
{
    (void)unused;
    if (seg_check(self->seg) < 0)
        return NULL;
    ms_event_set(&self->seg->seg, self->slot, self->e);
    RET_NONE(self->seg);
}

static PyObject *Event_clear(EventObject *self, PyObject *unused)
{
    (void)unused;
    if (seg_check(self->seg) < 0)
        return NULL;
    ms_event_clear(self->e);
    RET_NONE(self->seg);
}

static PyObject *Event_is_set(EventObject *self, PyObject *unused)
{
    (void)unused;
    if (seg_check(self->seg) < 0)
        return NULL;
    int set = ms_event_is_set(self->e);
    if (set)
        RET_TRUE(self->seg);
    RET_FALSE(self->seg);
}

static PyObject *event_wait(EventObject *self, PyObject *tobj, PyObject *sobj)
{
    SegmentObject *seg = self->seg;
    if (seg_check(seg) < 0 || timeout_check(tobj) < 0)
        return NULL;
    if (ms_event_is_set(self->e))
        RET_TRUE(seg);
    ms_wait_opts o;
    if (wait_args(tobj, sobj, seg, &o) < 0)
        return NULL;
    if (o.timeout_ns == 0)
        RET_FALSE(seg);
    ms_status st;
    WAIT_WITHOUT_GIL(seg, o, st = ms_event_wait(&seg->seg, self->slot, self->e, &o));
    if (st == MS_OK)
        RET_TRUE(seg);
    if (st == MS_E_TIMEOUT)
        RET_FALSE(seg);
    return raise_status(FAULTED(seg) ? MS_E_FAULT : st, 0, "wait");
}

static PyObject *Event_wait(EventObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    if (nargs == 1 && !kwnames)
        return event_wait(self, args[0], NULL);
    static const char *const kwlist[] = {"timeout"};
    PyObject *vals[1] = {Py_None};
    if (fast_kwargs(args, nargs, kwnames, kwlist, vals, 1, "wait") < 0)
        return NULL;
    return event_wait(self, vals[0], NULL);
}

/* _wait(timeout, spin): wait() with a spin of its own (asyncio's worker thread: 0) */
static PyObject *Event__wait(EventObject *self, PyObject *args)
{
    PyObject *tobj, *sobj;
    if (!PyArg_ParseTuple(args, "OO:_wait", &tobj, &sobj))
        return NULL;
    return event_wait(self, tobj, sobj);
}

int ms_binding_event_waitable(PyObject *obj, ms_waitable *w)
{
    EventObject *self = (EventObject *)obj;
    if (seg_check(self->seg) < 0)
        return -1;
    ms_event_waitable(&self->seg->seg, self->slot, self->e, w);
    return 0;
}

static PyMethodDef Event_methods[] = {
    {"set", (PyCFunction)Event_set, METH_NOARGS,
     "set($self, /)\n--\n\nSet the flag and wake every waiter."},
    {"clear", (PyCFunction)Event_clear, METH_NOARGS, "clear($self, /)\n--\n\nClear the flag."},
    {"is_set", (PyCFunction)Event_is_set, METH_NOARGS,
     "is_set($self, /)\n--\n\nThe flag's value."},
    {"wait", (PyCFunction)(void (*)(void))Event_wait, METH_FASTCALL | METH_KEYWORDS,
     "wait($self, timeout=None)\n--\n\n"
     "Block until the flag is set; True, or False after `timeout` seconds."},
    {"_wait", (PyCFunction)Event__wait, METH_VARARGS,
     "_wait($self, timeout, spin, /)\n--\n\nwait() with its own spin (seconds)."},
    {NULL}
};

PyTypeObject Event_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mapshare._core.Event",
    .tp_basicsize = sizeof(EventObject),
    .tp_dealloc = (destructor)Event_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "An event in a segment (mechanism only; see mapshare.Event).",
    .tp_methods = Event_methods,
    .tp_new = Event_new,
};
