/*
 * sandbox.h - validates a candidate version in a separate process before
 * the live host touches it.
 *
 * The parent never forks itself (a fork of a host with a large heap blocks
 * it and then pays copy-on-write faults): it posix_spawns its own image
 * (/proc/self/exe, the running version) in validator mode, and hands it
 * only a memfd with the plugin's state bytes and a pipe for the verdict.
 * The validator sets its own limits (CPU time, address space, no core,
 * death with the parent), then: open (RTLD_NOW), entry, abi, migrate (when
 * the state layout differs), load, selftest, unload; it reports each stage
 * as it starts, then the verdict. The parent learns of the child's end
 * through a pidfd in its loop, and kills it after the timeout.
 */
#ifndef HS_SANDBOX_H
#define HS_SANDBOX_H

#include <stdint.h>

#include "err.h"
#include "hotswap.h"
#include "log.h"
#include "loop.h"
#include "state.h"

typedef struct hs_sandbox_limits {
  uint32_t timeout_ms; /* wall-clock budget; the child is killed after it */
  uint32_t cpu_s;      /* RLIMIT_CPU in the child */
  uint64_t mem_bytes;  /* RLIMIT_AS in the child; 0 for none */
} hs_sandbox_limits;

typedef struct hs_sandbox_req {
  const char *name;        /* plugin name */
  const char *dir;         /* plugin directory */
  const char *file;        /* watched file name, for messages */
  const char *path;        /* cache copy to validate */
  const hs_state *state;   /* live state to migrate/use; NULL: first load */
  hs_load_reason reason;   /* the reason the live load will get */
  int allow_reset;         /* reset the state when migrate() is missing */
  hs_sandbox_limits limits;
  hs_log_format log_format; /* the validator logs as the host does */
  hs_log_level log_level;
} hs_sandbox_req;

typedef struct hs_verdict {
  hs_error err;            /* code 0 when the candidate passed */
  char version[128];       /* descriptor's version string, if reached */
  uint32_t state_version;  /* descriptor's state layout, if reached */
  uint32_t state_size;
  uint64_t elapsed_ns;     /* spawn to verdict */
} hs_verdict;

typedef struct hs_sandbox hs_sandbox; /* one running validation; private */
typedef void (*hs_sandbox_cb)(hs_sandbox *sb, const hs_verdict *v,
                              void *data);

/*
 * Starts validating req (copied; its strings and state need not outlive
 * the call). cb runs exactly once from the loop with the verdict; after it
 * returns, sb is freed. Returns 0 with *out set, or a negative code with
 * err filled (stage "sandbox") and no callback.
 */
int hs_sandbox_start(hs_sandbox **out, hs_loop *loop, const hs_sandbox_req *req,
                     hs_sandbox_cb cb, void *data, hs_error *err);

/* Kills and reaps the child and frees sb; cb is not called. */
void hs_sandbox_cancel(hs_sandbox *sb);

/* The validator's main (argv as hs_sandbox_start builds it, argv[1] being
 * HS_SANDBOX_ARG). Returns the process exit status. */
int hs_sandbox_child_main(int argc, char **argv);

#define HS_SANDBOX_ARG "__sandbox"

#endif /* HS_SANDBOX_H */
