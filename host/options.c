/* options.c - parses hotswap's command line with getopt_long. */
#include "options.h"

#include "crash.h"
#include "scaffold.h"
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

/* Which commands take an option. */
#define FOR_RUN (1u << HS_CMD_RUN)
#define FOR_STATUS (1u << HS_CMD_STATUS)
#define FOR_RELOAD (1u << HS_CMD_RELOAD)
#define FOR_NEW (1u << HS_CMD_NEW)
#define FOR_UPGRADE (1u << HS_CMD_UPGRADE)
#define FOR_ALL (FOR_RUN | FOR_STATUS | FOR_RELOAD | FOR_NEW | FOR_UPGRADE)

enum {
  OPT_HELP = 'h',
  OPT_VERSION = 256,
  OPT_CONTROL,
  OPT_CACHE_DIR,
  OPT_ALLOW_STATE_RESET,
  OPT_ALLOW_INSECURE,
  OPT_LOG_FORMAT,
  OPT_LOG_LEVEL,
  OPT_SETTLE,
  OPT_SANDBOX_TIMEOUT,
  OPT_SANDBOX_CPU,
  OPT_SANDBOX_MEM,
  OPT_BUILD_TIMEOUT,
  OPT_PLUGIN_WERROR,
  OPT_CRASH_GRACE,
  OPT_CRASH_LIMIT,
  OPT_CALLBACK_BUDGET,
  OPT_NO_UPGRADE_WATCH,
  OPT_JSON,
  OPT_DIR
};

static const struct option long_options[] = {
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {"control", required_argument, NULL, OPT_CONTROL},
    {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
    {"allow-state-reset", no_argument, NULL, OPT_ALLOW_STATE_RESET},
    {"allow-insecure", no_argument, NULL, OPT_ALLOW_INSECURE},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"settle", required_argument, NULL, OPT_SETTLE},
    {"sandbox-timeout", required_argument, NULL, OPT_SANDBOX_TIMEOUT},
    {"sandbox-cpu", required_argument, NULL, OPT_SANDBOX_CPU},
    {"sandbox-mem", required_argument, NULL, OPT_SANDBOX_MEM},
    {"build-timeout", required_argument, NULL, OPT_BUILD_TIMEOUT},
    {"plugin-werror", no_argument, NULL, OPT_PLUGIN_WERROR},
    {"crash-grace", required_argument, NULL, OPT_CRASH_GRACE},
    {"crash-limit", required_argument, NULL, OPT_CRASH_LIMIT},
    {"callback-budget", required_argument, NULL, OPT_CALLBACK_BUDGET},
    {"no-upgrade-watch", no_argument, NULL, OPT_NO_UPGRADE_WATCH},
    {"json", no_argument, NULL, OPT_JSON},
    {"dir", required_argument, NULL, OPT_DIR},
    {NULL, 0, NULL, 0},
};

static const char *const command_names[] = {"", "status", "reload", "new",
                                            "upgrade"};

/* The long option with value val, or NULL. */
static const struct option *option_by_val(int val) {
  const struct option *o;

  for (o = long_options; o->name != NULL; o++)
    if (o->val == val)
      return o;
  return NULL;
}

static unsigned option_commands(int val) {
  switch (val) {
  case OPT_HELP:
  case OPT_VERSION:
    return FOR_ALL;
  case OPT_CONTROL:
    return FOR_RUN | FOR_STATUS | FOR_RELOAD | FOR_UPGRADE;
  case OPT_JSON:
    return FOR_STATUS;
  case OPT_DIR:
    return FOR_NEW;
  default:
    return FOR_RUN;
  }
}

/* Explains a '?' from getopt_long: arg is the argument it stopped at. */
static int unknown_option(const char *arg, hs_error *err) {
  const struct option *o;
  char names[256];
  size_t len, n = 0, matches = 0;

  if (strncmp(arg, "--", 2) != 0)
    return hs_error_set(err, HS_EINVAL, NULL, "unknown option '%s'", arg);
  arg += 2;
  len = strcspn(arg, "=");
  names[0] = '\0';
  for (o = long_options; o->name != NULL && len > 0; o++) {
    if (strncmp(o->name, arg, len) != 0 || n >= sizeof(names))
      continue;
    n += (size_t)snprintf(names + n, sizeof(names) - n, "%s--%s",
                          matches > 0 ? ", " : "", o->name);
    matches++;
  }
  if (matches > 1)
    return hs_error_set(err, HS_EINVAL, NULL,
                        "ambiguous option '--%.*s' (could be %s)", (int)len,
                        arg, names);
  return hs_error_set(err, HS_EINVAL, NULL, "unknown option '--%.*s'",
                      (int)len, arg);
}

