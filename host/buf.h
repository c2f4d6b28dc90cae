/* buf.h - a growable byte buffer for building log lines, JSON and replies. */
#ifndef HS_BUF_H
#define HS_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "hotswap.h"

/* data is always NUL-terminated (when non-NULL). After an allocation
 * failure the buffer keeps what it had and oom is set; later appends are
 * ignored, so callers check oom once at the end. */
typedef struct hs_buf {
  char *data; /* owned; NULL until the first append */
  size_t len; /* bytes used, without the terminating NUL */
  size_t cap; /* bytes allocated */
  int oom;    /* 1 after any allocation failure */
} hs_buf;

void hs_buf_init(hs_buf *b);
/* Frees the data; b can be reused after hs_buf_init(). */
void hs_buf_free(hs_buf *b);
/* Empties b, keeping its allocation. */
void hs_buf_reset(hs_buf *b);
/* Appends n bytes. Returns 0 or HS_ENOMEM. */
int hs_buf_append(hs_buf *b, const void *p, size_t n);
int hs_buf_puts(hs_buf *b, const char *s);
int hs_buf_printf(hs_buf *b, const char *fmt, ...) HS_PRINTF_(2, 3);
int hs_buf_vprintf(hs_buf *b, const char *fmt, va_list ap);
/* Appends s as a quoted JSON string, escaping quotes, backslashes and
 * control characters; NULL appends null. Returns 0 or HS_ENOMEM. */
int hs_buf_json_str(hs_buf *b, const char *s);

/* The JSON string form of byte c, written to esc: returns its length, 1
 * when c stands for itself (bytes >= 0x80 too: UTF-8 passes through), else
 * 2 ("\n") or 6 ("\u001b"). Allocates nothing (the log uses it). */
size_t hs_buf_json_escape(unsigned char c, char esc[6]);

#endif /* HS_BUF_H */
