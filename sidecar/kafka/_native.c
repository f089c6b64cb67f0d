/* sidecar.kafka._native: fetched records straight from librdkafka, without confluent-kafka's Message.
 *
 * The poll thread and the event loop share one GIL, and at 100 B records the poll thread's share
 * was most of the sidecar's: confluent-kafka makes a Message per record (its key, value, topic,
 * headers and timestamp as Python objects), and from_fetch read them again to make the Record. A
 * bare consumer loop doing only that ran at 700k records/s; reading librdkafka's messages directly
 * and making one bytes object each, at 1.6M/s. So the member routes each assigned partition's queue
 * to a queue of its own (rd_kafka_queue_get_partition + rd_kafka_queue_forward, in the assign
 * callback, before the partition is fetched) and takes the messages from there, with the GIL
 * released while it waits, making each Record and its wire fragment from librdkafka's own buffers.
 * Rebalances, commits, errors and statistics stay on the consumer's queue, which confluent-kafka's
 * consume() keeps serving.
 *
 * It uses the librdkafka that confluent-kafka loaded (found by sidecar/kafka/native.py, its
 * symbols looked up with dlsym) and the rd_kafka_t handle a confluent_kafka.Consumer holds right
 * after its object header. The records are the same as records.from_fetch makes (same slots, same
 * wire fragment): tests/test_native_fetch.py reads one topic both ways and compares them.
 */
#include "_record.h"
#include <dlfcn.h>

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_queue_s rd_kafka_queue_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;
typedef struct rd_kafka_headers_s rd_kafka_headers_t;
typedef struct { /* librdkafka's public rd_kafka_message_t */
    int err;
    rd_kafka_topic_t *rkt;
    int32_t partition;
    void *payload;
    size_t len;
    void *key;
    size_t key_len;
    int64_t offset;
    void *_private;
} rd_kafka_message_t;

#define RD_KAFKA_CONSUMER 1
#define MAX_TAKE 10000

static struct {
    int (*type)(const rd_kafka_t *);
    const char *(*name)(const rd_kafka_t *);
    rd_kafka_queue_t *(*queue_new)(rd_kafka_t *);
    rd_kafka_queue_t *(*queue_get_partition)(rd_kafka_t *, const char *, int32_t);
    void (*queue_forward)(rd_kafka_queue_t *, rd_kafka_queue_t *);
    void (*queue_destroy)(rd_kafka_queue_t *);
    ssize_t (*consume_batch_queue)(rd_kafka_queue_t *, int, rd_kafka_message_t **, size_t);
    void (*message_destroy)(rd_kafka_message_t *);
    const char *(*message_errstr)(const rd_kafka_message_t *);
    int64_t (*message_timestamp)(const rd_kafka_message_t *, int *);
    int (*message_headers)(const rd_kafka_message_t *, rd_kafka_headers_t **);
    int (*header_get_all)(const rd_kafka_headers_t *, size_t, const char **, const void **, size_t *);
    const char *(*topic_name)(const rd_kafka_topic_t *);
} K;
static int symbols_ready;

static RecordLayout S;
#define set_slot(record, slot, value) layout_set(&S, record, slot, value)

/* setup(record_type, slot_names, undelivered, record_bytes, (4 field numbers), (3 null flags)) */
static PyObject *setup(PyObject *self, PyObject *args) {
    if (layout_setup(&S, args, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* load(path): the symbols of the librdkafka already loaded from path (never a second copy). */
static PyObject *load(PyObject *self, PyObject *args) {
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path))
        return NULL;
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL) {
        PyErr_Format(PyExc_OSError, "librdkafka is not loaded from %s: %s", path, dlerror());
        return NULL;
    }
    struct { void **at; const char *name; } wanted[] = {
        {(void **)&K.type, "rd_kafka_type"},
        {(void **)&K.name, "rd_kafka_name"},
        {(void **)&K.queue_new, "rd_kafka_queue_new"},
        {(void **)&K.queue_get_partition, "rd_kafka_queue_get_partition"},
        {(void **)&K.queue_forward, "rd_kafka_queue_forward"},
        {(void **)&K.queue_destroy, "rd_kafka_queue_destroy"},
        {(void **)&K.consume_batch_queue, "rd_kafka_consume_batch_queue"},
        {(void **)&K.message_destroy, "rd_kafka_message_destroy"},
        {(void **)&K.message_errstr, "rd_kafka_message_errstr"},
        {(void **)&K.message_timestamp, "rd_kafka_message_timestamp"},
        {(void **)&K.message_headers, "rd_kafka_message_headers"},
        {(void **)&K.header_get_all, "rd_kafka_header_get_all"},
        {(void **)&K.topic_name, "rd_kafka_topic_name"},
    };
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
        if ((*wanted[i].at = dlsym(lib, wanted[i].name)) == NULL) {
            symbols_ready = 0;
            PyErr_Format(PyExc_OSError, "librdkafka at %s has no %s", path, wanted[i].name);
            return NULL;
        }
    }
    symbols_ready = 1; /* the handle stays open: librdkafka is never unloaded while we run */
    Py_RETURN_NONE;
}

