/*
 * no_open.c - see no_open.h.
 */
#include "mount/no_open.h"

#include "transport/stream_hello.h"

const char *no_open_refusal(const struct relay_config *cfg)
{
    if (cfg->open_mode != RELAY_OPEN_NONE)
        return "not asked for";
    if (!(cfg->terms.features & FSB_TERMS_NO_OPEN))
        return "the host does not take fh 0 (version 5 hosts do)";
    if (!(cfg->terms.features & FSB_TERMS_PUSHES))
        return "the export does not push host changes (cache=coherent)";
    if (cfg->host_checks_permissions)
        return "no_default_permissions";
    return NULL;
}

bool no_open_answers(bool in_force, bool quiet, const struct fuse_in_header *ih)
{
    return in_force && (ih->opcode == FUSE_OPEN || (quiet && ih->opcode == FUSE_FLUSH));
}
