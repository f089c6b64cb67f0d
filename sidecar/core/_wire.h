/* What the compiled hot path's modules share (sidecar/core/_fetch.c and _bulk.c, sidecar/api/_batch.c and
 * sidecar/kafka/_native.c): the offsets of Record's __slots__, and protobuf's wire form (one-byte
 * entry keys, varints). What the two that make records share besides is in _record.h. */
#ifndef KAFKA_SIDECAR_WIRE_H
#define KAFKA_SIDECAR_WIRE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>

/* The byte offsets of type's __slots__ members named in names (a tuple of n str), into offsets: the
 * modules read and write a record's slots there directly, as the member descriptors would. */
static inline int slot_offsets(PyObject *type, PyObject *names, Py_ssize_t *offsets, Py_ssize_t n) {
    if (PyTuple_GET_SIZE(names) != n) {
        PyErr_Format(PyExc_ValueError, "expected %zd slot names", n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *descr = PyObject_GetAttr(type, PyTuple_GET_ITEM(names, i));
        if (descr == NULL)
            return -1;
        int ok = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX &&
                 PyType_IsSubtype((PyTypeObject *)type, PyDescr_TYPE(descr)); /* type's own */
        if (ok)
            offsets[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%R is not a __slots__ member of %R", PyTuple_GET_ITEM(names, i),
                         type);
            return -1;
        }
    }
    return 0;
}

/* The entry key of field (1-15) with wire_type (0: varint, 2: length-delimited), in one byte. */
static inline int one_byte_tag(long field, int wire_type, unsigned char *out) {
    if (field < 1 || field > 15) {
        PyErr_Format(PyExc_ValueError, "field %ld does not fit a one-byte entry key", field);
        return -1;
    }
    *out = (unsigned char)((field << 3) | wire_type);
    return 0;
}

/* Negative numbers go in as protobuf writes int32 and int64: sign-extended to ten bytes. */
static inline Py_ssize_t varint_size(uint64_t v) {
    Py_ssize_t n = 1;
    for (; v > 0x7F; v >>= 7)
        n++;
    return n;
}

static inline char *put_varint(char *at, uint64_t v) {
    for (; v > 0x7F; v >>= 7)
        *at++ = (char)((v & 0x7F) | 0x80);
    *at++ = (char)v;
    return at;
}

#endif