typedef struct {
    PyObject_HEAD
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    PyObject *consumer; /* holds the rd_kafka_t alive as long as this */
    PyObject *topic;    /* the last topic's name, and the librdkafka topic it came from */
    const rd_kafka_topic_t *rkt;
} Fetcher;

/* Fetcher(consumer, client_id): route and take a confluent_kafka.Consumer's records. */
static int fetcher_init(Fetcher *self, PyObject *args, PyObject *kwargs) {
    PyObject *consumer;
    const char *client_id;
    if (!PyArg_ParseTuple(args, "Os", &consumer, &client_id))
        return -1;
    if (!symbols_ready || !S.ready) {
        PyErr_SetString(PyExc_RuntimeError, "sidecar.kafka._native: load() and setup() first");
        return -1;
    }
    if (self->queue != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Fetcher is made once");
        return -1;
    }
    /* confluent-kafka's Handle starts with the rd_kafka_t, right after the object header; check it
     * is a consumer with the name librdkafka gives it ("<client.id>#consumer-<n>"). */
    rd_kafka_t *rk = *(rd_kafka_t **)((char *)consumer + sizeof(PyObject));
    size_t n = strlen(client_id);
    const char *name = rk == NULL ? NULL : K.name(rk);
    if (rk == NULL || K.type(rk) != RD_KAFKA_CONSUMER || name == NULL || strncmp(name, client_id, n) != 0 ||
        strncmp(name + n, "#consumer-", 10) != 0) {
        PyErr_SetString(PyExc_TypeError, "not a librdkafka consumer of this client.id");
        return -1;
    }
    self->rk = rk;
    self->queue = K.queue_new(rk);
    if (self->queue == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->consumer = Py_NewRef(consumer);
    return 0;
}

static void fetcher_close_queue(Fetcher *self) {
    if (self->queue != NULL) {
        K.queue_destroy(self->queue);
        self->queue = NULL;
    }
}

static void fetcher_dealloc(Fetcher *self) {
    fetcher_close_queue(self);
    Py_CLEAR(self->consumer);
    Py_CLEAR(self->topic);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int open_queue(Fetcher *self) {
    if (self->queue == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the fetcher is closed");
        return -1;
    }
    return 0;
}

/* route(topic, partition) -> bool: the partition's records come to this fetcher's queue. */
static PyObject *fetcher_route(Fetcher *self, PyObject *args) {
    const char *topic;
    int partition;
    if (!PyArg_ParseTuple(args, "si", &topic, &partition) || open_queue(self))
        return NULL;
    rd_kafka_queue_t *q = K.queue_get_partition(self->rk, topic, partition);
    if (q == NULL)
        Py_RETURN_FALSE;
    K.queue_forward(q, self->queue);
    K.queue_destroy(q);
    Py_RETURN_TRUE;
}

/* close(): let go of the queue (before the consumer closes). */
static PyObject *fetcher_close(Fetcher *self, PyObject *unused) {
    fetcher_close_queue(self);
    Py_RETURN_NONE;
}

/* The topic's name as a str, one object while messages come from the same topic (the name is
 * compared, not only the librdkafka topic's address, which could be reused). */
static PyObject *topic_of(Fetcher *self, const rd_kafka_topic_t *rkt) {
    const char *name = K.topic_name(rkt);
    if (self->topic == NULL || rkt != self->rkt || strcmp(PyUnicode_AsUTF8(self->topic), name) != 0) {
        PyObject *topic = PyUnicode_FromString(name);
        if (topic == NULL)
            return NULL;
        Py_XSETREF(self->topic, topic);
        self->rkt = rkt;
    }
    return Py_NewRef(self->topic);
}

/* A header name must be UTF-8: it goes out as a protobuf string. */
static int valid_name(const char *name, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] >= 0x80) {
            PyObject *decoded = PyUnicode_DecodeUTF8(name, (Py_ssize_t)n, "strict");
            if (decoded == NULL)
                return -1;
            Py_DECREF(decoded);
            return 0;
        }
    return 0;
}

