/*
 * avro.c - the Avro object container, framed here, records encoded by avro-c
 * (avro.h).
 *
 * Why the split: measured on Debian's avro-c 1.11.1, avro_file_writer_create*
 * writes the schema back from its parsed form, which drops every attribute Avro
 * does not know (Iceberg's "field-id" and "element-id"), and offers no way to put
 * user key-value pairs into the header; Iceberg readers need both. Parsing the
 * schema (avro-c ignores the extra attributes) and the binary encoding of a record
 * are avro-c's; the container around them is Avro's specification, "Object
 * Container Files": "Obj" 1, a map<bytes> of metadata, a 16-byte sync marker, then
 * blocks of (record count, byte count, records, sync marker).
 *
 * The writer keeps every encoded record in memory and writes one block at
 * finish: manifests hold thousands of entries at most.
 */
#include "avro.h"

#include "evrand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AVRO_SYNC 16

struct lake_avro_writer {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t rec;
    buf header; /* magic, metadata map and sync marker, written at creation */
    buf block;  /* the encoded records appended so far */
    int64_t count;
    char sync[AVRO_SYNC];
};

struct lake_avro_reader {
    const unsigned char *p, *end; /* the next unread byte of the file, its end */
    char **keys, **values;        /* the header's metadata, NUL-terminated copies */
    size_t nmeta;
    char sync[AVRO_SYNC];
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t rec;
    int has_rec;
    avro_reader_t block; /* over the current block's records */
    int64_t left;        /* records left in the current block */
};

int lake_avro_put_long(buf *b, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (v < 0 ? UINT64_MAX : 0);
    char tmp[10];
    size_t n = 0;
    while (z >= 0x80) {
        tmp[n++] = (char)((z & 0x7f) | 0x80);
        z >>= 7;
    }
    tmp[n++] = (char)z;
    return buf_append(b, tmp, n);
}

static int put_bytes(buf *b, const char *s, size_t n)
{
    return lake_avro_put_long(b, (int64_t)n) || buf_append(b, s, n) ? -1 : 0;
}

/* Parses schema_json with avro-c and makes the generic class of its records. */
static int load_schema(const char *json, size_t len, avro_schema_t *schema,
                       avro_value_iface_t **iface, char *err, size_t errlen)
{
    if (avro_schema_from_json_length(json, len, schema)) {
        snprintf(err, errlen, "avro: schema refused: %s", avro_strerror());
        return LAKE_AVRO_EINVAL;
    }
    *iface = avro_generic_class_from_schema(*schema);
    if (!*iface) {
        snprintf(err, errlen, "avro: no record class for the schema: %s", avro_strerror());
        avro_schema_decref(*schema);
        return LAKE_AVRO_EINVAL;
    }
    return LAKE_AVRO_OK;
}

int lake_avro_writer_new(const char *schema_json, const char *const *keys,
                         const char *const *values, size_t nmeta, lake_avro_writer **out, char *err,
                         size_t errlen)
{
    lake_avro_writer *w = calloc(1, sizeof *w);
    if (!w) goto nomem;
    int rc = load_schema(schema_json, strlen(schema_json), &w->schema, &w->iface, err, errlen);
    if (rc) {
        free(w);
        return rc;
    }
    if (avro_generic_value_new(w->iface, &w->rec)) {
        avro_value_iface_decref(w->iface);
        avro_schema_decref(w->schema);
        free(w);
        goto nomem;
    }
    /* the sync marker only has to be unlikely to occur in the data */
    for (int i = 0; i < AVRO_SYNC; i += 8) {
        uint64_t r = evrand_u64();
        memcpy(w->sync + i, &r, 8);
    }
    buf *h = &w->header;
    if (buf_append(h, "Obj\x01", 4) || lake_avro_put_long(h, (int64_t)nmeta + 2) ||
        put_bytes(h, "avro.schema", 11) || put_bytes(h, schema_json, strlen(schema_json)) ||
        put_bytes(h, "avro.codec", 10) || put_bytes(h, "null", 4))
        goto nomem_w;
    for (size_t i = 0; i < nmeta; i++)
        if (put_bytes(h, keys[i], strlen(keys[i])) || put_bytes(h, values[i], strlen(values[i])))
            goto nomem_w;
    if (lake_avro_put_long(h, 0) || buf_append(h, w->sync, AVRO_SYNC)) goto nomem_w;
    *out = w;
    return LAKE_AVRO_OK;
nomem_w:
    lake_avro_writer_free(w);
nomem:
    snprintf(err, errlen, "avro: out of memory");
    return LAKE_AVRO_ENOMEM;
}

