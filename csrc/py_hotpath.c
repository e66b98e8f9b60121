/*
 * py_hotpath.c -- engine._hotpath: the KV layer's plain put, delete, get and
 * list page, each one call from Python into the core.
 *
 * WHY THIS EXISTS
 *   A small put or a cached get does ~0.2 us of work in the core, but through
 *   cffi and the Python layers above it each cost another ~0.6-0.9 us: cffi
 *   converts every argument generically (8 for kv_put) and a get needs three
 *   crossings (kv_get_tl, kv_get_tl_data, ffi.unpack), on top of the key's
 *   validation, encoding and prefixing in Python.  This module takes only the
 *   common case -- a str key, a bytes or str value, no options -- validates it
 *   as the KV layer would, builds the namespaced key on the stack and calls
 *   the core directly.  Everything else answers SLOW and the caller takes its
 *   general path, which raises the exact errors; nothing here raises a KV
 *   error of its own.  cffi stays the binding of the whole C API: this is four
 *   entry points beside it, compiled into the same shared object (PEP 489
 *   lets one library hold several modules) so they call the core directly.
 *
 * CONTRACT (engine/_hotpath.pyi)
 *   Handle(owner, address, prefix, clock, max_key, max_value)
 *       owner    the cffi kv_db object; held, so the kv_db outlives the handle
 *                (calls after kv_close get KV_ECLOSED from the core)
 *       address  the kv_db's address, int(ffi.cast("uintptr_t", owner))
 *       prefix   the namespace's key prefix, at most HOT_MAX_PREFIX bytes
 *       clock    None (the core reads the system clock) or the store's clock
 *   put(h, key, value) -> None | int | SLOW
 *       None written; an int is the core's return code for the caller to
 *       raise (a write is never retried); SLOW: not a plain put.
 *   delete(h, key) -> None | int | SLOW
 *       as put, for a tombstone (deleting a missing key is not an error).
 *   get(h, key, type) -> bytes | str | None | SLOW | FAILED
 *       type "bytes"/"arrayBuffer" give bytes, "text" str (UTF-8, invalid
 *       bytes replaced); None: absent or expired.  SLOW for any other type,
 *       key or clock reading and for a value over KV_GET_TL_MAX: the general
 *       path reads it (reads have no side effects).  FAILED: the read failed;
 *       kv_get_tl_rc() and kv_get_tl_value() of this thread say why.
 *   list(h, prefix, after, limit, cls) -> (keys, more, has_meta) | int | SLOW
 *       kv_list's page as a list of cls objects (KeyInfo: slots name,
 *       expiration, metadata), names without the handle's prefix; metadata
 *       is left as the raw JSON bytes (has_meta: some key has it) for the
 *       caller to parse.  An int is the core's return code; SLOW when a key
 *       is not UTF-8, a record failed its check (the general path raises
 *       either with its details) or the clock has no plain reading.
 *
 * THREADS
 *   The GIL is released around each core call that may wait, as cffi does;
 *   the key is copied to the stack and the value object is held by the caller
 *   (or, for a str value, by this call), so nothing moves while it is
 *   released.  A get keeps the GIL for kv_get_tl_begin, which never waits
 *   (a miss or a cached record: releasing and retaking the GIL would cost
 *   about a third of such a get), and releases it for the file read or for a
 *   lookup that must wait for a writer.  The core never calls back into
 *   Python, so holding the GIL there cannot deadlock.  A get's value is copied
 *   out of this thread's buffer (kv_get_tl) with the GIL held; no other
 *   thread writes that buffer.
 */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "kv.h"

#define HOT_MAX_PREFIX 8u
#define HOT_MAX_KEY    1024u /* the largest max_key a handle takes: the stack buffer */
#define HOT_MAX_LIST   1000  /* the most keys a page holds (Workers KV's list limit) */

typedef struct {
    PyObject_HEAD
    PyObject *owner;
    PyObject *clock; /* NULL: KV_NOW_SYSTEM */
    kv_db *db;
    uint32_t plen;
    uint32_t max_key;
    uint64_t max_value;
    char prefix[HOT_MAX_PREFIX];
} Handle;

/* One interpreter, one load: module state would buy nothing but indirection. */
static PyTypeObject *handle_type;
static PyObject *slow, *failed;   /* the SLOW and FAILED sentinels */
static PyObject *s_text, *s_bytes, *s_array_buffer;

