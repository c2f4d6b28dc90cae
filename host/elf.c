/* elf.c - checks a plugin file's ELF headers before dlopen sees it. */
#include "elf.h"

/* The kernel's copy of the ELF definitions: <elf.h> would find host/elf.h
 * first on this target's include path. */
#include <linux/elf.h>
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
