/* dl.h - thin wrappers over dlopen/dlsym/dlclose that copy dlerror() at
 * once into an hs_error. */
#ifndef HS_DL_H
#define HS_DL_H

#include "err.h"

/* dlopen(path, RTLD_NOW | RTLD_LOCAL). Returns the handle, or NULL with
 * err = HS_EDLOPEN, stage "open", and dlerror()'s text. */
void *hs_dl_open(const char *path, hs_error *err);

/* dlsym. Returns the address, or NULL with err = code, stage, and a
 * message naming symbol and file. */
void *hs_dl_sym(void *handle, const char *symbol, const char *file,
                int code, const char *stage, hs_error *err);

/* dlclose. Returns 1 if the object at path is really gone afterwards
 * (dlopen RTLD_NOLOAD finds nothing), 0 if it stays mapped (then the
 * probe's extra reference is dropped again). */
int hs_dl_close(void *handle, const char *path);

/* Returns 1 if an object with this path is currently loaded. */
int hs_dl_is_loaded(const char *path);

#endif /* HS_DL_H */