/* Parses a decimal number in [min, max] for option name. unit says what the
 * number counts, for messages. Returns 0 or HS_EINVAL with err filled. */
static int parse_u32(const char *name, const char *s, uint32_t min,
                     uint32_t max, const char *unit, uint32_t *out,
                     hs_error *err) {
  unsigned long v;
  char *end;

  /* strtoul would accept leading blanks, a sign and "-1" as ULONG_MAX. */
  if (s[0] < '0' || s[0] > '9')
    goto not_a_number;
  errno = 0;
  v = strtoul(s, &end, 10);
  if (*end != '\0')
    goto not_a_number;
  if (errno == ERANGE || v < min || v > max)
    return hs_error_set(err, HS_EINVAL, NULL,
                        "--%s: '%s' is out of range (%lu to %lu %s)", name, s,
                        (unsigned long)min, (unsigned long)max, unit);
  *out = (uint32_t)v;
  return 0;
not_a_number:
  return hs_error_set(err, HS_EINVAL, NULL, "--%s: '%s' is not a number of %s",
                      name, s, unit);
}

static int parse_path(const char *name, const char *s, const char **out,
                      hs_error *err) {
  if (s[0] == '\0')
    return hs_error_set(err, HS_EINVAL, NULL, "--%s: the path is empty", name);
  *out = s;
  return 0;
}

/* Applies one option with value val (and its argument arg) to o. */
static int apply_option(hs_options *o, int val, const char *arg,
                        hs_error *err) {
  const char *name = option_by_val(val)->name;

  if (!(option_commands(val) & (1u << o->command))) {
    if (val == OPT_JSON)
      return hs_error_set(err, HS_EINVAL, NULL,
                          "option '--json' is only for 'hotswap status'");
    if (val == OPT_DIR)
      return hs_error_set(err, HS_EINVAL, NULL,
                          "option '--dir' is only for 'hotswap new'");
    return hs_error_set(err, HS_EINVAL, NULL,
                        "option '--%s' does not apply to 'hotswap %s'", name,
                        command_names[o->command]);
  }
  switch (val) {
  case OPT_CONTROL:
    return parse_path(name, arg, &o->control_path, err);
  case OPT_CACHE_DIR:
    return parse_path(name, arg, &o->cache_parent, err);
  case OPT_DIR:
    return parse_path(name, arg, &o->new_dir, err);
  case OPT_ALLOW_STATE_RESET:
    o->allow_state_reset = 1;
    return 0;
  case OPT_ALLOW_INSECURE:
    o->allow_insecure = 1;
    return 0;
  case OPT_JSON:
    o->json = 1;
    return 0;
  case OPT_LOG_FORMAT:
    if (hs_log_format_parse(arg, &o->log_format) != 0)
      return hs_error_set(err, HS_EINVAL, NULL,
                          "--log-format: '%s' is not one of text, json", arg);
    return 0;
  case OPT_LOG_LEVEL:
    if (hs_log_level_parse(arg, &o->log_level) != 0)
      return hs_error_set(
          err, HS_EINVAL, NULL,
          "--log-level: '%s' is not one of debug, info, warn, error", arg);
    return 0;
  case OPT_SETTLE:
    return parse_u32(name, arg, 0, 60000, "milliseconds", &o->settle_ms, err);
  case OPT_SANDBOX_TIMEOUT:
    return parse_u32(name, arg, 1, 3600000, "milliseconds",
                     &o->sandbox_timeout_ms, err);
  case OPT_SANDBOX_CPU:
    return parse_u32(name, arg, 1, 86400, "seconds", &o->sandbox_cpu_s, err);
  case OPT_SANDBOX_MEM:
    return parse_u32(name, arg, 0, 1048576, "megabytes", &o->sandbox_mem_mb,
                     err);
  case OPT_BUILD_TIMEOUT:
    return parse_u32(name, arg, 1, 3600000, "milliseconds",
                     &o->build_timeout_ms, err);
  case OPT_PLUGIN_WERROR:
    o->plugin_werror = 1;
    return 0;
  case OPT_CRASH_GRACE:
    return parse_u32(name, arg, 0, 3600, "seconds", &o->crash_grace_s, err);
  case OPT_CRASH_LIMIT:
    return parse_u32(name, arg, 1, HS_CRASH_LIMIT_MAX, "crashes",
                     &o->crash_limit, err);
  case OPT_CALLBACK_BUDGET:
    return parse_u32(name, arg, 0, 3600000, "milliseconds",
                     &o->callback_budget_ms, err);
  case OPT_NO_UPGRADE_WATCH:
    o->no_upgrade_watch = 1;
    return 0;
  default:
    return hs_error_set(err, HS_EINVAL, NULL, "unhandled option '--%s'",
                        name);
  }
}

