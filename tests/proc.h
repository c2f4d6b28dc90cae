/* proc.h - counts read from /proc, shared by the test harness and the
 * benchmarks (both watch the host's fds and mappings stay flat). */
#ifndef HS_TEST_PROC_H
#define HS_TEST_PROC_H

#include <sys/types.h>

/* Lines of /proc/PID/maps (one per mapping), or -1. */
int proc_maps_count(pid_t pid);

/* Entries of /proc/PID/fd (open fds), or -1. */
int proc_fd_count(pid_t pid);

/* Entries of /proc/PID/fd that point at target (the text readlink(2)
 * gives, e.g. "socket:[1234]" or "anon_inode:[pidfd]"), or -1. */
int proc_fd_count_to(pid_t pid, const char *target);

#endif /* HS_TEST_PROC_H */
