/* Cutting strings without splitting a UTF-8 character: protobuf strings must be valid UTF-8,
 * and a server refuses a frame that is not (nanopb does not check what it encodes). */
#ifndef SPROUT_UTF8_H
#define SPROUT_UTF8_H

#include <stddef.h>

/* sprout_utf8_cut shortens the NUL-terminated s to at most max bytes (plus the NUL), ending on
 * a character boundary. */
void sprout_utf8_cut(char *s, size_t max);

/* sprout_utf8_copy copies src into dst[cap] (NUL-terminated), cut on a character boundary. */
void sprout_utf8_copy(char *dst, size_t cap, const char *src);

#endif
