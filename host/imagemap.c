/* imagemap.c - where a plugin image lies, and what points into it; see
 * imagemap.h. */
#include "imagemap.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"

#define MAX_SECTIONS 4096        /* section headers read at most */
#define MAX_SHSTRTAB (1u << 20)  /* bytes of section names read at most */

static int by_lo(const void *a, const void *b) {
  const hs_imagemap_range *x = a, *y = b;
  return (x->lo > y->lo) - (x->lo < y->lo);
}

static void add_range(hs_imagemap *map, uint64_t lo, uint64_t size,
                      const char *name) {
  hs_imagemap_range *r = &map->r[map->n++];
  r->lo = lo;
  r->hi = lo + size;
  snprintf(r->name, sizeof(r->name), "%s", name);
}

/* Reads exactly len bytes at off. Returns 0 or -1. */
static int read_at(int fd, void *buf, size_t len, uint64_t off) {
  return hs_file_read(fd, buf, len, (off_t)off) == len ? 0 : -1;
}

/* The allocated sections of the file at path, placed at base. Returns 0,
 * or -1 (map empty) when they cannot be read or are too many. */
static int sections(hs_imagemap *map, uint64_t base, const char *path) {
  Elf64_Ehdr eh;
  Elf64_Shdr *sh = NULL, str;
  char *names = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -1;

  map->n = 0;
  if (fd < 0)
    return -1;
  if (read_at(fd, &eh, sizeof(eh), 0) != 0 ||
      memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_shnum == 0 ||
      eh.e_shnum > MAX_SECTIONS || eh.e_shentsize != sizeof(Elf64_Shdr) ||
      eh.e_shstrndx >= eh.e_shnum)
    goto out;
  sh = malloc((size_t)eh.e_shnum * sizeof(*sh));
  if (!sh || read_at(fd, sh, (size_t)eh.e_shnum * sizeof(*sh), eh.e_shoff))
    goto out;
  str = sh[eh.e_shstrndx];
  if (str.sh_size == 0 || str.sh_size > MAX_SHSTRTAB ||
      !(names = malloc(str.sh_size + 1)) ||
      read_at(fd, names, str.sh_size, str.sh_offset) != 0)
    goto out;
  names[str.sh_size] = '\0';
  for (unsigned i = 0; i < eh.e_shnum; i++) {
    const Elf64_Shdr *s = &sh[i];
    /* .tbss takes no room in the image: its range would overlap. */
    if (!(s->sh_flags & SHF_ALLOC) || s->sh_size == 0 ||
        s->sh_type == SHT_NULL ||
        ((s->sh_flags & SHF_TLS) && s->sh_type == SHT_NOBITS))
      continue;
    if (map->n == HS_IMAGEMAP_MAX) {
      map->n = 0;
      goto out;
    }
    add_range(map, base + s->sh_addr, s->sh_size,
              s->sh_name < str.sh_size ? names + s->sh_name : "?");
  }
  rc = map->n > 0 ? 0 : -1;

out:
  free(names);
  free(sh);
  close(fd);
  return rc;
}

struct segments_arg {
  hs_imagemap *map;
  uint64_t base;
  const char *name;
};

static int segments_cb(struct dl_phdr_info *info, size_t size, void *data) {
  struct segments_arg *a = data;
  (void)size;
  if (info->dlpi_addr != a->base || !info->dlpi_name ||
      strcmp(info->dlpi_name, a->name) != 0)
    return 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    char name[24];
    if (ph->p_type != PT_LOAD || ph->p_memsz == 0 ||
        a->map->n == HS_IMAGEMAP_MAX)
      continue;
    snprintf(name, sizeof(name), "segment %c%c%c",
             ph->p_flags & PF_R ? 'r' : '-', ph->p_flags & PF_W ? 'w' : '-',
             ph->p_flags & PF_X ? 'x' : '-');
    add_range(a->map, a->base + ph->p_vaddr, ph->p_memsz, name);
  }
  return 1;
}

int hs_imagemap_of(hs_imagemap *map, void *handle, const char *path) {
  struct link_map *lm = NULL;

  map->n = 0;
  if (!handle || dlinfo(handle, RTLD_DI_LINKMAP, &lm) != 0 || !lm) {
    dlerror();
    return HS_EINVAL;
  }
  if (!path || sections(map, (uint64_t)lm->l_addr, path) != 0) {
    struct segments_arg a = {map, (uint64_t)lm->l_addr, lm->l_name};
    map->n = 0;
    dl_iterate_phdr(segments_cb, &a);
  }
  if (map->n == 0)
    return HS_ENOENT;
  qsort(map->r, map->n, sizeof(map->r[0]), by_lo);
  return 0;
}

int hs_imagemap_encode(const hs_imagemap *map, hs_buf *out) {
  for (size_t i = 0; i < map->n; i++) {
    /* Names go between blanks and ';': keep them free of both. */
    char name[sizeof(map->r[i].name)];
    snprintf(name, sizeof(name), "%s", map->r[i].name);
    for (char *c = name; *c; c++)
      if (*c == ' ' || *c == ';')
        *c = '_';
    hs_buf_printf(out, "%" PRIx64 " %" PRIx64 " %s;", map->r[i].lo,
                  map->r[i].hi, name);
  }
  return out->oom ? HS_ENOMEM : 0;
}

