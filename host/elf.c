/* elf.c - checks a plugin file's ELF headers before dlopen sees it. */
#include "elf.h"

/* The kernel's copy of the ELF definitions: <elf.h> would find host/elf.h
 * first on this target's include path. */
#include <linux/elf.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The machine this host was compiled for. Only 64-bit hosts are supported:
 * the checker parses Elf64 headers. */
#if defined(__x86_64__)
#define HS_ELF_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define HS_ELF_MACHINE EM_AARCH64
#elif defined(__riscv) && __riscv_xlen == 64
#define HS_ELF_MACHINE EM_RISCV
#else
#error "elf.c: unknown machine; add it to the list above"
#endif

#if UINTPTR_MAX != UINT64_MAX
#error "elf.c: hotswap supports 64-bit hosts only"
#endif

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HS_ELF_DATA ELFDATA2LSB
#else
#define HS_ELF_DATA ELFDATA2MSB
#endif

static const struct {
  unsigned machine;
  const char *name;
} machines[] = {
    {EM_X86_64, "x86-64"}, {EM_AARCH64, "AArch64"}, {EM_386, "i386"},
    {EM_ARM, "ARM"},       {EM_RISCV, "RISC-V"},
};

/* Returns a machine's name: "x86-64", or "machine N" formatted in buf. */
static const char *machine_name(unsigned machine, char *buf, size_t len) {
  for (size_t i = 0; i < sizeof(machines) / sizeof(machines[0]); i++)
    if (machines[i].machine == machine)
      return machines[i].name;
  snprintf(buf, len, "machine %u", machine);
  return buf;
}

/* e_machine read in the byte order the file declares. */
static unsigned file_machine(const unsigned char *p) {
  if (p[EI_DATA] == ELFDATA2MSB)
    return (unsigned)p[18] << 8 | p[19];
  return (unsigned)p[19] << 8 | p[18];
}

static const char *class_name(unsigned char c) {
  return c == ELFCLASS32 ? "32-bit" : c == ELFCLASS64 ? "64-bit" : "?-bit";
}

static const char *data_name(unsigned char d) {
  return d == ELFDATA2LSB   ? "little-endian"
         : d == ELFDATA2MSB ? "big-endian"
                            : "unknown byte order";
}

static int check_machine(const unsigned char *p, const char *file,
                         hs_error *err) {
  unsigned machine = file_machine(p);
  char fbuf[32], hbuf[32];
  const char *fname = machine_name(machine, fbuf, sizeof(fbuf));
  const char *hname = machine_name(HS_ELF_MACHINE, hbuf, sizeof(hbuf));

  if (machine != HS_ELF_MACHINE)
    return hs_error_set(err, HS_EELFARCH, "elf",
                        "%s is built for %s; this host is %s", file, fname,
                        hname);
  if (p[EI_CLASS] != ELFCLASS64 || p[EI_DATA] != HS_ELF_DATA)
    return hs_error_set(err, HS_EELFARCH, "elf",
                        "%s is built for %s %s %s; this host is %s %s %s",
                        file, fname, class_name(p[EI_CLASS]),
                        data_name(p[EI_DATA]), hname, class_name(ELFCLASS64),
                        data_name(HS_ELF_DATA));
  return 0;
}

static int check_type(const Elf64_Ehdr *eh, const char *file, hs_error *err) {
  const char *what;

  switch (eh->e_type) {
  case ET_DYN:
    return 0;
  case ET_EXEC:
    what = "an ELF executable";
    break;
  case ET_REL:
    what = "an ELF relocatable object";
    break;
  case ET_CORE:
    what = "an ELF core file";
    break;
  default:
    return hs_error_set(err, HS_ENOTELF, "elf",
                        "%s is an ELF file of type %u, not a shared object",
                        file, (unsigned)eh->e_type);
  }
  return hs_error_set(err, HS_ENOTELF, "elf", "%s is %s, not a shared object",
                      file, what);
}

