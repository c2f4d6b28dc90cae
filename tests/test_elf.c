/* test_elf.c - hs_elf_check and hs_elf_pins on real plugins and on broken
 * copies of them. */
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

/* ---- hs_elf_pins ------------------------------------------------------- */

#define PINS_NODELETE                                                          \
  "it is marked NODELETE (DF_1_NODELETE, from linking with -z nodelete), "     \
  "so dlclose never unmaps it; link it without -z nodelete"
#define PINS_UNIQUE(sym)                                                       \
  "it defines the STB_GNU_UNIQUE symbol " sym ", which is never unloaded (a "  \
  "C++ inline or template static; build with -fno-gnu-unique)"
#define PINS_THREAD_LOCAL                                                      \
  "it has thread_local objects with destructors (__cxa_thread_atexit), and "   \
  "glibc keeps it mapped once one of them is constructed; use thread_local "   \
  "only for types with trivial destructors"

/* A C++ fixture's path, or a skip when the build has no C++ fixtures
 * (HOTSWAP_EXAMPLE_CXX off, or no C++ compiler). */
static const char *cxx_fixture(const char *name) {
  static char path[512];
  snprintf(path, sizeof(path), "%s/%s.so", HS_TEST_FIXTURES, name);
#ifndef HS_TEST_CXX_FIXTURES
  if (access(path, R_OK) != 0) {
    fprintf(stderr, "no C++ fixtures in this build: skipped\n");
    return NULL;
  }
#endif
  return path;
}

/* A copy of p[0..size) in an allocation of exactly size bytes, so that
 * ASan sees any read past the end. */
static unsigned char *exact_copy(const unsigned char *p, size_t size) {
  unsigned char *q = malloc(size ? size : 1);
  assert_non_null(q);
  memcpy(q, p, size);
  return q;
}

/* Runs hs_elf_pins and checks that why is a string inside its buffer. */
static int pins_of(const unsigned char *p, size_t size, char *why,
                   size_t len) {
  int rc;

  memset(why, 'x', len);
  rc = hs_elf_pins(p, size, why, len);
  assert_true(rc == 0 || rc == 1);
  assert_non_null(memchr(why, '\0', len));
  if (rc == 0)
    assert_string_equal(why, "");
  return rc;
}

static void expect_pins(const char *path, int want, const char *why_want) {
  size_t size;
  unsigned char *p = slurp(path, &size);
  unsigned char *q = exact_copy(p, size);
  char why[200];

  assert_int_equal(pins_of(q, size, why, sizeof(why)), want);
  assert_string_equal(why, why_want);
  free(q);
  free(p);
}

/* The Elf64_Sym of name in .dynsym, as an offset into p; 0 if none. */
static size_t dynsym_offset(const unsigned char *p, const char *name) {
  Elf64_Ehdr eh = ehdr_of(p);

  for (unsigned i = 0; i < eh.e_shnum; i++) {
    Elf64_Shdr sh, str;
    memcpy(&sh, p + eh.e_shoff + i * eh.e_shentsize, sizeof(sh));
    if (sh.sh_type != SHT_DYNSYM)
      continue;
    memcpy(&str, p + eh.e_shoff + sh.sh_link * eh.e_shentsize, sizeof(str));
    for (uint64_t off = 0; off + sizeof(Elf64_Sym) <= sh.sh_size;
         off += sizeof(Elf64_Sym)) {
      Elf64_Sym s;
      memcpy(&s, p + sh.sh_offset + off, sizeof(s));
      if (strcmp((const char *)p + str.sh_offset + s.st_name, name) == 0)
        return sh.sh_offset + off;
    }
  }
  return 0;
}

/* The section header of the first section of type, as an offset. */
static size_t section_offset(const unsigned char *p, uint32_t type) {
  Elf64_Ehdr eh = ehdr_of(p);

  for (unsigned i = 0; i < eh.e_shnum; i++) {
    Elf64_Shdr sh;
    size_t at = eh.e_shoff + i * eh.e_shentsize;
    memcpy(&sh, p + at, sizeof(sh));
    if (sh.sh_type == type)
      return at;
  }
  fail_msg("no section of type %u", (unsigned)type);
  return 0;
}

static void test_elf_pins_nothing_in_c_plugin(void **state) {
  (void)state;
  expect_pins(FIXTURE, 0, "");
}

static void test_elf_pins_nothing_in_cpp_example(void **state) {
  const char *path = cxx_fixture("cpp_counter_v1");

  (void)state;
  if (path == NULL)
    skip();
  /* Built with -fno-gnu-unique: a C++ library that unloads. */
  expect_pins(path, 0, "");
}

