/* test_elf.c - hs_elf_check on a real plugin and on broken copies of it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <linux/elf.h> /* <elf.h> would find host/elf.h */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elf.h"

#define FIXTURE HS_TEST_FIXTURES "/counter_v1.so"

#if defined(__x86_64__)
#define HOST_MACHINE "x86-64"
#elif defined(__aarch64__)
#define HOST_MACHINE "AArch64"
#elif defined(__riscv)
#define HOST_MACHINE "RISC-V"
#endif

/* Reads a whole file into a malloc'd buffer. */
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

static Elf64_Ehdr ehdr_of(const unsigned char *p) {
  Elf64_Ehdr eh;
  memcpy(&eh, p, sizeof(eh));
  return eh;
}

/* The bytes the headers of a well-formed image claim: the program and
 * section header tables and every PT_LOAD segment's file bytes. */
static uint64_t headers_need(const unsigned char *p, uint64_t *tables) {
  Elf64_Ehdr eh = ehdr_of(p);
  uint64_t ph_end = eh.e_phoff + (uint64_t)eh.e_phnum * eh.e_phentsize;
  uint64_t sh_end = eh.e_shoff + (uint64_t)eh.e_shnum * eh.e_shentsize;
  uint64_t need = ph_end > sh_end ? ph_end : sh_end;

  *tables = need;
  for (unsigned i = 0; i < eh.e_phnum; i++) {
    Elf64_Phdr ph;
    memcpy(&ph, p + eh.e_phoff + i * eh.e_phentsize, sizeof(ph));
    if (ph.p_type == PT_LOAD && ph.p_offset + ph.p_filesz > need)
      need = ph.p_offset + ph.p_filesz;
  }
  return need;
}

static void expect_error(const void *data, size_t size, int code,
                         const char *msg) {
  hs_error err;

  hs_error_clear(&err);
  assert_int_equal(hs_elf_check(data, size, "counter.so", &err), code);
  assert_int_equal(err.code, code);
  assert_string_equal(err.stage, "elf");
  assert_string_equal(err.msg, msg);
}

static void test_elf_accepts_fixture(void **state) {
  size_t size;
  unsigned char *p = slurp(FIXTURE, &size);
  hs_error err;

  (void)state;
  hs_error_clear(&err);
  assert_int_equal(hs_elf_check(p, size, "counter.so", &err), 0);
  assert_int_equal(err.code, 0);
  free(p);
}

/* A PIE executable is ET_DYN like a shared object: the header check lets
 * it pass and leaves refusing it to the dynamic loader (see test_dl). */
static void test_elf_accepts_pie_executable(void **state) {
  size_t size;
  unsigned char *p = slurp("/proc/self/exe", &size);

  (void)state;
  if (ehdr_of(p).e_type != ET_DYN) {
    free(p);
    skip();
  }
  assert_int_equal(hs_elf_check(p, size, "self", NULL), 0);
  free(p);
}

static void test_elf_rejects_text(void **state) {
  static const char text[] =
      "#!/bin/sh\necho this is a shell script, long enough to have a header "
      "if it were an ELF file\n";

  (void)state;
  expect_error(text, sizeof(text), HS_ENOTELF,
               "counter.so is not an ELF file");
}

static void test_elf_rejects_short_file(void **state) {
  size_t size;
  unsigned char *p = slurp(FIXTURE, &size);

  (void)state;
  expect_error(p, 0, HS_ENOTELF, "counter.so is not an ELF file");
  expect_error(NULL, 0, HS_ENOTELF, "counter.so is not an ELF file");
  expect_error(p, 4, HS_ENOTELF, "counter.so is not an ELF file");
  expect_error(p, sizeof(Elf64_Ehdr) - 1, HS_ENOTELF,
               "counter.so is not an ELF file");
  free(p);
}

static void test_elf_rejects_executable(void **state) {
  size_t size;
  unsigned char *p = slurp(FIXTURE, &size);
  uint16_t type = ET_EXEC;

  (void)state;
  memcpy(p + offsetof(Elf64_Ehdr, e_type), &type, sizeof(type));
  expect_error(p, size, HS_ENOTELF,
               "counter.so is an ELF executable, not a shared object");
  type = ET_REL;
  memcpy(p + offsetof(Elf64_Ehdr, e_type), &type, sizeof(type));
  expect_error(p, size, HS_ENOTELF,
               "counter.so is an ELF relocatable object, not a shared object");
  free(p);
}

