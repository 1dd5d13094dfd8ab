/* mapshare._core.Segment: a mapped object -- its mapping, lifecycle and data.
 *
 * Also the module functions that create, open and remove objects by name.  Locks,
 * events, semaphores and channels are types of their own (lock.c, event.c,
 * semaphore.c, channel.c) built from a Segment; this file keeps what they share: the
 * header's lock areas, the checks of a synchronization object's area, wait options.
 */
#include "binding.h"

/* The header's lock areas by index: the user lock (Lock), the meta lock (names, attach
 * table). */
static void *lock_area(SegmentObject *self, int which, unsigned *slot)
{
    switch (which) {
    case 0: *slot = MS_SLOT_USER_LOCK; return self->seg.hdr->user_lock;
    case 1: *slot = MS_SLOT_META_LOCK; return self->seg.hdr->meta_lock;
    default: return NULL;
    }
}

static PyObject *Segment_get_name(SegmentObject *self, void *c);

/* The mapping lives as long as anything exported from it: close() detaches at once but
 * leaves the unmapping to the release of the last buffer (numpy keeps a memoryview as its
 * base without holding an export of its own, so refusing or force-releasing would leave
 * arrays pointing at unmapped memory). */
void seg_export_released(SegmentObject *s)
{
    if (s->exports == 0 && s->unmap_pending == 1 && !s->keep_mapping) {
        s->unmap_pending = 0;
        ms_segment_close(&s->seg);
    }
}

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

PyObject *core_create(PyObject *mod, PyObject *args, PyObject *kw)
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
    ms_topic_params tparams = {0, 0, 0, 0};
    ms_latest_params lparams = {0, 0};
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
    } else if (kind == MS_KIND_ARRAY) {
        fn = ms_array_kind_init;
    } else if (kind == MS_KIND_TOPIC) {
        /* init=(capacity, history, overflow, max_subscribers) */
        if (!PyArg_ParseTuple(init, "O&III:topic init", conv_size, &tparams.capacity,
                              &tparams.history, &tparams.overflow, &tparams.max_subscribers))
            return NULL;
        fn = ms_topic_init;
        arg = &tparams;
    } else if (kind == MS_KIND_LATEST) {
        /* init=(max_size, buffers) */
        if (!PyArg_ParseTuple(init, "O&I:latest init", conv_size, &lparams.max_size,
                              &lparams.buffers))
            return NULL;
        fn = ms_latest_init;
        arg = &lparams;
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

PyObject *core_open(PyObject *mod, PyObject *args, PyObject *kw)
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

PyObject *core_unlink(PyObject *mod, PyObject *args)
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
PyObject *core_list_objects(PyObject *mod, PyObject *args)
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
PyObject *core_unlink_if_same(PyObject *mod, PyObject *args)
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
PyObject *core_reclaim(PyObject *mod, PyObject *args)
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
    if (st == MS_E_PERMISSION || st == MS_E_FAULT || st == MS_E_LAYOUT || st == MS_E_VERSION)
        return PyLong_FromLong(MS_RECLAIM_KEPT);  /* not ours to take */
    if (st != MS_OK)
        return raise_status(st, err, osname);
    return PyLong_FromLong(result);
}

PyObject *core_process_alive(PyObject *mod, PyObject *args)
{
    unsigned int pid;
    unsigned long long start = 0;
    (void)mod;
    if (!PyArg_ParseTuple(args, "I|K:process_alive", &pid, &start))
        return NULL;
    return PyLong_FromLong(ms_p_process_alive(pid, start));
}