avro_value_t *lake_avro_writer_record(lake_avro_writer *w)
{
    avro_value_reset(&w->rec);
    return &w->rec;
}

int lake_avro_writer_append(lake_avro_writer *w, char *err, size_t errlen)
{
    size_t size;
    if (avro_value_sizeof(&w->rec, &size)) {
        snprintf(err, errlen, "avro: cannot size a record: %s", avro_strerror());
        return LAKE_AVRO_EINVAL;
    }
    if (buf_reserve(&w->block, size)) {
        snprintf(err, errlen, "avro: out of memory");
        return LAKE_AVRO_ENOMEM;
    }
    avro_writer_t mw = avro_writer_memory(w->block.p + w->block.len, (int64_t)size);
    if (!mw) {
        snprintf(err, errlen, "avro: out of memory");
        return LAKE_AVRO_ENOMEM;
    }
    int rc = avro_value_write(mw, &w->rec);
    avro_writer_free(mw);
    if (rc) {
        snprintf(err, errlen, "avro: cannot encode a record: %s", avro_strerror());
        return LAKE_AVRO_EINVAL;
    }
    w->block.len += size;
    w->count++;
    return LAKE_AVRO_OK;
}

int lake_avro_writer_finish(lake_avro_writer *w, buf *out, char *err, size_t errlen)
{
    if (buf_append(out, w->header.p, w->header.len)) goto nomem;
    if (w->count &&
        (lake_avro_put_long(out, w->count) || lake_avro_put_long(out, (int64_t)w->block.len) ||
         buf_append(out, w->block.p, w->block.len) || buf_append(out, w->sync, AVRO_SYNC)))
        goto nomem;
    return LAKE_AVRO_OK;
nomem:
    snprintf(err, errlen, "avro: out of memory");
    return LAKE_AVRO_ENOMEM;
}

void lake_avro_writer_free(lake_avro_writer *w)
{
    if (!w) return;
    if (w->iface) {
        avro_value_decref(&w->rec);
        avro_value_iface_decref(w->iface);
        avro_schema_decref(w->schema);
    }
    buf_free(&w->header);
    buf_free(&w->block);
    free(w);
}

/* ---- reading --------------------------------------------------------------------- */

static int get_long(lake_avro_reader *r, int64_t *v)
{
    uint64_t z = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return -1;
        unsigned char c = *r->p++;
        z |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
            return 0;
        }
    }
    return -1;
}

/* A length-prefixed string of the header, copied and NUL-terminated into *out. */
static int get_str(lake_avro_reader *r, char **out)
{
    int64_t n;
    if (get_long(r, &n) || n < 0 || n > r->end - r->p) return -1;
    *out = malloc((size_t)n + 1);
    if (!*out) return -1;
    memcpy(*out, r->p, (size_t)n);
    (*out)[n] = 0;
    r->p += n;
    return 0;
}

static int read_header_map(lake_avro_reader *r)
{
    int64_t n;
    while (!get_long(r, &n) && n != 0) {
        if (n < 0) { /* a block with its byte size after the count */
            int64_t size;
            if (get_long(r, &size)) return -1;
            n = -n;
        }
        if (n > r->end - r->p) return -1;
        char **k = realloc(r->keys, (r->nmeta + (size_t)n) * sizeof *k);
        if (!k) return -1;
        r->keys = k;
        char **v = realloc(r->values, (r->nmeta + (size_t)n) * sizeof *v);
        if (!v) return -1;
        r->values = v;
        for (int64_t i = 0; i < n; i++) {
            r->keys[r->nmeta] = r->values[r->nmeta] = NULL;
            r->nmeta++;
            if (get_str(r, &r->keys[r->nmeta - 1]) || get_str(r, &r->values[r->nmeta - 1]))
                return -1;
        }
    }
    return n == 0 ? 0 : -1;
}

