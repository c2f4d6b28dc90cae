/*
 * threads.h - the threads of this process, from /proc/self/task: a plugin
 * that starts threads and leaves them running at unload makes dlclose
 * unsafe (the threads would run unmapped code). The host takes the set of
 * thread ids before a version's load() and compares after its unload();
 * the validator, single-threaded, counts them after unload().
 */
#ifndef HS_THREADS_H
#define HS_THREADS_H

#include <stddef.h>
#include <sys/types.h>

/* A set of thread ids. */
typedef struct hs_threads {
  pid_t *tids;     /* owned; sorted ascending; NULL when n is 0 */
  size_t n;
} hs_threads;

/* Fills t with the ids of every thread of this process now (t is
 * overwritten, not freed). Returns 0, or a negative code (HS_ENOMEM, or
 * -errno when /proc/self/task cannot be read) with t empty. */
int hs_threads_snapshot(hs_threads *t);

/* Frees t's ids; t is left empty. Harmless on an empty t. */
void hs_threads_free(hs_threads *t);

/* Returns 1 if tid is in t. */
int hs_threads_has(const hs_threads *t, pid_t tid);

/* Fills out (overwritten) with the threads running now that are not in
 * before: those started since before was taken and still alive. Returns
 * 0 or a negative code with out empty. */
int hs_threads_since(const hs_threads *before, hs_threads *out);

/* Removes from t every id that is in other. */
void hs_threads_remove(hs_threads *t, const hs_threads *other);

/* The number of threads of this process now (>= 1), or a negative code. */
int hs_threads_count(void);

/* Writes "1234, 1240" (at most max ids, then ", ..." when there are more)
 * into buf of size len. Returns buf. */
char *hs_threads_format(const hs_threads *t, size_t max, char *buf,
                        size_t len);

#endif /* HS_THREADS_H */
