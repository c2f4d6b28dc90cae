/* loader.c - opens a plugin image and checks its entry and descriptor. */
#include "loader.h"

#include <string.h>

#include "api.h"
#include "dl.h"

/* The smallest descriptor each ABI version may have; index = version. */
static const size_t min_desc_size[] = {
    0,
    HS_PLUGIN_SIZE_V1,
    HS_PLUGIN_SIZE_V2,
    HS_PLUGIN_SIZE_V3,
};
_Static_assert(sizeof(min_desc_size) / sizeof(min_desc_size[0]) ==
                   HS_ABI_VERSION + 1,
               "min_desc_size needs one entry per ABI version");

int hs_loader_check(const hs_plugin *desc, const char *file, hs_error *err) {
  const char *missing = NULL;

  /* Version and size first: nothing past them is read before they pass. */
  if (desc->abi_version == 0 || desc->abi_version > HS_ABI_VERSION)
    return hs_error_set(err, HS_EABI, "abi",
                        "%s was built for plugin ABI %u; this host speaks "
                        "ABI %d",
                        file, (unsigned)desc->abi_version, HS_ABI_VERSION);
  if (desc->size < min_desc_size[desc->abi_version])
    return hs_error_set(err, HS_EDESC, "abi",
                        "descriptor of %s is %u bytes; ABI %u needs at "
                        "least %zu",
                        file, (unsigned)desc->size,
                        (unsigned)desc->abi_version,
                        min_desc_size[desc->abi_version]);
  if (desc->name == NULL)
    missing = "name";
  else if (desc->version == NULL)
    missing = "version string";
  else if (desc->load == NULL)
    missing = "load callback";
  else if (desc->unload == NULL)
    missing = "unload callback";
  if (missing != NULL)
    return hs_error_set(err, HS_EDESC, "abi", "descriptor of %s has no %s",
                        file, missing);
  if (desc->state_version == 0)
    return hs_error_set(err, HS_EDESC, "abi",
                        "descriptor of %s has state_version 0; it must be 1 "
                        "or more",
                        file);
  if (desc->state_size > HS_STATE_SIZE_MAX)
    return hs_error_set(err, HS_EDESC, "abi",
                        "descriptor of %s asks for %u bytes of state; the "
                        "limit is %u",
                        file, (unsigned)desc->state_size, HS_STATE_SIZE_MAX);
  return 0;
}

int hs_loader_open(hs_image *img, const char *path, const char *file,
                   hs_error *err) {
  hs_entry_fn *entry;
  const hs_plugin *desc;
  void *handle, *sym;
  int rc;

  img->handle = NULL;
  img->desc = NULL;
  handle = hs_dl_open(path, err);
  if (handle == NULL)
    return hs_error_set(err, HS_EDLOPEN, "open", "cannot load %s: %s", file,
                        err != NULL ? err->msg : "dlopen failed");
  sym = hs_dl_sym(handle, HS_ENTRY_SYMBOL, file, HS_ENOENTRY, "entry", err);
  if (sym == NULL) {
    rc = HS_ENOENTRY;
    goto fail;
  }
  memcpy(&entry, &sym, sizeof(entry)); /* object to function pointer */
  desc = entry(hs_api_get());
  if (desc == NULL) {
    rc = hs_error_set(err, HS_EDESC, "entry",
                      HS_ENTRY_SYMBOL " of %s returned NULL", file);
    goto fail;
  }
  if ((rc = hs_loader_check(desc, file, err)) != 0)
    goto fail;
  img->handle = handle;
  img->desc = desc;
  return 0;

fail:
  hs_dl_close(handle, path);
  return rc;
}

int hs_loader_close(hs_image *img, const char *path) {
  int gone;

  if (img->handle == NULL)
    return 1;
  gone = hs_dl_close(img->handle, path);
  img->handle = NULL;
  img->desc = NULL;
  return gone;
}
