/* weft_queue: asyncio.Queue, LifoQueue and PriorityQueue of pointers, for
 * tasks and threads.
 *
 * State and three wait queues (getters, putters, joiners) under one qlock.
 * Items move in exactly one of three ways, each under the qlock:
 *  - put with a getter waiting (the buffer is then empty): the item is
 *    written into the getter's node and the getter granted; if it was
 *    interrupted first, the next getter is tried, and with none left the
 *    item goes into the buffer (weft__wq_grant_first);
 *  - put with room: into the buffer;
 *  - get that frees a slot with a putter waiting: the first putter that
 *    accepts its grant has its item moved into the buffer; an interrupted
 *    putter's item is never taken.
 * So an item is in exactly one place at any time: the buffer, a granted
 * getter's hands, or a putter that has not been granted (and then returns
 * an error and still owns it). Nothing is lost or duplicated, whatever the
 * cancellation timing.
 *
 * The buffer is a ring (FIFO), a stack (LIFO) or a binary min-heap
 * (PRIORITY) in one array that doubles as needed, up to maxsize.
 */
#include <stdlib.h>

#include "sync/sync.h"

#define MIN_CAP 16

struct weft__queue {
    uint32_t tag; /* WEFT__TAG_QUEUE while initialised */
    weft__qlock qlock;
    uint8_t order;  /* constant: enum weft_queue_order */
    bool shutdown;  /* under qlock */
    size_t maxsize; /* constant: 0 is unbounded */
    int (*compare)(const void *, const void *); /* constant */
    void **buf;                                 /* under qlock: cap slots */
    size_t cap, first; /* under qlock; first: the ring's oldest slot */
    size_t count;      /* under qlock; relaxed atomic for snapshots */
    size_t unfinished; /* under qlock: put and not yet task_done */
    struct weft__wq getters, putters, joiners; /* under qlock */
};

_Static_assert(sizeof(struct weft__queue) <= sizeof(weft_queue),
               "weft_queue too small");

static struct weft__queue *queue_of(const weft_queue *queue)
{
    struct weft__queue *q = (struct weft__queue *)queue;
    return q && weft__tag_ok(&q->tag, WEFT__TAG_QUEUE) ? q : NULL;
}

int weft_queue_init_ex(weft_queue *queue, const weft_queue_config *cfg)
{
    weft_queue_config def = {0};
    if (!cfg)
        cfg = &def;
    if (!queue || cfg->order > WEFT_QUEUE_PRIORITY ||
        (cfg->order == WEFT_QUEUE_PRIORITY && !cfg->compare))
        return -EINVAL;
    struct weft__queue *q = (struct weft__queue *)queue;
    weft__qlock_init(&q->qlock);
    q->order = (uint8_t)cfg->order;
    q->shutdown = false;
    q->maxsize = cfg->maxsize;
    q->compare = cfg->compare;
    q->buf = NULL;
    q->cap = q->first = q->count = q->unfinished = 0;
    weft__wq_init(&q->getters);
    weft__wq_init(&q->putters);
    weft__wq_init(&q->joiners);
    weft__store_rlx_u32(&q->tag, WEFT__TAG_QUEUE);
    return 0;
}

int weft_queue_init(weft_queue *queue, size_t maxsize)
{
    weft_queue_config cfg = {.maxsize = maxsize};
    return weft_queue_init_ex(queue, &cfg);
}

/* --------------------------------------------------------------------------
 * The buffer (all under the qlock)
 */

static bool is_full(const struct weft__queue *q)
{
    return q->maxsize && q->count >= q->maxsize;
}

static void set_count(struct weft__queue *q, size_t n)
{
    weft__store_rlx_u64((uint64_t *)&q->count, (uint64_t)n);
}

static void **slot(struct weft__queue *q, size_t i)
{
    return &q->buf[(q->first + i) % q->cap];
}

static int grow(struct weft__queue *q)
{
    size_t cap = q->cap ? q->cap * 2 : MIN_CAP;
    if (q->maxsize && cap > q->maxsize)
        cap = q->maxsize;
    void **buf = weft__malloc(cap * sizeof(*buf));
    if (!buf)
        return -ENOMEM;
    for (size_t i = 0; i < q->count; i++) /* unroll the ring */
        buf[i] = *slot(q, i);
    weft__free(q->buf);
    q->buf = buf;
    q->cap = cap;
    q->first = 0;
    return 0;
}

static void heap_up(struct weft__queue *q, size_t i)
{
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (q->compare(q->buf[i], q->buf[up]) >= 0)
            return;
        void *x = q->buf[i];
        q->buf[i] = q->buf[up];
        q->buf[up] = x;
        i = up;
    }
}

