/* status.c - the status report of a running host, as text or JSON. */
#include "status.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hotswap.h"

/* The word for what a slot is doing now. A slot waiting for a free
 * validator counts as validating; a source plugin being built, as
 * compiling. */
static const char *slot_status(const hs_slot *s) {
  if (s->compiling)
    return "compiling";
  if (s->sb || s->queued || s->opening || s->copying)
    return "validating";
  if (s->loaded)
    return "live";
  if (s->crash.quarantined)
    return "quarantined";
  if (s->last_error.code != 0)
    return "rejected";
  return "unloaded";
}

/* Copies the slot's version string (which may fill its array) to out;
 * returns out, "" when none. */
static const char *slot_version(const hs_slot *s, char *out, size_t size) {
  size_t n = strnlen(s->version, sizeof s->version);

  if (n >= size)
    n = size - 1;
  memcpy(out, s->version, n);
  out[n] = '\0';
  return out;
}

static int has_timings(const hs_timings *t) {
  return t->validated_ns || t->swapped_ns || t->pause_ns;
}

/* "3.1 ms" from a millisecond up, "85 us" below. */
static void put_duration(hs_buf *out, uint64_t ns) {
  if (ns < 1000000)
    hs_buf_printf(out, "%" PRIu64 " us", ns / 1000);
  else
    hs_buf_printf(out, "%.1f ms", (double)ns / 1e6);
}

/* "1h02m03s", "2m03s", "3s"; days are counted in hours. */
static void put_uptime(hs_buf *out, uint64_t ns) {
  uint64_t s = ns / 1000000000u;
  uint64_t h = s / 3600, m = s / 60 % 60;

  if (h)
    hs_buf_printf(out, "%" PRIu64 "h%02" PRIu64 "m%02" PRIu64 "s", h, m,
                  s % 60);
  else if (m)
    hs_buf_printf(out, "%" PRIu64 "m%02" PRIu64 "s", m, s % 60);
  else
    hs_buf_printf(out, "%" PRIu64 "s", s);
}

/* Local time, ISO 8601 with the UTC offset: 2026-11-25T01:00:00+01:00. */
static void put_local_time(hs_buf *out, int64_t when) {
  time_t t = (time_t)when;
  struct tm tm;
  char text[32];
  long off;

  if (!localtime_r(&t, &tm) ||
      strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
    hs_buf_printf(out, "@%" PRId64, when);
    return;
  }
  off = tm.tm_gmtoff / 60;
  hs_buf_printf(out, "%s%c%02ld:%02ld", text, off < 0 ? '-' : '+',
                (off < 0 ? -off : off) / 60, (off < 0 ? -off : off) % 60);
}

static uint64_t uptime_ns(const hs_registry *reg) {
  uint64_t now = hs_now_ns();

  return now > reg->started_ns ? now - reg->started_ns : 0;
}

static void text_field(hs_buf *out, const char *label) {
  hs_buf_printf(out, "%-13s", label);
}

static const char *events_word(uint32_t ev) {
  static const char *const words[] = {"paused", "read", "write",
                                      "read+write"};
  return words[ev & 3];
}

/* The fds and timers the plugin registered: "7 (read), 9 (read+write,
 * kept as http.listen)", the name being the fd's in systemd's fd store
 * (fd_keep; recorded without systemd too). */
static void text_registrations(hs_buf *out, const hs_slot *s) {
  text_field(out, "fds");
  if (!s->ctx.fds)
    hs_buf_puts(out, "none");
  for (const hs_fdreg *r = s->ctx.fds; r; r = r->next) {
    hs_buf_printf(out, "%s%d (%s", r == s->ctx.fds ? "" : ", ", r->fd,
                  events_word(r->events));
    if (r->name[0])
      hs_buf_printf(out, ", kept as %s.%s", s->name, r->name);
    hs_buf_puts(out, ")");
  }
  hs_buf_puts(out, "\n");
  text_field(out, "timers");
  if (!s->ctx.timers)
    hs_buf_puts(out, "none");
  for (const hs_timerreg *t = s->ctx.timers; t; t = t->next) {
    hs_buf_printf(out, "%s#%" PRId64, t == s->ctx.timers ? "" : ", ", t->id);
    if (t->repeat_ms)
      hs_buf_printf(out, " (every %" PRIu64 " ms)", t->repeat_ms);
  }
  if (s->ctx.tick_ms)
    hs_buf_printf(out, "%sticks every %" PRIu32 " ms",
                  s->ctx.timers ? ", " : "", s->ctx.tick_ms);
  hs_buf_puts(out, "\n");
}

