/*
 * result.c - rendering DuckDB vectors as JSON and CSV.
 *
 * A result_type mirrors a column's logical type, with its children for LIST,
 * ARRAY, STRUCT and MAP, so that rendering a value is a walk over plain data.
 * Physical layouts follow duckdb.h: fixed-size values in the vector's data,
 * strings as duckdb_string_t, lists as (offset, length) entries into a child
 * vector, arrays as array_size consecutive child rows, maps as lists of
 * (key, value) structs, decimals as integers scaled by 10^scale.
 */
#include "result.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct result_type {
    duckdb_type id;
    int json;             /* VARCHAR aliased JSON: embedded as it is */
    uint8_t width, scale; /* DECIMAL */
    duckdb_type internal; /* DECIMAL and ENUM storage */
    char **enum_values;
    idx_t n_enum;
    idx_t array_size; /* ARRAY */
    idx_t n;          /* children: STRUCT fields; LIST/ARRAY element; MAP key, value */
    result_type **child;
    char **names; /* STRUCT field names */
    char *name;
};

static const char *simple_name(duckdb_type id)
{
    switch (id) {
    case DUCKDB_TYPE_BOOLEAN: return "BOOLEAN";
    case DUCKDB_TYPE_TINYINT: return "TINYINT";
    case DUCKDB_TYPE_SMALLINT: return "SMALLINT";
    case DUCKDB_TYPE_INTEGER: return "INTEGER";
    case DUCKDB_TYPE_BIGINT: return "BIGINT";
    case DUCKDB_TYPE_UTINYINT: return "UTINYINT";
    case DUCKDB_TYPE_USMALLINT: return "USMALLINT";
    case DUCKDB_TYPE_UINTEGER: return "UINTEGER";
    case DUCKDB_TYPE_UBIGINT: return "UBIGINT";
    case DUCKDB_TYPE_HUGEINT: return "HUGEINT";
    case DUCKDB_TYPE_UHUGEINT: return "UHUGEINT";
    case DUCKDB_TYPE_FLOAT: return "FLOAT";
    case DUCKDB_TYPE_DOUBLE: return "DOUBLE";
    case DUCKDB_TYPE_VARCHAR: return "VARCHAR";
    case DUCKDB_TYPE_BLOB: return "BLOB";
    case DUCKDB_TYPE_DATE: return "DATE";
    case DUCKDB_TYPE_TIME: return "TIME";
    case DUCKDB_TYPE_TIMESTAMP: return "TIMESTAMP";
    case DUCKDB_TYPE_TIMESTAMP_S: return "TIMESTAMP_S";
    case DUCKDB_TYPE_TIMESTAMP_MS: return "TIMESTAMP_MS";
    case DUCKDB_TYPE_TIMESTAMP_NS: return "TIMESTAMP_NS";
    case DUCKDB_TYPE_TIMESTAMP_TZ: return "TIMESTAMP WITH TIME ZONE";
    case DUCKDB_TYPE_INTERVAL: return "INTERVAL";
    case DUCKDB_TYPE_UUID: return "UUID";
    case DUCKDB_TYPE_ENUM: return "ENUM";
    case DUCKDB_TYPE_SQLNULL: return "NULL";
    default: return NULL;
    }
}

void result_type_free(result_type *rt)
{
    if (!rt) return;
    for (idx_t i = 0; i < rt->n; i++) {
        result_type_free(rt->child[i]);
        if (rt->names) duckdb_free(rt->names[i]);
    }
    for (idx_t i = 0; i < rt->n_enum; i++) duckdb_free(rt->enum_values[i]);
    free(rt->enum_values);
    free(rt->child);
    free(rt->names);
    free(rt->name);
    free(rt);
}

static int add_child(result_type *rt, duckdb_logical_type t, char *err, size_t errlen)
{
    result_type *c = result_type_new(t, err, errlen);
    if (!c) return -1;
    rt->child[rt->n++] = c;
    return 0;
}

