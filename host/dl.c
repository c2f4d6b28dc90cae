/* dl.c - dlopen/dlsym/dlclose with dlerror() copied at once. */
#include "dl.h"

#include <dlfcn.h>
#include <stddef.h>

void *hs_dl_open(const char *path, hs_error *err) {
  void *h;
  const char *msg;

  dlerror(); /* forget an earlier, unrelated error */
  h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h != NULL)
    return h;
  msg = dlerror();
  hs_error_set(err, HS_EDLOPEN, "open", "%s",
               msg != NULL ? msg : "dlopen failed without a reason");
  return NULL;
}

void *hs_dl_sym(void *handle, const char *symbol, const char *file,
                int code, const char *stage, hs_error *err) {
  void *p;

  dlerror();
  p = dlsym(handle, symbol);
  if (p != NULL)
    return p;
  /* A symbol whose value is NULL is as useless to us as a missing one; the
   * loader's text is the same for both. */
  dlerror();
  hs_error_set(err, code, stage, "%s does not export %s", file, symbol);
  return NULL;
}

int hs_dl_is_loaded(const char *path) {
  void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);

  if (h == NULL) {
    dlerror();
    return 0;
  }
  dlclose(h); /* drop the reference the probe took */
  return 1;
}

int hs_dl_close(void *handle, const char *path) {
  if (handle != NULL)
    dlclose(handle);
  dlerror();
  return !hs_dl_is_loaded(path);
}
