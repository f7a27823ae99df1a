/*
 * vu_frontend.h - the frontend side of vhost-user, as QEMU drives a
 * vhost-user-fs backend: the control messages on the Unix socket, the
 * guest memory (vu_mem) and the virtqueues (vu_ring).
 *
 * Start-up follows QEMU 7.2: GET_FEATURES, GET/SET_PROTOCOL_FEATURES,
 * GET_QUEUE_NUM, GET_MAX_MEM_SLOTS, SET_OWNER; then at driver start
 * SET_FEATURES, the memory table (SET_MEM_TABLE, or ADD_MEM_REG per region),
 * and per ring NUM, BASE, ADDR, KICK, CALL, ERR, ENABLE.  With REPLY_ACK
 * every message that has no reply of its own asks for one.
 *
 * Errors: functions return 0 or a negative errno and leave a one-line
 * explanation in fe->error.  -ECONNRESET means the backend closed the
 * connection, -ETIMEDOUT that it did not answer in time.
 */
#ifndef VU_FRONTEND_H
#define VU_FRONTEND_H

#include "vu_mem.h"
#include "vu_proto.h"
#include "vu_ring.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Queue 0 is hiprio; up to 8 request queues. */
#define VU_MAX_RINGS 9

struct vu_options {
    unsigned request_queues;   /* request queues to set up (1..8) */
    uint16_t queue_size;
    bool indirect;             /* use INDIRECT_DESC if offered */
    bool event_idx;            /* use EVENT_IDX if offered */
    bool mem_slots;            /* ADD_MEM_REG instead of SET_MEM_TABLE, if offered */
    bool reply_ack;            /* negotiate REPLY_ACK if offered */
    int timeout_ms;            /* for every reply */
    uint64_t region_size[VU_MEM_REGIONS];
};

/* 1 request queue of 128, indirect and event-idx, REPLY_ACK, 2 s. */
void vu_options_default(struct vu_options *o);

struct vu_frontend {
    int sock;
    pid_t backend_pid;          /* from SO_PEERCRED */
    struct vu_options opt;
    uint64_t backend_features, features;    /* offered; acknowledged */
    uint64_t backend_protocol, protocol;    /* offered; acknowledged */
    uint64_t queue_num;                     /* GET_QUEUE_NUM, 0 without MQ */
    uint64_t max_mem_slots;                 /* GET_MAX_MEM_SLOTS, 0 without */
    struct vu_mem mem;
    unsigned nrings;                        /* hiprio + request queues */
    struct vu_ring ring[VU_MAX_RINGS];
    char error[512];
};

bool vu_has_protocol(const struct vu_frontend *fe, unsigned bit);

/* Connects to PATH (retrying while nothing listens, up to the timeout) and
 * prepares memory and rings; no message is sent yet. */
int vu_connect(struct vu_frontend *fe, const char *path, const struct vu_options *opt);
/* The same over an already connected socket (taken over). */
int vu_attach(struct vu_frontend *fe, int sock, const struct vu_options *opt);
/* Feature and protocol negotiation up to SET_OWNER. */
int vu_handshake(struct vu_frontend *fe);
/* SET_FEATURES, memory table, every ring set up and enabled. */
int vu_start(struct vu_frontend *fe);
/* connect + handshake + start. */
int vu_setup(struct vu_frontend *fe, const char *path, const struct vu_options *opt);
void vu_close(struct vu_frontend *fe);

/* The memory table messages (SET_MEM_TABLE of every region, or ADD_MEM_REG
 * of each with mem_slots). */
int vu_send_memory(struct vu_frontend *fe);
/* ADD_MEM_REG / REM_MEM_REG of our region I (CONFIGURE_MEM_SLOTS). */
int vu_add_region(struct vu_frontend *fe, unsigned i);
int vu_remove_region(struct vu_frontend *fe, unsigned i);
/* NUM, BASE, ADDR, KICK, CALL, ERR and ENABLE of ring I: the backend
 * starts reading the avail ring at index BASE. */
int vu_setup_ring(struct vu_frontend *fe, unsigned i, uint16_t base);
/* GET_VRING_BASE: stops ring I; *BASE is the backend's next avail index. */
int vu_stop_ring(struct vu_frontend *fe, unsigned i, uint32_t *base);
/* A guest reset: GET_VRING_BASE of every ring, fresh rings, vu_start. */
int vu_restart(struct vu_frontend *fe);
int vu_reset_device(struct vu_frontend *fe);

/* ---- messages ---------------------------------------------------------- */

/* Sends one message (header + payload) with FDS as SCM_RIGHTS. */
int vu_send(struct vu_frontend *fe, uint32_t request, uint32_t flags, const void *payload,
            uint32_t size, const int *fds, unsigned nfds);
/* Sends LEN raw bytes (hostile: no header of ours). */
int vu_send_bytes(struct vu_frontend *fe, const void *bytes, size_t len, const int *fds,
                  unsigned nfds);
/* Receives one message; its payload (at most MAX bytes kept) into PAYLOAD.
 * Received fds are closed. */
int vu_recv(struct vu_frontend *fe, struct vu_header *h, void *payload, size_t max,
            int timeout_ms);
/* A message without a reply of its own: with REPLY_ACK it asks for the
 * ack and waits; a non-zero ack is -EREMOTEIO. */
int vu_request(struct vu_frontend *fe, uint32_t request, const void *payload, uint32_t size,
               const int *fds, unsigned nfds);
/* A message with a reply of its own (GET_*): REPLY of exactly REPLY_SIZE
 * bytes. */
int vu_query(struct vu_frontend *fe, uint32_t request, const void *payload, uint32_t size,
             void *reply, uint32_t reply_size);
/* Waits for a reply to REQUEST; payload of exactly SIZE bytes. */
int vu_wait_reply(struct vu_frontend *fe, uint32_t request, void *payload, uint32_t size);

/* True when the backend has closed its end (nothing more to read). */
bool vu_peer_closed(struct vu_frontend *fe, int timeout_ms);

/* Records a message in fe->error; returns ERR. */
int vu_fail(struct vu_frontend *fe, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *vu_request_name(uint32_t request);

#endif