/* One message into a new Record (as records.from_fetch makes it), adding its size to *nbytes. */
static PyObject *make_record(Fetcher *self, rd_kafka_message_t *m, Py_ssize_t *nbytes) {
    rd_kafka_headers_t *headers = NULL;
    const char *name;
    const void *value;
    size_t value_size;
    Py_ssize_t nh = 0, n_null = 0;
    long nulls = 0;
    Py_ssize_t size = entry_size(m->key ? m->key_len : 0) + entry_size(m->payload ? m->len : 0);
    if (m->key == NULL)
        nulls |= S.null_key;
    if (m->payload == NULL)
        nulls |= S.null_value;
    if (K.message_headers(m, &headers) != 0)
        headers = NULL;
    /* Pass 1 over the headers (librdkafka indexes them): check the names, count, measure. */
    for (; headers && K.header_get_all(headers, (size_t)nh, &name, &value, &value_size) == 0; nh++) {
        size_t name_len = strlen(name);
        if (valid_name(name, name_len) < 0)
            return NULL;
        n_null += value == NULL;
        size += entry_size((Py_ssize_t)name_len) + entry_size(value ? (Py_ssize_t)value_size : 0);
    }
    PyObject *wire = PyBytes_FromStringAndSize(NULL, size), *null_headers = NULL, *record = NULL;
    if (wire == NULL)
        return NULL;
    if (n_null) {
        nulls |= S.null_header;
        if ((null_headers = PyTuple_New(n_null)) == NULL)
            goto fail;
    } else
        null_headers = Py_NewRef(S.no_nulls);
    char *at = PyBytes_AS_STRING(wire);
    at = put_entry(at, S.tag_key, (const char *)m->key, m->key ? m->key_len : 0);
    at = put_entry(at, S.tag_value, (const char *)m->payload, m->payload ? m->len : 0);
    /* Pass 2: copy, and note where the null header values are. */
    for (Py_ssize_t i = 0, j = 0; i < nh; i++) {
        if (K.header_get_all(headers, (size_t)i, &name, &value, &value_size) != 0)
            break;
        at = put_entry(at, S.tag_header_key, name, (Py_ssize_t)strlen(name));
        at = put_entry(at, S.tag_header_value, (const char *)value, value ? (Py_ssize_t)value_size : 0);
        if (value == NULL) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL)
                goto fail;
            PyTuple_SET_ITEM(null_headers, j++, index);
        }
    }
    PyObject *key = m->key ? PyBytes_FromStringAndSize((const char *)m->key, (Py_ssize_t)m->key_len)
                           : Py_NewRef(Py_None);
    if (key == NULL)
        goto fail;
    Py_ssize_t record_size = S.record_bytes + size + (m->key ? (Py_ssize_t)m->key_len : 0);
    int ts_type = 0;
    int64_t ts = K.message_timestamp(m, &ts_type);
    PyObject *topic = topic_of(self, m->rkt);
    if (topic == NULL || (record = S.record_type->tp_alloc(S.record_type, 0)) == NULL) {
        Py_XDECREF(topic);
        Py_DECREF(key);
        goto fail;
    }
    set_slot(record, S_TOPIC, topic);
    set_slot(record, S_KEY, key);
    set_slot(record, S_WIRE, wire);
    set_slot(record, S_NULL_HEADERS, null_headers);
    wire = null_headers = NULL; /* the record has them */
    for (int i = 0; i < N_UNDELIVERED; i++)
        set_slot(record, i, Py_NewRef(S.undelivered[i]));
    PyObject *numbers[] = {
        PyLong_FromLong(m->partition), PyLong_FromLongLong(m->offset), PyLong_FromLong(nulls),
        PyLong_FromSsize_t(nh), PyLong_FromLongLong(ts_type ? ts : 0), PyLong_FromLong(ts_type),
        PyLong_FromSsize_t(record_size),
    };
    int slots[] = {S_PARTITION, S_OFFSET, S_NULLS, S_HEADER_COUNT, S_TIMESTAMP_MS, S_TIMESTAMP_TYPE, S_SIZE};
    int failed = 0;
    for (int i = 0; i < 7; i++) {
        if (numbers[i] == NULL)
            failed = 1;
        else
            set_slot(record, slots[i], numbers[i]);
    }
    if (failed)
        goto fail;
    *nbytes += record_size;
    return record;

