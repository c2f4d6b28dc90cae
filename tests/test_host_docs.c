/*
 * test_host_docs.c - the four descriptions of the command line agree:
 * `hotswap --help` (host/options.c), the man page (docs/hotswap.1), the
 * README's usage section and the bash completion (contrib/hotswap.bash).
 * Each names the same long options, and the man page and the README give
 * each option the default --help gives it, so that none can drift.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"
#include "hotswap.h"

#define MAX_OPTS 64
#define OPT_LEN 48

/* A set of long option names, without their "--". */
typedef struct optset {
  char name[MAX_OPTS][OPT_LEN];
  int n;
} optset;

static int optset_has(const optset *s, const char *name) {
  for (int i = 0; i < s->n; i++)
    if (strcmp(s->name[i], name) == 0)
      return 1;
  return 0;
}

static void optset_add(optset *s, const char *name, size_t len) {
  char buf[OPT_LEN];

  assert_true(len < OPT_LEN);
  memcpy(buf, name, len);
  buf[len] = '\0';
  if (!optset_has(s, buf)) {
    assert_true(s->n < MAX_OPTS);
    snprintf(s->name[s->n++], OPT_LEN, "%s", buf);
  }
}

static int is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Adds every "--name" of plain text to s ("--" alone is not an option). */
static void collect_options(optset *s, const char *text) {
  for (const char *p = text; (p = strstr(p, "--")) != NULL; p += 2) {
    const char *q = p + 2;
    if ((p > text && is_word_char(p[-1])) || *q < 'a' || *q > 'z')
      continue;
    while ((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '-')
      q++;
    while (q[-1] == '-')
      q--;
    optset_add(s, p + 2, (size_t)(q - (p + 2)));
  }
}

/* Prints every option of a that b lacks; returns their number. */
static int missing_from(const optset *a, const char *a_name, const optset *b,
                        const char *b_name) {
  int missing = 0;
  for (int i = 0; i < a->n; i++) {
    if (!optset_has(b, a->name[i])) {
      fprintf(stderr, "--%s is in %s but not in %s\n", a->name[i], a_name,
              b_name);
      missing++;
    }
  }
  return missing;
}

/* Fails unless a and b hold the same options, naming each difference. */
static void assert_same(const optset *a, const char *a_name, const optset *b,
                        const char *b_name) {
  int missing = missing_from(a, a_name, b, b_name);
  missing += missing_from(b, b_name, a, a_name);
  assert_int_equal(missing, 0);
}

/* ---- reading ----------------------------------------------------------- */

/* The whole file HS_TEST_SOURCE_DIR/rel, NUL-terminated; the caller
 * frees. */
static char *read_source(const char *rel) {
  char path[4096];
  FILE *f;
  char *data = NULL;
  size_t size = 0;

  snprintf(path, sizeof(path), "%s/%s", HS_TEST_SOURCE_DIR, rel);
  f = fopen(path, "r");
  if (f == NULL)
    fail_msg("cannot open %s: %s", path, strerror(errno));
  FILE *out = open_memstream(&data, &size);
  assert_non_null(out);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
    fwrite(buf, 1, n, out);
  fclose(f);
  fclose(out);
  return data;
}

/* The output of hotswap --help; the caller frees. */
static char *help_text(void) {
  harness h;
  const char *const argv[] = {"--help", NULL};
  char *out = malloc(32768);

  assert_non_null(out);
  assert_int_equal(harness_init(&h), 0);
  assert_int_equal(harness_run(&h, argv, out, 32768, NULL, 0), 0);
  harness_close(&h);
  return out;
}

/* Collapses every run of blanks and newlines in s into one space, in
 * place, and trims both ends. */
static void squeeze(char *s) {
  char *w = s;
  int blank = 1;
  for (char *r = s; *r != '\0'; r++) {
    if (*r == ' ' || *r == '\t' || *r == '\n') {
      if (!blank)
        *w++ = ' ';
      blank = 1;
    } else {
      *w++ = *r;
      blank = 0;
    }
  }
  if (w > s && w[-1] == ' ')
    w--;
  *w = '\0';
}

/*
 * The plain text of roff source: comment lines dropped, a request line
 * (".TP", ".B text") reduced to its arguments without quotes, and the
 * escapes a man page uses here (\fB \fI \fR \fP \- \e \& \(aq) replaced.
 * The caller frees.
 */
static char *roff_plain(const char *src, size_t len) {
  char *out = malloc(len + 1), *w = out;
  const char *p = src, *end = src + len;
  int line_start = 1;

  assert_non_null(out);
  while (p < end) {
    if (line_start && *p == '.') {
      if (end - p >= 3 && p[1] == '\\' && p[2] == '"') {
        while (p < end && *p != '\n') /* a comment */
          p++;
        continue;
      }
      while (p < end && *p != ' ' && *p != '\n') /* the request's name */
        p++;
    }
    line_start = 0;
    if (*p == '\n') {
      line_start = 1;
      *w++ = *p++;
    } else if (*p == '"') {
      p++;
    } else if (*p == '\\' && p + 1 < end) {
      char c = p[1];
      if (c == 'f' && p + 2 < end) {
        p += p[2] == '(' ? 5 : 3;
      } else if (c == '(' && p + 3 < end) {
        if (strncmp(p + 2, "aq", 2) == 0)
          *w++ = '\'';
        p += 4;
      } else {
        if (c == '-' || c == 'e' || c == ' ')
          *w++ = c == 'e' ? '\\' : c;
        p += 2; /* \& and the like: nothing */
      }
    } else {
      *w++ = *p++;
    }
  }
  *w = '\0';
  return out;
}

/* The roff source of section name (".SH NAME" up to the next .SH) of man;
 * *len its length. NULL if there is none. */
static const char *man_section(const char *man, const char *name, size_t *len) {
  char head[64];
  const char *start, *next;

  snprintf(head, sizeof(head), "\n.SH %s\n", name);
  start = strstr(man, head);
  if (start == NULL) {
    snprintf(head, sizeof(head), "\n.SH \"%s\"\n", name);
    start = strstr(man, head);
  }
  if (start == NULL)
    return NULL;
  start += 1;
  next = strstr(start + 1, "\n.SH ");
  *len = next != NULL ? (size_t)(next + 1 - start) : strlen(start);
  return start;
}

/* The README's "## Usage" section (up to the next "## "); the caller
 * frees. */
static char *readme_usage(const char *readme) {
  const char *start = strstr(readme, "\n## Usage\n"), *next;

  assert_non_null(start);
  next = strstr(start + 1, "\n## ");
  size_t len = next != NULL ? (size_t)(next - start) : strlen(start);
  char *s = strndup(start, len);
  assert_non_null(s);
  return s;
}

/* ---- the options of each ----------------------------------------------- */

/* An option entry of the help text: "  --name ARG   text" and its
 * continuation lines, squeezed. */
typedef struct help_entry {
  char name[OPT_LEN];
  char text[1024];
  char def[256]; /* what "(default: ...)" says, "" if nothing */
} help_entry;

/* Splits the help text into option entries; returns their number. Only the
 * first entry of an option counts (--control is listed twice). */
static int help_entries(const char *help, help_entry *e, int max) {
  int n = 0;
  const char *line = help;

  while (*line != '\0') {
    size_t len = strcspn(line, "\n");
    const char *opt = line;
    if (strncmp(opt, "  -h, ", 6) == 0)
      opt += 4;
    if (strncmp(opt, "  --", 4) == 0 && opt[4] >= 'a' && opt[4] <= 'z') {
      help_entry *cur = &e[n];
      size_t used = 0;
      optset one = {.n = 0};
      /* The entry's first line and the lines indented under it. */
      const char *p = line;
      do {
        size_t l = strcspn(p, "\n");
        if (used + l + 2 < sizeof(cur->text)) {
          memcpy(cur->text + used, p, l);
          used += l;
          cur->text[used++] = ' ';
        }
        p += l + (p[l] == '\n');
      } while (strncmp(p, "          ", 10) == 0);
      cur->text[used] = '\0';
      squeeze(cur->text);
      collect_options(&one, opt);
      snprintf(cur->name, sizeof(cur->name), "%s", one.name[0]);
      cur->def[0] = '\0';
      const char *d = strstr(cur->text, "(default: ");
      if (d != NULL) {
        d += strlen("(default: ");
        snprintf(cur->def, sizeof(cur->def), "%.*s", (int)strcspn(d, ")"), d);
      }
      int seen = 0;
      for (int i = 0; i < n; i++)
        seen |= strcmp(e[i].name, cur->name) == 0;
      if (!seen) {
        assert_true(n + 1 < max);
        n++;
      }
      line = p;
      continue;
    }
    line += len + (line[len] == '\n');
  }
  return n;
}

static void help_options(optset *s) {
  char *help = help_text();
  collect_options(s, help);
  free(help);
  assert_true(s->n >= 10);
}

/* The options the man page names, in every section but EXAMPLES (which
 * shows other programs' options too). */
static void man_options(optset *s) {
  char *man = read_source("docs/hotswap.1");
  size_t elen = 0;
  const char *ex = man_section(man, "EXAMPLES", &elen);
  char *plain;

  assert_non_null(ex);
  memset((char *)ex, ' ', elen); /* blanked out of our own copy */
  plain = roff_plain(man, strlen(man));
  collect_options(s, plain);
  free(plain);
  free(man);
}

/* The options of the completion script, its comments left out. */
static void completion_options(optset *s) {
  char *bash = read_source("contrib/hotswap.bash");
  for (char *line = bash; *line != '\0';) {
    size_t len = strcspn(line, "\n");
    char saved = line[len];
    const char *t = line + strspn(line, " \t");
    line[len] = '\0';
    if (*t != '#')
      collect_options(s, line);
    line[len] = saved;
    line += len + (saved == '\n');
  }
  free(bash);
}

/* ---- tests ------------------------------------------------------------- */

static void test_host_docs_man_names_every_help_option(void **state) {
  optset help = {.n = 0}, man = {.n = 0};

  (void)state;
  help_options(&help);
  man_options(&man);
  assert_same(&help, "hotswap --help", &man, "docs/hotswap.1");
}

static void test_host_docs_completion_names_every_help_option(void **state) {
  optset help = {.n = 0}, bash = {.n = 0};

  (void)state;
  help_options(&help);
  completion_options(&bash);
  assert_same(&help, "hotswap --help", &bash, "contrib/hotswap.bash");
}

/*
 * Every option with a default in --help has a row in the README's option
 * table with the same default (backquotes aside); the others (--help,
 * --version) appear in the usage section; and the usage section names no
 * option --help does not.
 */
static void test_host_docs_readme_table_matches_help(void **state) {
  static help_entry entries[MAX_OPTS];
  char *help = help_text();
  char *readme = read_source("README.md");
  char *usage = readme_usage(readme);
  optset help_set = {.n = 0}, usage_set = {.n = 0};
  int n = help_entries(help, entries, MAX_OPTS), bad = 0;

  (void)state;
  collect_options(&help_set, help);
  collect_options(&usage_set, usage);
  assert_same(&help_set, "hotswap --help", &usage_set, "README.md's usage");
  for (int i = 0; i < n; i++) {
    char pat[OPT_LEN + 8], cell[512];
    const char *row, *c;
    size_t len = 0;

    if (entries[i].def[0] == '\0')
      continue;
    snprintf(pat, sizeof(pat), "\n| `--%s", entries[i].name);
    row = strstr(usage, pat);
    if (row == NULL || is_word_char(row[strlen(pat)])) {
      fprintf(stderr, "README.md: no table row for --%s\n", entries[i].name);
      bad++;
      continue;
    }
    /* The second cell, up to an unescaped '|', without backquotes. */
    c = row + 2;
    while (*c != '\0' && !(*c == '|' && c[-1] != '\\'))
      c++;
    for (c++; *c != '\0' && *c != '\n' && !(*c == '|' && c[-1] != '\\'); c++)
      if (*c != '`' && len + 1 < sizeof(cell))
        cell[len++] = *c;
    cell[len] = '\0';
    squeeze(cell);
    if (strcmp(cell, entries[i].def) != 0) {
      fprintf(stderr,
              "README.md: --%s defaults to \"%s\", hotswap --help says "
              "\"%s\"\n",
              entries[i].name, cell, entries[i].def);
      bad++;
    }
  }
  assert_int_equal(bad, 0);
  free(usage);
  free(readme);
  free(help);
}

/* Every option with a default in --help has an entry (.TP) in the man
 * page's OPTIONS that ends its text with "Default: " and the same words. */
static void test_host_docs_man_defaults_match_help(void **state) {
  static help_entry entries[MAX_OPTS];
  char *help = help_text();
  char *man = read_source("docs/hotswap.1");
  size_t len = 0;
  const char *opts = man_section(man, "OPTIONS", &len);
  char *plain_entries[MAX_OPTS];
  int n = help_entries(help, entries, MAX_OPTS), nman = 0, bad = 0;

  (void)state;
  assert_non_null(opts);
  /* One plain, squeezed text per ".TP" entry: its tag, then its body. */
  for (const char *tp = strstr(opts, "\n.TP\n");
       tp != NULL && tp < opts + len;) {
    const char *next = strstr(tp + 1, "\n.TP\n");
    const char *stop = next != NULL && next < opts + len ? next : opts + len;
    const char *sub = strstr(tp + 1, "\n.SS ");
    if (sub != NULL && sub < stop)
      stop = sub;
    assert_true(nman < MAX_OPTS);
    plain_entries[nman] = roff_plain(tp + 5, (size_t)(stop - (tp + 5)));
    squeeze(plain_entries[nman++]);
    tp = next;
  }
  for (int i = 0; i < n; i++) {
    char tag[OPT_LEN + 4], want[300];
    int found = 0;

    if (entries[i].def[0] == '\0')
      continue;
    snprintf(tag, sizeof(tag), "--%s", entries[i].name);
    snprintf(want, sizeof(want), "Default: %s", entries[i].def);
    for (int j = 0; j < nman; j++) {
      size_t tl = strlen(tag);
      if (strncmp(plain_entries[j], tag, tl) != 0 ||
          is_word_char(plain_entries[j][tl]))
        continue;
      found = 1;
      const char *d = strstr(plain_entries[j], want);
      /* The default ends the entry: nothing but a full stop after it. */
      if (d == NULL ||
          strspn(d + strlen(want), ".") != strlen(d + strlen(want))) {
        fprintf(stderr,
                "docs/hotswap.1: --%s: want \"%s\" at the end of \"%s\"\n",
                entries[i].name, want, plain_entries[j]);
        bad++;
      }
    }
    if (!found) {
      fprintf(stderr, "docs/hotswap.1: no OPTIONS entry for --%s\n",
              entries[i].name);
      bad++;
    }
  }
  for (int j = 0; j < nman; j++)
    free(plain_entries[j]);
  assert_int_equal(bad, 0);
  free(man);
  free(help);
}

/* The commands: each in --help, the man page's SYNOPSIS and COMMANDS, the
 * README's usage and the completion script. */
static void test_host_docs_commands_agree(void **state) {
  static const char *const commands[] = {"status", "reload", "new"};
  char *help = help_text();
  char *man = read_source("docs/hotswap.1");
  char *readme = read_source("README.md");
  char *usage = readme_usage(readme);
  char *bash = read_source("contrib/hotswap.bash");
  size_t slen = 0, clen = 0;
  const char *syn = man_section(man, "SYNOPSIS", &slen);
  const char *cmds = man_section(man, "COMMANDS", &clen);
  char *syn_plain, *cmds_plain;

  (void)state;
  assert_non_null(syn);
  assert_non_null(cmds);
  syn_plain = roff_plain(syn, slen);
  cmds_plain = roff_plain(cmds, clen);
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
    char want[64];
    snprintf(want, sizeof(want), "hotswap %s", commands[i]);
    assert_true(harness_contains(help, want));
    assert_true(harness_contains(syn_plain, want));
    assert_true(harness_contains(cmds_plain, want));
    assert_true(harness_contains(usage, want));
    snprintf(want, sizeof(want), "%s)", commands[i]);
    assert_true(harness_contains(bash, want));
  }
  free(cmds_plain);
  free(syn_plain);
  free(bash);
  free(usage);
  free(readme);
  free(man);
  free(help);
}