enum { KIND_SLOW, KIND_TEXT, KIND_BYTES };

static PyObject *answer(PyObject *sentinel)
{
    Py_INCREF(sentinel);
    return sentinel;
}

/* ------------------------------------------------------------------ Handle */

static PyObject *handle_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *owner, *address, *clock;
    const char *prefix;
    Py_ssize_t plen;
    unsigned int max_key;
    unsigned long long max_value;
    static char *names[] = {"owner", "address", "prefix", "clock", "max_key", "max_value", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!y#OIK:Handle", names, &owner, &PyLong_Type,
                                     &address, &prefix, &plen, &clock, &max_key, &max_value))
        return NULL;
    if ((size_t)plen > HOT_MAX_PREFIX) {
        PyErr_Format(PyExc_ValueError, "Handle: prefix of %zd bytes, at most %u", plen,
                     HOT_MAX_PREFIX);
        return NULL;
    }
    if (max_key == 0 || max_key > HOT_MAX_KEY) {
        PyErr_Format(PyExc_ValueError, "Handle: max_key must be 1..%u, not %u", HOT_MAX_KEY,
                     max_key);
        return NULL;
    }
    if (clock != Py_None && !PyCallable_Check(clock)) {
        PyErr_SetString(PyExc_TypeError, "Handle: clock must be callable or None");
        return NULL;
    }
    void *db = PyLong_AsVoidPtr(address);
    if (db == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "Handle: address is NULL");
        return NULL;
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    Handle *h = (Handle *)alloc(type, 0);
    if (h == NULL)
        return NULL;
    Py_INCREF(owner);
    h->owner = owner;
    if (clock != Py_None) {
        Py_INCREF(clock);
        h->clock = clock;
    }
    h->db = db;
    h->plen = (uint32_t)plen;
    h->max_key = max_key;
    h->max_value = max_value;
    memcpy(h->prefix, prefix, (size_t)plen);
    return (PyObject *)h;
}

static int handle_traverse(PyObject *self, visitproc visit, void *arg)
{
    Handle *h = (Handle *)self;
    Py_VISIT(Py_TYPE(self)); /* a heap type is owned by its instances */
    Py_VISIT(h->owner);
    Py_VISIT(h->clock);
    return 0;
}

static int handle_clear(PyObject *self)
{
    Handle *h = (Handle *)self;
    Py_CLEAR(h->owner);
    Py_CLEAR(h->clock);
    return 0;
}

static void handle_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    handle_clear(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
    tp_free(self);
    Py_DECREF(type);
}

static PyType_Slot handle_slots[] = {
    {Py_tp_doc, "A namespace's entry to the core for engine._hotpath's put and get."},
    {Py_tp_new, handle_new},
    {Py_tp_traverse, handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_dealloc, handle_dealloc},
    {0, NULL},
};

static PyType_Spec handle_spec = {
    "engine._hotpath.Handle",
    sizeof(Handle),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    handle_slots,
};

/* ----------------------------------------------------------------- helpers */

static Handle *handle_arg(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want,
                          const char *what)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", what, want, nargs);
        return NULL;
    }
    if (Py_TYPE(args[0]) != handle_type) {
        PyErr_Format(PyExc_TypeError, "%s(): the first argument must be a Handle", what);
        return NULL;
    }
    return (Handle *)args[0];
}

/* The namespaced key of a plain key into out (HOT_MAX_PREFIX + HOT_MAX_KEY
 * bytes); 0 when the key is not plain: not an exact str, not encodable, empty,
 * "." or "..", or longer than max_key bytes. */
static int full_key(const Handle *h, PyObject *key, char *out, uint32_t *klen)
{
    Py_ssize_t n;
    if (!PyUnicode_CheckExact(key))
        return 0;
    const char *s = PyUnicode_AsUTF8AndSize(key, &n);
    if (s == NULL) { /* a lone surrogate: the general path names the problem */
        PyErr_Clear();
        return 0;
    }
    if (n == 0 || (size_t)n > h->max_key || (s[0] == '.' && (n == 1 || (n == 2 && s[1] == '.'))))
        return 0;
    memcpy(out, h->prefix, h->plen);
    memcpy(out + h->plen, s, (size_t)n);
    *klen = h->plen + (uint32_t)n;
    return 1;
}

