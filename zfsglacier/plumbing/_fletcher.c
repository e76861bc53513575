/* ZFS's fletcher-4 over a buffer of 32-bit words, continuing a state: the C fast path of
 * zfsglacier/fletcher.py (which says why it exists and keeps the numpy form as the fallback).
 *
 *     a += w; b += a; c += b; d += c        (each modulo 2^64, words in the stream's byte order)
 *
 * A trailing partial word is ignored, as ZFS ignores it.  The GIL is released while summing. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *update(PyObject *self, PyObject *args) {
    unsigned long long a, b, c, d;
    Py_buffer view;
    int big;
    if (!PyArg_ParseTuple(args, "(KKKK)y*p", &a, &b, &c, &d, &view, &big))
        return NULL;
    const unsigned char *p = view.buf;
    Py_ssize_t n = view.len / 4;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    int swap = !big;
#else
    int swap = big;
#endif
    uint64_t A = a, B = b, C = c, D = d;
    Py_BEGIN_ALLOW_THREADS
    if (swap) {
        for (Py_ssize_t i = 0; i < n; i++) {
            uint32_t w;
            memcpy(&w, p + 4 * i, 4);
            w = __builtin_bswap32(w);
            A += w; B += A; C += B; D += C;
        }
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {
            uint32_t w;
            memcpy(&w, p + 4 * i, 4);
            A += w; B += A; C += B; D += C;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return Py_BuildValue("(KKKK)", (unsigned long long)A, (unsigned long long)B, (unsigned long long)C,
                         (unsigned long long)D);
}

static PyMethodDef methods[] = {
    {"update", update, METH_VARARGS, "update((a, b, c, d), buffer, big_endian) -> (a, b, c, d)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fletcher", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fletcher(void) { return PyModule_Create(&module); }
