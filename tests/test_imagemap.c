/*
 * test_imagemap.c - where a loaded plugin lies, by section: the ranges of
 * a real fixture opened here, their text form for the validator, the scan
 * of a state for pointers into them and the rejection it leads to, and
 * the bytes an image keeps mapped before and after dlclose.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotswap.h"
#include "imagemap.h"

#define FIXTURE(name) HS_TEST_FIXTURES "/" name ".so"

/* The range called name, or NULL. */
static const hs_imagemap_range *range_named(const hs_imagemap *m,
                                            const char *name) {
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->r[i].name, name) == 0)
      return &m->r[i];
  return NULL;
}

static int in_range(const hs_imagemap_range *r, const void *p) {
  uint64_t v = (uint64_t)(uintptr_t)p;
  return r != NULL && v >= r->lo && v < r->hi;
}

/* The fixture's descriptor: its strings are literals in .rodata. */
static const hs_plugin *descriptor(void *h) {
  hs_entry_fn *entry;
  void *sym = dlsym(h, HS_ENTRY_SYMBOL);
  assert_non_null(sym);
  memcpy(&entry, &sym, sizeof(entry));
  return entry(NULL); /* fixture.c keeps the api pointer, nothing more */
}

static void test_imagemap_sections_of_a_fixture(void **state) {
  const char *path = FIXTURE("counter_v1");
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  hs_imagemap m;
  (void)state;

  assert_non_null(h);
  assert_int_equal(hs_imagemap_of(&m, h, path), 0);
  assert_true(m.n >= 4);
  for (size_t i = 0; i < m.n; i++) {
    assert_true(m.r[i].lo < m.r[i].hi);
    if (i > 0)
      assert_true(m.r[i - 1].hi <= m.r[i].lo); /* sorted, disjoint */
  }
  const hs_plugin *d = descriptor(h);
  void *entry = dlsym(h, HS_ENTRY_SYMBOL);
  assert_true(in_range(range_named(&m, ".text"), entry));
  assert_true(in_range(range_named(&m, ".rodata"), d->version));
  assert_non_null(range_named(&m, ".data.rel.ro"));
  dlclose(h);
}

static void test_imagemap_segments_without_sections(void **state) {
  const char *path = FIXTURE("counter_v1");
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  hs_imagemap m;
  (void)state;

  assert_non_null(h);
  /* No file to read: the PT_LOAD segments from the loader instead. */
  assert_int_equal(hs_imagemap_of(&m, h, NULL), 0);
  assert_true(m.n >= 2);
  assert_true(in_range(range_named(&m, "segment r-x"),
                       dlsym(h, HS_ENTRY_SYMBOL)));
  assert_int_equal(hs_imagemap_of(&m, NULL, path), HS_EINVAL);
  assert_int_equal(m.n, 0);
  dlclose(h);
}

static void test_imagemap_text_form_round_trips(void **state) {
  hs_imagemap m = {0}, back;
  hs_buf b;
  (void)state;

  m.r[0] = (hs_imagemap_range){0x7f0000001000, 0x7f0000002000, ".text"};
  m.r[1] = (hs_imagemap_range){0x7f0000003000, 0x7f0000003400, ".rodata"};
  m.r[2] = (hs_imagemap_range){0x7f0000004000, 0x7f0000005000,
                               "segment rw-"};
  m.n = 3;
  hs_buf_init(&b);
  assert_int_equal(hs_imagemap_encode(&m, &b), 0);
  assert_string_equal(b.data, "7f0000001000 7f0000002000 .text;"
                              "7f0000003000 7f0000003400 .rodata;"
                              "7f0000004000 7f0000005000 segment_rw-;");
  assert_int_equal(hs_imagemap_decode(&back, b.data), 0);
  assert_int_equal(back.n, 3);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(back.r[i].lo, m.r[i].lo);
    assert_int_equal(back.r[i].hi, m.r[i].hi);
    assert_string_equal(back.r[i].name, m.r[i].name);
  }
  hs_buf_free(&b);
  assert_int_equal(hs_imagemap_decode(&back, ""), 0);
  assert_int_equal(back.n, 0);
  assert_int_equal(hs_imagemap_decode(&back, "12 zz .text;"), HS_EINVAL);
  assert_int_equal(hs_imagemap_decode(&back, "20 10 .text;"), HS_EINVAL);
  assert_int_equal(back.n, 0);
}

