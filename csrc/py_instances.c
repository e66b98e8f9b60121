/* engine._instances: many instances of a Python class made in one C loop.
 *
 * A list page returns up to 1000 result objects.  Calling the class runs its
 * Python __init__ once per object, which costs more than the object itself;
 * here each object is made by the class's __new__ and its fields are stored
 * through their data descriptors (for a __slots__ class, the slot members),
 * which is what the __init__ of a dataclass without __post_init__ amounts to.
 *
 * Built on the limited API, like the cffi core, so one build serves every
 * CPython from 3.11 on.
 */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define MAX_FIELDS 16

PyDoc_STRVAR(instances_doc,
"instances(cls, descriptors, columns, /) -> list\n"
"\n"
"One instance of cls per row: row i is cls.__new__(cls) with descriptors[j]\n"
"set to columns[j][i].  columns[0] must be a list; any other column is a list\n"
"of the same length or None, which stands for None in every row.");

static PyObject *instances(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "instances() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *cls = args[0], *descrs = args[1], *cols = args[2];
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "instances(): cls must be a class");
        return NULL;
    }
    if (!PyTuple_Check(descrs) || !PyTuple_Check(cols)) {
        PyErr_SetString(PyExc_TypeError, "instances(): descriptors and columns must be tuples");
        return NULL;
    }
    Py_ssize_t k = PyTuple_Size(descrs);
    if (k < 1 || k > MAX_FIELDS || PyTuple_Size(cols) != k) {
        PyErr_Format(PyExc_ValueError,
                     "instances(): 1 to %d descriptors, and as many columns, are required",
                     MAX_FIELDS);
        return NULL;
    }
    PyObject *descr[MAX_FIELDS], *col[MAX_FIELDS];
    descrsetfunc set[MAX_FIELDS];
    for (Py_ssize_t j = 0; j < k; j++) {
        descr[j] = PyTuple_GetItem(descrs, j);
        col[j] = PyTuple_GetItem(cols, j);
        set[j] = (descrsetfunc)PyType_GetSlot(Py_TYPE(descr[j]), Py_tp_descr_set);
        if (!set[j]) {
            PyErr_Format(PyExc_TypeError, "instances(): descriptor %zd is not a data descriptor",
                         j);
            return NULL;
        }
        if (col[j] == Py_None && j > 0)
            col[j] = NULL;
        else if (!PyList_Check(col[j])) {
            PyErr_Format(PyExc_TypeError, "instances(): column %zd must be a list%s", j,
                         j ? " or None" : "");
            return NULL;
        }
    }
    Py_ssize_t n = PyList_Size(col[0]);
    for (Py_ssize_t j = 1; j < k; j++)
        if (col[j] && PyList_Size(col[j]) != n) {
            PyErr_Format(PyExc_ValueError, "instances(): column %zd has %zd rows, column 0 %zd",
                         j, PyList_Size(col[j]), n);
            return NULL;
        }
    newfunc make = (newfunc)PyType_GetSlot((PyTypeObject *)cls, Py_tp_new);
    if (!make) {
        PyErr_SetString(PyExc_TypeError, "instances(): cls cannot be instantiated");
        return NULL;
    }
    /* The list is made at full size and holds NULLs until it is filled, so it
     * stays out of the collector's sight (and so out of gc.get_objects() and
     * gc.get_referrers()) until then; the objects in it are kept alive by it
     * meanwhile, as an untracked referrer is never discounted. */
    PyObject *no_args = PyTuple_New(0);
    PyObject *out = no_args ? PyList_New(n) : NULL;
    if (!out)
        goto fail;
    PyObject_GC_UnTrack(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *obj = make((PyTypeObject *)cls, no_args, NULL);
        if (!obj || PyList_SetItem(out, i, obj) < 0)
            goto fail;
        for (Py_ssize_t j = 0; j < k; j++) {
            /* A column may change under a descriptor that runs Python code: the
             * value is fetched with a bounds check and held while it is stored. */
            PyObject *value = col[j] ? PyList_GetItem(col[j], i) : Py_None;
            if (!value)
                goto fail;
            Py_INCREF(value);
            int rc = set[j](descr[j], obj, value);
            Py_DECREF(value);
            if (rc < 0)
                goto fail;
        }
    }
    Py_DECREF(no_args);
    PyObject_GC_Track(out);
    return out;
fail:
    Py_XDECREF(out);
    Py_XDECREF(no_args);
    return NULL;
}

static PyMethodDef methods[] = {
    {"instances", (PyCFunction)(void (*)(void))instances, METH_FASTCALL, instances_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "engine._instances",
    "Many instances of a Python class made in one C loop.", 0, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__instances(void)
{
    return PyModuleDef_Init(&module);
}
