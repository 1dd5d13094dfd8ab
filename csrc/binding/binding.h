/* The binding's private header: what the files of csrc/binding/ share.
 *
 * mapshare._core is split the way CPython splits _io: one file per Python type
 * (segment.c, lock.c, event.c, semaphore.c, channel.c, window.c) and module.c for the
 * module itself, its state and the status -> exception mapping.  These files are the
 * only ones that include Python.h; the C core (the files of csrc/) never does.  Everything declared
 * here is hidden from the shared object's exports.
 */
#ifndef MS_BINDING_H
#define MS_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "../pycompat.h" /* C-API newer than the 3.9 floor */

#include "../layout.h"
#include "../channel.h"
#include "../topic.h"
#include "../latest.h"
#include "../array.h"
#include "../segment.h"
#include "../sync.h"
#include "../atomics.h"

#include <string.h>

/* Shared between the files of the extension, never exported from it (nor called
 * through the PLT: the hot paths call across these files). */
#define MS_BINDING_API MS_P_HIDDEN

/* ---- module state and errors (module.c) ------------------------------------------- */

/* Keys of the dicts built on hot paths (Segment.stat, npy_parse): interned once, so a
 * dict costs no string creation and no hashing per call. */
enum {
    MS_KEY_SIZE, MS_KEY_UID, MS_KEY_MODE, MS_KEY_DEV, MS_KEY_INO, MS_KEY_MTIME_NS,
    MS_KEY_MAJOR, MS_KEY_DESCR, MS_KEY_FORTRAN_ORDER, MS_KEY_SHAPE, MS_KEY_COUNT,
    MS_KEY_DATA_OFFSET, MS_KEY_N
};

/* Everything the module owns: no C globals hold Python objects. */
typedef struct {
    PyObject *keys[MS_KEY_N];                  /* MS_KEY_*, interned */
    PyObject *error_classes[MS_STATUS_COUNT];  /* status -> class, from mapshare._errors */
    PyObject *str_release;                     /* "release", interned */
    PyObject *topic_full;                      /* TopicFull: MS_E_FULL of a topic call */
    PyObject *topic_empty;                     /* TopicEmpty: MS_E_EMPTY of a topic call */
} ms_module_state;

/* The state of the imported module (found through its definition). */
MS_BINDING_API ms_module_state *ms_state(void);
/* A dict of n items: keys[i] (MS_KEY_*) -> values[i].  Steals every value (each may be
 * NULL: an error is set, the others are released); NULL on error. */
MS_BINDING_API PyObject *ms_dict_build(const int *keys, PyObject **values, int n);
/* The registered class of `st` (NULL before mapshare._errors registered them). */
MS_BINDING_API PyObject *ms_error_class(ms_status st);
MS_BINDING_API const char *status_text(ms_status st);
/* Raise the exception for `st`.  `what` names the object or operation. */
MS_BINDING_API PyObject *raise_status(ms_status st, int err, const char *what);

/* ---- arguments (module.c) --------------------------------------------------------- */

MS_BINDING_API int fast_kwargs(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                               const char *const *names, PyObject **out, Py_ssize_t nout,
                               const char *fname);
MS_BINDING_API int parse_timeout(PyObject *obj, int64_t *out);
MS_BINDING_API int u64_arg(PyObject *obj, const char *what, unsigned long long max,
                           unsigned long long *out);
MS_BINDING_API int conv_size(PyObject *obj, void *out);
MS_BINDING_API int conv_offset(PyObject *obj, void *out);
MS_BINDING_API int conv_length(PyObject *obj, void *out);
MS_BINDING_API int conv_dev(PyObject *obj, void *out);
MS_BINDING_API int conv_ino(PyObject *obj, void *out);
MS_BINDING_API int conv_count(PyObject *obj, void *out);
MS_BINDING_API int conv_loan_size(PyObject *obj, void *out);
MS_BINDING_API int conv_max_messages(PyObject *obj, void *out);
MS_BINDING_API int conv_value(PyObject *obj, void *out);
MS_BINDING_API int conv_maximum(PyObject *obj, void *out);

