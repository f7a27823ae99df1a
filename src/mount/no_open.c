/*
 * no_open.c - see no_open.h.
 */
#include "mount/no_open.h"

#include "transport/stream_hello.h"

const char *no_open_refusal(const struct relay_config *cfg)
{
    uint32_t terms = cfg->terms.features;
    if (!(terms & FSB_TERMS_NO_OPEN))
        return "the host does not take fh 0 (version 5 hosts do)";
    if (cfg->version < FSB_STREAM_VERSION_CREATED_IDS)
        return "the host would keep every created file open (version 7 hosts do not)";
    if (!(terms & FSB_TERMS_PUSHES))
        return "the export does not push host changes (cache=coherent)";
    if (!(terms & FSB_TERMS_QUIET_CLOSE))
        return "the export's close is not quiet";
    if (cfg->host_checks_permissions)
        return "no_default_permissions";
    return NULL;
}

bool no_open_answers(bool in_force, const struct fuse_in_header *ih)
{
    return in_force && (ih->opcode == FUSE_OPEN || ih->opcode == FUSE_FLUSH);
}
