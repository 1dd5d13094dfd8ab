/* mapshare._core: the module, its state, and the status -> exception mapping.
 *
 * The exception classes are policy, defined in one place (mapshare._errors) and
 * registered here at import with set_errors(); raise_status() maps each ms_status to
 * exactly one of them.  The per-type code lives in the other files of this directory.
 */
#include "binding.h"
#include "../inspect.h"

/* ---- errors ------------------------------------------------------------------------- */

#define N_STATUS MS_STATUS_COUNT

static struct PyModuleDef moduledef;

ms_module_state *ms_state(void)
{
    PyObject *m = PyState_FindModule(&moduledef);
    return m ? (ms_module_state *)PyModule_GetState(m) : NULL;
}

static const char *const key_names[MS_KEY_N] = {
    "size", "uid", "mode", "dev", "ino", "mtime_ns",
    "major", "descr", "fortran_order", "shape", "count", "data_offset",
};

PyObject *ms_dict_build(const int *keys, PyObject **values, int n)
{
    ms_module_state *state = ms_state();
    PyObject *d = NULL;
    int i;
    for (i = 0; i < n; i++)
        if (!values[i])
            goto out;
    if (!state || !(d = PyDict_New()))
        goto out;
    for (i = 0; i < n; i++) {
        if (PyDict_SetItem(d, state->keys[keys[i]], values[i]) < 0) {
            Py_CLEAR(d);
            goto out;
        }
    }
out:
    for (i = 0; i < n; i++)
        Py_XDECREF(values[i]);
    return d;
}

PyObject *ms_error_class(ms_status st)
{
    ms_module_state *state = ms_state();
    return state && st > 0 && st < N_STATUS ? state->error_classes[st] : NULL;
}

static PyObject *set_errors(PyObject *mod, PyObject *mapping)
{
    ms_module_state *state = (ms_module_state *)PyModule_GetState(mod);
    if (!PyDict_Check(mapping)) {
        PyErr_SetString(PyExc_TypeError, "expected a dict {status: exception class}");
        return NULL;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(mapping, &pos, &key, &value)) {
        long code = PyLong_AsLong(key);
        if (code < 0 || code >= N_STATUS) {
            PyErr_SetString(PyExc_ValueError, "status code out of range");
            return NULL;
        }
        Py_INCREF(value);
        Py_XSETREF(state->error_classes[code], value);
    }
    Py_RETURN_NONE;
}

/* MS_E_VERSION's text names the version this build reads. */
MS_STATIC_ASSERT(MS_LAYOUT_VERSION == 2u, "update the text of MS_E_VERSION");

const char *status_text(ms_status st)
{
    switch (st) {
    case MS_E_OS: return "operating system error";
    case MS_E_NOT_FOUND: return "no such segment";
    case MS_E_EXISTS: return "a segment of that name already exists";
    case MS_E_PERMISSION: return "permission denied";
    case MS_E_LAYOUT: return "invalid or corrupt segment layout";
    case MS_E_TIMEOUT: return "timed out";
    case MS_E_INTERRUPTED: return "interrupted";
    case MS_E_OWNER_DIED: return "the previous owner died while holding the lock; "
                                 "it is now held by you";
    case MS_E_FULL: return "channel is full";
    case MS_E_EMPTY: return "channel is empty";
    case MS_E_CLOSED: return "end of channel: closed for sending and drained";
    case MS_E_TOO_LARGE: return "message is larger than the channel can ever hold";
    case MS_E_NOT_OWNER: return "lock is not held by this thread";
    case MS_E_NO_SPACE: return "no space left to reserve the storage";
    case MS_E_IN_USE: return "the object is in use by another handle";
    case MS_E_INITIALIZING: return "segment is still being initialized by its creator";
    case MS_E_DESTROYED: return "segment was destroyed";
    case MS_E_BROKEN: return "a sender died without closing the channel, and none is left";
    case MS_E_FAULT: return "the segment's memory vanished (truncated by another process?)";
    case MS_E_INVALID: return "invalid argument";
    case MS_E_VALUE: return "released above its maximum";
    case MS_E_ATTACH_LIMIT: return "the attach table is full of live processes";
    case MS_E_ALREADY_HELD: return "this thread already holds the lock (locks are not reentrant)";
    case MS_E_RETRY_NO_GIL: return "retry without the GIL";
    case MS_E_WINDOW_OPEN: return "this thread already has a loan or a received view open "
                                  "on this channel handle: finish it first";
    case MS_E_LAGGED: return "the subscriber was overwritten: messages were lost";
    case MS_E_SUBSCRIBER_LIMIT: return "the topic's subscriber table is full of live "
                                       "subscribers";
    case MS_E_OVERWRITTEN: return "the value was replaced while the view was in use";
    case MS_E_VERSION: return "the segment was made with another mapshare layout version "
                              "than the one this mapshare reads (version 2): open it with "
                              "the mapshare that made it, or upgrade";
    default: return "error";
    }
}

