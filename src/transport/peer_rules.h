/*
 * peer_rules.h - who is at the other end of an accepted connection, and
 * whether the listener's rules let it in.
 *
 * A Unix peer is known by its uid (SO_PEERCRED, the kernel's word, not the
 * peer's), a vsock peer by its CID (the kernel's too: vhost-vsock stamps
 * it).  The rules are pure functions of that and the command line, so the
 * decisions are unit-tested (tests/unit/test_peer_rules.c).
 */
#ifndef FSB_PEER_RULES_H
#define FSB_PEER_RULES_H

#include "common/id_set.h"
#include "engine/session.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

enum fsb_peer_kind { FSB_PEER_OTHER, FSB_PEER_UNIX, FSB_PEER_VSOCK };

struct fsb_peer {
    enum fsb_peer_kind kind;
    uint32_t cid;              /* FSB_PEER_VSOCK */
    uint32_t uid;              /* FSB_PEER_UNIX */
};

/* A set of exports by index (options.c allows at most 64). */
typedef uint64_t fsb_export_mask;
#define FSB_ALL_EXPORTS (~(fsb_export_mask)0)

/* What one listener lets in, and serves. */
struct fsb_listener_rules {
    const struct fsb_id_set *uids; /* --allow-uid (Unix peers); NULL or empty: any */
    struct fsb_id_set cids;        /* ,cid=: the vsock peers it accepts; empty: any */
    fsb_export_mask exports;       /* ,exports=: what it serves (FSB_ALL_EXPORTS) */
};

/* Who is connected on FD, accepted with address SA.  Returns 0, or -errno
 * when a Unix peer's credentials cannot be read. */
int fsb_peer_of(int fd, const struct sockaddr *sa, struct fsb_peer *out);

/* Whether P may connect at all; *why says what refused it.  A listener
 * with a CID list accepts vsock peers only; a local vsock CID (0-2) only
 * when its cid= names it. */
bool fsb_peer_may_connect(const struct fsb_listener_rules *r, const struct fsb_peer *p,
                          const char **why);

/*
 * Whether P, connected through R, may use export EXP (number I): the
 * listener serves it, and a vsock peer's CID is in the export's cid= list
 * when it has one.  Peers that are not vsock have no CID: for them (a
 * Firecracker VM's own hybrid-vsock socket, say) an export with cid= is
 * served only when the listener's exports= names it explicitly.
 */
bool fsb_peer_may_use(const struct fsb_listener_rules *r, const struct fsb_peer *p, unsigned i,
                      const struct fsb_export *exp);

/* Whether CID is the hypervisor's, the loopback's or the host's own. */
bool fsb_vsock_cid_is_local(uint32_t cid);

/* The exports of EXPORTS[0..N) that P may use (bit i: EXPORTS[i]); all a
 * HELLO or a matchlock path can reach. */
fsb_export_mask fsb_peer_exports(const struct fsb_listener_rules *r, const struct fsb_peer *p,
                                 const struct fsb_export *exports, unsigned n);

#endif