#ifdef HOST_MACHINE
static void test_elf_rejects_other_machine(void **state) {
  size_t size;
  unsigned char *p = slurp(FIXTURE, &size);
  uint16_t machine = EM_AARCH64;

  (void)state;
#ifdef __aarch64__
  machine = EM_X86_64;
#endif
  memcpy(p + offsetof(Elf64_Ehdr, e_machine), &machine, sizeof(machine));
#ifdef __aarch64__
  expect_error(p, size, HS_EELFARCH,
               "counter.so is built for x86-64; this host is AArch64");
#else
  expect_error(p, size, HS_EELFARCH,
               "counter.so is built for AArch64; this host is " HOST_MACHINE);
#endif
  machine = 4242;
  memcpy(p + offsetof(Elf64_Ehdr, e_machine), &machine, sizeof(machine));
  expect_error(p, size, HS_EELFARCH,
               "counter.so is built for machine 4242; this host is "
               HOST_MACHINE);
  free(p);
}

static void test_elf_rejects_other_class(void **state) {
  size_t size;
  unsigned char *p = slurp(FIXTURE, &size);

  (void)state;
  p[EI_CLASS] = ELFCLASS32;
  expect_error(p, size, HS_EELFARCH,
               "counter.so is built for " HOST_MACHINE
               " 32-bit little-endian; this host is " HOST_MACHINE
               " 64-bit little-endian");
  free(p);
}
#endif

static void test_elf_rejects_truncated(void **state) {
  size_t size;
  unsigned char *p = slurp(FIXTURE, &size);
  uint64_t tables, need = headers_need(p, &tables);
  Elf64_Ehdr eh = ehdr_of(p);
  uint64_t ph_end = eh.e_phoff + (uint64_t)eh.e_phnum * eh.e_phentsize;
  size_t cuts[] = {sizeof(Elf64_Ehdr), (size_t)ph_end - 1, (size_t)ph_end,
                   size / 2, size - 1};
  char msg[256];

  (void)state;
  assert_true(need <= size);
  for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
    /* A cut inside the program headers hides the segments. */
    uint64_t want = cuts[i] < ph_end ? tables : need;
    if (cuts[i] >= need)
      continue; /* nothing the headers claim was cut */
    snprintf(msg, sizeof(msg),
             "counter.so is truncated: it has %zu bytes, its ELF headers "
             "need %llu",
             cuts[i], (unsigned long long)want);
    expect_error(p, cuts[i], HS_ETRUNCATED, msg);
  }
  free(p);
}

static void test_elf_rejects_segment_past_end(void **state) {
  size_t size;
  unsigned char *p = slurp(FIXTURE, &size);
  Elf64_Ehdr eh = ehdr_of(p);
  char msg[256];

  (void)state;
  for (unsigned i = 0; i < eh.e_phnum; i++) {
    unsigned char *at = p + eh.e_phoff + i * eh.e_phentsize;
    Elf64_Phdr ph;
    memcpy(&ph, at, sizeof(ph));
    if (ph.p_type != PT_LOAD)
      continue;
    ph.p_filesz = size; /* from p_offset, certainly past the end */
    memcpy(at, &ph, sizeof(ph));
    snprintf(msg, sizeof(msg),
             "counter.so is truncated: it has %zu bytes, its ELF headers "
             "need %llu",
             size, (unsigned long long)(ph.p_offset + size));
    if (ph.p_offset > 0) {
      expect_error(p, size, HS_ETRUNCATED, msg);
      free(p);
      return;
    }
    /* p_offset 0 plus size is exactly the file: try the next one. */
    assert_int_equal(hs_elf_check(p, size, "counter.so", NULL), 0);
  }
  fail_msg("no PT_LOAD segment with a non-zero offset");
}

static void test_elf_rejects_overflowing_offsets(void **state) {
  size_t size;
  unsigned char *p = slurp(FIXTURE, &size);
  Elf64_Ehdr eh = ehdr_of(p);
  char msg[256];

  (void)state;
  eh.e_shoff = UINT64_MAX - 8; /* e_shoff + e_shnum * e_shentsize wraps */
  memcpy(p, &eh, sizeof(eh));
  snprintf(msg, sizeof(msg),
           "counter.so is truncated: it has %zu bytes, its ELF headers point "
           "beyond 2^64",
           size);
  expect_error(p, size, HS_ETRUNCATED, msg);

  eh = ehdr_of(p);
  eh.e_shoff = 0;
  eh.e_phoff = UINT64_MAX - 8;
  memcpy(p, &eh, sizeof(eh));
  expect_error(p, size, HS_ETRUNCATED, msg);
  free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_elf_accepts_fixture),
      cmocka_unit_test(test_elf_accepts_pie_executable),
      cmocka_unit_test(test_elf_rejects_text),
      cmocka_unit_test(test_elf_rejects_short_file),
      cmocka_unit_test(test_elf_rejects_executable),
#ifdef HOST_MACHINE
      cmocka_unit_test(test_elf_rejects_other_machine),
      cmocka_unit_test(test_elf_rejects_other_class),
#endif
      cmocka_unit_test(test_elf_rejects_truncated),
      cmocka_unit_test(test_elf_rejects_segment_past_end),
      cmocka_unit_test(test_elf_rejects_overflowing_offsets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
