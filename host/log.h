/* log.h - the host's log: one line per event, text or JSON, on one fd. */
#ifndef HS_LOG_H
#define HS_LOG_H

#include <stdarg.h>

#include "hotswap.h"

typedef enum { HS_LOG_TEXT = 0, HS_LOG_JSON = 1 } hs_log_format;

/*
 * Configures the log. Lines at or above min_level go to fd (normally 2),
 * each written with a single write(2) so that lines of the host and of its
 * sandbox children never interleave. Colours are used in text format when
 * fd is a terminal and NO_COLOR is unset. May be called again at any time.
 *
 * Text:  12:00:01.234 info  counter reloaded: version 1.1, generation 2, ...
 *        TIME LEVEL PLUGIN EVENT: MESSAGE   (PLUGIN is "hotswap" for the host)
 * JSON:  {"time":"2026-11-25T12:00:01.234Z","level":"info","pid":123,
 *         "plugin":"counter","event":"reloaded","msg":"version 1.1, ..."}
 *
 * Events: started, loaded, reloaded, rejected, unloaded, warning, error,
 * log (a plugin's own line), sandbox (a plugin's line from the sandbox),
 * stopped, and any other single word.
 */
void hs_log_init(hs_log_format format, hs_log_level min_level, int fd);

/* Writes one line. plugin may be NULL (the host itself). */
void hs_log(hs_log_level level, const char *plugin, const char *event,
            const char *fmt, ...) HS_PRINTF_(4, 5);
void hs_logv(hs_log_level level, const char *plugin, const char *event,
             const char *fmt, va_list ap);

/* Parses "debug", "info", "warn", "error". Returns 0 or HS_EINVAL. */
int hs_log_level_parse(const char *s, hs_log_level *out);
/* Parses "text", "json". Returns 0 or HS_EINVAL. */
int hs_log_format_parse(const char *s, hs_log_format *out);

#endif /* HS_LOG_H */