fail:
    Py_XDECREF(record);
    Py_XDECREF(wire);
    Py_XDECREF(null_headers);
    return NULL;
}

/* take(limit, timeout_ms) -> (records, nbytes, errors): what the queue has, up to limit, waiting up
 * to timeout_ms (without the GIL) for the first. A single consume_batch call would wait for all of
 * limit (or the timeout), holding back records at a modest rate: so one message is waited for and
 * the rest taken as they are. errors: (code, topic, partition, offset, reason) for each message that
 * is an error (the member turns them into KafkaErrors). */
static PyObject *fetcher_take(Fetcher *self, PyObject *args) {
    int limit, timeout_ms;
    if (!PyArg_ParseTuple(args, "ii", &limit, &timeout_ms) || open_queue(self))
        return NULL;
    if (limit < 1 || limit > MAX_TAKE) {
        PyErr_Format(PyExc_ValueError, "take() between 1 and %d records", MAX_TAKE);
        return NULL;
    }
    rd_kafka_message_t **messages = PyMem_Malloc(sizeof(rd_kafka_message_t *) * (size_t)limit);
    if (messages == NULL)
        return PyErr_NoMemory();
    ssize_t n;
    rd_kafka_queue_t *queue = self->queue;
    Py_BEGIN_ALLOW_THREADS
    n = K.consume_batch_queue(queue, timeout_ms, messages, 1);
    if (n == 1 && limit > 1) {
        ssize_t more = K.consume_batch_queue(queue, 0, messages + 1, (size_t)limit - 1);
        if (more > 0)
            n += more;
    }
    Py_END_ALLOW_THREADS
    PyObject *records = PyList_New(0), *errors = PyList_New(0), *out = NULL;
    Py_ssize_t nbytes = 0, i = 0;
    if (records == NULL || errors == NULL || n < 0) {
        if (n < 0 && !PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "rd_kafka_consume_batch_queue failed");
        goto done;
    }
    for (; i < n; i++) {
        rd_kafka_message_t *m = messages[i];
        PyObject *item;
        if (m->err) {
            const char *topic = m->rkt ? K.topic_name(m->rkt) : "";
            item = Py_BuildValue("(isiLs)", m->err, topic, (int)m->partition, (long long)m->offset,
                                 K.message_errstr(m));
            if (item == NULL || PyList_Append(errors, item) < 0) {
                Py_XDECREF(item);
                goto done;
            }
        } else {
            if ((item = make_record(self, m, &nbytes)) == NULL || PyList_Append(records, item) < 0) {
                Py_XDECREF(item);
                goto done;
            }
        }
        Py_DECREF(item);
        K.message_destroy(m);
    }
    out = Py_BuildValue("(OnO)", records, nbytes, errors);

done:
    for (; i < n; i++) /* what an error left unread: let go of it (the records are lost either way) */
        K.message_destroy(messages[i]);
    PyMem_Free(messages);
    Py_XDECREF(records);
    Py_XDECREF(errors);
    return out;
}

static PyMethodDef fetcher_methods[] = {
    {"route", (PyCFunction)fetcher_route, METH_VARARGS, "Route a partition's records to this fetcher."},
    {"take", (PyCFunction)fetcher_take, METH_VARARGS, "(records, nbytes, errors), waiting up to a timeout."},
    {"close", (PyCFunction)fetcher_close, METH_NOARGS, "Let go of the queue (before the consumer closes)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FetcherType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sidecar.kafka._native.Fetcher",
    .tp_basicsize = sizeof(Fetcher),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A consumer's records, taken from librdkafka directly.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)fetcher_init,
    .tp_dealloc = (destructor)fetcher_dealloc,
    .tp_methods = fetcher_methods,
};

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "Hand over Record's slots and the wire form (native.py does)."},
    {"load", load, METH_VARARGS, "Look up the symbols of the librdkafka loaded from a path."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "sidecar.kafka._native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&FetcherType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Fetcher", (PyObject *)&FetcherType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