PyObject *raise_status(ms_status st, int err, const char *what)
{
    if (st == MS_E_INTERRUPTED && PyErr_Occurred())
        return NULL;  /* the signal handler's exception (KeyboardInterrupt) */
    if (st == MS_E_INTERRUPTED || st == MS_E_RETRY_NO_GIL) {
        /* internal statuses: the binding handles them before they could get here */
        PyErr_Format(PyExc_SystemError, "internal status %d (%s) reached a user",
                     (int)st, status_text(st));
        return NULL;
    }
    PyObject *cls = ms_error_class(st);
    if (!cls)
        cls = st == MS_E_TIMEOUT ? PyExc_TimeoutError : PyExc_OSError;
    if (st == MS_E_LAGGED && cls != PyExc_OSError) {
        /* Lagged(missed, position): the topic binding raises it with its numbers */
        PyObject *exc = PyObject_CallFunction(cls, "ii", 0, 0);
        if (exc) {
            PyErr_SetObject(cls, exc);
            Py_DECREF(exc);
        }
        return NULL;
    }
    if (st == MS_E_OS || (err && (st == MS_E_NOT_FOUND || st == MS_E_EXISTS ||
                                  st == MS_E_PERMISSION || st == MS_E_NO_SPACE ||
                                  st == MS_E_IN_USE))) {
        /* OSError subclasses get (errno, strerror, filename) like the builtins; with a
         * Windows error code, OSError(0, text, filename, winerror) derives errno from it */
        PyObject *args =
            ms_p_err_is_winerror()
                ? Py_BuildValue("(issi)", 0, status_text(st), what ? what : "", err)
                : Py_BuildValue("(isss)", err, err ? strerror(err) : status_text(st),
                                what ? what : "", status_text(st));
        if (args) {
            PyErr_SetObject(cls, args);
            Py_DECREF(args);
        }
        return NULL;
    }
    if (what)
        PyErr_Format(cls, "%s: %s", what, status_text(st));
    else
        PyErr_SetString(cls, status_text(st));
    return NULL;
}

/* ---- waiting with the GIL released ------------------------------------------------- */

int check_signals(void *arg)
{
    gil_wait *g = (gil_wait *)arg;
    if (!g->main_thread)
        return 0;
    PyEval_RestoreThread(g->ts);
    int r = PyErr_CheckSignals();
    g->ts = PyEval_SaveThread();
    return r < 0;
}

/* Keyword arguments of the METH_FASTCALL methods, by name, without private APIs. */
int fast_kwargs(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                const char *const *names, PyObject **out, Py_ssize_t nout, const char *fname)
{
    if (nargs > nout) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments", fname, nout);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        out[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t j;
        for (j = 0; j < nout; j++)
            if (PyUnicode_CompareWithASCIIString(key, names[j]) == 0)
                break;
        if (j == nout) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R",
                         fname, key);
            return -1;
        }
        if (j < nargs) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument %R",
                         fname, key);
            return -1;
        }
        out[j] = args[nargs + k];
    }
    return 0;
}

int parse_timeout(PyObject *obj, int64_t *out)
{
    if (obj == NULL || obj == Py_None) {
        *out = -1;
        return 0;
    }
    if (PyBool_Check(obj) || !(PyFloat_Check(obj) || PyIndex_Check(obj))) {
        PyErr_Format(PyExc_TypeError, "timeout must be None or a number of seconds, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    double t = PyFloat_AsDouble(obj);
    if (t == -1.0 && PyErr_Occurred())
        return -1;
    if (t != t || t < 0) {
        PyErr_SetString(PyExc_ValueError, "timeout must be None or a number >= 0");
        return -1;
    }
    *out = t > 9e9 ? -1 : (int64_t)(t * 1e9);
    return 0;
}

/* Sizes, offsets, lengths and counts: an int (never a bool) that fits the C type.
 * PyArg's "K" and "I" wrap silently (2**64 + 16 became 16), so every such argument goes
 * through here and an out-of-range value is a ValueError naming the argument. */
int u64_arg(PyObject *obj, const char *what, unsigned long long max, unsigned long long *out)
{
    if (PyBool_Check(obj) || !PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what,
                     Py_TYPE(obj)->tp_name);
        return 0;
    }
    PyObject *i = PyNumber_Index(obj);
    if (!i)
        return 0;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(i, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        Py_DECREF(i);
        return 0;
    }
    if (overflow < 0 || (!overflow && v < 0)) {
        PyErr_Format(PyExc_ValueError, "%s must be >= 0, not %R", what, i);
        Py_DECREF(i);
        return 0;
    }
    unsigned long long u = overflow ? PyLong_AsUnsignedLongLong(i) : (unsigned long long)v;
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        u = max;
        overflow = 2;  /* beyond 2**64 - 1 */
    }
    if (overflow == 2 || u > max) {
        PyErr_Format(PyExc_ValueError, "%s %R is too large (at most %llu)", what, i, max);
        Py_DECREF(i);
        return 0;
    }
    Py_DECREF(i);
    *out = u;
    return 1;
}

#define U64_CONVERTER(fname, what, max)                                      \
    int fname(PyObject *obj, void *out)                               \
    {                                                                        \
        return u64_arg(obj, what, max, (unsigned long long *)out);           \
    }

U64_CONVERTER(conv_size, "size", (unsigned long long)INT64_MAX)
U64_CONVERTER(conv_offset, "offset", ULLONG_MAX)
U64_CONVERTER(conv_length, "length", ULLONG_MAX)
U64_CONVERTER(conv_dev, "dev", ULLONG_MAX)
U64_CONVERTER(conv_ino, "ino", ULLONG_MAX)

