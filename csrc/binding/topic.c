/* mapshare._core.Topic and mapshare._core.Subscriber: a topic's log (csrc/topic.c) bound
 * to a Segment.
 *
 * publish and receive are each one C call; small messages take a fast path that holds
 * the GIL and never waits, anything that may wait (or copies a lot) runs again with the
 * GIL released.  Loans and received views are Windows (window.c) into the ring, finished
 * here (window_finish in channel.c hands them over).
 */
#include "binding.h"
#include "../topic.h"

typedef struct {
    PyObject_HEAD
    SegmentObject *segobj;
    ms_topic_handle t;
    WindowObject *loan;        /* open loan window, if any */
    unsigned long loan_thread;
    int bound;
    int readonly;              /* bound to a read-only mapping (inspection): statistics and
                                * properties only; publishing and subscribing refused */
} TopicObject;

typedef struct {
    PyObject_HEAD
    TopicObject *topic;
    ms_subscriber s;
    WindowObject *view;        /* open received view, if any */
    int busy;                  /* a call of another thread runs without the GIL */
} SubscriberObject;

#define LOAN_OPEN "this thread already has a loan open on this topic handle: finish it first"
#define VIEW_OPEN "this subscriber has a received view open: finish it first"
#define BUSY "this subscriber is in use by another thread (a Subscriber is for one thread)"

static const ms_wait_opts fast_opts = {0, 0, NULL, NULL, 1, NULL};

/* ---- errors ------------------------------------------------------------------------- */