static void test_host_docs_man_version_is_current(void **state) {
  char *man = read_source("docs/hotswap.1");
  char want[64];

  (void)state;
  snprintf(want, sizeof(want), "\"hotswap %s\"", HS_VERSION_STRING);
  const char *th = strstr(man, "\n.TH HOTSWAP 1 ");
  assert_non_null(th);
  size_t len = strcspn(th + 1, "\n");
  char *line = strndup(th + 1, len);
  assert_true(harness_contains(line, want));
  free(line);
  free(man);
}

/* Runs sh -c cmd; returns its output (the caller frees) and its exit
 * status in *status. */
static char *shell(const char *cmd, int *status) {
  FILE *p = popen(cmd, "r");
  char *out = calloc(1, 16384);
  size_t n = 0, r;

  assert_non_null(p);
  assert_non_null(out);
  while (n + 1 < 16384 && (r = fread(out + n, 1, 16383 - n, p)) > 0)
    n += r;
  out[n] = '\0';
  int st = pclose(p);
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  return out;
}

/* The man page formats without a warning. */
static void test_host_docs_man_renders_cleanly(void **state) {
  char cmd[4200];
  int status;
  char *out;

  (void)state;
  out = shell("command -v groff", &status);
  free(out);
  if (status != 0) {
    fprintf(stderr, "groff is not installed: man page not rendered\n");
    skip();
  }
  snprintf(cmd, sizeof(cmd),
           "groff -man -Tutf8 -ww -z '%s/docs/hotswap.1' 2>&1",
           HS_TEST_SOURCE_DIR);
  out = shell(cmd, &status);
  assert_int_equal(status, 0);
  assert_string_equal(out, "");
  free(out);
}