/* unsigned 32-bit counts and values (semaphores) */
static int u32_arg(PyObject *obj, const char *what, unsigned int *out)
{
    unsigned long long v;
    if (!u64_arg(obj, what, UINT32_MAX, &v))
        return 0;
    *out = (unsigned int)v;
    return 1;
}

int conv_count(PyObject *obj, void *out) { return u32_arg(obj, "n", out); }

/* Py_ssize_t counts and byte lengths (loan sizes, batch sizes): never a bool, never
 * negative (PyArg's "n" takes True as 1). */
static int ssize_arg(PyObject *obj, const char *what, Py_ssize_t *out)
{
    unsigned long long v;
    if (!u64_arg(obj, what, (unsigned long long)PY_SSIZE_T_MAX, &v))
        return 0;
    *out = (Py_ssize_t)v;
    return 1;
}
int conv_loan_size(PyObject *obj, void *out) { return ssize_arg(obj, "n", out); }
int conv_max_messages(PyObject *obj, void *out)
{
    return ssize_arg(obj, "max_messages", out);
}
int conv_value(PyObject *obj, void *out) { return u32_arg(obj, "value", out); }
int conv_maximum(PyObject *obj, void *out) { return u32_arg(obj, "maximum", out); }


/* ---- module ------------------------------------------------------------------------- */

/* _raise_status(code, what=None): raise what a C call returning `code` raises, so that a
 * test can check the whole status -> exception mapping from the C side. */
static PyObject *core_raise_status(PyObject *mod, PyObject *args)
{
    int code;
    const char *what = NULL;
    (void)mod;
    if (!PyArg_ParseTuple(args, "i|z:_raise_status", &code, &what))
        return NULL;
    if (code <= 0 || code >= N_STATUS) {
        PyErr_SetString(PyExc_ValueError, "not an error status");
        return NULL;
    }
    return raise_status((ms_status)code, 0, what);
}

/* ---- inspection (csrc/inspect.c): the one reader of header offsets for Python -------- */

static PyObject *core_peek_header(PyObject *mod, PyObject *args)
{
    const char *osname;
    const char *path = NULL;
    unsigned int flags = 0;
    (void)mod;
    if (!PyArg_ParseTuple(args, "s|zI:peek_header", &osname, &path, &flags))
        return NULL;
    ms_header_info h;
    int err = 0;
    ms_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ms_inspect_peek(osname, path, flags, &h, &err);
    Py_END_ALLOW_THREADS
    if (st != MS_OK)
        return raise_status(st, err, path ? path : osname);
    return Py_BuildValue(
        "{sIsIsIsKsIsIsKsKsIsIsIsN}",
        "version", h.version, "kind", h.kind, "lifetime", h.lifetime,
        "size", (unsigned long long)h.size, "creator_pid", h.creator_pid,
        "creator_uid", h.creator_uid,
        "creator_start", (unsigned long long)h.creator_start,
        "created_ns", (unsigned long long)h.created_ns, "state", h.state,
        "flags", h.flags, "mode", h.mode,
        "name", PyUnicode_DecodeUTF8(h.name, (Py_ssize_t)h.name_len, "replace"));
}


/* ---- _dumps_plain: the pickle of a small plain object, in one C call ----
 *
 * mapshare.multiprocessing pickles with the standard ForkingPickler, whose only
 * difference from pickle.dumps is its reducers for a few types (methods, partial,
 * sockets, connections, and what a program registers).  An object made only of exact
 * builtin scalars and containers meets none of them, and its pickle is byte for byte
 * the same from _pickle.dumps -- one C call instead of a reused pickler driven from
 * Python.  Anything else (a type with a reducer in `reducers`, the ForkingPickler's
 * registry, included; or more than PLAIN_BUDGET objects) returns None: the caller
 * (policy, in Python) pickles it with the ForkingPickler. */

#define PLAIN_BUDGET 64
#define PLAIN_DEPTH 8

static PyObject *plain_reducers;  /* the registry of the call under way (borrowed) */

static int is_plain(PyObject *o, int depth, int *budget)
{
    if (--*budget < 0 || depth > PLAIN_DEPTH)
        return 0;
    PyTypeObject *t = Py_TYPE(o);
    /* a registered reducer for the type: pickled its way, by the ForkingPickler (the
     * lookup hashes a builtin type by identity) */
    if (PyDict_GET_SIZE(plain_reducers) &&
        PyDict_GetItemWithError(plain_reducers, (PyObject *)t))
        return 0;
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (o == Py_None || t == &PyLong_Type || t == &PyUnicode_Type || t == &PyFloat_Type ||
        t == &PyBytes_Type || t == &PyBool_Type || t == &PyComplex_Type)
        return 1;
    if (t == &PyTuple_Type) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(o); i++)
            if (!is_plain(PyTuple_GET_ITEM(o, i), depth + 1, budget))
                return 0;
        return 1;
    }
    if (t == &PyList_Type) {
        /* no Python code runs during the walk (exact types only), so the list cannot
         * change under it */
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(o); i++)
            if (!is_plain(PyList_GET_ITEM(o, i), depth + 1, budget))
                return 0;
        return 1;
    }
    if (t == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(o, &pos, &k, &v))
            if (!is_plain(k, depth + 1, budget) || !is_plain(v, depth + 1, budget))
                return 0;
        return 1;
    }
    return 0;
}

