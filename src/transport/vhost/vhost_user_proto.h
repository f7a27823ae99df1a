/*
 * vhost_user_proto.h - the vhost-user wire format (QEMU
 * docs/interop/vhost-user.rst), backend side.  No system header carries
 * it; <linux/vhost_types.h> has the vring state/address structs, which the
 * protocol reuses byte for byte.
 */
#ifndef FSB_VHOST_USER_PROTO_H
#define FSB_VHOST_USER_PROTO_H

#include <linux/vhost_types.h>
#include <stdint.h>

enum vhost_user_request {
    VHOST_USER_GET_FEATURES = 1,
    VHOST_USER_SET_FEATURES = 2,
    VHOST_USER_SET_OWNER = 3,
    VHOST_USER_RESET_OWNER = 4,
    VHOST_USER_SET_MEM_TABLE = 5,
    VHOST_USER_SET_LOG_BASE = 6,
    VHOST_USER_SET_LOG_FD = 7,
    VHOST_USER_SET_VRING_NUM = 8,
    VHOST_USER_SET_VRING_ADDR = 9,
    VHOST_USER_SET_VRING_BASE = 10,
    VHOST_USER_GET_VRING_BASE = 11,
    VHOST_USER_SET_VRING_KICK = 12,
    VHOST_USER_SET_VRING_CALL = 13,
    VHOST_USER_SET_VRING_ERR = 14,
    VHOST_USER_GET_PROTOCOL_FEATURES = 15,
    VHOST_USER_SET_PROTOCOL_FEATURES = 16,
    VHOST_USER_GET_QUEUE_NUM = 17,
    VHOST_USER_SET_VRING_ENABLE = 18,
    VHOST_USER_RESET_DEVICE = 34,
    VHOST_USER_GET_MAX_MEM_SLOTS = 36,
    VHOST_USER_ADD_MEM_REG = 37,
    VHOST_USER_REM_MEM_REG = 38,
};

/* Header flags. */
#define VHOST_USER_VERSION 0x1u
#define VHOST_USER_VERSION_MASK 0x3u
#define VHOST_USER_REPLY_MASK (1u << 2)
#define VHOST_USER_NEED_REPLY_MASK (1u << 3)

/* Protocol feature bits. */
#define VHOST_USER_PROTOCOL_F_MQ 0
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3
#define VHOST_USER_PROTOCOL_F_RESET_DEVICE 13
#define VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15

/* Virtio feature bit 30: the frontend may use GET/SET_PROTOCOL_FEATURES. */
#define VHOST_USER_F_PROTOCOL_FEATURES 30

/* SET_VRING_KICK/CALL/ERR: bits 0-7 the ring, bit 8 "no fd". */
#define VHOST_USER_VRING_IDX_MASK 0xffu
#define VHOST_USER_VRING_NOFD_MASK (1u << 8)

/* At most this many fds ride on one message (SET_MEM_TABLE's regions). */
#define VHOST_USER_MAX_FDS 8
#define VHOST_USER_MEM_TABLE_REGIONS 8

struct vhost_user_header {
    uint32_t request;
    uint32_t flags;
    uint32_t size; /* of the payload that follows */
} __attribute__((packed));

struct vhost_user_region {
    uint64_t guest_phys_addr;
    uint64_t memory_size;
    uint64_t userspace_addr;
    uint64_t mmap_offset;
};

struct vhost_user_mem_table {
    uint32_t nregions;
    uint32_t padding;
    struct vhost_user_region regions[VHOST_USER_MEM_TABLE_REGIONS];
};

/* ADD_MEM_REG / REM_MEM_REG. */
struct vhost_user_mem_reg {
    uint64_t padding;
    struct vhost_user_region region;
};

union vhost_user_payload {
    uint64_t u64;
    struct vhost_vring_state state;
    struct vhost_vring_addr addr;
    struct vhost_user_mem_table mem_table;
    struct vhost_user_mem_reg mem_reg;
};

#endif
