/* The descriptor tables: protojson.py's lists of types and fields, read once into the Schema's arrays. */
#include "jsonwire_tables.h"

#include <stdlib.h>

void schema_clear(Schema *schema) {
    for (Py_ssize_t i = 0; i < schema->type_count; i++) {
        Type *type = &schema->types[i];
        for (Py_ssize_t j = 0; j < type->field_count; j++)
            PyMem_Free(type->fields[j].names);
        PyMem_Free(type->fields);
    }
    PyMem_Free(schema->types);
    schema->types = NULL;
    schema->type_count = 0;
    PyMem_Free(schema->out.data);
    schema->out.data = NULL;
    Py_CLEAR(schema->keep);
}

/* A bytes object's text, kept alive by schema->keep. */
static int text_of(Schema *schema, PyObject *item, char **text, Py_ssize_t *length) {
    if (!PyBytes_Check(item)) {
        PyErr_SetString(PyExc_TypeError, "jsonwire: texts are bytes");
        return -1;
    }
    if (PyList_Append(schema->keep, item) < 0)
        return -1;
    *text = PyBytes_AS_STRING(item);
    *length = PyBytes_GET_SIZE(item);
    return 0;
}

static int compare_fields(const void *a, const void *b) {
    uint32_t x = ((const Field *)a)->number, y = ((const Field *)b)->number;
    return (x > y) - (x < y);
}

static int compare_names(const void *a, const void *b) {
    int32_t x = ((const EnumName *)a)->number, y = ((const EnumName *)b)->number;
    return (x > y) - (x < y);
}

/* field: (number, key, kind, repeated, packed, presence, oneof, type index, enum names [(number, text)]) */
static int load_field(Schema *schema, PyObject *item, Field *field) {
    PyObject *key, *names;
    unsigned int number;
    if (!PyArg_ParseTuple(item, "IOiiiiiiO", &number, &key, &field->kind, &field->repeated, &field->packed,
                          &field->presence, &field->oneof, &field->type, &names))
        return -1;
    field->number = number;
    if (text_of(schema, key, &field->key, &field->key_length) < 0)
        return -1;
    if (field->kind < 0 || field->kind >= F_KINDS || field->oneof >= MAX_ONEOFS ||
        (field->kind == F_MESSAGE && (field->type < 0 || field->type >= schema->type_count)) || number == 0) {
        PyErr_SetString(PyExc_ValueError, "jsonwire: a field out of range");
        return -1;
    }
    PyObject *sequence = PySequence_Fast(names, "jsonwire: enum names are a list");
    if (!sequence)
        return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    field->names = PyMem_Calloc(count ? count : 1, sizeof(EnumName));
    field->name_count = count;
    for (Py_ssize_t i = 0; field->names && i < count; i++) {
        PyObject *text;
        int value;
        char *name;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(sequence, i), "iO", &value, &text) ||
            text_of(schema, text, &name, &field->names[i].length) < 0) {
            Py_DECREF(sequence);
            return -1;
        }
        field->names[i].number = value;
        field->names[i].name = name;
    }
    Py_DECREF(sequence);
    if (!field->names) {
        PyErr_NoMemory();
        return -1;
    }
    qsort(field->names, count, sizeof(EnumName), compare_names);
    return 0;
}

/* type: (kind, [field, ...], text of the empty value (wrappers) */
static int load_type(Schema *schema, PyObject *item, Type *type) {
    PyObject *fields, *empty;
    if (!PyArg_ParseTuple(item, "iOO", &type->kind, &fields, &empty))
        return -1;
    if (type->kind < 0 || type->kind >= T_KINDS) {
        PyErr_SetString(PyExc_ValueError, "jsonwire: a type kind out of range");
        return -1;
    }
    if (text_of(schema, empty, &type->empty, &type->empty_length) < 0)
        return -1;
    PyObject *sequence = PySequence_Fast(fields, "jsonwire: fields are a list");
    if (!sequence)
        return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    type->fields = PyMem_Calloc(count ? count : 1, sizeof(Field));
    if (!type->fields) {
        Py_DECREF(sequence);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (load_field(schema, PySequence_Fast_GET_ITEM(sequence, i), &type->fields[i]) < 0) {
            type->field_count = i + 1; /* freed by schema_clear */
            Py_DECREF(sequence);
            return -1;
        }
    }
    type->field_count = count;
    Py_DECREF(sequence);
    qsort(type->fields, count, sizeof(Field), compare_fields);
    for (Py_ssize_t i = 0; i < count; i++)
        if (type->fields[i].number < DENSE)
            type->dense[type->fields[i].number] = &type->fields[i];
    return 0;
}

int schema_load(Schema *schema, PyObject *types) {
    schema_clear(schema);
    PyObject *sequence = PySequence_Fast(types, "jsonwire: types are a list");
    if (!sequence)
        return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    schema->keep = PyList_New(0);
    schema->types = PyMem_Calloc(count ? count : 1, sizeof(Type));
    if (!schema->keep || !schema->types) {
        Py_DECREF(sequence);
        PyErr_NoMemory();
        return -1;
    }
    schema->type_count = count;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (load_type(schema, PySequence_Fast_GET_ITEM(sequence, i), &schema->types[i]) < 0) {
            Py_DECREF(sequence);
            return -1;
        }
    }
    Py_DECREF(sequence);
    return 0;
}