static PyObject *raise_lagged(uint64_t missed, uint64_t position, uint64_t upstream)
{
    PyObject *cls = ms_error_class(MS_E_LAGGED);
    if (!cls)
        return raise_status(MS_E_LAGGED, 0, NULL);
    PyObject *exc = PyObject_CallFunction(cls, "KKK", (unsigned long long)missed,
                                          (unsigned long long)position,
                                          (unsigned long long)upstream);
    if (exc) {
        PyErr_SetObject(cls, exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static PyObject *topic_raise(SegmentObject *so, ms_status st, ms_subscriber *s)
{
    if (st == MS_E_LAGGED && s)
        return raise_lagged(s->lag_missed, s->lag_position, s->lag_upstream);
    ms_module_state *state = ms_state();
    if (st == MS_E_FULL && state && state->topic_full) {
        PyErr_SetString(state->topic_full, "topic is full: a live subscriber has not read "
                                           "what the message would overwrite");
        return NULL;
    }
    if (st == MS_E_EMPTY && state && state->topic_empty) {
        PyErr_SetString(state->topic_empty, "no message to receive");
        return NULL;
    }
    if (st == MS_E_WINDOW_OPEN)
        return raise_named(so, st, "topic", s ? VIEW_OPEN : LOAN_OPEN);
    return raise_status(st, 0, NULL);
}

/* _set_topic_errors(TopicFull, TopicEmpty) */
PyObject *core_set_topic_errors(PyObject *mod, PyObject *args)
{
    PyObject *full, *empty;
    if (!PyArg_ParseTuple(args, "OO:_set_topic_errors", &full, &empty))
        return NULL;
    ms_module_state *state = (ms_module_state *)PyModule_GetState(mod);
    Py_INCREF(full);
    Py_INCREF(empty);
    Py_XSETREF(state->topic_full, full);
    Py_XSETREF(state->topic_empty, empty);
    Py_RETURN_NONE;
}

/* ---- Topic -------------------------------------------------------------------------- */

static PyObject *Topic_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"segment", NULL};
    PyObject *segobj;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!:Topic", kwlist, &Segment_Type, &segobj))
        return NULL;
    SegmentObject *s = (SegmentObject *)segobj;
    if (seg_check_header(s) < 0)
        return NULL;
    /* read-only (mapshare info, another user's topic): readable, nothing is written */
    int readonly = !s->seg.hdr_writable || s->seg.access != MS_ACCESS_WRITE;
    TopicObject *self = (TopicObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    ms_status st = ms_topic_bind(&self->t, &s->seg);
    if (st != MS_OK) {
        Py_DECREF(self);
        return raise_status(st, 0, "topic");
    }
    Py_INCREF(segobj);
    self->segobj = s;
    s->internal_refs++;
    self->bound = 1;
    self->readonly = readonly;
    return (PyObject *)self;
}

static int tp_check(TopicObject *self)
{
    if (!self->bound || !self->segobj->open) {
        PyErr_SetString(PyExc_ValueError, "topic is closed");
        return -1;
    }
    if (self->segobj->seg.faulted) {
        raise_status(MS_E_FAULT, 0, NULL);
        return -1;
    }
    return 0;
}

/* The checks of every call that writes: publishing, loaning, subscribing. */
static int tp_check_writable(TopicObject *self)
{
    if (tp_check(self) < 0)
        return -1;
    if (self->readonly) {
        raise_status(MS_E_PERMISSION, 0,
                     "a topic needs read-write access to publish or subscribe");
        return -1;
    }
    return 0;
}

static void drop_loan(TopicObject *self)
{
    if (self->loan) {
        self->loan->valid = 0;
        window_drop(self->loan);
        Py_CLEAR(self->loan);
    }
}

static void Topic_dealloc(TopicObject *self)
{
    if (self->bound && self->segobj && self->segobj->open && self->t.loan_open)
        ms_topic_detach(&self->t);
    if (self->loan)
        window_drop(self->loan);
    Py_XDECREF(self->loan);
    if (self->segobj)
        self->segobj->internal_refs--;
    Py_XDECREF(self->segobj);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Topic_detach(TopicObject *self, PyObject *unused)
{
    (void)unused;
    if (self->bound && self->segobj->open) {
        drop_loan(self);
        ms_topic_detach(&self->t);
    }
    self->bound = 0;
    Py_RETURN_NONE;
}

static int topic_opts(SegmentObject *so, PyObject *tobj, ms_wait_opts *o)
{
    if (!tobj)
        o->timeout_ns = 0;
    else if (parse_timeout(tobj, &o->timeout_ns) < 0)
        return -1;
    o->spin_ns = so->spin_ns;
    o->interrupted = check_signals;
    o->arg = NULL;
    o->try_only = 0;
    o->mark = NULL;
    return 0;
}

static int loan_mine(TopicObject *self)
{
    return self->loan && self->loan_thread == PyThread_get_thread_ident();
}

/* An origin argument: None (no origin) or a (host: str, seq: int) tuple such as
 * mapshare.Origin.  0 and *out filled (out->host points into the str, which the
 * caller's argument keeps alive), or -1 with an exception. */
static int parse_origin(PyObject *obj, ms_origin *out)
{
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 2) {
        PyErr_Format(PyExc_TypeError,
                     "origin must be a mapshare.Origin(host, seq) or None, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *host = PyTuple_GET_ITEM(obj, 0), *seq = PyTuple_GET_ITEM(obj, 1);
    if (!PyUnicode_Check(host) || !PyLong_Check(seq) || PyBool_Check(seq)) {
        PyErr_SetString(PyExc_TypeError, "origin must be a mapshare.Origin(host: str, seq: int)");
        return -1;
    }
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(host, &n);
    if (!p)
        return -1;
    if (n < 1 || n > (Py_ssize_t)MS_TOPIC_HOST_MAX) {
        PyErr_Format(PyExc_ValueError,
                     "an origin's host must be 1 to %u bytes of UTF-8, not %zd",
                     (unsigned)MS_TOPIC_HOST_MAX, n);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(seq);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "an origin's seq must be an int from 0 to 2**64 - 1");
        return -1;
    }
    out->host = (const uint8_t *)p;
    out->host_len = (uint32_t)n;
    out->seq = (uint64_t)v;
    return 0;
}

static PyObject *topic_publish_origin(TopicObject *self, PyObject *data, PyObject *tobj,
                                      PyObject *oobj, unsigned kind);

static PyObject *topic_publish(TopicObject *self, PyObject *data, PyObject *tobj)
{
    if (tobj && timeout_check(tobj) < 0)
        return NULL;
    if (tp_check_writable(self) < 0)
        return NULL;
    if (loan_mine(self))
        return topic_raise(self->segobj, MS_E_WINDOW_OPEN, NULL);
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
    uint64_t seq = 0;
    ms_status st;
    if (n < 65536)
        st = ms_topic_publish(&self->t, p, (size_t)n, MS_REC_KIND_BYTES, &fast_opts, &seq);
    else
        st = MS_E_RETRY_NO_GIL;
    if (st == MS_E_FULL || st == MS_E_RETRY_NO_GIL) {
        ms_wait_opts o;
        if (topic_opts(self->segobj, tobj, &o) < 0) {
            if (have_buf)
                PyBuffer_Release(&buf);
            return NULL;
        }
        if (st == MS_E_RETRY_NO_GIL || o.timeout_ns != 0) {
            WAIT_WITHOUT_GIL(self->segobj, o,
                             st = ms_topic_publish(&self->t, p, (size_t)n, MS_REC_KIND_BYTES,
                                                   &o, &seq));
        }
    }
    if (have_buf)
        PyBuffer_Release(&buf);
    if (st != MS_OK)
        return topic_raise(self->segobj, st, NULL);
    RET_OBJ(self->segobj, PyLong_FromUnsignedLongLong(seq));
}

/* publish with an origin (oobj, or None) and a kind (publish_object/publish_array with
 * an origin): as topic_publish, through ms_topic_publish_origin */
static PyObject *topic_publish_origin(TopicObject *self, PyObject *data, PyObject *tobj,
                                      PyObject *oobj, unsigned kind)
{
    if (tobj && timeout_check(tobj) < 0)
        return NULL;
    ms_origin origin = { NULL, 0, 0 };
    int have_origin = oobj && oobj != Py_None;
    if (have_origin && parse_origin(oobj, &origin) < 0)
        return NULL;
    if (tp_check_writable(self) < 0)
        return NULL;
    if (loan_mine(self))
        return topic_raise(self->segobj, MS_E_WINDOW_OPEN, NULL);
    Py_buffer buf;
    if (PyObject_GetBuffer(data, &buf, PyBUF_CONTIG_RO) < 0)
        return NULL;
    uint64_t seq = 0;
    const ms_origin *op = have_origin ? &origin : NULL;
    ms_status st = buf.len < 65536 ? ms_topic_publish_origin(&self->t, buf.buf, (size_t)buf.len,
                                                             kind, op, &fast_opts, &seq)
                                   : MS_E_RETRY_NO_GIL;
    if (st == MS_E_FULL || st == MS_E_RETRY_NO_GIL) {
        ms_wait_opts o;
        if (topic_opts(self->segobj, tobj, &o) < 0) {
            PyBuffer_Release(&buf);
            return NULL;
        }
        if (st == MS_E_RETRY_NO_GIL || o.timeout_ns != 0) {
            WAIT_WITHOUT_GIL(self->segobj, o,
                             st = ms_topic_publish_origin(&self->t, buf.buf, (size_t)buf.len,
                                                          kind, op, &o, &seq));
        }
    }
    PyBuffer_Release(&buf);
    if (st == MS_E_TOO_LARGE && have_origin) {
        PyErr_Format(ms_error_class(MS_E_TOO_LARGE) ? ms_error_class(MS_E_TOO_LARGE)
                                                    : PyExc_ValueError,
                     "a message of %zd bytes with an origin of %u bytes does not fit in "
                     "this topic (max_message %llu, less %u bytes of origin block)",
                     buf.len, (unsigned)origin.host_len,
                     (unsigned long long)self->t.max_message,
                     (unsigned)(16 + ((origin.host_len + 7u) & ~7u)));
        return NULL;
    }
    if (st != MS_OK)
        return topic_raise(self->segobj, st, NULL);
    RET_OBJ(self->segobj, PyLong_FromUnsignedLongLong(seq));
}

static PyObject *Topic_publish(TopicObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    PyObject *data, *tobj = Py_None, *oobj;
    if (nargs < 1 || nargs > 2 || (kwnames && PyTuple_GET_SIZE(kwnames) > 0)) {
        static const char *const kwlist[] = {"data", "timeout", "origin", "_kind"};
        PyObject *vals[4] = {NULL, Py_None, NULL, NULL};
        if (nargs > 2) {
            PyErr_SetString(PyExc_TypeError, "publish() takes at most 2 positional arguments "
                                             "(origin is keyword-only)");
            return NULL;
        }
        if (fast_kwargs(args, nargs, kwnames, kwlist, vals, 4, "publish") < 0)
            return NULL;
        if (!vals[0]) {
            PyErr_SetString(PyExc_TypeError, "publish() missing required argument 'data'");
            return NULL;
        }
        data = vals[0];
        tobj = vals[1];
        oobj = vals[2];
        if (vals[3]) {
            /* publish_object / publish_array with an origin: the encoded bytes, a kind */
            unsigned long kind = PyLong_AsUnsignedLong(vals[3]);
            if (kind == (unsigned long)-1 && PyErr_Occurred())
                return NULL;
            if (kind > 255) {
                PyErr_SetString(PyExc_ValueError, "_kind must be < 256");
                return NULL;
            }
            return topic_publish_origin(self, data, tobj, oobj, (unsigned)kind);
        }
        if (oobj && oobj != Py_None)
            return topic_publish_origin(self, data, tobj, oobj, MS_REC_KIND_BYTES);
    } else {
        data = args[0];
        if (nargs == 2)
            tobj = args[1];
    }
    return topic_publish(self, data, tobj);
}

static PyObject *Topic_publish_nowait(TopicObject *self, PyObject *const *args,
                                      Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 1 || (kwnames && PyTuple_GET_SIZE(kwnames) > 0)) {
        static const char *const kwlist[] = {"data", "origin"};
        PyObject *vals[2] = {NULL, NULL};
        if (nargs != 1) {
            PyErr_SetString(PyExc_TypeError, "publish_nowait() takes exactly 1 positional "
                                             "argument (origin is keyword-only)");
            return NULL;
        }
        if (fast_kwargs(args, nargs, kwnames, kwlist, vals, 2, "publish_nowait") < 0)
            return NULL;
        if (vals[1] && vals[1] != Py_None)
            return topic_publish_origin(self, args[0], NULL, vals[1], MS_REC_KIND_BYTES);
    }
    return topic_publish(self, args[0], NULL);
}

/* publish_loss(missed, timeout=None, *, origin=None) -> seq of the loss record */
static PyObject *Topic_publish_loss(TopicObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"missed", "timeout", "origin", NULL};
    PyObject *mobj, *tobj = Py_None, *oobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O$O:publish_loss", kwlist, &mobj, &tobj,
                                     &oobj))
        return NULL;
    if (timeout_check(tobj) < 0)
        return NULL;
    if (PyBool_Check(mobj) || !PyLong_Check(mobj)) {
        PyErr_Format(PyExc_TypeError, "missed must be an int, not %.100s",
                     Py_TYPE(mobj)->tp_name);
        return NULL;
    }
    int overflow = 0;
    long long missed = PyLong_AsLongLongAndOverflow(mobj, &overflow);
    if (missed == -1 && PyErr_Occurred())
        return NULL;
    if (overflow || missed < 1 || (unsigned long long)missed > MS_TOPIC_LOSS_MAX) {
        PyErr_Format(PyExc_ValueError,
                     "missed must be from 1 to %llu messages (2**48 - 1), not %R",
                     (unsigned long long)MS_TOPIC_LOSS_MAX, mobj);
        return NULL;
    }
    ms_origin origin;
    int have_origin = oobj != Py_None;
    if (have_origin && parse_origin(oobj, &origin) < 0)
        return NULL;
    if (tp_check_writable(self) < 0)
        return NULL;
    if (loan_mine(self))
        return topic_raise(self->segobj, MS_E_WINDOW_OPEN, NULL);
    ms_wait_opts o;
    if (topic_opts(self->segobj, tobj, &o) < 0)
        return NULL;
    uint64_t seq = 0;
    ms_status st = ms_topic_publish_loss(&self->t, (uint64_t)missed,
                                         have_origin ? &origin : NULL, &fast_opts, &seq);
    if ((st == MS_E_FULL && o.timeout_ns != 0) || st == MS_E_RETRY_NO_GIL) {
        WAIT_WITHOUT_GIL(self->segobj, o,
                         st = ms_topic_publish_loss(&self->t, (uint64_t)missed,
                                                    have_origin ? &origin : NULL, &o, &seq));
    }
    if (st != MS_OK)
        return topic_raise(self->segobj, st, NULL);
    RET_OBJ(self->segobj, PyLong_FromUnsignedLongLong(seq));
}

