/*
 * cache.h - the private cache: copies of plugin files that are the only
 * paths ever handed to dlopen. The watched file may be overwritten, even in
 * place, while its copy is loaded. Every copy has a name never reused in
 * this process: "<stem>.<n>.so".
 */
#ifndef HS_CACHE_H
#define HS_CACHE_H

#include <stdint.h>

#include "err.h"

typedef struct hs_cache {
  char *dir;       /* owned; mode 0700, owned by us */
  int dirfd;       /* O_DIRECTORY fd of dir */
  uint64_t next;   /* the next copy's number: take it with hs_cache_next */
  int allow_insecure; /* copy files from outside the cache that other users
                         could have written (--allow-insecure) */
} hs_cache;

/* One copy in the cache. */
typedef struct hs_cache_file {
  char *path;      /* owned; absolute path of the copy */
  uint64_t hash;   /* content hash of the copy */
  uint64_t size;   /* bytes */
  char pins[200];  /* "" or, when the copy cannot be unloaded, why (see
                      hs_elf_pins): "it defines the STB_GNU_UNIQUE ..." */
} hs_cache_file;

/* Creates a fresh private directory "hotswap-<pid>-XXXXXX" under parent
 * (NULL: $TMPDIR, else /tmp) with mode 0700 and checks its owner and mode.
 * Returns 0 or a negative code with err filled (stage "cache"). */
int hs_cache_init(hs_cache *c, const char *parent, hs_error *err);

/* Removes every file in the cache and the directory itself. */
void hs_cache_close(hs_cache *c);

/*
 * Copies the regular file name (relative to dirfd; symlinks are not
 * followed) into the cache through one opened fd, hashes the copy and runs
 * hs_elf_check on it. A file from outside the cache (dirfd is not the
 * cache's) must pass hs_perm_check, as must its directory, unless
 * c->allow_insecure: else HS_EINSECURE, stage "copy". On success fills out (caller frees with
 * hs_cache_file_free or hs_cache_remove) and returns 0; out->pins then
 * says whether the copy will stay mapped after dlclose. On failure leaves
 * nothing in the cache and returns a negative code with err filled: stage
 * "copy" (open/read/write errors, not a regular file) or "elf". After an
 * "elf" failure out->hash and out->size still describe the content (path
 * is NULL), so that the caller can recognise the same bad file again.
 */
int hs_cache_add(hs_cache *c, int dirfd, const char *name,
                 hs_cache_file *out, hs_error *err);

/* Deletes the copy's file and frees f's fields. Harmless on an empty f. */
void hs_cache_remove(hs_cache *c, hs_cache_file *f);

/* Frees f's fields without deleting the file. */
void hs_cache_file_free(hs_cache_file *f);

/* A number for a new file in the cache, never handed out before in this
 * process. Safe from any thread (the loop and the loader thread both name
 * files). */
uint64_t hs_cache_next(hs_cache *c);

/* The content hash used by the cache (64-bit, not cryptographic). */
uint64_t hs_hash(const void *data, size_t size);

/* Takes over the cache dir of the image this host re-executed from (a host
 * upgrade): checks it is ours with mode 0700 and goes on numbering copies
 * from next. Returns 0 or a negative code with err filled. */
int hs_cache_adopt(hs_cache *c, const char *dir, uint64_t next,
                   hs_error *err);

#endif /* HS_CACHE_H */