static void test_imagemap_scan_finds_aligned_pointers(void **state) {
  hs_imagemap m = {0};
  hs_imagemap_hit hits[2];
  uint64_t st[8] = {0};
  (void)state;

  m.r[0] = (hs_imagemap_range){0x1000, 0x2000, ".text"};
  m.r[1] = (hs_imagemap_range){0x3000, 0x3400, ".rodata"};
  m.n = 2;
  st[0] = 42;     /* a count */
  st[2] = 0x3010; /* into .rodata */
  st[3] = 0x2800; /* between the ranges */
  st[4] = 0x2000; /* just past .text */
  st[5] = 0x1fff; /* the last byte of .text */
  st[7] = 0x3000;
  assert_int_equal(hs_imagemap_scan(&m, st, sizeof(st), hits, 2), 3);
  assert_int_equal(hits[0].offset, 16);
  assert_int_equal(hits[0].value, 0x3010);
  assert_string_equal(hits[0].range->name, ".rodata");
  assert_int_equal(hits[1].offset, 40);
  assert_string_equal(hits[1].range->name, ".text");
  /* A partial last word is not a pointer; nor is anything of no map. */
  assert_int_equal(hs_imagemap_scan(&m, st, 63, hits, 2), 2);
  m.n = 0;
  assert_int_equal(hs_imagemap_scan(&m, st, sizeof(st), hits, 2), 0);
}

static void test_imagemap_reject_names_offset_section_and_fix(void **state) {
  hs_imagemap_range ro = {0x3000, 0x3400, ".rodata"};
  hs_imagemap_range tx = {0x1000, 0x2000, ".text"};
  hs_imagemap_range bss = {0x5000, 0x6000, ".bss"};
  hs_imagemap_hit hits[3] = {{16, 0x3010, &ro}, {24, 0x1234, &tx},
                             {32, 0x5008, &bss}};
  hs_error err;
  (void)state;

  assert_int_equal(hs_imagemap_reject(hits, 1, 1, "counter.so", "1.0", &err),
                   HS_ESTATEPTR);
  assert_string_equal(err.stage, "pointers");
  assert_string_equal(err.msg,
                      "state offset 16 points into counter.so .rodata "
                      "(0x3010) of version 1.0, which the swap unmaps: store "
                      "data, not pointers to string literals or constant "
                      "tables");
  hs_imagemap_reject(hits, 3, 5, "counter.so", "1.0", &err);
  assert_non_null(strstr(err.msg, "; offset 24 into .text (0x1234): store "
                                  "data, not function pointers (find the "
                                  "function again in load())"));
  assert_non_null(strstr(err.msg, "; offset 32 into .bss (0x5008): store "
                                  "data, not pointers to the plugin's static "
                                  "variables (each version has its own)"));
  assert_non_null(strstr(err.msg, "; and 2 more"));
}

static void test_imagemap_mapped_until_dlclose(void **state) {
  const char *path = FIXTURE("counter_v1b");
  (void)state;

  assert_int_equal(hs_imagemap_mapped(path), 0);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  assert_non_null(h);
  uint64_t bytes = hs_imagemap_mapped(path);
  assert_true(bytes >= 4096);
  assert_int_equal(bytes % 4096, 0);
  dlclose(h);
  assert_int_equal(hs_imagemap_mapped(path), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_imagemap_sections_of_a_fixture),
      cmocka_unit_test(test_imagemap_segments_without_sections),
      cmocka_unit_test(test_imagemap_text_form_round_trips),
      cmocka_unit_test(test_imagemap_scan_finds_aligned_pointers),
      cmocka_unit_test(test_imagemap_reject_names_offset_section_and_fix),
      cmocka_unit_test(test_imagemap_mapped_until_dlclose),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
