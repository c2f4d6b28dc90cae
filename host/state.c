/* state.c - the state bytes of a plugin and their way across versions. */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "api.h"
#include "file.h"
#include "guard.h"

int hs_state_init(hs_state *s, uint32_t version, uint32_t size) {
  s->data = NULL;
  s->size = 0;
  s->version = version;
  if (size > 0 && (s->data = calloc(1, size)) == NULL)
    return HS_ENOMEM;
  s->size = size;
  return 0;
}

void hs_state_free(hs_state *s) {
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

int hs_state_migrate(const hs_state *old, const hs_plugin *desc, hs_ctx *ctx,
                     int allow_reset, const char *file, hs_state *out,
                     int *was_reset, hs_error *err) {
  void *saved;
  int rc;

  memset(out, 0, sizeof(*out));
  if (was_reset != NULL)
    *was_reset = 0;
  if (hs_state_compatible(old, desc)) {
    if (hs_state_copy(out, old) != 0)
      return out_of_memory(file, err);
    return 0;
  }
  if (desc->migrate == NULL && !allow_reset)
    return no_migrate(old, desc, file, err);
  if (hs_state_init(out, desc->state_version, desc->state_size) != 0)
    return out_of_memory(file, err);
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

int hs_state_to_memfd(const hs_state *s) {
  const char *p = s->data;
  size_t done = 0;
  int fd, e;

  fd = memfd_create("hotswap-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return -errno;
  while (done < s->size) {
    ssize_t n = write(fd, p + done, s->size - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      e = n < 0 ? errno : EIO;
      goto fail;
    }
    done += (size_t)n;
  }
  if (fcntl(fd, F_ADD_SEALS,
            F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    e = errno;
    goto fail;
  }
  return fd;

fail:
  close(fd);
  return -e;
}

int hs_state_from_fd(hs_state *s, int fd, uint32_t version, uint32_t size) {
  if (hs_state_init(s, version, size) != 0)
    return HS_ENOMEM;
  if (hs_file_read(fd, s->data, size, 0) != size) {
    hs_state_free(s);
    return HS_EIO;
  }
  return 0;
}