/* Takes one operand (a non-option argument) in order. */
static int apply_operand(hs_options *o, const char *arg, hs_error *err) {
  switch (o->command) {
  case HS_CMD_RUN:
    if (o->plugin_dir != NULL)
      break;
    if (arg[0] == '\0')
      return hs_error_set(err, HS_EINVAL, NULL, "PLUGIN_DIR is empty");
    o->plugin_dir = arg;
    return 0;
  case HS_CMD_RELOAD:
    if (o->reload_name != NULL)
      break;
    if (arg[0] == '\0')
      return hs_error_set(err, HS_EINVAL, NULL, "reload needs a plugin NAME");
    if (strchr(arg, '/') != NULL || strpbrk(arg, "\n\r") != NULL)
      return hs_error_set(err, HS_EINVAL, NULL,
                          "reload: '%s' is not a plugin NAME (the file name "
                          "without directory and '.so', e.g. 'counter')",
                          arg);
    o->reload_name = arg;
    return 0;
  case HS_CMD_NEW:
    if (o->new_name != NULL)
      break;
    if (arg[0] == '\0')
      return hs_error_set(err, HS_EINVAL, NULL, "new needs a plugin NAME");
    if (hs_scaffold_check_name(arg, err) != 0) {
      char why[sizeof(err->msg)];
      snprintf(why, sizeof(why), "%s", err->msg);
      return hs_error_set(err, HS_EINVAL, NULL, "new: %.500s", why);
    }
    o->new_name = arg;
    return 0;
  default:
    break;
  }
  return hs_error_set(err, HS_EINVAL, NULL, "unexpected argument '%s'", arg);
}

static void options_defaults(hs_options *o) {
  memset(o, 0, sizeof(*o));
  o->command = HS_CMD_RUN;
  o->log_format = HS_LOG_TEXT;
  o->log_level = HS_LOG_INFO;
  o->settle_ms = 50;
  o->sandbox_timeout_ms = 5000;
  o->sandbox_cpu_s = 10;
  o->sandbox_mem_mb = 4096;
  o->build_timeout_ms = 60000;
  o->crash_grace_s = 5;
  o->crash_limit = 3;
  o->callback_budget_ms = 2000;
  o->new_dir = ".";
}

/* Runs getopt_long over argv (argv[0] being the program or the command)
 * and applies what it finds to o. */
static int parse_args(hs_options *o, int argc, char **argv, hs_error *err) {
  const struct option *lo;
  int c, r, i;

  /* "-": operands come back in order as 1, so that options may follow
   * them ("reload NAME --control PATH") without argv being permuted.
   * ":": a missing argument returns ':' instead of '?'. */
  optind = 0; /* a full re-initialisation: parse may be called again */
  while ((c = getopt_long(argc, argv, "-:h", long_options, NULL)) != -1) {
    switch (c) {
    case 1:
      r = apply_operand(o, optarg, err);
      break;
    case OPT_HELP:
      o->command = HS_CMD_HELP;
      return 0;
    case OPT_VERSION:
      o->command = HS_CMD_VERSION;
      return 0;
    case ':':
      lo = option_by_val(optopt);
      r = hs_error_set(err, HS_EINVAL, NULL, "option '--%s' needs a value",
                       lo != NULL ? lo->name : "?");
      break;
    case '?':
      lo = option_by_val(optopt);
      if (lo != NULL)
        r = hs_error_set(err, HS_EINVAL, NULL,
                         "option '--%s' takes no value", lo->name);
      else if (optopt != 0)
        r = hs_error_set(err, HS_EINVAL, NULL, "unknown option '-%c'",
                         optopt);
      else
        r = unknown_option(argv[optind - 1], err);
      break;
    default:
      r = apply_option(o, c, optarg, err);
      break;
    }
    if (r != 0)
      return r;
  }
  /* Everything after "--" is an operand, even if it starts with '-'. */
  for (i = optind; i < argc; i++)
    if ((r = apply_operand(o, argv[i], err)) != 0)
      return r;
  return 0;
}

