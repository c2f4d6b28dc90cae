/* buf.c - a growable, always NUL-terminated byte buffer. */
#include "buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HS_BUF_MIN_CAP 64

void hs_buf_init(hs_buf *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->oom = 0;
}

void hs_buf_free(hs_buf *b) {
  free(b->data);
  hs_buf_init(b);
}

/* Empties b and clears oom, so that a reset buffer starts a fresh line. */
void hs_buf_reset(hs_buf *b) {
  b->len = 0;
  b->oom = 0;
  if (b->data != NULL)
    b->data[0] = '\0';
}

/* Makes room for n more bytes plus the NUL. Returns 0 or HS_ENOMEM (and
 * sets oom). */
static int buf_reserve(hs_buf *b, size_t n) {
  size_t need, cap;
  char *p;

  if (b->oom)
    return HS_ENOMEM;
  if (n > SIZE_MAX - 1 - b->len)
    goto oom;
  need = b->len + n + 1;
  if (need <= b->cap)
    return 0;
  cap = b->cap < HS_BUF_MIN_CAP ? HS_BUF_MIN_CAP : b->cap;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  p = realloc(b->data, cap);
  if (p == NULL)
    goto oom;
  if (b->data == NULL)
    p[0] = '\0';
  b->data = p;
  b->cap = cap;
  return 0;
oom:
  b->oom = 1;
  return HS_ENOMEM;
}

int hs_buf_append(hs_buf *b, const void *p, size_t n) {
  if (buf_reserve(b, n) != 0)
    return HS_ENOMEM;
  if (n > 0)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int hs_buf_puts(hs_buf *b, const char *s) {
  return hs_buf_append(b, s, strlen(s));
}

int hs_buf_vprintf(hs_buf *b, const char *fmt, va_list ap) {
  va_list aq;
  size_t room;
  int n;

  if (buf_reserve(b, 0) != 0)
    return HS_ENOMEM;
  room = b->cap - b->len;
  va_copy(aq, ap);
  n = vsnprintf(b->data + b->len, room, fmt, aq);
  va_end(aq);
  if (n < 0) {
    b->data[b->len] = '\0';
    return HS_EINVAL; /* an encoding error; nothing is appended */
  }
  if ((size_t)n >= room) {
    if (buf_reserve(b, (size_t)n) != 0) {
      b->data[b->len] = '\0';
      return HS_ENOMEM;
    }
    va_copy(aq, ap);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, aq);
    va_end(aq);
  }
  b->len += (size_t)n;
  return 0;
}

int hs_buf_printf(hs_buf *b, const char *fmt, ...) {
  va_list ap;
  int r;

  va_start(ap, fmt);
  r = hs_buf_vprintf(b, fmt, ap);
  va_end(ap);
  return r;
}

size_t hs_buf_json_escape(unsigned char c, char esc[6]) {
  static const char hex[] = "0123456789abcdef";

  esc[0] = '\\';
  switch (c) {
  case '"': esc[1] = '"'; return 2;
  case '\\': esc[1] = '\\'; return 2;
  case '\b': esc[1] = 'b'; return 2;
  case '\f': esc[1] = 'f'; return 2;
  case '\n': esc[1] = 'n'; return 2;
  case '\r': esc[1] = 'r'; return 2;
  case '\t': esc[1] = 't'; return 2;
  default:
    if (c >= 0x20 && c != 0x7f) {
      esc[0] = (char)c;
      return 1;
    }
    memcpy(esc + 1, "u00", 3);
    esc[4] = hex[c >> 4];
    esc[5] = hex[c & 0xf];
    return 6;
  }
}

int hs_buf_json_str(hs_buf *b, const char *s) {
  const unsigned char *p, *run;
  char esc[6];
  size_t n;

  if (s == NULL)
    return hs_buf_puts(b, "null");
  hs_buf_append(b, "\"", 1);
  /* Copy runs of plain bytes at once. */
  for (run = p = (const unsigned char *)s; *p != '\0'; p++) {
    if ((n = hs_buf_json_escape(*p, esc)) == 1)
      continue;
    hs_buf_append(b, run, (size_t)(p - run));
    hs_buf_append(b, esc, n);
    run = p + 1;
  }
  hs_buf_append(b, run, (size_t)(p - run));
  return hs_buf_append(b, "\"", 1);
}
