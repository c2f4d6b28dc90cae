/* err.h - hotswap's error codes (from HS_ERRNO_MAP) and error details. */
#ifndef HS_ERR_H
#define HS_ERR_H

#include <stdarg.h>

#include "hotswap.h"

/* Returns the message of an hs code ("incompatible plugin ABI"); for a
 * negative errno value not in the table, strerror()'s text. Never NULL; the
 * string is static. */
const char *hs_strerror(int code);

/* Returns the code's name without prefix ("HS_EABI"), or "HS_EUNKNOWN". */
const char *hs_err_name(int code);

/*
 * An error with the details that travel with it: the stage that failed
 * (copy, elf, open, entry, abi, migrate, load, selftest, unload, swap,
 * sandbox) and one sentence naming the file, symbol, version or signal.
 */
typedef struct hs_error {
  int code;        /* 0 or a negative hs code */
  char stage[16];  /* "" when no stage applies */
  char msg[512];   /* "" when code is 0 */
} hs_error;

/* Clears e to "no error". */
void hs_error_clear(hs_error *e);

/* Sets e to code, stage and the printf-formatted message. Returns code, so
 * that callers can write: return hs_error_set(err, HS_EABI, "abi", ...). */
int hs_error_set(hs_error *e, int code, const char *stage, const char *fmt,
                 ...) HS_PRINTF_(4, 5);
int hs_error_setv(hs_error *e, int code, const char *stage, const char *fmt,
                  va_list ap);

#endif /* HS_ERR_H */
