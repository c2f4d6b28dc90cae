/*
 * test_handoff.c - the handoff a re-executing host writes for its next
 * image (host/handoff.c): everything written is read back the same, and a
 * file that is not a handoff, a newer format, a truncated or altered one is
 * refused with its own reason.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "handoff.h"

static hs_handoff_fd fds[2] = {{7, HS_IO_READ, 1, "listen"},
                               {8, HS_IO_READ | HS_IO_WRITE, 42, ""}};
static hs_handoff_timer timers[1] = {{3, 99, 250, 123456789}};
static char *deps[] = {(char *)"/p/counter.c", (char *)"/p/common.h"};
static hs_handoff_output outputs[] = {{77, (char *)"build-counter-3.so"}};

/* A handoff with two plugins: one live with state, fds and timers, one not
 * running. */
static void sample(hs_handoff *h, hs_handoff_slot slots[2], char *bytes) {
  memset(h, 0, sizeof(*h));
  memset(slots, 0, 2 * sizeof(*slots));
  for (int i = 0; i < 16; i++)
    bytes[i] = (char)(i * 7);
  h->host_version = (char *)"0.1.0";
  h->reexecs = 3;
  h->started_at = 1700000000;
  h->started_ns = 5;
  h->reexec_at = 1700000100;
  h->paused_ns = 6;
  h->self_path = (char *)"/usr/bin/hotswap";
  h->self_hash = 0xfeedULL;
  h->plugin_dir = (char *)"/srv/plugins";
  h->cache_dir = (char *)"/tmp/hotswap-1-abc";
  h->cache_next = 17;
  h->control_fd = 5;
  h->control_path = (char *)"/run/hotswap.sock";
  slots[0].file = (char *)"counter.c";
  slots[0].loaded = 1;
  slots[0].copy_path = (char *)"/tmp/hotswap-1-abc/counter.4.so";
  slots[0].copy_hash = 0xabcdef;
  slots[0].copy_size = 9000;
  slots[0].version = (char *)"1.2";
  slots[0].generation = 4;
  slots[0].reloads = 3;
  slots[0].loaded_at = 1700000050;
  slots[0].build_key = 0x1234;
  slots[0].state.version = 2;
  slots[0].state.size = 16;
  slots[0].state.data = bytes;
  slots[0].fds = fds;
  slots[0].nfds = 2;
  slots[0].timers = timers;
  slots[0].ntimers = 1;
  slots[0].next_timer_id = 3;
  slots[0].deps = deps;
  slots[0].ndeps = 2;
  slots[0].outputs = outputs;
  slots[0].noutputs = 1;
  slots[0].failed_key = 0x55;
  slots[1].file = (char *)"broken.so";
  slots[1].copy_path = (char *)"";
  slots[1].version = (char *)"";
  slots[1].rejected_hash = 0x99;
  /* It crashed twice and is held (format 2 on). */
  hs_handoff_crash *c = &slots[1].crash;
  c->quarantined = 1;
  c->held = 1;
  c->held_hash = 0x99;
  c->count = 2;
  c->ntimes = 2;
  c->times[0] = 1000;
  c->times[1] = 2000;
  c->callback = (char *)"tick";
  c->version = (char *)"0.9";
  c->what = (char *)"SIGSEGV (address not mapped) at 0x0";
  c->where = (char *)"broken.so+0x1139";
  c->action = (char *)"crash-loop";
  c->detail = (char *)"quarantined after 2 crashes in 60 s";
  c->signo = 11;
  c->code = 1;
  c->addr = 0x10;
  c->pc = 0x7f0000001139;
  c->at = 1700000070;
  h->slots = slots;
  h->nslots = 2;
}

/* Writes w into a memfd (close-on-exec) and reads it back into r. */
static void write_read(const hs_handoff *w, hs_handoff *r) {
  hs_error err;
  int fd = hs_handoff_write(w, &err);
  if (fd < 0)
    fail_msg("hs_handoff_write: %s", err.msg);
  assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  if (hs_handoff_read(fd, r, &err) != 0)
    fail_msg("hs_handoff_read: %s", err.msg);
  close(fd);
}