/* *end = off + n * entsize; returns 0, or -1 if that overflows. */
static int table_end(uint64_t off, uint64_t n, uint64_t entsize,
                     uint64_t *end) {
  uint64_t len;

  if (__builtin_mul_overflow(n, entsize, &len) ||
      __builtin_add_overflow(off, len, end))
    return -1;
  return 0;
}

static int truncated(const char *file, size_t size, uint64_t need,
                     int overflow, hs_error *err) {
  if (overflow)
    return hs_error_set(err, HS_ETRUNCATED, "elf",
                        "%s is truncated: it has %zu bytes, its ELF headers "
                        "point beyond 2^64",
                        file, size);
  return hs_error_set(err, HS_ETRUNCATED, "elf",
                      "%s is truncated: it has %zu bytes, its ELF headers "
                      "need %llu",
                      file, size, (unsigned long long)need);
}

static void raise_to(uint64_t *need, uint64_t end) {
  if (end > *need)
    *need = end;
}

/* Checks that program headers, PT_LOAD file bytes and section headers lie
 * inside the file. eh has been checked for class, byte order and type. */
static int check_extent(const unsigned char *p, size_t size,
                        const Elf64_Ehdr *eh, const char *file,
                        hs_error *err) {
  uint64_t need = sizeof(Elf64_Ehdr), end;
  uint64_t phnum = eh->e_phnum, shnum = eh->e_shnum;
  Elf64_Shdr sh0;

  if (eh->e_phnum != 0 && eh->e_phentsize < sizeof(Elf64_Phdr))
    return hs_error_set(err, HS_ENOTELF, "elf",
                        "%s is not a valid ELF file: its program headers "
                        "are %u bytes, not %zu",
                        file, (unsigned)eh->e_phentsize, sizeof(Elf64_Phdr));
  if (eh->e_shnum != 0 && eh->e_shentsize < sizeof(Elf64_Shdr))
    return hs_error_set(err, HS_ENOTELF, "elf",
                        "%s is not a valid ELF file: its section headers "
                        "are %u bytes, not %zu",
                        file, (unsigned)eh->e_shentsize, sizeof(Elf64_Shdr));

  /* Extended numbering: the real counts live in section header 0. */
  if (eh->e_shoff != 0 && (eh->e_shnum == 0 || eh->e_phnum == PN_XNUM)) {
    if (table_end(eh->e_shoff, 1, sizeof(Elf64_Shdr), &end) != 0)
      return truncated(file, size, 0, 1, err);
    if (end > size)
      return truncated(file, size, end, 0, err);
    memcpy(&sh0, p + eh->e_shoff, sizeof(sh0));
    if (eh->e_shnum == 0)
      shnum = sh0.sh_size;
    if (eh->e_phnum == PN_XNUM)
      phnum = sh0.sh_info;
  }

  if (eh->e_shoff != 0 && shnum != 0) {
    uint64_t entsize = eh->e_shentsize ? eh->e_shentsize : sizeof(Elf64_Shdr);
    if (table_end(eh->e_shoff, shnum, entsize, &end) != 0)
      return truncated(file, size, 0, 1, err);
    raise_to(&need, end);
  }
  if (phnum != 0) {
    uint64_t entsize = eh->e_phentsize ? eh->e_phentsize : sizeof(Elf64_Phdr);
    if (table_end(eh->e_phoff, phnum, entsize, &end) != 0)
      return truncated(file, size, 0, 1, err);
    raise_to(&need, end);
    if (end > size) /* the segments cannot be read */
      return truncated(file, size, need, 0, err);
    for (uint64_t i = 0; i < phnum; i++) {
      Elf64_Phdr ph;
      memcpy(&ph, p + eh->e_phoff + i * entsize, sizeof(ph));
      if (ph.p_type != PT_LOAD)
        continue;
      if (__builtin_add_overflow(ph.p_offset, ph.p_filesz, &end))
        return truncated(file, size, 0, 1, err);
      raise_to(&need, end);
    }
  }
  if (need > size)
    return truncated(file, size, need, 0, err);
  return 0;
}

