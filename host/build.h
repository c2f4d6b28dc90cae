/*
 * build.h - plugins from source: a NAME.c in the plugin directory (with an
 * optional NAME.flags of extra compiler and linker words, e.g. -lm), or a
 * directory NAME/ of .c and .h files (with an optional NAME/flags), that
 * the host compiles itself, in the sandbox, into the private cache.
 *
 * A build is keyed by the hash of every input: the compiler's identity,
 * the flags, the sources and the headers the last build depended on (the
 * compiler's own dependency file). Saving without a change, or going back
 * to content built before, costs no compile: the key finds the earlier
 * output. Editing a header rebuilds exactly the plugins that include it.
 * (With several sources the compiler writes the dependencies of the last
 * one only, so a directory plugin is keyed by every file in its directory
 * plus those: a header outside NAME/ that only an earlier source includes
 * is not seen.)
 */
#ifndef HS_BUILD_H
#define HS_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "err.h"
#include "sandbox.h"

#define HS_BUILD_KEEP 8 /* outputs kept per plugin, for going back */

/* How every plugin is built; one per host. */
typedef struct hs_build_env {
  char *cc;           /* $CC, else "cc" */
  uint64_t cc_id;     /* hash of the compiler's resolved path, size, mtime */
  char *include_dir;  /* where hotswap.h is */
  int color;          /* -fdiagnostics-color=always (stderr is a tty) */
  int werror;         /* warnings block (--plugin-werror) */
  hs_sandbox_limits limits; /* for the compiler */
  int allow_insecure; /* inputs others could write (--allow-insecure) */
} hs_build_env;

/* What one source plugin's builds left behind. */
typedef struct hs_build {
  char **deps;        /* owned: absolute paths the last build read */
  size_t ndeps;
  struct {
    uint64_t key;
    char *name;       /* owned: output file name in the cache dir */
    uint64_t age;     /* when it was stored; the smallest goes first */
  } out[HS_BUILD_KEEP];
  unsigned nout;      /* entries used */
  uint64_t clock;     /* stamps the ages */
  uint64_t failed_key; /* inputs that failed to compile last time */
} hs_build;

/*
 * Fills env: the compiler from $CC, the include directory ($HOTSWAP_INCLUDE,
 * else ../include beside the hotswap binary, else the source tree's). Returns
 * 0, or a negative code with err filled (stage "compile": no hotswap.h).
 */
int hs_build_env_init(hs_build_env *env, int color, int werror,
                      const hs_sandbox_limits *limits, hs_error *err);
void hs_build_env_free(hs_build_env *env);

/* Returns 1 for "NAME.c" (a source plugin), else 0. */
int hs_build_is_source(const char *file);

/* The key of stem's inputs now: "stem.c" and "stem.flags", or for a
 * directory plugin (is_dir) every file in "stem/"; and b's known
 * dependencies. Unless env->allow_insecure, each of them, "stem/" and the
 * directory dirfd must pass hs_perm_check. Returns 0 with *key set, or a
 * negative code with err filled (stage "copy": no readable source, or
 * HS_EINSECURE). */
int hs_build_key(const hs_build_env *env, const hs_build *b, int dirfd,
                 const char *stem, int is_dir, uint64_t *key, hs_error *err);

/* The output built for key earlier (its name in the cache dir), or NULL. */
const char *hs_build_lookup(const hs_build *b, uint64_t key);

/*
 * Builds the compiler's argv for stem (owned by the caller: free with
 * hs_build_argv_free): $CC -shared -fPIC -O2 -g -Wall -fvisibility=hidden
 * -MMD [-fdiagnostics-color=always] [-Werror] -I<include> -I<dir> -MF <dep>
 * -o <out> [-I<dir>/stem] <sources> [words of the flags file]. The sources are stem.c, or stem/ *.c in name
 * order. out and dep are absolute paths in the cache. Returns NULL when out
 * of memory or when a directory plugin has no .c file.
 */
char **hs_build_argv(const hs_build_env *env, int dirfd, const char *dir,
                     const char *stem, int is_dir, const char *out,
                     const char *dep);

/* Returns 1 if stem (relative to dirfd) is a directory holding a .c file. */
int hs_build_is_dir_plugin(int dirfd, const char *stem);
void hs_build_argv_free(char **argv);

/* Reads the dependency file the compiler wrote into b->deps (relative
 * names made absolute against dir). Returns 0 or a negative code. */
int hs_build_read_deps(hs_build *b, const char *depfile, const char *dir);

/* Returns 1 if the last build of b read the file at path. */
int hs_build_depends_on(const hs_build *b, const char *path);

/* Remembers name (taken over) as the newest output, for key (replacing
 * what key had), removing the oldest output from the cache when
 * HS_BUILD_KEEP are kept. */
void hs_build_store(hs_build *b, hs_cache *cache, uint64_t key, char *name);

/* Removes every output of b from the cache and frees b's memory. */
void hs_build_free(hs_build *b, hs_cache *cache);

#endif /* HS_BUILD_H */
