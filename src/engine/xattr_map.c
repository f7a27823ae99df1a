/*
 * xattr_map.c - see xattr_map.h.
 */
#include "engine/xattr_map.h"

#include <errno.h>
#include <string.h>

#define PREFIX_LEN (sizeof(FSB_XATTR_MAP_PREFIX) - 1)

static bool has_prefix(const char *name, const char *prefix)
{
    return strncmp(name, prefix, strlen(prefix)) == 0;
}

/* The namespaces a guest owns only through the mapping. */
static bool mapped_namespace(const char *name)
{
    return has_prefix(name, "trusted.") || has_prefix(name, "security.");
}

int xattr_map_to_host(const char *guest, char *host, size_t size)
{
    if (has_prefix(guest, FSB_XATTR_MAP_PREFIX))
        return -EPERM;
    size_t len = strlen(guest);
    const char *prefix = mapped_namespace(guest) ? FSB_XATTR_MAP_PREFIX : "";
    size_t plen = strlen(prefix);
    if (plen + len >= size)
        return -ERANGE;
    memcpy(host, prefix, plen);
    memcpy(host + plen, guest, len + 1);
    return 0;
}

/* The guest's name for the host name NAME, or NULL when it is hidden. */
static const char *guest_name(const char *name, bool privileged)
{
    if (has_prefix(name, FSB_XATTR_MAP_PREFIX)) {
        const char *g = name + PREFIX_LEN;
        if (has_prefix(g, "security.") || (privileged && has_prefix(g, "trusted.")))
            return g;
        return NULL; /* unprivileged trusted.*, or reserved for later use */
    }
    return mapped_namespace(name) ? NULL : name; /* the host's own are not the guest's */
}

size_t xattr_map_list_to_guest(char *list, size_t len, bool privileged)
{
    size_t out = 0;
    for (size_t off = 0; off < len;) {
        size_t n = strnlen(list + off, len - off);
        if (off + n == len)
            break; /* an unterminated tail: the host never sends one */
        const char *g = guest_name(list + off, privileged);
        if (g) {
            size_t glen = strlen(g) + 1;
            memmove(list + out, g, glen); /* never past OFF: G is a suffix of the name */
            out += glen;
        }
        off += n + 1;
    }
    return out;
}