int hs_options_parse(hs_options *o, int argc, char **argv, hs_error *err) {
  int saved_opterr = opterr;
  int r;

  options_defaults(o);
  hs_error_clear(err);
  /* The command is argv[1] when it is one; getopt then sees it as its
   * argv[0]. A plugin directory named "status" is given as ./status. */
  if (argc >= 2 && strcmp(argv[1], "status") == 0)
    o->command = HS_CMD_STATUS;
  else if (argc >= 2 && strcmp(argv[1], "reload") == 0)
    o->command = HS_CMD_RELOAD;
  else if (argc >= 2 && strcmp(argv[1], "new") == 0)
    o->command = HS_CMD_NEW;
  else if (argc >= 2 && strcmp(argv[1], "upgrade") == 0)
    o->command = HS_CMD_UPGRADE;
  if (o->command != HS_CMD_RUN) {
    argc--;
    argv++;
  }
  opterr = 0; /* we say what is wrong ourselves, in err */
  r = parse_args(o, argc, argv, err);
  opterr = saved_opterr;
  optind = 0;
  if (r != 0)
    return r;
  if (o->command == HS_CMD_RUN && o->plugin_dir == NULL)
    return hs_error_set(err, HS_EINVAL, NULL, "missing PLUGIN_DIR");
  if (o->command == HS_CMD_RELOAD && o->reload_name == NULL)
    return hs_error_set(err, HS_EINVAL, NULL, "reload needs a plugin NAME");
  if (o->command == HS_CMD_NEW && o->new_name == NULL)
    return hs_error_set(err, HS_EINVAL, NULL, "new needs a plugin NAME");
  return 0;
}

