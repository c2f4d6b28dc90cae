/* handoff.c - the handoff's binary format; see handoff.h. */
#include "handoff.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "cache.h"

/* Header: magic, format version, payload length, payload hash. */
#define HEADER_SIZE (8 + 4 + 8 + 8)

/* Sane bounds, so that a corrupt count cannot make us allocate wildly. */
#define MAX_SLOTS 65536u
#define MAX_REGS 1048576u

/* ---- writing ---- */

static void put(hs_buf *b, const void *p, size_t n) { hs_buf_append(b, p, n); }
static void put_u32(hs_buf *b, uint32_t v) { put(b, &v, sizeof(v)); }
static void put_u64(hs_buf *b, uint64_t v) { put(b, &v, sizeof(v)); }
static void put_i64(hs_buf *b, int64_t v) { put(b, &v, sizeof(v)); }

static void put_str(hs_buf *b, const char *s) {
  uint32_t n = s ? (uint32_t)strlen(s) : 0;
  put_u32(b, n);
  put(b, s ? s : "", n);
}

/* What the host knew of a slot's crashes (format 2 on). */
static void put_crash(hs_buf *b, const hs_handoff_crash *c) {
  put_u32(b, (uint32_t)c->quarantined);
  put_u32(b, (uint32_t)c->held);
  put_u64(b, c->held_hash);
  put_u32(b, c->count);
  uint32_t n = c->ntimes < HS_HANDOFF_CRASH_TIMES ? c->ntimes
                                                  : HS_HANDOFF_CRASH_TIMES;
  put_u32(b, n);
  for (uint32_t i = 0; i < n; i++)
    put_u64(b, c->times[i]);
  put_str(b, c->callback);
  put_str(b, c->version);
  put_str(b, c->what);
  put_str(b, c->where);
  put_str(b, c->action);
  put_str(b, c->detail);
  put_u32(b, (uint32_t)c->signo);
  put_u32(b, (uint32_t)c->code);
  put_u32(b, (uint32_t)c->hang);
  put_u64(b, c->addr);
  put_u64(b, c->pc);
  put_i64(b, c->at);
}

/* The metadata of a slot; its state bytes go to the blob area after all
 * metadata, at *blob (advanced). */