static PyObject *pickle_dumps;  /* _pickle.dumps, looked up once (the module stays) */

/* ---- the pickle of a scalar, or of a tuple of up to 3 scalars, written here ----
 *
 * For a None, bool, int in [-2**31, 2**31), float, or str/bytes under 256 bytes -- alone
 * or in a tuple of up to 3 of them -- the bytes _pickle.dumps(obj, 4 or 5) writes are
 * fixed: PROTO, a FRAME when the body (opcodes + STOP) is 4 bytes or more, each scalar's
 * opcode (MEMOIZE after a str or bytes), TUPLE1/2/3 + MEMOIZE (or EMPTY_TUPLE), STOP.  The
 * one case with a back-reference (the same str or bytes object twice in the tuple: BINGET)
 * is left to the pickler.  Writing these here skips making and freeing a Pickler and its
 * 4 KiB output buffer -- most of the cost of pickling a small object (callgrind).  The
 * output is byte for byte _pickle.dumps's (tests/unit/test_mp_c_methods.py compares). */
#define SCALAR_MAX 255
#define SCALAR_BODY (2 + SCALAR_MAX + 1)  /* the largest scalar: opcode, length, data, MEMOIZE */

/* Append the opcodes of scalar o at body + *n; 0 when o is not such a scalar. */
static int scalar_body(PyObject *o, unsigned char *body, size_t *np)
{
    size_t n = *np;
    PyTypeObject *t = Py_TYPE(o);
    if (o == Py_None) {
        body[n++] = 'N';
    } else if (o == Py_True) {
        body[n++] = 0x88;
    } else if (o == Py_False) {
        body[n++] = 0x89;
    } else if (t == &PyLong_Type) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (overflow || v < -2147483648LL || v > 2147483647LL)
            return 0;  /* LONG1: the general path */
        if (v >= 0 && v <= 0xff) {
            body[n++] = 'K';
            body[n++] = (unsigned char)v;
        } else if (v >= 0 && v <= 0xffff) {
            body[n++] = 'M';
            body[n++] = (unsigned char)(v & 0xff);
            body[n++] = (unsigned char)(v >> 8);
        } else {
            uint32_t u = (uint32_t)(int32_t)v;
            body[n++] = 'J';
            for (int i = 0; i < 4; i++)
                body[n++] = (unsigned char)(u >> (8 * i));
        }
    } else if (t == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(o);
        uint64_t u;
        memcpy(&u, &d, 8);  /* IEEE 754 binary64 on every platform mapshare builds for */
        body[n++] = 'G';
        for (int i = 7; i >= 0; i--)
            body[n++] = (unsigned char)(u >> (8 * i));  /* big-endian, as BINFLOAT */
    } else if (t == &PyBytes_Type || t == &PyUnicode_Type) {
        const char *p;
        Py_ssize_t len;
        if (t == &PyBytes_Type) {
            p = PyBytes_AS_STRING(o);
            len = PyBytes_GET_SIZE(o);
        } else {
            /* the pickler encodes with "surrogatepass"; a str this cannot encode
             * strictly (a lone surrogate) takes the general path */
            p = PyUnicode_AsUTF8AndSize(o, &len);
            if (!p) {
                PyErr_Clear();
                return 0;
            }
        }
        if (len > SCALAR_MAX)
            return 0;
        body[n++] = t == &PyBytes_Type ? 'C' : 0x8c;  /* SHORT_BINBYTES, SHORT_BINUNICODE */
        body[n++] = (unsigned char)len;
        memcpy(body + n, p, (size_t)len);
        n += (size_t)len;
        body[n++] = 0x94;  /* MEMOIZE */
    } else {
        return 0;
    }
    *np = n;
    return 1;
}

static int memoized(PyObject *o)
{
    return PyUnicode_CheckExact(o) || PyBytes_CheckExact(o);
}

/* The pickle of o, or NULL (no exception) when o is not one of the forms above. */
static PyObject *scalar_pickle(PyObject *o, long protocol)
{
    unsigned char body[3 * SCALAR_BODY + 2];
    size_t n = 0;
    if (PyTuple_CheckExact(o)) {
        Py_ssize_t k = PyTuple_GET_SIZE(o);
        if (k > 3)
            return NULL;
        if (k == 0) {
            body[n++] = ')';  /* EMPTY_TUPLE, not memoized */
        } else {
            for (Py_ssize_t i = 0; i < k; i++) {
                PyObject *e = PyTuple_GET_ITEM(o, i);
                for (Py_ssize_t j = 0; j < i; j++)
                    if (PyTuple_GET_ITEM(o, j) == e && memoized(e))
                        return NULL;  /* the pickler writes a BINGET here */
                if (!scalar_body(e, body, &n))
                    return NULL;
            }
            body[n++] = (unsigned char)(0x85 + k - 1);  /* TUPLE1, TUPLE2, TUPLE3 */
            body[n++] = 0x94;
        }
    } else if (!scalar_body(o, body, &n)) {
        return NULL;
    }
    body[n++] = '.';
    int framed = n >= 4;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(2 + (framed ? 9 : 0) + n));
    if (!out)
        return NULL;
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(out);
    *w++ = 0x80;
    *w++ = (unsigned char)protocol;
    if (framed) {
        *w++ = 0x95;
        for (int i = 0; i < 8; i++)
            *w++ = (unsigned char)((uint64_t)n >> (8 * i));
    }
    memcpy(w, body, n);
    return out;
}

