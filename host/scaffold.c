/*
 * scaffold.c - `hotswap new NAME`: the plugin skeleton, written from a
 * template, and the command that builds it.
 */
#include "scaffold.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

/*
 * The skeleton, one line per string. "@name@" becomes the plugin's name,
 * "@NAME@" the name in capitals (for its macros) and "@inc@" the directory
 * of hotswap.h. It must build warning-free with the host's warning flags
 * and load as it is: tests/test_host_sdk.c builds and loads it.
 */
static const char *const skeleton[] = {
    "/*",
    " * @name@.c - the hotswap plugin \"@name@\", written by `hotswap new @"
    "name@`.",
    " * It builds and loads as it is: make it yours.",
    " *",
    " * Build it from the directory that holds it (hotswap.h is the only he"
    "ader",
    " * it needs, and it links nothing):",
    " *",
    " *   cc -std=c11 -O2 -g -fPIC -shared -fvisibility=hidden \\",
    " *      -I@inc@ -o @name@.so @name@.c",
    " *",
    " * then run the host on that directory:",
    " *",
    " *   hotswap .",
    " *",
    " * Leave the host running, edit this file (@NAME@_VERSION, say) and build",
    " * again: the host tries the new version in its sandbox, swaps it in, and",
    " * the state carries on. Build into a temporary name and rename it over",
    " * @name@.so, so that the host sees the whole file at once.",
    " *",
    " * The rules this file follows are in hotswap's docs/plugins.md.",
    " */",
    "#include <inttypes.h>",
    "#include <stdint.h>",
    "",
    "#include \"hotswap.h\"",
    "",
    "/* ---- edit these, rebuild, and watch the host swap the new code in -"
    "--- */",
    "#define @NAME@_VERSION \"0.1.0\" /* shown in the log and in hotswap st"
    "atus */",
    "#define @NAME@_TICK_MS 1000    /* how often tick() runs, in millisecon"
    "ds */",
    "",
    "/*",
    " * The state: plain data only. The host keeps these bytes (zeroed at the",
    " * first load) across reloads and hands them to every callback. Never "
    "store",
    " * a pointer here: after a reload, the old version's code and data are"
    " gone.",
    " *",
    " * @NAME@_STATE_VERSION is the layout version of this struct. When you"
    " add,",
    " * remove or retype a member, increase it and teach @name@_migrate() to",
    " * build the new layout from the old one.",
    " */",
    "#define @NAME@_STATE_VERSION 1",
    "",
    "typedef struct @name@_state {",
    "  uint64_t ticks; /* tick() calls so far, across all versions */",
    "  uint64_t loads; /* live loads so far, across all versions */",
    "} @name@_state;",
    "",
    "/* The host's function table. It outlives every version of the plugin;",
    " * each version keeps its own pointer to it. */",
    "static const hs_api *api;",
    "",
    "/* One step of the plugin's work, kept apart from tick() so that selft"
    "est()",
    " * can try it on a copy of the state. */",
    "static void @name@_step(@name@_state *s) { s->ticks++; }",
    "",
    "/*",
    " * Runs at every load: the first one (state zeroed), each reload (the "
    "state",
    " * as the previous version left it), and in the sandbox, on a copy of the",
    " * live state, before this version may go live. Outside effects belong to",
    " * the live host only (api->in_sandbox() is 0 there). Returns 0, or a",
    " * negative code to refuse this version.",
    " */",
    "static int @name@_load(hs_ctx *ctx, void *state, hs_load_reason reason) {",
    "  @name@_state *s = state;",
    "",
    "  if (api->in_sandbox(ctx))",
    "    return 0;",
    "  s->loads++;",
    "  api->log(ctx, HS_LOG_INFO,",
    "           \"version %s up (load reason %d, load %\" PRIu64 \", %\" PR"
    "Iu64",
    "           \" ticks so far)\",",
    "           @NAME@_VERSION, (int)reason, s->loads, s->ticks);",
    "  /* Ticks stop by themselves at unload: every load starts its own. */",
    "  return api->tick_start(ctx, @NAME@_TICK_MS);",
    "}",
    "",
    "/* Runs before the next version takes over, when the file is deleted and",
    " * when the host exits. The state stays with the host: release here only",
    " * what load() took outside it. */",
    "static void @name@_unload(hs_ctx *ctx, void *state, hs_unload_reason r"
    "eason) {",
    "  const @name@_state *s = state;",
    "",
    "  if (api->in_sandbox(ctx))",
    "    return;",
    "  api->log(ctx, HS_LOG_INFO,",
    "           \"version %s down (unload reason %d) after %\" PRIu64 \" ti"
    "cks\",",
    "           @NAME@_VERSION, (int)reason, s->ticks);",
    "}",
    "",
    "/* Runs every @NAME@_TICK_MS milliseconds in the live host (never in the",
    " * sandbox). Its log lines show with hotswap --log-level debug. */",
    "static void @name@_tick(hs_ctx *ctx, void *state) {",
    "  @name@_state *s = state;",
    "",
    "  @name@_step(s);",
    "  api->log(ctx, HS_LOG_DEBUG, \"tick %\" PRIu64, s->ticks);",
    "}",
    "",
    "/*",
    " * Builds this version's state from an older version's. The host calls it",
    " * only when @NAME@_STATE_VERSION or sizeof(@name@_state) differ from "
    "those",
    " * of the version running now: new_state is zeroed, old_state holds",
    " * old_size bytes of layout old_version. Returns 0, or a negative code to",
    " * reject this version (the running one stays).",
    " *",
    " * There is no older layout yet. When you change @name@_state, keep a "
    "copy",
    " * of the old struct here (as @name@_state_v1), increase",
    " * @NAME@_STATE_VERSION and add a case that copies the old members acr"
    "oss:",
    " *",
    " *   case 1: {",
    " *     const @name@_state_v1 *old = old_state;",
    " *     @name@_state *s = new_state;",
    " *     if (old_size < sizeof(*old))",
    " *       return HS_EINVAL;",
    " *     s->ticks = old->ticks;",
    " *     s->loads = old->loads;",
    " *     return 0;",
    " *   }",
    " */",
    "static int @name@_migrate(hs_ctx *ctx, void *new_state, const void *ol"
    "d_state,",
    "                          uint32_t old_version, uint32_t old_size) {",
    "  (void)new_state; /* used by the cases you add */",
    "  (void)old_state;",
    "  switch (old_version) {",
    "  case @NAME@_STATE_VERSION:",
    "    /* The struct changed size but its layout version did not. */",
    "    api->log(ctx, HS_LOG_ERROR,",
    "             \"state is %zu bytes, was %\" PRIu32 \" at the same state \"",
    "             \"version %\" PRIu32 \": increase @NAME@_STATE_VERSION\",",
    "             sizeof(@name@_state), old_size, old_version);",
    "    return HS_EMIGRATE;",
    "  default:",
    "    api->log(ctx, HS_LOG_ERROR,",
    "             \"no migration from state version %\" PRIu32 \" (%\" PRIu32",
    "             \" bytes) to %d yet\",",
    "             old_version, old_size, @NAME@_STATE_VERSION);",
    "    return HS_EMIGRATE;",
    "  }",
    "}",
    "",
    "/*",
    " * Runs only in the sandbox, after load(), on a copy of the live state. A",
    " * negative return rejects this version before it touches the live state:",
    " * check here what the new code must get right.",
    " */",
    "static int @name@_selftest(hs_ctx *ctx, void *state) {",
    "  @name@_state trial = *(const @name@_state *)state;",
    "  uint64_t before = trial.ticks;",
    "",
    "  @name@_step(&trial);",
    "  if (trial.ticks != before + 1) {",
    "    api->log(ctx, HS_LOG_ERROR,",
    "             \"selftest: one step took the ticks from %\" PRIu64 \" to"
    " %\" PRIu64,",
    "             before, trial.ticks);",
    "    return HS_ESELFTEST;",
    "  }",
    "  return 0;",
    "}",
    "",
    "/* What the host reads first. It must stay valid while this version is",
    " * loaded: a static const object. */",
    "static const hs_plugin @name@_plugin = {",
    "    .abi_version = HS_ABI_VERSION,",
    "    .size = sizeof(hs_plugin),",
    "    .name = \"@name@\",",
    "    .version = @NAME@_VERSION,",
    "    .state_version = @NAME@_STATE_VERSION,",
    "    .state_size = sizeof(@name@_state),",
    "    .load = @name@_load,",
    "    .unload = @name@_unload,",
    "    .tick = @name@_tick,",
    "    .migrate = @name@_migrate,",
    "    .selftest = @name@_selftest,",
    "};",
    "",
    "/* The one exported symbol. Everything else here is static and, built "
    "with",
    " * -fvisibility=hidden, invisible outside @name@.so. */",
    "HS_EXPORT const hs_plugin *hotswap_plugin_entry(const hs_api *host_api) {",
    "  api = host_api;",
    "  return &@name@_plugin;",
    "}",
};

