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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum {
    F_INT32, F_INT64, F_UINT32, F_UINT64, F_SINT32, F_SINT64, F_FIXED32, F_FIXED64, F_SFIXED32, F_SFIXED64,
    F_BOOL, F_ENUM, F_STRING, F_BYTES, F_MESSAGE, F_UNSUPPORTED, F_KINDS
};
enum { T_PLAIN, T_TIMESTAMP, T_WRAPPER, T_UNSUPPORTED, T_KINDS };

#define DEPTH 64      /* deeper nesting goes to the Python path */
#define DENSE 256     /* field numbers below this are found by index, the others by binary search */
#define MAX_ONEOFS 64 /* oneofs seen are a bit mask */
#define BLOCK (1 << 16) /* a block of lines ends past this many bytes: kept in cache, and below mmap's size */

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
    char *data;
    Py_ssize_t length, capacity;
} Buffer;

typedef struct {
    PyObject_HEAD
    Type *types;
    Py_ssize_t type_count;
    PyObject *keep;           /* the tables' strings live as long as the schema */
    Buffer out;
} Schema;

/* ---- output ---- */

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

static int put_unsigned(Buffer *out, uint64_t value) {
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    if (reserve(out, n) < 0)
        return -1;
    while (n)
        out->data[out->length++] = digits[--n];
    return 0;
}

static int put_signed(Buffer *out, int64_t value) {
    if (value < 0) {
        if (put_char(out, '-') < 0)
            return -1;
        return put_unsigned(out, (uint64_t)0 - (uint64_t)value);
    }
    return put_unsigned(out, (uint64_t)value);
}

static const char HEX[] = "0123456789abcdef";

static void put_u(Buffer *out, uint32_t unit) { /* \uXXXX, room reserved by the caller */
    char *at = out->data + out->length;
    at[0] = '\\';
    at[1] = 'u';
    at[2] = HEX[unit >> 12 & 15];
    at[3] = HEX[unit >> 8 & 15];
    at[4] = HEX[unit >> 4 & 15];
    at[5] = HEX[unit & 15];
    out->length += 6;
}

/* A UTF-8 string as json.dumps(ensure_ascii=True) quotes it; 1 for bytes that are not strict UTF-8. */
static int put_string(Buffer *out, const unsigned char *p, Py_ssize_t length) {
    if (reserve(out, length * 6 + 2) < 0) /* the most one byte becomes; 4 bytes become 12 */
        return -1;
    const unsigned char *end = p + length;
    out->data[out->length++] = '"';
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && *p >= 0x20 && *p <= 0x7e && *p != '"' && *p != '\\')
            p++;
        if (p > run) { /* most strings are printable ASCII throughout: copied as they are */
            memcpy(out->data + out->length, run, p - run);
            out->length += p - run;
            if (p == end)
                break;
        }
        unsigned char c = *p;
        if (c < 0x80) {
            p++;
            char escape = 0;
            switch (c) {
            case '"': escape = '"'; break;
            case '\\': escape = '\\'; break;
            case '\n': escape = 'n'; break;
            case '\r': escape = 'r'; break;
            case '\t': escape = 't'; break;
            case '\b': escape = 'b'; break;
            case '\f': escape = 'f'; break;
            }
            if (escape) {
                out->data[out->length++] = '\\';
                out->data[out->length++] = escape;
            } else {
                put_u(out, c);
            }
            continue;
        }
        uint32_t point;
        int size;
        if (c >= 0xc2 && c <= 0xdf) {
            size = 2, point = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            size = 3, point = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            size = 4, point = c & 0x07;
        } else {
            return 1;
        }
        if (end - p < size)
            return 1;
        for (int i = 1; i < size; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 1;
            point = point << 6 | (p[i] & 0x3f);
        }
        if ((size == 3 && (point < 0x800 || (point >= 0xd800 && point <= 0xdfff))) ||
            (size == 4 && (point < 0x10000 || point > 0x10ffff)))
            return 1; /* overlong, a surrogate, beyond Unicode */
        p += size;
        if (point < 0x10000) {
            put_u(out, point);
        } else {
            point -= 0x10000;
            put_u(out, 0xd800 | point >> 10);
            put_u(out, 0xdc00 | (point & 0x3ff));
        }
    }
    out->data[out->length++] = '"';
    return 0;
}