static PyObject *core_dumps_plain(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3 || !PyDict_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "_dumps_plain(obj, protocol, reducers) takes 3 arguments, reducers "
                        "a dict");
        return NULL;
    }
    int budget = PLAIN_BUDGET;
    plain_reducers = args[2];
    int plain = is_plain(args[0], 0, &budget);
    plain_reducers = NULL;
    if (!plain)
        Py_RETURN_NONE;
    if (PyLong_CheckExact(args[1])) {
        long protocol = PyLong_AsLong(args[1]);
        if (protocol == 4 || protocol == 5) {
            PyObject *out = scalar_pickle(args[0], protocol);
            if (out || PyErr_Occurred())
                return out;
        }
        PyErr_Clear();  /* a protocol too large for a long: _pickle.dumps says why */
    }
    if (!pickle_dumps) {
        PyObject *m = PyImport_ImportModule("_pickle");
        if (!m)
            return NULL;
        pickle_dumps = PyObject_GetAttrString(m, "dumps");
        Py_DECREF(m);
        if (!pickle_dumps)
            return NULL;
    }
    return PyObject_Vectorcall(pickle_dumps, args, 2, NULL);
}

/* ---- _loads_plain: the reverse, for the same scalar pickles ----
 *
 * The bytes come from shared memory: untrusted.  Every form this reads is checked
 * against the length first; anything it does not recognise exactly (another opcode, a
 * FRAME whose length is not the rest, bytes after STOP) goes to `loads` (the standard
 * unpickler) unchanged, so the result is always what loads(data) returns. */
/* One scalar's opcodes at p (n bytes left): the object and *used, or NULL -- with no
 * exception when the bytes are not one of the forms scalar_body writes. */
static PyObject *scalar_parse(const unsigned char *p, Py_ssize_t n, Py_ssize_t *used)
{
    if (n < 1)
        return NULL;
    switch (p[0]) {
    case 'N':
        *used = 1;
        return Py_NewRef(Py_None);
    case 0x88:
        *used = 1;
        return Py_NewRef(Py_True);
    case 0x89:
        *used = 1;
        return Py_NewRef(Py_False);
    case 'K':
        if (n < 2)
            return NULL;
        *used = 2;
        return PyLong_FromLong(p[1]);
    case 'M':
        if (n < 3)
            return NULL;
        *used = 3;
        return PyLong_FromLong(p[1] | (p[2] << 8));
    case 'J': {
        if (n < 5)
            return NULL;
        uint32_t u = (uint32_t)p[1] | ((uint32_t)p[2] << 8) | ((uint32_t)p[3] << 16) |
                     ((uint32_t)p[4] << 24);
        *used = 5;
        return PyLong_FromLong((long)(int32_t)u);
    }
    case 'G': {
        if (n < 9)
            return NULL;
        uint64_t u = 0;
        for (int i = 1; i <= 8; i++)
            u = (u << 8) | p[i];
        double d;
        memcpy(&d, &u, 8);
        *used = 9;
        return PyFloat_FromDouble(d);
    }
    case 'C': case 0x8c: {
        /* opcode, length, data, MEMOIZE (optional: the memo is never read back here,
         * since any BINGET makes the whole pickle go to the unpickler) */
        if (n < 2)
            return NULL;
        Py_ssize_t len = p[1];
        if (n < 2 + len)
            return NULL;
        *used = 2 + len + (n > 2 + len && p[2 + len] == 0x94);
        if (p[0] == 'C')
            return PyBytes_FromStringAndSize((const char *)p + 2, len);
        /* the unpickler's decoding; an error (invalid UTF-8) is left to it to report */
        PyObject *r = PyUnicode_DecodeUTF8((const char *)p + 2, len, "surrogatepass");
        if (!r)
            PyErr_Clear();
        return r;
    }
    default:
        return NULL;
    }
}

/* ---- _loads_plain: the reverse, for the same pickles ----
 *
 * The bytes come from shared memory: untrusted.  Every read is checked against the
 * length first; anything not exactly one of the forms scalar_pickle writes (another
 * opcode, a FRAME whose length is not the rest, bytes after STOP, a TUPLEn over other
 * than n objects) returns NULL with no exception, and the caller hands the bytes to the
 * standard unpickler unchanged: the result is always what pickle.loads returns. */