PyObject *core_process_start(PyObject *mod, PyObject *args)
{
    unsigned int pid;
    (void)mod;
    if (!PyArg_ParseTuple(args, "I:process_start", &pid))
        return NULL;
    return PyLong_FromUnsignedLongLong(ms_p_process_start(pid));
}


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
    PyObject *limit_cls = ms_error_class(MS_E_ATTACH_LIMIT);
    if (st == MS_E_ATTACH_LIMIT && limit_cls) {
        /* AttachLimitError(message, limit) */
        PyObject *msg = PyUnicode_FromFormat(
            "attach: the attach table is full: %u processes are attached already, the most "
            "one object allows (a process takes one slot however many handles it opens)",
            (unsigned)self->seg.slots);
        PyObject *ex = msg ? PyObject_CallFunction(limit_cls, "OI", msg,
                                                   (unsigned)self->seg.slots) : NULL;
        Py_XDECREF(msg);
        if (ex) {
            PyErr_SetObject(limit_cls, ex);
            Py_DECREF(ex);
        }
        return NULL;
    }
    if (st == MS_E_IN_USE)
        return raise_named(self, st, "segment", "another handle kept it in use (removing it) "
                                                "for longer than an opener waits (5 s)");
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
    static const int keys[] = {MS_KEY_SIZE, MS_KEY_UID, MS_KEY_MODE, MS_KEY_DEV, MS_KEY_INO,
                               MS_KEY_MTIME_NS};
    PyObject *v[] = {
        PyLong_FromUnsignedLongLong((unsigned long long)st.size),
        PyLong_FromUnsignedLong(st.uid),
        PyLong_FromUnsignedLong(st.mode),
        PyLong_FromUnsignedLongLong((unsigned long long)st.dev),
        PyLong_FromUnsignedLongLong((unsigned long long)st.ino),
        PyLong_FromLongLong((long long)st.mtime_ns),
    };
    return ms_dict_build(keys, v, 6);
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

/* ---- the header's locks, change notification ---------------------------------------- */

int wait_args(PyObject *tobj, PyObject *sobj, SegmentObject *self, ms_wait_opts *o)
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
    uint32_t now = ms_change_count(&self->seg);
    ms_status st = MS_OK;
    if (now == (uint32_t)since)
        WAIT_WITHOUT_GIL(self, o, st = ms_change_wait(&self->seg, (uint32_t)since, &o, &now));
    if (st != MS_OK)
        return raise_status(FAULTED(self) ? MS_E_FAULT : st, 0, "wait_for_change");
    RET_OBJ(self, PyLong_FromUnsignedLong(now));
}

/* The event or semaphore an operation works on: the kind area of a named object
 * (offset None) or `need` bytes at an 8-aligned offset of the user area. */
void *sync_area(SegmentObject *self, PyObject *offobj, uint32_t kind, size_t need,
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
            const char *what = kind == MS_KIND_EVENT ? "event" : "semaphore";
            PyObject *name = Segment_get_name(self, NULL);
            if (name)
                PyErr_Format(ms_error_class(MS_E_LAYOUT) ? ms_error_class(MS_E_LAYOUT)
                                                         : PyExc_ValueError,
                             "no %s at offset %llu of segment %R (none was created there "
                             "with %s.create_in)", what, off, name,
                             kind == MS_KIND_EVENT ? "Event" : "Semaphore");
            Py_XDECREF(name);
            return NULL;
        }
    }
    return p;
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

PyObject *raise_named(SegmentObject *s, ms_status st, const char *what, const char *detail)
{
    PyObject *name = s->open && s->seg.hdr ? Segment_get_name(s, NULL) : NULL;
    if (!detail)
        detail = status_text(st);
    PyObject *cls = ms_error_class(st) ? ms_error_class(st) : PyExc_RuntimeError;
    if (!name) {
        PyErr_Clear();
        PyErr_Format(cls, "%s: %s", what, detail);
        return NULL;
    }
    PyErr_Format(cls, "%s %R: %s", what, name, detail);
    Py_DECREF(name);
    return NULL;
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
     "References held by Lock, Event, Semaphore and Channel objects (not users of the "
     "memory).", NULL},
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
    {"lock_state", (PyCFunction)Segment_lock_state, METH_VARARGS, "lock_state(which=0) -> dict"},
    {"notify", (PyCFunction)Segment_notify, METH_NOARGS, "Bump the change counter and wake."},
    {"change_count", (PyCFunction)Segment_change_count, METH_NOARGS, "The change counter."},
    {"wait_change", (PyCFunction)(void (*)(void))Segment_wait_change,
     METH_VARARGS | METH_KEYWORDS, "wait_change(since, timeout=None, spin=None) -> int"},
    {NULL}
};

PyTypeObject Segment_Type = {
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