static void test_handoff_round_trip(void **state) {
  hs_handoff w, r;
  hs_handoff_slot slots[2];
  char bytes[16];
  (void)state;

  sample(&w, slots, bytes);
  write_read(&w, &r);
  assert_int_equal(r.version, HS_HANDOFF_VERSION);
  assert_string_equal(r.host_version, "0.1.0");
  assert_int_equal(r.reexecs, 3);
  assert_int_equal(r.started_at, 1700000000);
  assert_int_equal(r.started_ns, 5);
  assert_int_equal(r.reexec_at, 1700000100);
  assert_int_equal(r.paused_ns, 6);
  assert_string_equal(r.self_path, "/usr/bin/hotswap");
  assert_int_equal(r.self_hash, 0xfeed);
  assert_string_equal(r.plugin_dir, "/srv/plugins");
  assert_string_equal(r.cache_dir, "/tmp/hotswap-1-abc");
  assert_int_equal(r.cache_next, 17);
  assert_int_equal(r.control_fd, 5);
  assert_string_equal(r.control_path, "/run/hotswap.sock");
  assert_int_equal(r.nslots, 2);
  hs_handoff_slot *s = &r.slots[0];
  assert_string_equal(s->file, "counter.c");
  assert_int_equal(s->loaded, 1);
  assert_string_equal(s->copy_path, "/tmp/hotswap-1-abc/counter.4.so");
  assert_int_equal(s->copy_hash, 0xabcdef);
  assert_int_equal(s->copy_size, 9000);
  assert_string_equal(s->version, "1.2");
  assert_int_equal(s->generation, 4);
  assert_int_equal(s->reloads, 3);
  assert_int_equal(s->loaded_at, 1700000050);
  assert_int_equal(s->build_key, 0x1234);
  assert_int_equal(s->state.version, 2);
  assert_int_equal(s->state.size, 16);
  assert_memory_equal(s->state.data, bytes, 16);
  assert_int_equal(s->nfds, 2);
  assert_int_equal(s->fds[0].fd, 7);
  assert_int_equal(s->fds[0].events, HS_IO_READ);
  assert_int_equal(s->fds[0].token, 1);
  assert_string_equal(s->fds[0].name, "listen");
  assert_int_equal(s->fds[1].fd, 8);
  assert_int_equal(s->fds[1].token, 42);
  assert_string_equal(s->fds[1].name, "");
  assert_int_equal(s->ntimers, 1);
  assert_int_equal(s->timers[0].id, 3);
  assert_int_equal(s->timers[0].token, 99);
  assert_int_equal(s->timers[0].repeat_ms, 250);
  assert_int_equal(s->timers[0].due_ns, 123456789);
  assert_int_equal(s->next_timer_id, 3);
  assert_int_equal(s->ndeps, 2);
  assert_string_equal(s->deps[1], "/p/common.h");
  assert_int_equal(s->noutputs, 1);
  assert_int_equal(s->outputs[0].key, 77);
  assert_string_equal(s->outputs[0].name, "build-counter-3.so");
  assert_int_equal(s->failed_key, 0x55);
  s = &r.slots[1];
  assert_string_equal(s->file, "broken.so");
  assert_int_equal(s->loaded, 0);
  assert_int_equal(s->state.version, 0);
  assert_null(s->state.data);
  assert_int_equal(s->rejected_hash, 0x99);
  const hs_handoff_crash *c = &s->crash;
  assert_int_equal(c->quarantined, 1);
  assert_int_equal(c->held, 1);
  assert_int_equal(c->held_hash, 0x99);
  assert_int_equal(c->count, 2);
  assert_int_equal(c->ntimes, 2);
  assert_int_equal(c->times[0], 1000);
  assert_int_equal(c->times[1], 2000);
  assert_string_equal(c->callback, "tick");
  assert_string_equal(c->version, "0.9");
  assert_string_equal(c->what, "SIGSEGV (address not mapped) at 0x0");
  assert_string_equal(c->where, "broken.so+0x1139");
  assert_string_equal(c->action, "crash-loop");
  assert_string_equal(c->detail, "quarantined after 2 crashes in 60 s");
  assert_int_equal(c->signo, 11);
  assert_int_equal(c->code, 1);
  assert_int_equal(c->addr, 0x10);
  assert_int_equal(c->pc, 0x7f0000001139);
  assert_int_equal(c->at, 1700000070);
  assert_int_equal(r.slots[0].crash.count, 0);
  hs_handoff_free(&r);
}

/* For an older build that reads format 1 only: the same handoff without
 * the crashes, which that build knows nothing of. */