/* now for a read: the store clock's reading in whole seconds, as int() takes
 * it; 0 when there is no plain reading (the general path calls the clock). */
static int read_now(const Handle *h, uint64_t *now)
{
    if (h->clock == NULL) {
        *now = KV_NOW_SYSTEM;
        return 1;
    }
    PyObject *t = PyObject_CallNoArgs(h->clock);
    int ok = 0;
    if (t != NULL && PyFloat_CheckExact(t)) {
        double d = PyFloat_AsDouble(t);
        if (d >= 0.0 && d < 9.0e18) {
            *now = (uint64_t)d; /* truncation, as int() */
            ok = 1;
        }
    } else if (t != NULL && PyLong_CheckExact(t)) {
        unsigned long long v = PyLong_AsUnsignedLongLong(t);
        if (!(v == (unsigned long long)-1 && PyErr_Occurred()) && v != KV_NOW_SYSTEM) {
            *now = v;
            ok = 1;
        }
    }
    Py_XDECREF(t);
    if (!ok)
        PyErr_Clear();
    return ok;
}

static int kind_of(PyObject *type)
{
    /* Literals are interned: identity answers nearly every call. */
    if (type == s_text)
        return KIND_TEXT;
    if (type == s_bytes || type == s_array_buffer)
        return KIND_BYTES;
    if (!PyUnicode_CheckExact(type))
        return KIND_SLOW;
    if (PyUnicode_Compare(type, s_text) == 0)
        return KIND_TEXT;
    if (PyUnicode_Compare(type, s_bytes) == 0 || PyUnicode_Compare(type, s_array_buffer) == 0)
        return KIND_BYTES;
    return KIND_SLOW;
}

/* ----------------------------------------------------------------- entries */

