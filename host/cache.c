/* cache.c - private copies of plugin files, the only paths dlopen sees. */
#include "cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elf.h"
#include "file.h"
#include "perm.h"

int hs_cache_init(hs_cache *c, const char *parent, hs_error *err) {
  char *tmpl = NULL, *abs = NULL, *cwd;
  struct stat st;
  int fd = -1, e;

  c->dir = NULL;
  c->dirfd = -1;
  c->next = 1;
  if (parent == NULL || parent[0] == '\0')
    parent = getenv("TMPDIR");
  if (parent == NULL || parent[0] == '\0')
    parent = "/tmp";
  /* Copies are handed to dlopen by path: keep the path absolute. */
  if (parent[0] != '/') {
    if ((cwd = getcwd(NULL, 0)) == NULL) {
      e = errno;
      return hs_error_set(err, -e, "cache",
                          "cannot create the cache in %s: getcwd: %s", parent,
                          strerror(e));
    }
    if (asprintf(&abs, "%s/%s", cwd, parent) < 0)
      abs = NULL;
    free(cwd);
    if (abs == NULL)
      return hs_error_set(err, HS_ENOMEM, "cache", "out of memory");
    parent = abs;
  }
  if (asprintf(&tmpl, "%s/hotswap-%ld-XXXXXX", parent, (long)getpid()) < 0) {
    free(abs);
    return hs_error_set(err, HS_ENOMEM, "cache", "out of memory");
  }
  if (mkdtemp(tmpl) == NULL) {
    e = errno;
    hs_error_set(err, -e, "cache", "cannot create the cache in %s: %s",
                 parent, strerror(e));
    free(tmpl);
    free(abs);
    return -e;
  }
  free(abs);
  fd = open(tmpl, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) != 0) {
    e = errno;
    hs_error_set(err, -e, "cache", "cannot open the cache %s: %s", tmpl,
                 strerror(e));
    goto fail;
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
      (st.st_mode & 07777) != 0700) {
    e = EACCES;
    hs_error_set(err, HS_EACCES, "cache",
                 "the cache %s is not a directory of ours with mode 0700 "
                 "(owner %ld, mode %04o)",
                 tmpl, (long)st.st_uid, (unsigned)(st.st_mode & 07777));
    goto fail;
  }
  c->dir = tmpl;
  c->dirfd = fd;
  return 0;

fail:
  if (fd >= 0)
    close(fd);
  rmdir(tmpl);
  free(tmpl);
  return -e;
}

void hs_cache_close(hs_cache *c) {
  DIR *d;
  struct dirent *de;
  int fd;

  if (c->dir == NULL)
    return;
  fd = dup(c->dirfd);
  d = fd >= 0 ? fdopendir(fd) : NULL;
  if (d == NULL && fd >= 0)
    close(fd);
  while (d != NULL && (de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (unlinkat(c->dirfd, de->d_name, 0) != 0 && errno == EISDIR)
      unlinkat(c->dirfd, de->d_name, AT_REMOVEDIR);
  }
  if (d != NULL)
    closedir(d);
  close(c->dirfd);
  rmdir(c->dir);
  free(c->dir);
  c->dir = NULL;
  c->dirfd = -1;
}

/* "counter" for "plugins/counter.so": the last component without ".so". */
static char *name_stem(const char *name) {
  const char *base = strrchr(name, '/');
  size_t len;

  base = base != NULL ? base + 1 : name;
  len = strlen(base);
  if (len > 3 && strcmp(base + len - 3, ".so") == 0)
    len -= 3;
  return strndup(base, len);
}

/* Copies everything from in to out: copy_file_range, falling back to
 * read/write where the kernel or file system cannot. Returns 0 or -errno. */
static int copy_fd(int in, int out) {
  char buf[65536];
  int use_cfr = 1;

  for (;;) {
    ssize_t n;
    if (use_cfr) {
      n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
      if (n < 0 && (errno == ENOSYS || errno == EXDEV || errno == EINVAL ||
                    errno == EOPNOTSUPP || errno == EPERM)) {
        use_cfr = 0; /* the offsets are where the failed call left them */
        continue;
      }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return -errno;
      if (n == 0)
        return 0;
      continue;
    }
    n = read(in, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0)
      return 0;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = write(out, buf + done, (size_t)(n - done));
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        return -errno;
      done += w;
    }
  }
}

/* Opens name for reading: a regular file, no symlink, never blocking on a
 * FIFO. Returns the fd or a negative code with err filled. */