static void test_elf_pins_nodelete(void **state) {
  (void)state;
  expect_pins(HS_TEST_FIXTURES "/counter_v1_nodelete.so", 1, PINS_NODELETE);
}

static void test_elf_pins_gnu_unique(void **state) {
  const char *path = cxx_fixture("pinned_unique");
  unsigned char *p, *q;
  size_t size;
  char why[200];

  (void)state;
  if (path == NULL)
    skip();
  p = slurp(path, &size);
  q = exact_copy(p, size);
  assert_int_equal(pins_of(q, size, why, sizeof(why)), 1);
  /* Whichever of the two comes first in .dynsym; a nested name is shown
   * demangled, a template's raw. */
  if (strcmp(why, PINS_UNIQUE("fx_hits::count")) != 0)
    assert_string_equal(why, PINS_UNIQUE("_ZN8fx_totalImE5valueE"));
  free(q);
  free(p);
}

static void test_elf_pins_thread_local(void **state) {
  const char *path = cxx_fixture("pinned_tls");

  (void)state;
  if (path == NULL)
    skip();
  expect_pins(path, 1, PINS_THREAD_LOCAL);
}

/* Rust's std and a static libstdc++ reference __cxa_thread_atexit_impl
 * weakly in every library: that alone pins nothing. */
static void test_elf_pins_ignores_weak_thread_atexit(void **state) {
  const char *path = cxx_fixture("pinned_tls");
  unsigned char *p;
  size_t size, at;
  Elf64_Sym s;
  char why[200];

  (void)state;
  if (path == NULL)
    skip();
  p = slurp(path, &size);
  at = dynsym_offset(p, "__cxa_thread_atexit");
  assert_true(at != 0);
  memcpy(&s, p + at, sizeof(s));
  assert_int_equal(ELF64_ST_BIND(s.st_info), STB_GLOBAL);
  s.st_info = (unsigned char)(STB_WEAK << 4 | ELF64_ST_TYPE(s.st_info));
  memcpy(p + at, &s, sizeof(s));
  assert_int_equal(pins_of(p, size, why, sizeof(why)), 0);
  free(p);
}

static void test_elf_pins_cuts_why_to_len(void **state) {
  size_t size;
  unsigned char *p = slurp(HS_TEST_FIXTURES "/counter_v1_nodelete.so", &size);
  char why[12];

  (void)state;
  assert_int_equal(pins_of(p, size, why, sizeof(why)), 1);
  assert_string_equal(why, "it is marke");
  assert_int_equal(hs_elf_pins(p, size, NULL, 0), 1);
  free(p);
}

static void test_elf_pins_nothing_in_non_elf(void **state) {
  static const char text[] = "not an ELF file, but long enough to hold the "
                             "64 bytes of an ELF header and then some";
  size_t size;
  unsigned char *p = slurp(HS_TEST_FIXTURES "/counter_v1_nodelete.so", &size);
  char why[200];

  (void)state;
  assert_int_equal(pins_of((const unsigned char *)text, sizeof(text), why,
                           sizeof(why)),
                   0);
  assert_int_equal(hs_elf_pins(NULL, 0, why, sizeof(why)), 0);
  assert_int_equal(pins_of(p, 0, why, sizeof(why)), 0);
  p[EI_CLASS] = ELFCLASS32; /* parsed as Elf64 only */
  assert_int_equal(pins_of(p, size, why, sizeof(why)), 0);
  free(p);
}

/* Every fixture cut short at many lengths, each in an allocation of
 * exactly that size: no read past the end, and a verdict every time. */
static void test_elf_pins_survives_truncation(void **state) {
  const char *paths[] = {FIXTURE, HS_TEST_FIXTURES "/counter_v1_nodelete.so",
                         cxx_fixture("pinned_unique"),
                         cxx_fixture("pinned_tls")};
  char why[200];

  (void)state;
  for (size_t f = 0; f < sizeof(paths) / sizeof(paths[0]); f++) {
    size_t size;
    unsigned char *p;
    if (paths[f] == NULL)
      continue;
    p = slurp(paths[f], &size);
    for (size_t cut = 0; cut < size; cut += cut < 256 ? 1 : 61) {
      unsigned char *q = exact_copy(p, cut);
      pins_of(q, cut, why, sizeof(why));
      free(q);
    }
    free(p);
  }
}

