/* build.c - plugins from source; see build.h. */
#include "build.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "perm.h"

#ifndef HS_SOURCE_INCLUDE_DIR
#define HS_SOURCE_INCLUDE_DIR "/usr/local/include"
#endif

/* Reads a whole file (at most 64 MiB). Names relative to dirfd (the
 * plugin directory) are not followed if they are symbolic links; absolute
 * ones (headers from a depfile, which may well be links) are. With check,
 * the file must pass hs_perm_check (else HS_EINSECURE, check filled).
 * Returns 0 with *buf (caller frees, NUL-terminated) and *len, or -errno. */
static int read_all(int dirfd, const char *name, char **buf, size_t *len,
                    hs_error *check) {
  int fd = openat(dirfd, name,
                  O_RDONLY | O_CLOEXEC | (name[0] == '/' ? 0 : O_NOFOLLOW));
  struct stat st;
  int rc;
  if (fd < 0)
    return -errno;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      st.st_size > (64 << 20)) {
    close(fd);
    return HS_EINVAL;
  }
  if (check && (rc = hs_perm_check_fd(fd, dirfd, name, "copy", check))) {
    close(fd);
    return rc;
  }
  char *b = malloc((size_t)st.st_size + 1);
  size_t got = 0;
  if (!b) {
    close(fd);
    return HS_ENOMEM;
  }
  got = hs_file_read(fd, b, (size_t)st.st_size, 0);
  close(fd);
  b[got] = '\0';
  *buf = b;
  *len = got;
  return 0;
}

static uint64_t mix(uint64_t key, uint64_t h) {
  key ^= h + 0x9e3779b97f4a7c15u + (key << 6) + (key >> 2);
  return key * 0xff51afd7ed558ccdu;
}

static uint64_t hash_str(const char *s) { return hs_hash(s, strlen(s)); }

/* Folds a file's name and content into *key; a missing file counts as
 * its own state ("missing"), so that creating it changes the key. Returns
 * 0, or HS_EINSECURE when check is set and the file fails it. */
static int mix_file(uint64_t *key, int dirfd, const char *name,
                    hs_error *check) {
  char *buf;
  size_t len;
  int rc;
  *key = mix(*key, hash_str(name));
  if ((rc = read_all(dirfd, name, &buf, &len, check)) != 0) {
    *key = mix(*key, hash_str("(missing)"));
    return rc == HS_EINSECURE ? rc : 0;
  }
  *key = mix(*key, hs_hash(buf, len));
  free(buf);
  return 0;
}

/* hs_perm_check of the directory name (NULL: dirfd itself). */
static int check_dir(int dirfd, const char *name, hs_error *err) {
  int fd = name ? openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                : dirfd;
  int rc;
  if (fd < 0)
    return 0; /* gone: the caller finds out */
  rc = hs_perm_check_fd(fd, dirfd, name, "copy", err);
  if (name)
    close(fd);
  return rc;
}

/* Finds cmd in PATH (or as given, if it has a slash). */
static int resolve(const char *cmd, char *out, size_t len) {
  if (strchr(cmd, '/'))
    return snprintf(out, len, "%s", cmd) < (int)len ? 0 : -1;
  const char *path = getenv("PATH");
  if (!path)
    path = "/usr/local/bin:/usr/bin:/bin";
  for (const char *p = path; *p;) {
    const char *colon = strchr(p, ':');
    size_t n = colon ? (size_t)(colon - p) : strlen(p);
    snprintf(out, len, "%.*s/%s", (int)n, p, cmd);
    if (access(out, X_OK) == 0)
      return 0;
    p = colon ? colon + 1 : p + n;
  }
  return -1;
}

