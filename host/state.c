/* state.c - the state bytes of a plugin and their way across versions. */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "guard.h"

int hs_state_init(hs_state *s, uint32_t version, uint32_t size) {
  memset(s, 0, sizeof(*s));
  s->version = version;
  if (size > 0 && (s->data = calloc(1, size)) == NULL)
    return HS_ENOMEM;
  s->size = size;
  return 0;
}

int hs_state_prepare(hs_state *s, uint32_t version, uint32_t size) {
  if (hs_state_init(s, version, size) != 0)
    return HS_ENOMEM;
  long page = sysconf(_SC_PAGESIZE);
  volatile unsigned char *p = s->data;
  for (size_t at = 0; at < size; at += (size_t)page)
    p[at] = 0; /* a write: a read would map the shared zero page */
  return 0;
}

void hs_state_free(hs_state *s) {
  if (s->mapped && s->data)
    munmap(s->data, s->size);
  else
    free(s->data);
  memset(s, 0, sizeof(*s));
}

int hs_state_copy(hs_state *dst, const hs_state *src) {
  int rc = hs_state_init(dst, src->version, src->size);

  if (rc == 0 && src->size > 0)
    memcpy(dst->data, src->data, src->size);
  return rc;
}

void hs_state_move(hs_state *dst, hs_state *src) {
  if (dst == src)
    return;
  hs_state_free(dst);
  *dst = *src;
  memset(src, 0, sizeof(*src));
}

int hs_state_compatible(const hs_state *s, const hs_plugin *desc) {
  return s->version == desc->state_version && s->size == desc->state_size;
}

/* Fails with HS_ENOMIGRATE: a new layout and no way to build it. */
static int no_migrate(const hs_state *old, const hs_plugin *desc,
                      const char *file, hs_error *err) {
  if (old->version == desc->state_version)
    return hs_error_set(err, HS_ENOMIGRATE, "migrate",
                        "state v%u changes size from %u to %u bytes without "
                        "a new state_version; bump state_version and add a "
                        "migrate function",
                        (unsigned)old->version, (unsigned)old->size,
                        (unsigned)desc->state_size);
  return hs_error_set(err, HS_ENOMIGRATE, "migrate",
                      "state changes from v%u (%u bytes) to v%u (%u bytes) "
                      "and %s has no migrate function; add one, or start "
                      "hotswap with --allow-state-reset to reset the state",
                      (unsigned)old->version, (unsigned)old->size,
                      (unsigned)desc->state_version,
                      (unsigned)desc->state_size, file);
}

static int out_of_memory(const char *file, hs_error *err) {
  return hs_error_set(err, HS_ENOMEM, "migrate",
                      "cannot allocate the state of %s: out of memory", file);
}

int hs_state_init_spare(hs_state *out, uint32_t version, uint32_t size,
                        hs_state *spare) {
  if (spare && spare->version == version && spare->size == size) {
    memset(out, 0, sizeof(*out));
    hs_state_move(out, spare);
    return 0;
  }
  if (spare)
    hs_state_free(spare);
  return hs_state_init(out, version, size);
}