/* What the build command says when no hotswap.h was found. */
#define UNKNOWN_INCLUDE_DIR "/path/to/hotswap/include"

int hs_scaffold_check_name(const char *name, hs_error *err) {
  size_t i, n = strlen(name);

  if (n == 0)
    return hs_error_set(err, HS_EINVAL, NULL, "the plugin NAME is empty");
  if (n > HS_SCAFFOLD_NAME_MAX)
    return hs_error_set(err, HS_EINVAL, NULL,
                        "'%.20s...' is too long for a plugin NAME (at most %d "
                        "characters)",
                        name, HS_SCAFFOLD_NAME_MAX);
  for (i = 0; i < n; i++) {
    char c = name[i];
    int ok =
        (c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    /* A leading '_' would make the skeleton's file-scope names reserved. */
    if (!ok || name[0] == '_')
      return hs_error_set(err, HS_EINVAL, NULL,
                          "'%s' is not a plugin NAME: use lower-case letters, "
                          "digits and '_', starting with a letter (e.g. "
                          "'my_plugin')",
                          name);
  }
  /* The skeleton's identifiers start with the name: hs_* is hotswap.h's. */
  if (strcmp(name, "hs") == 0 || strncmp(name, "hs_", 3) == 0)
    return hs_error_set(err, HS_EINVAL, NULL,
                        "'%s' is not a plugin NAME: names 'hs' and 'hs_...' "
                        "belong to hotswap.h",
                        name);
  return 0;
}

/* dir/name + ext into out ("name.c" for dir "."), without a doubled '/'.
 * Returns 0 or -1. */
static int source_path(char *out, size_t size, const char *dir,
                       const char *name, const char *ext) {
  size_t len = strlen(dir);
  int n;

  if (strcmp(dir, ".") == 0)
    n = snprintf(out, size, "%s%s", name, ext);
  else
    n = snprintf(out, size, "%s%s%s%s", dir,
                 len > 0 && dir[len - 1] == '/' ? "" : "/", name, ext);
  return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Writes one template line to f with its placeholders filled in. */
static void put_line(FILE *f, const char *line, const char *name,
                     const char *inc) {
  const char *p;

  while ((p = strchr(line, '@')) != NULL) {
    fwrite(line, 1, (size_t)(p - line), f);
    if (strncmp(p, "@name@", 6) == 0) {
      fputs(name, f);
      line = p + 6;
    } else if (strncmp(p, "@NAME@", 6) == 0) {
      for (const char *c = name; *c != '\0'; c++)
        fputc(*c >= 'a' && *c <= 'z' ? *c - 'a' + 'A' : *c, f);
      line = p + 6;
    } else if (strncmp(p, "@inc@", 5) == 0) {
      fputs(inc, f);
      line = p + 5;
    } else {
      fputc('@', f);
      line = p + 1;
    }
  }
  fputs(line, f);
  fputc('\n', f);
}

int hs_scaffold_write(const char *dir, const char *name, hs_error *err) {
  char path[PATH_MAX], inc[PATH_MAX];
  size_t i;
  FILE *f;
  int fd, rc, saved;

  hs_error_clear(err);
  if ((rc = hs_scaffold_check_name(name, err)) != 0)
    return rc;
  if (source_path(path, sizeof(path), dir, name, ".c") != 0)
    return hs_error_set(err, -ENAMETOOLONG, NULL,
                        "the path of %s.c in %s is too long", name, dir);
  /* The directory goes into a comment: it must not end it. */
  if (hs_scaffold_include_dir(inc, sizeof(inc)) != 0 ||
      strstr(inc, "*/") != NULL)
    snprintf(inc, sizeof(inc), "%s", UNKNOWN_INCLUDE_DIR);
  /* O_EXCL: an existing file, even one made a moment ago, is never
   * touched. */
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0 && errno == EEXIST)
    return hs_error_set(err, HS_EEXIST, NULL,
                        "%s already exists; not overwriting it (remove it or "
                        "choose another NAME)",
                        path);
  if (fd < 0 && errno == ENOENT)
    return hs_error_set(err, HS_ENOENT, NULL,
                        "cannot create %s: directory %s does not exist", path,
                        dir);
  if (fd < 0)
    return hs_error_set(err, -errno, NULL, "cannot create %s: %s", path,
                        strerror(errno));
  f = fdopen(fd, "w");
  if (f == NULL) {
    saved = errno;
    close(fd);
    unlink(path);
    return hs_error_set(err, -saved, NULL, "cannot write %s: %s", path,
                        strerror(saved));
  }
  for (i = 0; i < sizeof(skeleton) / sizeof(skeleton[0]); i++)
    put_line(f, skeleton[i], name, inc);
  rc = ferror(f) ? -1 : 0;
  saved = errno;
  if (fclose(f) != 0 && rc == 0) {
    rc = -1;
    saved = errno;
  }
  if (rc != 0) {
    unlink(path);
    if (saved == 0)
      saved = EIO;
    return hs_error_set(err, -saved, NULL, "cannot write %s: %s", path,
                        strerror(saved));
  }
  return 0;
}

/* Copies dir into out if dir/hotswap.h is readable. Returns 0 or -1. */
static int try_include_dir(char *out, size_t size, const char *dir) {
  char header[PATH_MAX];
  int n = snprintf(header, sizeof(header), "%s/hotswap.h", dir);

  if (n < 0 || (size_t)n >= sizeof(header) || access(header, R_OK) != 0)
    return -1;
  n = snprintf(out, size, "%s", dir);
  return n < 0 || (size_t)n >= size ? -1 : 0;
}

int hs_scaffold_include_dir(char *out, size_t size) {
  char exe[PATH_MAX], *slash;
  ssize_t n;

  /* PREFIX/bin/hotswap -> PREFIX/include. */
  n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    exe[n] = '\0';
    for (int up = 0; up < 2 && (slash = strrchr(exe, '/')) != NULL; up++)
      *slash = '\0';
    if (exe[0] == '/' && strlen(exe) + sizeof("/include") <= sizeof(exe)) {
      strcat(exe, "/include");
      if (try_include_dir(out, size, exe) == 0)
        return 0;
    }
  }
#ifdef HS_SOURCE_INCLUDE_DIR
  if (try_include_dir(out, size, HS_SOURCE_INCLUDE_DIR) == 0)
    return 0;
#endif
  if (size > 0)
    out[0] = '\0';
  return HS_ENOENT;
}

