/* sidecar.api._batch: responses.records_response, compiled.
 *
 * Every record the app gets goes through records_response, on the event loop, under the GIL the poll
 * thread needs too: grouping the batch by partition, its number columns (offsets, timestamps, types,
 * attempts, header counts, null indexes) and the join of the records' wire fragments were an eighth
 * of the daemon's GIL time at 100 B. This reads each record's slots once, then writes the same bytes
 * in two passes over what it read (measure, then write) into one bytes object: the same message,
 * field for field and byte for byte, as the Python version (tests/test_wire.py compares them on
 * batches of every shape), which stays as the fallback.
 *
 * The layout is the Python version's: a ConsumeResponse holding one RecordBatch, its ack timeout,
 * then one PartitionRecords per partition in the order the partitions first appear, each with its
 * number columns as protobuf serializes them (by field number, packed, empty ones and a zero
 * partition left out) followed by its records' wire fragments (sidecar.core.wire). Field numbers,
 * Record's slots and the null flags come from responses.py through setup(), read from the generated
 * code, so nothing here can drift from the contract unnoticed.
 */
#include "_wire.h" /* sidecar/core/_wire.h */
#include <string.h>

/* Record slots read here, in this order (responses.py passes their names the same way). */
enum { S_TOPIC, S_PARTITION, S_OFFSET, S_TIMESTAMP_MS, S_TIMESTAMP_TYPE, S_ATTEMPT, S_HEADER_COUNT,
       S_NULLS, S_NULL_HEADERS, S_WIRE, N_SLOTS };
static const char *SLOT_NAMES[N_SLOTS] = {"topic", "partition", "offset", "timestamp_ms",
                                          "timestamp_type", "attempt", "header_count", "nulls",
                                          "null_headers", "wire"};
/* The range of each number slot's field: int32, int64 or uint32 (as protobuf checks them). */
enum { INT32, INT64, UINT32, ANY };
static const int SLOT_RANGE[N_SLOTS] = {ANY, INT32, INT64, INT64, INT32, UINT32, UINT32, ANY, ANY, ANY};

/* Field numbers, in this order. */
enum { F_RECORDS, F_ACK_TIMEOUT, F_PARTITIONS, F_TOPIC, F_PARTITION, F_OFFSETS, F_NULL_KEYS,
       F_NULL_VALUES, F_TIMESTAMPS, F_TYPES, F_ATTEMPTS, F_HEADER_COUNTS, F_NULL_HEADER_VALUES,
       N_FIELDS };

/* The number columns, in field order; the null ones are indexes, the others a slot per record. */
enum { C_OFFSETS, C_NULL_KEYS, C_NULL_VALUES, C_TIMESTAMPS, C_TYPES, C_ATTEMPTS, C_HEADER_COUNTS,
       C_NULL_HEADER_VALUES, N_COLUMNS };
static const int COLUMN_FIELD[N_COLUMNS] = {F_OFFSETS, F_NULL_KEYS, F_NULL_VALUES, F_TIMESTAMPS,
                                            F_TYPES, F_ATTEMPTS, F_HEADER_COUNTS,
                                            F_NULL_HEADER_VALUES};

/* A record's numbers and objects, read from its slots and checked once (a pass over the batch),
 * which the columns are then measured and written from: reading the slots column by column, twice,
 * read every number ten times and was most of this module's time. */
enum { R_OFFSET, R_TIMESTAMP_MS, R_TIMESTAMP_TYPE, R_ATTEMPT, R_HEADER_COUNT, R_NULLS, N_ROW };
static const int ROW_SLOT[N_ROW] = {S_OFFSET, S_TIMESTAMP_MS, S_TIMESTAMP_TYPE, S_ATTEMPT,
                                    S_HEADER_COUNT, S_NULLS};
typedef struct {
    long long v[N_ROW];
    PyObject *null_headers; /* borrowed, like the fragment: the batch's list holds the records */
    PyObject *wire;
} Row;
static const int COLUMN_ROW[N_COLUMNS] = {R_OFFSET, -1, -1, R_TIMESTAMP_MS, R_TIMESTAMP_TYPE,
                                          R_ATTEMPT, R_HEADER_COUNT, -1};

static struct {
    int ready;
    PyTypeObject *record_type;
    Py_ssize_t offsets[N_SLOTS];
    unsigned char tags[N_FIELDS]; /* one-byte entry keys: length-delimited, or varint for scalars */
    long null_key, null_value;
} S;