static PyObject *scalar_unpickle(const unsigned char *p, Py_ssize_t n)
{
    if (n < 4 || p[0] != 0x80 || p[1] < 2 || p[1] > 5)
        return NULL;
    p += 2;
    n -= 2;
    if (p[0] == 0x95) {
        if (n < 9)
            return NULL;
        uint64_t len = 0;
        for (int i = 7; i >= 0; i--)
            len = (len << 8) | p[1 + i];
        p += 9;
        n -= 9;
        if (len != (uint64_t)n)
            return NULL;
    }
    /* the last byte is STOP; what precedes it, exactly: a scalar, ')', or 1 to 3
     * scalars, TUPLEn and an optional MEMOIZE */
    if (n < 2 || p[n - 1] != '.')
        return NULL;
    n--;
    if (n == 1 && p[0] == ')')
        return PyTuple_New(0);
    PyObject *items[3];
    int k = 0;
    Py_ssize_t at = 0;
    PyObject *result = NULL;
    while (at < n) {
        unsigned char op = p[at];
        if (op >= 0x85 && op <= 0x87) {
            /* TUPLEn, then an optional MEMOIZE, then the end */
            Py_ssize_t end = at + 1 + (at + 1 < n && p[at + 1] == 0x94);
            if (end != n || k != op - 0x85 + 1)
                break;
            result = PyTuple_New(k);
            if (!result)
                break;
            for (int i = 0; i < k; i++)
                PyTuple_SET_ITEM(result, i, items[i]);
            return result;
        }
        if (k == 3)
            break;
        Py_ssize_t used = 0;
        PyObject *o = scalar_parse(p + at, n - at, &used);
        if (!o)
            break;
        items[k++] = o;
        at += used;
        if (at == n && k == 1)
            return o;  /* a lone scalar */
    }
    for (int i = 0; i < k; i++)
        Py_DECREF(items[i]);
    return NULL;
}

static PyObject *core_loads_plain(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_loads_plain(data, loads) takes 2 arguments");
        return NULL;
    }
    if (PyBytes_CheckExact(args[0])) {
        PyObject *r = scalar_unpickle((const unsigned char *)PyBytes_AS_STRING(args[0]),
                                      PyBytes_GET_SIZE(args[0]));
        if (r || PyErr_Occurred())
            return r;
    }
    return PyObject_Vectorcall(args[1], args, 1, NULL);
}

static PyMethodDef module_methods[] = {
    {"set_errors", set_errors, METH_O, "Register {status: exception class}."},
    {"_dumps_plain", (PyCFunction)(void (*)(void))core_dumps_plain, METH_FASTCALL,
     "_dumps_plain(obj, protocol, reducers, /) -> bytes or None: pickle.dumps(obj,\n"
     "protocol) when obj is made only of builtin scalars and containers (64 objects at\n"
     "most) none of whose types has a reducer in `reducers`; else None."},
    {"_loads_plain", (PyCFunction)(void (*)(void))core_loads_plain, METH_FASTCALL,
     "_loads_plain(data, loads, /) -> object: loads(data), read here without an unpickler\n"
     "when data is the pickle of one None, bool, int, float, or short str or bytes (the\n"
     "forms _dumps_plain writes itself)."},
    {"_raise_status", core_raise_status, METH_VARARGS,
     "_raise_status(code, what=None): raise the exception of a status (for tests)."},
    {"_set_topic_errors", core_set_topic_errors, METH_VARARGS,
     "_set_topic_errors(TopicFull, TopicEmpty): the classes topic calls raise for a full "
     "or empty topic."},
    {"npy_parse", core_npy_parse, METH_O,
     "npy_parse(data) -> dict: parse and validate a .npy image's header (LayoutError)."},
    {"array_state", core_array_state, METH_O,
     "array_state(segment) -> (ready, version) of an array object's control block."},
    {"array_ready", core_array_ready, METH_O,
     "array_ready(segment): publish a new array (its header and data are written)."},
    {"array_publish", core_array_publish, METH_O,
     "array_publish(segment) -> version: bump the version and wake waiters."},
    {"create", (PyCFunction)(void (*)(void))core_create, METH_VARARGS | METH_KEYWORDS,
     "create(osname, name, kind, size, path=None, mode=0o600, lifetime=2, flags=0, "
     "init=None) -> Segment"},
    {"open", (PyCFunction)(void (*)(void))core_open, METH_VARARGS | METH_KEYWORDS,
     "open(osname, path, kind=0, access=2, raw=False, flags=0) -> Segment"},
    {"unlink", core_unlink, METH_VARARGS, "unlink(osname, flags=0)"},
    {"list_objects", core_list_objects, METH_VARARGS,
     "list_objects(flags=0) -> sorted OS names of the mapshare objects"},
    {"reclaim", core_reclaim, METH_VARARGS,
     "reclaim(osname, flags=0, unfinished_ok=False) -> RECLAIM_*: remove a name nobody "
     "can use any more (see ms_segment_reclaim)."},
    {"unlink_if_same", core_unlink_if_same, METH_VARARGS,
     "unlink_if_same(osname, dev, ino, flags=0) -> bool"},
    {"process_alive", core_process_alive, METH_VARARGS,
     "process_alive(pid, start=0) -> 1 alive, 0 dead, -1 unknown"},
    {"process_start", core_process_start, METH_VARARGS, "process_start(pid) -> int"},
    {"wait_any", (PyCFunction)(void (*)(void))core_wait_any, METH_VARARGS | METH_KEYWORDS,
     "wait_any(objects, timeout=None, spin=None) -> list[int]: the indexes of the ready\n"
     "objects (Channel, Event, Semaphore, Segment or (Segment, since), Subscriber), in\n"
     "order, after waiting for at least one (an empty list on timeout)."},
    {"_wait_polling", core_wait_polling, METH_VARARGS,
     "_wait_polling(force=None) -> bool: wait_any polls instead of sleeping on every\n"
     "word at once (force=True, for tests; False: only where the system cannot)."},
    {"peek_header", core_peek_header, METH_VARARGS,
     "peek_header(osname, path=None, flags=0) -> dict: the identity fields of a header "
     "(ms_inspect_peek), without attaching; for objects open() refuses (destroyed)."},
    {NULL}
};