/* "2; the last at TIME: tick() of version 2.0: SIGSEGV (...) at
 * counter.so+0x1139; rolled back to version 1.0 ..." */
static void text_crashes(hs_buf *out, const hs_slot *s) {
  const hs_crash *c = &s->crash;

  text_field(out, "crashes");
  if (!c->count) {
    hs_buf_puts(out, "none\n");
    return;
  }
  hs_buf_printf(out, "%" PRIu32 "; the last at ", c->count);
  put_local_time(out, c->last_at);
  hs_buf_printf(out, ": %s() of version %s: %s; %s\n",
                c->last.callback ? c->last.callback : "?", c->last_version,
                c->last_what, c->last_detail);
}

/* "crashes":N,"last_crash":{...} or null. */
static void json_crashes(hs_buf *out, const hs_slot *s) {
  const hs_crash *c = &s->crash;
  time_t t = (time_t)c->last_at;
  struct tm tm;
  char at[32];

  hs_buf_printf(out, ",\"crashes\":%" PRIu32 ",\"last_crash\":", c->count);
  if (!c->count) {
    hs_buf_puts(out, "null");
    return;
  }
  hs_buf_puts(out, "{\"callback\":");
  hs_buf_json_str(out, c->last.callback);
  hs_buf_puts(out, ",\"version\":");
  hs_buf_json_str(out, c->last_version);
  hs_buf_puts(out, ",\"signal\":");
  hs_buf_json_str(out, c->last.hang ? "hang"
                                    : hs_guard_signal_name(c->last.signo));
  hs_buf_printf(out, ",\"code\":%d,\"address\":\"0x%lx\",\"where\":",
                c->last.code, (unsigned long)c->last.addr);
  hs_buf_json_str(out, c->last_where);
  hs_buf_puts(out, ",\"fault\":");
  hs_buf_json_str(out, c->last_what);
  hs_buf_puts(out, ",\"action\":");
  hs_buf_json_str(out, c->last_action);
  hs_buf_puts(out, ",\"detail\":");
  hs_buf_json_str(out, c->last_detail);
  hs_buf_puts(out, ",\"at\":");
  if (gmtime_r(&t, &tm) && strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &tm))
    hs_buf_json_str(out, at);
  else
    hs_buf_puts(out, "null");
  hs_buf_puts(out, "}");
}

static void format_text_slot(hs_buf *out, const hs_slot *s) {
  char version[sizeof s->version + 1];

  text_field(out, "name");
  hs_buf_printf(out, "%s\n", s->name);
  text_field(out, "status");
  hs_buf_printf(out, "%s\n", slot_status(s));
  text_field(out, "version");
  slot_version(s, version, sizeof version);
  hs_buf_printf(out, "%s\n", version[0] ? version : "-");
  text_field(out, "state");
  if (s->state.version)
    hs_buf_printf(out, "v%" PRIu32 " (%" PRIu32 " bytes)\n", s->state.version,
                  s->state.size);
  else
    hs_buf_puts(out, "-\n");
  text_field(out, "generation");
  hs_buf_printf(out, "%" PRIu32 "\n", s->generation);
  text_field(out, "file");
  hs_buf_printf(out, "%s\n", s->file ? s->file : "-");
  text_field(out, "loaded at");
  if (s->loaded_at)
    put_local_time(out, s->loaded_at);
  else
    hs_buf_puts(out, "never");
  hs_buf_puts(out, "\n");
  text_field(out, "reloads");
  hs_buf_printf(out, "%" PRIu32 "\n", s->reloads);
  text_field(out, "last reload");
  if (has_timings(&s->last)) {
    hs_buf_puts(out, "validated ");
    put_duration(out, s->last.validated_ns);
    hs_buf_puts(out, ", swapped ");
    put_duration(out, s->last.swapped_ns);
    hs_buf_puts(out, ", pause ");
    put_duration(out, s->last.pause_ns);
  } else {
    hs_buf_puts(out, "none");
  }
  hs_buf_puts(out, "\n");
  if (s->leaked_images) {
    text_field(out, "leaked");
    hs_buf_printf(out,
                  "%" PRIu64 " KiB: %" PRIu32 " old version%s still "
                  "mapped\n",
                  (s->leaked_bytes + 1023) / 1024, s->leaked_images,
                  s->leaked_images == 1 ? "" : "s");
  }
  text_field(out, "last error");
  if (s->last_error.code == 0)
    hs_buf_puts(out, "none\n");
  else if (s->last_error.stage[0])
    hs_buf_printf(out, "%s in stage %s: %s\n",
                  hs_err_name(s->last_error.code), s->last_error.stage,
                  s->last_error.msg);
  else
    hs_buf_printf(out, "%s: %s\n", hs_err_name(s->last_error.code),
                  s->last_error.msg);
  text_crashes(out, s);
  text_registrations(out, s);
}