/* Validate a timeout before a fast path that may not need it, so that a wrong one is
 * refused whether or not the call would have waited.  None and a float >= 0 cost one
 * comparison; anything else goes through the full parse. */
static inline int timeout_check(PyObject *obj)
{
    if (obj == Py_None || (PyFloat_CheckExact(obj) && PyFloat_AS_DOUBLE(obj) >= 0))
        return 0;
    int64_t unused;
    return parse_timeout(obj, &unused);
}

/* ---- Segment (segment.c) ---------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    ms_segment seg;
    int open;
    Py_ssize_t exports;       /* buffers exported by this object and its windows */
    int locks_held;           /* user-lock acquisitions through this handle */
    int64_t spin_ns;
    PyObject *weakreflist;
    Py_ssize_t waiting;       /* threads inside a GIL-released call on this handle */
    int unmap_pending;        /* closed while in use: 1 unmap when the last export goes,
                               * 2 when this object is deallocated */
    int keep_mapping;         /* closed while a lock or a waiting thread needed it: never
                               * unmap (a robust-list entry or C code still points in) */
    Py_ssize_t internal_refs; /* references held by this package's Lock and Channel objects,
                               * which touch the mapping only through the open checks of
                               * this object: close() does not count them as users of the
                               * memory (see _segment.Segment._close) */
} SegmentObject;

extern MS_BINDING_API PyTypeObject Segment_Type;

/* The last export of a closed handle went: unmap now if close() deferred it. */
MS_BINDING_API void seg_export_released(SegmentObject *s);
/* Raise the exception for `st` naming the object by its logical name (never the OS
 * name): "<what> 'name': <detail, or the status text>". */
MS_BINDING_API PyObject *raise_named(SegmentObject *s, ms_status st, const char *what,
                                     const char *detail);
/* The event or semaphore at `offset` of a plain segment's user area (None: the kind
 * area of a named object of `kind`), `need` bytes, checked once: kind, offset, access
 * and (unless `creating`) the tag its creator wrote last.  NULL with an exception set. */
MS_BINDING_API void *sync_area(SegmentObject *self, PyObject *offobj, uint32_t kind,
                               size_t need, unsigned default_slot, unsigned *slot,
                               int creating);
/* Wait options from the (timeout, spin) arguments and this handle's spin. */
MS_BINDING_API int wait_args(PyObject *tobj, PyObject *sobj, SegmentObject *self,
                             ms_wait_opts *o);

static inline int seg_check(SegmentObject *self)
{
    if (!self->open) {
        PyErr_SetString(PyExc_ValueError, "segment is closed");
        return -1;
    }
    if (self->seg.faulted) {
        raise_status(MS_E_FAULT, 0, NULL);
        return -1;
    }
    return 0;
}

static inline int seg_check_header(SegmentObject *self)
{
    if (seg_check(self) < 0)
        return -1;
    if (!self->seg.hdr) {
        PyErr_SetString(PyExc_TypeError, "a raw segment has no mapshare header");
        return -1;
    }
    return 0;
}

/* A call that touched shared memory without a guard may have faulted: the SIGBUS
 * handler then quarantined the mapping and set seg.faulted.  Report it at once. */
#define FAULTED(s) ((s)->seg.faulted)
#define RET_NONE(s) do { if (FAULTED(s)) return raise_status(MS_E_FAULT, 0, NULL); Py_RETURN_NONE; } while (0)
#define RET_TRUE(s) do { if (FAULTED(s)) return raise_status(MS_E_FAULT, 0, NULL); Py_RETURN_TRUE; } while (0)
#define RET_FALSE(s) do { if (FAULTED(s)) return raise_status(MS_E_FAULT, 0, NULL); Py_RETURN_FALSE; } while (0)
#define RET_OBJ(s, o)                                   \
    do {                                                \
        PyObject *_o = (o);                             \
        if (_o && FAULTED(s)) {                         \
            Py_DECREF(_o);                              \
            return raise_status(MS_E_FAULT, 0, NULL);   \
        }                                               \
        return _o;                                      \
    } while (0)

/* ---- waiting with the GIL released (module.c) ------------------------------------- */

typedef struct gil_wait {
    PyThreadState *ts;   /* saved thread state while the GIL is released */
    int main_thread;
} gil_wait;