void hs_options_usage(FILE *f) {
  fputs(
      "Usage: hotswap [OPTIONS] PLUGIN_DIR\n"
      "       hotswap status [--json] [--control PATH]\n"
      "       hotswap reload NAME [--control PATH]\n"
      "       hotswap new NAME [--dir DIR]\n"
      "       hotswap upgrade [--control PATH]\n"
      "       hotswap --version\n"
      "       hotswap --help\n"
      "\n"
      "hotswap loads every plugin in PLUGIN_DIR (NAME.so, or C source it\n"
      "compiles itself: NAME.c or a directory NAME/) and reloads it,\n"
      "keeping its state, whenever it changes. Each new version is first\n"
      "tried in a sandboxed child process; if it fails there, the running\n"
      "version stays and the log says why.\n"
      "\n"
      "Commands:\n"
      "  hotswap PLUGIN_DIR    run the host on PLUGIN_DIR until SIGINT or\n"
      "                        SIGTERM\n"
      "  status                ask the running host for the state of its\n"
      "                        plugins and print it\n"
      "  reload NAME           ask the running host to reload plugin NAME\n"
      "                        (its file name without '.so') now\n"
      "  new NAME              write NAME.c, a commented plugin skeleton\n"
      "                        that builds and loads as it is, and print\n"
      "                        the command that builds it\n"
      "  upgrade               ask the running host to re-execute itself\n"
      "                        (its executable, checked first), keeping\n"
      "                        every plugin, its state and its fds; the\n"
      "                        same as SIGUSR2\n"
      "  --version             print the hotswap version and plugin ABI\n"
      "                        version\n"
      "  -h, --help            print this help\n"
      "\n"
      "Options of the host (hotswap PLUGIN_DIR):\n"
      "  --control PATH        the control socket that status and reload talk\n"
      "                        to (default: $HOTSWAP_CONTROL, else\n"
      "                        $XDG_RUNTIME_DIR/hotswap/control.sock, else\n"
      "                        /tmp/hotswap-UID/control.sock)\n"
      "  --cache-dir DIR       where the private copies of loaded plugins are\n"
      "                        kept, in a new 0700 directory\n"
      "                        (default: $TMPDIR, else /tmp)\n"
      "  --allow-state-reset   when a new version changes its state layout\n"
      "                        and has no migrate function, start it on\n"
      "                        zeroed state instead of rejecting it\n"
      "                        (default: off)\n"
      "  --allow-insecure      load plugin files, sources and a plugin\n"
      "                        directory that other users could have\n"
      "                        written (owned by another user than you or\n"
      "                        root, or writable by others or by a shared\n"
      "                        group); refused otherwise (default: off)\n"
      "  --log-format FORMAT   text or json, one line per event\n"
      "                        (default: text)\n"
      "  --log-level LEVEL     the least important level logged: debug,\n"
      "                        info, warn or error (default: info)\n"
      "  --settle MS           how long a changed file must stay quiet\n"
      "                        before it is reloaded, 0 to 60000; a file\n"
      "                        renamed into place reloads at once\n"
      "                        (default: 50)\n"
      "  --sandbox-timeout MS  wall-clock time a new version gets in the\n"
      "                        sandbox before it is killed and rejected,\n"
      "                        1 to 3600000 (default: 5000)\n"
      "  --sandbox-cpu S       CPU time limit of the sandbox in seconds,\n"
      "                        1 to 86400 (default: 10)\n"
      "  --sandbox-mem MB      address space limit of the sandbox in\n"
      "                        megabytes, 0 for none (default: 4096)\n"
      "  --build-timeout MS    wall-clock time the compiler gets for a\n"
      "                        plugin source (NAME.c, NAME/) before it is\n"
      "                        killed, 1 to 3600000 (default: 60000)\n"
      "  --plugin-werror       compile plugin sources with -Werror, so\n"
      "                        that warnings block a new version\n"
      "                        (default: off)\n"
      "  --crash-grace S       a plugin that crashes within S seconds of a\n"
      "                        reload is rolled back to the version before,\n"
      "                        on the state saved before the reload; later,\n"
      "                        or with 0, a crash quarantines it until its\n"
      "                        file changes, 0 to 3600 (default: 5)\n"
      "  --crash-limit N       after N crashes of a plugin within 60 s it\n"
      "                        is quarantined and only a change of its file\n"
      "                        retries it, 1 to 100 (default: 3)\n"
      "  --callback-budget MS  a plugin callback that runs longer is\n"
      "                        reported, and interrupted at 5 times as\n"
      "                        long (treated as a crash), 0 for no\n"
      "                        watchdog, 0 to 3600000 (default: 2000)\n"
      "  --no-upgrade-watch    do not watch the host's own executable for a\n"
      "                        new version; re-execute only on 'hotswap\n"
      "                        upgrade' or SIGUSR2 (default: off)\n"
      "\n"
      "Options of status, reload and upgrade:\n"
      "  --control PATH        the running host's control socket (default:\n"
      "                        as above)\n"
      "  --json                status only: print the report as one JSON\n"
      "                        object (default: off)\n"
      "\n"
      "Options of new:\n"
      "  --dir DIR             the directory NAME.c is written to; an\n"
      "                        existing NAME.c is never overwritten\n"
      "                        (default: .)\n"
      "\n"
      "Options may come before or after operands; '--' ends them. The\n"
      "command must be the first argument, so a plugin directory named\n"
      "\"status\", \"reload\", \"new\" or \"upgrade\" is given as ./status,\n"
      "./reload, ./new or ./upgrade.\n"
      "\n"
      "Environment:\n"
      "  HOTSWAP_CONTROL       the default control socket path\n"
      "  XDG_RUNTIME_DIR       where the default control socket lives\n"
      "  TMPDIR                the default parent of the cache directory\n"
      "  NO_COLOR              when set and not empty, the text log has no\n"
      "                        colours (they are used only on a terminal)\n",
      f);
}
