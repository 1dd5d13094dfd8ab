/* mapshare._core.Channel: a channel's ring (csrc/channel.c) bound to a Segment.
 *
 * send and receive are each one C call that reserves, copies, publishes and wakes; small
 * messages take a fast path that holds the GIL and never waits, and anything that may
 * wait (or copies a lot) runs again with the GIL released.  Loans and received views are
 * Windows (window.c) into the ring, finished here.
 */
#include "binding.h"

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

#define LOAN_OPEN "this thread already has a loan open on this handle: finish it first"
#define VIEW_OPEN "this thread already has a received view open on this handle: finish it first"

/* Status -> exception for channel calls: BrokenChannelError carries what it reports, and
 * MS_E_ALREADY_HELD (this thread holds the lock the call needs) says which. */
static PyObject *ch_raise(ChannelObject *self, ms_status st)
{
    if (st == MS_E_BROKEN) {
        ms_channel *c = &self->ch;
        PyObject *exc = PyObject_CallFunction(
            ms_error_class(MS_E_BROKEN) ? ms_error_class(MS_E_BROKEN) : PyExc_RuntimeError, "s",
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
    if (st == MS_E_ALREADY_HELD && ((self->ch.loan_open &&
                                     self->loan_thread == PyThread_get_thread_ident()) ||
                                    (self->ch.view_open &&
                                     self->view_thread == PyThread_get_thread_ident())))
        return raise_named(self->segobj, MS_E_WINDOW_OPEN, "channel",
                           self->ch.loan_open ? LOAN_OPEN : VIEW_OPEN);
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

/* Wait options of a call; `tobj` NULL (the _nowait calls): do not wait. */
static int channel_opts(ChannelObject *self, PyObject *tobj, ms_wait_opts *o)
{
    if (!tobj)
        o->timeout_ns = 0;
    else if (parse_timeout(tobj, &o->timeout_ns) < 0)
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


/* send_nowait(data) */
static PyObject *Channel_send_nowait(ChannelObject *self, PyObject *data)
{
    return channel_send(self, data, NULL);
}

static PyObject *channel_send(ChannelObject *self, PyObject *data, PyObject *tobj)
{
    if (tobj && timeout_check(tobj) < 0)
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
        st = MS_E_RETRY_NO_GIL;  /* big copies run without the GIL */
    }
    if (st == MS_E_FULL || st == MS_E_RETRY_NO_GIL) {
        ms_wait_opts o;
        if (channel_opts(self, tobj, &o) < 0) {
            if (have_buf)
                PyBuffer_Release(&buf);
            return NULL;
        }
        if (st == MS_E_RETRY_NO_GIL || o.timeout_ns != 0) {
            WAIT_WITHOUT_GIL(self->segobj, o,
                             st = ms_channel_send(&self->ch, p, (size_t)n, &o));
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
    return channel_receive(self, NULL);
}

static PyObject *channel_receive(ChannelObject *self, PyObject *tobj)
{
    if (tobj && timeout_check(tobj) < 0)
        return NULL;
    if (ch_check(self) < 0)
        return NULL;
    PyObject *result = NULL;
    ms_status st = ms_channel_receive(&self->ch, alloc_bytes, &result, &fast_opts);
    if (st == MS_OK)
        RET_OBJ(self->segobj, result);
    if (st == MS_E_INVALID && PyErr_Occurred())
        return NULL;
    if (st == MS_E_EMPTY || st == MS_E_RETRY_NO_GIL) {
        ms_wait_opts o;
        if (channel_opts(self, tobj, &o) < 0)
            return NULL;
        if (st == MS_E_RETRY_NO_GIL || o.timeout_ns != 0) {
            struct alloc_nogil an = {NULL, NULL};
            WAIT_WITHOUT_GIL_AS(self->segobj, o, g,
                                an.g = &g;
                                st = ms_channel_receive(&self->ch, alloc_bytes_nogil, &an, &o));
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
        WAIT_WITHOUT_GIL(self->segobj, o,
                         st = ms_channel_send_batch(&self->ch, get_buf, &ba, n, &count, &o));
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
        return raise_named(self->segobj, MS_E_WINDOW_OPEN, "channel", LOAN_OPEN);
    }
    ms_wait_opts o;
    if (channel_opts(self, tobj, &o) < 0)
        return NULL;
    uint8_t *ptr = NULL;
    ms_status st;
    WAIT_WITHOUT_GIL(self->segobj, o, st = ms_channel_loan(&self->ch, (size_t)n, &ptr, &o));
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
        return raise_named(self->segobj, MS_E_WINDOW_OPEN, "channel", VIEW_OPEN);
    }
    const uint8_t *ptr = NULL;
    size_t len = 0;
    ms_status st = ms_channel_peek(&self->ch, &ptr, &len, &fast_opts);
    if (st == MS_E_EMPTY || st == MS_E_RETRY_NO_GIL) {
        ms_wait_opts o;
        if (channel_opts(self, tobj, &o) < 0)
            return NULL;
        if (st == MS_E_RETRY_NO_GIL || o.timeout_ns != 0) {
            WAIT_WITHOUT_GIL(self->segobj, o, st = ms_channel_peek(&self->ch, &ptr, &len, &o));
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

PyObject *window_finish(WindowObject *w, int ok)
{
    ChannelObject *ch = (ChannelObject *)w->chan;
    if (!ch)
        Py_RETURN_NONE;
    if (!PyObject_TypeCheck(w->chan, &Channel_Type))
        return topic_window_finish(w, ok);  /* a topic's loan or a subscriber's view */
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
    ms_status st;
    WAIT_WITHOUT_GIL(self->segobj, o, st = ms_channel_wait_readable(&self->ch, &o));
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
    ms_status st;
    WAIT_WITHOUT_GIL(self->segobj, o,
                     st = ms_channel_wait_writable(&self->ch, (size_t)n, &o));
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

int ms_binding_channel_waitable(PyObject *obj, ms_waitable *w, ms_channel_waitarg *a)
{
    ChannelObject *self = (ChannelObject *)obj;
    if (ch_check(self) < 0)
        return -1;
    ms_channel_waitable(&self->ch, a, w);
    return 0;
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

PyTypeObject Channel_Type = {
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

