/* A message's wire bytes written as json_format's JSON: its fields in order, lists, oneofs, nested messages,
 * and the well-known types it writes by rules of their own (Timestamp: jsonwire_timestamp.c; the wrappers).
 */
#ifndef JSONWIRE_WRITER_H
#define JSONWIRE_WRITER_H

#include "jsonwire.h"

/* The message of `type` in [p, end) as JSON into schema->out: OK, UNUSUAL (the Python path writes it) or ERROR. */
int write_message(Schema *schema, const Type *type, const unsigned char *p, const unsigned char *end, int depth);

#endif