result_type *result_type_new(duckdb_logical_type t, char *err, size_t errlen)
{
    result_type *rt = calloc(1, sizeof *rt);
    if (!rt) goto oom;
    rt->id = duckdb_get_type_id(t);
    buf name = BUF_INIT;
    const char *simple = simple_name(rt->id);
    switch (rt->id) {
    case DUCKDB_TYPE_VARCHAR: {
        char *alias = duckdb_logical_type_get_alias(t);
        rt->json = alias && !strcmp(alias, "JSON");
        if (alias) duckdb_free(alias);
        buf_puts(&name, rt->json ? "JSON" : "VARCHAR");
        break;
    }
    case DUCKDB_TYPE_DECIMAL:
        rt->width = duckdb_decimal_width(t);
        rt->scale = duckdb_decimal_scale(t);
        rt->internal = duckdb_decimal_internal_type(t);
        buf_printf(&name, "DECIMAL(%u,%u)", rt->width, rt->scale);
        break;
    case DUCKDB_TYPE_ENUM: {
        rt->internal = duckdb_enum_internal_type(t);
        rt->n_enum = duckdb_enum_dictionary_size(t);
        rt->enum_values = calloc(rt->n_enum ? rt->n_enum : 1, sizeof *rt->enum_values);
        if (!rt->enum_values) goto oom;
        for (idx_t i = 0; i < rt->n_enum; i++)
            rt->enum_values[i] = duckdb_enum_dictionary_value(t, i);
        buf_puts(&name, "ENUM");
        break;
    }
    case DUCKDB_TYPE_LIST:
    case DUCKDB_TYPE_ARRAY: {
        rt->child = calloc(1, sizeof *rt->child);
        if (!rt->child) goto oom;
        duckdb_logical_type ct = rt->id == DUCKDB_TYPE_LIST ? duckdb_list_type_child_type(t)
                                                            : duckdb_array_type_child_type(t);
        int r = add_child(rt, ct, err, errlen);
        duckdb_destroy_logical_type(&ct);
        if (r) goto fail;
        if (rt->id == DUCKDB_TYPE_ARRAY) {
            rt->array_size = duckdb_array_type_array_size(t);
            buf_printf(&name, "%s[%llu]", rt->child[0]->name, (unsigned long long)rt->array_size);
        } else {
            buf_printf(&name, "%s[]", rt->child[0]->name);
        }
        break;
    }
    case DUCKDB_TYPE_STRUCT: {
        idx_t n = duckdb_struct_type_child_count(t);
        rt->child = calloc(n ? n : 1, sizeof *rt->child);
        rt->names = calloc(n ? n : 1, sizeof *rt->names);
        if (!rt->child || !rt->names) goto oom;
        buf_puts(&name, "STRUCT(");
        for (idx_t i = 0; i < n; i++) {
            duckdb_logical_type ct = duckdb_struct_type_child_type(t, i);
            int r = add_child(rt, ct, err, errlen);
            duckdb_destroy_logical_type(&ct);
            if (r) goto fail;
            rt->names[i] = duckdb_struct_type_child_name(t, i);
            buf_printf(&name, "%s%s %s", i ? ", " : "", rt->names[i], rt->child[i]->name);
        }
        buf_putc(&name, ')');
        break;
    }
    case DUCKDB_TYPE_MAP: {
        rt->child = calloc(2, sizeof *rt->child);
        if (!rt->child) goto oom;
        duckdb_logical_type kt = duckdb_map_type_key_type(t), vt = duckdb_map_type_value_type(t);
        int r = add_child(rt, kt, err, errlen) || add_child(rt, vt, err, errlen);
        duckdb_destroy_logical_type(&kt);
        duckdb_destroy_logical_type(&vt);
        if (r) goto fail;
        buf_printf(&name, "MAP(%s, %s)", rt->child[0]->name, rt->child[1]->name);
        break;
    }
    default:
        if (!simple) {
            char *alias = duckdb_logical_type_get_alias(t);
            snprintf(err, errlen,
                     "a result column has type %s (DuckDB type %d), which cannot be sent; "
                     "CAST it to VARCHAR",
                     alias ? alias : "UNION/BIT/TIME WITH TIME ZONE/BIGNUM", (int)rt->id);
            if (alias) duckdb_free(alias);
            goto fail;
        }
        buf_puts(&name, simple);
    }
    if (!buf_cstr(&name)) goto oom;
    rt->name = name.p;
    return rt;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    buf_free(&name);
    result_type_free(rt);
    return NULL;
}

const char *result_type_name(const result_type *rt)
{
    return rt->name;
}

/* ---- scalars ---------------------------------------------------------- */

