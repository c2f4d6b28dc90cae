/*
 * sandbox.h - validates a candidate version in a separate process before
 * the live host touches it.
 *
 * The host never forks itself (a fork of a host with a large heap blocks
 * it and then pays copy-on-write faults). At start it spawns a small
 * process of its own image, the zygote (zygote.c), which keeps one forked
 * spare validator waiting and hands it to the host. A validation sends the
 * spare only a memfd with the plugin's state bytes and two pipes: one for
 * its verdict, one for its stages. The host watches only the first: it is
 * woken once per validation, not at each stage. The validator sets
 * its own limits (CPU time, address space, no core, death with its
 * parent), then: open (RTLD_NOW), entry, abi, migrate (when the state
 * layout differs), load, pointers (the state must not point into the
 * version being replaced), selftest, unload (which must leave no thread
 * of the plugin running); it writes each stage to the stage pipe before it
 * starts, then gives its verdict. The host acts on the verdict as soon as
 * it is read; a validator that dies without one is judged by the exit
 * status the zygote reports and the last stage it wrote (signal name and
 * stage); one that overruns the timeout is killed.
 */
#ifndef HS_SANDBOX_H
#define HS_SANDBOX_H

#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "hotswap.h"
#include "imagemap.h"
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
  hs_state_snap *snap;     /* with state: the plugin's snapshot memfd
                              (state.h), written now and lent to the
                              validator until its verdict */
  hs_load_reason reason;   /* the reason the live load will get */
  int allow_reset;         /* reset the state when migrate() is missing */
  hs_sandbox_limits limits;
  hs_log_format log_format; /* the validator logs as the host does */
  hs_log_level log_level;
  /* The live version being replaced, for the scan of the migrated state
   * for pointers into it (stage "pointers"); NULL when none. */
  const hs_imagemap *old_map; /* its ranges in the host */
  const char *old_version;    /* its version string */
} hs_sandbox_req;

typedef struct hs_verdict {
  hs_error err;            /* code 0 when the candidate passed */
  char version[128];       /* descriptor's version string, if reached */
  uint32_t state_version;  /* descriptor's state layout, if reached */
  uint32_t state_size;
  uint64_t elapsed_ns;     /* spawn to verdict */
} hs_verdict;

typedef struct hs_sandbox hs_sandbox;           /* one validation */
typedef struct hs_sandbox_pool hs_sandbox_pool; /* the zygote */
typedef void (*hs_sandbox_cb)(hs_sandbox *sb, const hs_verdict *v,
                              void *data);

/* Spawns the zygote (blocking the caller for one posix_spawn). Returns 0
 * with *out set, or a negative code with err filled (stage "sandbox"). */
int hs_sandbox_pool_open(hs_sandbox_pool **out, hs_loop *loop,
                         hs_log_format log_format, hs_log_level log_level,
                         hs_error *err);

/* Cancels every validation under way (no callbacks), ends the zygote and
 * its children, and frees pool. */
void hs_sandbox_pool_close(hs_sandbox_pool *pool);

/*
 * Starts validating req (copied; its strings and state need not outlive
 * the call). cb runs exactly once from the loop with the verdict; sb is
 * freed when it returns. If the zygote has died it is spawned again.
 * Returns 0 with *out set, or a negative code with err filled (stage
 * "sandbox") and no callback.
 */
int hs_sandbox_start(hs_sandbox **out, hs_sandbox_pool *pool,
                     const hs_sandbox_req *req, hs_sandbox_cb cb, void *data,
                     hs_error *err);

/* A compile of a plugin source, run like a validation: a zygote child
 * with the same limits, in its own process group (a timeout kills the
 * compiler and everything it started), its output captured. */
typedef struct hs_compile_req {
  const char *file;          /* the plugin's source, for messages */
  const char *cwd;           /* the compiler runs here */
  char *const *argv;         /* compiler command; argv[0] is looked up in
                                PATH; NULL-terminated */
  hs_sandbox_limits limits;
} hs_compile_req;

typedef struct hs_compile_result {
  int ok;                    /* compiler ran and exited 0 */
  hs_error err;              /* why not, when !ok (stage "compile") */
  const char *output;        /* what the compiler printed (stdout+stderr) */
  size_t output_len;
  uint64_t elapsed_ns;
} hs_compile_result;

typedef void (*hs_compile_cb)(hs_sandbox *sb, const hs_compile_result *r,
                              void *data);

/* Starts a compile; cb runs exactly once from the loop. Returns 0 with
 * *out set, or a negative code with err filled and no callback. Cancel
 * with hs_sandbox_cancel. */
int hs_sandbox_compile(hs_sandbox **out, hs_sandbox_pool *pool,
                       const hs_compile_req *req, hs_compile_cb cb,
                       void *data, hs_error *err);

/* Kills the validator (or compiler) and frees sb; cb is not called. */
void hs_sandbox_cancel(hs_sandbox *sb);

/* The validator's main: argv as hs_sandbox_start builds it (argv[1] is
 * HS_SANDBOX_ARG), state on fd 3, verdict on fd 4, stages on fd 5.
 * Returns the exit status. */
int hs_sandbox_child_main(int argc, char **argv);

/* The zygote's main (argv[1] is HS_ZYGOTE_ARG, the host's socket on fd 3).
 * Never returns while the host lives. */
int hs_zygote_main(int argc, char **argv);

/* A request carries three fds: the state memfd, the report pipe (the
 * verdict, or a compile's output) and the stage pipe (see hs_sandbox_start). */
#define HS_ZYGOTE_FDS 3

/* Sends buf with nfds (1 to HS_ZYGOTE_FDS) fds over a SOCK_SEQPACKET
 * socket. Returns 0 or -1 with errno set. */
int hs_zygote_send(int fd, const char *buf, size_t len, const int *fds,
                   int nfds);

/* Receives one message into buf and up to nfds (0 to HS_ZYGOTE_FDS) fds
 * into fds (-1 for those that did not come; close-on-exec). flags are
 * recvmsg's. Returns the payload size, 0 at the end, -1 with errno set. */
ssize_t hs_zygote_recv(int fd, char *buf, size_t cap, int *fds, int nfds,
                       int flags);

#define HS_SANDBOX_ARG "__sandbox"
#define HS_ZYGOTE_ARG "__zygote"
#define HS_COMPILE_ARG "__compile"

#endif /* HS_SANDBOX_H */