static const char BASE64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int put_base64(Buffer *out, const unsigned char *p, Py_ssize_t length) {
    if (reserve(out, (length + 2) / 3 * 4 + 2) < 0)
        return -1;
    char *at = out->data + out->length;
    *at++ = '"';
    Py_ssize_t i = 0;
    for (; i + 3 <= length; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *at++ = BASE64[v >> 18], *at++ = BASE64[v >> 12 & 63], *at++ = BASE64[v >> 6 & 63], *at++ = BASE64[v & 63];
    }
    if (length - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *at++ = BASE64[v >> 18], *at++ = BASE64[v >> 12 & 63], *at++ = '=', *at++ = '=';
    } else if (length - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *at++ = BASE64[v >> 18], *at++ = BASE64[v >> 12 & 63], *at++ = BASE64[v >> 6 & 63], *at++ = '=';
    }
    *at++ = '"';
    out->length = at - out->data;
    return 0;
}

/* ---- input ---- */

/* The results of the writers: done, or give up (None: the Python path decides), or a Python error. */
#define OK 0
#define UNUSUAL 1
#define ERROR (-1)

static int varint_size(uint64_t value) {
    int size = 1;
    while (value >= 0x80)
        value >>= 7, size++;
    return size;
}

/* A varint at *p; UNUSUAL when cut short or longer than ten bytes. `size` is how many bytes it took. */
static int read_varint(const unsigned char **p, const unsigned char *end, uint64_t *value, int *size) {
    uint64_t result = 0;
    const unsigned char *at = *p;
    for (int shift = 0; shift < 70; shift += 7) {
        if (at >= end)
            return UNUSUAL;
        unsigned char byte = *at++;
        result |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *size = (int)(at - *p);
            *p = at;
            *value = result;
            return OK;
        }
    }
    return UNUSUAL;
}

/* A number as the field's kind reads it from a varint, and whether it is written in the fewest bytes (as a
 * writer writes it: anything else would not read back to the same bytes, which the shadows also refuse). */
typedef struct {
    int negative;
    uint64_t magnitude; /* of a signed value, or the unsigned value */
} Number;

static int decode_varint(int kind, uint64_t raw, int size, Number *number) {
    int64_t s;
    uint64_t canonical;
    switch (kind) {
    case F_INT32:
    case F_ENUM:
        s = (int32_t)(uint32_t)raw;
        canonical = (uint64_t)s;
        break;
    case F_INT64:
        s = (int64_t)raw;
        canonical = raw;
        break;
    case F_UINT32:
        canonical = (uint32_t)raw;
        number->negative = 0, number->magnitude = canonical;
        return varint_size(canonical) == size ? OK : UNUSUAL;
    case F_UINT64:
        number->negative = 0, number->magnitude = raw;
        return varint_size(raw) == size ? OK : UNUSUAL;
    case F_SINT32: {
        uint32_t z = (uint32_t)raw;
        canonical = z;
        s = (int32_t)((z >> 1) ^ (0u - (z & 1)));
        break;
    }
    case F_SINT64:
        canonical = raw;
        s = (int64_t)((raw >> 1) ^ (0ull - (raw & 1)));
        break;
    case F_BOOL:
        if (raw > 1 || size != 1)
            return UNUSUAL;
        number->negative = 0, number->magnitude = raw;
        return OK;
    default:
        return UNUSUAL;
    }
    if (varint_size(canonical) != size)
        return UNUSUAL;
    number->negative = s < 0;
    number->magnitude = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return OK;
}

static int decode_fixed(int kind, const unsigned char *p, Number *number) {
    uint64_t raw = 0;
    int size = (kind == F_FIXED32 || kind == F_SFIXED32) ? 4 : 8;
    for (int i = size - 1; i >= 0; i--)
        raw = raw << 8 | p[i];
    int64_t s;
    switch (kind) {
    case F_FIXED32:
    case F_FIXED64:
        number->negative = 0, number->magnitude = raw;
        return OK;
    case F_SFIXED32:
        s = (int32_t)(uint32_t)raw;
        break;
    default:
        s = (int64_t)raw;
    }
    number->negative = s < 0;
    number->magnitude = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return OK;
}

static int is_fixed(int kind) {
    return kind == F_FIXED32 || kind == F_FIXED64 || kind == F_SFIXED32 || kind == F_SFIXED64;
}

static int fixed_size(int kind) { return (kind == F_FIXED32 || kind == F_SFIXED32) ? 4 : 8; }

static int is_varint(int kind) {
    return kind == F_INT32 || kind == F_INT64 || kind == F_UINT32 || kind == F_UINT64 || kind == F_SINT32 ||
           kind == F_SINT64 || kind == F_BOOL || kind == F_ENUM;
}

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

static int write_message(Schema *schema, const Type *type, const unsigned char *p, const unsigned char *end,
                         int depth);

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