/* ms_wait_opts.interrupted: reacquire the GIL, run signal handlers (which may raise
 * KeyboardInterrupt), release it again. */
MS_BINDING_API int check_signals(void *arg);

/* Every call that releases the GIL while it uses a handle's mappings counts itself in,
 * so that close() from another thread refuses instead of unmapping under it. */
static inline PyThreadState *seg_wait_begin(SegmentObject *s)
{
    s->waiting++;
    return PyEval_SaveThread();
}

static inline void seg_wait_end(SegmentObject *s, PyThreadState *ts)
{
    PyEval_RestoreThread(ts);
    s->waiting--;
}

/* Run `stmt` with the GIL released, counted as a user of segment object `s`. */
#define SEG_ALLOW_THREADS(s, stmt)              \
    do {                                        \
        PyThreadState *_ts = seg_wait_begin(s); \
        stmt;                                   \
        seg_wait_end(s, _ts);                   \
    } while (0)

/* The one way to wait: run `stmt` (a blocking C-core call taking wait options `opts`)
 * with the GIL released and counted as a user of segment object `s`; signals are
 * checked between sleeps in the main thread (Ctrl-C), where `opts.interrupted` says. */
#define WAIT_WITHOUT_GIL(s, opts, stmt) WAIT_WITHOUT_GIL_AS(s, opts, _g, stmt)
/* The same, naming the gil_wait `g` for a callback that must take the GIL back briefly
 * (to allocate the bytes a message is received into). */
#define WAIT_WITHOUT_GIL_AS(s, opts, g, stmt)                            \
    do {                                                                 \
        gil_wait g = {NULL, _PyOS_IsMainThread()};                       \
        (opts).arg = &g;                                                 \
        g.ts = seg_wait_begin(s);                                        \
        stmt;                                                            \
        seg_wait_end(s, g.ts);                                           \
    } while (0)

/* ---- Journal (journal.c): module-level functions, added to the module at init --- */

extern MS_BINDING_API PyMethodDef ms_journal_methods[];
extern MS_BINDING_API PyTypeObject JournalAppender_Type;

/* ---- Window (window.c) ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    SegmentObject *owner;     /* keeps the mapping alive */
    uint8_t *ptr;
    Py_ssize_t len;
    int readonly;
    int valid;
    void *map_base;           /* own mapping (seg.view) to unmap, or NULL */
    size_t map_len;
    Py_ssize_t exports;
    int kind;                 /* 0 view, 1 loan, 2 received message */
    PyObject *chan;           /* kinds 1 and 2: the ChannelObject it belongs to */
    PyObject *mv;             /* the memoryview handed out by __enter__ */
    PyObject *exp;            /* the WindowExport that memoryview is made from */
    int internal;             /* counted in owner->internal_refs: this window never points
                               * into the owner's mapping unless through an export (a loan
                               * or received view), or it has a mapping of its own */
    uint64_t offset;          /* of ptr in the segment's user area */
    long long seq;            /* a topic loan: the sequence number it was published as
                               * (-1 before, and for every other window) */
} WindowObject;

/* The exporter of a loan's or received message's memoryview.  numpy keeps the
 * exporting object as an array's base (np.ndarray(buffer=view)) -- or the memoryview
 * itself (np.frombuffer) -- without holding a buffer export, so releasing the memoryview
 * cannot tell whether an array still points in.  This object can: it is referenced only
 * by its window, by the memoryview, and by whatever array took it as its base.  It holds
 * one export of the window for as long as it lives, so an array that outlives the block
 * keeps the mapping alive and is reported (BufferError), never left dangling. */
typedef struct {
    PyObject_HEAD
    WindowObject *w;
} WindowExportObject;

extern MS_BINDING_API PyTypeObject Window_Type;
extern MS_BINDING_API PyTypeObject WindowExport_Type;

MS_BINDING_API WindowObject *new_window(SegmentObject *owner, uint8_t *ptr, Py_ssize_t len,
                                        int readonly, int kind);
/* Forget the channel's hold on a window (it stays a Python object, now invalid). */
MS_BINDING_API void window_drop(WindowObject *w);
/* Finish a loan (commit if ok, else abort) or a received view (consume) (channel.c). */
MS_BINDING_API PyObject *window_finish(WindowObject *w, int ok);