static void format_text(hs_buf *out, const hs_registry *reg,
                        const hs_status_host *host) {
  size_t i;

  hs_buf_printf(out, "hotswap %s (ABI %d), pid %d, up ", HS_VERSION_STRING,
                HS_ABI_VERSION, host->pid);
  put_uptime(out, uptime_ns(reg));
  hs_buf_printf(out, ", plugins in %s\n",
                host->plugin_dir ? host->plugin_dir
                                 : (reg->dir ? reg->dir : "-"));
  if (host->reexecs) {
    hs_buf_printf(out, "upgraded     %" PRIu32 " time%s, last at ",
                  host->reexecs, host->reexecs == 1 ? "" : "s");
    put_local_time(out, host->reexec_at);
    hs_buf_printf(out, " (plugins paused %.1f ms)\n",
                  (double)host->reexec_pause_ns / 1e6);
  }
  if (host->upgrade_error)
    hs_buf_printf(out, "upgrade      refused: %s\n", host->upgrade_error);
  if (reg->leaked_bytes)
    hs_buf_printf(out,
                  "leaked       %" PRIu64 " KiB in old versions still "
                  "mapped\n",
                  (reg->leaked_bytes + 1023) / 1024);
  if (reg->nslots == 0)
    hs_buf_puts(out, "\nno plugins\n");
  for (i = 0; i < reg->nslots; i++) {
    hs_buf_puts(out, "\n");
    format_text_slot(out, reg->slots[i]);
  }
}