/* Writes s to f, in single quotes when the shell would split or expand
 * it. */
static void put_shell_word(FILE *f, const char *s) {
  if (s[0] != '\0' && s[strspn(s, "abcdefghijklmnopqrstuvwxyz"
                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789_@%+=:,./-")] == '\0') {
    fputs(s, f);
    return;
  }
  fputc('\'', f);
  for (; *s != '\0'; s++) {
    if (*s == '\'')
      fputs("'\\''", f);
    else
      fputc(*s, f);
  }
  fputc('\'', f);
}

void hs_scaffold_print_next(FILE *f, const char *dir, const char *name) {
  char src[PATH_MAX], so[PATH_MAX], inc[PATH_MAX];
  int found = hs_scaffold_include_dir(inc, sizeof(inc)) == 0;

  if (source_path(src, sizeof(src), dir, name, ".c") != 0 ||
      source_path(so, sizeof(so), dir, name, ".so") != 0)
    return;
  if (!found)
    snprintf(inc, sizeof(inc), "%s", UNKNOWN_INCLUDE_DIR);
  fputs("wrote ", f);
  put_shell_word(f, src);
  fputs("\nbuild it with:\n"
        "  cc -std=c11 -O2 -g -fPIC -shared -fvisibility=hidden -I",
        f);
  put_shell_word(f, inc);
  fputs(" -o ", f);
  put_shell_word(f, so);
  fputc(' ', f);
  put_shell_word(f, src);
  fputs("\nthen run the host on its directory:\n  hotswap ", f);
  put_shell_word(f, dir);
  fputc('\n', f);
  if (!found)
    fprintf(f,
            "(hotswap.h was found neither next to this hotswap nor in "
            "its source tree:\n replace %s with the directory that holds "
            "it)\n",
            UNKNOWN_INCLUDE_DIR);
}