#define PUB_CHUNK 256
struct buf_array { Py_buffer *bufs; };

static int get_buf(void *arg, size_t i, const uint8_t **ptr, size_t *len)
{
    struct buf_array *a = (struct buf_array *)arg;
    *ptr = (const uint8_t *)a->bufs[i].buf;
    *len = (size_t)a->bufs[i].len;
    return 0;
}

/* publish_many(messages, timeout=None) -> seq of the last one (-1: none) */
static PyObject *Topic_publish_many(TopicObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"messages", "timeout", NULL};
    PyObject *iterable, *tobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:publish_many", kwlist, &iterable, &tobj))
        return NULL;
    if (tp_check_writable(self) < 0)
        return NULL;
    if (loan_mine(self))
        return topic_raise(self->segobj, MS_E_WINDOW_OPEN, NULL);
    ms_wait_opts o;
    if (topic_opts(self->segobj, tobj, &o) < 0)
        return NULL;
    PyObject *it = PyObject_GetIter(iterable);
    if (!it)
        return NULL;
    Py_buffer bufs[PUB_CHUNK];
    long long last = -1;
    ms_status st = MS_OK;
    for (;;) {
        size_t n = 0;
        PyObject *item;
        while (n < PUB_CHUNK && (item = PyIter_Next(it)) != NULL) {
            int rc = PyObject_GetBuffer(item, &bufs[n], PyBUF_CONTIG_RO);
            Py_DECREF(item);
            if (rc < 0)
                break;
            if ((uint64_t)bufs[n].len > self->t.max_message) {
                PyBuffer_Release(&bufs[n]);
                st = MS_E_TOO_LARGE;
                break;
            }
            n++;
        }
        if (PyErr_Occurred() || st != MS_OK) {
            /* nothing of this chunk was published */
            for (size_t i = 0; i < n; i++)
                PyBuffer_Release(&bufs[i]);
            Py_DECREF(it);
            return st != MS_OK ? topic_raise(self->segobj, st, NULL) : NULL;
        }
        if (n == 0)
            break;
        struct buf_array ba = {bufs};
        size_t count = 0;
        uint64_t seq = 0;
        WAIT_WITHOUT_GIL(self->segobj, o,
                         st = ms_topic_publish_batch(&self->t, get_buf, &ba, n, &count, &seq,
                                                     &o));
        for (size_t i = 0; i < n; i++)
            PyBuffer_Release(&bufs[i]);
        if (count)
            last = (long long)seq;
        if (st != MS_OK || n < PUB_CHUNK)
            break;
    }
    Py_DECREF(it);
    if (st != MS_OK)
        return topic_raise(self->segobj, st, NULL);
    RET_OBJ(self->segobj, PyLong_FromLongLong(last));
}

