/* sidecar.core._bulk: the loops of sidecar.core.bulk, compiled.
 *
 * The dispatcher runs on the event loop, which shares the GIL with the poll thread; at 100 B
 * records the loop was the daemon's limit, and a fifth of its GIL time went to a few loops that
 * touch every record: splitting a fetch into partition runs and checking their offsets, moving
 * records into flight, finding an ack's records and taking them out again. These do the same
 * without the interpreter, reading and writing Record's slots at the offsets bulk.py hands over
 * through setup(), as the member descriptors would. Each function's Python twin is in bulk.py, and
 * tests/test_bulk.py runs both on the same input and compares the results.
 */
#include "_wire.h"

enum { S_TOPIC, S_PARTITION, S_OFFSET, S_STREAM, S_DEADLINE, S_LANE, S_SIZE, N_SLOTS };

static PyTypeObject *record_type;
static Py_ssize_t offsets[N_SLOTS];
static PyObject *N_POPLEFT;

/* A borrowed reference to a record's slot; NULL with AttributeError set when it is unset. */
static PyObject *get(PyObject *record, int slot) {
    PyObject *value = *(PyObject **)((char *)record + offsets[slot]);
    if (value == NULL)
        PyErr_Format(PyExc_AttributeError, "a record's slot %d is not set", slot);
    return value;
}

static void set(PyObject *record, int slot, PyObject *value) { /* value: borrowed */
    PyObject **at = (PyObject **)((char *)record + offsets[slot]);
    PyObject *old = *at;
    *at = Py_NewRef(value);
    Py_XDECREF(old);
}

static int is_record(PyObject *item) {
    if (record_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "sidecar.core._bulk.setup() was not called");
        return 0;
    }
    if (!PyObject_TypeCheck(item, record_type)) {
        PyErr_Format(PyExc_TypeError, "expected a Record, got %R", Py_TYPE(item));
        return 0;
    }
    return 1;
}

/* setup(Record, slot names in the order of the enum above) */
static PyObject *bulk_setup(PyObject *self, PyObject *args) {
    PyObject *type, *names;
    if (!PyArg_ParseTuple(args, "O!O!", &PyType_Type, &type, &PyTuple_Type, &names))
        return NULL;
    Py_CLEAR(record_type);
    if (slot_offsets(type, names, offsets, N_SLOTS))
        return NULL;
    record_type = (PyTypeObject *)Py_NewRef(type);
    Py_RETURN_NONE;
}

/* An int slot's value, as a C long long; -1 with an error set on a non-int. */
static int as_int(PyObject *record, int slot, long long *out) {
    PyObject *value = get(record, slot);
    if (value == NULL)
        return -1;
    *out = PyLong_AsLongLong(value);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* runs(records: list) -> [(run, contiguous)] */
static PyObject *bulk_runs(PyObject *self, PyObject *records) {
    if (!PyList_Check(records)) {
        PyErr_SetString(PyExc_TypeError, "runs() takes a list of records");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(records), start = 0;
    PyObject *topic = NULL, *partition = NULL;
    long long previous = 0;
    int contiguous = 1;
    for (Py_ssize_t i = 0; i <= n; i++) {
        PyObject *record = NULL, *t = NULL, *p = NULL;
        int same = 0;
        if (i < n) {
            record = PyList_GET_ITEM(records, i);
            if (!is_record(record) || !(t = get(record, S_TOPIC)) || !(p = get(record, S_PARTITION)))
                goto fail;
            if (i > start) {
                int eq_p = PyObject_RichCompareBool(p, partition, Py_EQ);
                int eq_t = eq_p > 0 ? PyObject_RichCompareBool(t, topic, Py_EQ) : 0;
                if (eq_p < 0 || eq_t < 0)
                    goto fail;
                same = eq_p && eq_t;
            }
        }
        if (i > start && !same) { /* the run [start, i) ends here */
            PyObject *run = PyList_GetSlice(records, start, i);
            PyObject *pair = run ? Py_BuildValue("(NO)", run, contiguous ? Py_True : Py_False) : NULL;
            if (pair == NULL || PyList_Append(out, pair) < 0) {
                Py_XDECREF(pair);
                goto fail;
            }
            Py_DECREF(pair);
            start = i;
        }
        if (i == n)
            break;
        long long offset;
        if (as_int(record, S_OFFSET, &offset) < 0)
            goto fail;
        if (i == start) {
            contiguous = 1;
            topic = t;
            partition = p;
        } else if (offset != previous + 1)
            contiguous = 0;
        previous = offset;
    }
    return out;

fail:
    Py_DECREF(out);
    return NULL;
}

/* set_lane(records: list, lane) */
static PyObject *bulk_set_lane(PyObject *self, PyObject *args) {
    PyObject *records, *lane;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &records, &lane))
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(records); i++) {
        PyObject *record = PyList_GET_ITEM(records, i);
        if (!is_record(record))
            return NULL;
        set(record, S_LANE, lane);
    }
    Py_RETURN_NONE;
}

/* move(queue: deque, count, batch: list, in_flight: dict, sid, deadline) */
static PyObject *bulk_move(PyObject *self, PyObject *args) {
    PyObject *queue, *batch, *in_flight, *sid, *deadline;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "OnO!O!OO", &queue, &count, &PyList_Type, &batch, &PyDict_Type,
                          &in_flight, &sid, &deadline))
        return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *record = PyObject_VectorcallMethod(N_POPLEFT, &queue, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                                     NULL);
        if (record == NULL)
            return NULL;
        PyObject *offset;
        if (!is_record(record) || !(offset = get(record, S_OFFSET))) {
            Py_DECREF(record);
            return NULL;
        }
        set(record, S_STREAM, sid);
        set(record, S_DEADLINE, deadline);
        int failed = PyDict_SetItem(in_flight, offset, record) < 0 || PyList_Append(batch, record) < 0;
        Py_DECREF(record);
        if (failed)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* in_flight_span(in_flight: dict, first, last, sid) -> [records] */
