/* placeholder: replaced by the example plugin */
#include "hotswap.h"
static int ld(hs_ctx *c, void *s, hs_load_reason r) { (void)c, (void)s, (void)r; return 0; }
static void ul(hs_ctx *c, void *s, hs_unload_reason r) { (void)c, (void)s, (void)r; }
static const hs_plugin d = {HS_ABI_VERSION, sizeof(hs_plugin), "x", "0", 1, 0, ld, ul, 0, 0, 0};
HS_EXPORT const hs_plugin *hotswap_plugin_entry(const hs_api *a) { (void)a; return &d; }