/* loan(n, timeout=None, *, _kind=0) -> Window (writable, inside the ring) */
static PyObject *Topic_loan(TopicObject *self, PyObject *args, PyObject *kw)
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
    if (tp_check_writable(self) < 0)
        return NULL;
    if (loan_mine(self))
        return topic_raise(self->segobj, MS_E_WINDOW_OPEN, NULL);
    ms_wait_opts o;
    if (topic_opts(self->segobj, tobj, &o) < 0)
        return NULL;
    uint8_t *ptr = NULL;
    ms_status st;
    WAIT_WITHOUT_GIL(self->segobj, o, st = ms_topic_loan(&self->t, (size_t)n, &ptr, &o));
    if (st != MS_OK)
        return topic_raise(self->segobj, st, NULL);
    self->t.loan_kind = kind;
    self->loan_thread = PyThread_get_thread_ident();
    WindowObject *w = new_window(self->segobj, ptr, n, 0, 1);
    if (!w) {
        ms_topic_abort(&self->t);
        return NULL;
    }
    Py_INCREF(self);
    w->chan = (PyObject *)self;
    Py_INCREF(w);
    self->loan = w;
    return (PyObject *)w;
}

static PyObject *topic_commit(TopicObject *self, WindowObject *w, Py_ssize_t used)
{
    if (w->exports > 0) {
        /* publishing memory someone can still write would let them change a message
         * after it was published: refuse, and give the space back */
        Py_ssize_t e = w->exports;
        w->valid = 0;
        self->loan = NULL;
        ms_topic_abort(&self->t);
        Py_DECREF(w);
        PyErr_Format(PyExc_BufferError,
                     "%zd view(s) of the loan are still in use; the message was not published",
                     e);
        return NULL;
    }
    w->valid = 0;
    self->loan = NULL;
    uint64_t seq = 0;
    ms_status st = ms_topic_commit(&self->t, (size_t)used, &seq);
    if (st == MS_OK)
        w->seq = (long long)seq;  /* `with topic.loan(n) as buf:` then loan.seq */
    Py_DECREF(w);
    if (st != MS_OK)
        return topic_raise(self->segobj, st, NULL);
    RET_OBJ(self->segobj, PyLong_FromUnsignedLongLong(seq));
}

static PyObject *topic_abort(TopicObject *self, WindowObject *w)
{
    w->valid = 0;
    self->loan = NULL;
    Py_DECREF(w);
    ms_topic_abort(&self->t);
    RET_NONE(self->segobj);
}

/* _commit(window, used=None) -> seq */
static PyObject *Topic_commit(TopicObject *self, PyObject *args)
{
    PyObject *wobj, *uobj = Py_None;
    if (!PyArg_ParseTuple(args, "O|O:_commit", &wobj, &uobj))
        return NULL;
    if (!self->loan || (PyObject *)self->loan != wobj) {
        PyErr_SetString(PyExc_RuntimeError, "not the open loan of this topic");
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
    return topic_commit(self, w, used);
}

static PyObject *Topic_abort(TopicObject *self, PyObject *args)
{
    PyObject *wobj;
    if (!PyArg_ParseTuple(args, "O:_abort", &wobj))
        return NULL;
    if (!self->loan || (PyObject *)self->loan != wobj)
        Py_RETURN_NONE;
    return topic_abort(self, self->loan);
}

static PyObject *Topic_statistics(TopicObject *self, PyObject *unused)
{
    (void)unused;
    if (tp_check(self) < 0)
        return NULL;
    size_t max_rows = self->t.max_subs;
    ms_topic_sub_stats *rows = PyMem_Calloc(max_rows ? max_rows : 1, sizeof *rows);
    if (!rows)
        return PyErr_NoMemory();
    ms_topic_stats s;
    size_t nrows = 0;
    ms_status st = ms_topic_statistics(&self->t, &s, rows, max_rows, &nrows);
    if (st != MS_OK) {
        PyMem_Free(rows);
        return raise_status(st, 0, NULL);
    }
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list && i < nrows; i++) {
        ms_topic_sub_stats *r = &rows[i];
        uint64_t lag = s.published > r->position ? s.published - r->position : 0;
        PyObject *row = Py_BuildValue(
            "{sIsOsKsKsKsKsKsK}", "pid", r->pid, "alive", r->alive != 0 ? Py_True : Py_False,
            "position", (unsigned long long)r->position, "lag", (unsigned long long)lag,
            "missed", (unsigned long long)r->missed, "received",
            (unsigned long long)r->received, "lagged", (unsigned long long)r->lagged,
            "upstream_missed", (unsigned long long)r->upstream);
        if (!row || PyList_Append(list, row) < 0)
            Py_CLEAR(list);
        Py_XDECREF(row);
    }
    PyMem_Free(rows);
    if (!list)
        return NULL;
    return Py_BuildValue(
        "{sKsKsIsIsIsKsKsKsKsKsKsKsKsKsKsKsIsIsIsN}",
        "capacity", (unsigned long long)s.capacity,
        "max_message", (unsigned long long)s.max_message,
        "history", s.history, "overflow", s.overflow, "max_subscribers", s.max_subscribers,
        "published", (unsigned long long)s.published,
        "published_bytes", (unsigned long long)s.published_bytes,
        "oldest_held", (unsigned long long)s.head_seq,
        "held", (unsigned long long)s.held,
        "held_bytes", (unsigned long long)s.held_bytes,
        "publisher_deaths", (unsigned long long)s.publisher_deaths,
        "abandoned", (unsigned long long)s.abandoned,
        "subscriber_deaths", (unsigned long long)s.subscriber_deaths,
        "origin_published", (unsigned long long)s.origin_published,
        "loss_records", (unsigned long long)s.losses,
        "lost_upstream", (unsigned long long)s.lost,
        "subscriber_count", s.subscribers, "subscriber_waiters", s.sub_waiters,
        "publisher_waiters", s.pub_waiters, "subscribers", list);
}