/* A small deterministic generator for the corruption test. */
static uint64_t next_random(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

/* Header fields set to hostile values, one at a time, then random bytes
 * written over the tables the function reads. Never a crash, never a read
 * outside the buffer (ASan), always a verdict. */
static void test_elf_pins_survives_corruption(void **state) {
  const char *path = cxx_fixture("pinned_unique");
  size_t size;
  unsigned char *p, *q;
  uint64_t rnd = 0x9e3779b97f4a7c15ull;
  char why[200];

  (void)state;
  if (path == NULL)
    path = FIXTURE;
  p = slurp(path, &size);
  Elf64_Ehdr eh = ehdr_of(p);
  size_t dynsym = section_offset(p, SHT_DYNSYM);
  Elf64_Shdr sym;
  memcpy(&sym, p + dynsym, sizeof(sym));
  size_t dynstr = eh.e_shoff + sym.sh_link * eh.e_shentsize;
  static const uint64_t hostile[] = {0,          1,          7,
                                     0x7fffffff, 0xffffffff, UINT64_MAX,
                                     UINT64_MAX - 7};
  struct {
    size_t at, width;
  } fields[] = {
      {offsetof(Elf64_Ehdr, e_phoff), 8},
      {offsetof(Elf64_Ehdr, e_shoff), 8},
      {offsetof(Elf64_Ehdr, e_phentsize), 2},
      {offsetof(Elf64_Ehdr, e_phnum), 2},
      {offsetof(Elf64_Ehdr, e_shentsize), 2},
      {offsetof(Elf64_Ehdr, e_shnum), 2},
      {dynsym + offsetof(Elf64_Shdr, sh_offset), 8},
      {dynsym + offsetof(Elf64_Shdr, sh_size), 8},
      {dynsym + offsetof(Elf64_Shdr, sh_link), 4},
      {dynsym + offsetof(Elf64_Shdr, sh_entsize), 8},
      {dynstr + offsetof(Elf64_Shdr, sh_offset), 8},
      {dynstr + offsetof(Elf64_Shdr, sh_size), 8},
  };

  for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
    for (size_t v = 0; v < sizeof(hostile) / sizeof(hostile[0]); v++) {
      q = exact_copy(p, size);
      memcpy(q + fields[f].at, &hostile[v], fields[f].width);
      pins_of(q, size, why, sizeof(why));
      free(q);
    }
  }
  /* Extended numbering pointing at a section header 0 full of garbage. */
  q = exact_copy(p, size);
  eh.e_phnum = PN_XNUM;
  eh.e_shnum = 0;
  memcpy(q, &eh, sizeof(eh));
  for (size_t i = 0; i < sizeof(Elf64_Shdr); i++)
    q[eh.e_shoff + i] = 0xff;
  pins_of(q, size, why, sizeof(why));
  free(q);
  /* Random bytes over the headers, the dynamic segment and the symbol
   * tables (everything the function reads). */
  eh = ehdr_of(p);
  size_t regions[][2] = {
      {0, sizeof(Elf64_Ehdr)},
      {eh.e_phoff, (size_t)eh.e_phnum * eh.e_phentsize},
      {eh.e_shoff, (size_t)eh.e_shnum * eh.e_shentsize},
      {sym.sh_offset, sym.sh_size},
  };
  for (int round = 0; round < 3000; round++) {
    q = exact_copy(p, size);
    for (int k = 0; k < 4; k++) {
      size_t r = next_random(&rnd) % (sizeof(regions) / sizeof(regions[0]));
      if (regions[r][1] == 0)
        continue;
      size_t at = regions[r][0] + next_random(&rnd) % regions[r][1];
      if (at < size)
        q[at] = (unsigned char)next_random(&rnd);
    }
    /* Keep the magic, class and byte order, so the parser goes on. */
    memcpy(q, p, EI_NIDENT);
    pins_of(q, size, why, sizeof(why));
    free(q);
  }
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
      cmocka_unit_test(test_elf_pins_nothing_in_c_plugin),
      cmocka_unit_test(test_elf_pins_nothing_in_cpp_example),
      cmocka_unit_test(test_elf_pins_nodelete),
      cmocka_unit_test(test_elf_pins_gnu_unique),
      cmocka_unit_test(test_elf_pins_thread_local),
      cmocka_unit_test(test_elf_pins_ignores_weak_thread_atexit),
      cmocka_unit_test(test_elf_pins_cuts_why_to_len),
      cmocka_unit_test(test_elf_pins_nothing_in_non_elf),
      cmocka_unit_test(test_elf_pins_survives_truncation),
      cmocka_unit_test(test_elf_pins_survives_corruption),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
