/* config.c - NAME.conf files; see config.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "file.h"
#include "hotswap.h"

static char *trim(char *s, char *end) {
  while (s < end && (*s == ' ' || *s == '\t'))
    s++;
  while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
    end--;
  *end = '\0';
  return s;
}

int hs_config_load(hs_config *c, int dirfd, const char *name) {
  struct stat st;
  hs_config_free(c);
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return errno == ENOENT ? 0 : -errno;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 20)) {
    close(fd);
    return HS_EINVAL;
  }
  size_t size = (size_t)st.st_size, got = 0;
  c->text = malloc(size + 1);
  c->keys = calloc(size / 2 + 1, sizeof(char *));
  c->values = calloc(size / 2 + 1, sizeof(char *));
  if (!c->text || !c->keys || !c->values) {
    close(fd);
    hs_config_free(c);
    return HS_ENOMEM;
  }
  got = hs_file_read(fd, c->text, size, 0);
  close(fd);
  c->text[got] = '\0';
  c->hash = hs_hash(c->text, got) | 1; /* never 0: 0 means no file */
  for (char *line = c->text; line && *line;) {
    char *nl = strchr(line, '\n'), *end = nl ? nl : line + strlen(line);
    char *next = nl ? nl + 1 : NULL, *hash = memchr(line, '#', (size_t)(end - line));
    char *eq = memchr(line, '=', (size_t)(end - line));
    if (hash && (!eq || hash < eq))
      eq = NULL;
    if (hash)
      end = hash;
    if (eq && eq < end) {
      char *key = trim(line, eq), *value = trim(eq + 1, end);
      if (*key) {
        unsigned i;
        for (i = 0; i < c->n && strcmp(c->keys[i], key) != 0; i++) {
        }
        c->keys[i] = key;
        c->values[i] = value;
        if (i == c->n)
          c->n++;
      }
    }
    line = next;
  }
  return 0;
}

const char *hs_config_get(const hs_config *c, const char *key) {
  for (unsigned i = 0; key && i < c->n; i++)
    if (strcmp(c->keys[i], key) == 0)
      return c->values[i];
  return NULL;
}

void hs_config_free(hs_config *c) {
  free(c->text);
  free(c->keys);
  free(c->values);
  memset(c, 0, sizeof(*c));
}