static PyObject *Topic_after_fork(TopicObject *self, PyObject *unused)
{
    (void)unused;
    /* the parent's loan is held by the parent's thread, not by us */
    self->t.loan_open = 0;
    self->t.min_valid = 0;
    drop_loan(self);
    Py_RETURN_NONE;
}

static PyObject *Topic_abort_waits(TopicObject *self, PyObject *unused)
{
    (void)unused;
    if (self->bound && self->segobj->open)
        ms_topic_abort_waits(&self->t);
    Py_RETURN_NONE;
}

#define TOPIC_GETTER(fname, expr)                                 \
    static PyObject *fname(TopicObject *self, void *c)            \
    {                                                             \
        (void)c;                                                  \
        return PyLong_FromUnsignedLongLong((unsigned long long)(expr)); \
    }
TOPIC_GETTER(Topic_get_capacity, self->t.cap)
TOPIC_GETTER(Topic_get_max_message, self->t.max_message)
TOPIC_GETTER(Topic_get_history, self->t.history)
TOPIC_GETTER(Topic_get_overflow, self->t.overflow)
TOPIC_GETTER(Topic_get_max_subscribers, self->t.max_subs)

static PyGetSetDef Topic_getset[] = {
    {"capacity", (getter)Topic_get_capacity, NULL, "Ring size in bytes.", NULL},
    {"max_message", (getter)Topic_get_max_message, NULL,
     "Largest message in bytes (a record is at most half the ring).", NULL},
    {"history", (getter)Topic_get_history, NULL,
     "Messages start='history' replays (at most).", NULL},
    {"overflow", (getter)Topic_get_overflow, NULL,
     "1: overwrite (the publisher never waits), 2: block.", NULL},
    {"max_subscribers", (getter)Topic_get_max_subscribers, NULL,
     "Entries in the subscriber table.", NULL},
    {NULL}
};

static PyMethodDef Topic_methods[] = {
    {"publish", (PyCFunction)(void (*)(void))Topic_publish, METH_FASTCALL | METH_KEYWORDS,
     "publish($self, data, timeout=None, *, origin=None, _kind=0)\n--\n\n"
     "Publish a bytes-like object; returns its sequence number.  origin: a\n"
     "mapshare.Origin(host, seq) carried with the message (Subscriber.last_origin).\n"
     "Overwrite mode never\n"
     "waits for subscribers; block mode waits while a live subscriber has not read\n"
     "what it would overwrite (timeout=None forever, 0 not at all: TopicFull, else\n"
     "seconds: WaitTimeout)."},
    {"publish_nowait", (PyCFunction)(void (*)(void))Topic_publish_nowait,
     METH_FASTCALL | METH_KEYWORDS,
     "publish_nowait($self, data, /, *, origin=None)\n--\n\nPublish without waiting; "
     "TopicFull in block mode when there is no room."},
    {"publish_loss", (PyCFunction)(void (*)(void))Topic_publish_loss,
     METH_VARARGS | METH_KEYWORDS,
     "publish_loss($self, missed, timeout=None, *, origin=None)\n--\n\n"
     "Publish a loss record standing for `missed` messages lost upstream (a bridge that\n"
     "found a gap in a remote host's sequence numbers); it takes a sequence number,\n"
     "returned.  A subscriber that reaches it gets Lagged(missed) (upstream=missed)\n"
     "instead of a message."},
    {"publish_many", (PyCFunction)(void (*)(void))Topic_publish_many,
     METH_VARARGS | METH_KEYWORDS,
     "publish_many($self, messages, timeout=None)\n--\n\n"
     "Publish every bytes-like object of an iterable, in order, under one lock with one\n"
     "wake-up per chunk.  Returns the sequence number of the last one (-1: none)."},
    {"loan", (PyCFunction)(void (*)(void))Topic_loan, METH_VARARGS | METH_KEYWORDS,
     "loan($self, n, timeout=None, *, _kind=0)\n--\n\n"
     "Reserve n bytes inside the ring: `with t.loan(n) as buf:` gives a writable\n"
     "memoryview, published when the block ends (discarded if it raises); the loan's\n"
     "`seq` is then the message's sequence number.  While the loan is open this handle\n"
     "holds the publishers' lock."},
    {"_commit", (PyCFunction)Topic_commit, METH_VARARGS, "_commit(window, used=None) -> seq"},
    {"_abort", (PyCFunction)Topic_abort, METH_VARARGS, "_abort(window)"},
    {"_statistics", (PyCFunction)Topic_statistics, METH_NOARGS,
     "Counters and one row per subscriber, as a dict."},
    {"_detach", (PyCFunction)Topic_detach, METH_NOARGS, "Abort an open loan; unusable after."},
    {"_after_fork", (PyCFunction)Topic_after_fork, METH_NOARGS, "Reset in a forked child."},
    {"_abort_waits", (PyCFunction)Topic_abort_waits, METH_NOARGS,
     "Make this handle's waits for room return."},
    {NULL}
};