static void put_u128(buf *out, unsigned __int128 v)
{
    char d[48];
    int n = 0;
    do {
        d[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    while (n) buf_putc(out, d[--n]);
}

static void put_i128(buf *out, __int128 v)
{
    if (v < 0) {
        buf_putc(out, '-');
        put_u128(out, (unsigned __int128)(-(v + 1)) + 1);
    } else {
        put_u128(out, (unsigned __int128)v);
    }
}

static __int128 hugeint(duckdb_hugeint h)
{
    return (__int128)(((unsigned __int128)(uint64_t)h.upper << 64) | h.lower);
}

static void put_double(buf *out, double v, int single)
{
    if (!isfinite(v)) {
        buf_puts(out, "null");
        return;
    }
    char s[40];
    /* the shortest form that reads back the same */
    for (int prec = single ? 6 : 15; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, v);
        if (single ? (float)strtod(s, NULL) == (float)v : strtod(s, NULL) == v) break;
    }
    buf_puts(out, s);
}

static void put_decimal(buf *out, __int128 v, unsigned scale)
{
    if (!scale) {
        put_i128(out, v);
        return;
    }
    if (v < 0) buf_putc(out, '-');
    unsigned __int128 a = v < 0 ? (unsigned __int128)(-(v + 1)) + 1 : (unsigned __int128)v;
    unsigned __int128 p = 1;
    for (unsigned i = 0; i < scale; i++) p *= 10;
    put_u128(out, a / p);
    buf_putc(out, '.');
    char frac[48];
    unsigned __int128 f = a % p;
    for (int i = (int)scale - 1; i >= 0; i--) {
        frac[i] = (char)('0' + (int)(f % 10));
        f /= 10;
    }
    buf_append(out, frac, scale);
}

static void put_date(buf *out, duckdb_date d)
{
    if (d.days == INT32_MAX || d.days == -INT32_MAX) {
        buf_puts(out, d.days > 0 ? "infinity" : "-infinity");
        return;
    }
    duckdb_date_struct s = duckdb_from_date(d);
    if (s.year < 0)
        buf_printf(out, "%04d-%02d-%02d (BC)", 1 - s.year, s.month, s.day);
    else
        buf_printf(out, "%04d-%02d-%02d", s.year, s.month, s.day);
}

static void put_time_of_day(buf *out, int64_t micros)
{
    int64_t sec = micros / 1000000, frac = micros % 1000000;
    buf_printf(out, "%02d:%02d:%02d", (int)(sec / 3600), (int)(sec / 60 % 60), (int)(sec % 60));
    if (frac % 1000 == 0)
        buf_printf(out, ".%03d", (int)(frac / 1000));
    else
        buf_printf(out, ".%06d", (int)frac);
}

/* micros since the epoch, UTC */
static void put_timestamp(buf *out, int64_t micros)
{
    if (micros == INT64_MAX || micros == -INT64_MAX) {
        buf_puts(out, micros > 0 ? "infinity" : "-infinity");
        return;
    }
    int64_t days = micros / 86400000000LL, rest = micros % 86400000000LL;
    if (rest < 0) rest += 86400000000LL, days--;
    put_date(out, (duckdb_date){(int32_t)days});
    buf_putc(out, 'T');
    put_time_of_day(out, rest);
    buf_putc(out, 'Z');
}

static void put_interval(buf *out, duckdb_interval iv)
{
    /* ISO 8601 duration */
    buf_putc(out, 'P');
    if (iv.months) buf_printf(out, "%dM", iv.months);
    if (iv.days) buf_printf(out, "%dD", iv.days);
    if (iv.micros || (!iv.months && !iv.days)) {
        buf_putc(out, 'T');
        int64_t m = iv.micros;
        if (m < 0) buf_putc(out, '-'), m = -m;
        buf_printf(out, "%" PRId64, m / 1000000);
        if (m % 1000000) {
            char f[8];
            snprintf(f, sizeof f, "%06d", (int)(m % 1000000));
            int n = 6;
            while (n > 0 && f[n - 1] == '0') n--;
            buf_printf(out, ".%.*s", n, f);
        }
        buf_putc(out, 'S');
    }
}

static void put_uuid(buf *out, duckdb_hugeint h)
{
    uint64_t hi = (uint64_t)h.upper ^ (UINT64_C(1) << 63), lo = h.lower;
    buf_printf(out, "%08x-%04x-%04x-%04x-%012" PRIx64, (unsigned)(hi >> 32),
               (unsigned)(hi >> 16) & 0xffff, (unsigned)hi & 0xffff, (unsigned)(lo >> 48),
               lo & UINT64_C(0xffffffffffff));
}

static void put_blob_text(buf *out, const char *p, uint32_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (uint32_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            buf_putc(out, (char)c);
        } else {
            char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            buf_append(out, e, 4);
        }
    }
}

