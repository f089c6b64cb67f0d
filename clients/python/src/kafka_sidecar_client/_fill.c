/* kafka_sidecar_client._fill: the loop of _records.records_from_batch that makes a partition's
 * records, compiled.
 *
 * Making the app's Record objects, ten slots each, was the largest part of the client's own work per
 * record (a profile at 100 B: two fifths of the app's busy time in records_from_batch, the collector's
 * passes it set off included). This makes the same objects, slot for slot, without the interpreter:
 * it allocates each record and stores the columns' items in its slots at the offsets of Record's
 * member descriptors, as the descriptors would. The Python loop stays as the fallback for an install
 * without a C compiler; tests/test_client_unit.py compares the two on batches of every shape.
 *
 * The records are left out of the cyclic collector (untracked, as CPython does with tuples of plain
 * values): a record refers to its topic, numbers, bytes and its partition's header columns, none of
 * which refers back, so it is freed by reference counting alone. Tracked, the thousands made every
 * second set off the collector's young passes and were walked by each of them until acked: a sixth
 * of the app's busy time at 100 B. (An app that made a record part of a cycle, say by putting it in
 * its own headers list, would leak that cycle, not break anything.)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* Record's slots set here, in this order (_records.py passes their names the same way). */
enum { S_TOPIC, S_PARTITION, S_OFFSET, S_KEY, S_VALUE, S_HEADERS, S_HEADER_INDEX, S_TIMESTAMP_MS,
       S_DELIVERY_ATTEMPT, S_EPOCH, N_SLOTS };

static PyTypeObject *record_type;
static Py_ssize_t offsets[N_SLOTS];

/* setup(Record, slot names in the order of the enum above) */
static PyObject *setup(PyObject *self, PyObject *args) {
    PyObject *type, *names;
    if (!PyArg_ParseTuple(args, "O!O!", &PyType_Type, &type, &PyTuple_Type, &names))
        return NULL;
    if (PyTuple_GET_SIZE(names) != N_SLOTS) {
        PyErr_Format(PyExc_ValueError, "expected %d slot names", N_SLOTS);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < N_SLOTS; i++) {
        PyObject *descr = PyObject_GetAttr(type, PyTuple_GET_ITEM(names, i));
        if (descr == NULL)
            return NULL;
        int ok = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX &&
                 PyType_IsSubtype((PyTypeObject *)type, PyDescr_TYPE(descr));
        if (ok)
            offsets[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
        if (!ok)
            return PyErr_Format(PyExc_TypeError, "%R is not a __slots__ member of %R",
                                PyTuple_GET_ITEM(names, i), type);
    }
    Py_XSETREF(record_type, (PyTypeObject *)Py_NewRef(type));
    Py_RETURN_NONE;
}

static void put(PyObject *record, int slot, PyObject *value) { /* into a fresh record: no old value */
    *(PyObject **)((char *)record + offsets[slot]) = Py_NewRef(value);
}

/* add(out, topic, partition, offsets, keys, values, timestamps_ms, attempts, headers, epoch):
 * append to the list out one Record per offset, the i-th made of the i-th item of each column. */
static PyObject *add(PyObject *self, PyObject *args) {
    PyObject *out, *topic, *partition, *headers, *epoch, *given[5];
    if (!PyArg_ParseTuple(args, "O!OOOOOOOOO", &PyList_Type, &out, &topic, &partition, &given[0],
                          &given[1], &given[2], &given[3], &given[4], &headers, &epoch))
        return NULL;
    if (record_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "kafka_sidecar_client._fill.setup() was not called");
        return NULL;
    }
    /* Lists (a protobuf column becomes one here: its items are made once, as iterating it would). */
    PyObject *columns[5] = {NULL};
    PyObject *result = NULL;
    for (int c = 0; c < 5; c++)
        if ((columns[c] = PySequence_Fast(given[c], "a column is not a sequence")) == NULL)
            goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(columns[0]);
    for (int c = 1; c < 5; c++)
        if (PySequence_Fast_GET_SIZE(columns[c]) != n) {
            PyErr_SetString(PyExc_ValueError, "the batch's columns have different lengths");
            goto done;
        }
    static const int COLUMN_SLOT[5] = {S_OFFSET, S_KEY, S_VALUE, S_TIMESTAMP_MS, S_DELIVERY_ATTEMPT};
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *index = PyLong_FromSsize_t(i);
        PyObject *record = index ? record_type->tp_alloc(record_type, 0) : NULL;
        if (record == NULL) {
            Py_XDECREF(index);
            goto done;
        }
        put(record, S_TOPIC, topic);
        put(record, S_PARTITION, partition);
        for (int c = 0; c < 5; c++)
            put(record, COLUMN_SLOT[c], PySequence_Fast_GET_ITEM(columns[c], i));
        put(record, S_HEADERS, headers);
        *(PyObject **)((char *)record + offsets[S_HEADER_INDEX]) = index; /* the new reference */
        put(record, S_EPOCH, epoch);
        PyObject_GC_UnTrack(record); /* see the top of the file */
        int failed = PyList_Append(out, record);
        Py_DECREF(record);
        if (failed)
            goto done;
    }
    result = Py_NewRef(Py_None);
done:
    for (int c = 0; c < 5; c++)
        Py_XDECREF(columns[c]);
    return result;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "Hand over Record and the names of the slots add() sets."},
    {"add", add, METH_VARARGS, "Append a partition's records, made from its columns, to a list."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "kafka_sidecar_client._fill", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fill(void) { return PyModule_Create(&module); }
