/* test_cache.c - the private cache of plugin copies, and hs_hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"

#define FIXTURES HS_TEST_FIXTURES

/* Each test gets a source directory with counter.so (a copy of
 * counter_v1.so) and a cache created under it. */
typedef struct fx {
  char src[64];  /* the source directory */
  int srcfd;     /* O_DIRECTORY fd of src */
  hs_cache cache;
} fx;

static unsigned char *slurp(const char *path, size_t *size) {
  struct stat st;
  unsigned char *buf;
  int fd = open(path, O_RDONLY | O_CLOEXEC);

  assert_true(fd >= 0);
  assert_int_equal(fstat(fd, &st), 0);
  buf = malloc((size_t)st.st_size + 1);
  assert_non_null(buf);
  assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
  close(fd);
  *size = (size_t)st.st_size;
  return buf;
}

static void put_file(int dirfd, const char *name, const void *data,
                     size_t size) {
  int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

  assert_true(fd >= 0);
  assert_int_equal(write(fd, data, size), (ssize_t)size);
  close(fd);
}

static void put_fixture(int dirfd, const char *name, const char *fixture) {
  char path[512];
  size_t size;
  unsigned char *p;

  snprintf(path, sizeof(path), "%s/%s", FIXTURES, fixture);
  p = slurp(path, &size);
  put_file(dirfd, name, p, size);
  free(p);
}

/* A fixture with pad zero bytes after it (past the section headers: still
 * a valid object), to exceed what the cache reads into memory. */
static void put_padded(int dirfd, const char *name, const char *fixture,
                       size_t pad) {
  char path[512];
  size_t size;
  unsigned char *p;

  snprintf(path, sizeof(path), "%s/%s", FIXTURES, fixture);
  p = slurp(path, &size);
  p = realloc(p, size + pad);
  assert_non_null(p);
  memset(p + size, 0, pad);
  put_file(dirfd, name, p, size + pad);
  free(p);
}

#define BIG_PAD (5u << 20) /* over the 4 MiB the cache reads into memory */

/* Entries of a directory other than . and .., or -1 if it is gone. */
static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *de;
  int n = 0;

  if (d == NULL)
    return -1;
  while ((de = readdir(d)) != NULL)
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
      n++;
  closedir(d);
  return n;
}

/* Removes everything one level deep under dir, then dir. */
static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *de;
  char path[512];

  if (d == NULL)
    return;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
    if (unlink(path) != 0)
      remove_tree(path);
  }
  closedir(d);
  rmdir(dir);
}

