/* log.c - the host's log: one line per event, written with one write(2). */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

/* One line, newline included. At most PIPE_BUF (4096 on Linux) so that a
 * line written to a pipe is never split by another writer's line. */
#define HS_LOG_LINE_MAX 4096
/* Room always kept for the end of a line: "..." + "\"}" + "\n". */
#define HS_LOG_TAIL 8

static struct {
  hs_log_format format;
  hs_log_level min_level;
  int fd;
  int colour;
} g_log = {HS_LOG_TEXT, HS_LOG_INFO, 2, 0};

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const level_colours[] = {
    "\x1b[2m",    /* debug: dim */
    "\x1b[32m",   /* info: green */
    "\x1b[33m",   /* warn: yellow */
    "\x1b[1;31m", /* error: bold red */
};
#define HS_COLOUR_RESET "\x1b[0m"

void hs_log_init(hs_log_format format, hs_log_level min_level, int fd) {
  const char *no_colour = getenv("NO_COLOR");

  g_log.format = format == HS_LOG_JSON ? HS_LOG_JSON : HS_LOG_TEXT;
  g_log.min_level = min_level;
  g_log.fd = fd;
  /* https://no-color.org: set and non-empty disables colour. */
  g_log.colour = format == HS_LOG_TEXT && isatty(fd) &&
                 (no_colour == NULL || no_colour[0] == '\0');
}

/* A fixed-size line being built. Appends past lim are dropped and mark the
 * line truncated; the tail is written with lim lifted to the full size. */
typedef struct log_line {
  char buf[HS_LOG_LINE_MAX];
  size_t len;
  size_t lim;
  int truncated;
} log_line;

static void line_put(log_line *l, const char *s, size_t n) {
  if (n > l->lim - l->len) {
    n = l->lim - l->len;
    l->truncated = 1;
  }
  memcpy(l->buf + l->len, s, n);
  l->len += n;
}

static void line_puts(log_line *l, const char *s) { line_put(l, s, strlen(s)); }

/* Appends s with every control character made harmless: newlines and
 * carriage returns become spaces, other controls '?'. Trailing newlines
 * are dropped (a plugin's "...\n" habit). */
static void line_put_text(log_line *l, const char *s) {
  size_t n = strlen(s);
  size_t i;
  char c;

  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
    n--;
  for (i = 0; i < n && !l->truncated; i++) {
    c = s[i];
    if (c == '\n' || c == '\r')
      c = ' ';
    else if (((unsigned char)c < 0x20 && c != '\t') || c == 0x7f)
      c = '?';
    line_put(l, &c, 1);
  }
}

/* Appends the contents of a JSON string (no quotes) for s. An escape is
 * never cut in half: it goes in whole or not at all. Trailing newlines are
 * dropped as in text. */
static void line_put_json(log_line *l, const char *s) {
  size_t n = strlen(s);
  size_t i, k;
  char esc[6];

  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
    n--;
  for (i = 0; i < n && !l->truncated; i++) {
    k = hs_buf_json_escape((unsigned char)s[i], esc);
    if (k > l->lim - l->len) {
      l->truncated = 1;
      break;
    }
    line_put(l, esc, k);
  }
}

/* Writes all of p with as few write(2) calls as the kernel allows: one,
 * unless it is interrupted or writes short. Errors drop the line. */
static void write_all(int fd, const char *p, size_t n) {
  ssize_t w;

  while (n > 0) {
    w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

static void line_put_time(log_line *l, int json) {
  struct timespec ts;
  struct tm tm;
  char t[96];
  int ms;

  clock_gettime(CLOCK_REALTIME, &ts);
  ms = (int)(ts.tv_nsec / 1000000);
  if (json) {
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(t, sizeof(t), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, ms);
  } else {
    localtime_r(&ts.tv_sec, &tm);
    snprintf(t, sizeof(t), "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min,
             tm.tm_sec, ms);
  }
  line_puts(l, t);
}

void hs_logv(hs_log_level level, const char *plugin, const char *event,
             const char *fmt, va_list ap) {
  char msg[HS_LOG_LINE_MAX];
  char pid[24];
  log_line line;
  int saved_errno = errno;
  int lv = (int)level;
  int cut = 0;

  if (lv < HS_LOG_DEBUG)
    lv = HS_LOG_DEBUG;
  if (lv > HS_LOG_ERROR)
    lv = HS_LOG_ERROR;
  if (lv < (int)g_log.min_level)
    return;
  if (plugin == NULL)
    plugin = "hotswap";
  if (event == NULL || event[0] == '\0')
    event = "log";
  /* A message longer than msg is cut; the line then ends in "...". */
  msg[0] = '\0';
  if (fmt != NULL) {
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0)
      msg[0] = '\0';
    cut = n >= (int)sizeof(msg);
  }

  line.len = 0;
  line.lim = sizeof(line.buf) - HS_LOG_TAIL;
  line.truncated = 0;
  if (g_log.format == HS_LOG_JSON) {
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    line_puts(&line, "{\"time\":\"");
    line_put_time(&line, 1);
    line_puts(&line, "\",\"level\":\"");
    line_puts(&line, level_names[lv]);
    line_puts(&line, "\",\"pid\":");
    line_puts(&line, pid);
    line_puts(&line, ",\"plugin\":\"");
    line_put_json(&line, plugin);
    line_puts(&line, "\",\"event\":\"");
    line_put_json(&line, event);
    line_puts(&line, "\",\"msg\":\"");
    line_put_json(&line, msg);
    /* The tail is always written, so the line stays valid JSON. The
     * header parts are short: only the message can have been cut. */
    line.lim = sizeof(line.buf);
    if (line.truncated || cut)
      line_puts(&line, "...");
    line_puts(&line, "\"}\n");
  } else {
    line_put_time(&line, 0);
    line_puts(&line, " ");
    if (g_log.colour)
      line_puts(&line, level_colours[lv]);
    line_puts(&line, level_names[lv]);
    if (g_log.colour)
      line_puts(&line, HS_COLOUR_RESET);
    line_puts(&line, lv == HS_LOG_INFO || lv == HS_LOG_WARN ? "  " : " ");
    line_put_text(&line, plugin);
    line_puts(&line, " ");
    line_put_text(&line, event);
    line_puts(&line, ": ");
    line_put_text(&line, msg);
    line.lim = sizeof(line.buf);
    if (line.truncated || cut)
      line_puts(&line, "...");
    line_puts(&line, "\n");
  }
  write_all(g_log.fd, line.buf, line.len);
  errno = saved_errno;
}

void hs_log(hs_log_level level, const char *plugin, const char *event,
            const char *fmt, ...) {
  va_list ap;

  va_start(ap, fmt);
  hs_logv(level, plugin, event, fmt, ap);
  va_end(ap);
}

int hs_log_level_parse(const char *s, hs_log_level *out) {
  int i;

  if (s == NULL)
    return HS_EINVAL;
  for (i = HS_LOG_DEBUG; i <= HS_LOG_ERROR; i++) {
    if (strcmp(s, level_names[i]) == 0) {
      *out = (hs_log_level)i;
      return 0;
    }
  }
  return HS_EINVAL;
}

int hs_log_format_parse(const char *s, hs_log_format *out) {
  if (s == NULL)
    return HS_EINVAL;
  if (strcmp(s, "text") == 0)
    *out = HS_LOG_TEXT;
  else if (strcmp(s, "json") == 0)
    *out = HS_LOG_JSON;
  else
    return HS_EINVAL;
  return 0;
}