static int open_source(int dirfd, const char *name, hs_error *err) {
  struct stat st;
  int fd, e;

  fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    e = errno;
    if (e == ELOOP)
      return hs_error_set(err, HS_EINVAL, "copy",
                          "%s is not a regular file (a symbolic link; links "
                          "are not followed)",
                          name);
    return hs_error_set(err, -e, "copy", "cannot open %s: %s", name,
                        strerror(e));
  }
  if (fstat(fd, &st) != 0) {
    e = errno;
    close(fd);
    return hs_error_set(err, -e, "copy", "cannot stat %s: %s", name,
                        strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return hs_error_set(err, HS_EINVAL, "copy", "%s is not a regular file%s",
                        name, S_ISDIR(st.st_mode) ? " (a directory)" : "");
  }
  /* O_NONBLOCK only guarded the open; reads of regular files ignore it. */
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

/* Hashes data (the copy's bytes), checks its ELF headers and notes
 * whether it pins itself. */
static int inspect(const void *data, size_t size, const char *name,
                   hs_cache_file *out, hs_error *err) {
  out->size = (uint64_t)size;
  out->hash = hs_hash(data, size);
  int rc = hs_elf_check(data, size, name, err);
  if (rc == 0)
    hs_elf_pins(data, size, out->pins, sizeof(out->pins));
  return rc;
}

/* Maps the copy and inspects it. */
static int inspect_copy(int fd, const char *name, hs_cache_file *out,
                        hs_error *err) {
  struct stat st;
  void *map = NULL;
  int rc, e;

  if (fstat(fd, &st) != 0) {
    e = errno;
    return hs_error_set(err, -e, "copy", "cannot stat the copy of %s: %s",
                        name, strerror(e));
  }
  if (st.st_size > 0) {
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      e = errno;
      return hs_error_set(err, -e, "copy", "cannot map the copy of %s: %s",
                          name, strerror(e));
    }
  }
  rc = inspect(map, (size_t)st.st_size, name, out, err);
  if (map != NULL)
    munmap(map, (size_t)st.st_size);
  return rc;
}

/*
 * Files up to this size (most plugins) are read into memory once, written
 * out and inspected there: no copy_file_range and no mapping, whose munmap
 * costs a TLB shootdown across the host's threads (a third of the copy's
 * time for a small plugin here). Larger ones are copied in the kernel and
 * mapped.
 */
#define READ_MAX (4u << 20)

/* Reads all of in (st_size bytes, and not one more) into a new buffer.
 * Returns it, or NULL (errno 0: the file is larger than it said or than
 * READ_MAX; take the other path). */
static char *read_small(int in, size_t *len) {
  struct stat st;
  char *buf, extra;
  size_t done;

  errno = 0;
  if (fstat(in, &st) != 0 || st.st_size < 0 || st.st_size > READ_MAX)
    return NULL;
  if ((buf = malloc((size_t)st.st_size + 1)) == NULL)
    return NULL;
  done = hs_file_read(in, buf, (size_t)st.st_size, 0);
  if (done != (size_t)st.st_size ||
      pread(in, &extra, 1, (off_t)done) != 0) { /* changed meanwhile */
    free(buf);
    errno = 0;
    return NULL;
  }
  *len = done;
  return buf;
}

/* Writes len bytes of buf to out. Returns 0 or -errno. */
static int write_all(int out, const char *buf, size_t len) {
  for (size_t done = 0; done < len;) {
    ssize_t w = write(out, buf + done, len - done);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -errno;
    done += (size_t)w;
  }
  return 0;
}

/* Fills the new copy cp from in, and inspects it. */
static int fill_copy(int in, int cp, const char *name, hs_cache_file *out,
                     hs_error *err) {
  size_t len = 0;
  char *buf = read_small(in, &len);
  int rc;

  if (buf == NULL && errno != 0)
    return hs_error_set(err, -errno, "copy", "cannot read %s: %s", name,
                        strerror(errno));
  if (buf != NULL) {
    if ((rc = write_all(cp, buf, len)) != 0)
      hs_error_set(err, rc, "copy", "cannot copy %s: %s", name,
                   strerror(-rc));
    else
      rc = inspect(buf, len, name, out, err);
    free(buf);
    return rc;
  }
  if ((rc = copy_fd(in, cp)) != 0)
    return hs_error_set(err, rc, "copy", "cannot copy %s: %s", name,
                        strerror(-rc));
  return inspect_copy(cp, name, out, err);
}

