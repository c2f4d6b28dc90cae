/*
 * harness.h - helpers for the integration tests (tests/test_host_*.c): they
 * run the real hotswap binary (HS_TEST_BIN) on a temporary plugin directory
 * and change real files under it. Not a test framework: cmocka runs the
 * tests, and these functions return codes that the tests assert on.
 *
 * A test's life: harness_init (temporary tree) -> harness_start (the host,
 * waiting for its "started" line) -> harness_install / harness_wait /
 * harness_status_get ... -> harness_stop (SIGTERM, exit status) ->
 * harness_close (kills a host still running, removes the tree). Use
 * harness_setup / harness_teardown as cmocka's setup and teardown so that
 * everything is cleaned up also when an assertion fails.
 *
 * Every wait is bounded by HARNESS_TIMEOUT_MS and fails (returns -1) when
 * it expires; nothing here measures or asserts durations.
 */
#ifndef HS_TEST_HARNESS_H
#define HS_TEST_HARNESS_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

/* The bound of every wait: generous, for a loaded 2-core machine under
 * ASan. Reaching it means the awaited thing did not happen. */
#define HARNESS_TIMEOUT_MS 20000

#define HARNESS_ENV_MAX 4
#define HARNESS_CLIENTS_MAX 4

/* How a file is put into the plugin directory. */
typedef enum {
  HARNESS_RENAME = 1, /* written to a hidden temporary name in the same
                         directory, then renamed over the target */
  HARNESS_COPY_OVER,  /* the existing file opened with O_TRUNC and written
                         in place, as cp(1) does */
  HARNESS_WRITE_NEW   /* a new file created and written (it must not
                         exist yet) */
} harness_how;

typedef struct harness {
  char root[PATH_MAX];     /* the mkdtemp'd directory */
  char plugins[PATH_MAX];  /* root/plugins: the host's plugin directory */
  char cache[PATH_MAX];    /* root/cache: the host's --cache-dir */
  char control[PATH_MAX];  /* root/ctl.sock: the host's --control */
  char log[PATH_MAX];      /* root/host.log: the host's stderr */
  char bin[PATH_MAX];      /* "" or the executable harness_start runs in
                              place of HS_TEST_BIN (a copy a test replaces) */
  pid_t pid;               /* the running host, 0 when none */
  pid_t pgid;              /* its process group, kept after it exits */
  int exited;              /* the host exited by itself (seen by a wait) */
  int wstatus;             /* then its wait status */
  long offset;             /* harness_wait looks from here on */
  char env[HARNESS_ENV_MAX][128]; /* "NAME=VALUE" added to the host's env */
  int nenv;
  pid_t clients[HARNESS_CLIENTS_MAX]; /* started by harness_run_start and
                                         not yet waited for */
  int nruns;                   /* numbers the output files of clients */
} harness;

/* A client run of HS_TEST_BIN (harness_run_start). */
typedef struct harness_proc {
  pid_t pid;
  int exited;          /* harness_run_done saw it exit */
  int wstatus;         /* then its wait status */
  char out[PATH_MAX];  /* its stdout, captured in a file */
  char err[PATH_MAX];  /* its stderr */
} harness_proc;

/* ---- life cycle -------------------------------------------------------- */

/* Creates the temporary tree (root with plugins/ and cache/) and fills h.
 * Returns 0, or -1 with a message on stderr. */
int harness_init(harness *h);

/* Kills a host still running (its whole process group, SIGKILL), reaps it
 * and removes the tree recursively. Harmless on a closed or zeroed h. */
void harness_close(harness *h);

/* cmocka setup: allocates and inits a harness into *state. Returns 0 or
 * -1. */
int harness_setup(void **state);

/* cmocka teardown: harness_close and free. Returns 0. */
int harness_teardown(void **state);

/* Adds "NAME=VALUE" (e.g. "FX_TICK_MS=20") to the environment of the hosts
 * started from now on. Returns 0, or -1 when full or too long. */
int harness_env(harness *h, const char *assignment);

/* ---- the host ---------------------------------------------------------- */

