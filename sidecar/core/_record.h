/* What the two modules that make Records share (sidecar/core/_fetch.c from confluent-kafka's
 * messages, sidecar/kafka/_native.c from librdkafka's): the slots they set, the layout records.py
 * hands over through their setup(), and the writer of a record's wire fragment (sidecar.core.wire). */
#ifndef KAFKA_SIDECAR_RECORD_H
#define KAFKA_SIDECAR_RECORD_H

#include "_wire.h"
#include <string.h>

/* The Record slots both set, in records.FETCH_SLOTS's order (records.py passes the names). */
enum {
    S_ATTEMPT, S_STREAM, S_DEADLINE, S_AVOID, S_ENDED_AT, S_LANE, /* = records.UNDELIVERED */
    S_WIRE, S_NULLS, S_NULL_HEADERS, S_TOPIC, S_PARTITION, S_OFFSET, S_KEY, S_HEADER_COUNT,
    S_TIMESTAMP_MS, S_TIMESTAMP_TYPE, S_SIZE, N_SLOTS
};
#define N_UNDELIVERED 6

typedef struct {
    int ready;
    PyTypeObject *record_type;
    Py_ssize_t offsets[N_SLOTS];
    PyObject *undelivered[N_UNDELIVERED];
    unsigned char tag_key, tag_value, tag_header_key, tag_header_value; /* one-byte entry keys */
    long null_key, null_value, null_header;                             /* wire.NULL_* */
    Py_ssize_t record_bytes;                                            /* records.RECORD_BYTES */
    PyObject *no_nulls;                                                 /* () */
} RecordLayout;

/* The layout from setup(record_type, slot_names, undelivered, record_bytes, (key, value, header key,
 * header value field numbers), (null_key, null_value, null_header)[, extra]): 0, or -1 with an error
 * set. With extra not NULL, one more object is expected last and stored there (borrowed). */
static inline int layout_setup(RecordLayout *L, PyObject *args, PyObject **extra) {
    PyObject *type, *names, *undelivered;
    Py_ssize_t record_bytes;
    long fk, fv, fhk, fhv, nk, nv, nh;
    const char *format = extra ? "O!O!O!n(llll)(lll)O" : "O!O!O!n(llll)(lll)";
    if (!PyArg_ParseTuple(args, format, &PyType_Type, &type, &PyTuple_Type, &names, &PyTuple_Type,
                          &undelivered, &record_bytes, &fk, &fv, &fhk, &fhv, &nk, &nv, &nh, extra))
        return -1;
    L->ready = 0; /* until everything below is in place */
    if (PyTuple_GET_SIZE(undelivered) != N_UNDELIVERED) {
        PyErr_Format(PyExc_ValueError, "expected %d undelivered values", N_UNDELIVERED);
        return -1;
    }
    if (one_byte_tag(fk, 2, &L->tag_key) || one_byte_tag(fv, 2, &L->tag_value) ||
        one_byte_tag(fhk, 2, &L->tag_header_key) || one_byte_tag(fhv, 2, &L->tag_header_value) ||
        slot_offsets(type, names, L->offsets, N_SLOTS))
        return -1;
    if (L->no_nulls == NULL && (L->no_nulls = PyTuple_New(0)) == NULL)
        return -1;
    Py_XSETREF(L->record_type, (PyTypeObject *)Py_NewRef(type));
    for (int i = 0; i < N_UNDELIVERED; i++)
        Py_XSETREF(L->undelivered[i], Py_NewRef(PyTuple_GET_ITEM(undelivered, i)));
    L->record_bytes = record_bytes;
    L->null_key = nk;
    L->null_value = nv;
    L->null_header = nh;
    L->ready = 1;
    return 0;
}

/* Write a record's slot, as the member descriptor would; steals value. */
static inline void layout_set(const RecordLayout *L, PyObject *record, int slot, PyObject *value) {
    PyObject **at = (PyObject **)((char *)record + L->offsets[slot]);
    PyObject *old = *at;
    *at = value;
    Py_XDECREF(old);
}

/* One entry of a wire fragment: its one-byte key, the length, the bytes. */
static inline char *put_entry(char *at, unsigned char tag, const char *data, Py_ssize_t n) {
    *at++ = (char)tag;
    at = put_varint(at, (uint64_t)n);
    if (n)
        memcpy(at, data, (size_t)n);
    return at + n;
}

static inline Py_ssize_t entry_size(Py_ssize_t n) { return 1 + varint_size((uint64_t)n) + n; }

#endif
