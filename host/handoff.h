/*
 * handoff.h - what a host hands to the new image of itself when it
 * re-executes (see upgrade.h): every plugin's name, cache copy, version,
 * state bytes, and the fds and timers it registered through the host API,
 * plus the host's own control socket, cache and counters.
 *
 * The handoff travels as an anonymous memory file (memfd) whose fd number
 * the new image finds in $HOTSWAP_HANDOFF. The format is binary, little
 * endian as the machine is (both images run on the same machine), and
 * versioned: it opens with HS_HANDOFF_MAGIC, the format version, the
 * payload's length and its hash, so a truncated or foreign file is refused
 * with the reason instead of starting empty. A host reads every format
 * version from 1 to HS_HANDOFF_VERSION, and writes the newest one the new
 * image reads (its check says which: upgrade.h), so that an older build
 * can still take over. Format 2 adds what the host knows of each
 * plugin's crashes.
 */
#ifndef HS_HANDOFF_H
#define HS_HANDOFF_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "state.h"

#define HS_HANDOFF_MAGIC "HSHANDOF"
#define HS_HANDOFF_VERSION 2
#define HS_HANDOFF_ENV "HOTSWAP_HANDOFF"

/* An fd a plugin registered with io_watch; it stays open, same number. */
typedef struct hs_handoff_fd {
  int fd;
  uint32_t events;        /* HS_IO_READ | HS_IO_WRITE as the plugin set */
  uint64_t token;
  char name[64];          /* fd_keep name, "" if none */
} hs_handoff_fd;

/* A timer a plugin started with timer_start. */
typedef struct hs_handoff_timer {
  int64_t id;
  uint64_t token;
  uint64_t repeat_ms;
  uint64_t due_ns;        /* CLOCK_MONOTONIC, which survives execve */
} hs_handoff_timer;

/* A build output of a source plugin kept in the cache (build.h). */
typedef struct hs_handoff_output {
  uint64_t key;           /* the inputs it was built from */
  char *name;             /* its file name in the cache dir */
} hs_handoff_output;

#define HS_HANDOFF_CRASH_TIMES 100 /* = HS_CRASH_LIMIT_MAX (crash.h) */

/* What the host knew of a plugin's crashes (crash.h); format 2 on. Empty
 * (all zero) when read from format 1. */
typedef struct hs_handoff_crash {
  int quarantined;        /* not running since a crash */
  int held;               /* crash loop: waits for different content */
  uint64_t held_hash;     /* the content that crashed last */
  uint32_t count;         /* crashes so far */
  uint32_t ntimes;        /* times[0..ntimes): the latest crashes, oldest
                             first (CLOCK_MONOTONIC, which survives exec) */
  uint64_t times[HS_HANDOFF_CRASH_TIMES];
  /* the last crash, when count > 0 */
  char *callback, *version, *what, *where, *action, *detail;
  int signo, code, hang;
  uint64_t addr, pc;
  int64_t at;             /* wall clock, s */
} hs_handoff_crash;

/* One plugin. Strings are owned by the handoff after hs_handoff_read; when
 * writing, they are the caller's. */
typedef struct hs_handoff_slot {
  char *file;             /* in the plugin directory: "counter.c" */
  int loaded;             /* 1: copy_path was live and is loaded again */
  char *copy_path;        /* the live version's copy in the cache */
  uint64_t copy_hash, copy_size;
  char *version;          /* its version string */
  uint32_t generation, reloads;
  int64_t loaded_at;      /* wall clock, s */
  uint64_t build_key;     /* source plugins: inputs of the live version */
  uint64_t rejected_hash; /* content rejected last, not retried unchanged */
  hs_state state;         /* version, size, bytes (owned after a read) */
  hs_handoff_fd *fds;
  size_t nfds;
  hs_handoff_timer *timers;
  size_t ntimers;
  int64_t next_timer_id;
  char **deps;            /* source plugins: the files the last build read */
  size_t ndeps;
  hs_handoff_output *outputs; /* and the outputs kept for going back */
  size_t noutputs;
  uint64_t failed_key;    /* inputs that failed to compile last */
  hs_handoff_crash crash; /* format 2 on */
} hs_handoff_slot;

typedef struct hs_handoff {
  uint32_t version;       /* the format version read; when writing, the
                             one to write (0: HS_HANDOFF_VERSION) */
  char *host_version;     /* HS_VERSION_STRING of the image that wrote it */
  uint32_t reexecs;       /* re-executions so far, this one included */
  int64_t started_at;     /* wall clock (s) when the first image started */
  uint64_t started_ns;    /* CLOCK_MONOTONIC then (uptime goes on) */
  int64_t reexec_at;      /* wall clock (s) of this re-execution */
  uint64_t paused_ns;     /* CLOCK_MONOTONIC when plugins were unloaded */
  char *self_path;        /* the executable being watched */
  uint64_t self_hash;     /* content of the binary the new image runs */
  char *plugin_dir;       /* realpath of PLUGIN_DIR */
  char *cache_dir;        /* the cache directory the new image takes over */
  uint64_t cache_next;    /* its next copy number */
  int control_fd;         /* listening control socket, -1 if none */
  char *control_path;
  hs_handoff_slot *slots;
  size_t nslots;
  int owned;              /* 1 after hs_handoff_read: free frees strings */
} hs_handoff;

/* Writes h into a new memfd (close-on-exec; the caller clears that flag
 * for the execve), in format h->version (0: the newest; format 1 leaves
 * the crashes out). Returns the fd, or a negative code with err filled
 * (stage "handoff"; HS_EINVAL for a format this host cannot write). */
int hs_handoff_write(const hs_handoff *h, hs_error *err);

/* Reads a handoff from fd (from its start) into h, which the caller frees
 * with hs_handoff_free. Returns 0, or a negative code with err filled
 * saying what is wrong: not a handoff, a format version this host cannot
 * read (quoting both), truncated, corrupt (hash mismatch). */
int hs_handoff_read(int fd, hs_handoff *h, hs_error *err);

/* Frees what hs_handoff_read allocated (or, for a handoff built for
 * writing, only the slots' arrays the writer's builder allocated: see
 * hs_handoff.owned). Harmless on a zeroed h. */
void hs_handoff_free(hs_handoff *h);

#endif /* HS_HANDOFF_H */