/*
 * Starts the host in its own process group, stderr and stdout appended to
 * h->log:
 *   HS_TEST_BIN --control C --cache-dir D --settle 30 --sandbox-timeout 20000
 *               [args...] PLUGINS
 * (A validation may take as long as a test waits: on a loaded machine
 * under ASan a good one took more than 1.5 s. Tests that wait for a hang
 * to be killed pass a shorter --sandbox-timeout in args.)
 * args is NULL or a NULL-terminated list of extra options. Waits for the
 * host's "started" line (text, or JSON with "--log-format json" in args)
 * and moves h->offset past it. Returns 0, or -1 if
 * the host exited or the line did not come (the host is then killed).
 */
int harness_start(harness *h, const char *const *args);

/* Sends SIGTERM to the host and waits for it. Returns its exit status
 * (0..255), 128 + N when killed by signal N, or -1 when it did not exit in
 * time (it is then killed). h->pid is 0 afterwards. */
int harness_stop(harness *h);

/*
 * Runs HS_TEST_BIN with argv (the arguments after the program name,
 * NULL-terminated), stdout and stderr captured into out and err
 * (NUL-terminated, cut to their size; either may be NULL). Returns the exit
 * status, 128 + N when killed by signal N, or -1 when it did not exit in
 * time or could not be started.
 */
int harness_run(harness *h, const char *const *argv, char *out, size_t outsz,
                char *err, size_t errsz);

/* harness_run in two halves, for a client that waits on the host while the
 * test does something else: start fills p and returns 0 (or -1); wait
 * returns what harness_run returns. A client not waited for is killed by
 * harness_close. */
int harness_run_start(harness *h, const char *const *argv, harness_proc *p);
int harness_run_wait(harness *h, harness_proc *p, char *out, size_t outsz,
                     char *err, size_t errsz);

/* Returns 1 if the client has exited (harness_run_wait then returns at
 * once), 0 while it runs. Does not wait. */
int harness_run_done(harness *h, harness_proc *p);

/* Sends sig to the host (SIGHUP: rescan). Returns 0 or -1. */
int harness_signal(harness *h, int sig);

/* Kills the host's process group with SIGKILL and reaps it, leaving what a
 * crash leaves (a stale socket, the cache). Returns 0, or -1 when no host
 * ran or it did not die of the SIGKILL. */
int harness_kill(harness *h);

/* Runs argv (argv[0] a path) in its own process group, with the
 * "NAME=VALUE" strings of env (NULL-terminated, may be NULL) added to its
 * environment and its stdout and stderr into the file log. Returns its exit
 * status, or -1 when it could not start, died of a signal, or ran past
 * timeout_s (its whole group is then killed, and that said on stderr). */
int harness_exec(const char *const argv[], const char *const env[],
                 const char *log, int timeout_s);

/* ---- assertions (cmocka) ---------------------------------------------- */

/* Waits for a log line containing needle from the offset on (see
 * harness_wait); fails the test if none comes. Returns its offset. */
long harness_expect_line(harness *h, const char *needle);

/* Fails the test unless status --json shows key of plugin as want (a
 * string) or as the number want. */
void harness_expect_status(harness *h, const char *plugin, const char *key,
                           const char *want);
void harness_expect_status_num(harness *h, const char *plugin,
                               const char *key, long want);

/* ---- the log ----------------------------------------------------------- */

/*
 * Waits until a complete line of the log at or after h->offset contains
 * needle. On success copies that line (without '\n', cut to size) into
 * line if not NULL, moves h->offset past it and returns the offset where
 * the line starts. Returns -1 on timeout, after printing the needle and the
 * unmatched log on stderr.
 */
long harness_wait(harness *h, const char *needle, char *line, size_t size);

/* Counts the complete lines of the log in [from, to) that contain needle;
 * to < 0 means the end of the log. Returns the count, -1 on error. */
int harness_count(const harness *h, long from, long to, const char *needle);

/* The offset just past the last complete line of the log now. */
long harness_log_end(const harness *h);

/* Returns 1 if hay contains needle; otherwise prints both on stderr and
 * returns 0. For assert_true(harness_contains(line, "stage abi")). */
int harness_contains(const char *hay, const char *needle);

/* Returns 1 if hay does not contain needle; otherwise prints both on
 * stderr and returns 0. */
int harness_lacks(const char *hay, const char *needle);

/* ---- the plugin directory ---------------------------------------------- */

