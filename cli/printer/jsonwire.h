/* What every part of jsonwire shares: the tables of message types protojson.py hands over (field number ->
 * key, kind, nested type, enum names, packed, presence), the Schema object that holds them with its output
 * buffer, and the results of the readers and writers.
 */
#ifndef JSONWIRE_H
#define JSONWIRE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "jsonwire_buffer.h"

enum {
    F_INT32, F_INT64, F_UINT32, F_UINT64, F_SINT32, F_SINT64, F_FIXED32, F_FIXED64, F_SFIXED32, F_SFIXED64,
    F_BOOL, F_ENUM, F_STRING, F_BYTES, F_MESSAGE, F_UNSUPPORTED, F_KINDS
};
enum { T_PLAIN, T_TIMESTAMP, T_WRAPPER, T_UNSUPPORTED, T_KINDS };

#define DEPTH 64      /* deeper nesting goes to the Python path */
#define DENSE 256     /* field numbers below this are found by index, the others by binary search */
#define MAX_ONEOFS 64 /* oneofs seen are a bit mask */

typedef struct {
    int32_t number;
    const char *name;
    Py_ssize_t length;
} EnumName;

typedef struct {
    uint32_t number;
    int kind;
    int repeated, packed, presence;
    int oneof;                /* -1: in none */
    int type;                 /* F_MESSAGE: index of its type */
    char *key;                /* `"name":` */
    Py_ssize_t key_length;
    EnumName *names;          /* F_ENUM: sorted by number */
    Py_ssize_t name_count;
} Field;

typedef struct {
    int kind;
    Field *fields;            /* sorted by number */
    Py_ssize_t field_count;
    Field *dense[DENSE];
    char *empty;              /* T_WRAPPER: the text of the default value */
    Py_ssize_t empty_length;
} Type;

typedef struct {
    PyObject_HEAD
    Type *types;
    Py_ssize_t type_count;
    PyObject *keep;           /* the tables' strings live as long as the schema */
    Buffer out;
} Schema;

/* The results of the writers: done, or give up (None: the Python path decides), or a Python error. */
#define OK 0
#define UNUSUAL 1
#define ERROR (-1)

#endif
