/*
 * jscan.h - a zero-copy validating JSON scanner.
 *
 * The ingest path never builds a tree: it only needs to know that an event is
 * well-formed JSON, where its top-level members start and end, and a few facts
 * about them. jscan walks the bytes once, iteratively (an explicit bit stack,
 * no recursion), and reports two kinds of problem:
 *
 *   - a syntax error (err/err_at): the input is not JSON and scanning stops;
 *   - a defect (bad/bad_at): the text is well-formed, so the scanner knows
 *     where the value ends and goes on, but the value is not acceptable:
 *     invalid UTF-8, a raw control character or an invalid escape in a
 *     string, a lone surrogate, or \u0000. Only the first defect is kept.
 *
 * This split is what lets one bad event in a batch be rejected on its own
 * while its neighbours are accepted.
 *
 * Grammar: RFC 8259, strictly (no comments, no trailing commas, no NaN).
 * Nesting deeper than JSCAN_MAX_NEST is a syntax error; any lower limit (the
 * event model's 64) is the caller's to check against jscan.depth.
 */
#ifndef EVENTS_JSCAN_H
#define EVENTS_JSCAN_H

#include <stddef.h>

#define JSCAN_MAX_NEST 4096

enum jtype { J_NONE, J_OBJ, J_ARR, J_STR, J_NUM, J_TRUE, J_FALSE, J_NULL };

typedef struct jscan {
    const char *err;    /* syntax error message, or NULL */
    const char *err_at; /* where it was found */
    const char *bad;    /* first defect message, or NULL */
    const char *bad_at;
    unsigned defects; /* every defect counted, so a caller can tell where new ones appear */
    unsigned depth;   /* deepest container nesting of the last jscan_value (scalar: 0) */
    unsigned ws;      /* set when whitespace outside strings was skipped */
    unsigned escaped; /* set by jscan_string when the string had a backslash */
} jscan;

/* Skips JSON whitespace. */
const char *jscan_ws(jscan *s, const char *p, const char *end);

/*
 * Scans a string; p points at its opening quote. Returns the position after
 * the closing quote, or NULL on a syntax error (unterminated string).
 */
const char *jscan_string(jscan *s, const char *p, const char *end);

/*
 * Scans one complete value starting at p (no leading whitespace). Returns the
 * position just after it and its type in *type, or NULL on a syntax error.
 * Sets s->depth to the value's nesting depth.
 */
const char *jscan_value(jscan *s, const char *p, const char *end, enum jtype *type);

/*
 * Decodes the content of a string token [p, end) (quotes excluded) that
 * jscan_string accepted without a defect, into out (at most cap bytes).
 * Returns the decoded length, or (size_t)-1 if it does not fit or an escape
 * is malformed (it never reads outside [p, end)).
 */
size_t jscan_unescape(const char *p, const char *end, char *out, size_t cap);

/* 1 if p[0..n) is valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF). */
int jscan_utf8_valid(const char *p, size_t n);

/*
 * Copies the JSON text [p, end) to out without the whitespace outside
 * strings. out must hold end - p bytes. Returns the number of bytes written.
 */
size_t jscan_minify(const char *p, const char *end, char *out);

#endif
