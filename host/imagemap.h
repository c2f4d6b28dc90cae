/*
 * imagemap.h - where a loaded plugin image lies in the host's memory, and
 * what still points there.
 *
 * A state is plain data: a pointer it keeps into the version being
 * replaced (a string literal, a function, a static variable) dangles once
 * the swap unmaps that version. The live host computes the old image's
 * ranges, section by section, and hands them to the validator with the
 * job (hs_imagemap_encode / _decode); the validator scans the state after
 * migrate() and load() (hs_imagemap_scan) and rejects the new version with
 * the offsets and what they point into (hs_imagemap_reject). After
 * dlclose, hs_imagemap_mapped tells how much of an image is still mapped:
 * the memory each reload of a library that pins itself leaks.
 */
#ifndef HS_IMAGEMAP_H
#define HS_IMAGEMAP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

#define HS_IMAGEMAP_MAX 64 /* ranges kept per image */

/* One section (or segment) of an image in the host's address space. */
typedef struct hs_imagemap_range {
  uint64_t lo, hi;  /* [lo, hi) */
  char name[24];    /* ".rodata", ".text", ...; or "segment r-x" */
} hs_imagemap_range;

typedef struct hs_imagemap {
  hs_imagemap_range r[HS_IMAGEMAP_MAX]; /* sorted by lo, disjoint */
  size_t n;
} hs_imagemap;

/* A state word that points into a range. */
typedef struct hs_imagemap_hit {
  size_t offset;                  /* byte offset in the state */
  uint64_t value;                 /* the pointer */
  const hs_imagemap_range *range; /* what it points into (in the map) */
} hs_imagemap_hit;

/*
 * Fills map with the ranges of the image handle (a dlopen handle) that was
 * opened from path (its cache copy): the load address (dlinfo) plus the
 * address and size of every allocated section in path's section headers,
 * named by section. Without readable section headers (or with more
 * sections than HS_IMAGEMAP_MAX), its PT_LOAD segments instead, named
 * "segment r-x" etc. Returns 0, or a negative code with map empty. Any
 * thread; reads path.
 */
int hs_imagemap_of(hs_imagemap *map, void *handle, const char *path);

/* Appends map as one line of text for the validator's argv ("lo hi name;"
 * per range, hexadecimal). Returns 0 or HS_ENOMEM. */
int hs_imagemap_encode(const hs_imagemap *map, hs_buf *out);

/* Parses what hs_imagemap_encode wrote ("" is an empty map). Returns 0 or
 * HS_EINVAL (map empty). */
int hs_imagemap_decode(hs_imagemap *map, const char *text);

/*
 * Scans state[0..size) for pointer-sized, pointer-aligned words (offsets
 * 0, 8, ...) whose value lies in a range of map: one linear pass, a
 * binary search only for words inside the map's overall span. Fills
 * hits[0..max) with the first ones and returns how many there are in all.
 */
size_t hs_imagemap_scan(const hs_imagemap *map, const void *state,
                        size_t size, hs_imagemap_hit *hits, size_t max);

/*
 * Sets err to HS_ESTATEPTR, stage "pointers": "state offset 16 points into
 * counter.so .rodata (0x7f...) of version 1.0, which the swap unmaps: store
 * data, not pointers to string literals or constant tables", with the
 * advice that fits each kind of section, up to n hits and "and N more" of
 * total. file and version name the version being replaced. Returns the
 * code.
 */
int hs_imagemap_reject(const hs_imagemap_hit *hits, size_t n, size_t total,
                       const char *file, const char *version, hs_error *err);

/* The bytes of this process's mappings of the file at path now (from
 * /proc/self/maps, also after the file was deleted). 0 when none. */
uint64_t hs_imagemap_mapped(const char *path);

#endif /* HS_IMAGEMAP_H */
