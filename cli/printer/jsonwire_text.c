/* JSON text of single values as json.dumps writes them: integers, strings (ensure_ascii), bytes (base64). */
#include "jsonwire_text.h"

int put_unsigned(Buffer *out, uint64_t value) {
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

int put_signed(Buffer *out, int64_t value) {
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
int put_string(Buffer *out, const unsigned char *p, Py_ssize_t length) {
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

int put_base64(Buffer *out, const unsigned char *p, Py_ssize_t length) {
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