static PyObject *bulk_in_flight_span(PyObject *self, PyObject *args) {
    PyObject *in_flight, *sid;
    long long first, last;
    if (!PyArg_ParseTuple(args, "O!LLO", &PyDict_Type, &in_flight, &first, &last, &sid))
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (long long o = first; o <= last; o++) {
        PyObject *key = PyLong_FromLongLong(o);
        if (key == NULL)
            goto fail;
        PyObject *record = PyDict_GetItemWithError(in_flight, key); /* borrowed */
        Py_DECREF(key);
        if (record == NULL) {
            if (PyErr_Occurred())
                goto fail;
            continue;
        }
        PyObject *stream;
        if (!is_record(record) || !(stream = get(record, S_STREAM)))
            goto fail;
        int mine = PyObject_RichCompareBool(stream, sid, Py_EQ);
        if (mine < 0 || (mine && PyList_Append(out, record) < 0))
            goto fail;
    }
    return out;

fail:
    Py_DECREF(out);
    return NULL;
}

/* unlink(in_flight: dict, records: list, no_stream): del in_flight[r.offset]; r.stream = no_stream */
static PyObject *bulk_unlink(PyObject *self, PyObject *args) {
    PyObject *in_flight, *records, *no_stream;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyDict_Type, &in_flight, &PyList_Type, &records, &no_stream))
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(records); i++) {
        PyObject *record = PyList_GET_ITEM(records, i), *offset;
        if (!is_record(record) || !(offset = get(record, S_OFFSET)) || PyDict_DelItem(in_flight, offset) < 0)
            return NULL;
        set(record, S_STREAM, no_stream);
    }
    Py_RETURN_NONE;
}

/* offsets_and_size(records: list) -> ([offsets], total size) */
static PyObject *bulk_offsets_and_size(PyObject *self, PyObject *records) {
    if (!PyList_Check(records)) {
        PyErr_SetString(PyExc_TypeError, "offsets_and_size() takes a list of records");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(records);
    PyObject *out = PyList_New(n);
    long long total = 0;
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *record = PyList_GET_ITEM(records, i), *offset;
        long long size;
        if (!is_record(record) || !(offset = get(record, S_OFFSET)) || as_int(record, S_SIZE, &size) < 0) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, Py_NewRef(offset));
        total += size;
    }
    return Py_BuildValue("(NL)", out, total);
}

/* queue_size(queue: deque, count) -> the sizes of its first count records, added up */
static PyObject *bulk_queue_size(PyObject *self, PyObject *args) {
    PyObject *queue, *item;
    Py_ssize_t count;
    long long total = 0;
    if (!PyArg_ParseTuple(args, "On", &queue, &count))
        return NULL;
    PyObject *iterator = PyObject_GetIter(queue);
    if (iterator == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < count && (item = PyIter_Next(iterator)) != NULL; i++) {
        long long size;
        int bad = !is_record(item) || as_int(item, S_SIZE, &size) < 0;
        Py_DECREF(item);
        if (bad) {
            Py_DECREF(iterator);
            return NULL;
        }
        total += size;
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromLongLong(total);
}

/* contiguous(offsets: list, not empty) -> exactly first, first + 1, ..., last */
static PyObject *bulk_contiguous(PyObject *self, PyObject *list) {
    if (!PyList_Check(list) || PyList_GET_SIZE(list) == 0) {
        PyErr_SetString(PyExc_TypeError, "contiguous() takes a list of offsets, not empty");
        return NULL;
    }
    long long previous = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (!PyLong_Check(item)) {
            PyErr_Format(PyExc_TypeError, "an offset is not an int: %R", item);
            return NULL;
        }
        long long offset = PyLong_AsLongLong(item);
        if (offset == -1 && PyErr_Occurred())
            return NULL;
        if (i > 0 && offset != previous + 1)
            Py_RETURN_FALSE;
        previous = offset;
    }
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"setup", bulk_setup, METH_VARARGS, "Hand over Record's slots (bulk.py does)."},
    {"runs", bulk_runs, METH_O, "bulk.runs, compiled."},
    {"set_lane", bulk_set_lane, METH_VARARGS, "bulk.set_lane, compiled."},
    {"move", bulk_move, METH_VARARGS, "bulk.move, compiled."},
    {"in_flight_span", bulk_in_flight_span, METH_VARARGS, "bulk.in_flight_span, compiled."},
    {"unlink", bulk_unlink, METH_VARARGS, "bulk.unlink, compiled."},
    {"offsets_and_size", bulk_offsets_and_size, METH_O, "bulk.offsets_and_size, compiled."},
    {"queue_size", bulk_queue_size, METH_VARARGS, "bulk.queue_size, compiled."},
    {"contiguous", bulk_contiguous, METH_O, "bulk.contiguous, compiled."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "sidecar.core._bulk", NULL, -1, methods};

PyMODINIT_FUNC PyInit__bulk(void) {
    if (!(N_POPLEFT = PyUnicode_InternFromString("popleft")))
        return NULL;
    return PyModule_Create(&module);
}
