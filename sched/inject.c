/* The injection queue: where tasks enter a runtime from outside its
 * workers (spawned by a plain thread, woken by another runtime's task or,
 * later, by the reactor and timers), and where a task goes if its worker's
 * deque cannot grow (out of memory).
 *
 * An intrusive FIFO list under a mutex, not ck_ring or ck_fifo: it must
 * never fail and never block its producers for long (a plain thread may
 * spawn a million tasks before any worker runs), which rules out a bounded
 * ring, and ck_fifo's MPMC variant needs an allocation per entry and safe
 * memory reclamation for its nodes. The tasks themselves carry the link.
 * Consumers take batches, so the lock is taken once per batch, and read
 * `len` without the lock to skip an empty queue (Go's global run queue
 * works the same way).
 */
#include "sched/internal.h"

void weft__inject_init(struct weft__inject *q)
{
    pthread_mutex_init(&q->lock, NULL);
    q->head = q->tail = NULL;
    q->len = 0;
}

void weft__inject_destroy(struct weft__inject *q)
{
    pthread_mutex_destroy(&q->lock);
}

void weft__inject_push(struct weft__inject *q, weft_task *first,
                       weft_task *last, uint64_t n)
{
    pthread_mutex_lock(&q->lock);
    weft__inject_push_locked(q, first, last, n);
    pthread_mutex_unlock(&q->lock);
}

void weft__inject_push_locked(struct weft__inject *q, weft_task *first,
                              weft_task *last, uint64_t n)
{
    last->next = NULL;
    if (q->tail)
        q->tail->next = first;
    else
        q->head = first;
    q->tail = last;
    /* Relaxed: the mutex publishes the list; len is only a hint for
     * lock-free emptiness checks, and the notify protocol's fences order it
     * against the parked-worker count (worker.c). */
    weft__store_rlx_u64(&q->len, q->len + n);
}

weft_task *weft__inject_pop(struct weft__inject *q, uint64_t max, uint64_t *n)
{
    *n = 0;
    if (weft__inject_is_empty(q))
        return NULL;
    pthread_mutex_lock(&q->lock);
    weft_task *first = q->head, *last = NULL;
    uint64_t taken = 0;
    for (weft_task *t = first; t && taken < max; t = t->next) {
        last = t;
        taken++;
    }
    if (last) {
        q->head = last->next;
        if (!q->head)
            q->tail = NULL;
        last->next = NULL;
        weft__store_rlx_u64(&q->len, q->len - taken);
    }
    pthread_mutex_unlock(&q->lock);
    *n = taken;
    return taken ? first : NULL;
}
