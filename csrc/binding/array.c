/* mapshare._core's SharedArray functions: the .npy header parser (csrc/array.c) and an
 * array object's control block (version, ready).  The policy (dtype, numpy, files) is in
 * src/mapshare/_array.py. */
#include "binding.h"

PyObject *core_npy_parse(PyObject *mod, PyObject *arg)
{
    (void)mod;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    ms_npy_info info;
    ms_status st = ms_npy_parse((const uint8_t *)view.buf, (uint64_t)view.len, &info);
    PyObject *descr = NULL;
    if (st == MS_OK)
        descr = PyUnicode_DecodeASCII((const char *)view.buf + info.descr_offset,
                                      (Py_ssize_t)info.descr_len, "strict");
    PyBuffer_Release(&view);
    if (st != MS_OK)
        return raise_status(MS_E_LAYOUT, 0, "invalid .npy header");
    if (!descr)
        return NULL;
    PyObject *shape = PyTuple_New((Py_ssize_t)info.ndim);
    if (!shape) {
        Py_DECREF(descr);
        return NULL;
    }
    for (uint32_t k = 0; k < info.ndim; k++) {
        PyObject *d = PyLong_FromUnsignedLongLong((unsigned long long)info.shape[k]);
        if (!d) {
            Py_DECREF(descr);
            Py_DECREF(shape);
            return NULL;
        }
        PyTuple_SET_ITEM(shape, k, d);
    }
    static const int keys[] = {MS_KEY_MAJOR, MS_KEY_DESCR, MS_KEY_FORTRAN_ORDER, MS_KEY_SHAPE,
                               MS_KEY_COUNT, MS_KEY_DATA_OFFSET};
    PyObject *v[] = {
        PyLong_FromUnsignedLong(info.major), descr, PyBool_FromLong(info.fortran_order),
        shape, PyLong_FromUnsignedLongLong((unsigned long long)info.count),
        PyLong_FromUnsignedLongLong((unsigned long long)info.data_offset),
    };
    return ms_dict_build(keys, v, 6);
}

/* The control block of an open array object, or NULL with an exception set. */
static ms_array *array_area(PyObject *arg, SegmentObject **out)
{
    if (!PyObject_TypeCheck(arg, &Segment_Type)) {
        PyErr_SetString(PyExc_TypeError, "expected a _core.Segment");
        return NULL;
    }
    SegmentObject *s = (SegmentObject *)arg;
    if (seg_check_header(s) < 0)
        return NULL;
    if (s->seg.kind != MS_KIND_ARRAY) {
        raise_status(MS_E_LAYOUT, 0, "not an array object");
        return NULL;
    }
    *out = s;
    return (ms_array *)(void *)s->seg.hdr->kind_area;
}

PyObject *core_array_state(PyObject *mod, PyObject *arg)
{
    (void)mod;
    SegmentObject *s;
    ms_array *a = array_area(arg, &s);
    if (!a)
        return NULL;
    int bad;
    int ready = ms_array_ready(a, &bad);
    uint64_t v = ms_array_version(a);
    if (FAULTED(s))
        return raise_status(MS_E_FAULT, 0, NULL);
    if (bad)
        return raise_status(MS_E_LAYOUT, 0, "array control block has no tag");
    return Py_BuildValue("(NK)", PyBool_FromLong(ready), (unsigned long long)v);
}

PyObject *core_array_ready(PyObject *mod, PyObject *arg)
{
    (void)mod;
    SegmentObject *s;
    ms_array *a = array_area(arg, &s);
    if (!a)
        return NULL;
    if (!s->seg.hdr_writable)
        return raise_status(MS_E_PERMISSION, 0, "array opened read-only");
    ms_array_set_ready(a);
    RET_NONE(s);
}

PyObject *core_array_publish(PyObject *mod, PyObject *arg)
{
    (void)mod;
    SegmentObject *s;
    ms_array *a = array_area(arg, &s);
    if (!a)
        return NULL;
    if (!s->seg.hdr_writable)
        return raise_status(MS_E_PERMISSION, 0, "publish on an array opened read-only");
    uint64_t v = ms_array_bump(a);
    ms_change_notify(&s->seg);
    RET_OBJ(s, PyLong_FromUnsignedLongLong((unsigned long long)v));
}
