/* A google.protobuf.Timestamp as json_format writes it: RFC 3339 in UTC, 0, 3, 6 or 9 digits of fraction. */
#include "jsonwire_timestamp.h"

#include "jsonwire_reader.h"

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

int write_timestamp(Schema *schema, const Type *type, const unsigned char *p, const unsigned char *end) {
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