int hs_imagemap_decode(hs_imagemap *map, const char *text) {
  map->n = 0;
  while (*text) {
    uint64_t lo, hi;
    char name[sizeof(map->r[0].name)];
    int used = 0;
    if (map->n == HS_IMAGEMAP_MAX ||
        sscanf(text, "%" SCNx64 " %" SCNx64 " %23[^;];%n", &lo, &hi, name,
               &used) != 3 ||
        used == 0 || hi <= lo) {
      map->n = 0;
      return HS_EINVAL;
    }
    for (char *c = name; *c; c++)
      if (*c == '_' && strncmp(name, "segment_", 8) == 0)
        *c = ' ';
    add_range(map, lo, hi - lo, name);
    text += used;
  }
  qsort(map->r, map->n, sizeof(map->r[0]), by_lo);
  return 0;
}

/* The range holding v, or NULL. */
static const hs_imagemap_range *find(const hs_imagemap *map, uint64_t v) {
  size_t lo = 0, hi = map->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (v < map->r[mid].lo)
      hi = mid;
    else if (v >= map->r[mid].hi)
      lo = mid + 1;
    else
      return &map->r[mid];
  }
  return NULL;
}

size_t hs_imagemap_scan(const hs_imagemap *map, const void *state,
                        size_t size, hs_imagemap_hit *hits, size_t max) {
  const unsigned char *p = state;
  size_t total = 0;

  if (map->n == 0 || !p)
    return 0;
  uint64_t first = map->r[0].lo, last = map->r[map->n - 1].hi;
  for (size_t off = 0; off + sizeof(uint64_t) <= size;
       off += sizeof(uint64_t)) {
    uint64_t v;
    memcpy(&v, p + off, sizeof(v));
    if (v < first || v >= last)
      continue;
    const hs_imagemap_range *r = find(map, v);
    if (!r)
      continue;
    if (total < max) {
      hits[total].offset = off;
      hits[total].value = v;
      hits[total].range = r;
    }
    total++;
  }
  return total;
}

static int starts(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* What to do instead of keeping a pointer into a section like name. */
static const char *advice(const char *name) {
  int segment = starts(name, "segment ") && strlen(name) == 11;
  if (starts(name, ".rodata") || (segment && strcmp(name + 8, "r--") == 0))
    return "store data, not pointers to string literals or constant tables";
  if (starts(name, ".text") || starts(name, ".plt") ||
      strcmp(name, ".init") == 0 || strcmp(name, ".fini") == 0 ||
      (segment && name[10] == 'x'))
    return "store data, not function pointers (find the function again in "
           "load())";
  if (starts(name, ".data") || starts(name, ".bss") ||
      starts(name, ".got") || starts(name, ".tdata") ||
      (segment && name[9] == 'w'))
    return "store data, not pointers to the plugin's static variables "
           "(each version has its own)";
  return "store data, not pointers into the plugin's image";
}

int hs_imagemap_reject(const hs_imagemap_hit *hits, size_t n, size_t total,
                       const char *file, const char *version, hs_error *err) {
  char msg[sizeof(err->msg)];
  size_t used = 0;

  msg[0] = '\0';
  for (size_t i = 0; i < n && used < sizeof(msg); i++) {
    const hs_imagemap_hit *h = &hits[i];
    int k;
    if (i == 0)
      k = snprintf(msg, sizeof(msg),
                   "state offset %zu points into %s %s (0x%" PRIx64
                   ") of version %s, which the swap unmaps: %s",
                   h->offset, file, h->range->name, h->value, version,
                   advice(h->range->name));
    else
      k = snprintf(msg + used, sizeof(msg) - used,
                   "; offset %zu into %s (0x%" PRIx64 "): %s", h->offset,
                   h->range->name, h->value, advice(h->range->name));
    if (k < 0)
      break;
    used += (size_t)k;
  }
  if (total > n && used < sizeof(msg))
    snprintf(msg + used, sizeof(msg) - used, "; and %zu more", total - n);
  return hs_error_set(err, HS_ESTATEPTR, "pointers", "%s", msg);
}

uint64_t hs_imagemap_mapped(const char *path) {
  FILE *f = fopen("/proc/self/maps", "re");
  char *line = NULL;
  size_t cap = 0, plen = strlen(path);
  uint64_t bytes = 0;
  ssize_t len;

  if (!f)
    return 0;
  while ((len = getline(&line, &cap, f)) > 0) {
    unsigned long lo, hi;
    int at = 0;
    if (line[len - 1] == '\n')
      line[--len] = '\0';
    /* "lo-hi perms offset dev inode   path": the path is the rest. */
    if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &at) != 2 ||
        at == 0)
      continue;
    const char *name = line + at;
    if (strncmp(name, path, plen) == 0 &&
        (name[plen] == '\0' || strcmp(name + plen, " (deleted)") == 0))
      bytes += hi - lo;
  }
  free(line);
  fclose(f);
  return bytes;
}
