/*
 * vu_proto.h - the vhost-user wire format as the test frontend speaks it
 * (QEMU docs/interop/vhost-user.rst).  No system header carries the
 * vhost-user messages; the vring state and address payloads are the
 * kernel's <linux/vhost_types.h> structs, byte for byte.
 *
 * Written from the specification on purpose, not shared with the backend
 * in src/: a test that reused the backend's header could not catch a wrong
 * constant in it.
 */
#ifndef VU_PROTO_H
#define VU_PROTO_H

#include <linux/vhost_types.h>
#include <stdint.h>

enum vu_request {
    VU_GET_FEATURES = 1,
    VU_SET_FEATURES = 2,
    VU_SET_OWNER = 3,
    VU_RESET_OWNER = 4,
    VU_SET_MEM_TABLE = 5,
    VU_SET_LOG_BASE = 6,
    VU_SET_LOG_FD = 7,
    VU_SET_VRING_NUM = 8,
    VU_SET_VRING_ADDR = 9,
    VU_SET_VRING_BASE = 10,
    VU_GET_VRING_BASE = 11,
    VU_SET_VRING_KICK = 12,
    VU_SET_VRING_CALL = 13,
    VU_SET_VRING_ERR = 14,
    VU_GET_PROTOCOL_FEATURES = 15,
    VU_SET_PROTOCOL_FEATURES = 16,
    VU_GET_QUEUE_NUM = 17,
    VU_SET_VRING_ENABLE = 18,
    VU_SEND_RARP = 19,
    VU_NET_SET_MTU = 20,
    VU_SET_BACKEND_REQ_FD = 21,
    VU_IOTLB_MSG = 22,
    VU_SET_VRING_ENDIAN = 23,
    VU_GET_CONFIG = 24,
    VU_SET_CONFIG = 25,
    VU_RESET_DEVICE = 34,
    VU_VRING_KICK = 35,
    VU_GET_MAX_MEM_SLOTS = 36,
    VU_ADD_MEM_REG = 37,
    VU_REM_MEM_REG = 38,
    VU_SET_STATUS = 39,
    VU_GET_STATUS = 40,
};

/* Header flags: version 1 in bits 0-1, bit 2 reply, bit 3 need_reply. */
#define VU_VERSION 0x1u
#define VU_VERSION_MASK 0x3u
#define VU_FLAG_REPLY (1u << 2)
#define VU_FLAG_NEED_REPLY (1u << 3)

/* Virtio feature bit 30: GET/SET_PROTOCOL_FEATURES exist. */
#define VU_F_PROTOCOL_FEATURES 30

/* Protocol feature bits. */
#define VU_PROTOCOL_F_MQ 0
#define VU_PROTOCOL_F_LOG_SHMFD 1
#define VU_PROTOCOL_F_REPLY_ACK 3
#define VU_PROTOCOL_F_BACKEND_REQ 5
#define VU_PROTOCOL_F_CONFIG 9
#define VU_PROTOCOL_F_RESET_DEVICE 13
#define VU_PROTOCOL_F_INBAND_NOTIFICATIONS 14
#define VU_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15
#define VU_PROTOCOL_F_STATUS 16

/* SET_VRING_KICK/CALL/ERR payload: bits 0-7 the ring, bit 8 "no fd". */
#define VU_VRING_IDX_MASK 0xffu
#define VU_VRING_NOFD (1u << 8)

/* SET_MEM_TABLE carries at most this many regions (and fds). */
#define VU_MEM_TABLE_MAX 8

struct vu_header {
    uint32_t request;
    uint32_t flags;
    uint32_t size; /* payload bytes that follow */
} __attribute__((packed));

struct vu_region_desc {
    uint64_t guest_phys_addr;
    uint64_t memory_size;
    uint64_t userspace_addr;
    uint64_t mmap_offset;
};

struct vu_mem_table {
    uint32_t nregions;
    uint32_t padding;
    struct vu_region_desc regions[VU_MEM_TABLE_MAX];
};

/* ADD_MEM_REG / REM_MEM_REG. */
struct vu_mem_reg {
    uint64_t padding;
    struct vu_region_desc region;
};

/* The biggest payload a well-formed message of ours carries. */
#define VU_MAX_PAYLOAD sizeof(struct vu_mem_table)

#endif