int hs_build_env_init(hs_build_env *env, int color, int werror,
                      const hs_sandbox_limits *limits, hs_error *err) {
  char exe[PATH_MAX], inc[PATH_MAX + 32], ccpath[PATH_MAX];
  const char *cc = getenv("CC");
  struct stat st;

  memset(env, 0, sizeof(*env));
  env->color = color;
  env->werror = werror;
  env->limits = *limits;
  env->cc = strdup(cc && *cc ? cc : "cc");
  inc[0] = '\0';
  if (getenv("HOTSWAP_INCLUDE") && *getenv("HOTSWAP_INCLUDE")) {
    char probe[PATH_MAX + 64];
    snprintf(inc, sizeof(inc), "%s", getenv("HOTSWAP_INCLUDE"));
    snprintf(probe, sizeof(probe), "%s/hotswap.h", inc);
    if (access(probe, R_OK) != 0) {
      int rc = hs_error_set(err, HS_ENOENT, "compile",
                            "cannot find hotswap.h for compiling plugins "
                            "(looked in %s; set HOTSWAP_INCLUDE)",
                            inc);
      hs_build_env_free(env);
      return rc;
    }
  } else {
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
      exe[n] = '\0';
      char *slash = strrchr(exe, '/');
      if (slash)
        *slash = '\0';
      snprintf(inc, sizeof(inc), "%s/../include", exe);
      char probe[PATH_MAX + 64];
      snprintf(probe, sizeof(probe), "%s/hotswap.h", inc);
      if (access(probe, R_OK) != 0)
        inc[0] = '\0';
    }
    if (!inc[0])
      snprintf(inc, sizeof(inc), "%s", HS_SOURCE_INCLUDE_DIR);
  }
  env->include_dir = realpath(inc, NULL);
  if (!env->cc || !env->include_dir) {
    int rc = hs_error_set(err, env->cc ? HS_ENOENT : HS_ENOMEM, "compile",
                          "cannot find hotswap.h for compiling plugins "
                          "(looked in %s; set HOTSWAP_INCLUDE)",
                          inc);
    hs_build_env_free(env);
    return rc;
  }
  /* The compiler's identity: its first word resolved, with size and mtime
   * (a compiler upgrade rebuilds everything). */
  char first[256];
  snprintf(first, sizeof(first), "%s", env->cc);
  first[strcspn(first, " \t")] = '\0';
  env->cc_id = hash_str(env->cc);
  if (resolve(first, ccpath, sizeof(ccpath)) == 0 && stat(ccpath, &st) == 0) {
    env->cc_id = mix(env->cc_id, hash_str(ccpath));
    env->cc_id = mix(env->cc_id, (uint64_t)st.st_size);
    env->cc_id = mix(env->cc_id, (uint64_t)st.st_mtim.tv_sec);
  }
  return 0;
}

void hs_build_env_free(hs_build_env *env) {
  free(env->cc);
  free(env->include_dir);
  memset(env, 0, sizeof(*env));
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The files of a directory plugin ("stem/x", sorted), all of them or only
 * the .c ones. Returns the count (-1 on error); *out is caller-freed with
 * each name. */
static int list_dir(int dirfd, const char *stem, int only_c, char ***out) {
  int fd = openat(dirfd, stem, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  char **names = NULL;
  int n = 0, cap = 0;
  struct dirent *e;

  *out = NULL;
  if (!d) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (e->d_name[0] == '.' || e->d_type == DT_DIR ||
        (only_c && (len < 3 || strcmp(e->d_name + len - 2, ".c") != 0)))
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 8;
      char **nn = realloc(names, (size_t)cap * sizeof(*nn));
      if (!nn)
        break;
      names = nn;
    }
    if (asprintf(&names[n], "%s/%s", stem, e->d_name) < 0)
      break;
    n++;
  }
  closedir(d);
  if (n > 0)
    qsort(names, (size_t)n, sizeof(*names), by_name);
  *out = names;
  return n;
}