PyTypeObject Topic_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mapshare._core.Topic",
    .tp_basicsize = sizeof(TopicObject),
    .tp_dealloc = (destructor)Topic_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The log of a topic segment (mechanism only; see mapshare.Topic).",
    .tp_methods = Topic_methods,
    .tp_getset = Topic_getset,
    .tp_new = Topic_new,
};

/* ---- Subscriber --------------------------------------------------------------------- */

static PyObject *Subscriber_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"topic", "start_mode", "start_seq", NULL};
    PyObject *tobj;
    int mode = MS_SUB_LIVE;
    unsigned long long seq = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!|iO&:Subscriber", kwlist, &Topic_Type, &tobj,
                                     &mode, conv_offset, &seq))
        return NULL;
    TopicObject *topic = (TopicObject *)tobj;
    if (tp_check_writable(topic) < 0)
        return NULL;
    if (mode < MS_SUB_LIVE || mode > MS_SUB_SEQ) {
        PyErr_SetString(PyExc_ValueError, "start_mode must be SUB_LIVE, SUB_HISTORY or SUB_SEQ");
        return NULL;
    }
    SubscriberObject *self = (SubscriberObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    self->s.closed = 1;
    self->s.slot = -1;
    ms_status st;
    SEG_ALLOW_THREADS(topic->segobj, st = ms_subscriber_open(&self->s, &topic->t, mode, seq));
    if (st != MS_OK) {
        Py_DECREF(self);
        return raise_named(topic->segobj, st, "topic",
                           st == MS_E_SUBSCRIBER_LIMIT
                               ? "every entry of the subscriber table belongs to a live "
                                 "subscriber" : NULL);
    }
    Py_INCREF(topic);
    self->topic = topic;
    topic->segobj->internal_refs++;
    return (PyObject *)self;
}

static int sub_check(SubscriberObject *self)
{
    if (self->s.closed || !self->topic || !self->topic->bound || !self->topic->segobj->open) {
        PyErr_SetString(PyExc_ValueError, "subscriber is closed");
        return -1;
    }
    if (self->topic->segobj->seg.faulted) {
        raise_status(MS_E_FAULT, 0, NULL);
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, BUSY);
        return -1;
    }
    return 0;
}

static void drop_view(SubscriberObject *self)
{
    if (self->view) {
        self->view->valid = 0;
        window_drop(self->view);
        Py_CLEAR(self->view);
    }
}

static void sub_close(SubscriberObject *self)
{
    drop_view(self);
    if (!self->s.closed && self->topic && self->topic->segobj->open)
        ms_subscriber_close(&self->s);
    self->s.closed = 1;
}

static void Subscriber_dealloc(SubscriberObject *self)
{
    sub_close(self);
    if (self->topic) {
        self->topic->segobj->internal_refs--;
        Py_DECREF(self->topic);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Subscriber_close(SubscriberObject *self, PyObject *unused)
{
    (void)unused;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, BUSY);
        return NULL;
    }
    sub_close(self);
    Py_RETURN_NONE;
}

static PyObject *sub_raise(SubscriberObject *self, ms_status st)
{
    return topic_raise(self->topic->segobj, st, &self->s);
}

/* The allocators drop what an earlier attempt of the same call allocated (a copy found
 * overwritten is read again). */
static uint8_t *alloc_bytes(void *arg, size_t len)
{
    PyObject **out = (PyObject **)arg;
    Py_XDECREF(*out);
    *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    return *out ? (uint8_t *)PyBytes_AS_STRING(*out) : NULL;
}

struct alloc_nogil { PyObject *result; gil_wait *g; };

static uint8_t *alloc_bytes_nogil(void *arg, size_t len)
{
    struct alloc_nogil *a = (struct alloc_nogil *)arg;
    PyEval_RestoreThread(a->g->ts);
    Py_XDECREF(a->result);
    a->result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    a->g->ts = PyEval_SaveThread();
    return a->result ? (uint8_t *)PyBytes_AS_STRING(a->result) : NULL;
}

#define SUB_WAIT(self, o, stmt)                                          \
    do {                                                                 \
        (self)->busy = 1;                                                \
        WAIT_WITHOUT_GIL((self)->topic->segobj, o, stmt);                \
        (self)->busy = 0;                                                \
    } while (0)

static PyObject *sub_receive(SubscriberObject *self, PyObject *tobj)
{
    if (tobj && timeout_check(tobj) < 0)
        return NULL;
    if (sub_check(self) < 0)
        return NULL;
    if (self->view)
        return sub_raise(self, MS_E_WINDOW_OPEN);
    PyObject *result = NULL;
    ms_status st = ms_subscriber_receive(&self->s, alloc_bytes, &result, &fast_opts);
    if (st == MS_OK)
        RET_OBJ(self->topic->segobj, result);
    Py_CLEAR(result);
    if (st == MS_E_INVALID && PyErr_Occurred())
        return NULL;
    if (st == MS_E_EMPTY || st == MS_E_RETRY_NO_GIL) {
        ms_wait_opts o;
        if (topic_opts(self->topic->segobj, tobj, &o) < 0)
            return NULL;
        if (st == MS_E_RETRY_NO_GIL || o.timeout_ns != 0) {
            struct alloc_nogil an = {NULL, NULL};
            self->busy = 1;
            WAIT_WITHOUT_GIL_AS(self->topic->segobj, o, g, an.g = &g;
                                st = ms_subscriber_receive(&self->s, alloc_bytes_nogil, &an,
                                                           &o));
            self->busy = 0;
            if (st == MS_OK)
                RET_OBJ(self->topic->segobj, an.result);
            Py_XDECREF(an.result);
            if (st == MS_E_INVALID && PyErr_Occurred())
                return NULL;
        }
    }
    return sub_raise(self, st);
}

static PyObject *Subscriber_receive(SubscriberObject *self, PyObject *const *args,
                                    Py_ssize_t nargs, PyObject *kwnames)
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
    return sub_receive(self, tobj);
}

static PyObject *Subscriber_receive_nowait(SubscriberObject *self, PyObject *unused)
{
    (void)unused;
    return sub_receive(self, NULL);
}

