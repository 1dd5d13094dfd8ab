/* mapshare._core.wait_any: wait on several objects at once (csrc/sync.c ms_wait_any).
 *
 * Each object is turned into an ms_waitable by the filler beside its type (event.c,
 * semaphore.c, channel.c, topic.c) -- or here for a segment's change counter -- the GIL
 * is released, and every segment involved counts the wait as a user, so that close()
 * from another thread refuses instead of unmapping under it.
 */
#include "binding.h"

#include <stddef.h>

/* What a predicate may need besides the object, per item. */
typedef union {
    ms_change_since change;
    ms_channel_waitarg channel;
    ms_latest_waitarg latest;
} wait_store;

/* The segment object an ms_waitable's segment is embedded in. */
static SegmentObject *owner_of(ms_segment *seg)
{
    return (SegmentObject *)((char *)seg - offsetof(SegmentObject, seg));
}

static int segment_waitable(PyObject *obj, PyObject *sinceobj, ms_waitable *w,
                            ms_change_since *c)
{
    SegmentObject *s = (SegmentObject *)obj;
    if (seg_check_header(s) < 0)
        return -1;
    if (!s->seg.hdr_writable) {
        raise_status(MS_E_PERMISSION, 0, "wait on a segment opened read-only");
        return -1;
    }
    uint32_t since;
    if (sinceobj) {
        unsigned long long v;
        if (u64_arg(sinceobj, "since", 0xFFFFFFFFull, &v) < 0)
            return -1;
        since = (uint32_t)v;
    } else {
        since = ms_change_count(&s->seg);
    }
    ms_change_waitable(&s->seg, c, since, w);
    return 0;
}

static int fill(PyObject *obj, Py_ssize_t i, ms_waitable *w, wait_store *store)
{
    memset(w, 0, sizeof *w);  /* fillers that know only the spec's fields leave mark NULL */
    if (PyTuple_Check(obj) && PyTuple_GET_SIZE(obj) == 2 &&
        PyObject_TypeCheck(PyTuple_GET_ITEM(obj, 0), &Latest_Type)) {
        /* (latest, since): ready once its version is > since */
        unsigned long long since;
        if (u64_arg(PyTuple_GET_ITEM(obj, 1), "since", ~0ull, &since) < 0)
            return -1;
        return ms_binding_latest_waitable(PyTuple_GET_ITEM(obj, 0), w, &store->latest,
                                          (uint64_t)since);
    }
    if (PyTuple_Check(obj)) {
        if (PyTuple_GET_SIZE(obj) != 2 ||
            !PyObject_TypeCheck(PyTuple_GET_ITEM(obj, 0), &Segment_Type)) {
            PyErr_Format(PyExc_TypeError,
                         "objects[%zd]: a tuple must be (segment, since) or (latest, since)", i);
            return -1;
        }
        return segment_waitable(PyTuple_GET_ITEM(obj, 0), PyTuple_GET_ITEM(obj, 1), w,
                                &store->change);
    }
    if (PyObject_TypeCheck(obj, &Channel_Type))
        return ms_binding_channel_waitable(obj, w, &store->channel);
    if (PyObject_TypeCheck(obj, &Event_Type))
        return ms_binding_event_waitable(obj, w);
    if (PyObject_TypeCheck(obj, &Semaphore_Type))
        return ms_binding_semaphore_waitable(obj, w);
    if (PyObject_TypeCheck(obj, &Segment_Type))
        return segment_waitable(obj, NULL, w, &store->change);
#ifdef MS_HAVE_TOPIC
    if (PyObject_TypeCheck(obj, &Subscriber_Type))
        return ms_binding_subscriber_waitable(obj, w);
#endif
    PyErr_Format(PyExc_TypeError,
                 "objects[%zd]: cannot wait on %.100s (wait on a Channel, Event, Semaphore, "
                 "Segment, (Segment, since), Subscriber or (Latest, since))", i,
                 Py_TYPE(obj)->tp_name);
    return -1;
}

