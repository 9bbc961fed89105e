/* The wire reader: varints, fixed-width numbers and tags, each also checked for the one form a writer gives it
 * (anything else sends the message to the Python path, which reads it as the parser does).
 */
#ifndef JSONWIRE_READER_H
#define JSONWIRE_READER_H

#include "jsonwire.h"

int varint_size(uint64_t value);
/* A varint at *p; UNUSUAL when cut short or longer than ten bytes. `size` is how many bytes it took. */
int read_varint(const unsigned char **p, const unsigned char *end, uint64_t *value, int *size);

/* A number as the field's kind reads it from a varint, and whether it is written in the fewest bytes (as a
 * writer writes it: anything else would not read back to the same bytes, which the shadows also refuse). */
typedef struct {
    int negative;
    uint64_t magnitude; /* of a signed value, or the unsigned value */
} Number;

int decode_varint(int kind, uint64_t raw, int size, Number *number);
int decode_fixed(int kind, const unsigned char *p, Number *number);
int is_fixed(int kind);
int fixed_size(int kind);
int is_varint(int kind);
/* The next field's tag: its field (known to the type) and wire type. */
int read_tag(const Type *type, const unsigned char **p, const unsigned char *end, const Field **field, int *wire);

#endif