static void heap_down(struct weft__queue *q, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < q->count && q->compare(q->buf[l], q->buf[m]) < 0)
            m = l;
        if (l + 1 < q->count && q->compare(q->buf[l + 1], q->buf[m]) < 0)
            m = l + 1;
        if (m == i)
            return;
        void *x = q->buf[i];
        q->buf[i] = q->buf[m];
        q->buf[m] = x;
        i = m;
    }
}

/* Add an item; the caller has checked that the queue is not full. */
static int push(struct weft__queue *q, void *item)
{
    if (q->count == q->cap) {
        int err = grow(q);
        if (err)
            return err;
    }
    *slot(q, q->count) = item; /* first is 0 unless FIFO */
    set_count(q, q->count + 1);
    if (q->order == WEFT_QUEUE_PRIORITY)
        heap_up(q, q->count - 1);
    q->unfinished++;
    return 0;
}

static void *pop(struct weft__queue *q)
{
    void *item;
    size_t n = q->count - 1;
    switch (q->order) {
    case WEFT_QUEUE_FIFO:
        item = *slot(q, 0);
        q->first = (q->first + 1) % q->cap;
        break;
    case WEFT_QUEUE_LIFO:
        item = q->buf[n];
        break;
    default:
        item = q->buf[0];
        q->buf[0] = q->buf[n];
        break;
    }
    set_count(q, n);
    if (q->order == WEFT_QUEUE_PRIORITY)
        heap_down(q, 0);
    return item;
}

/* --------------------------------------------------------------------------
 * put, get
 */

static void hand_item(struct weft__wq_node *n, void *item)
{
    n->item = item;
    n->value = 0;
}

static void hand_status(struct weft__wq_node *n, void *status)
{
    n->value = (long)(intptr_t)status;
}

/* A slot is free: move the first waiting putter that accepts into it.
 * Room is made before the grant, since a granted putter has been told its
 * item is in: if the buffer cannot grow, the putters go on waiting and
 * the next get tries again. */
static void admit_putter(struct weft__queue *q, struct weft__wq_wakes *wk)
{
    while (!is_full(q) && !weft__wq_is_empty(&q->putters)) {
        if (q->count == q->cap && grow(q) < 0)
            return;
        struct weft__wq_node *n = weft__wq_pop(&q->putters);
        void *item = n->item; /* n is the putter's once granted */
        if (weft__wq_grant(n, wk))
            (void)push(q, item); /* cannot fail: there is room */
    }
}

static int put(weft_queue *queue, void *item, int64_t deadline_ns, bool nowait)
{
    struct weft__queue *q = queue_of(queue);
    if (!q)
        return -EINVAL;
    struct weft__wq_wakes wk = WEFT__WQ_WAKES_INIT;
    weft__qlock_acquire(&q->qlock);
    int rc = 0;
    if (q->shutdown) {
        rc = -ESHUTDOWN;
    } else if (weft__wq_grant_first(&q->getters, hand_item, item, &wk)) {
        q->unfinished++;
    } else if (!is_full(q)) {
        rc = push(q, item);
    } else if (nowait) {
        rc = -EAGAIN;
    } else {
        struct weft__wq_node n = {.item = item};
        rc = weft__wq_wait(&q->putters, &n, &q->qlock, deadline_ns,
                           WEFT__WAIT_QUEUE, q, 0);
        return rc ? rc : (int)n.value;
    }
    weft__qlock_release_wake(&q->qlock, &wk);
    return rc;
}

int weft_queue_put(weft_queue *q, void *item)
{
    return put(q, item, WEFT__NEVER, false);
}

int weft_queue_put_timeout(weft_queue *q, void *item, double seconds)
{
    int64_t deadline_ns = weft__timeout_ns(seconds);
    return deadline_ns < 0 ? (int)deadline_ns
                           : put(q, item, deadline_ns, false);
}

int weft_queue_put_nowait(weft_queue *q, void *item)
{
    return put(q, item, WEFT__NEVER, true);
}

static int get(weft_queue *queue, void **item, int64_t deadline_ns, bool nowait)
{
    struct weft__queue *q = queue_of(queue);
    if (!q || !item)
        return -EINVAL;
    struct weft__wq_wakes wk = WEFT__WQ_WAKES_INIT;
    weft__qlock_acquire(&q->qlock);
    int rc = 0;
    if (q->count) {
        *item = pop(q);
        admit_putter(q, &wk);
    } else if (q->shutdown) {
        rc = -ESHUTDOWN;
    } else if (nowait) {
        rc = -EAGAIN;
    } else {
        struct weft__wq_node n;
        rc = weft__wq_wait(&q->getters, &n, &q->qlock, deadline_ns,
                           WEFT__WAIT_QUEUE, q, 0);
        if (rc == 0 && n.value == 0)
            *item = n.item;
        return rc ? rc : (int)n.value;
    }
    weft__qlock_release_wake(&q->qlock, &wk);
    return rc;
}

