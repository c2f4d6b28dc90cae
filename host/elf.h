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

/*
 * Tells ahead of time whether the dynamic loader will keep the object
 * data[0..size) mapped after its last dlclose, so that every reload of it
 * leaves the old version in memory. Reads only what it bounds-checks: it
 * runs on untrusted files and never reads outside data[0..size); bytes it
 * cannot parse count as "does not pin". Looks for, in this order:
 *   - DF_1_NODELETE in the DT_FLAGS_1 entry of PT_DYNAMIC (-z nodelete);
 *   - a defined STB_GNU_UNIQUE symbol in .dynsym (C++ inline and template
 *     statics of default visibility, unless built with -fno-gnu-unique);
 *   - an undefined, non-weak reference in .dynsym to __cxa_thread_atexit or
 *     __cxa_thread_atexit_impl (thread_local objects with destructors;
 *     glibc pins an object once one of its destructors is registered).
 *     A weak reference is not counted: Rust's std and static libstdc++
 *     carry one in every library whether or not a destructor is ever
 *     registered, and the host's dlclose check still sees a real pin.
 * Returns 1 when the object pins itself, with why (when len > 0) set to a
 * clause to put after "FILE cannot be unloaded: " that gives the cause and
 * the fix, e.g. "it defines the STB_GNU_UNIQUE symbol a::b, which is never
 * unloaded (...; build with -fno-gnu-unique)". Returns 0 otherwise, with
 * why set to "". May be called on any bytes at any time; no side effects.
 */
int hs_elf_pins(const void *data, size_t size, char *why, size_t len);

#endif /* HS_ELF_H */
