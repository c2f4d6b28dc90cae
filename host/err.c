/* err.c - names and messages of hotswap's codes, and error details. */
#include "err.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

const char *hs_strerror(int code) {
  static char unknown[64];

  switch (code) {
  case HS_OK:
    return "success";
#define HS_STRERROR_(name, value, msg)                                         \
  case HS_##name:                                                              \
    return msg;
    HS_ERRNO_MAP(HS_STRERROR_)
#undef HS_STRERROR_
  default:
    break;
  }
  /* Any other negative errno value: the C library knows its text (and says
   * "Unknown error N" for numbers it does not know). */
  if (code < 0 && code != INT_MIN)
    return strerror(-code);
  snprintf(unknown, sizeof(unknown), "unknown error %d", code);
  return unknown;
}

const char *hs_err_name(int code) {
  switch (code) {
  case HS_OK:
    return "HS_OK";
#define HS_ERR_NAME_(name, value, msg)                                         \
  case HS_##name:                                                              \
    return "HS_" #name;
    HS_ERRNO_MAP(HS_ERR_NAME_)
#undef HS_ERR_NAME_
  default:
    return "HS_EUNKNOWN";
  }
}

void hs_error_clear(hs_error *e) {
  if (e == NULL)
    return;
  e->code = 0;
  e->stage[0] = '\0';
  e->msg[0] = '\0';
}

int hs_error_setv(hs_error *e, int code, const char *stage, const char *fmt,
                  va_list ap) {
  char msg[sizeof(e->msg)];
  char st[sizeof(e->stage)];

  if (e == NULL)
    return code;
  if (code == 0) {
    hs_error_clear(e);
    return 0;
  }
  /* Format into locals first: callers may pass e->msg or e->stage as
   * arguments ("%s", err->msg) to wrap an earlier error. */
  snprintf(st, sizeof(st), "%s", stage != NULL ? stage : "");
  if (fmt != NULL)
    vsnprintf(msg, sizeof(msg), fmt, ap);
  else
    msg[0] = '\0';
  e->code = code;
  memcpy(e->stage, st, sizeof(st));
  memcpy(e->msg, msg, sizeof(msg));
  return code;
}

int hs_error_set(hs_error *e, int code, const char *stage, const char *fmt,
                 ...) {
  va_list ap;
  int r;

  va_start(ap, fmt);
  r = hs_error_setv(e, code, stage, fmt, ap);
  va_end(ap);
  return r;
}
