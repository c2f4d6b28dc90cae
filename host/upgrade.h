/*
 * upgrade.h - the host upgrades itself: it watches its own executable,
 * checks a new one by running it in a check mode, and re-executes into it
 * (same pid) with a handoff (handoff.h) that carries every plugin across.
 *
 * The executable is the path the host was started from, resolved once at
 * start (argv[0] made absolute, or found in $PATH): not /proc/self/exe,
 * which keeps naming the old, deleted image after a rename. A change of
 * that file's content starts a check; so do `hotswap upgrade` and SIGUSR2
 * (forced: even unchanged content).
 *
 * The candidate is opened once; the check runs that very file
 * (/proc/self/fd/N) and so does the execve, so what passed is what runs even
 * if the path changes meanwhile. The check (HS_UPGRADE_CHECK_ARG) must exit
 * 0 within the timeout after printing its version, its plugin ABI and the
 * handoff formats it reads. Refusals name the reason: not executable, not an
 * executable for this machine (or a script without "#!"), crashed (signal),
 * timed out, an older plugin ABI than a live plugin needs, a handoff
 * format it cannot read.
 */
#ifndef HS_UPGRADE_H
#define HS_UPGRADE_H

#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "err.h"
#include "loop.h"
#include "watch.h"

#define HS_UPGRADE_CHECK_ARG "__upgrade-check"

/* How long a new binary may take to pass its check. */
#define HS_UPGRADE_CHECK_TIMEOUT_MS 10000

typedef struct hs_upgrade hs_upgrade;

/* A check is over: err->code is 0 when the binary passed (hs_upgrade_exec
 * may then run it), else the refusal with its reason (stage "upgrade"). */
typedef void (*hs_upgrade_cb)(hs_upgrade *up, const hs_error *err,
                              void *data);

struct hs_upgrade {
  hs_loop *loop;
  char *path;              /* owned: the executable, absolute */
  uint64_t hash;           /* content hash of the running image's file */
  uint64_t refused_hash;   /* content refused last; not retried unchanged */
  int watching;            /* watch is started */
  hs_watch watch;          /* the directory that holds path */
  hs_upgrade_cb cb;
  void *data;              /* the caller's */
  uint64_t settle_ns;

  /* the check under way (checking == 1), or the binary that passed */
  int checking;
  int binfd;               /* the candidate, opened once; -1 */
  uint64_t cand_hash;
  int forced;
  uint32_t need_abi;       /* the highest ABI a live plugin was built for */
  pid_t pid;
  int pidfd, outfd;        /* -1 when closed */
  hs_io pid_io, out_io;
  hs_timer timer;
  int exited, eof, timed_out, status;
  hs_buf out;              /* what the check printed */
  char new_version[64];    /* what the passed binary said */
  int new_abi;
  uint32_t new_handoff;    /* the newest handoff format both read */
};

/* Returns the absolute path of the executable the host was started as,
 * from argv0 (with a '/': made absolute; without: searched in $PATH), as a
 * malloc'd string; NULL if it cannot be found. */
char *hs_upgrade_resolve(const char *argv0);

/*
 * Prepares up for the executable path (copied). hash is its content as the
 * running image was made from (0: hash the file now). With watch, the
 * directory holding path is watched (settle_ns as for plugins) and a change
 * of content starts a check. cb gets every check's outcome. Returns 0 or a
 * negative code with err filled.
 */
int hs_upgrade_init(hs_upgrade *up, hs_loop *loop, const char *path,
                    uint64_t hash, int watch, uint64_t settle_ns,
                    hs_upgrade_cb cb, void *data, hs_error *err);

/* Stops watching, kills a check under way, closes the candidate. */
void hs_upgrade_close(hs_upgrade *up);

/*
 * Starts checking the file at up->path. need_abi is the highest plugin ABI
 * a live plugin was built for (the new host must speak it). Without force,
 * content equal to the running image's (or to the content refused last)
 * is ignored: returns 1 and cb is not called. Returns 0 when cb will be (or
 * was already) called with the outcome, HS_EBUSY if a check is under way.
 */
int hs_upgrade_check(hs_upgrade *up, int force, uint32_t need_abi);

/*
 * Re-executes into the binary that passed the check, with argv and the
 * handoff fd (named in $HOTSWAP_HANDOFF). stdio is flushed; every fd but 0,
 * 1, 2, handoff_fd and the nkeep fds in keep is made close-on-exec, and
 * those are made inheritable. Returns only on failure: the fds' flags and
 * the environment are as before, and a negative code with err filled
 * explaining the errno. Call only after a check passed (binfd open).
 */
int hs_upgrade_exec(hs_upgrade *up, char *const argv[], int handoff_fd,
                    const int *keep, size_t nkeep, hs_error *err);

/* The binary that passed, or was refused, is done with: closes it. */
void hs_upgrade_drop(hs_upgrade *up);

/* The check mode: `hotswap __upgrade-check FORMAT` prints one line saying
 * version, plugin ABI and handoff formats, and exits 0 if this binary can
 * read handoff format FORMAT, 3 if not. */
int hs_upgrade_check_main(int argc, char **argv);

#endif /* HS_UPGRADE_H */
