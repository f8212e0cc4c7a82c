#include "utf8.h"

#include <string.h>

void sprout_utf8_cut(char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max) {
        return;
    }
    n = max;
    /* Back up over continuation bytes (10xxxxxx) to the start of the character that would be
     * split, and cut before it. */
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
        n--;
    }
    s[n] = '\0';
}

void sprout_utf8_copy(char *dst, size_t cap, const char *src)
{
    if (cap == 0) {
        return;
    }
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) {
            n--;
        }
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}