/* The length of s as buf_json_str writes it, quotes included. */
static size_t json_str_len(const char *s, size_t n)
{
    size_t len = n + 2;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t')
            len += 1;
        else if (c < 0x20)
            len += 5;
    }
    return len;
}

/* The length of a blob as put_blob_text writes it; as a JSON string when json. */
static size_t blob_len(const char *p, size_t n, int json)
{
    size_t len = json ? 2 : 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            len += json && c == '"' ? 2 : 1;
        else
            len += json ? 5 : 4; /* \xAB, its backslash doubled in JSON */
    }
    return len;
}

static duckdb_string_t *string_at(duckdb_vector v, idx_t row)
{
    return (duckdb_string_t *)duckdb_vector_get_data(v) + row;
}

static int is_valid(duckdb_vector v, idx_t row)
{
    uint64_t *val = duckdb_vector_get_validity(v);
    return !val || duckdb_validity_row_is_valid(val, row);
}

static int64_t fixed_int(duckdb_vector v, duckdb_type internal, idx_t row)
{
    void *d = duckdb_vector_get_data(v);
    switch (internal) {
    case DUCKDB_TYPE_UTINYINT: return ((uint8_t *)d)[row];
    case DUCKDB_TYPE_USMALLINT: return ((uint16_t *)d)[row];
    case DUCKDB_TYPE_UINTEGER: return ((uint32_t *)d)[row];
    case DUCKDB_TYPE_SMALLINT: return ((int16_t *)d)[row];
    case DUCKDB_TYPE_INTEGER: return ((int32_t *)d)[row];
    default: return ((int64_t *)d)[row];
    }
}

/* A number or boolean; -1 for a type result_type_new refuses. */
static int put_number(buf *out, const result_type *rt, duckdb_vector v, idx_t row)
{
    void *d = duckdb_vector_get_data(v);
    switch (rt->id) {
    case DUCKDB_TYPE_BOOLEAN: buf_puts(out, ((bool *)d)[row] ? "true" : "false"); break;
    case DUCKDB_TYPE_TINYINT: buf_printf(out, "%d", ((int8_t *)d)[row]); break;
    case DUCKDB_TYPE_SMALLINT: buf_printf(out, "%d", ((int16_t *)d)[row]); break;
    case DUCKDB_TYPE_INTEGER: buf_printf(out, "%d", ((int32_t *)d)[row]); break;
    case DUCKDB_TYPE_BIGINT: buf_printf(out, "%" PRId64, ((int64_t *)d)[row]); break;
    case DUCKDB_TYPE_UTINYINT: buf_printf(out, "%u", ((uint8_t *)d)[row]); break;
    case DUCKDB_TYPE_USMALLINT: buf_printf(out, "%u", ((uint16_t *)d)[row]); break;
    case DUCKDB_TYPE_UINTEGER: buf_printf(out, "%u", ((uint32_t *)d)[row]); break;
    case DUCKDB_TYPE_UBIGINT: buf_printf(out, "%" PRIu64, ((uint64_t *)d)[row]); break;
    case DUCKDB_TYPE_HUGEINT: put_i128(out, hugeint(((duckdb_hugeint *)d)[row])); break;
    case DUCKDB_TYPE_UHUGEINT: {
        duckdb_uhugeint u = ((duckdb_uhugeint *)d)[row];
        put_u128(out, ((unsigned __int128)u.upper << 64) | u.lower);
        break;
    }
    case DUCKDB_TYPE_FLOAT: put_double(out, ((float *)d)[row], 1); break;
    case DUCKDB_TYPE_DOUBLE: put_double(out, ((double *)d)[row], 0); break;
    case DUCKDB_TYPE_DECIMAL: {
        __int128 x = rt->internal == DUCKDB_TYPE_HUGEINT ? hugeint(((duckdb_hugeint *)d)[row])
                                                         : fixed_int(v, rt->internal, row);
        put_decimal(out, x, rt->scale);
        break;
    }
    default: return -1; /* refused by result_type_new */
    }
    return 0;
}