struct list_alloc { PyObject *list; PyObject *last; };

static uint8_t *alloc_append(void *arg, size_t len)
{
    /* a batch reads with the GIL held: a copy found overwritten ends it (MS_E_LAGGED),
     * so the last allocation is the one to drop then */
    struct list_alloc *a = (struct list_alloc *)arg;
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    if (!b)
        return NULL;
    Py_XSETREF(a->last, b);
    return (uint8_t *)PyBytes_AS_STRING(b);
}

static PyObject *Subscriber_receive_many(SubscriberObject *self, PyObject *args, PyObject *kw)
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
    PyObject *first = sub_receive(self, tobj);
    if (!first)
        return NULL;
    PyObject *list = PyList_New(0);
    if (!list || PyList_Append(list, first) < 0) {
        Py_DECREF(first);
        Py_XDECREF(list);
        return NULL;
    }
    Py_DECREF(first);
    struct list_alloc la = {list, NULL};
    while (PyList_GET_SIZE(list) < max && !self->topic->segobj->seg.faulted) {
        ms_status st = ms_subscriber_receive(&self->s, alloc_append, &la, &fast_opts);
        if (st == MS_OK && la.last) {
            int rc = PyList_Append(list, la.last);
            Py_CLEAR(la.last);
            if (rc < 0) {
                Py_DECREF(list);
                return NULL;
            }
            continue;
        }
        Py_CLEAR(la.last);
        if (st == MS_E_INVALID && PyErr_Occurred()) {
            Py_DECREF(list);
            return NULL;
        }
        if (st == MS_E_LAGGED)
        {
            self->s.pending_missed = self->s.lag_missed;  /* the next call reports it */
            self->s.pending_upstream = self->s.lag_upstream;
        }
        break;
    }
    return list;
}

/* receive_view(timeout=None) -> Window (read-only, inside the ring) */
static PyObject *Subscriber_receive_view(SubscriberObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"timeout", NULL};
    PyObject *tobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:receive_view", kwlist, &tobj))
        return NULL;
    if (timeout_check(tobj) < 0)
        return NULL;
    if (sub_check(self) < 0)
        return NULL;
    if (self->view)
        return sub_raise(self, MS_E_WINDOW_OPEN);
    const uint8_t *ptr = NULL;
    size_t len = 0;
    ms_status st = ms_subscriber_peek(&self->s, &ptr, &len, &fast_opts);
    if (st == MS_E_EMPTY) {
        ms_wait_opts o;
        if (topic_opts(self->topic->segobj, tobj, &o) < 0)
            return NULL;
        if (o.timeout_ns != 0)
            SUB_WAIT(self, o, st = ms_subscriber_peek(&self->s, &ptr, &len, &o));
    }
    if (st != MS_OK)
        return sub_raise(self, st);
    WindowObject *w = new_window(self->topic->segobj, (uint8_t *)ptr, (Py_ssize_t)len, 1, 2);
    if (!w) {
        ms_subscriber_unview(&self->s);
        return NULL;
    }
    Py_INCREF(self);
    w->chan = (PyObject *)self;
    Py_INCREF(w);
    self->view = w;
    return (PyObject *)w;
}

static PyObject *sub_release(SubscriberObject *self, WindowObject *w)
{
    Py_ssize_t e = w->exports;
    w->valid = 0;
    self->view = NULL;
    Py_DECREF(w);
    if (self->s.closed || !self->topic->segobj->open || self->topic->segobj->seg.faulted) {
        ms_subscriber_unview(&self->s);
        RET_NONE(self->topic->segobj);
    }
    ms_status st = ms_subscriber_release(&self->s);
    if (st != MS_OK)
        return sub_raise(self, st);
    if (e > 0) {
        PyErr_Format(PyExc_BufferError,
                     "%zd view(s) of the received message outlived its block; its memory "
                     "will be overwritten", e);
        return NULL;
    }
    RET_NONE(self->topic->segobj);
}

/* _release(window): finish a received view (Lagged if it was overwritten meanwhile) */
static PyObject *Subscriber_release(SubscriberObject *self, PyObject *wobj)
{
    if (!self->view || (PyObject *)self->view != wobj) {
        PyErr_SetString(PyExc_RuntimeError, "not the open view of this subscriber");
        return NULL;
    }
    return sub_release(self, self->view);
}

PyObject *topic_window_finish(WindowObject *w, int ok)
{
    if (PyObject_TypeCheck(w->chan, &Topic_Type)) {
        TopicObject *t = (TopicObject *)w->chan;
        if (t->loan != w)
            Py_RETURN_NONE;  /* already finished */
        return ok ? topic_commit(t, w, w->len) : topic_abort(t, w);
    }
    if (PyObject_TypeCheck(w->chan, &Subscriber_Type)) {
        SubscriberObject *s = (SubscriberObject *)w->chan;
        if (s->view != w)
            Py_RETURN_NONE;
        return sub_release(s, w);
    }
    Py_RETURN_NONE;
}

static PyObject *Subscriber_view_kind(SubscriberObject *self, PyObject *unused)
{
    (void)unused;
    if (!self->view) {
        PyErr_SetString(PyExc_RuntimeError, "no received view open");
        return NULL;
    }
    return PyLong_FromUnsignedLong((self->s.view_flags & MS_REC_KIND_MASK) >>
                                   MS_REC_KIND_SHIFT);
}

static PyObject *Subscriber_wait_readable(SubscriberObject *self, PyObject *args)
{
    PyObject *tobj = Py_None;
    if (!PyArg_ParseTuple(args, "|O:_wait_readable", &tobj))
        return NULL;
    if (sub_check(self) < 0)
        return NULL;
    ms_wait_opts o;
    if (topic_opts(self->topic->segobj, tobj, &o) < 0)
        return NULL;
    ms_status st;
    SUB_WAIT(self, o, st = ms_subscriber_wait_readable(&self->s, &o));
    if (st == MS_OK)
        RET_TRUE(self->topic->segobj);
    if (st == MS_E_TIMEOUT)
        RET_FALSE(self->topic->segobj);
    return sub_raise(self, st);
}

