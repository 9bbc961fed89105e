/* The descriptor tables: protojson.py's lists of types and fields, read once into the Schema's arrays. */
#ifndef JSONWIRE_TABLES_H
#define JSONWIRE_TABLES_H

#include "jsonwire.h"

/* Schema(types)'s tables, replacing any it held; -1 with a Python error when the lists are not as the stub
 * (jsonwire.pyi) says. */
int schema_load(Schema *schema, PyObject *types);
/* Frees the tables and the output buffer. */
void schema_clear(Schema *schema);

#endif
