/* The wire reader: varints, fixed-width numbers and tags, each also checked for the one form a writer gives it. */
#include "jsonwire_reader.h"

int varint_size(uint64_t value) {
    int size = 1;
    while (value >= 0x80)
        value >>= 7, size++;
    return size;
}

/* A varint at *p; UNUSUAL when cut short or longer than ten bytes. `size` is how many bytes it took. */
int read_varint(const unsigned char **p, const unsigned char *end, uint64_t *value, int *size) {
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

int decode_varint(int kind, uint64_t raw, int size, Number *number) {
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

int decode_fixed(int kind, const unsigned char *p, Number *number) {
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

int is_fixed(int kind) {
    return kind == F_FIXED32 || kind == F_FIXED64 || kind == F_SFIXED32 || kind == F_SFIXED64;
}

int fixed_size(int kind) { return (kind == F_FIXED32 || kind == F_SFIXED32) ? 4 : 8; }

int is_varint(int kind) {
    return kind == F_INT32 || kind == F_INT64 || kind == F_UINT32 || kind == F_UINT64 || kind == F_SINT32 ||
           kind == F_SINT64 || kind == F_BOOL || kind == F_ENUM;
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
int read_tag(const Type *type, const unsigned char **p, const unsigned char *end, const Field **field, int *wire) {
    uint64_t tag;
    int size;
    if (read_varint(p, end, &tag, &size) != OK || varint_size(tag) != size || tag >> 3 > 0x1fffffff)
        return UNUSUAL;
    *field = find_field(type, tag >> 3);
    *wire = (int)(tag & 7);
    return *field ? OK : UNUSUAL; /* an unknown field: left out by json_format, but not written by a writer */
}
