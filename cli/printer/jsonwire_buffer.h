/* The output: one growing buffer of text, and the three ways everything is put into it. Inline, as the writers
 * call them for every byte or key they write.
 */
#ifndef JSONWIRE_BUFFER_H
#define JSONWIRE_BUFFER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef struct {
    char *data;
    Py_ssize_t length, capacity;
} Buffer;

static inline int reserve(Buffer *out, Py_ssize_t more) {
    if (out->length + more <= out->capacity)
        return 0;
    Py_ssize_t capacity = out->capacity ? out->capacity : 4096;
    while (capacity < out->length + more)
        capacity *= 2;
    char *data = PyMem_Realloc(out->data, capacity);
    if (!data)
        return -1;
    out->data = data;
    out->capacity = capacity;
    return 0;
}

static inline int put(Buffer *out, const char *text, Py_ssize_t length) {
    if (reserve(out, length) < 0)
        return -1;
    memcpy(out->data + out->length, text, length);
    out->length += length;
    return 0;
}

static inline int put_char(Buffer *out, char c) {
    if (reserve(out, 1) < 0)
        return -1;
    out->data[out->length++] = c;
    return 0;
}

#endif