int lake_avro_reader_new(const void *data, size_t len, lake_avro_reader **out, char *err,
                         size_t errlen)
{
    lake_avro_reader *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "avro: out of memory");
        return LAKE_AVRO_ENOMEM;
    }
    r->p = data;
    r->end = r->p + len;
    int rc = LAKE_AVRO_EFORMAT;
    if (len < 4 || memcmp(data, "Obj\x01", 4)) {
        snprintf(err, errlen, "avro: not an Avro container file (no Obj 1 magic)");
        goto fail;
    }
    r->p += 4;
    if (read_header_map(r) || r->end - r->p < AVRO_SYNC) {
        snprintf(err, errlen, "avro: the container's header is cut short or corrupt");
        goto fail;
    }
    memcpy(r->sync, r->p, AVRO_SYNC);
    r->p += AVRO_SYNC;
    const char *codec = lake_avro_reader_meta(r, "avro.codec");
    const char *schema = lake_avro_reader_meta(r, "avro.schema");
    if (codec && strcmp(codec, "null")) {
        snprintf(err, errlen, "avro: codec %s is not supported (only null)", codec);
        goto fail;
    }
    if (!schema) {
        snprintf(err, errlen, "avro: the header has no avro.schema");
        goto fail;
    }
    rc = load_schema(schema, strlen(schema), &r->schema, &r->iface, err, errlen);
    if (rc) goto fail;
    if (avro_generic_value_new(r->iface, &r->rec)) {
        snprintf(err, errlen, "avro: out of memory");
        rc = LAKE_AVRO_ENOMEM;
        goto fail;
    }
    r->has_rec = 1;
    *out = r;
    return LAKE_AVRO_OK;
fail:
    lake_avro_reader_free(r);
    return rc;
}

const char *lake_avro_reader_meta(const lake_avro_reader *r, const char *key)
{
    for (size_t i = 0; i < r->nmeta; i++)
        if (r->keys[i] && !strcmp(r->keys[i], key)) return r->values[i];
    return NULL;
}

/* Starts the next block: 1, 0 at the end of the file, -1 when it is corrupt. */
static int next_block(lake_avro_reader *r)
{
    int64_t count, size;
    if (r->p == r->end) return 0;
    if (get_long(r, &count) || get_long(r, &size) || count < 0 || size < 0 ||
        size > r->end - r->p || r->end - r->p - size < AVRO_SYNC)
        return -1;
    if (memcmp(r->p + size, r->sync, AVRO_SYNC)) return -1;
    if (r->block)
        avro_reader_memory_set_source(r->block, (const char *)r->p, size);
    else if (!(r->block = avro_reader_memory((const char *)r->p, size)))
        return -1;
    r->p += size + AVRO_SYNC;
    r->left = count;
    return 1;
}

int lake_avro_reader_next(lake_avro_reader *r, avro_value_t **rec, char *err, size_t errlen)
{
    while (r->left == 0) {
        int rc = next_block(r);
        if (rc == 0) return 0;
        if (rc < 0) {
            snprintf(err, errlen, "avro: a block is cut short or its sync marker is wrong");
            return LAKE_AVRO_EFORMAT;
        }
    }
    avro_value_reset(&r->rec);
    if (avro_value_read(r->block, &r->rec)) {
        snprintf(err, errlen, "avro: cannot decode a record: %s", avro_strerror());
        return LAKE_AVRO_EFORMAT;
    }
    r->left--;
    *rec = &r->rec;
    return 1;
}

void lake_avro_reader_free(lake_avro_reader *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nmeta; i++) {
        free(r->keys[i]);
        free(r->values[i]);
    }
    free(r->keys);
    free(r->values);
    if (r->block) avro_reader_free(r->block);
    if (r->has_rec) avro_value_decref(&r->rec);
    if (r->iface) {
        avro_value_iface_decref(r->iface);
        avro_schema_decref(r->schema);
    }
    free(r);
}