int weft_queue_get(weft_queue *q, void **item)
{
    return get(q, item, WEFT__NEVER, false);
}

int weft_queue_get_timeout(weft_queue *q, void **item, double seconds)
{
    int64_t deadline_ns = weft__timeout_ns(seconds);
    return deadline_ns < 0 ? (int)deadline_ns
                           : get(q, item, deadline_ns, false);
}

int weft_queue_get_nowait(weft_queue *q, void **item)
{
    return get(q, item, WEFT__NEVER, true);
}

/* --------------------------------------------------------------------------
 * task_done, join, shutdown
 */

/* Under the qlock: one more item processed. */
static void done_one(struct weft__queue *q, struct weft__wq_wakes *wk)
{
    if (--q->unfinished == 0)
        weft__wq_grant_all(&q->joiners, NULL, NULL, wk);
}

int weft_queue_task_done(weft_queue *queue)
{
    struct weft__queue *q = queue_of(queue);
    if (!q)
        return -EINVAL;
    int rc = 0;
    struct weft__wq_wakes wk = WEFT__WQ_WAKES_INIT;
    weft__qlock_acquire(&q->qlock);
    if (q->unfinished == 0)
        rc = -EOVERFLOW;
    else
        done_one(q, &wk);
    weft__qlock_release_wake(&q->qlock, &wk);
    return rc;
}

static int join(weft_queue *queue, int64_t deadline_ns)
{
    struct weft__queue *q = queue_of(queue);
    if (!q)
        return -EINVAL;
    weft__qlock_acquire(&q->qlock);
    if (q->unfinished == 0) {
        weft__qlock_release(&q->qlock);
        return 0;
    }
    struct weft__wq_node n;
    return weft__wq_wait(&q->joiners, &n, &q->qlock, deadline_ns,
                         WEFT__WAIT_QUEUE, q, 0);
}

int weft_queue_join(weft_queue *q)
{
    return join(q, WEFT__NEVER);
}

int weft_queue_join_timeout(weft_queue *q, double seconds)
{
    int64_t deadline_ns = weft__timeout_ns(seconds);
    return deadline_ns < 0 ? (int)deadline_ns : join(q, deadline_ns);
}

int weft_queue_shutdown(weft_queue *queue, bool immediate)
{
    struct weft__queue *q = queue_of(queue);
    if (!q)
        return -EINVAL;
    struct weft__wq_wakes wk = WEFT__WQ_WAKES_INIT;
    weft__qlock_acquire(&q->qlock);
    q->shutdown = true;
    if (immediate) {
        /* Each dropped item counts as done, as Python 3.13's, unless
         * task_done has already been called for every item put (it is
         * counted against puts, not gets). */
        while (q->count) {
            (void)pop(q);
            if (q->unfinished)
                done_one(q, &wk);
        }
    }
    /* Getters wait only on an empty queue, which stays empty now. */
    void *status = (void *)(intptr_t)-ESHUTDOWN;
    weft__wq_grant_all(&q->putters, hand_status, status, &wk);
    weft__wq_grant_all(&q->getters, hand_status, status, &wk);
    weft__qlock_release_wake(&q->qlock, &wk);
    return 0;
}

/* --------------------------------------------------------------------------
 * Snapshots, destroy
 */

size_t weft_queue_size(const weft_queue *queue)
{
    struct weft__queue *q = queue_of(queue);
    return q ? (size_t)weft__load_rlx_u64((uint64_t *)&q->count) : 0;
}

bool weft_queue_empty(const weft_queue *queue)
{
    return weft_queue_size(queue) == 0;
}

bool weft_queue_full(const weft_queue *queue)
{
    struct weft__queue *q = queue_of(queue);
    return q && q->maxsize && weft_queue_size(queue) >= q->maxsize;
}

int weft_queue_destroy(weft_queue *queue)
{
    struct weft__queue *q = queue_of(queue);
    if (!q)
        return -EINVAL;
    int rc = 0;
    weft__qlock_acquire(&q->qlock);
    if (!weft__wq_is_empty(&q->getters) || !weft__wq_is_empty(&q->putters) ||
        !weft__wq_is_empty(&q->joiners))
        rc = -EBUSY;
    else if (q->count)
        rc = -ENOTEMPTY;
    else
        weft__store_rlx_u32(&q->tag, 0);
    weft__qlock_release(&q->qlock);
    if (rc == 0) {
        weft__free(q->buf);
        q->buf = NULL;
    }
    return rc;
}
