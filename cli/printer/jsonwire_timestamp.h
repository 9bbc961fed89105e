/* A google.protobuf.Timestamp as json_format writes it: RFC 3339 in UTC, 0, 3, 6 or 9 digits of fraction. */
#ifndef JSONWIRE_TIMESTAMP_H
#define JSONWIRE_TIMESTAMP_H

#include "jsonwire.h"

int write_timestamp(Schema *schema, const Type *type, const unsigned char *p, const unsigned char *end);

#endif
