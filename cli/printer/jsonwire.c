/* Protobuf wire bytes straight to the JSON text json_format writes (preserving_proto_field_name, then
 * json.dumps with compact separators), for `observe -o json/jsonpb`.
 *
 * Why C: in Python a flow costs ~10 µs to write even with remembered texts; this walks the bytes once and
 * writes as it goes, ~1 µs. Nothing here knows a .proto: protojson.py builds the tables from the message
 * descriptors (field number -> key, kind, nested type, enum names, packed, presence) and hands them over once.
 *
 * The rule that keeps the output right: anything a parser would read otherwise than field by field, or that
 * json_format writes by rules of its own, makes write() return None and the Python path prints the message
 * (never different, only slower). That is: a singular field twice or fields out of number order, two members of
 * a oneof, a default value written out, a packed field unpacked (or the reverse), a number not in its shortest
 * varint, unknown fields, groups, floats, maps, Any and the other special types, invalid UTF-8, a time out of
 * range, nesting deeper than DEPTH. Bytes cut short give None too: the parser then raises DecodeError.
 *
 * The parts: jsonwire_reader.c reads the wire, jsonwire_writer.c and jsonwire_timestamp.c write a message's
 * JSON through jsonwire_text.c's values into jsonwire_buffer.h's buffer, jsonwire_tables.c loads the tables
 * (jsonwire.h), and this file is the module: the Schema type and its write() and block().
 */
#include "jsonwire.h"

#include "jsonwire_tables.h"
#include "jsonwire_writer.h"

#define BLOCK (1 << 16) /* a block of lines ends past this many bytes: kept in cache, and below mmap's size */

static void schema_dealloc(Schema *schema) {
    schema_clear(schema);
    Py_TYPE(schema)->tp_free((PyObject *)schema);
}

static int schema_init(Schema *schema, PyObject *args, PyObject *kwargs) {
    PyObject *types;
    static char *keywords[] = {"types", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O", keywords, &types))
        return -1;
    return schema_load(schema, types);
}

static PyObject *text_of_bytes(Schema *schema, Py_ssize_t index, PyObject *data) {
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    schema->out.length = 0;
    const unsigned char *p = view.buf;
    int result = write_message(schema, &schema->types[index], p, p + view.len, 0);
    PyBuffer_Release(&view);
    if (result == ERROR)
        return NULL;
    if (result == UNUSUAL)
        Py_RETURN_NONE;
    PyObject *text = PyUnicode_New(schema->out.length, 127);
    if (text)
        memcpy(PyUnicode_DATA(text), schema->out.data, schema->out.length);
    return text;
}

static int check_index(Schema *schema, Py_ssize_t index) {
    if (index < 0 || index >= schema->type_count) {
        PyErr_SetString(PyExc_IndexError, "jsonwire: no such type");
        return -1;
    }
    return 0;
}

static PyObject *schema_write(Schema *schema, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "write(type index, data)");
        return NULL;
    }
    Py_ssize_t index = PyLong_AsSsize_t(args[0]);
    if ((index == -1 && PyErr_Occurred()) || check_index(schema, index) < 0)
        return NULL;
    return text_of_bytes(schema, index, args[1]);
}

/* block(type index, batch, start, lead) -> (text, stop): the texts of batch[start:stop] as one str, a line each
 * joined by newlines, stopping at the first message that does not begin with the bytes `lead` or that is
 * unusual, or once the text is BLOCK bytes long (stop < len(batch): the caller goes on from there). One call
 * and one str for a run of flows: no str per line to make, join and free again (each a copy of ~1 kB). */
static PyObject *schema_block(Schema *schema, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyList_Check(args[1]) || !PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "block(type index, batch: list, start, lead: bytes)");
        return NULL;
    }
    Py_ssize_t index = PyLong_AsSsize_t(args[0]);
    if ((index == -1 && PyErr_Occurred()) || check_index(schema, index) < 0)
        return NULL;
    Py_ssize_t at = PyLong_AsSsize_t(args[2]);
    if (at == -1 && PyErr_Occurred())
        return NULL;
    const char *lead = PyBytes_AS_STRING(args[3]);
    Py_ssize_t lead_length = PyBytes_GET_SIZE(args[3]);
    PyObject *batch = args[1];
    Buffer *out = &schema->out;
    out->length = 0;
    for (; at >= 0 && at < PyList_GET_SIZE(batch) && out->length < BLOCK; at++) {
        PyObject *data = PyList_GET_ITEM(batch, at);
        if (!PyBytes_Check(data) || PyBytes_GET_SIZE(data) < lead_length ||
            memcmp(PyBytes_AS_STRING(data), lead, lead_length) != 0)
            break;
        Py_ssize_t mark = out->length;
        if (mark && put_char(out, '\n') < 0)
            return NULL;
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(data);
        int result = write_message(schema, &schema->types[index], p, p + PyBytes_GET_SIZE(data), 0);
        if (result == ERROR)
            return NULL;
        if (result == UNUSUAL) {
            out->length = mark;
            break;
        }
    }
    PyObject *text = PyUnicode_New(out->length, 127);
    if (text)
        memcpy(PyUnicode_DATA(text), out->data, out->length);
    if (out->capacity > 1 << 22) { /* a big batch's room is not kept */
        PyMem_Free(out->data);
        out->data = NULL;
        out->length = out->capacity = 0;
    }
    return text ? Py_BuildValue("(Nn)", text, at) : NULL;
}

static PyMethodDef schema_methods[] = {
    {"write", (PyCFunction)(void (*)(void))schema_write, METH_FASTCALL,
     "write(type index, data) -> str | None: the message's JSON text, None when the Python path must write it"},
    {"block", (PyCFunction)(void (*)(void))schema_block, METH_FASTCALL,
     "block(type index, batch, start, lead) -> (text, stop): batch[start:stop]'s texts, one line each"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SchemaType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "flowscope.cli.printer.jsonwire.Schema",
    .tp_basicsize = sizeof(Schema),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Schema(types): message types as tables, and their wire bytes written as JSON",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)schema_init,
    .tp_dealloc = (destructor)schema_dealloc,
    .tp_methods = schema_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "jsonwire",
    .m_doc = "Protobuf wire bytes to json_format's JSON text, driven by tables of the descriptors",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit_jsonwire(void) {
    if (PyType_Ready(&SchemaType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&SchemaType);
    if (PyModule_AddObject(m, "Schema", (PyObject *)&SchemaType) < 0) {
        Py_DECREF(&SchemaType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