/* setup(record_type, slot_names, field_numbers, (null_key, null_value)) */
static PyObject *setup(PyObject *self, PyObject *args) {
    PyObject *type, *names, *fields;
    long null_key, null_value;
    if (!PyArg_ParseTuple(args, "O!O!O!(ll)", &PyType_Type, &type, &PyTuple_Type, &names, &PyTuple_Type,
                          &fields, &null_key, &null_value))
        return NULL;
    S.ready = 0; /* until everything below is in place */
    if (PyTuple_GET_SIZE(fields) != N_FIELDS) {
        PyErr_Format(PyExc_ValueError, "expected %d field numbers", N_FIELDS);
        return NULL;
    }
    for (int i = 0; i < N_FIELDS; i++) {
        long field = PyLong_AsLong(PyTuple_GET_ITEM(fields, i));
        int varint = i == F_ACK_TIMEOUT || i == F_PARTITION;
        if ((field == -1 && PyErr_Occurred()) || one_byte_tag(field, varint ? 0 : 2, &S.tags[i]))
            return NULL;
    }
    if (slot_offsets(type, names, S.offsets, N_SLOTS))
        return NULL;
    Py_INCREF(type);
    Py_XSETREF(S.record_type, (PyTypeObject *)type);
    S.null_key = null_key;
    S.null_value = null_value;
    S.ready = 1;
    Py_RETURN_NONE;
}

static PyObject *slot(PyObject *record, int which) {
    PyObject *value = *(PyObject **)((char *)record + S.offsets[which]);
    if (value == NULL)
        PyErr_Format(PyExc_AttributeError, "a record in the batch has no %s", SLOT_NAMES[which]);
    return value; /* borrowed */
}

/* An int, in the range of its field. Only an int (not anything with __index__): no Python code may
 * run while the batch is measured and written, or it could change what was measured. */
static int checked_int(PyObject *value, int range, const char *what, long long *out) {
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "a record's %s is not an int: %R", what, value);
        return -1;
    }
    *out = PyLong_AsLongLong(value);
    if (*out == -1 && PyErr_Occurred())
        return -1;
    if ((range == INT32 && (*out < INT32_MIN || *out > INT32_MAX)) ||
        (range == UINT32 && (*out < 0 || *out > (long long)UINT32_MAX))) {
        PyErr_Format(PyExc_ValueError, "a record's %s is out of range: %lld", what, *out);
        return -1;
    }
    return 0;
}

static int int_slot(PyObject *record, int which, long long *out) {
    PyObject *value = slot(record, which);
    return value == NULL ? -1 : checked_int(value, SLOT_RANGE[which], SLOT_NAMES[which], out);
}

typedef struct {
    PyObject *topic;      /* borrowed from its first record */
    long long partition;
    Py_ssize_t first;     /* into the order array */
    Py_ssize_t count;
    Py_ssize_t payload[N_COLUMNS]; /* packed payload sizes; 0: the column is left out */
    Py_ssize_t length;             /* the PartitionRecords message's */
} Group;

/* One column's packed payload, of the partition's records: written at *at, or (at NULL) its size
 * added to *size. The null columns are indexes: of the records with a null key or value, and of the
 * null header values among all the partition's header values. */
static int column_values(Group *g, Row *rows, int column, char **at, Py_ssize_t *size) {
    Py_ssize_t base = 0;
    for (Py_ssize_t i = 0; i < g->count; i++) {
        Row *r = &rows[g->first + i];
        if (COLUMN_ROW[column] >= 0) {
            uint64_t v = (uint64_t)r->v[COLUMN_ROW[column]];
            if (at)
                *at = put_varint(*at, v);
            else
                *size += varint_size(v);
            continue;
        }
        long long nulls = r->v[R_NULLS];
        if (column == C_NULL_KEYS || column == C_NULL_VALUES) {
            if (nulls & (column == C_NULL_KEYS ? S.null_key : S.null_value)) {
                if (at)
                    *at = put_varint(*at, (uint64_t)i);
                else
                    *size += varint_size((uint64_t)i);
            }
            continue;
        }
        /* C_NULL_HEADER_VALUES: the record's null header positions, counted across the batch */
        PyObject *positions = r->null_headers;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(positions); k++) {
            long long p;
            if (checked_int(PyTuple_GET_ITEM(positions, k), UINT32, "null header position", &p))
                return -1;
            if (at)
                *at = put_varint(*at, (uint64_t)(base + p));
            else
                *size += varint_size((uint64_t)(base + p));
        }
        base += r->v[R_HEADER_COUNT];
    }
    return 0;
}

