/* A message's wire bytes written as json_format's JSON: its fields in order, lists, oneofs, nested messages,
 * and the wrappers; what json_format would write otherwise than field by field gives UNUSUAL (jsonwire.c).
 */
#include "jsonwire_writer.h"

#include "jsonwire_reader.h"
#include "jsonwire_text.h"
#include "jsonwire_timestamp.h"

static int quoted(int kind) { /* 64-bit integers are JSON strings */
    return kind == F_INT64 || kind == F_UINT64 || kind == F_SINT64 || kind == F_FIXED64 || kind == F_SFIXED64;
}

static int put_number(Buffer *out, const Field *field, const Number *n) {
    if (field->kind == F_BOOL)
        return n->magnitude ? put(out, "true", 4) : put(out, "false", 5);
    if (field->kind == F_ENUM) {
        int64_t value = n->negative ? -(int64_t)n->magnitude : (int64_t)n->magnitude;
        Py_ssize_t low = 0, high = field->name_count;
        while (low < high) {
            Py_ssize_t middle = (low + high) / 2;
            if (field->names[middle].number < value)
                low = middle + 1;
            else
                high = middle;
        }
        if (low < field->name_count && field->names[low].number == value)
            return put(out, field->names[low].name, field->names[low].length);
        return put_signed(out, value); /* a value this schema does not name: by number */
    }
    int quote = quoted(field->kind);
    if (quote && put_char(out, '"') < 0)
        return -1;
    if (n->negative) {
        if (put_char(out, '-') < 0)
            return -1;
    }
    if (put_unsigned(out, n->magnitude) < 0)
        return -1;
    return quote ? put_char(out, '"') : 0;
}

/* One value of a length-delimited field (not packed): a string, bytes or a message. */
static int write_delimited(Schema *schema, const Field *field, const unsigned char *p, Py_ssize_t length, int depth) {
    Buffer *out = &schema->out;
    switch (field->kind) {
    case F_STRING: {
        int result = put_string(out, p, length);
        return result < 0 ? ERROR : result;
    }
    case F_BYTES:
        return put_base64(out, p, length) < 0 ? ERROR : OK;
    case F_MESSAGE:
        return write_message(schema, &schema->types[field->type], p, p + length, depth + 1);
    }
    return UNUSUAL;
}

/* The value(s) of one field occurrence at *p, whose tag said wire type `wire`. */
static int write_value(Schema *schema, const Field *field, int wire, const unsigned char **p,
                       const unsigned char *end, int depth) {
    Buffer *out = &schema->out;
    Number n;
    if (field->packed) {
        uint64_t length;
        int size;
        if (wire != 2 || read_varint(p, end, &length, &size) != OK || varint_size(length) != size)
            return UNUSUAL;
        if (length == 0 || length > (uint64_t)(end - *p))
            return UNUSUAL; /* an empty packed field is not written by a writer */
        const unsigned char *at = *p, *stop = *p + length;
        *p = stop;
        int first = 1;
        while (at < stop) {
            if (!first && put_char(out, ',') < 0)
                return ERROR;
            first = 0;
            if (is_fixed(field->kind)) {
                if (stop - at < fixed_size(field->kind))
                    return UNUSUAL;
                decode_fixed(field->kind, at, &n);
                at += fixed_size(field->kind);
            } else {
                uint64_t raw;
                if (read_varint(&at, stop, &raw, &size) != OK || decode_varint(field->kind, raw, size, &n) != OK)
                    return UNUSUAL;
            }
            if (put_number(out, field, &n) < 0)
                return ERROR;
        }
        return OK;
    }
    if (is_varint(field->kind)) {
        uint64_t raw;
        int size;
        if (wire != 0 || read_varint(p, end, &raw, &size) != OK || decode_varint(field->kind, raw, size, &n) != OK)
            return UNUSUAL;
    } else if (is_fixed(field->kind)) {
        int size = fixed_size(field->kind);
        if (wire != (size == 4 ? 5 : 1) || end - *p < size)
            return UNUSUAL;
        decode_fixed(field->kind, *p, &n);
        *p += size;
    } else {
        uint64_t length;
        int size;
        if (wire != 2 || read_varint(p, end, &length, &size) != OK || varint_size(length) != size ||
            length > (uint64_t)(end - *p))
            return UNUSUAL;
        const unsigned char *at = *p;
        *p += length;
        if (length == 0 && !field->repeated && !field->presence && field->kind != F_MESSAGE)
            return UNUSUAL; /* "" written out */
        return write_delimited(schema, field, at, (Py_ssize_t)length, depth);
    }
    if (n.magnitude == 0 && !field->repeated && !field->presence)
        return UNUSUAL; /* 0 or false written out */
    return put_number(out, field, &n) < 0 ? ERROR : OK;
}

static int write_fields(Schema *schema, const Type *type, const unsigned char *p, const unsigned char *end,
                        int depth) {
    Buffer *out = &schema->out;
    const Field *last = NULL;
    uint64_t oneofs = 0;
    int result;
    if (put_char(out, '{') < 0)
        return ERROR;
    while (p < end) {
        const Field *field;
        int wire;
        if ((result = read_tag(type, &p, end, &field, &wire)) != OK)
            return result;
        if (field == last) { /* the next element of a list */
            if (!field->repeated || field->packed)
                return UNUSUAL; /* a singular field twice: the parser merges or keeps the last */
            if (put_char(out, ',') < 0)
                return ERROR;
        } else {
            if (last && field->number < last->number)
                return UNUSUAL; /* out of order: maybe a field twice */
            if (field->oneof >= 0) {
                if (oneofs >> field->oneof & 1)
                    return UNUSUAL; /* two members of a oneof: the last wins */
                oneofs |= 1ull << field->oneof;
            }
            if (last && last->repeated && put_char(out, ']') < 0)
                return ERROR;
            if (last && put_char(out, ',') < 0)
                return ERROR;
            if (put(out, field->key, field->key_length) < 0 || (field->repeated && put_char(out, '[') < 0))
                return ERROR;
            last = field;
        }
        if ((result = write_value(schema, field, wire, &p, end, depth)) != OK)
            return result;
    }
    if (last && last->repeated && put_char(out, ']') < 0)
        return ERROR;
    return put_char(out, '}') < 0 ? ERROR : OK;
}

/* A google.protobuf.*Value: its value alone, the default's text when the value is not written. */
static int write_wrapper(Schema *schema, const Type *type, const unsigned char *p, const unsigned char *end,
                         int depth) {
    if (p == end)
        return put(&schema->out, type->empty, type->empty_length) < 0 ? ERROR : OK;
    const Field *field;
    int wire, result;
    if ((result = read_tag(type, &p, end, &field, &wire)) != OK)
        return result;
    if ((result = write_value(schema, field, wire, &p, end, depth)) != OK)
        return result;
    return p == end ? OK : UNUSUAL; /* anything after the value: the value twice, or unknown fields */
}

int write_message(Schema *schema, const Type *type, const unsigned char *p, const unsigned char *end, int depth) {
    if (depth > DEPTH)
        return UNUSUAL;
    switch (type->kind) {
    case T_PLAIN:
        return write_fields(schema, type, p, end, depth);
    case T_TIMESTAMP:
        return write_timestamp(schema, type, p, end);
    case T_WRAPPER:
        return write_wrapper(schema, type, p, end, depth);
    }
    return UNUSUAL;
}