static PyObject *hot_put(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    char key[HOT_MAX_PREFIX + HOT_MAX_KEY];
    uint32_t klen;
    Handle *h = handle_arg(args, nargs, 3, "put");
    if (h == NULL)
        return NULL;
    if (!full_key(h, args[1], key, &klen))
        return answer(slow);
    PyObject *value = args[2], *encoded = NULL;
    char *data;
    Py_ssize_t vlen;
    if (PyBytes_CheckExact(value)) {
        if (PyBytes_AsStringAndSize(value, &data, &vlen) != 0)
            return NULL;
    } else if (PyUnicode_CheckExact(value)) {
        /* Encoded into a temporary (as str.encode), not AsUTF8AndSize: that
         * would keep a copy of a large non-ASCII value inside the str. */
        encoded = PyUnicode_AsUTF8String(value);
        if (encoded == NULL) {
            PyErr_Clear();
            return answer(slow);
        }
        if (PyBytes_AsStringAndSize(encoded, &data, &vlen) != 0) {
            Py_DECREF(encoded);
            return NULL;
        }
    } else {
        return answer(slow);
    }
    if ((uint64_t)vlen > h->max_value) {
        Py_XDECREF(encoded);
        return answer(slow);
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = kv_put(h->db, key, klen, NULL, 0, data, (uint64_t)vlen, 0);
    Py_END_ALLOW_THREADS
    Py_XDECREF(encoded);
    if (rc == 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(rc);
}

static PyObject *hot_delete(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    char key[HOT_MAX_PREFIX + HOT_MAX_KEY];
    uint32_t klen;
    int rc, existed;
    Handle *h = handle_arg(args, nargs, 2, "delete");
    if (h == NULL)
        return NULL;
    if (!full_key(h, args[1], key, &klen))
        return answer(slow);
    Py_BEGIN_ALLOW_THREADS
    rc = kv_delete(h->db, key, klen, &existed);
    Py_END_ALLOW_THREADS
    if (rc == 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(rc);
}

static PyObject *hot_get(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    char key[HOT_MAX_PREFIX + HOT_MAX_KEY];
    uint32_t klen;
    uint64_t now;
    Handle *h = handle_arg(args, nargs, 3, "get");
    if (h == NULL)
        return NULL;
    int kind = kind_of(args[2]);
    if (kind == KIND_SLOW || !full_key(h, args[1], key, &klen) || !read_now(h, &now))
        return answer(slow);
    int64_t n = kv_get_tl_begin(h->db, key, klen, now);
    if (n == KV_GET_PENDING) {
        Py_BEGIN_ALLOW_THREADS
        n = kv_get_tl_finish(key, klen);
        Py_END_ALLOW_THREADS
    } else if (n == KV_GET_BUSY) {
        Py_BEGIN_ALLOW_THREADS
        n = kv_get_tl(h->db, key, klen, now);
        Py_END_ALLOW_THREADS
    }
    if (n >= 0) {
        const char *data = kv_get_tl_data();
        if (kind == KIND_TEXT)
            return PyUnicode_DecodeUTF8(data, (Py_ssize_t)n, "replace");
        return PyBytes_FromStringAndSize(data, (Py_ssize_t)n);
    }
    if (n == KV_GET_MISSING)
        Py_RETURN_NONE;
    /* The general path reads a large value; a failure is raised from this
     * thread's kv_get_tl_rc(), not read again (no second I/O, no second miss). */
    return answer(n == KV_GET_FAILED ? failed : slow);
}

/* The setters of cls's three slots, in the order name, expiration, metadata:
 * member descriptors, so a page's fields are stored without an attribute
 * lookup each.  0 (no exception) when cls is not such a class. */
static int slot_setters(PyObject *cls, PyObject *descr[3], descrsetfunc set[3])
{
    static const char *const names[3] = {"name", "expiration", "metadata"};
    for (int i = 0; i < 3; i++) {
        descr[i] = PyObject_GetAttrString(cls, names[i]);
        if (descr[i] == NULL) {
            PyErr_Clear();
            set[i] = NULL;
        } else {
            set[i] = (descrsetfunc)PyType_GetSlot(Py_TYPE(descr[i]), Py_tp_descr_set);
        }
        if (set[i] == NULL) {
            for (int j = 0; j <= i; j++)
                Py_CLEAR(descr[j]);
            return 0;
        }
    }
    return 1;
}

/* One cls object for a listed item; NULL with an exception, or NULL with
 * *slow set when the general path must take the page. */
static PyObject *listed_key(PyObject *cls, allocfunc alloc, PyObject *const descr[3],
                            const descrsetfunc set[3], const kv_list_item *it,
                            const char *buf, uint32_t strip, int *slow)
{
    if (it->status != 0 || it->klen < strip) {
        *slow = 1;
        return NULL;
    }
    PyObject *obj = alloc((PyTypeObject *)cls, 0);
    if (obj == NULL)
        return NULL;
    PyObject *name = PyUnicode_DecodeUTF8(buf + it->key_off + strip, it->klen - strip, NULL);
    if (name == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            *slow = 1;
        }
        Py_DECREF(obj);
        return NULL;
    }
    PyObject *exp =
        it->expiration ? PyLong_FromUnsignedLongLong(it->expiration) : Py_NewRef(Py_None);
    PyObject *meta = it->mlen ? PyBytes_FromStringAndSize(buf + it->meta_off, it->mlen)
                              : Py_NewRef(Py_None);
    int bad = exp == NULL || meta == NULL || set[0](descr[0], obj, name) != 0 ||
              set[1](descr[1], obj, exp) != 0 || set[2](descr[2], obj, meta) != 0;
    Py_DECREF(name);
    Py_XDECREF(exp);
    Py_XDECREF(meta);
    if (bad) {
        Py_DECREF(obj);
        return NULL;
    }
    return obj;
}

static PyObject *hot_list(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Handle *h = handle_arg(args, nargs, 5, "list");
    if (h == NULL)
        return NULL;
    PyObject *cls = args[4];
    if (!PyBytes_CheckExact(args[1]) || !PyBytes_CheckExact(args[2]) ||
        !PyLong_CheckExact(args[3]) || !PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError,
                        "list(handle, prefix: bytes, after: bytes, limit: int, cls: type)");
        return NULL;
    }
    char *prefix, *after;
    Py_ssize_t plen, alen;
    if (PyBytes_AsStringAndSize(args[1], &prefix, &plen) != 0 ||
        PyBytes_AsStringAndSize(args[2], &after, &alen) != 0)
        return NULL;
    long limit = PyLong_AsLong(args[3]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    uint64_t now;
    if (limit < 1 || limit > HOT_MAX_LIST || (size_t)plen < h->plen || plen > UINT32_MAX ||
        alen > UINT32_MAX || memcmp(prefix, h->prefix, h->plen) != 0 || !read_now(h, &now))
        return answer(slow);
    PyObject *descr[3];
    descrsetfunc set[3];
    if (!slot_setters(cls, descr, set))
        return answer(slow);
    allocfunc alloc = (allocfunc)PyType_GetSlot((PyTypeObject *)cls, Py_tp_alloc);

    kv_list_item *items = PyMem_Malloc((size_t)limit * sizeof *items);
    kv_buf buf = {NULL, 0};
    PyObject *result = NULL, *keys = NULL;
    if (items == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    uint32_t n = 0, found = 0;
    int more = 0, rc;
    Py_BEGIN_ALLOW_THREADS
    rc = kv_list(h->db, prefix, (uint32_t)plen, after, (uint32_t)alen, now, (uint32_t)limit, 1,
                 &buf, items, &n, &more, &found);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        result = PyLong_FromLong(rc);
        goto done;
    }
    if (found & KV_LIST_BAD) {
        result = answer(slow);
        goto done;
    }
    keys = PyList_New((Py_ssize_t)n);
    if (keys == NULL)
        goto done;
    for (uint32_t i = 0; i < n; i++) {
        int go_slow = 0;
        PyObject *obj = listed_key(cls, alloc, descr, set, &items[i], (const char *)buf.data,
                                   h->plen, &go_slow);
        if (obj == NULL) {
            if (go_slow)
                result = answer(slow);
            goto done;
        }
        PyList_SetItem(keys, (Py_ssize_t)i, obj); /* steals obj; cannot fail here */
    }
    result = Py_BuildValue("(OOO)", keys, more ? Py_True : Py_False,
                           (found & KV_LIST_META) ? Py_True : Py_False);
done:
    Py_XDECREF(keys);
    kv_buf_free(&buf);
    PyMem_Free(items);
    for (int i = 0; i < 3; i++)
        Py_DECREF(descr[i]);
    return result;
}

/* ------------------------------------------------------------------ module */

static PyMethodDef hot_methods[] = {
    {"put", (PyCFunction)(void (*)(void))hot_put, METH_FASTCALL,
     "put(handle, key, value) -> None | int | SLOW: a plain put in one call."},
    {"delete", (PyCFunction)(void (*)(void))hot_delete, METH_FASTCALL,
     "delete(handle, key) -> None | int | SLOW: a plain delete in one call."},
    {"get", (PyCFunction)(void (*)(void))hot_get, METH_FASTCALL,
     "get(handle, key, type) -> bytes | str | None | SLOW: a plain get in one call."},
    {"list", (PyCFunction)(void (*)(void))hot_list, METH_FASTCALL,
     "list(handle, prefix, after, limit, cls) -> (keys, more, has_meta) | int | SLOW."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hot_module = {
    PyModuleDef_HEAD_INIT,
    "engine._hotpath",
    "The KV layer's plain put and get, one call each (csrc/py_hotpath.c).",
    -1,
    hot_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__hotpath(void);

PyMODINIT_FUNC PyInit__hotpath(void)
{
    /* Made once per process: loading the module again (a second importer of
     * the same file) shares them. */
    if (handle_type == NULL) {
        s_text = PyUnicode_InternFromString("text");
        s_bytes = PyUnicode_InternFromString("bytes");
        s_array_buffer = PyUnicode_InternFromString("arrayBuffer");
        slow = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
        failed = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
        handle_type = (PyTypeObject *)PyType_FromSpec(&handle_spec);
        if (s_text == NULL || s_bytes == NULL || s_array_buffer == NULL || slow == NULL ||
            failed == NULL || handle_type == NULL) {
            Py_CLEAR(s_text);
            Py_CLEAR(s_bytes);
            Py_CLEAR(s_array_buffer);
            Py_CLEAR(slow);
            Py_CLEAR(failed);
            Py_CLEAR(handle_type);
            return NULL;
        }
    }
    PyObject *m = PyModule_Create(&hot_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "SLOW", slow) != 0 ||
        PyModule_AddObjectRef(m, "FAILED", failed) != 0 ||
        PyModule_AddObjectRef(m, "Handle", (PyObject *)handle_type) != 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