int hs_cache_add(hs_cache *c, int dirfd, const char *name,
                 hs_cache_file *out, hs_error *err) {
  char *stem = NULL, *leaf = NULL;
  int in, cp = -1, rc;

  memset(out, 0, sizeof(*out));
  in = open_source(dirfd, name, err);
  if (in < 0)
    return in;
  /* What others could write is not copied: checked on the fd read. */
  if (dirfd != c->dirfd && !c->allow_insecure &&
      ((rc = hs_perm_check_fd(dirfd, AT_FDCWD, NULL, "copy", err)) != 0 ||
       (rc = hs_perm_check_fd(in, dirfd, name, "copy", err)) != 0)) {
    close(in);
    return rc;
  }
  stem = name_stem(name);
  if (stem == NULL ||
      asprintf(&leaf, "%s.%llu.so", stem,
               (unsigned long long)hs_cache_next(c)) < 0) {
    leaf = NULL;
    rc = hs_error_set(err, HS_ENOMEM, "copy", "out of memory copying %s",
                      name);
    goto done;
  }
  /* Read-write: the copy is mapped for reading once written. */
  cp = openat(c->dirfd, leaf, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (cp < 0) {
    int e = errno;
    rc = hs_error_set(err, -e, "copy", "cannot create %s/%s for %s: %s",
                      c->dir, leaf, name, strerror(e));
    goto done;
  }
  if ((rc = fill_copy(in, cp, name, out, err)) != 0)
    goto done;
  if (asprintf(&out->path, "%s/%s", c->dir, leaf) < 0) {
    out->path = NULL;
    rc = hs_error_set(err, HS_ENOMEM, "copy", "out of memory copying %s",
                      name);
  }

done:
  if (cp >= 0)
    close(cp);
  close(in);
  if (rc != 0) {
    if (cp >= 0)
      unlinkat(c->dirfd, leaf, 0);
    /* Bad ELF content keeps its hash, to be recognised when it comes again. */
    uint64_t hash = out->hash, size = out->size;
    memset(out, 0, sizeof(*out));
    if (strcmp(err->stage, "elf") == 0) {
      out->hash = hash;
      out->size = size;
    }
  }
  free(leaf);
  free(stem);
  return rc;
}

void hs_cache_remove(hs_cache *c, hs_cache_file *f) {
  const char *leaf;

  if (f->path == NULL)
    return;
  leaf = strrchr(f->path, '/');
  if (c != NULL && c->dir != NULL && leaf != NULL)
    unlinkat(c->dirfd, leaf + 1, 0);
  else
    unlink(f->path);
  hs_cache_file_free(f);
}

void hs_cache_file_free(hs_cache_file *f) {
  free(f->path);
  memset(f, 0, sizeof(*f));
}

/*
 * hs_hash: a 64-bit multiply-xorshift hash, 8 bytes per step.
 *
 *   h = SEED ^ size * K1
 *   for each 8-byte word w (native byte order; the last 1..7 bytes are
 *   zero-padded into one more word):
 *       m = w * K2;  m ^= m >> 31          (mix the word)
 *       h = (h ^ m) * K3;  h ^= h >> 29    (fold it into the state)
 *   finish: h ^= h >> 32; h *= K4; h ^= h >> 29
 *
 * Every step is a bijection of h for a fixed word (odd multipliers and
 * xorshifts are invertible mod 2^64), and the word mixer is a bijection of
 * w. So two inputs of the same length that differ in one byte (or in any
 * single word) always hash differently; inputs of different lengths start
 * from different seeds. Not cryptographic: it detects changed files, it
 * does not resist someone crafting collisions.
 */
#define HS_HASH_SEED 0x6a09e667f3bcc909ull
#define HS_HASH_K1 0x9e3779b97f4a7c15ull
#define HS_HASH_K2 0xbf58476d1ce4e5b9ull
#define HS_HASH_K3 0x94d049bb133111ebull
#define HS_HASH_K4 0xd6e8feb86659fd93ull

static uint64_t hash_step(uint64_t h, uint64_t w) {
  w *= HS_HASH_K2;
  w ^= w >> 31;
  h = (h ^ w) * HS_HASH_K3;
  return h ^ (h >> 29);
}

uint64_t hs_cache_next(hs_cache *c) {
  return __atomic_fetch_add(&c->next, 1, __ATOMIC_RELAXED);
}

uint64_t hs_hash(const void *data, size_t size) {
  const unsigned char *p = data;
  uint64_t h = HS_HASH_SEED ^ ((uint64_t)size * HS_HASH_K1);
  uint64_t w;
  size_t i = 0;

  for (; i + 8 <= size; i += 8) {
    memcpy(&w, p + i, 8);
    h = hash_step(h, w);
  }
  if (i < size) {
    w = 0;
    memcpy(&w, p + i, size - i);
    h = hash_step(h, w);
  }
  h ^= h >> 32;
  h *= HS_HASH_K4;
  return h ^ (h >> 29);
}

int hs_cache_adopt(hs_cache *c, const char *dir, uint64_t next,
                   hs_error *err) {
  struct stat st;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

  c->dir = NULL;
  c->dirfd = -1;
  c->next = next ? next : 1;
  if (fd < 0 || fstat(fd, &st) != 0) {
    int e = errno;
    if (fd >= 0)
      close(fd);
    return hs_error_set(err, -e, "cache",
                        "cannot open the cache %s handed over: %s", dir,
                        strerror(e));
  }
  if (st.st_uid != geteuid() || (st.st_mode & 07777) != 0700) {
    close(fd);
    return hs_error_set(err, HS_EACCES, "cache",
                        "the cache %s handed over is not a directory of ours "
                        "with mode 0700 (owner %ld, mode %04o)",
                        dir, (long)st.st_uid, (unsigned)(st.st_mode & 07777));
  }
  c->dir = strdup(dir);
  if (!c->dir) {
    close(fd);
    return hs_error_set(err, HS_ENOMEM, "cache", "out of memory");
  }
  c->dirfd = fd;
  return 0;
}