static PyObject *Subscriber_abort_waits(SubscriberObject *self, PyObject *unused)
{
    (void)unused;
    if (!self->s.closed && self->topic && self->topic->segobj->open)
        ms_subscriber_abort_waits(&self->s);
    Py_RETURN_NONE;
}

static PyObject *Subscriber_after_fork(SubscriberObject *self, PyObject *unused)
{
    (void)unused;
    self->busy = 0;
    drop_view(self);
    ms_subscriber_after_fork(&self->s);
    Py_RETURN_NONE;
}

int ms_binding_subscriber_waitable(PyObject *obj, ms_waitable *w)
{
    SubscriberObject *self = (SubscriberObject *)obj;
    if (sub_check(self) < 0)
        return -1;
    ms_status st = ms_subscriber_waitable(&self->s, w);
    if (st != MS_OK) {
        sub_raise(self, st);
        return -1;
    }
    return 0;
}

static PyObject *Subscriber_get_position(SubscriberObject *self, void *c)
{
    (void)c;
    uint64_t p = self->s.position;
    if (self->s.skip_until > p)
        p = self->s.skip_until;
    return PyLong_FromUnsignedLongLong(p);
}

static PyObject *Subscriber_get_last_origin(SubscriberObject *self, void *c)
{
    (void)c;
    if (!(self->s.view_flags & MS_REC_ORIGIN))
        Py_RETURN_NONE;
    uint32_t n = self->s.origin_host_len;
    if (n > MS_TOPIC_HOST_MAX)
        n = MS_TOPIC_HOST_MAX;
    /* from shared memory: not necessarily UTF-8 */
    PyObject *host = PyUnicode_DecodeUTF8((const char *)self->s.origin_host, (Py_ssize_t)n,
                                          "replace");
    if (!host)
        return NULL;
    return Py_BuildValue("(NK)", host, (unsigned long long)self->s.origin_seq);
}

static PyObject *Subscriber_get_upstream(SubscriberObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLongLong(self->s.upstream);
}

static PyObject *Subscriber_get_missed(SubscriberObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLongLong(self->s.missed);
}

static PyObject *Subscriber_get_received(SubscriberObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLongLong(self->s.received);
}

static PyObject *Subscriber_get_closed(SubscriberObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(self->s.closed || !self->topic || !self->topic->bound ||
                           !self->topic->segobj->open);
}

static PyGetSetDef Subscriber_getset[] = {
    {"position", (getter)Subscriber_get_position, NULL,
     "Sequence number of the next message it will read.", NULL},
    {"missed", (getter)Subscriber_get_missed, NULL,
     "Messages lost to overwriting (the sum of every Lagged.missed).", NULL},
    {"received", (getter)Subscriber_get_received, NULL, "Messages delivered.", NULL},
    {"_last_origin", (getter)Subscriber_get_last_origin, NULL,
     "(host, seq) of the message last received or viewed, or None.", NULL},
    {"upstream_missed", (getter)Subscriber_get_upstream, NULL,
     "Of missed, the messages lost upstream (loss records: the sum of every\n"
     "Lagged.upstream).", NULL},
    {"closed", (getter)Subscriber_get_closed, NULL, "True once closed.", NULL},
    {NULL}
};

static PyMethodDef Subscriber_methods[] = {
    {"receive", (PyCFunction)(void (*)(void))Subscriber_receive, METH_FASTCALL | METH_KEYWORDS,
     "receive($self, timeout=None)\n--\n\n"
     "The next message as bytes, waiting while there is none: timeout=None waits\n"
     "forever, 0 does not wait (TopicEmpty), else seconds (WaitTimeout).  Lagged once\n"
     "when it was overwritten: .missed messages were lost, it resumes at .position."},
    {"receive_nowait", (PyCFunction)Subscriber_receive_nowait, METH_NOARGS,
     "receive_nowait($self, /)\n--\n\nReceive without waiting; TopicEmpty if there is "
     "nothing."},
    {"receive_many", (PyCFunction)(void (*)(void))Subscriber_receive_many,
     METH_VARARGS | METH_KEYWORDS,
     "receive_many($self, max_messages, timeout=None)\n--\n\n"
     "Wait for one message (as receive()), then take up to max_messages in all that are\n"
     "already there.  A Lagged after the first is raised by the next call."},
    {"receive_view", (PyCFunction)(void (*)(void))Subscriber_receive_view,
     METH_VARARGS | METH_KEYWORDS,
     "receive_view($self, timeout=None)\n--\n\n"
     "`with sub.receive_view() as view:` gives the next message as a read-only\n"
     "memoryview inside the ring; leaving the block checks it was not overwritten\n"
     "meanwhile (Lagged if it was: what the view showed may be torn)."},
    {"_release", (PyCFunction)Subscriber_release, METH_O, "_release(window)"},
    {"_view_kind", (PyCFunction)Subscriber_view_kind, METH_NOARGS,
     "The kind of the message in the open view."},
    {"_wait_readable", (PyCFunction)Subscriber_wait_readable, METH_VARARGS,
     "_wait_readable(timeout=None) -> bool: a message (or a Lagged) is there"},
    {"_abort_waits", (PyCFunction)Subscriber_abort_waits, METH_NOARGS,
     "Make this subscriber's waits return."},
    {"_after_fork", (PyCFunction)Subscriber_after_fork, METH_NOARGS,
     "In a forked child: the next use claims an entry of its own."},
    {"close", (PyCFunction)Subscriber_close, METH_NOARGS,
     "Leave the subscriber table (a block-mode publisher waiting on it goes on)."},
    {NULL}
};

PyTypeObject Subscriber_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mapshare._core.Subscriber",
    .tp_basicsize = sizeof(SubscriberObject),
    .tp_dealloc = (destructor)Subscriber_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "One subscriber of a topic (mechanism only; see mapshare.Topic.subscribe).",
    .tp_methods = Subscriber_methods,
    .tp_getset = Subscriber_getset,
    .tp_new = Subscriber_new,
};