static int module_traverse(PyObject *m, visitproc visit, void *arg)
{
    ms_module_state *state = (ms_module_state *)PyModule_GetState(m);
    for (int i = 0; i < N_STATUS; i++)
        Py_VISIT(state->error_classes[i]);
    Py_VISIT(state->str_release);
    for (int i = 0; i < MS_KEY_N; i++)
        Py_VISIT(state->keys[i]);
    Py_VISIT(state->topic_full);
    Py_VISIT(state->topic_empty);
    return 0;
}

static int module_clear(PyObject *m)
{
    ms_module_state *state = (ms_module_state *)PyModule_GetState(m);
    for (int i = 0; i < N_STATUS; i++)
        Py_CLEAR(state->error_classes[i]);
    Py_CLEAR(state->str_release);
    for (int i = 0; i < MS_KEY_N; i++)
        Py_CLEAR(state->keys[i]);
    Py_CLEAR(state->topic_full);
    Py_CLEAR(state->topic_empty);
    return 0;
}

static void module_free(void *m)
{
    module_clear((PyObject *)m);
}

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mapshare._core",
    .m_doc = "The C core of mapshare: memory layout, waiting, locks, events, semaphores "
             "and channels.",
    .m_size = sizeof(ms_module_state),
    .m_methods = module_methods,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

/* Every addition is checked: a failure fails the import instead of leaving a module
 * with a missing name. */
static int add_types(PyObject *m)
{
    PyTypeObject *types[] = {&Segment_Type, &Window_Type, &WindowExport_Type, &Lock_Type,
                             &MPLock_Type, &MPSemaphore_Type, &Event_Type, &Semaphore_Type,
                             &Channel_Type, &Topic_Type,
                             &Subscriber_Type, &Latest_Type, &JournalAppender_Type};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        if (PyType_Ready(types[i]) < 0)
            return -1;
    }
    /* WindowExport is internal: ready, never exported by name */
    PyTypeObject *exported[] = {&Segment_Type, &Window_Type, &Lock_Type, &MPLock_Type,
                                &MPSemaphore_Type, &Event_Type, &Semaphore_Type,
                                &Channel_Type, &Topic_Type,
                                &Subscriber_Type, &Latest_Type, &JournalAppender_Type};
    for (size_t i = 0; i < sizeof exported / sizeof *exported; i++) {
        if (PyModule_AddType(m, exported[i]) < 0)
            return -1;
    }
    return 0;
}

