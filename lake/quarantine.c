/*
 * quarantine.c - the quarantine line of a refused record (quarantine.h).
 */
#include "quarantine.h"
#include "codec.h"
#include "evtime.h"
#include "jscan.h"
#include "ulid.h"

#include <stdio.h>
#include <string.h>

/* The length of raw[0..n) as the content of a JSON string (buf_json_str's escapes). */
static size_t escaped_len(const char *raw, size_t n)
{
    size_t len = n;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t')
            len += 1;
        else if (c < 0x20)
            len += 5;
    }
    return len;
}

int lake_quarantine_raw_is_text(const char *raw, size_t n)
{
    return !memchr(raw, 0, n) && escaped_len(raw, n) <= 2 * n && jscan_utf8_valid(raw, n);
}

int lake_quarantine_line(buf *out, const lake_quarantine_rec *r, size_t *id_off, char *err,
                         size_t errlen)
{
    size_t mark = out->len;
    char id[ULID_LEN + 1], at[EVTIME_LEN + 1];
    ulid_make(r->received_ms, id);
    evtime_format(r->received_ms, at);
    int fail = buf_puts(out, "{\"id\":\"");
    *id_off = out->len;
    fail |= buf_printf(out, "%s\",\"receivedAt\":\"%s\",\"requestId\":", id, at);
    fail |= buf_json_str(out, r->request_id, strlen(r->request_id));
    fail |= buf_printf(out, ",\"index\":%zu,\"class\":", r->index);
    fail |= buf_json_str(out, r->reason_class, strlen(r->reason_class));
    fail |= buf_puts(out, ",\"reason\":");
    fail |= buf_json_str(out, r->reason, strlen(r->reason));
    fail |= buf_puts(out, ",\"token\":");
    fail |= r->token ? buf_json_str(out, r->token, strlen(r->token)) : buf_puts(out, "null");
    fail |= buf_puts(out, ",\"route\":");
    fail |= buf_json_str(out, r->route, strlen(r->route));
    if (lake_quarantine_raw_is_text(r->raw, r->raw_len)) {
        fail |= buf_puts(out, ",\"raw\":");
        fail |= buf_json_str(out, r->raw, r->raw_len);
    } else {
        fail |= buf_puts(out, ",\"raw\":null,\"rawBase64\":\"");
        fail |= base64_encode(out, r->raw, r->raw_len);
        fail |= buf_putc(out, '"');
    }
    fail |= buf_puts(out, "}\n");
    if (fail) {
        out->len = mark;
        snprintf(err, errlen, "quarantine: out of memory for a line of %zu bytes", r->raw_len);
        return -1;
    }
    return 0;
}
