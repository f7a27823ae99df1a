/*
 * peer_rules.c - see peer_rules.h.
 */
#include "transport/peer_rules.h"

#include <errno.h>
#include <linux/vm_sockets.h>

int fsb_peer_of(int fd, const struct sockaddr *sa, struct fsb_peer *out)
{
    *out = (struct fsb_peer){ .kind = FSB_PEER_OTHER, .cid = VMADDR_CID_ANY };
    if (sa->sa_family == AF_VSOCK) {
        out->kind = FSB_PEER_VSOCK;
        out->cid = ((const struct sockaddr_vm *)sa)->svm_cid;
    } else if (sa->sa_family == AF_UNIX) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
            return -errno;
        out->kind = FSB_PEER_UNIX;
        out->uid = cred.uid;
    }
    return 0;
}

bool fsb_peer_may_connect(const struct fsb_listener_rules *r, const struct fsb_peer *p,
                          const char **why)
{
    if (p->kind == FSB_PEER_UNIX && r->uids && r->uids->n && !fsb_id_set_has(r->uids, p->uid)) {
        *why = "uid not in --allow-uid";
        return false;
    }
    if (r->cids.n && (p->kind != FSB_PEER_VSOCK || !fsb_id_set_has(&r->cids, p->cid))) {
        *why = "CID not in the listener's cid=";
        return false;
    }
    if (p->kind == FSB_PEER_VSOCK && fsb_vsock_cid_is_local(p->cid) &&
        !fsb_id_set_has(&r->cids, p->cid)) {
        *why = "a local vsock CID (0-2: this host's own users) not named in cid=";
        return false;
    }
    return true;
}

/*
 * CIDs 0 (hypervisor), 1 (local loopback) and 2 (the host) are not guests:
 * with vsock_loopback loaded, any local user of the host connects from
 * CID 1, past the Unix sockets' modes and --allow-uid.  Such peers are
 * refused unless a listener's cid= names them.
 */
bool fsb_vsock_cid_is_local(uint32_t cid)
{
    return cid <= VMADDR_CID_HOST;
}

bool fsb_peer_may_use(const struct fsb_listener_rules *r, const struct fsb_peer *p, unsigned i,
                      const struct fsb_export *exp)
{
    if (i >= 64 || !(r->exports >> i & 1))
        return false;
    if (exp->vsock_cids.n == 0)
        return true;
    /* An export kept for some CIDs is not served to a peer with no CID (a
     * Unix socket) unless that listener's exports= names it: a VM on its
     * own hybrid-vsock socket must not reach another VM's export by
     * default. */
    if (p->kind != FSB_PEER_VSOCK)
        return r->exports != FSB_ALL_EXPORTS;
    return fsb_id_set_has(&exp->vsock_cids, p->cid);
}

fsb_export_mask fsb_peer_exports(const struct fsb_listener_rules *r, const struct fsb_peer *p,
                                 const struct fsb_export *exports, unsigned n)
{
    fsb_export_mask m = 0;
    for (unsigned i = 0; i < n && i < 64; i++)
        if (fsb_peer_may_use(r, p, i, &exports[i]))
            m |= (fsb_export_mask)1 << i;
    return m;
}
