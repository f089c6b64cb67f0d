/* sidecar.core._fetch: records.from_fetch, compiled.
 *
 * The poll thread turns every fetched message into a Record, under the GIL the event loop needs
 * too. In Python, that loop and the record's wire fragment (sidecar.core.wire) held the GIL for
 * about 40% of the daemon's time at 100 B records: the sidecar is bound by the GIL, so that time is
 * its throughput. This does the same work without the interpreter: one method call per message
 * field, the fragment written into one bytes object in two passes (measure, then copy), and the
 * record's slots written through their member descriptors, as object.__new__ and slot assignment
 * would.
 *
 * It knows nothing of librdkafka or gRPC: messages are read by the methods of records.Fetched, and
 * what it needs of Record and the wire form (slot names, field numbers, null flags) is handed over
 * by records.py through setup(), so the two implementations cannot drift apart; tests/test_wire.py
 * runs both on the same messages, of every shape, and compares every slot. A message whose key,
 * value or headers are not of the types confluent-kafka gives (bytes, a list of (str, bytes) pairs,
 * None) is encoded by wire.encode itself.
 */
#include "_record.h"

#define MAX_NULL_HEADERS 64 /* more null header values than this in one record: wire.encode */

static RecordLayout S;
static PyObject *encode_fn; /* wire.encode */
#define set_slot(record, slot, value) layout_set(&S, record, slot, value)

static PyObject *N_ERROR, *N_TIMESTAMP, *N_KEY, *N_VALUE, *N_HEADERS, *N_TOPIC, *N_PARTITION, *N_OFFSET;

static PyObject *call(PyObject *message, PyObject *name) {
    return PyObject_VectorcallMethod(name, &message, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* setup(record_type, slot_names, undelivered, record_bytes, (key, value, header key, header value
 *       field numbers), (null_key, null_value, null_header), encode) */
static PyObject *setup(PyObject *self, PyObject *args) {
    PyObject *encode;
    if (layout_setup(&S, args, &encode) < 0)
        return NULL;
    Py_XSETREF(encode_fn, Py_NewRef(encode));
    Py_RETURN_NONE;
}

/* The record's wire fragment, its NULL_* flags, its null header positions and its header count, as
 * wire.encode gives them, into the four out-parameters (new references); 0 on success, 1 when the
 * message has a shape this path leaves to wire.encode (no error set), -1 on an error. */
static int encode(PyObject *key, PyObject *value, PyObject *headers, PyObject **wire, long *nulls,
                  PyObject **null_headers, Py_ssize_t *header_count) {
    const char *k = "", *v = "";
    Py_ssize_t nk = 0, nv = 0, nh = 0, size;
    *nulls = 0;
    if (key == Py_None)
        *nulls |= S.null_key;
    else if (PyBytes_CheckExact(key)) {
        k = PyBytes_AS_STRING(key);
        nk = PyBytes_GET_SIZE(key);
    } else
        return 1;
    if (value == Py_None)
        *nulls |= S.null_value;
    else if (PyBytes_CheckExact(value)) {
        v = PyBytes_AS_STRING(value);
        nv = PyBytes_GET_SIZE(value);
    } else
        return 1;
    if (headers != Py_None) {
        if (!PyList_CheckExact(headers))
            return 1;
        nh = PyList_GET_SIZE(headers);
    }
    size = entry_size(nk) + entry_size(nv);
    Py_ssize_t null_at[MAX_NULL_HEADERS], n_null = 0;
    for (Py_ssize_t i = 0; i < nh; i++) { /* pass 1: check the shapes, measure */
        PyObject *pair = PyList_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyUnicode_CheckExact(PyTuple_GET_ITEM(pair, 0)))
            return 1;
        PyObject *data = PyTuple_GET_ITEM(pair, 1);
        Py_ssize_t name_len;
        if (PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(pair, 0), &name_len) == NULL)
            return -1; /* not encodable: str.encode() would raise the same */
        size += entry_size(name_len);
        if (data == Py_None) {
            if (n_null == MAX_NULL_HEADERS)
                return 1;
            null_at[n_null++] = i;
            size += entry_size(0);
        } else if (PyBytes_CheckExact(data))
            size += entry_size(PyBytes_GET_SIZE(data));
        else
            return 1;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL)
        return -1;
    char *at = PyBytes_AS_STRING(out);
    at = put_entry(at, S.tag_key, k, nk);
    at = put_entry(at, S.tag_value, v, nv);
    for (Py_ssize_t i = 0; i < nh; i++) { /* pass 2: copy */
        PyObject *pair = PyList_GET_ITEM(headers, i), *data = PyTuple_GET_ITEM(pair, 1);
        Py_ssize_t name_len;
        const char *name = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(pair, 0), &name_len); /* cached */
        at = put_entry(at, S.tag_header_key, name, name_len);
        if (data == Py_None)
            at = put_entry(at, S.tag_header_value, "", 0);
        else
            at = put_entry(at, S.tag_header_value, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
    }
    if (n_null) {
        PyObject *positions = PyTuple_New(n_null);
        if (positions == NULL) {
            Py_DECREF(out);
            return -1;
        }
        for (Py_ssize_t i = 0; i < n_null; i++) {
            PyObject *index = PyLong_FromSsize_t(null_at[i]);
            if (index == NULL) {
                Py_DECREF(positions);
                Py_DECREF(out);
                return -1;
            }
            PyTuple_SET_ITEM(positions, i, index);
        }
        *null_headers = positions;
        *nulls |= S.null_header;
    } else {
        Py_INCREF(S.no_nulls);
        *null_headers = S.no_nulls;
    }
    *wire = out;
    *header_count = nh;
    return 0;
}

