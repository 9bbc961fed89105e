/* JSON text of single values as json.dumps writes them: integers, strings (ensure_ascii), bytes (base64). */
#ifndef JSONWIRE_TEXT_H
#define JSONWIRE_TEXT_H

#include "jsonwire.h"

int put_unsigned(Buffer *out, uint64_t value);
int put_signed(Buffer *out, int64_t value);
/* A UTF-8 string as json.dumps(ensure_ascii=True) quotes it; 1 for bytes that are not strict UTF-8. */
int put_string(Buffer *out, const unsigned char *p, Py_ssize_t length);
int put_base64(Buffer *out, const unsigned char *p, Py_ssize_t length);

#endif
