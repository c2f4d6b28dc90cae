/* elf.h - checks that bytes are a complete ELF shared object for this
 * machine before anything hands them to the dynamic loader. */
#ifndef HS_ELF_H
#define HS_ELF_H

#include <stddef.h>

#include "err.h"

/*
 * Checks data[0..size): ELF magic (else HS_ENOTELF), class, byte order and
 * e_machine of this host (else HS_EELFARCH, naming both machines), type
 * ET_DYN (else HS_ENOTELF: "is an executable, not a shared object"), and
 * that the program headers, every PT_LOAD segment's file bytes and the
 * section header table lie inside the file (else HS_ETRUNCATED, with the
 * expected and actual sizes). file names the file in messages; the stage
 * is "elf". Returns 0 or the code, with err filled.
 */
int hs_elf_check(const void *data, size_t size, const char *file,
                 hs_error *err);

#endif /* HS_ELF_H */