static const Field *find_field(const Type *type, uint64_t number) {
    if (number < DENSE)
        return type->dense[number];
    Py_ssize_t low = 0, high = type->field_count;
    while (low < high) {
        Py_ssize_t middle = (low + high) / 2;
        if (type->fields[middle].number < number)
            low = middle + 1;
        else
            high = middle;
    }
    return low < type->field_count && type->fields[low].number == number ? &type->fields[low] : NULL;
}

/* The next field's tag: its field (known to the type) and wire type. */
static int read_tag(const Type *type, const unsigned char **p, const unsigned char *end, const Field **field,
                    int *wire) {
    uint64_t tag;
    int size;
    if (read_varint(p, end, &tag, &size) != OK || varint_size(tag) != size || tag >> 3 > 0x1fffffff)
        return UNUSUAL;
    *field = find_field(type, tag >> 3);
    *wire = (int)(tag & 7);
    return *field ? OK : UNUSUAL; /* an unknown field: left out by json_format, but not written by a writer */
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

/* `value` in exactly `width` decimal digits (zero-padded) at `at`; where they end. */
static char *digits(char *at, uint64_t value, int width) {
    for (int i = width - 1; i >= 0; i--, value /= 10)
        at[i] = (char)('0' + value % 10);
    return at + width;
}

/* 1970-01-01 + days as a civil date (proleptic Gregorian). */
static void civil(int64_t days, int64_t *year, unsigned *month, unsigned *day) {
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    unsigned doe = (unsigned)(days - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *day = doy - (153 * mp + 2) / 5 + 1;
    *month = mp < 10 ? mp + 3 : mp - 9;
    *year = (int64_t)yoe + era * 400 + (*month <= 2);
}

static int write_timestamp(Schema *schema, const Type *type, const unsigned char *p, const unsigned char *end) {
    int64_t seconds = 0, nanos = 0;
    uint32_t last = 0;
    while (p < end) {
        const Field *field;
        int wire, size;
        uint64_t raw;
        Number n;
        if (read_tag(type, &p, end, &field, &wire) != OK || field->number <= last ||
            (field->kind != F_INT64 && field->kind != F_INT32))
            return UNUSUAL;
        last = field->number;
        if (wire != 0 || read_varint(&p, end, &raw, &size) != OK || decode_varint(field->kind, raw, size, &n) != OK ||
            n.magnitude == 0)
            return UNUSUAL;
        int64_t value = n.negative ? -(int64_t)n.magnitude : (int64_t)n.magnitude;
        if (field->number == 1)
            seconds = value;
        else if (field->number == 2)
            nanos = value;
        else
            return UNUSUAL;
    }
    if (nanos < 0 || nanos > 999999999 || seconds < -62135596800LL || seconds > 253402300799LL)
        return UNUSUAL; /* json_format refuses these */
    int64_t days = (seconds >= 0 ? seconds : seconds - 86399) / 86400;
    int64_t rest = seconds - days * 86400;
    int64_t year;
    unsigned month, day;
    civil(days, &year, &month, &day);
    /* "YYYY-MM-DDTHH:MM:SS", then 0, 3, 6 or 9 digits of the fraction as json_format writes them */
    char text[40], *at = text;
    *at++ = '"';
    at = digits(at, (uint64_t)year, 4);
    *at++ = '-';
    at = digits(at, month, 2);
    *at++ = '-';
    at = digits(at, day, 2);
    *at++ = 'T';
    at = digits(at, (uint64_t)(rest / 3600), 2);
    *at++ = ':';
    at = digits(at, (uint64_t)(rest / 60 % 60), 2);
    *at++ = ':';
    at = digits(at, (uint64_t)(rest % 60), 2);
    if (nanos) {
        *at++ = '.';
        if (nanos % 1000000 == 0)
            at = digits(at, (uint64_t)(nanos / 1000000), 3);
        else if (nanos % 1000 == 0)
            at = digits(at, (uint64_t)(nanos / 1000), 6);
        else
            at = digits(at, (uint64_t)nanos, 9);
    }
    *at++ = 'Z';
    *at++ = '"';
    Py_ssize_t length = at - text;
    return put(&schema->out, text, length) < 0 ? ERROR : OK;
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

static int write_message(Schema *schema, const Type *type, const unsigned char *p, const unsigned char *end,
                         int depth) {
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

/* ---- the Schema type ---- */

static void schema_clear(Schema *schema) {
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

static void schema_dealloc(Schema *schema) {
    schema_clear(schema);
    Py_TYPE(schema)->tp_free((PyObject *)schema);
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

static int schema_init(Schema *schema, PyObject *args, PyObject *kwargs) {
    PyObject *types;
    static char *keywords[] = {"types", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O", keywords, &types))
        return -1;
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
