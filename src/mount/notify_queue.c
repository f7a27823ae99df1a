/*
 * notify_queue.c - see notify_queue.h.  A singly linked FIFO under one
 * mutex; the delivery thread lives as long as the process.
 */
#include "mount/notify_queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

struct notify_msg {
    struct notify_msg *next;
    size_t len;
    unsigned char data[];
};

struct notify_queue {
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a message arrived */
    struct notify_msg *head, **tail;
    size_t bytes;
    bool overflow_logged;
    int dev_fd;
    notify_delivered_fn *delivered;
    void *arg;
};

static struct notify_msg *pop(struct notify_queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (!q->head)
        pthread_cond_wait(&q->changed, &q->lock);
    struct notify_msg *m = q->head;
    q->head = m->next;
    if (!q->head)
        q->tail = &q->head;
    q->bytes -= m->len;
    pthread_mutex_unlock(&q->lock);
    return m;
}

static void *delivery_main(void *arg)
{
    struct notify_queue *q = arg;
    for (;;) {
        struct notify_msg *m = pop(q);
        /* The kernel refuses notifications it does not know (EINVAL) or
         * whose inode is gone (ENOENT): the host's business, not ours. */
        int result = write(q->dev_fd, m->data, m->len) < 0 ? -errno : 0;
        if (result)
            log_debug("notification dropped by the kernel: %s", strerror(-result));
        if (q->delivered)
            q->delivered(q->arg, m->data, m->len, result);
        free(m);
    }
    return NULL;
}

int notify_queue_start(struct notify_queue **out, int dev_fd, notify_delivered_fn *delivered,
                       void *arg)
{
    struct notify_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->changed, NULL);
    q->tail = &q->head;
    q->dev_fd = dev_fd;
    q->delivered = delivered;
    q->arg = arg;
    pthread_t tid;
    int err = pthread_create(&tid, NULL, delivery_main, q);
    if (err) {
        free(q);
        return -err;
    }
    pthread_detach(tid);
    *out = q;
    return 0;
}

void notify_queue_push(struct notify_queue *q, const void *msg, size_t len)
{
    struct notify_msg *m = malloc(sizeof(*m) + len);
    if (!m) {
        log_debug("notification dropped: out of memory");
        return;
    }
    m->next = NULL;
    m->len = len;
    memcpy(m->data, msg, len);
    pthread_mutex_lock(&q->lock);
    bool full = q->bytes + len > NOTIFY_QUEUE_MAX_BYTES;
    bool first = full && !q->overflow_logged;
    if (!full) {
        *q->tail = m;
        q->tail = &m->next;
        q->bytes += len;
        pthread_cond_signal(&q->changed);
    }
    q->overflow_logged |= full;
    pthread_mutex_unlock(&q->lock);
    if (full)
        free(m);
    if (first)
        log_warn("the host sends notifications faster than the kernel takes them: dropping "
                 "some (the guest's cache may be stale)");
}
