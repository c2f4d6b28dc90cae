/*
 * config.h - a plugin's NAME.conf beside it: lines "key = value", blank
 * lines and '#' comments ignored, blanks around key and value trimmed.
 */
#ifndef HS_CONFIG_H
#define HS_CONFIG_H

#include <stdint.h>

typedef struct hs_config {
  char *text;       /* owned: the file, cut into NUL-terminated keys/values */
  char **keys;      /* owned array; the strings point into text */
  char **values;
  unsigned n;
  uint64_t hash;    /* of the file's bytes; 0 when there is no file */
} hs_config;

/* Reads name (relative to dirfd; a missing file is an empty config) into
 * c, replacing what c held. Returns 0, or a negative code (-errno, HS_ENOMEM;
 * c is then empty). A later key wins over an earlier one. */
int hs_config_load(hs_config *c, int dirfd, const char *name);

/* The value of key, or NULL. */
const char *hs_config_get(const hs_config *c, const char *key);

/* Frees c; it is empty (and reusable) afterwards. */
void hs_config_free(hs_config *c);

#endif /* HS_CONFIG_H */