static void free_list(char **names, int n) {
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

int hs_build_is_dir_plugin(int dirfd, const char *stem) {
  char **names;
  int n = list_dir(dirfd, stem, 1, &names);
  free_list(names, n > 0 ? n : 0);
  return n > 0;
}

int hs_build_is_source(const char *file) {
  size_t n = strlen(file);
  return n > 2 && file[0] != '.' && strcmp(file + n - 2, ".c") == 0 &&
         !strchr(file, '/');
}

int hs_build_key(const hs_build_env *env, const hs_build *b, int dirfd,
                 const char *stem, int is_dir, uint64_t *key, hs_error *err) {
  char src[NAME_MAX + 8], flags[NAME_MAX + 8];
  char *buf;
  size_t len;
  uint64_t k = mix(env->cc_id, hash_str(env->include_dir));
  /* Inputs other users could write are refused (perm.h). */
  hs_error *check = env->allow_insecure ? NULL : err;
  int rc;

  k = mix(k, (uint64_t)env->werror);
  if (check && (rc = check_dir(dirfd, NULL, err)) != 0)
    return rc;
  if (is_dir) {
    char **names;
    int n = list_dir(dirfd, stem, 0, &names);
    if (n <= 0 || !hs_build_is_dir_plugin(dirfd, stem)) {
      free_list(names, n > 0 ? n : 0);
      return hs_error_set(err, HS_ENOENT, "copy", "%s/ has no .c file",
                          stem);
    }
    rc = check ? check_dir(dirfd, stem, err) : 0;
    for (int i = 0; rc == 0 && i < n; i++)
      rc = mix_file(&k, dirfd, names[i], check);
    free_list(names, n);
    if (rc != 0)
      return rc;
  } else {
    snprintf(src, sizeof(src), "%s.c", stem);
    snprintf(flags, sizeof(flags), "%s.flags", stem);
    rc = read_all(dirfd, src, &buf, &len, check);
    if (rc == HS_EINSECURE)
      return rc;
    if (rc != 0)
      return hs_error_set(err, rc, "copy", "cannot read %s: %s", src,
                          hs_strerror(rc));
    k = mix(mix(k, hash_str(src)), hs_hash(buf, len));
    free(buf);
    if ((rc = mix_file(&k, dirfd, flags, check)) != 0)
      return rc;
  }
  /* Headers the last build read, except the system's (the compiler's
   * identity stands for those). */
  for (size_t i = 0; i < b->ndeps; i++) {
    if (strncmp(b->deps[i], "/usr/", 5) == 0)
      continue;
    if ((rc = mix_file(&k, AT_FDCWD, b->deps[i], check)) != 0)
      return rc;
  }
  *key = k;
  return 0;
}

const char *hs_build_lookup(const hs_build *b, uint64_t key) {
  for (unsigned i = 0; i < b->nout; i++)
    if (b->out[i].key == key)
      return b->out[i].name;
  return NULL;
}

/* Appends one word, verbatim (it may hold blanks). */
static int add_word(char ***argv, size_t *n, size_t *cap, const char *w) {
  if (*n + 2 > *cap) {
    size_t nc = *cap ? *cap * 2 : 32;
    char **a = realloc(*argv, nc * sizeof(*a));
    if (!a)
      return HS_ENOMEM;
    *argv = a;
    *cap = nc;
  }
  if (!((*argv)[*n] = strdup(w)))
    return HS_ENOMEM;
  (*argv)[++*n] = NULL;
  return 0;
}

/* Appends the words of s, split at blanks; '#' starts a comment that runs
 * to the end of the line. */
static int add_words(char ***argv, size_t *n, size_t *cap, const char *s) {
  char word[4096];
  while (*s) {
    if (*s == '#') {
      s += strcspn(s, "\n");
      continue;
    }
    size_t w = strcspn(s, " \t\r\n");
    if (w == 0) {
      s++;
      continue;
    }
    snprintf(word, sizeof(word), "%.*s", (int)w, s);
    int rc = add_word(argv, n, cap, word);
    if (rc)
      return rc;
    s += w;
  }
  return 0;
}

char **hs_build_argv(const hs_build_env *env, int dirfd, const char *dir,
                     const char *stem, int is_dir, const char *out,
                     const char *dep) {
  char **argv = NULL, *flags = NULL, inc[PATH_MAX + 4], here[PATH_MAX + 4],
       sub[PATH_MAX + NAME_MAX + 8], name[NAME_MAX + 8];
  char **srcs = NULL;
  size_t n = 0, cap = 0, len;
  int nsrc = 1, rc;

  snprintf(inc, sizeof(inc), "-I%s", env->include_dir);
  snprintf(here, sizeof(here), "-I%s", dir);
  snprintf(sub, sizeof(sub), "-I%s/%s", dir, stem);
  if (is_dir) {
    nsrc = list_dir(dirfd, stem, 1, &srcs);
    if (nsrc <= 0) {
      free_list(srcs, 0);
      return NULL;
    }
  }
  rc = add_words(&argv, &n, &cap, env->cc);
  if (!rc)
    rc = add_words(&argv, &n, &cap,
                   "-shared -fPIC -O2 -g -Wall -fvisibility=hidden -MMD");
  if (!rc && env->color)
    rc = add_word(&argv, &n, &cap, "-fdiagnostics-color=always");
  if (!rc && env->werror)
    rc = add_word(&argv, &n, &cap, "-Werror");
  const char *words[] = {inc, here, "-MF", dep, "-o", out};
  for (size_t i = 0; !rc && i < sizeof(words) / sizeof(words[0]); i++)
    rc = add_word(&argv, &n, &cap, words[i]);
  if (!rc && is_dir)
    rc = add_word(&argv, &n, &cap, sub);
  snprintf(name, sizeof(name), "%s.c", stem);
  for (int i = 0; !rc && i < nsrc; i++)
    rc = add_word(&argv, &n, &cap, is_dir ? srcs[i] : name);
  free_list(srcs, is_dir ? nsrc : 0);
  snprintf(name, sizeof(name), is_dir ? "%s/flags" : "%s.flags", stem);
  if (!rc && read_all(dirfd, name, &flags, &len, NULL) == 0) {
    rc = add_words(&argv, &n, &cap, flags); /* last, so -lm works */
    free(flags);
  }
  if (rc) {
    hs_build_argv_free(argv);
    return NULL;
  }
  return argv;
}

void hs_build_argv_free(char **argv) {
  if (!argv)
    return;
  for (char **a = argv; *a; a++)
    free(*a);
  free(argv);
}

static void deps_free(hs_build *b) {
  for (size_t i = 0; i < b->ndeps; i++)
    free(b->deps[i]);
  free(b->deps);
  b->deps = NULL;
  b->ndeps = 0;
}

int hs_build_read_deps(hs_build *b, const char *depfile, const char *dir) {
  char *buf, word[PATH_MAX];
  size_t len, cap = 0;
  int rc = read_all(AT_FDCWD, depfile, &buf, &len, NULL);
  if (rc != 0)
    return rc;
  deps_free(b);
  /* "target: dep dep \<newline> dep": skip the target, then words, with
   * "\ " an escaped blank and "\<newline>" a continuation. */
  char *p = strchr(buf, ':');
  p = p ? p + 1 : buf + len;
  while (*p && rc == 0) {
    size_t w = 0;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' ||
           (*p == '\\' && (p[1] == '\n' || p[1] == '\r')))
      p += *p == '\\' ? 2 : 1;
    while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' &&
           w < sizeof(word) - 1) {
      if (*p == '\\' && p[1] == ' ')
        p++;
      else if (*p == '\\' && (p[1] == '\n' || p[1] == '\r'))
        break;
      word[w++] = *p++;
    }
    if (w == 0)
      continue;
    word[w] = '\0';
    if (b->ndeps == cap) {
      size_t nc = cap ? cap * 2 : 16;
      char **d = realloc(b->deps, nc * sizeof(*d));
      if (!d) {
        rc = HS_ENOMEM;
        break;
      }
      b->deps = d;
      cap = nc;
    }
    char full[PATH_MAX * 2];
    if (word[0] == '/')
      snprintf(full, sizeof(full), "%s", word);
    else
      snprintf(full, sizeof(full), "%s/%s", dir, word);
    if (!(b->deps[b->ndeps] = strdup(full)))
      rc = HS_ENOMEM;
    else
      b->ndeps++;
  }
  free(buf);
  return rc;
}