/* The pass that reads every record's slots, in the batch's partition order, into rows. */
static int read_rows(PyObject **records, Py_ssize_t n, Row *rows) {
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *record = records[i];
        Row *r = &rows[i];
        for (int k = 0; k < N_ROW; k++)
            if (int_slot(record, ROW_SLOT[k], &r->v[k]))
                return -1;
        r->wire = slot(record, S_WIRE);
        r->null_headers = r->wire ? slot(record, S_NULL_HEADERS) : NULL;
        if (r->null_headers == NULL)
            return -1;
        if (!PyBytes_Check(r->wire)) {
            PyErr_SetString(PyExc_TypeError, "a record's wire fragment is not bytes");
            return -1;
        }
        if (!PyTuple_Check(r->null_headers)) {
            PyErr_SetString(PyExc_TypeError, "a record's null_headers is not a tuple");
            return -1;
        }
    }
    return 0;
}

/* Pass 1 for one partition: its columns' sizes and the message's length. */
static int measure(Group *g, Row *rows) {
    Py_ssize_t topic_len = 0, length = 0, has_nulls = 0, any_headers = 0;
    if (PyUnicode_AsUTF8AndSize(g->topic, &topic_len) == NULL)
        return -1;
    if (topic_len)
        length += 1 + varint_size((uint64_t)topic_len) + topic_len;
    if (g->partition)
        length += 1 + varint_size((uint64_t)g->partition);
    for (Py_ssize_t i = 0; i < g->count; i++) {
        Row *r = &rows[g->first + i];
        length += PyBytes_GET_SIZE(r->wire);
        has_nulls += r->v[R_NULLS] != 0;
        any_headers += r->v[R_HEADER_COUNT] != 0;
    }
    for (int c = 0; c < N_COLUMNS; c++) {
        g->payload[c] = 0;
        int nulls = c == C_NULL_KEYS || c == C_NULL_VALUES || c == C_NULL_HEADER_VALUES;
        /* As in Python: the null columns only if a record has a null, the header counts only if a
         * record has headers; then, as protobuf does, an empty column is left out. */
        if ((nulls && !has_nulls) || (c == C_HEADER_COUNTS && !any_headers))
            continue;
        if (column_values(g, rows, c, NULL, &g->payload[c]))
            return -1;
        if (g->payload[c])
            length += 1 + varint_size((uint64_t)g->payload[c]) + g->payload[c];
    }
    g->length = length;
    return 0;
}

/* Pass 2 for one partition: the framed PartitionRecords. */
static int write_group(Group *g, Row *rows, char **at) {
    Py_ssize_t topic_len;
    const char *topic = PyUnicode_AsUTF8AndSize(g->topic, &topic_len); /* cached by measure */
    *(*at)++ = (char)S.tags[F_PARTITIONS];
    *at = put_varint(*at, (uint64_t)g->length);
    if (topic_len) {
        *(*at)++ = (char)S.tags[F_TOPIC];
        *at = put_varint(*at, (uint64_t)topic_len);
        memcpy(*at, topic, (size_t)topic_len);
        *at += topic_len;
    }
    if (g->partition) {
        *(*at)++ = (char)S.tags[F_PARTITION];
        *at = put_varint(*at, (uint64_t)g->partition);
    }
    for (int c = 0; c < N_COLUMNS; c++) {
        if (!g->payload[c])
            continue;
        *(*at)++ = (char)S.tags[COLUMN_FIELD[c]];
        *at = put_varint(*at, (uint64_t)g->payload[c]);
        if (column_values(g, rows, c, at, NULL))
            return -1;
    }
    for (Py_ssize_t i = 0; i < g->count; i++) {
        PyObject *fragment = rows[g->first + i].wire;
        memcpy(*at, PyBytes_AS_STRING(fragment), (size_t)PyBytes_GET_SIZE(fragment));
        *at += PyBytes_GET_SIZE(fragment);
    }
    return 0;
}

/* The records grouped by partition, in the order partitions first appear: groups[] and, in order[],
 * each group's records in batch order. Returns the number of groups, or -1. */
