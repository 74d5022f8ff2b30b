/* check.h: the few helpers the C test programs share. A failed check prints where and
 * why (with llmrt_last_error) and exits 1; the Rust tests read the exit code. */
#ifndef LLMRT_TEST_CHECK_H
#define LLMRT_TEST_CHECK_H

#include "llmrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, " (last error: %s)\n", llmrt_last_error());        \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

/* A call that must succeed. */
#define OK(call)                                                                \
    do {                                                                        \
        llmrt_status st_ = (call);                                              \
        CHECK(st_ == LLMRT_OK, "%s gave %s", #call, llmrt_status_name(st_));    \
    } while (0)

/* A call that must fail with `code` and leave a message. */
#define FAILS(code, call)                                                       \
    do {                                                                        \
        llmrt_status st_ = (call);                                              \
        CHECK(st_ == (code), "%s gave %s, wanted %s", #call, llmrt_status_name(st_), \
              llmrt_status_name(code));                                         \
        CHECK(llmrt_last_error()[0] != '\0', "%s left no message", #call);      \
    } while (0)

/* A growing byte string. */
typedef struct {
    char *data;
    size_t len, cap;
} text_buf;

static inline void text_push(text_buf *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *p = (char *)realloc(t->data, cap);
        CHECK(p != NULL, "out of memory");
        t->data = p;
        t->cap = cap;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

static inline void text_free(text_buf *t) {
    free(t->data);
    t->data = NULL;
    t->len = t->cap = 0;
}

/* Whether s[..n] is well-formed UTF-8 (no surrogates, no overlongs). */
static inline int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { k = 1; min = 0x80; c &= 0x1F; }
        else if ((c & 0xF0) == 0xE0) { k = 2; min = 0x800; c &= 0x0F; }
        else if ((c & 0xF8) == 0xF0) { k = 3; min = 0x10000; c &= 0x07; }
        else return 0;
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xC0) != 0x80) return 0;
            c = (c << 6) | (s[i + j] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
        i += k + 1;
    }
    return 1;
}

/* A callback that appends each piece to a text_buf and checks it is whole UTF-8,
 * NUL-terminated. */
static inline int32_t collect_piece(const char *piece, size_t len, void *user_data) {
    CHECK(piece != NULL && piece[len] == '\0', "piece not NUL-terminated");
    CHECK(utf8_valid((const unsigned char *)piece, len), "piece is not whole UTF-8");
    text_push((text_buf *)user_data, piece, len);
    return 0;
}

/* Reads a whole file. */
static inline unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s", path);
    CHECK(fseek(f, 0, SEEK_END) == 0, "seek");
    long n = ftell(f);
    CHECK(n >= 0, "tell");
    CHECK(fseek(f, 0, SEEK_SET) == 0, "seek");
    unsigned char *buf = (unsigned char *)malloc((size_t)n + 1);
    CHECK(buf != NULL, "out of memory");
    CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n, "read %s", path);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

#endif
