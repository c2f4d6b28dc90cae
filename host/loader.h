/*
 * loader.h - opens a plugin image and checks what it exports: the entry
 * symbol, the ABI version and the descriptor. Shared by the validator and
 * the live host, so both reject a version with the same words.
 */
#ifndef HS_LOADER_H
#define HS_LOADER_H

#include "err.h"
#include "hotswap.h"

typedef struct hs_image {
  void *handle;           /* dlopen handle; NULL when closed */
  const hs_plugin *desc;  /* the plugin's descriptor, inside the image */
} hs_image;

#include <stddef.h>

/* The smallest descriptor a plugin of each ABI version may have. */
#define HS_PLUGIN_SIZE_V1 offsetof(hs_plugin, on_io)
#define HS_PLUGIN_SIZE_V2                                                      \
  (offsetof(hs_plugin, on_config) + sizeof(((hs_plugin *)0)->on_config))
#define HS_PLUGIN_SIZE_V3 sizeof(hs_plugin) /* ABI 3 grew hs_api only */

/* 1 if the descriptor d is large enough to hold member m (a plugin built
 * for an older ABI has none of the later members). */
#define HS_DESC_HAS(d, m)                                                      \
  ((d)->size >= offsetof(hs_plugin, m) + sizeof((d)->m))

/* The largest state a plugin may ask for (1 GiB). */
#define HS_STATE_SIZE_MAX (1u << 30)

/*
 * dlopens path (RTLD_NOW | RTLD_LOCAL), finds HS_ENTRY_SYMBOL, calls it
 * with hs_api_get() and checks the descriptor with hs_loader_check. file is
 * the name used in messages (the watched file, not the cache copy).
 * Returns 0 with img filled, or a negative code with err filled (stages
 * "open", "entry", "abi") and nothing left loaded.
 */
int hs_loader_open(hs_image *img, const char *path, const char *file,
                   hs_error *err);

/*
 * Checks a descriptor: abi_version in 1..HS_ABI_VERSION (HS_EABI, quoting
 * both versions), size at least what its ABI version needs (HS_EDESC,
 * quoting both sizes), name, version, load and unload present, and
 * state_version >= 1 with state_size <= HS_STATE_SIZE_MAX (HS_EDESC).
 * Stage "abi". Returns 0 or the code with err filled.
 */
int hs_loader_check(const hs_plugin *desc, const char *file, hs_error *err);

/* dlcloses the image. Returns 1 if the object is really gone, 0 if the
 * dynamic loader keeps it mapped (the caller warns). img is cleared. */
int hs_loader_close(hs_image *img, const char *path);

#endif /* HS_LOADER_H */