int hs_build_depends_on(const hs_build *b, const char *path) {
  for (size_t i = 0; i < b->ndeps; i++)
    if (strcmp(b->deps[i], path) == 0)
      return 1;
  return 0;
}

static void remove_output(hs_cache *cache, const char *name) {
  char dep[NAME_MAX + 8];
  unlinkat(cache->dirfd, name, 0);
  snprintf(dep, sizeof(dep), "%s", name);
  size_t n = strlen(dep);
  if (n > 3 && strcmp(dep + n - 3, ".so") == 0) {
    strcpy(dep + n - 3, ".d");
    unlinkat(cache->dirfd, dep, 0);
  }
}

void hs_build_store(hs_build *b, hs_cache *cache, uint64_t key, char *name) {
  unsigned i;
  for (i = 0; i < b->nout; i++)
    if (b->out[i].key == key)
      break;
  if (i == b->nout) {
    if (b->nout < HS_BUILD_KEEP) {
      i = b->nout++;
    } else {
      i = 0; /* the oldest goes */
      for (unsigned j = 1; j < b->nout; j++)
        if (b->out[j].age < b->out[i].age)
          i = j;
    }
  }
  if (b->out[i].name) {
    remove_output(cache, b->out[i].name);
    free(b->out[i].name);
  }
  b->out[i].key = key;
  b->out[i].name = name;
  b->out[i].age = ++b->clock;
}

void hs_build_free(hs_build *b, hs_cache *cache) {
  for (unsigned i = 0; i < b->nout; i++) {
    if (cache)
      remove_output(cache, b->out[i].name);
    free(b->out[i].name);
  }
  deps_free(b);
  memset(b, 0, sizeof(*b));
}