/* The size in bytes of HS_TEST_FIXTURES/<fixture>.so, -1 if missing. */
long harness_fixture_size(const char *fixture);

/*
 * Puts HS_TEST_FIXTURES/<fixture>.so into the plugin directory as name
 * ("counter.so"), written as how says. When mtime is not NULL the file's
 * access and modification times are set to it with utimensat (for
 * HARNESS_RENAME on the temporary file, before the rename). Returns 0 or -1.
 */
int harness_install(harness *h, const char *fixture, const char *name,
                    harness_how how, const struct timespec *mtime);

/* The same with only the first len bytes of the fixture. */
int harness_install_head(harness *h, const char *fixture, size_t len,
                         const char *name, harness_how how);

/* The same with text as the file's content. */
int harness_install_text(harness *h, const char *text, const char *name,
                         harness_how how);

/* Sets the access and modification time of name to mtime (NULL: now), as
 * touch(1) does; the content is not touched. Returns 0 or -1. */
int harness_touch(harness *h, const char *name, const struct timespec *mtime);

/* The modification time of name into *mtime. Returns 0 or -1. */
int harness_mtime(harness *h, const char *name, struct timespec *mtime);

/* Renames from to to inside the plugin directory (mv). Returns 0 or -1. */
int harness_move(harness *h, const char *from, const char *to);

/* Deletes name from the plugin directory. Returns 0 or -1. */
int harness_remove(harness *h, const char *name);

/* ---- status ------------------------------------------------------------ */

/* Runs "status --json" against the host into json. Returns the client's
 * exit status (0 when the host answered) or -1. */
int harness_status(harness *h, char *json, size_t size);

/*
 * Finds key in the status JSON: in the plugin object whose "name" is plugin,
 * or in "host" when plugin is NULL. key may name one nested member, as
 * "last_error.stage". Copies the value into out: a string unescaped, any
 * other value as its text ("2", "null", "{...}" for an object). Returns 0,
 * or -1 when the plugin or key is missing.
 */
int harness_json_get(const char *json, const char *plugin, const char *key,
                     char *out, size_t size);

/* harness_json_get for a number. Returns 0, or -1 if missing or not a
 * number. */
int harness_json_long(const char *json, const char *plugin, const char *key,
                      long *out);

/* Runs "status --json" and extracts one field (harness_json_get). Returns
 * 0, or -1 when the host did not answer or the field is missing. */
int harness_status_get(harness *h, const char *plugin, const char *key,
                       char *out, size_t size);

/* The same for a number. */
int harness_status_long(harness *h, const char *plugin, const char *key,
                        long *out);

/* Polls the status until the field key of plugin reads want (as
 * harness_json_get copies it). Returns 0, or -1 on timeout (printing the
 * last value). */
int harness_wait_status(harness *h, const char *plugin, const char *key,
                        const char *want);

/* ---- resources of a process -------------------------------------------- */

/* Entries of /proc/PID/fd, -1 on error. */
int harness_fd_count(pid_t pid);

/* What fd of pid points at (the readlink(2) text of /proc/PID/fd/FD, e.g.
 * "socket:[1234]"), into out. Returns 0 or -1. */
int harness_fd_target(pid_t pid, int fd, char *out, size_t size);

/* 1 if some fd of pid points at target (as harness_fd_target gives it),
 * 0 if none, -1 on error. */
int harness_holds(pid_t pid, const char *target);

/* The host's open fds once it is settled, so that counts taken at other
 * times compare: its spare validator handed over (the zygote forks one
 * 20 ms after the last validation, later on a loaded machine; the host
 * then holds its socket and pidfd, and no other pidfd). -1 if it does not
 * settle in time. */
int harness_fd_count_settled(const harness *h);

/* Lines of /proc/PID/maps, -1 on error. */
int harness_maps_count(pid_t pid);

/* Files inside every hotswap-* directory in h->cache, -1 on error. */
int harness_cache_files(const harness *h);

/* Waits until harness_cache_files(h) is n: the host retires old copies
 * off its loop, a little after the log reports the reload. Returns 0, or
 * -1 on timeout (printing the last count). */
int harness_wait_cache_files(const harness *h, int n);

/* hotswap-* directories in h->cache, -1 on error. */
int harness_cache_dirs(const harness *h);

#endif /* HS_TEST_HARNESS_H */