static void format_json_slot(hs_buf *out, const hs_slot *s) {
  char version[sizeof s->version + 1];
  const hs_error *e = &s->last_error;

  hs_buf_puts(out, "{\"name\":");
  hs_buf_json_str(out, s->name);
  hs_buf_puts(out, ",\"status\":");
  hs_buf_json_str(out, slot_status(s));
  hs_buf_puts(out, ",\"version\":");
  slot_version(s, version, sizeof version);
  hs_buf_json_str(out, version[0] ? version : NULL);
  hs_buf_printf(out,
                ",\"state_version\":%" PRIu32 ",\"state_size\":%" PRIu32
                ",\"generation\":%" PRIu32 ",\"file\":",
                s->state.version, s->state.size, s->generation);
  hs_buf_json_str(out, s->file);
  hs_buf_puts(out, ",\"loaded_at\":");
  if (s->loaded_at) {
    time_t t = (time_t)s->loaded_at;
    struct tm tm;
    char text[32];
    if (gmtime_r(&t, &tm) &&
        strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm) > 0)
      hs_buf_json_str(out, text);
    else
      hs_buf_puts(out, "null");
  } else {
    hs_buf_puts(out, "null");
  }
  hs_buf_printf(out, ",\"reloads\":%" PRIu32 ",\"last_error\":", s->reloads);
  if (e->code) {
    hs_buf_puts(out, "{\"code\":");
    hs_buf_json_str(out, hs_err_name(e->code));
    hs_buf_puts(out, ",\"stage\":");
    hs_buf_json_str(out, e->stage[0] ? e->stage : NULL);
    hs_buf_puts(out, ",\"message\":");
    hs_buf_json_str(out, e->msg);
    hs_buf_puts(out, "}");
  } else {
    hs_buf_puts(out, "null");
  }
  hs_buf_puts(out, ",\"last_reload\":");
  if (has_timings(&s->last))
    hs_buf_printf(out,
                  "{\"validated_us\":%" PRIu64 ",\"swapped_us\":%" PRIu64
                  ",\"pause_us\":%" PRIu64 "}",
                  s->last.validated_ns / 1000, s->last.swapped_ns / 1000,
                  s->last.pause_ns / 1000);
  else
    hs_buf_puts(out, "null");
  if (s->leaked_images)
    hs_buf_printf(out,
                  ",\"leaked\":{\"bytes\":%" PRIu64 ",\"images\":%" PRIu32
                  "}",
                  s->leaked_bytes, s->leaked_images);
  json_crashes(out, s);
  hs_buf_puts(out, ",\"fds\":[");
  for (const hs_fdreg *r = s->ctx.fds; r; r = r->next) {
    hs_buf_printf(out,
                  "%s{\"fd\":%d,\"events\":\"%s\",\"token\":%" PRIu64
                  ",\"kept\":",
                  r == s->ctx.fds ? "" : ",", r->fd, events_word(r->events),
                  r->token);
    if (r->name[0]) {
      char full[NAME_MAX + sizeof(r->name) + 2];
      snprintf(full, sizeof(full), "%s.%s", s->name, r->name);
      hs_buf_json_str(out, full); /* a file's name: may need escapes */
    } else {
      hs_buf_puts(out, "null");
    }
    hs_buf_puts(out, "}");
  }
  hs_buf_puts(out, "],\"timers\":[");
  for (const hs_timerreg *t = s->ctx.timers; t; t = t->next)
    hs_buf_printf(out,
                  "%s{\"id\":%" PRId64 ",\"repeat_ms\":%" PRIu64
                  ",\"token\":%" PRIu64 "}",
                  t == s->ctx.timers ? "" : ",", t->id, t->repeat_ms,
                  t->token);
  hs_buf_printf(out, "],\"tick_ms\":%" PRIu32 "}", s->ctx.tick_ms);
}

static void format_json(hs_buf *out, const hs_registry *reg,
                        const hs_status_host *host) {
  uint64_t up = uptime_ns(reg);
  size_t i;

  hs_buf_printf(out, "{\"host\":{\"pid\":%d,\"version\":", host->pid);
  hs_buf_json_str(out, HS_VERSION_STRING);
  hs_buf_printf(out, ",\"abi\":%d,\"uptime_s\":%" PRIu64 ".%03" PRIu64,
                HS_ABI_VERSION, up / 1000000000u, up / 1000000u % 1000);
  hs_buf_puts(out, ",\"plugin_dir\":");
  hs_buf_json_str(out, host->plugin_dir ? host->plugin_dir : reg->dir);
  hs_buf_puts(out, ",\"cache_dir\":");
  hs_buf_json_str(out, host->cache_dir);
  hs_buf_puts(out, ",\"control\":");
  hs_buf_json_str(out, host->control_path);
  if (reg->leaked_bytes)
    hs_buf_printf(out, ",\"leaked_bytes\":%" PRIu64, reg->leaked_bytes);
  hs_buf_printf(out,
                ",\"reexecs\":%" PRIu32 ",\"reexec_at\":%" PRId64
                ",\"reexec_pause_us\":%" PRIu64 ",\"upgrade_error\":",
                host->reexecs, host->reexec_at, host->reexec_pause_ns / 1000);
  hs_buf_json_str(out, host->upgrade_error);
  hs_buf_puts(out, "},\"plugins\":[");
  for (i = 0; i < reg->nslots; i++) {
    if (i)
      hs_buf_puts(out, ",");
    format_json_slot(out, reg->slots[i]);
  }
  hs_buf_puts(out, "]}");
}

/*
 * Appends the report of reg and host to out, as text (json = 0: a header
 * line, then one block of aligned fields per plugin) or as one JSON object
 * with a trailing newline. Plugins appear in the registry's order. Returns
 * 0, or HS_ENOMEM with out flagged oom.
 */
int hs_status_format(hs_buf *out, const hs_registry *reg,
                     const hs_status_host *host, int json) {
  if (json) {
    format_json(out, reg, host);
    hs_buf_puts(out, "\n");
  } else {
    format_text(out, reg, host);
  }
  return out->oom ? HS_ENOMEM : 0;
}
