/*
 * scaffold.h - `hotswap new NAME`: writes a plugin skeleton, NAME.c, that
 * builds and loads as it is, and says how to build it.
 */
#ifndef HS_SCAFFOLD_H
#define HS_SCAFFOLD_H

#include <stddef.h>
#include <stdio.h>

#include "err.h"

/* The longest NAME accepted, in characters. */
#define HS_SCAFFOLD_NAME_MAX 64

/* Checks that name can name a plugin and prefix its C identifiers:
 * [a-z_][a-z0-9_]*, at most HS_SCAFFOLD_NAME_MAX characters. Returns 0, or
 * HS_EINVAL with err saying what a NAME may contain. */
int hs_scaffold_check_name(const char *name, hs_error *err);

/*
 * Writes dir/name.c, the skeleton of plugin name: a versioned state struct,
 * load, unload, tick, a migrate stub and a selftest, using only hotswap.h.
 * dir must exist; an existing dir/name.c is never overwritten. Returns 0,
 * HS_EINVAL for a bad name, HS_EEXIST when the file exists, or another
 * negative code with err naming the file and the reason; a file that could
 * not be written completely is removed.
 */
int hs_scaffold_write(const char *dir, const char *name, hs_error *err);

/*
 * Finds the directory holding hotswap.h for the build command: PREFIX/include
 * when this binary runs as PREFIX/bin/hotswap and PREFIX/include/hotswap.h
 * exists (an installed hotswap), else the include/ directory of the source
 * tree this binary was built from, if it still holds hotswap.h. Returns 0
 * with out filled, or HS_ENOENT (out then "").
 */
int hs_scaffold_include_dir(char *out, size_t size);

/* Prints, for a skeleton just written to dir/name.c, the command that
 * builds it into dir/name.so and the command that runs the host on it. */
void hs_scaffold_print_next(FILE *f, const char *dir, const char *name);

#endif /* HS_SCAFFOLD_H */