static int setup(void **state) {
  fx *f = calloc(1, sizeof(*f));
  hs_error err;

  assert_non_null(f);
  snprintf(f->src, sizeof(f->src), "/tmp/hs-test-cache-XXXXXX");
  assert_non_null(mkdtemp(f->src));
  f->srcfd = open(f->src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true(f->srcfd >= 0);
  put_fixture(f->srcfd, "counter.so", "counter_v1.so");
  assert_int_equal(hs_cache_init(&f->cache, f->src, &err), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;

  hs_cache_close(&f->cache);
  close(f->srcfd);
  remove_tree(f->src);
  free(f);
  return 0;
}

static void assert_same_bytes(const char *a, const char *b) {
  size_t na, nb;
  unsigned char *pa = slurp(a, &na), *pb = slurp(b, &nb);

  assert_int_equal(na, nb);
  assert_memory_equal(pa, pb, na);
  free(pa);
  free(pb);
}

static void test_cache_init_makes_private_dir(void **state) {
  fx *f = *state;
  struct stat st;
  char prefix[128];

  assert_int_equal(stat(f->cache.dir, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(st.st_mode & 07777, 0700);
  assert_int_equal(st.st_uid, geteuid());
  snprintf(prefix, sizeof(prefix), "%s/hotswap-%ld-", f->src, (long)getpid());
  assert_int_equal(strncmp(f->cache.dir, prefix, strlen(prefix)), 0);
  assert_int_equal(strlen(f->cache.dir), strlen(prefix) + 6);
  assert_int_equal(count_entries(f->cache.dir), 0);
}

static void test_cache_init_fails_without_parent(void **state) {
  hs_cache c;
  hs_error err;

  (void)state;
  hs_error_clear(&err);
  assert_int_equal(hs_cache_init(&c, "/nonexistent/hotswap-test", &err),
                   HS_ENOENT);
  assert_string_equal(err.stage, "cache");
  assert_non_null(strstr(err.msg, "/nonexistent/hotswap-test"));
  hs_cache_close(&c); /* harmless after a failed init */
}

static void test_cache_add_copies_file(void **state) {
  fx *f = *state;
  hs_cache_file cf;
  hs_error err;
  char src[512], want[512];
  size_t size;
  unsigned char *p;

  assert_int_equal(hs_cache_add(&f->cache, f->srcfd, "counter.so", &cf, &err),
                   0);
  snprintf(want, sizeof(want), "%s/counter.1.so", f->cache.dir);
  assert_string_equal(cf.path, want);
  snprintf(src, sizeof(src), "%s/counter.so", f->src);
  assert_same_bytes(src, cf.path);
  p = slurp(src, &size);
  assert_int_equal(cf.size, size);
  assert_int_equal(cf.hash, hs_hash(p, size));
  free(p);
  hs_cache_file_free(&cf);
  assert_null(cf.path);
  assert_int_equal(count_entries(f->cache.dir), 1); /* free keeps the file */
}

/* A file too large to read into memory is copied in the kernel and
 * mapped to be inspected: same bytes, same hash. */
static void test_cache_add_copies_large_file(void **state) {
  fx *f = *state;
  hs_cache_file cf;
  hs_error err;
  char src[512];
  size_t size;
  unsigned char *p;

  put_padded(f->srcfd, "big.so", "counter_v1.so", BIG_PAD);
  assert_int_equal(hs_cache_add(&f->cache, f->srcfd, "big.so", &cf, &err), 0);
  snprintf(src, sizeof(src), "%s/big.so", f->src);
  assert_same_bytes(src, cf.path);
  p = slurp(src, &size);
  assert_true(size > BIG_PAD);
  assert_int_equal(cf.size, size);
  assert_int_equal(cf.hash, hs_hash(p, size));
  free(p);
  hs_cache_remove(&f->cache, &cf);
}

static void test_cache_hash_equal_for_equal_content(void **state) {
  fx *f = *state;
  hs_cache_file a, b;
  hs_error err;

  put_fixture(f->srcfd, "again.so", "counter_v1.so");
  assert_int_equal(hs_cache_add(&f->cache, f->srcfd, "counter.so", &a, &err),
                   0);
  assert_int_equal(hs_cache_add(&f->cache, f->srcfd, "again.so", &b, &err), 0);
  assert_string_not_equal(a.path, b.path);
  assert_int_equal(a.hash, b.hash);
  hs_cache_remove(&f->cache, &a);
  hs_cache_remove(&f->cache, &b);
}

static void test_cache_hash_differs_for_different_content(void **state) {
  fx *f = *state;
  hs_cache_file a, b, c;
  hs_error err;
  char path[512];
  size_t size;
  unsigned char *p;

  /* Another build of the plugin. */
  put_fixture(f->srcfd, "other.so", "counter_v1b.so");
  /* The same bytes but one, past the ELF and program headers. */
  snprintf(path, sizeof(path), "%s/counter.so", f->src);
  p = slurp(path, &size);
  p[size / 2] ^= 0x01;
  put_file(f->srcfd, "onebyte.so", p, size);
  free(p);

  assert_int_equal(hs_cache_add(&f->cache, f->srcfd, "counter.so", &a, &err),
                   0);
  assert_int_equal(hs_cache_add(&f->cache, f->srcfd, "other.so", &b, &err), 0);
  assert_int_equal(hs_cache_add(&f->cache, f->srcfd, "onebyte.so", &c, &err),
                   0);
  assert_int_not_equal(a.hash, b.hash);
  assert_int_not_equal(a.hash, c.hash);
  hs_cache_remove(&f->cache, &a);
  hs_cache_remove(&f->cache, &b);
  hs_cache_remove(&f->cache, &c);
}

/* Same length, one byte different anywhere (also in the zero-padded tail):
 * the hash must differ. Different lengths of zeros must differ too. */
static void test_cache_hash_sees_every_byte(void **state) {
  unsigned char buf[67], zeros[67] = {0};

  (void)state;
  for (size_t i = 0; i < sizeof(buf); i++)
    buf[i] = (unsigned char)(i * 7 + 1);
  for (size_t len = 1; len <= sizeof(buf); len++) {
    uint64_t h = hs_hash(buf, len);
    for (size_t i = 0; i < len; i++) {
      for (unsigned bit = 0; bit < 8; bit++) {
        buf[i] ^= (unsigned char)(1u << bit);
        assert_int_not_equal(hs_hash(buf, len), h);
        buf[i] ^= (unsigned char)(1u << bit);
      }
    }
    assert_int_equal(hs_hash(buf, len), h);
    assert_int_not_equal(hs_hash(zeros, len), hs_hash(zeros, len - 1));
  }
}

static void test_cache_names_never_reused(void **state) {
  fx *f = *state;
  hs_cache_file cf;
  hs_error err;
  char want[512];

  for (int i = 1; i <= 3; i++) {
    assert_int_equal(
        hs_cache_add(&f->cache, f->srcfd, "counter.so", &cf, &err), 0);
    snprintf(want, sizeof(want), "%s/counter.%d.so", f->cache.dir, i);
    assert_string_equal(cf.path, want);
    hs_cache_remove(&f->cache, &cf); /* a free number is not handed out */
    assert_null(cf.path);
    assert_int_equal(count_entries(f->cache.dir), 0);
  }
  /* A failed add uses up its number too. */
  put_file(f->srcfd, "text.so", "not elf", 7);
  assert_int_equal(hs_cache_add(&f->cache, f->srcfd, "text.so", &cf, &err),
                   HS_ENOTELF);
  assert_int_equal(hs_cache_add(&f->cache, f->srcfd, "counter.so", &cf, &err),
                   0);
  snprintf(want, sizeof(want), "%s/counter.5.so", f->cache.dir);
  assert_string_equal(cf.path, want);
  hs_cache_remove(&f->cache, &cf);
}

static void test_cache_copy_survives_source_overwrite(void **state) {
  fx *f = *state;
  hs_cache_file cf;
  hs_error err;
  char src[512], orig[512];
  size_t size;
  unsigned char *copy, *junk;
  int fd;

  assert_int_equal(hs_cache_add(&f->cache, f->srcfd, "counter.so", &cf, &err),
                   0);
  snprintf(src, sizeof(src), "%s/counter.so", f->src);
  snprintf(orig, sizeof(orig), "%s/counter_v1.so", FIXTURES);
  /* Overwrite in place: same inode, new bytes, then a shorter length. */
  junk = slurp(src, &size);
  memset(junk, 0xa5, size);
  fd = open(src, O_WRONLY | O_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, junk, size, 0), (ssize_t)size);
  assert_int_equal(ftruncate(fd, (off_t)size / 3), 0);
  close(fd);
  free(junk);

  assert_same_bytes(orig, cf.path);
  copy = slurp(cf.path, &size);
  assert_int_equal(hs_hash(copy, size), cf.hash);
  free(copy);
  hs_cache_file_free(&cf);
}

/* A source on another file system (/dev/shm): copy_file_range may refuse
 * with EXDEV and the copy falls back to read/write. */
static void test_cache_copies_across_file_systems(void **state) {
  fx *f = *state;
  char dir[] = "/dev/shm/hs-test-cache-XXXXXX", src[512];
  struct stat a, b;
  hs_cache_file cf;
  hs_error err;
  int dirfd;

  if (mkdtemp(dir) == NULL)
    skip();
  if (stat(dir, &a) != 0 || stat(f->cache.dir, &b) != 0 ||
      a.st_dev == b.st_dev) {
    rmdir(dir);
    skip();
  }
  dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true(dirfd >= 0);
  put_fixture(dirfd, "counter.so", "counter_v1.so");
  assert_int_equal(hs_cache_add(&f->cache, dirfd, "counter.so", &cf, &err),
                   0);
  snprintf(src, sizeof(src), "%s/counter.so", dir);
  assert_same_bytes(src, cf.path);
  hs_cache_remove(&f->cache, &cf);
  /* A large one goes through copy_file_range, which cannot cross. */
  put_padded(dirfd, "big.so", "counter_v1.so", BIG_PAD);
  assert_int_equal(hs_cache_add(&f->cache, dirfd, "big.so", &cf, &err), 0);
  snprintf(src, sizeof(src), "%s/big.so", dir);
  assert_same_bytes(src, cf.path);
  hs_cache_remove(&f->cache, &cf);
  close(dirfd);
  remove_tree(dir);
}

static void expect_refused(fx *f, const char *name, int code,
                           const char *stage, const char *msg) {
  hs_cache_file cf;
  hs_error err;

  hs_error_clear(&err);
  memset(&cf, 0x5a, sizeof(cf));
  assert_int_equal(hs_cache_add(&f->cache, f->srcfd, name, &cf, &err), code);
  assert_int_equal(err.code, code);
  assert_string_equal(err.stage, stage);
  assert_string_equal(err.msg, msg);
  assert_null(cf.path);
  assert_int_equal(count_entries(f->cache.dir), 0);
}

static void test_cache_refuses_symlink(void **state) {
  fx *f = *state;

  assert_int_equal(symlinkat("counter.so", f->srcfd, "link.so"), 0);
  expect_refused(f, "link.so", HS_EINVAL, "copy",
                 "link.so is not a regular file (a symbolic link; links are "
                 "not followed)");
}

/* A file (or directory) other users could write is not copied, unless
 * allow_insecure; the message names the whole path and the fix. */
static void test_cache_refuses_what_others_could_write(void **state) {
  fx *f = *state;
  hs_cache_file cf;
  hs_error err;
  char msg[512];

  assert_int_equal(fchmodat(f->srcfd, "counter.so", 0666, 0), 0);
  snprintf(msg, sizeof(msg),
           "%s/counter.so is writable by other users (mode 0666): they "
           "could change the code hotswap runs; chmod go-w %s/counter.so "
           "(or start hotswap with --allow-insecure)",
           f->src, f->src);
  expect_refused(f, "counter.so", HS_EINSECURE, "copy", msg);
  assert_int_equal(fchmodat(f->srcfd, "counter.so", 0644, 0), 0);
  assert_int_equal(chmod(f->src, 0777), 0);
  snprintf(msg, sizeof(msg),
           "%s is writable by other users (mode 0777): they could change "
           "the code hotswap runs; chmod go-w %s (or start hotswap with "
           "--allow-insecure)",
           f->src, f->src);
  expect_refused(f, "counter.so", HS_EINSECURE, "copy", msg);
  f->cache.allow_insecure = 1;
  assert_int_equal(hs_cache_add(&f->cache, f->srcfd, "counter.so", &cf, &err),
                   0);
  hs_cache_remove(&f->cache, &cf);
  assert_int_equal(chmod(f->src, 0700), 0);
}

static void test_cache_refuses_directory(void **state) {
  fx *f = *state;

  assert_int_equal(mkdirat(f->srcfd, "dir.so", 0700), 0);
  expect_refused(f, "dir.so", HS_EINVAL, "copy",
                 "dir.so is not a regular file (a directory)");
}

static void test_cache_refuses_fifo_without_blocking(void **state) {
  fx *f = *state;

  assert_int_equal(mkfifoat(f->srcfd, "fifo.so", 0600), 0);
  expect_refused(f, "fifo.so", HS_EINVAL, "copy",
                 "fifo.so is not a regular file");
}

static void test_cache_reports_missing_file(void **state) {
  fx *f = *state;

  expect_refused(f, "missing.so", HS_ENOENT, "copy",
                 "cannot open missing.so: No such file or directory");
}

static void test_cache_rejects_non_elf(void **state) {
  fx *f = *state;
  size_t size;
  unsigned char *p;
  char path[512], msg[256];

  put_file(f->srcfd, "text.so", "#!/bin/sh\nexit 0\n", 17);
  expect_refused(f, "text.so", HS_ENOTELF, "elf",
                 "text.so is not an ELF file");
  put_file(f->srcfd, "empty.so", "", 0);
  expect_refused(f, "empty.so", HS_ENOTELF, "elf",
                 "empty.so is not an ELF file");

  snprintf(path, sizeof(path), "%s/counter.so", f->src);
  p = slurp(path, &size);
  put_file(f->srcfd, "half.so", p, size / 2);
  free(p);
  snprintf(msg, sizeof(msg),
           "half.so is truncated: it has %zu bytes, its ELF headers need %zu",
           size / 2, size);
  expect_refused(f, "half.so", HS_ETRUNCATED, "elf", msg);
}

static void test_cache_close_removes_everything(void **state) {
  fx *f = *state;
  hs_cache_file a, b;
  hs_error err;
  char *dir;

  assert_int_equal(hs_cache_add(&f->cache, f->srcfd, "counter.so", &a, &err),
                   0);
  assert_int_equal(hs_cache_add(&f->cache, f->srcfd, "counter.so", &b, &err),
                   0);
  assert_int_equal(count_entries(f->cache.dir), 2);
  dir = strdup(f->cache.dir);
  assert_non_null(dir);
  hs_cache_close(&f->cache);
  assert_null(f->cache.dir);
  assert_int_equal(access(dir, F_OK), -1);
  assert_int_equal(errno, ENOENT);
  hs_cache_close(&f->cache); /* harmless twice */
  hs_cache_file_free(&a);
  hs_cache_file_free(&b);
  free(dir);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_cache_init_makes_private_dir),
      cmocka_unit_test(test_cache_init_fails_without_parent),
      T(test_cache_add_copies_file),
      T(test_cache_add_copies_large_file),
      T(test_cache_hash_equal_for_equal_content),
      T(test_cache_hash_differs_for_different_content),
      cmocka_unit_test(test_cache_hash_sees_every_byte),
      T(test_cache_names_never_reused),
      T(test_cache_copy_survives_source_overwrite),
      T(test_cache_copies_across_file_systems),
      T(test_cache_refuses_symlink),
      T(test_cache_refuses_what_others_could_write),
      T(test_cache_refuses_directory),
      T(test_cache_refuses_fifo_without_blocking),
      T(test_cache_reports_missing_file),
      T(test_cache_rejects_non_elf),
      T(test_cache_close_removes_everything),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
