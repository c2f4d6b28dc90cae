/* options.h - the command line of hotswap. */
#ifndef HS_OPTIONS_H
#define HS_OPTIONS_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "log.h"

typedef enum {
  HS_CMD_RUN = 0,   /* hotswap [OPTIONS] PLUGIN_DIR */
  HS_CMD_STATUS,    /* hotswap status [--json] */
  HS_CMD_RELOAD,    /* hotswap reload NAME */
  HS_CMD_NEW,       /* hotswap new NAME [--dir DIR] */
  HS_CMD_UPGRADE,   /* hotswap upgrade */
  HS_CMD_VERSION,   /* hotswap --version */
  HS_CMD_HELP       /* hotswap --help */
} hs_command;

typedef struct hs_options {
  hs_command command;
  const char *plugin_dir;      /* RUN: the directory (argv memory) */
  const char *reload_name;     /* RELOAD: the plugin (argv memory) */
  const char *new_name;        /* NEW: the plugin to write (argv memory) */
  const char *new_dir;         /* NEW: --dir DIR (".") */
  const char *control_path;    /* --control PATH; NULL: the default */
  const char *cache_parent;    /* --cache-dir DIR; NULL: $TMPDIR or /tmp */
  int json;                    /* status --json */
  int allow_state_reset;       /* --allow-state-reset */
  int allow_insecure;          /* --allow-insecure */
  hs_log_format log_format;    /* --log-format text|json (text) */
  hs_log_level log_level;      /* --log-level debug|info|warn|error (info) */
  uint32_t settle_ms;          /* --settle MS (50) */
  uint32_t sandbox_timeout_ms; /* --sandbox-timeout MS (5000) */
  uint32_t sandbox_cpu_s;      /* --sandbox-cpu S (10) */
  uint32_t sandbox_mem_mb;     /* --sandbox-mem MB (4096; 0 = no limit) */
  uint32_t build_timeout_ms;   /* --build-timeout MS (60000) */
  int plugin_werror;           /* --plugin-werror */
  uint32_t crash_grace_s;      /* --crash-grace S (5; 0 = never roll back) */
  uint32_t crash_limit;        /* --crash-limit N (3) */
  uint32_t callback_budget_ms; /* --callback-budget MS (2000; 0 = none) */
  int no_upgrade_watch;        /* --no-upgrade-watch */
} hs_options;

/* Fills o with the defaults, then parses argv. Returns 0, or HS_EINVAL
 * with err.msg saying which argument is wrong and why. */
int hs_options_parse(hs_options *o, int argc, char **argv, hs_error *err);

/* Prints the --help text (every option with its default). */
void hs_options_usage(FILE *f);

#endif /* HS_OPTIONS_H */