/* The same four by wire.encode itself, for the shapes encode() above leaves. */
static int encode_in_python(PyObject *key, PyObject *value, PyObject *headers, PyObject **wire,
                            long *nulls, PyObject **null_headers, Py_ssize_t *header_count) {
    PyObject *encoded = PyObject_CallFunctionObjArgs(encode_fn, key, value, headers, NULL);
    if (encoded == NULL)
        return -1;
    if (!PyTuple_Check(encoded) || PyTuple_GET_SIZE(encoded) != 3 ||
        !PyBytes_Check(PyTuple_GET_ITEM(encoded, 0))) {
        Py_DECREF(encoded);
        PyErr_SetString(PyExc_TypeError, "wire.encode did not return (bytes, nulls, null_headers)");
        return -1;
    }
    *nulls = PyLong_AsLong(PyTuple_GET_ITEM(encoded, 1));
    if (*nulls == -1 && PyErr_Occurred()) {
        Py_DECREF(encoded);
        return -1;
    }
    *header_count = 0;
    int any = PyObject_IsTrue(headers); /* as len(headers) if headers else 0 */
    if (any < 0 || (any && (*header_count = PyObject_Length(headers)) < 0)) {
        Py_DECREF(encoded);
        return -1;
    }
    *wire = Py_NewRef(PyTuple_GET_ITEM(encoded, 0));
    *null_headers = Py_NewRef(PyTuple_GET_ITEM(encoded, 2));
    Py_DECREF(encoded);
    return 0;
}

/* One message into a new record (a new reference), or NULL with an error set. */
static PyObject *make_record(PyObject *message, PyObject *timestamp, Py_ssize_t *size_out) {
    PyObject *record = NULL, *key = NULL, *value = NULL, *headers = NULL, *wire = NULL;
    PyObject *null_headers = NULL, *topic, *partition, *offset, *number;
    long nulls = 0;
    Py_ssize_t header_count = 0;
    if (!PyTuple_Check(timestamp) || PyTuple_GET_SIZE(timestamp) != 2) {
        PyErr_SetString(PyExc_TypeError, "a message's timestamp() is not a (type, timestamp) pair");
        return NULL;
    }
    if (!(key = call(message, N_KEY)) || !(headers = call(message, N_HEADERS)) ||
        !(value = call(message, N_VALUE)))
        goto fail;
    int done = encode(key, value, headers, &wire, &nulls, &null_headers, &header_count);
    if (done == 1)
        done = encode_in_python(key, value, headers, &wire, &nulls, &null_headers, &header_count);
    if (done < 0)
        goto fail;
    Py_ssize_t key_len = 0;
    if (key != Py_None && (key_len = PyObject_Length(key)) < 0)
        goto fail;
    Py_ssize_t size = S.record_bytes + PyBytes_GET_SIZE(wire) + key_len;

    PyObject *ts_type = PyTuple_GET_ITEM(timestamp, 0), *ts = PyTuple_GET_ITEM(timestamp, 1);
    int typed = PyObject_IsTrue(ts_type); /* TIMESTAMP_NOT_AVAILABLE (0): the contract says 0 */
    if (typed < 0 || !(record = S.record_type->tp_alloc(S.record_type, 0)))
        goto fail;
    if (!(topic = call(message, N_TOPIC)))
        goto fail;
    set_slot(record, S_TOPIC, topic);
    if (!(partition = call(message, N_PARTITION)))
        goto fail;
    set_slot(record, S_PARTITION, partition);
    if (!(offset = call(message, N_OFFSET)))
        goto fail;
    set_slot(record, S_OFFSET, offset);
    for (int i = 0; i < N_UNDELIVERED; i++)
        set_slot(record, i, Py_NewRef(S.undelivered[i]));
    set_slot(record, S_TIMESTAMP_MS, typed ? Py_NewRef(ts) : PyLong_FromLong(0));
    set_slot(record, S_TIMESTAMP_TYPE, Py_NewRef(ts_type));
    if (!(number = PyLong_FromSsize_t(size)))
        goto fail;
    set_slot(record, S_SIZE, number);
    if (!(number = PyLong_FromLong(nulls)))
        goto fail;
    set_slot(record, S_NULLS, number);
    if (!(number = PyLong_FromSsize_t(header_count)))
        goto fail;
    set_slot(record, S_HEADER_COUNT, number);
    set_slot(record, S_KEY, key); /* the references made above go to the record */
    set_slot(record, S_WIRE, wire);
    set_slot(record, S_NULL_HEADERS, null_headers);
    Py_DECREF(value);
    Py_DECREF(headers);
    *size_out = size;
    return record;

fail:
    Py_XDECREF(record);
    Py_XDECREF(key);
    Py_XDECREF(value);
    Py_XDECREF(headers);
    Py_XDECREF(wire);
    Py_XDECREF(null_headers);
    return NULL;
}