/* A VARCHAR (JSON embedded as it is) or a BLOB (as text); RESULT_OVER past limit. */
static int put_string(buf *out, const result_type *rt, duckdb_vector v, idx_t row, int json,
                      size_t limit)
{
    duckdb_string_t *s = string_at(v, row);
    const char *p = duckdb_string_t_data(s);
    uint32_t n = duckdb_string_t_length(*s);
    size_t need = rt->id == DUCKDB_TYPE_BLOB ? blob_len(p, n, json)
                  : rt->json || !json        ? n
                                             : json_str_len(p, n);
    if (out->len + need > limit) return RESULT_OVER;
    if (rt->id == DUCKDB_TYPE_BLOB) {
        if (!json) {
            put_blob_text(out, p, n);
        } else {
            buf b = BUF_INIT;
            put_blob_text(&b, p, n);
            buf_json_str(out, b.p ? b.p : "", b.len);
            buf_free(&b);
        }
    } else if (rt->json || !json) {
        buf_append(out, p, n);
    } else {
        buf_json_str(out, p, n);
    }
    return 0;
}

static void put_enum(buf *out, const result_type *rt, duckdb_vector v, idx_t row, int json)
{
    int64_t i = fixed_int(v, rt->internal, row);
    const char *s = i >= 0 && (idx_t)i < rt->n_enum ? rt->enum_values[i] : "";
    if (json)
        buf_json_str(out, s, strlen(s));
    else
        buf_puts(out, s);
}

/* A UUID, a date, a time, a timestamp or an interval: a string in JSON. */
static void put_temporal(buf *out, const result_type *rt, duckdb_vector v, idx_t row, int json)
{
    void *d = duckdb_vector_get_data(v);
    if (json) buf_putc(out, '"');
    switch (rt->id) {
    case DUCKDB_TYPE_UUID: put_uuid(out, ((duckdb_hugeint *)d)[row]); break;
    case DUCKDB_TYPE_DATE: put_date(out, ((duckdb_date *)d)[row]); break;
    case DUCKDB_TYPE_TIME: put_time_of_day(out, ((duckdb_time *)d)[row].micros); break;
    case DUCKDB_TYPE_TIMESTAMP_S: {
        int64_t s = ((int64_t *)d)[row];
        put_timestamp(out, s == INT64_MAX || s == -INT64_MAX ? s : s * 1000000);
        break;
    }
    case DUCKDB_TYPE_TIMESTAMP_MS: {
        int64_t ms = ((int64_t *)d)[row];
        put_timestamp(out, ms == INT64_MAX || ms == -INT64_MAX ? ms : ms * 1000);
        break;
    }
    case DUCKDB_TYPE_TIMESTAMP_NS: {
        int64_t ns = ((int64_t *)d)[row];
        put_timestamp(out, ns == INT64_MAX || ns == -INT64_MAX ? ns : ns / 1000);
        break;
    }
    case DUCKDB_TYPE_INTERVAL: put_interval(out, ((duckdb_interval *)d)[row]); break;
    default: put_timestamp(out, ((int64_t *)d)[row]); break;
    }
    if (json) buf_putc(out, '"');
}

static int put_value(buf *out, const result_type *rt, duckdb_vector v, idx_t row, int json,
                     size_t limit);

/* The len entries from off of a MAP's child vector, as a JSON object. */
static int put_map(buf *out, const result_type *rt, duckdb_vector child, idx_t off, idx_t len,
                   size_t limit)
{
    duckdb_vector keys = duckdb_struct_vector_get_child(child, 0);
    duckdb_vector vals = duckdb_struct_vector_get_child(child, 1);
    buf_putc(out, '{');
    for (idx_t i = 0; i < len; i++) {
        if (i) buf_putc(out, ',');
        int r = 0;
        if (rt->child[0]->id == DUCKDB_TYPE_VARCHAR && !rt->child[0]->json) {
            r = put_value(out, rt->child[0], keys, off + i, 1, limit);
        } else { /* a JSON object key is a string: the key's text */
            buf k = BUF_INIT;
            if (is_valid(keys, off + i))
                r = put_value(&k, rt->child[0], keys, off + i, 0,
                              out->len < limit ? limit - out->len : 0);
            if (!r && out->len + json_str_len(k.p ? k.p : "", k.len) > limit) r = RESULT_OVER;
            if (!r) buf_json_str(out, k.p ? k.p : "", k.len);
            buf_free(&k);
        }
        if (r) return r;
        buf_putc(out, ':');
        if ((r = result_json(out, rt->child[1], vals, off + i, limit))) return r;
    }
    buf_putc(out, '}');
    return 0;
}

