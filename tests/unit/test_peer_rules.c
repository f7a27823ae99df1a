/*
 * test_peer_rules.c - which peer may connect to a listener and use an
 * export (src/transport/peer_rules.c): --allow-uid, a listener's cid= and
 * exports=, an export's cid=.
 */
#include "unit_check.h"
#include "transport/peer_rules.h"

#include <linux/vm_sockets.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

static struct fsb_peer unix_peer(uint32_t uid)
{
    return (struct fsb_peer){ .kind = FSB_PEER_UNIX, .uid = uid, .cid = VMADDR_CID_ANY };
}

static struct fsb_peer vsock_peer(uint32_t cid)
{
    return (struct fsb_peer){ .kind = FSB_PEER_VSOCK, .cid = cid };
}

static bool connects(const struct fsb_listener_rules *r, struct fsb_peer p)
{
    const char *why = NULL;
    bool ok = fsb_peer_may_connect(r, &p, &why);
    CHECK(ok == (why == NULL));
    return ok;
}

static void test_id_sets(void)
{
    struct fsb_id_set s = { 0 };
    CHECK(fsb_id_set_add(&s, "3:4", ':') == 0 && s.n == 2);
    CHECK(fsb_id_set_add(&s, "4294967295", ':') == 0 && fsb_id_set_has(&s, 4294967295u));
    CHECK(fsb_id_set_has(&s, 3) && fsb_id_set_has(&s, 4) && !fsb_id_set_has(&s, 5));
    struct fsb_id_set bad = { 0 };
    CHECK(fsb_id_set_add(&bad, "", ':') < 0);
    CHECK(fsb_id_set_add(&bad, "3:", ':') < 0);
    CHECK(fsb_id_set_add(&bad, ":3", ':') < 0);
    CHECK(fsb_id_set_add(&bad, "-1", ':') < 0);
    CHECK(fsb_id_set_add(&bad, "+1", ':') < 0);
    CHECK(fsb_id_set_add(&bad, "4294967296", ':') < 0);
    CHECK(fsb_id_set_add(&bad, "3,4", ':') < 0);
    struct fsb_id_set full = { 0 };
    for (int i = 0; i < FSB_ID_SET_MAX; i++)
        CHECK(fsb_id_set_add(&full, "7", ',') == 0);
    CHECK(fsb_id_set_add(&full, "7", ',') < 0);
}

static void test_allow_uid(void)
{
    struct fsb_id_set uids = { 0 };
    struct fsb_listener_rules r = { .uids = &uids, .exports = FSB_ALL_EXPORTS };
    CHECK(connects(&r, unix_peer(1000)));          /* no list: anyone */
    fsb_id_set_add(&uids, "1000,1001", ',');
    CHECK(connects(&r, unix_peer(1000)) && connects(&r, unix_peer(1001)));
    CHECK(!connects(&r, unix_peer(1002)));
    CHECK(!connects(&r, unix_peer(0)));             /* root is not implied */
    CHECK(connects(&r, vsock_peer(3)));             /* a guest has no uid */
}

static void test_listener_cids(void)
{
    struct fsb_listener_rules r = { .exports = FSB_ALL_EXPORTS };
    CHECK(connects(&r, vsock_peer(3)));
    fsb_id_set_add(&r.cids, "3:5", ':');
    CHECK(connects(&r, vsock_peer(3)) && connects(&r, vsock_peer(5)));
    CHECK(!connects(&r, vsock_peer(4)));
    CHECK(!connects(&r, vsock_peer(VMADDR_CID_ANY)));
    /* an inherited fd: listener with cid= that turns out not to be vsock */
    CHECK(!connects(&r, unix_peer(0)));
    CHECK(!connects(&r, (struct fsb_peer){ .kind = FSB_PEER_OTHER }));
}

/* vsock_loopback lets any local user connect from CID 1: the local CIDs
 * are no guests and need naming. */
static void test_local_cids(void)
{
    struct fsb_listener_rules r = { .exports = FSB_ALL_EXPORTS };
    CHECK(!connects(&r, vsock_peer(VMADDR_CID_HYPERVISOR)));
    CHECK(!connects(&r, vsock_peer(VMADDR_CID_LOCAL)));
    CHECK(!connects(&r, vsock_peer(VMADDR_CID_HOST)));
    CHECK(connects(&r, vsock_peer(3)));
    fsb_id_set_add(&r.cids, "1:3", ':');
    CHECK(connects(&r, vsock_peer(VMADDR_CID_LOCAL)));
    CHECK(!connects(&r, vsock_peer(VMADDR_CID_HOST)));
}

static void test_exports_of_a_peer(void)
{
    static struct fsb_export ex[3];
    strcpy(ex[0].name, "vm1");
    strcpy(ex[1].name, "vm2");
    strcpy(ex[2].name, "shared");
    fsb_id_set_add(&ex[0].vsock_cids, "3", ':');
    fsb_id_set_add(&ex[1].vsock_cids, "4", ':');
    struct fsb_listener_rules all = { .exports = FSB_ALL_EXPORTS };
    struct fsb_peer g3 = vsock_peer(3), g4 = vsock_peer(4), g9 = vsock_peer(9);
    CHECK(fsb_peer_exports(&all, &g3, ex, 3) == 0x5);  /* vm1, shared */
    CHECK(fsb_peer_exports(&all, &g4, ex, 3) == 0x6);  /* vm2, shared */
    CHECK(fsb_peer_exports(&all, &g9, ex, 3) == 0x4);  /* shared only */
    CHECK(fsb_peer_may_use(&all, &g3, 0, &ex[0]) && !fsb_peer_may_use(&all, &g3, 1, &ex[1]));
    /* the listener's exports= narrows further */
    struct fsb_listener_rules only_vm2 = { .exports = 0x2 };
    CHECK(fsb_peer_exports(&only_vm2, &g3, ex, 3) == 0);
    CHECK(fsb_peer_exports(&only_vm2, &g4, ex, 3) == 0x2);
    /* a Unix peer (a VM's own hybrid-vsock socket) has no CID: an export
     * kept for some CIDs reaches it only through a listener whose exports=
     * names it */
    struct fsb_peer u = unix_peer(0);
    CHECK(fsb_peer_exports(&all, &u, ex, 3) == 0x4);
    CHECK(fsb_peer_exports(&only_vm2, &u, ex, 3) == 0x2);
    CHECK(!fsb_peer_may_use(&only_vm2, &u, 0, &ex[0]));
    CHECK(!fsb_peer_may_use(&all, &u, 64, &ex[0]));   /* no 65th export */
}

static void test_peer_of_unix(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    struct fsb_peer p;
    CHECK(fsb_peer_of(sv[0], (struct sockaddr *)&sun, &p) == 0);
    CHECK(p.kind == FSB_PEER_UNIX && p.uid == (uint32_t)geteuid());
    struct sockaddr_vm svm = { .svm_family = AF_VSOCK, .svm_cid = 42 };
    CHECK(fsb_peer_of(sv[0], (struct sockaddr *)&svm, &p) == 0);
    CHECK(p.kind == FSB_PEER_VSOCK && p.cid == 42);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    static const struct unit_test tests[] = {
        TEST(test_id_sets),
        TEST(test_allow_uid),
        TEST(test_listener_cids),
        TEST(test_local_cids),
        TEST(test_exports_of_a_peer),
        TEST(test_peer_of_unix),
    };
    return RUN_TESTS(tests);
}