static void put_slot(hs_buf *b, const hs_handoff_slot *s, uint32_t format,
                     uint64_t *blob) {
  put_str(b, s->file);
  put_u32(b, (uint32_t)s->loaded);
  put_str(b, s->copy_path);
  put_u64(b, s->copy_hash);
  put_u64(b, s->copy_size);
  put_str(b, s->version);
  put_u32(b, s->generation);
  put_u32(b, s->reloads);
  put_i64(b, s->loaded_at);
  put_u64(b, s->build_key);
  put_u64(b, s->rejected_hash);
  uint32_t size = s->state.data ? s->state.size : 0;
  put_u32(b, s->state.version);
  put_u32(b, size);
  put_u64(b, *blob);
  *blob += size;
  put_u32(b, (uint32_t)s->nfds);
  for (size_t i = 0; i < s->nfds; i++) {
    put_u32(b, (uint32_t)s->fds[i].fd);
    put_u32(b, s->fds[i].events);
    put_u64(b, s->fds[i].token);
    put_str(b, s->fds[i].name);
  }
  put_i64(b, s->next_timer_id);
  put_u32(b, (uint32_t)s->ntimers);
  for (size_t i = 0; i < s->ntimers; i++) {
    put_i64(b, s->timers[i].id);
    put_u64(b, s->timers[i].token);
    put_u64(b, s->timers[i].repeat_ms);
    put_u64(b, s->timers[i].due_ns);
  }
  put_u32(b, (uint32_t)s->ndeps);
  for (size_t i = 0; i < s->ndeps; i++)
    put_str(b, s->deps[i]);
  put_u32(b, (uint32_t)s->noutputs);
  for (size_t i = 0; i < s->noutputs; i++) {
    put_u64(b, s->outputs[i].key);
    put_str(b, s->outputs[i].name);
  }
  put_u64(b, s->failed_key);
  if (format >= 2)
    put_crash(b, &s->crash);
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return w < 0 ? -errno : HS_EIO;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int hs_handoff_write(const hs_handoff *h, hs_error *err) {
  hs_buf b;
  char head[HEADER_SIZE];
  int fd, rc;
  uint32_t version = h->version ? h->version : HS_HANDOFF_VERSION;

  if (version > HS_HANDOFF_VERSION)
    return hs_error_set(err, HS_EINVAL, "handoff",
                        "cannot write handoff format %u; this hotswap writes "
                        "formats 1 to %d",
                        version, HS_HANDOFF_VERSION);
  hs_buf_init(&b);
  put_str(&b, h->host_version);
  put_u32(&b, h->reexecs);
  put_i64(&b, h->started_at);
  put_u64(&b, h->started_ns);
  put_i64(&b, h->reexec_at);
  put_u64(&b, h->paused_ns);
  put_str(&b, h->self_path);
  put_u64(&b, h->self_hash);
  put_str(&b, h->plugin_dir);
  put_str(&b, h->cache_dir);
  put_u64(&b, h->cache_next);
  put_u32(&b, (uint32_t)h->control_fd);
  put_str(&b, h->control_path);
  put_u32(&b, (uint32_t)h->nslots);
  uint64_t blob = 0;
  for (size_t i = 0; i < h->nslots; i++)
    put_slot(&b, &h->slots[i], version, &blob);
  if (b.oom) {
    hs_buf_free(&b);
    return hs_error_set(err, HS_ENOMEM, "handoff", "out of memory");
  }

  uint64_t len = b.len, hash = hs_hash(b.data, b.len);
  memcpy(head, HS_HANDOFF_MAGIC, 8);
  memcpy(head + 8, &version, 4);
  memcpy(head + 12, &len, 8);
  memcpy(head + 20, &hash, 8);

  fd = memfd_create("hotswap-handoff", MFD_CLOEXEC);
  if (fd < 0) {
    rc = -errno;
    hs_buf_free(&b);
    return hs_error_set(err, rc, "handoff", "memfd_create: %s",
                        hs_strerror(rc));
  }
  rc = write_all(fd, head, sizeof(head));
  if (rc == 0)
    rc = write_all(fd, b.data, b.len);
  hs_buf_free(&b);
  /* The state bytes straight from the plugins' buffers: no copy. */
  for (size_t i = 0; i < h->nslots && rc == 0; i++)
    if (h->slots[i].state.data)
      rc = write_all(fd, h->slots[i].state.data, h->slots[i].state.size);
  if (rc != 0) {
    close(fd);
    return hs_error_set(err, rc, "handoff", "writing the handoff: %s",
                        hs_strerror(rc));
  }
  return fd;
}

/* ---- reading ---- */

typedef struct reader {
  const unsigned char *p, *end; /* the metadata */
  const unsigned char *blob;    /* the state bytes after it */
  size_t blob_size;
  uint32_t version; /* the format */
  int bad;   /* ran past the end, or a count out of bounds */
  int short_blob; /* a state's bytes lie past the end of the file */
} reader;

static void get(reader *r, void *out, size_t n) {
  if (r->bad || (size_t)(r->end - r->p) < n) {
    r->bad = 1;
    memset(out, 0, n);
    return;
  }
  memcpy(out, r->p, n);
  r->p += n;
}

static uint32_t get_u32(reader *r) {
  uint32_t v;
  get(r, &v, sizeof(v));
  return v;
}

static uint64_t get_u64(reader *r) {
  uint64_t v;
  get(r, &v, sizeof(v));
  return v;
}

static int64_t get_i64(reader *r) {
  int64_t v;
  get(r, &v, sizeof(v));
  return v;
}

static char *get_str(reader *r) {
  uint32_t n = get_u32(r);
  if (r->bad || (size_t)(r->end - r->p) < n) {
    r->bad = 1;
    return NULL;
  }
  char *s = strndup((const char *)r->p, n);
  if (!s)
    r->bad = 1;
  r->p += n;
  return s;
}

/* Reads a count and allocates n elements of size (NULL for 0). */
static void *get_array(reader *r, size_t *n, size_t size, uint32_t max) {
  uint32_t c = get_u32(r);
  *n = 0;
  if (r->bad || c > max) {
    r->bad = 1;
    return NULL;
  }
  if (c == 0)
    return NULL;
  void *a = calloc(c, size);
  if (!a)
    r->bad = 1;
  else
    *n = c;
  return a;
}

/* Faults in a fresh buffer's pages in one call: one by one, as memcpy
 * would, costs a trap each (on a VM, tens of microseconds each), inside
 * the upgrade's pause. Best effort (kernels before 5.14 lack it). */
static void populate(void *p, size_t size) {
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t start = ((uintptr_t)p + page - 1) & ~(page - 1);
  uintptr_t end = ((uintptr_t)p + size) & ~(page - 1);
  if (end > start)
    madvise((void *)start, end - start, MADV_POPULATE_WRITE);
}

static void get_crash(reader *r, hs_handoff_crash *c) {
  c->quarantined = get_u32(r) != 0;
  c->held = get_u32(r) != 0;
  c->held_hash = get_u64(r);
  c->count = get_u32(r);
  c->ntimes = get_u32(r);
  if (c->ntimes > HS_HANDOFF_CRASH_TIMES) {
    r->bad = 1;
    return;
  }
  for (uint32_t i = 0; i < c->ntimes; i++)
    c->times[i] = get_u64(r);
  c->callback = get_str(r);
  c->version = get_str(r);
  c->what = get_str(r);
  c->where = get_str(r);
  c->action = get_str(r);
  c->detail = get_str(r);
  c->signo = (int)get_u32(r);
  c->code = (int)get_u32(r);
  c->hang = get_u32(r) != 0;
  c->addr = get_u64(r);
  c->pc = get_u64(r);
  c->at = get_i64(r);
}

static void get_slot(reader *r, hs_handoff_slot *s) {
  s->file = get_str(r);
  s->loaded = get_u32(r) != 0;
  s->copy_path = get_str(r);
  s->copy_hash = get_u64(r);
  s->copy_size = get_u64(r);
  s->version = get_str(r);
  s->generation = get_u32(r);
  s->reloads = get_u32(r);
  s->loaded_at = get_i64(r);
  s->build_key = get_u64(r);
  s->rejected_hash = get_u64(r);
  uint32_t version = get_u32(r), size = get_u32(r);
  uint64_t at = get_u64(r);
  if (r->bad || at > r->blob_size || r->blob_size - at < size) {
    r->short_blob = !r->bad;
    r->bad = 1;
    return;
  }
  if (version != 0) {
    if (hs_state_init(&s->state, version, size) != 0) {
      r->bad = 1;
      return;
    }
    populate(s->state.data, size);
    memcpy(s->state.data, r->blob + at, size);
  }
  s->fds = get_array(r, &s->nfds, sizeof(*s->fds), MAX_REGS);
  for (size_t i = 0; i < s->nfds && !r->bad; i++) {
    s->fds[i].fd = (int)get_u32(r);
    s->fds[i].events = get_u32(r);
    s->fds[i].token = get_u64(r);
    char *name = get_str(r);
    snprintf(s->fds[i].name, sizeof(s->fds[i].name), "%s", name ? name : "");
    free(name);
  }
  s->next_timer_id = get_i64(r);
  s->timers = get_array(r, &s->ntimers, sizeof(*s->timers), MAX_REGS);
  for (size_t i = 0; i < s->ntimers && !r->bad; i++) {
    s->timers[i].id = get_i64(r);
    s->timers[i].token = get_u64(r);
    s->timers[i].repeat_ms = get_u64(r);
    s->timers[i].due_ns = get_u64(r);
  }
  s->deps = get_array(r, &s->ndeps, sizeof(*s->deps), MAX_REGS);
  for (size_t i = 0; i < s->ndeps && !r->bad; i++)
    s->deps[i] = get_str(r);
  s->outputs = get_array(r, &s->noutputs, sizeof(*s->outputs), MAX_REGS);
  for (size_t i = 0; i < s->noutputs && !r->bad; i++) {
    s->outputs[i].key = get_u64(r);
    s->outputs[i].name = get_str(r);
  }
  s->failed_key = get_u64(r);
  if (r->version >= 2)
    get_crash(r, &s->crash);
  if (!s->file || !s->copy_path || !s->version)
    r->bad = 1;
}

static void unmap(void *p, size_t size) {
  if (p)
    munmap(p, size);
}

/* Where the state bytes of h end, from the metadata read. */
static size_t blob_end(const hs_handoff *h) {
  size_t n = 0;
  for (size_t i = 0; i < h->nslots; i++)
    n += h->slots[i].state.size;
  return n;
}

int hs_handoff_read(int fd, hs_handoff *h, hs_error *err) {
  struct stat st;
  uint32_t version;
  uint64_t len, hash;

  memset(h, 0, sizeof(*h));
  h->owned = 1;
  h->control_fd = -1;
  if (fstat(fd, &st) != 0) {
    int rc = -errno;
    return hs_error_set(err, rc, "handoff",
                        "cannot read the handoff (fd %d): %s", fd,
                        hs_strerror(rc));
  }
  /* Mapped, not read: the state bytes are copied once, into the plugins'
   * buffers. */
  size_t size = (size_t)st.st_size;
  unsigned char *all =
      size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0)
           : NULL;
  if (all == MAP_FAILED) {
    int rc = -errno;
    return hs_error_set(err, rc, "handoff",
                        "cannot read the handoff (fd %d): %s", fd,
                        hs_strerror(rc));
  }
  if (size < HEADER_SIZE || memcmp(all, HS_HANDOFF_MAGIC, 8) != 0) {
    unmap(all, size);
    return hs_error_set(err, HS_EINVAL, "handoff",
                        "fd %d is not a hotswap handoff (%zu bytes, no %s "
                        "header)",
                        fd, size, HS_HANDOFF_MAGIC);
  }
  memcpy(&version, all + 8, 4);
  memcpy(&len, all + 12, 8);
  memcpy(&hash, all + 20, 8);
  if (version < 1 || version > HS_HANDOFF_VERSION) {
    unmap(all, size);
    return hs_error_set(err, HS_EINVAL, "handoff",
                        "handoff format %u; this hotswap reads formats 1 to "
                        "%d",
                        version, HS_HANDOFF_VERSION);
  }
  if (len > size - HEADER_SIZE) {
    unmap(all, size);
    return hs_error_set(err, HS_EIO, "handoff",
                        "the handoff is truncated: %llu bytes promised, %zu "
                        "there",
                        (unsigned long long)len, size - HEADER_SIZE);
  }
  if (hs_hash(all + HEADER_SIZE, len) != hash) {
    unmap(all, size);
    return hs_error_set(err, HS_EIO, "handoff",
                        "the handoff is corrupt (its hash does not match)");
  }

  reader r = {all + HEADER_SIZE, all + HEADER_SIZE + len,
              all + HEADER_SIZE + len, size - HEADER_SIZE - len, version, 0,
              0};
  h->version = version;
  h->host_version = get_str(&r);
  h->reexecs = get_u32(&r);
  h->started_at = get_i64(&r);
  h->started_ns = get_u64(&r);
  h->reexec_at = get_i64(&r);
  h->paused_ns = get_u64(&r);
  h->self_path = get_str(&r);
  h->self_hash = get_u64(&r);
  h->plugin_dir = get_str(&r);
  h->cache_dir = get_str(&r);
  h->cache_next = get_u64(&r);
  h->control_fd = (int)get_u32(&r);
  h->control_path = get_str(&r);
  h->slots = get_array(&r, &h->nslots, sizeof(*h->slots), MAX_SLOTS);
  for (size_t i = 0; i < h->nslots && !r.bad; i++)
    get_slot(&r, &h->slots[i]);
  if (!r.bad && r.p != r.end)
    r.bad = 1;
  int truncated = r.short_blob || (!r.bad && blob_end(h) != r.blob_size);
  unmap(all, size);
  if (truncated) {
    hs_handoff_free(h);
    return hs_error_set(err, HS_EIO, "handoff",
                        "the handoff is truncated: the plugins' state bytes "
                        "do not match the %zu bytes after its metadata",
                        r.blob_size);
  }
  if (r.bad || !h->host_version || !h->self_path || !h->plugin_dir ||
      !h->cache_dir || !h->control_path) {
    hs_handoff_free(h);
    return hs_error_set(err, HS_EIO, "handoff",
                        "the handoff's contents do not parse (format %u)",
                        version);
  }
  return 0;
}

void hs_handoff_free(hs_handoff *h) {
  for (size_t i = 0; i < h->nslots; i++) {
    hs_handoff_slot *s = &h->slots[i];
    if (h->owned) {
      free(s->file);
      free(s->copy_path);
      free(s->version);
      hs_state_free(&s->state);
      for (size_t j = 0; j < s->ndeps; j++)
        free(s->deps[j]);
      for (size_t j = 0; j < s->noutputs; j++)
        free(s->outputs[j].name);
      hs_handoff_crash *c = &s->crash;
      free(c->callback);
      free(c->version);
      free(c->what);
      free(c->where);
      free(c->action);
      free(c->detail);
    }
    free(s->deps);
    free(s->outputs);
    free(s->fds);
    free(s->timers);
  }
  free(h->slots);
  if (h->owned) {
    free(h->host_version);
    free(h->self_path);
    free(h->plugin_dir);
    free(h->cache_dir);
    free(h->control_path);
  }
  memset(h, 0, sizeof(*h));
  h->control_fd = -1;
}