static void test_handoff_writes_format_1_for_older_builds(void **state) {
  hs_handoff w, r;
  hs_handoff_slot slots[2];
  char bytes[16];
  hs_error err;
  (void)state;

  sample(&w, slots, bytes);
  w.version = 1;
  write_read(&w, &r);
  assert_int_equal(r.version, 1);
  assert_int_equal(r.nslots, 2);
  assert_string_equal(r.slots[0].copy_path, "/tmp/hotswap-1-abc/counter.4.so");
  assert_memory_equal(r.slots[0].state.data, bytes, 16);
  assert_int_equal(r.slots[1].rejected_hash, 0x99);
  assert_int_equal(r.slots[1].crash.quarantined, 0);
  assert_int_equal(r.slots[1].crash.count, 0);
  assert_null(r.slots[1].crash.detail);
  hs_handoff_free(&r);

  /* A format this host does not know is not written. */
  w.version = HS_HANDOFF_VERSION + 1;
  assert_true(hs_handoff_write(&w, &err) < 0);
  assert_int_equal(err.code, HS_EINVAL);
  assert_non_null(strstr(err.msg, "this hotswap writes formats 1 to"));
}

/* Writes bytes to a temporary file and returns its fd. */
static int file_with(const void *bytes, size_t n) {
  char path[] = "/tmp/test_handoff.XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  assert_int_equal(write(fd, bytes, n), (ssize_t)n);
  return fd;
}

/* The sample handoff's bytes, for altering. */
static char *sample_bytes(size_t *n) {
  hs_handoff w;
  hs_handoff_slot slots[2];
  char bytes[16];
  hs_error err;
  struct stat st;

  sample(&w, slots, bytes);
  int fd = hs_handoff_write(&w, &err);
  assert_true(fd >= 0);
  assert_int_equal(fstat(fd, &st), 0);
  char *p = malloc((size_t)st.st_size);
  assert_non_null(p);
  assert_int_equal(pread(fd, p, (size_t)st.st_size, 0), st.st_size);
  close(fd);
  *n = (size_t)st.st_size;
  return p;
}

static void expect_refused(const void *bytes, size_t n, const char *reason) {
  hs_handoff r;
  hs_error err;
  int fd = file_with(bytes, n);
  assert_true(hs_handoff_read(fd, &r, &err) < 0);
  close(fd);
  assert_string_equal(err.stage, "handoff");
  if (!strstr(err.msg, reason))
    fail_msg("'%s' does not say '%s'", err.msg, reason);
  assert_null(r.slots);
  assert_null(r.host_version);
}

static void test_handoff_refuses_what_is_not_one(void **state) {
  (void)state;
  expect_refused("#!/bin/sh\necho hello\n", 21, "is not a hotswap handoff");
  expect_refused("", 0, "is not a hotswap handoff");
}

static void test_handoff_refuses_a_newer_format(void **state) {
  size_t n;
  char *p = sample_bytes(&n);
  uint32_t v = HS_HANDOFF_VERSION + 1;
  (void)state;
  memcpy(p + 8, &v, 4);
  char want[64];
  snprintf(want, sizeof(want), "this hotswap reads formats 1 to %d",
           HS_HANDOFF_VERSION);
  expect_refused(p, n, want);
  free(p);
}

static void test_handoff_refuses_truncated_and_altered(void **state) {
  size_t n;
  char *p = sample_bytes(&n);
  (void)state;
  expect_refused(p, n - 1, "the handoff is truncated");
  p[n / 2] ^= 0x40;
  expect_refused(p, n, "the handoff is corrupt");
  free(p);
}

static void test_handoff_refuses_a_closed_fd(void **state) {
  hs_handoff r;
  hs_error err;
  (void)state;
  assert_true(hs_handoff_read(1000, &r, &err) < 0);
  assert_non_null(strstr(err.msg, "cannot read the handoff (fd 1000)"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_handoff_round_trip),
      cmocka_unit_test(test_handoff_writes_format_1_for_older_builds),
      cmocka_unit_test(test_handoff_refuses_what_is_not_one),
      cmocka_unit_test(test_handoff_refuses_a_newer_format),
      cmocka_unit_test(test_handoff_refuses_truncated_and_altered),
      cmocka_unit_test(test_handoff_refuses_a_closed_fd),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