int hs_elf_check(const void *data, size_t size, const char *file,
                 hs_error *err) {
  const unsigned char *p = data;
  Elf64_Ehdr eh;
  int rc;

  if (p == NULL || size < sizeof(Elf64_Ehdr) ||
      memcmp(p, ELFMAG, SELFMAG) != 0)
    return hs_error_set(err, HS_ENOTELF, "elf", "%s is not an ELF file",
                        file);
  if ((rc = check_machine(p, file, err)) != 0)
    return rc;
  memcpy(&eh, p, sizeof(eh));
  if ((rc = check_type(&eh, file, err)) != 0)
    return rc;
  return check_extent(p, size, &eh, file, err);
}

/* ---- hs_elf_pins ------------------------------------------------------- */

/* Not every <linux/elf.h> has these. */
#ifndef DF_1_NODELETE
#define DF_1_NODELETE 0x00000008
#endif
#ifndef STB_GNU_UNIQUE
#define STB_GNU_UNIQUE 10
#endif

/* Longest symbol name quoted in hs_elf_pins' sentence. */
#define HS_PIN_NAME_MAX 80

/* The file's bytes [off, off + n), or NULL when they are not all inside
 * it. */
static const unsigned char *span(const unsigned char *p, size_t size,
                                 uint64_t off, uint64_t n) {
  uint64_t end;

  if (__builtin_add_overflow(off, n, &end) || end > size)
    return NULL;
  return p + off;
}

/* Where the table of n entries of entsize bytes at off lies, or NULL when
 * it is not all inside the file. */
static const unsigned char *table(const unsigned char *p, size_t size,
                                  uint64_t off, uint64_t n, uint64_t entsize) {
  uint64_t len;

  if (__builtin_mul_overflow(n, entsize, &len))
    return NULL;
  return span(p, size, off, len);
}

/* The true counts of program and section headers (extended numbering keeps
 * them in section header 0). 0 when the table cannot be read. */
static void header_counts(const unsigned char *p, size_t size,
                          const Elf64_Ehdr *eh, uint64_t *phnum,
                          uint64_t *shnum) {
  const unsigned char *at;
  Elf64_Shdr sh0;

  *phnum = eh->e_phnum;
  *shnum = eh->e_shnum;
  if (eh->e_shoff == 0) {
    *shnum = 0;
    if (eh->e_phnum == PN_XNUM)
      *phnum = 0;
    return;
  }
  if (eh->e_shnum != 0 && eh->e_phnum != PN_XNUM)
    return;
  if ((at = span(p, size, eh->e_shoff, sizeof(sh0))) == NULL) {
    *shnum = 0;
    *phnum = eh->e_phnum == PN_XNUM ? 0 : eh->e_phnum;
    return;
  }
  memcpy(&sh0, at, sizeof(sh0));
  if (eh->e_shnum == 0)
    *shnum = sh0.sh_size;
  if (eh->e_phnum == PN_XNUM)
    *phnum = sh0.sh_info;
}

/* 1 if the PT_DYNAMIC segment has DF_1_NODELETE in DT_FLAGS_1. Like
 * glibc, uses the last PT_DYNAMIC; reading one only keeps the work linear
 * in the file's size whatever the headers say. */
static int has_nodelete(const unsigned char *p, size_t size,
                        const Elf64_Ehdr *eh, uint64_t phnum) {
  const unsigned char *tab, *dyn;
  Elf64_Phdr ph, last;
  int found = 0;
  uint64_t n;

  if (phnum == 0 || eh->e_phentsize < sizeof(Elf64_Phdr) ||
      (tab = table(p, size, eh->e_phoff, phnum, eh->e_phentsize)) == NULL)
    return 0;
  for (uint64_t i = 0; i < phnum; i++) {
    memcpy(&ph, tab + i * eh->e_phentsize, sizeof(ph));
    if (ph.p_type == PT_DYNAMIC) {
      last = ph;
      found = 1;
    }
  }
  if (!found)
    return 0;
  n = last.p_filesz / sizeof(Elf64_Dyn);
  if ((dyn = table(p, size, last.p_offset, n, sizeof(Elf64_Dyn))) == NULL)
    return 0;
  for (uint64_t j = 0; j < n; j++) {
    Elf64_Dyn d;
    memcpy(&d, dyn + j * sizeof(d), sizeof(d));
    if (d.d_tag == DT_NULL)
      break;
    if (d.d_tag == DT_FLAGS_1 && (d.d_un.d_val & DF_1_NODELETE))
      return 1;
  }
  return 0;
}

