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
} hs_status_host;

/*
 * Appends the report to out. For the host: pid, uptime, plugin directory.
 * For each plugin: name, state (live, rejected, validating, compiling,
 * unloaded), version
 * string, state version and size, generation, file, loaded-at, reload
 * count, last error (code name, stage, message), the fds and timers it
 * registered (ABI 2 event services) and the last reload's
 * timings in microseconds. JSON is one object:
 *   {"host":{...},"plugins":[{...},...]}
 * Returns 0 or HS_ENOMEM.
 */
int hs_status_format(hs_buf *out, const hs_registry *reg,
                     const hs_status_host *host, int json);

#endif /* HS_STATUS_H */
