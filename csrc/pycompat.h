/* The CPython C-API functions the binding uses that are newer than the package's floor
 * (Python 3.9, pyproject's requires-python), defined here for older Pythons the way the
 * newer CPython defines them.  Include it right after <Python.h> in every binding file;
 * on a Python that has a function, the definition here is compiled out.  The Python matrix
 * (tools/matrix.sh, CI) builds the extension on 3.9 and catches a new one missing here. */
#ifndef MS_PYCOMPAT_H
#define MS_PYCOMPAT_H

#include <Python.h>

#if PY_VERSION_HEX < 0x030A0000 /* 3.10 */
static inline PyObject *ms_compat_newref(PyObject *obj) { Py_INCREF(obj); return obj; }
static inline PyObject *ms_compat_xnewref(PyObject *obj) { Py_XINCREF(obj); return obj; }
#define Py_NewRef(obj) ms_compat_newref((PyObject *)(obj))
#define Py_XNewRef(obj) ms_compat_xnewref((PyObject *)(obj))
#define Py_Is(x, y) ((x) == (y))
#define Py_IsNone(x) Py_Is((x), Py_None)
#define Py_IsTrue(x) Py_Is((x), Py_True)
#define Py_IsFalse(x) Py_Is((x), Py_False)

/* Like PyModule_AddObject, but never steals the reference (3.10's semantics). */
static inline int PyModule_AddObjectRef(PyObject *mod, const char *name, PyObject *value)
{
    if (value == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_SystemError,
                            "PyModule_AddObjectRef() must be called with an exception "
                            "raised if value is NULL");
        return -1;
    }
    Py_INCREF(value);
    if (PyModule_AddObject(mod, name, value) < 0) {
        Py_DECREF(value);
        return -1;
    }
    return 0;
}
#endif

#if PY_VERSION_HEX < 0x030D0000 /* 3.13 */
/* Steals the reference to value even on failure, and takes NULL with an exception set. */
static inline int PyModule_Add(PyObject *mod, const char *name, PyObject *value)
{
    int res = PyModule_AddObjectRef(mod, name, value);
    Py_XDECREF(value);
    return res;
}
#endif

#if PY_VERSION_HEX >= 0x030D0000 /* 3.13 */
/* 3.13 moved this declaration to the internal headers (pycore_signal.h); libpython still
 * exports the function. Declared here so that 3.13 builds do not rely on an implicit
 * declaration (a warning with gcc 12, an error from gcc 14). It is private API: the
 * binding's is_main_thread() should move to a public equivalent. */
PyAPI_FUNC(int) _PyOS_IsMainThread(void);
#endif

#endif /* MS_PYCOMPAT_H */
