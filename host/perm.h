/*
 * perm.h - who could have written what the host loads. A plugin runs with
 * the host's rights: a plugin file, a source, its flags or headers, or the
 * plugin directory itself, that another user can write is that user's
 * code. Such files are refused (HS_EINSECURE) unless the host runs with
 * --allow-insecure.
 *
 * Trusted: owned by us (the effective uid) or root, not writable by
 * others, and writable by the group only when that group is the owner's
 * private group (the owner's primary group, with no other members listed:
 * what umask 002 gives on systems with one group per user). The checks run
 * on the fd that is then read (fstat after open), never on a path that
 * could be swapped in between.
 */
#ifndef HS_PERM_H
#define HS_PERM_H

#include <sys/stat.h>

#include "err.h"

/*
 * Checks st, the status of the open file or directory path. Returns 0 when
 * it is trusted, else HS_EINSECURE with err (stage) naming path, its mode
 * or owner and the fix, e.g. "/p/counter.so is writable by other users
 * (mode 0666): they could change the code hotswap runs; chmod go-w
 * /p/counter.so (or start hotswap with --allow-insecure)". Any thread.
 */
int hs_perm_check(const struct stat *st, const char *path, const char *stage,
                  hs_error *err);

/*
 * hs_perm_check on fd, the file name opened relative to dirfd (AT_FDCWD or
 * an absolute name: name as it is; NULL: fd itself, e.g. a directory).
 * The message names the full path, resolved through /proc/self/fd only
 * when the check fails. Returns 0, HS_EINSECURE, or -errno when fd cannot
 * be examined; err filled.
 */
int hs_perm_check_fd(int fd, int dirfd, const char *name, const char *stage,
                     hs_error *err);

/*
 * For a path the user gave (the plugin directory): when path (without
 * trailing slashes) is a symbolic link, the link itself must be owned by
 * us or root (the directory it leads to is checked once opened). Returns
 * 0, HS_EINSECURE or -errno with err filled.
 */
int hs_perm_check_link(const char *path, const char *stage, hs_error *err);

#endif /* HS_PERM_H */
