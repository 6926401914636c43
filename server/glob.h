/*
 * glob.h - event type patterns: the comma-separated globs of GET /tail?type=
 * and GET /recent?type=.
 *
 * A pattern is '*' (any run of characters), '?' (any one character) and
 * literal characters, matched against a whole event type ("rpc.call",
 * "collection.*", "ws.*,lifecycle.*"). A list of them matches a type when
 * any does; an empty list (absent or empty argument) matches every type.
 * A pattern is compiled once into a bit-parallel automaton (glob.c), so that
 * matching is one pass over the type whatever the pattern.
 */
#ifndef EVENTS_GLOB_H
#define EVENTS_GLOB_H

#include <stddef.h>
#include <stdint.h>

/* The longest pattern the automaton takes (the limits of its users are lower). */
#define GLOB_PATTERN_BYTES_MAX 1024

typedef struct glob {
    int m, words;
    uint64_t *mask; /* glob.c's tables */
} glob;

/* A compiled comma-separated list; zeroed: matches every type. */
typedef struct glob_list {
    glob *g;
    size_t n;
} glob_list;

/*
 * 0 if the list (may be NULL) has at most max_patterns non-empty patterns of
 * at most max_bytes bytes each; else -1 with the reason in err, naming "type"
 * and the flags (the limits are /tail's, --tail-max-patterns and
 * --tail-max-pattern-bytes).
 */
int glob_list_check(const char *patterns, int max_patterns, size_t max_bytes, char *err,
                    size_t errlen);

/* Compiles patterns (NULL or empty: every type) into l. 0, or -1 (too long, out of memory). */
int glob_list_compile(const char *patterns, glob_list *l);
/* 1 if type[0..n) matches l. */
int glob_list_match(const glob_list *l, const char *type, size_t n);
void glob_list_free(glob_list *l);

#endif
