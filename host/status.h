/* status.h - the status report of a running host, as text or JSON. */
#ifndef HS_STATUS_H
#define HS_STATUS_H

#include "buf.h"
#include "registry.h"

/* Host-wide facts for the report. */
typedef struct hs_status_host {
  int pid;
  const char *plugin_dir;
  const char *cache_dir;
  const char *control_path;
  uint32_t reexecs;           /* host upgrades (re-executions) so far */
  int64_t reexec_at;          /* wall clock (s) of the last one */
  uint64_t reexec_pause_ns;   /* how long it paused the plugins */
  const char *upgrade_error;  /* the last refused upgrade, or NULL */
} hs_status_host;

/*
 * Appends the report to out. For the host: pid, uptime, plugin directory.
 * For each plugin: name, state (live, rejected, validating, compiling,
 * unloaded), version
 * string, state version and size, generation, file, loaded-at, reload
 * count, last error (code name, stage, message), the fds and timers it
 * registered (ABI 2 event services) and the last reload's
 * timings in microseconds; when old versions stay mapped (they pin
 * themselves, or left threads running), the memory they keep ("leaked":
 * {"bytes","images"} per plugin, "leaked_bytes" for the host, present
 * only then); the crashes the host survived, with the last one: which
 * callback of which version, the signal, where, what the host did
 * ("crashes":N, "last_crash":{...} or null; status "quarantined" while a
 * crash keeps the plugin from running). JSON is one object:
 *   {"host":{...},"plugins":[{...},...]}
 * Returns 0 or HS_ENOMEM.
 */
int hs_status_format(hs_buf *out, const hs_registry *reg,
                     const hs_status_host *host, int json);

#endif /* HS_STATUS_H */
