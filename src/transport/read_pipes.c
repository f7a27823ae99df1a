/*
 * read_pipes.c - see read_pipes.h.
 */
#include "transport/read_pipes.h"

#include <pthread.h>
#include <unistd.h>

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fsb_pipe pipes[READ_PIPES];
static bool busy[READ_PIPES];
static unsigned npipes;

int read_pipes_open(size_t max_data)
{
    /* One slot more for a READ that starts inside a page. */
    size_t want = max_data + (size_t)sysconf(_SC_PAGESIZE);
    int err = 0;
    while (npipes < READ_PIPES && !(err = fsb_pipe_open(&pipes[npipes], want)))
        npipes++;
    return npipes ? 0 : err;
}

struct fsb_pipe *read_pipe_take(size_t size, off_t offset)
{
    if (size < READ_PIPE_MIN_SIZE)
        return NULL;
    struct fsb_pipe *p = NULL;
    pthread_mutex_lock(&pool_lock);
    for (unsigned i = 0; i < npipes && !p; i++) {
        if (!busy[i] && fsb_pipe_file_slots(size, offset) <= pipes[i].slots) {
            busy[i] = true;
            p = &pipes[i];
        }
    }
    pthread_mutex_unlock(&pool_lock);
    return p;
}

void read_pipe_give(struct fsb_pipe *p, bool empty)
{
    if (!empty) {
        fsb_pipe_close(p);
        p->slots = 0; /* busy for ever: take() never fits it again */
    }
    pthread_mutex_lock(&pool_lock);
    busy[p - pipes] = false;
    pthread_mutex_unlock(&pool_lock);
}
