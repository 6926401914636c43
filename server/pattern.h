/*
 * pattern.h - a subscription's event type patterns: dot-separated segments,
 * where a segment "*" is exactly one segment and "**" any number of them,
 * none included. "collection.*" is every collection.insert/update/delete;
 * "webhook.github.**" is webhook.github and everything under it; "*.call" and
 * "**.push" are patterns with a leading wildcard (the original never
 * delivered to those); "**" is every event. Other segments match themselves
 * only. A pattern list is comma-separated and matches a type when any of its
 * patterns does.
 *
 * Matching is linear in the type for patterns with one "**", and bounded by
 * segments(pattern) x segments(type) steps in general (the classic wildcard
 * walk, over segments instead of characters).
 */
#ifndef EVENTS_PATTERN_H
#define EVENTS_PATTERN_H

#include <stddef.h>

#define PATTERN_MAX_LIST  16  /* patterns in a list */
#define PATTERN_MAX_BYTES 256 /* bytes of one pattern */

/*
 * 0 if list is a valid pattern list: 1 to PATTERN_MAX_LIST non-empty patterns
 * of at most PATTERN_MAX_BYTES, each of non-empty segments of [a-z0-9_-] (what
 * event types are made of, lib/event.h)
 * or "*" or "**". Else -1 with the reason in err ("pattern 2 (`a..b`): an
 * empty segment").
 */
int pattern_check(const char *list, char *err, size_t errlen);

/* 1 if type[0..n) matches the list (which pattern_check accepted). */
int pattern_match(const char *list, const char *type, size_t n);

#endif