static int is_ident_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_';
}

/* Reads "<len><identifier>" at *m, appending the identifier to out (of
 * capacity cap, *used so far). Returns 0 and moves *m past it, or -1. */
static int take_source_name(const char **m, char *out, size_t cap,
                            size_t *used) {
  const char *s = *m;
  size_t n = 0;

  if (*s < '1' || *s > '9')
    return -1;
  while (*s >= '0' && *s <= '9') {
    n = n * 10 + (size_t)(*s - '0');
    if (n > 4096)
      return -1;
    s++;
  }
  for (size_t i = 0; i < n; i++)
    if (!is_ident_char(s[i])) /* also stops at the terminating NUL */
      return -1;
  if (*used + n + 1 > cap)
    return -1;
  memcpy(out + *used, s, n);
  *used += n;
  out[*used] = '\0';
  *m = s + n;
  return 0;
}

/*
 * A readable form of the Itanium-mangled names statics usually have:
 * "_ZN1a1bE" as "a::b" and "_Z1a" as "a". Anything else (templates,
 * substitutions, local statics) is left to the caller to quote raw.
 * Returns 0 with out filled, or -1.
 */
static int demangle(const char *m, char *out, size_t cap) {
  size_t used = 0;

  if (cap == 0 || strncmp(m, "_Z", 2) != 0)
    return -1;
  out[0] = '\0';
  if (m[2] != 'N') {
    m += 2;
    return take_source_name(&m, out, cap, &used) == 0 && *m == '\0' ? 0 : -1;
  }
  m += 3;
  for (int parts = 0;; parts++) {
    if (m[0] == 'E' && m[1] == '\0')
      return parts > 0 ? 0 : -1;
    if (parts > 0) {
      if (used + 3 > cap)
        return -1;
      memcpy(out + used, "::", 3);
      used += 2;
    }
    if (take_source_name(&m, out, cap, &used) != 0)
      return -1;
  }
}

/* A symbol's name from strtab[0..strsz), or NULL when it does not end
 * inside the table. */
static const char *sym_name(const unsigned char *strtab, uint64_t strsz,
                            uint32_t off) {
  if (off >= strsz || memchr(strtab + off, '\0', strsz - off) == NULL)
    return NULL;
  return (const char *)strtab + off;
}

/* What .dynsym says: the first defined STB_GNU_UNIQUE symbol, and whether
 * __cxa_thread_atexit(_impl) is referenced strongly. */
typedef struct dynsym_facts {
  const char *unique; /* NULL when none */
  int thread_atexit;
} dynsym_facts;