static Py_ssize_t group(PyObject *seq, Py_ssize_t n, Group *groups, PyObject **order) {
    Py_ssize_t ngroups = 0, *of = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(Py_ssize_t));
    if (of == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t last = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PySequence_Fast_GET_ITEM(seq, i), *topic;
        long long partition;
        if (!PyObject_TypeCheck(r, S.record_type)) {
            PyErr_SetString(PyExc_TypeError, "a batch holds records only");
            goto fail;
        }
        if ((topic = slot(r, S_TOPIC)) == NULL || int_slot(r, S_PARTITION, &partition))
            goto fail;
        if (!PyUnicode_Check(topic)) {
            PyErr_SetString(PyExc_TypeError, "a record's topic is not a str");
            goto fail;
        }
        Py_ssize_t g = -1;
        if (last >= 0 && groups[last].partition == partition && groups[last].topic == topic)
            g = last; /* the usual case: a run of one partition (its records share the topic str) */
        for (Py_ssize_t k = 0; g < 0 && k < ngroups; k++) {
            if (groups[k].partition != partition)
                continue;
            int same = PyUnicode_Compare(groups[k].topic, topic);
            if (same == -1 && PyErr_Occurred())
                goto fail;
            if (same == 0)
                g = k;
        }
        if (g < 0) {
            g = ngroups++;
            memset(&groups[g], 0, sizeof(Group));
            groups[g].topic = topic;
            groups[g].partition = partition;
        }
        groups[g].count++;
        of[i] = last = g;
    }
    for (Py_ssize_t g = 0, start = 0; g < ngroups; g++) {
        groups[g].first = start;
        start += groups[g].count;
        groups[g].count = 0; /* counted again as the records are placed */
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Group *g = &groups[of[i]];
        order[g->first + g->count++] = PySequence_Fast_GET_ITEM(seq, i);
    }
    PyMem_Free(of);
    return ngroups;
fail:
    PyMem_Free(of);
    return -1;
}

/* records_response(records, ack_timeout_ms) -> bytes: see responses.records_response. */
static PyObject *records_response(PyObject *self, PyObject *args) {
    PyObject *records, *out = NULL;
    long long ack_timeout_ms;
    if (!PyArg_ParseTuple(args, "OL", &records, &ack_timeout_ms))
        return NULL;
    if (!S.ready) {
        PyErr_SetString(PyExc_RuntimeError, "sidecar.api._batch.setup() was not called");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(records, "records_response takes a list of records");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), size = 0;
    Group *groups = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Group));
    PyObject **order = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(PyObject *));
    Row *rows = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(Row));
    if (groups == NULL || order == NULL || rows == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t ngroups = group(seq, n, groups, order);
    if (ngroups < 0 || read_rows(order, n, rows))
        goto done;
    if (ack_timeout_ms)
        size += 1 + varint_size((uint64_t)ack_timeout_ms);
    for (Py_ssize_t g = 0; g < ngroups; g++) {
        if (measure(&groups[g], rows))
            goto done;
        size += 1 + varint_size((uint64_t)groups[g].length) + groups[g].length;
    }
    out = PyBytes_FromStringAndSize(NULL, 1 + varint_size((uint64_t)size) + size);
    if (out == NULL)
        goto done;
    char *at = PyBytes_AS_STRING(out);
    *at++ = (char)S.tags[F_RECORDS];
    at = put_varint(at, (uint64_t)size);
    if (ack_timeout_ms) {
        *at++ = (char)S.tags[F_ACK_TIMEOUT];
        at = put_varint(at, (uint64_t)ack_timeout_ms);
    }
    for (Py_ssize_t g = 0; g < ngroups; g++) {
        if (write_group(&groups[g], rows, &at)) {
            Py_CLEAR(out);
            goto done;
        }
    }
    if (at != PyBytes_AS_STRING(out) + PyBytes_GET_SIZE(out)) { /* the two passes disagree: a bug */
        Py_CLEAR(out);
        PyErr_SetString(PyExc_SystemError, "records_response wrote another size than it measured");
    }
done:
    PyMem_Free(groups);
    PyMem_Free(order);
    PyMem_Free(rows);
    Py_DECREF(seq);
    return out;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "Hand over Record's slots and the field numbers (responses.py does)."},
    {"records_response", records_response, METH_VARARGS, "responses.records_response, compiled."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "sidecar.api._batch", NULL, -1, methods};

PyMODINIT_FUNC PyInit__batch(void) { return PyModule_Create(&module); }