static int add_constants(PyObject *m)
{
    static const struct { const char *name; long long value; } ints[] = {
        {"KIND_SEGMENT", (long long)(MS_KIND_SEGMENT)},
        {"KIND_LOCK", (long long)(MS_KIND_LOCK)},
        {"KIND_EVENT", (long long)(MS_KIND_EVENT)},
        {"KIND_SEMAPHORE", (long long)(MS_KIND_SEMAPHORE)},
        {"KIND_CHANNEL", (long long)(MS_KIND_CHANNEL)},
        {"KIND_LINK", (long long)(MS_KIND_LINK)},
        {"KIND_TOPIC", (long long)(MS_KIND_TOPIC)},
        {"KIND_LATEST", (long long)(MS_KIND_LATEST)},
        {"LATEST_BUFFERS", (long long)(MS_LATEST_BUFFERS)},
        {"LATEST_SIZE_MAX", (long long)(MS_LATEST_SIZE_MAX)},
        {"LATEST_BUF_HEADER", (long long)(MS_LATEST_BUF_HEADER)},
        {"KIND_ARRAY", (long long)(MS_KIND_ARRAY)},
        {"SUB_LIVE", (long long)(MS_SUB_LIVE)},
        {"SUB_HISTORY", (long long)(MS_SUB_HISTORY)},
        {"SUB_SEQ", (long long)(MS_SUB_SEQ)},
        {"TOPIC_OVERWRITE", (long long)(MS_TOPIC_OVERWRITE)},
        {"TOPIC_BLOCK", (long long)(MS_TOPIC_BLOCK)},
        {"TOPIC_SUB_SIZE", (long long)(MS_TOPIC_SUB_SIZE)},
        {"TOPIC_SUBSCRIBERS_MAX", (long long)(MS_TOPIC_SUBS_MAX)},
        {"TOPIC_CAPACITY_MIN", (long long)(MS_TOPIC_CAPACITY_MIN)},
        {"TOPIC_RECORD_HEADER", (long long)(MS_TOPIC_REC_HEADER)},
        {"RECLAIM_KEPT", (long long)(MS_RECLAIM_KEPT)},
        {"RECLAIM_REMOVED", (long long)(MS_RECLAIM_REMOVED)},
        {"RECLAIM_ABSENT", (long long)(MS_RECLAIM_ABSENT)},
        {"RECLAIM_UNFINISHED", (long long)(MS_RECLAIM_UNFINISHED)},
        {"LIFETIME_PERSISTENT", (long long)(MS_LIFETIME_PERSISTENT)},
        {"LIFETIME_SHARED", (long long)(MS_LIFETIME_SHARED)},
        {"ACCESS_READ", (long long)(MS_ACCESS_READ)},
        {"ACCESS_WRITE", (long long)(MS_ACCESS_WRITE)},
        {"ACCESS_COPY", (long long)(MS_ACCESS_COPY)},
        {"FLAG_FILE_BACKED", (long long)(MS_FLAG_FILE_BACKED)},
        {"OBJ_FOLLOW_SYMLINKS", (long long)(MS_OBJ_FOLLOW_SYMLINKS)},
        {"OBJ_GLOBAL", (long long)(MS_OBJ_GLOBAL)},
        {"STATE_READY", (long long)(MS_STATE_READY)},
        {"STATE_DESTROYED", (long long)(MS_STATE_DESTROYED)},
        {"HEADER_SIZE", (long long)(MS_HEADER_SIZE)},
        {"LAYOUT_VERSION", (long long)(MS_LAYOUT_VERSION)},
        {"NAME_MAX", (long long)(MS_NAME_MAX)},
        {"ATTACH_SLOTS", (long long)(MS_ATTACH_SLOTS)},
        {"HEADER_PAGE", (long long)(MS_HEADER_PAGE)},
        {"RECORD_HEADER", (long long)(MS_REC_HEADER)},
        {"E_OS", (long long)(MS_E_OS)},
        {"E_NOT_FOUND", (long long)(MS_E_NOT_FOUND)},
        {"E_EXISTS", (long long)(MS_E_EXISTS)},
        {"E_PERMISSION", (long long)(MS_E_PERMISSION)},
        {"E_LAYOUT", (long long)(MS_E_LAYOUT)},
        {"E_TIMEOUT", (long long)(MS_E_TIMEOUT)},
        {"E_INTERRUPTED", (long long)(MS_E_INTERRUPTED)},
        {"E_OWNER_DIED", (long long)(MS_E_OWNER_DIED)},
        {"E_FULL", (long long)(MS_E_FULL)},
        {"E_EMPTY", (long long)(MS_E_EMPTY)},
        {"E_CLOSED", (long long)(MS_E_CLOSED)},
        {"E_TOO_LARGE", (long long)(MS_E_TOO_LARGE)},
        {"E_NOT_OWNER", (long long)(MS_E_NOT_OWNER)},
        {"E_NO_SPACE", (long long)(MS_E_NO_SPACE)},
        {"E_IN_USE", (long long)(MS_E_IN_USE)},
        {"E_INITIALIZING", (long long)(MS_E_INITIALIZING)},
        {"E_DESTROYED", (long long)(MS_E_DESTROYED)},
        {"E_BROKEN", (long long)(MS_E_BROKEN)},
        {"E_FAULT", (long long)(MS_E_FAULT)},
        {"E_INVALID", (long long)(MS_E_INVALID)},
        {"E_VALUE", (long long)(MS_E_VALUE)},
        {"E_ATTACH_LIMIT", (long long)(MS_E_ATTACH_LIMIT)},
        {"E_ALREADY_HELD", (long long)(MS_E_ALREADY_HELD)},
        {"E_RETRY_NO_GIL", (long long)(MS_E_RETRY_NO_GIL)},
        {"E_WINDOW_OPEN", (long long)(MS_E_WINDOW_OPEN)},
        {"E_LAGGED", (long long)(MS_E_LAGGED)},
        {"E_SUBSCRIBER_LIMIT", (long long)(MS_E_SUBSCRIBER_LIMIT)},
        {"E_OVERWRITTEN", (long long)(MS_E_OVERWRITTEN)},
        {"E_VERSION", (long long)(MS_E_VERSION)},
    };
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++) {
        PyObject *o = PyLong_FromLongLong(ints[i].value);
        if (!o || PyModule_AddObject(m, ints[i].name, o) < 0) {
            Py_XDECREF(o);
            return -1;
        }
    }
    PyObject *magic = PyLong_FromUnsignedLongLong(MS_MAGIC);
    if (!magic || PyModule_AddObject(m, "MAGIC", magic) < 0) {
        Py_XDECREF(magic);
        return -1;
    }
    if (PyModule_AddIntConstant(m, "PAGE_SIZE", (long)ms_p_page_size()) < 0 ||
        PyModule_AddIntConstant(m, "GRANULARITY", (long)ms_p_granularity()) < 0)
        return -1;
    return PyModule_AddStringConstant(m, "PLATFORM", ms_p_name());
}

PyMODINIT_FUNC PyInit__core(void)
{
    PyObject *m = PyModule_Create(&moduledef);
    if (!m)
        return NULL;
    ms_module_state *state = (ms_module_state *)PyModule_GetState(m);
    state->str_release = PyUnicode_InternFromString("release");
    for (int i = 0; i < MS_KEY_N; i++) {
        if (!(state->keys[i] = PyUnicode_InternFromString(key_names[i]))) {
            Py_DECREF(m);
            return NULL;
        }
    }
    if (!state->str_release || add_types(m) < 0 || add_constants(m) < 0 ||
        PyModule_AddFunctions(m, ms_journal_methods) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