static void scan_dynsym(const unsigned char *p, size_t size,
                        const unsigned char *shtab, uint64_t shnum,
                        uint64_t shentsize, const Elf64_Shdr *sh,
                        dynsym_facts *f) {
  const unsigned char *syms, *strtab;
  uint64_t entsize = sh->sh_entsize ? sh->sh_entsize : sizeof(Elf64_Sym);
  uint64_t n;
  Elf64_Shdr str;

  if (entsize < sizeof(Elf64_Sym) || sh->sh_link >= shnum)
    return;
  memcpy(&str, shtab + (uint64_t)sh->sh_link * shentsize, sizeof(str));
  if ((strtab = span(p, size, str.sh_offset, str.sh_size)) == NULL)
    return;
  n = sh->sh_size / entsize;
  if ((syms = table(p, size, sh->sh_offset, n, entsize)) == NULL)
    return;
  for (uint64_t i = 0; i < n; i++) {
    Elf64_Sym s;
    const char *name;

    memcpy(&s, syms + i * entsize, sizeof(s));
    if ((name = sym_name(strtab, str.sh_size, s.st_name)) == NULL)
      continue;
    if (s.st_shndx != SHN_UNDEF) {
      if (ELF64_ST_BIND(s.st_info) == STB_GNU_UNIQUE && f->unique == NULL)
        f->unique = name;
    } else if (ELF64_ST_BIND(s.st_info) == STB_GLOBAL &&
               (strcmp(name, "__cxa_thread_atexit") == 0 ||
                strcmp(name, "__cxa_thread_atexit_impl") == 0)) {
      f->thread_atexit = 1;
    }
  }
}

static void scan_sections(const unsigned char *p, size_t size,
                          const Elf64_Ehdr *eh, uint64_t shnum,
                          dynsym_facts *f) {
  const unsigned char *shtab;

  if (shnum == 0 || eh->e_shentsize < sizeof(Elf64_Shdr) ||
      (shtab = table(p, size, eh->e_shoff, shnum, eh->e_shentsize)) == NULL)
    return;
  /* The first .dynsym only: there is one, and one scan keeps the work
   * linear in the file's size. */
  for (uint64_t i = 0; i < shnum; i++) {
    Elf64_Shdr sh;
    memcpy(&sh, shtab + i * eh->e_shentsize, sizeof(sh));
    if (sh.sh_type == SHT_DYNSYM) {
      scan_dynsym(p, size, shtab, shnum, eh->e_shentsize, &sh, f);
      return;
    }
  }
}

static int pinned(char *why, size_t len, const char *fmt, ...)
    HS_PRINTF_(3, 4);

static int pinned(char *why, size_t len, const char *fmt, ...) {
  va_list ap;

  if (len > 0) {
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
  }
  return 1;
}

int hs_elf_pins(const void *data, size_t size, char *why, size_t len) {
  const unsigned char *p = data;
  uint64_t phnum, shnum;
  dynsym_facts f = {NULL, 0};
  char name[HS_PIN_NAME_MAX + 1];
  Elf64_Ehdr eh;

  if (len > 0)
    why[0] = '\0';
  if (p == NULL || size < sizeof(Elf64_Ehdr) ||
      memcmp(p, ELFMAG, SELFMAG) != 0 || p[EI_CLASS] != ELFCLASS64 ||
      p[EI_DATA] != HS_ELF_DATA)
    return 0;
  memcpy(&eh, p, sizeof(eh));
  header_counts(p, size, &eh, &phnum, &shnum);
  if (has_nodelete(p, size, &eh, phnum))
    return pinned(why, len,
                  "it is marked NODELETE (DF_1_NODELETE, from linking with "
                  "-z nodelete), so dlclose never unmaps it; link it "
                  "without -z nodelete");
  scan_sections(p, size, &eh, shnum, &f);
  if (f.unique != NULL) {
    if (demangle(f.unique, name, sizeof(name)) != 0) {
      size_t n = strlen(f.unique);
      if (n > HS_PIN_NAME_MAX)
        snprintf(name, sizeof(name), "%.*s...", HS_PIN_NAME_MAX - 3,
                 f.unique);
      else
        memcpy(name, f.unique, n + 1);
    }
    return pinned(why, len,
                  "it defines the STB_GNU_UNIQUE symbol %s, which is never "
                  "unloaded (a C++ inline or template static; build with "
                  "-fno-gnu-unique)",
                  name);
  }
  if (f.thread_atexit)
    return pinned(why, len,
                  "it has thread_local objects with destructors "
                  "(__cxa_thread_atexit), and glibc keeps it mapped once "
                  "one of them is constructed; use thread_local only for "
                  "types with trivial destructors");
  return 0;
}