int hs_state_migrate(const hs_state *old, const hs_plugin *desc, hs_ctx *ctx,
                     int allow_reset, const char *file, hs_state *spare,
                     hs_state *out, int *was_reset, hs_error *err) {
  int same = hs_state_compatible(old, desc), rc;
  void *saved;

  memset(out, 0, sizeof(*out));
  if (was_reset != NULL)
    *was_reset = 0;
  if (!same && desc->migrate == NULL && !allow_reset) {
    if (spare)
      hs_state_free(spare);
    return no_migrate(old, desc, file, err);
  }
  if (hs_state_init_spare(out, desc->state_version, desc->state_size,
                          spare) != 0)
    return out_of_memory(file, err);
  if (same) {
    if (old->size > 0)
      memcpy(out->data, old->data, old->size);
    return 0;
  }
  if (desc->migrate == NULL) {
    if (was_reset != NULL)
      *was_reset = 1;
    return 0;
  }
  saved = ctx != NULL ? ctx->state : NULL;
  if (ctx != NULL)
    ctx->state = out->data;
  hs_guard_fault f;
  int crashed = hs_guard_migrate(desc, ctx, out->data, old->data,
                                 old->version, old->size, &rc, &f) != 0;
  if (ctx != NULL)
    ctx->state = saved;
  if (!crashed && rc == 0)
    return 0;
  hs_state_free(out);
  if (crashed) {
    char what[200];
    hs_guard_describe(&f, desc, ctx ? ctx->name : NULL, what, sizeof(what));
    return hs_error_set(err, HS_ECRASH, "migrate",
                        "migrate() of %s from state v%u to v%u crashed: %s",
                        file, (unsigned)old->version,
                        (unsigned)desc->state_version, what);
  }
  if (rc < 0)
    return hs_error_set(err, HS_EMIGRATE, "migrate",
                        "migrate() of %s from state v%u to v%u returned %s "
                        "(%s)",
                        file, (unsigned)old->version,
                        (unsigned)desc->state_version, hs_err_name(rc),
                        hs_strerror(rc));
  return hs_error_set(err, HS_EMIGRATE, "migrate",
                      "migrate() of %s from state v%u to v%u returned %d "
                      "(not a hotswap code)",
                      file, (unsigned)old->version,
                      (unsigned)desc->state_version, rc);
}

int hs_state_snap_write(hs_state_snap *snap, const hs_state *s) {
  int e, fd;

  if (snap->fd >= 0 && (snap->size != s->size || snap->lent))
    hs_state_snap_free(snap); /* sealed at its size, or still read */
  if (snap->fd < 0) {
    fd = memfd_create("hotswap-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
      return -errno;
    void *map = NULL;
    if (s->size > 0 &&
        (ftruncate(fd, s->size) != 0 ||
         (map = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                     0)) == MAP_FAILED)) {
      e = errno;
      close(fd);
      return -e;
    }
    if (fcntl(fd, F_ADD_SEALS,
              F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE |
                  F_SEAL_SEAL) != 0) {
      e = errno;
      if (map)
        munmap(map, s->size);
      close(fd);
      return -e;
    }
    snap->fd = fd;
    snap->map = map;
    snap->size = s->size;
  }
  if (s->size > 0)
    memcpy(snap->map, s->data, s->size);
  if ((fd = fcntl(snap->fd, F_DUPFD_CLOEXEC, 0)) < 0) {
    e = errno;
    hs_state_snap_free(snap);
    return -e;
  }
  snap->lent = 1;
  return fd;
}

void hs_state_snap_done(hs_state_snap *snap) { snap->lent = 0; }

void hs_state_snap_free(hs_state_snap *snap) {
  if (snap->map)
    munmap(snap->map, snap->size);
  if (snap->fd >= 0)
    close(snap->fd);
  *snap = (hs_state_snap)HS_STATE_SNAP_INIT;
}

int hs_state_map_fd(hs_state *s, int fd, uint32_t version, uint32_t size) {
  struct stat st;

  memset(s, 0, sizeof(*s));
  s->version = version;
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < (off_t)size)
    return HS_EIO; /* also: bytes past the end would fault, not read */
  if (size == 0)
    return 0;
  /* (Before Linux 5.5 such a map of a memfd sealed F_SEAL_FUTURE_WRITE
   * was shared by mistake: the holder's writes reached the memfd. The
   * host never reads a snapshot back, so that would change nothing.) */
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED)
    return errno == ENOMEM ? HS_ENOMEM : HS_EIO;
  madvise(p, size, MADV_POPULATE_READ); /* before 5.14: faulted on use */
  s->data = p;
  s->size = size;
  s->mapped = 1;
  return 0;
}