/* One message into records (or, if it is an error, to on_error); 0, or -1 with an error set. */
static int take(PyObject *message, PyObject *on_error, PyObject *records, Py_ssize_t *nbytes) {
    PyObject *error = call(message, N_ERROR);
    if (error == NULL)
        return -1;
    if (error != Py_None) {
        PyObject *ignored = PyObject_CallOneArg(on_error, error);
        Py_DECREF(error);
        Py_XDECREF(ignored);
        return ignored == NULL ? -1 : 0;
    }
    Py_DECREF(error);
    PyObject *timestamp = call(message, N_TIMESTAMP);
    if (timestamp == NULL)
        return -1;
    Py_ssize_t size = 0;
    PyObject *record = make_record(message, timestamp, &size);
    Py_DECREF(timestamp);
    if (record == NULL)
        return -1;
    int appended = PyList_Append(records, record);
    Py_DECREF(record);
    *nbytes += size;
    return appended;
}

/* from_fetch(messages, on_error) -> (records, nbytes): see records.from_fetch.
 *
 * The messages are taken one at a time from an iterator, each held by a reference of its own while
 * it is read, as the Python loop does: their methods and on_error are Python code, free to change
 * the list they came in. */
static PyObject *from_fetch(PyObject *self, PyObject *args) {
    PyObject *messages, *on_error, *message;
    if (!PyArg_ParseTuple(args, "OO", &messages, &on_error))
        return NULL;
    if (!S.ready) {
        PyErr_SetString(PyExc_RuntimeError, "sidecar.core._fetch.setup() was not called");
        return NULL;
    }
    PyObject *iterator = PyObject_GetIter(messages), *records = PyList_New(0);
    Py_ssize_t nbytes = 0;
    if (iterator == NULL || records == NULL)
        goto fail;
    while ((message = PyIter_Next(iterator)) != NULL) {
        int taken = take(message, on_error, records, &nbytes);
        Py_DECREF(message);
        if (taken < 0)
            goto fail;
    }
    if (PyErr_Occurred())
        goto fail;
    Py_DECREF(iterator);
    return Py_BuildValue("(Nn)", records, nbytes);

fail:
    Py_XDECREF(iterator);
    Py_XDECREF(records);
    return NULL;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "Hand over Record's slots and the wire form (records.py does)."},
    {"from_fetch", from_fetch, METH_VARARGS, "records.from_fetch, compiled."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "sidecar.core._fetch", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fetch(void) {
    if (!(N_ERROR = PyUnicode_InternFromString("error")) ||
        !(N_TIMESTAMP = PyUnicode_InternFromString("timestamp")) ||
        !(N_KEY = PyUnicode_InternFromString("key")) || !(N_VALUE = PyUnicode_InternFromString("value")) ||
        !(N_HEADERS = PyUnicode_InternFromString("headers")) ||
        !(N_TOPIC = PyUnicode_InternFromString("topic")) ||
        !(N_PARTITION = PyUnicode_InternFromString("partition")) ||
        !(N_OFFSET = PyUnicode_InternFromString("offset")))
        return NULL;
    return PyModule_Create(&module);
}