/* ---- the other types -------------------------------------------------------------- */

extern MS_BINDING_API PyTypeObject Lock_Type;
extern MS_BINDING_API PyTypeObject MPLock_Type;
extern MS_BINDING_API PyTypeObject MPSemaphore_Type;
extern MS_BINDING_API PyTypeObject Event_Type;
extern MS_BINDING_API PyTypeObject Semaphore_Type;
extern MS_BINDING_API PyTypeObject Channel_Type;

/* ---- waiting on several objects (wait.c) ------------------------------------------ */

/* Fill *w (zeroed by the caller) for _core.wait_any from an instance of the type the
 * function is named after: 0, or -1 with an exception set (a closed handle).  Each lives
 * beside its type; *a is the caller's storage for what the predicate needs. */
MS_BINDING_API int ms_binding_event_waitable(PyObject *obj, ms_waitable *w);
MS_BINDING_API int ms_binding_semaphore_waitable(PyObject *obj, ms_waitable *w);
MS_BINDING_API int ms_binding_channel_waitable(PyObject *obj, ms_waitable *w,
                                               ms_channel_waitarg *a);
/* _core.wait_any(objects, timeout=None, spin=None) -> list[int] */
MS_BINDING_API PyObject *core_wait_any(PyObject *mod, PyObject *args, PyObject *kw);
MS_BINDING_API PyObject *core_wait_polling(PyObject *mod, PyObject *args);

/* ---- Topic and Subscriber (topic.c) ----------------------------------------------- */

#define MS_HAVE_TOPIC 1
extern MS_BINDING_API PyTypeObject Topic_Type;
extern MS_BINDING_API PyTypeObject Subscriber_Type;
/* Finish a topic loan (commit if ok, else abort) or a subscriber's received view. */
MS_BINDING_API PyObject *topic_window_finish(WindowObject *w, int ok);
/* _core._set_topic_errors(TopicFull, TopicEmpty) */
MS_BINDING_API PyObject *core_set_topic_errors(PyObject *mod, PyObject *args);
/* For mapshare.wait: 0 with *w filled, or -1 with a Python error set. */
MS_BINDING_API int ms_binding_subscriber_waitable(PyObject *obj, ms_waitable *w);

/* ---- Latest (latest.c) ------------------------------------------------------------ */

extern MS_BINDING_API PyTypeObject Latest_Type;
/* For mapshare.wait: ready once the version is > since; *a is the caller's storage. */
MS_BINDING_API int ms_binding_latest_waitable(PyObject *obj, ms_waitable *w,
                                              ms_latest_waitarg *a, uint64_t since);
/* ---- SharedArray (array.c) ------------------------------------------------------- */

/* _core.npy_parse(data) -> dict; _core.array_state(seg) -> (ready, version);
 * _core.array_ready(seg); _core.array_publish(seg) -> version */
MS_BINDING_API PyObject *core_npy_parse(PyObject *mod, PyObject *arg);
MS_BINDING_API PyObject *core_array_state(PyObject *mod, PyObject *arg);
MS_BINDING_API PyObject *core_array_ready(PyObject *mod, PyObject *arg);
MS_BINDING_API PyObject *core_array_publish(PyObject *mod, PyObject *arg);

/* Module-level functions (segment.c): create, open and manage objects by name. */
MS_BINDING_API PyObject *core_create(PyObject *mod, PyObject *args, PyObject *kw);
MS_BINDING_API PyObject *core_open(PyObject *mod, PyObject *args, PyObject *kw);
MS_BINDING_API PyObject *core_unlink(PyObject *mod, PyObject *args);
MS_BINDING_API PyObject *core_list_objects(PyObject *mod, PyObject *args);
MS_BINDING_API PyObject *core_unlink_if_same(PyObject *mod, PyObject *args);
MS_BINDING_API PyObject *core_reclaim(PyObject *mod, PyObject *args);
MS_BINDING_API PyObject *core_process_alive(PyObject *mod, PyObject *args);
MS_BINDING_API PyObject *core_process_start(PyObject *mod, PyObject *args);

#endif
