/*
 * avro.h - Avro object container files whose header we write ourselves.
 *
 * Apache Iceberg's manifests and manifest lists are Avro container files whose
 * schema carries Iceberg's field ids ("field-id", "element-id") and whose header
 * carries Iceberg's key-value metadata ("schema", "partition-spec", "content", …).
 * avro-c's file writer re-serialises the schema, dropping those attributes, and
 * cannot add metadata to the header; so this module writes the container (magic,
 * header map, sync marker, blocks) and uses avro-c only for what it does well:
 * parsing the schema text and encoding or decoding each record with its generic
 * value interface. The reader is the same framing in reverse, so it also gives
 * back the header's metadata.
 *
 * Codec: "null" only (manifests are a few KB; every Iceberg reader handles it).
 * A writer or reader is used by one thread at a time.
 */
#ifndef EVENTS_AVRO_H
#define EVENTS_AVRO_H

#include "buf.h"

/* avro-c's own headers by name: <avro.h> would find this file (lake/ is on the path) */
#include <avro/errors.h>
#include <avro/generic.h>
#include <avro/io.h>
#include <avro/schema.h>
#include <avro/value.h>
#include <stddef.h>
#include <stdint.h>

enum {
    LAKE_AVRO_OK = 0,
    LAKE_AVRO_EINVAL = -1,  /* a schema avro-c refuses, a value that does not fit it */
    LAKE_AVRO_EFORMAT = -2, /* not an Avro container, or one cut short / corrupt */
    LAKE_AVRO_ENOMEM = -3
};

typedef struct lake_avro_writer lake_avro_writer;

/*
 * A writer of one container file: schema_json is written into the header's
 * avro.schema exactly as given (field ids included); the nmeta pairs
 * keys[i] = values[i] follow it in the header. The strings are copied.
 */
int lake_avro_writer_new(const char *schema_json, const char *const *keys,
                         const char *const *values, size_t nmeta, lake_avro_writer **out, char *err,
                         size_t errlen);

/* The record to fill for the next append: reset, owned by the writer. */
avro_value_t *lake_avro_writer_record(lake_avro_writer *w);

/* Encodes the record filled since the last append and adds it to the file. */
int lake_avro_writer_append(lake_avro_writer *w, char *err, size_t errlen);

/* The whole file (header and one block of every record appended), appended to out. */
int lake_avro_writer_finish(lake_avro_writer *w, buf *out, char *err, size_t errlen);

void lake_avro_writer_free(lake_avro_writer *w);

typedef struct lake_avro_reader lake_avro_reader;

/*
 * Parses the header of the container in data[0..len) (which must outlive the
 * reader) and the writer's schema from it.
 */
int lake_avro_reader_new(const void *data, size_t len, lake_avro_reader **out, char *err,
                         size_t errlen);

/* The header's value for key (NUL-terminated, owned by the reader), or NULL. */
const char *lake_avro_reader_meta(const lake_avro_reader *r, const char *key);

/* Decodes the next record into *rec (owned by the reader, valid until the next
 * call): 1 with a record, 0 at the end, a negative LAKE_AVRO_E* code on error. */
int lake_avro_reader_next(lake_avro_reader *r, avro_value_t **rec, char *err, size_t errlen);

void lake_avro_reader_free(lake_avro_reader *r);

/* Appends v as an Avro long (zig-zag varint) to b: the framing's integers. */
int lake_avro_put_long(buf *b, int64_t v);

#endif
