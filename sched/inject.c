/* The injection queue: where tasks enter a runtime from outside its
 * workers (spawned by a plain thread, woken by another runtime's task or by
 * the timer thread, in batches: weft__batch_flush), where a worker puts the
 * task of its LIFO slot that ran too many times in a row, and where a task
 * goes if its worker's deque cannot grow (out of memory).
 *
 * An intrusive FIFO list (struct weft__task_list) under a mutex, not ck_ring or
 * ck_fifo: it must never fail and never block its producers for long (a plain
 * thread may spawn a million tasks before any worker runs), which rules out a
 * bounded ring, and ck_fifo's MPMC variant needs an allocation per entry and
 * safe memory reclamation for its nodes. The tasks themselves carry the link.
 * Consumers take batches, so the lock is taken once per batch, and read
 * `len` without the lock to skip an empty queue (Go's global run queue
 * works the same way).
 */
#include "sched/internal.h"

void weft__inject_init(struct weft__inject *q)
{
    pthread_mutex_init(&q->lock, NULL);
    q->list.head = q->list.tail = NULL;
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
    weft__task_list_append(&q->list, first, last);
    /* Relaxed: the mutex publishes the list; len is only a hint for
     * lock-free emptiness checks, and the notify protocol's fences order it
     * against the parked-worker count (worker.c). */
    weft__store_rlx_u64(&q->len, q->len + n);
}

weft_task *weft__inject_pop(struct weft__inject *q, uint64_t max, uint64_t *n)
{
    pthread_mutex_lock(&q->lock);
    weft_task *first = q->list.head;
    uint64_t taken = 0;
    if (first) {
        /* Cut the chain first..last off the front of the list. */
        weft_task *last = first;
        for (taken = 1; taken < max && last->next; taken++)
            last = last->next;
        q->list.head = last->next;
        if (!q->list.head)
            q->list.tail = NULL;
        last->next = NULL;
        /* Relaxed: see weft__inject_push_locked. */
        weft__store_rlx_u64(&q->len, q->len - taken);
    }
    pthread_mutex_unlock(&q->lock);
    *n = taken;
    return first;
}
