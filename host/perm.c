/* perm.c - who could have written what the host loads; see perm.h. */
#include "perm.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NSS_BUF 16384 /* for one passwd or group entry */

#define INSECURE_FIX "(or start hotswap with --allow-insecure)"

static int trusted_owner(uid_t uid) { return uid == 0 || uid == geteuid(); }

/* 1 if gid is the private group of owner: owner's primary group, listing
 * no member but owner. */
static int private_group(uid_t owner, gid_t gid) {
  struct passwd pw, *pwp = NULL;
  struct group gr, *grp = NULL;
  char *buf = malloc(2 * NSS_BUF);
  int ok = 0;

  if (!buf)
    return 0;
  if (getpwuid_r(owner, &pw, buf, NSS_BUF, &pwp) == 0 && pwp &&
      pw.pw_gid == gid &&
      getgrgid_r(gid, &gr, buf + NSS_BUF, NSS_BUF, &grp) == 0 && grp) {
    ok = 1;
    for (char **m = gr.gr_mem; m && *m; m++)
      if (strcmp(*m, pw.pw_name) != 0)
        ok = 0;
  }
  free(buf);
  return ok;
}

/* "uid 65534 (nobody)" or "uid 65534". */
static void user_name(uid_t uid, char *out, size_t len) {
  struct passwd pw, *pwp = NULL;
  char buf[NSS_BUF];

  if (getpwuid_r(uid, &pw, buf, sizeof(buf), &pwp) == 0 && pwp)
    snprintf(out, len, "uid %ld (%s)", (long)uid, pw.pw_name);
  else
    snprintf(out, len, "uid %ld", (long)uid);
}

/* "group staff" or "group 4321". */
static void group_name(gid_t gid, char *out, size_t len) {
  struct group gr, *grp = NULL;
  char buf[NSS_BUF];

  if (getgrgid_r(gid, &gr, buf, sizeof(buf), &grp) == 0 && grp)
    snprintf(out, len, "group %s", gr.gr_name);
  else
    snprintf(out, len, "group %ld", (long)gid);
}

int hs_perm_check(const struct stat *st, const char *path, const char *stage,
                  hs_error *err) {
  unsigned mode = (unsigned)(st->st_mode & 07777);
  char who[96];

  if (!trusted_owner(st->st_uid)) {
    user_name(st->st_uid, who, sizeof(who));
    return hs_error_set(err, HS_EINSECURE, stage,
                        "%s is owned by %s, neither you nor root: that user "
                        "could change the code hotswap runs; use a copy of "
                        "your own " INSECURE_FIX,
                        path, who);
  }
  if (mode & S_IWOTH)
    return hs_error_set(err, HS_EINSECURE, stage,
                        "%s is writable by other users (mode %04o): they "
                        "could change the code hotswap runs; chmod go-w "
                        "%s " INSECURE_FIX,
                        path, mode, path);
  if ((mode & S_IWGRP) && !private_group(st->st_uid, st->st_gid)) {
    group_name(st->st_gid, who, sizeof(who));
    return hs_error_set(err, HS_EINSECURE, stage,
                        "%s is writable by %s (mode %04o), which is not its "
                        "owner's alone: its members could change the code "
                        "hotswap runs; chmod g-w %s " INSECURE_FIX,
                        path, who, mode, path);
  }
  return 0;
}

int hs_perm_check_fd(int fd, int dirfd, const char *name, const char *stage,
                     hs_error *err) {
  struct stat st;
  char link[64], dir[PATH_MAX], path[PATH_MAX * 2];
  ssize_t n = -1;

  if (fstat(fd, &st) != 0) {
    int e = errno;
    return hs_error_set(err, -e, stage, "cannot stat %s: %s",
                        name ? name : "a directory", strerror(e));
  }
  /* The common case, trusted, without any lookup of names. */
  if (trusted_owner(st.st_uid) && !(st.st_mode & S_IWOTH) &&
      !(st.st_mode & S_IWGRP))
    return 0;
  if (!name || (name[0] != '/' && dirfd != AT_FDCWD)) {
    snprintf(link, sizeof(link), "/proc/self/fd/%d", name ? dirfd : fd);
    n = readlink(link, dir, sizeof(dir) - 1);
  }
  if (n > 0) {
    dir[n] = '\0';
    snprintf(path, sizeof(path), "%s%s%s", dir, name ? "/" : "",
             name ? name : "");
  } else {
    snprintf(path, sizeof(path), "%s", name ? name : "the directory");
  }
  return hs_perm_check(&st, path, stage, err);
}

int hs_perm_check_link(const char *path, const char *stage, hs_error *err) {
  char p[PATH_MAX], who[96];
  struct stat st;
  size_t n;

  snprintf(p, sizeof(p), "%s", path);
  for (n = strlen(p); n > 1 && p[n - 1] == '/'; n--)
    p[n - 1] = '\0';
  if (lstat(p, &st) != 0) {
    int e = errno;
    return hs_error_set(err, -e, stage, "%s: %s", p, strerror(e));
  }
  if (!S_ISLNK(st.st_mode) || trusted_owner(st.st_uid))
    return 0;
  user_name(st.st_uid, who, sizeof(who));
  return hs_error_set(err, HS_EINSECURE, stage,
                      "%s is a symbolic link owned by %s, neither you nor "
                      "root: that user decides which directory hotswap "
                      "loads from; give the directory itself " INSECURE_FIX,
                      p, who);
}