/* The completion script, sourced by bash, completes commands, options of
 * the command at hand and option values. */
static void test_host_docs_completion_completes(void **state) {
  static const struct {
    const char *words;
    const char *want;
  } cases[] = {
      {"hotswap st", "status"},
      {"hotswap n", "new"},
      {"hotswap --log-l", "--log-level"},
      {"hotswap --log-level w", "warn"},
      {"hotswap --log-format \"\"", "text json"},
      {"hotswap --log-level = e", "error"},
      {"hotswap status --", "--json --control --help"},
      {"hotswap reload counter --", "--control --help"},
      {"hotswap new demo --", "--dir --help"},
      {"hotswap --sandbox-m", "--sandbox-mem"},
      {"hotswap --settle \"\"", ""},
  };
  char cmd[8192];
  int status;

  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    snprintf(cmd, sizeof(cmd),
             "bash -c 'source \"$1\" && COMP_WORDS=(%s) && "
             "COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) && _hotswap && "
             "echo \"${COMPREPLY[*]}\"' sh '%s/contrib/hotswap.bash'",
             cases[i].words, HS_TEST_SOURCE_DIR);
    char *out = shell(cmd, &status);
    assert_int_equal(status, 0);
    out[strcspn(out, "\n")] = '\0';
    if (strcmp(out, cases[i].want) != 0)
      fail_msg("completing '%s': got '%s', want '%s'", cases[i].words, out,
               cases[i].want);
    free(out);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_host_docs_man_names_every_help_option),
      cmocka_unit_test(test_host_docs_completion_names_every_help_option),
      cmocka_unit_test(test_host_docs_readme_table_matches_help),
      cmocka_unit_test(test_host_docs_man_defaults_match_help),
      cmocka_unit_test(test_host_docs_commands_agree),
      cmocka_unit_test(test_host_docs_man_version_is_current),
      cmocka_unit_test(test_host_docs_man_renders_cleanly),
      cmocka_unit_test(test_host_docs_completion_completes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