PyObject *core_wait_any(PyObject *mod, PyObject *args, PyObject *kw)
{
    (void)mod;
    static char *kwlist[] = {"objects", "timeout", "spin", NULL};
    PyObject *objects, *tobj = Py_None, *sobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OO:wait_any", kwlist, &objects, &tobj,
                                     &sobj))
        return NULL;
    ms_wait_opts o;
    memset(&o, 0, sizeof o);
    if (parse_timeout(tobj, &o.timeout_ns) < 0)
        return NULL;
    int64_t spin = -1;
    if (sobj != Py_None) {
        double s = PyFloat_AsDouble(sobj);
        if (s == -1.0 && PyErr_Occurred())
            return NULL;
        spin = s <= 0 ? 0 : (int64_t)(s * 1e9);
    }
    /* our own reference to every object for the whole wait, whatever the caller does
     * with its sequence meanwhile */
    PyObject *seq = PySequence_Tuple(objects);
    if (!seq)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    if (n == 0) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "wait_any needs at least one object");
        return NULL;
    }
    PyObject *result = NULL;
    ms_waitable *items = PyMem_Calloc((size_t)n, sizeof *items);
    wait_store *store = PyMem_Calloc((size_t)n, sizeof *store);
    uint8_t *ready = PyMem_Calloc((size_t)n, 1);
    SegmentObject **owners = PyMem_Calloc((size_t)n, sizeof *owners);
    /* the Latest items: each holds a sleeper entry until the wait is over */
    ms_latest_waitarg **latest = PyMem_Calloc((size_t)n, sizeof *latest);
    if (!items || !store || !ready || !owners || !latest) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t max_spin = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *obj = PyTuple_GET_ITEM(seq, i);
        if (fill(obj, i, &items[i], &store[i]) < 0)
            goto done;
        if (PyTuple_Check(obj) && PyObject_TypeCheck(PyTuple_GET_ITEM(obj, 0), &Latest_Type))
            latest[i] = &store[i].latest;  /* fill took only a (latest, since) pair */
        owners[i] = owner_of(items[i].seg);
        if (owners[i]->spin_ns > max_spin)
            max_spin = owners[i]->spin_ns;
    }
    o.spin_ns = spin >= 0 ? spin : max_spin;
    o.interrupted = check_signals;
    gil_wait g = {NULL, _PyOS_IsMainThread()};
    o.arg = &g;
    for (Py_ssize_t i = 0; i < n; i++)
        owners[i]->waiting++;
    g.ts = PyEval_SaveThread();
    ms_status st = ms_wait_any(items, (size_t)n, &o, ready);
    PyEval_RestoreThread(g.ts);
    for (Py_ssize_t i = 0; i < n; i++)
        owners[i]->waiting--;
    for (Py_ssize_t i = 0; i < n; i++)
        if (FAULTED(owners[i]))
            st = MS_E_FAULT;
    if (st != MS_OK && st != MS_E_TIMEOUT) {
        raise_status(st, 0, "wait");
        goto done;
    }
    result = PyList_New(0);
    for (Py_ssize_t i = 0; result && st == MS_OK && i < n; i++) {
        if (!ready[i])
            continue;
        PyObject *idx = PyLong_FromSsize_t(i);
        if (!idx || PyList_Append(result, idx) < 0)
            Py_CLEAR(result);
        Py_XDECREF(idx);
    }
done:
    /* with the GIL held since the wait: no handle was closed in between */
    for (Py_ssize_t i = 0; latest && i < n; i++)
        if (latest[i])
            ms_latest_waitable_done(latest[i]);
    PyMem_Free(latest);
    PyMem_Free(items);
    PyMem_Free(store);
    PyMem_Free(ready);
    PyMem_Free(owners);
    Py_DECREF(seq);
    return result;
}

PyObject *core_wait_polling(PyObject *mod, PyObject *args)
{
    (void)mod;
    PyObject *force = Py_None;
    if (!PyArg_ParseTuple(args, "|O:_wait_polling", &force))
        return NULL;
    int f = -1;
    if (force != Py_None && (f = PyObject_IsTrue(force)) < 0)
        return NULL;
    int now = ms_wait_any_polling(f);
    /* polling also where the platform cannot sleep on several words at all */
    return PyBool_FromLong(now || ms_p_wait_many_max() == 0);
}