/* A LIST, an ARRAY (a JSON array) or a MAP (a JSON object). */
static int put_list(buf *out, const result_type *rt, duckdb_vector v, idx_t row, size_t limit)
{
    idx_t off, len;
    duckdb_vector child;
    if (rt->id == DUCKDB_TYPE_ARRAY) {
        off = row * rt->array_size;
        len = rt->array_size;
        child = duckdb_array_vector_get_child(v);
    } else {
        duckdb_list_entry e = ((duckdb_list_entry *)duckdb_vector_get_data(v))[row];
        off = e.offset;
        len = e.length;
        child = duckdb_list_vector_get_child(v);
    }
    if (rt->id == DUCKDB_TYPE_MAP) return put_map(out, rt, child, off, len, limit);
    buf_putc(out, '[');
    for (idx_t i = 0; i < len; i++) {
        if (i) buf_putc(out, ',');
        int r = result_json(out, rt->child[0], child, off + i, limit);
        if (r) return r;
    }
    buf_putc(out, ']');
    return 0;
}

static int put_struct(buf *out, const result_type *rt, duckdb_vector v, idx_t row, size_t limit)
{
    buf_putc(out, '{');
    for (idx_t i = 0; i < rt->n; i++) {
        if (i) buf_putc(out, ',');
        buf_json_str(out, rt->names[i], strlen(rt->names[i]));
        buf_putc(out, ':');
        int r = result_json(out, rt->child[i], duckdb_struct_vector_get_child(v, i), row, limit);
        if (r) return r;
    }
    buf_putc(out, '}');
    return 0;
}

/*
 * Renders one valid value. json: 1 for a JSON value, 0 for text (strings raw,
 * nested values still JSON). Returns as result_json does.
 */
static int put_value(buf *out, const result_type *rt, duckdb_vector v, idx_t row, int json,
                     size_t limit)
{
    int r = 0;
    switch (rt->id) {
    case DUCKDB_TYPE_VARCHAR:
    case DUCKDB_TYPE_BLOB: r = put_string(out, rt, v, row, json, limit); break;
    case DUCKDB_TYPE_ENUM: put_enum(out, rt, v, row, json); break;
    case DUCKDB_TYPE_SQLNULL: buf_puts(out, json ? "null" : ""); break;
    case DUCKDB_TYPE_UUID:
    case DUCKDB_TYPE_DATE:
    case DUCKDB_TYPE_TIME:
    case DUCKDB_TYPE_TIMESTAMP:
    case DUCKDB_TYPE_TIMESTAMP_S:
    case DUCKDB_TYPE_TIMESTAMP_MS:
    case DUCKDB_TYPE_TIMESTAMP_NS:
    case DUCKDB_TYPE_TIMESTAMP_TZ:
    case DUCKDB_TYPE_INTERVAL: put_temporal(out, rt, v, row, json); break;
    case DUCKDB_TYPE_LIST:
    case DUCKDB_TYPE_ARRAY:
    case DUCKDB_TYPE_MAP: r = put_list(out, rt, v, row, limit); break;
    case DUCKDB_TYPE_STRUCT: r = put_struct(out, rt, v, row, limit); break;
    default: r = put_number(out, rt, v, row); break;
    }
    if (r) return r;
    return out->p ? 0 : -1;
}

int result_json(buf *out, const result_type *rt, duckdb_vector v, idx_t row, size_t limit)
{
    int r = is_valid(v, row) ? put_value(out, rt, v, row, 1, limit) : buf_puts(out, "null");
    return r ? r : out->len > limit ? RESULT_OVER : 0;
}

int result_csv(buf *out, const result_type *rt, duckdb_vector v, idx_t row, size_t limit)
{
    if (!is_valid(v, row)) return 0;
    size_t start = out->len;
    int r = put_value(out, rt, v, row, 0, limit);
    if (r) return r;
    int quote = 0;
    size_t quotes = 0;
    for (size_t i = start; i < out->len; i++) {
        char c = out->p[i];
        if (c == '"') quotes++;
        if (c == '"' || c == ',' || c == '\n' || c == '\r') quote = 1;
    }
    if (!quote) return out->len > limit ? RESULT_OVER : 0;
    size_t n = out->len - start;
    if (out->len + quotes + 2 > limit) return RESULT_OVER;
    if (buf_reserve(out, quotes + 2)) return -1;
    /* shift right, doubling quotes, from the end */
    char *p = out->p + start;
    size_t w = n + quotes + 2;
    p[--w] = '"';
    for (size_t i = n; i-- > 0;) {
        p[--w] = p[i];
        if (p[i] == '"') p[--w] = '"';
    }
    p[--w] = '"';
    out->len = start + n + quotes + 2;
    return 0;
}
