/* weft_barrier: asyncio.Barrier, for tasks and threads.
 *
 * The parties of the current round are the live nodes in the queue
 * (weft__wq_is_live). An arriving caller numbers them in arrival order,
 * under the qlock, in one pass; if it finds parties - 1, the round is
 * full: it grants every node, with the number it was given, and takes
 * parties - 1 itself. A waiter interrupted before that pass leaves the
 * round (as a cancelled asyncio waiter does): its node stops counting as
 * soon as the interrupt claims it, before the waiter has run to unlink it.
 * One interrupted after the pass (an interrupt racing the round's
 * completion) still counted: it fails its grant and returns its
 * interrupt, and its index goes unused. A round completes at once for
 * all its parties: a caller that arrives after it starts the next round.
 */
#include "sync/sync.h"

struct weft__barrier {
    uint32_t tag; /* WEFT__TAG_BARRIER while initialised */
    weft__qlock qlock;
    unsigned parties; /* constant */
    uint32_t broken;  /* written under qlock; relaxed atomic for snapshots */
    struct weft__wq waiters; /* under qlock */
};

_Static_assert(sizeof(struct weft__barrier) <= sizeof(weft_barrier),
               "weft_barrier too small");

static struct weft__barrier *barrier_of(const weft_barrier *barrier)
{
    struct weft__barrier *b = (struct weft__barrier *)barrier;
    return b && weft__tag_ok(&b->tag, WEFT__TAG_BARRIER) ? b : NULL;
}

int weft_barrier_init(weft_barrier *barrier, unsigned parties)
{
    if (!barrier || parties == 0)
        return -EINVAL;
    struct weft__barrier *b = (struct weft__barrier *)barrier;
    weft__qlock_init(&b->qlock);
    b->parties = parties;
    b->broken = 0;
    weft__wq_init(&b->waiters);
    weft__store_rlx_u32(&b->tag, WEFT__TAG_BARRIER);
    return 0;
}

static void hand_broken(struct weft__wq_node *n, void *unused)
{
    (void)unused;
    n->value = -EPIPE;
}

static void set_broken(struct weft__barrier *b, bool broken)
{
    weft__store_rlx_u32(&b->broken, broken);
}

static int wait(weft_barrier *barrier, int64_t deadline_ns)
{
    struct weft__barrier *b = barrier_of(barrier);
    if (!b)
        return -EINVAL;
    weft__qlock_acquire(&b->qlock);
    if (b->broken) {
        weft__qlock_release(&b->qlock);
        return -EPIPE;
    }
    /* Numbering a node that then waits on is harmless: a waiter reads
     * its value only once granted. */
    unsigned live = 0;
    for (struct weft__wq_node *n = b->waiters.head; n; n = n->next)
        if (weft__wq_is_live(n))
            n->value = live++;
    if (live + 1 < b->parties) {
        struct weft__wq_node n;
        int rc = weft__wq_wait(&b->waiters, &n, &b->qlock, deadline_ns,
                               WEFT__WAIT_BARRIER, b, 0);
        return rc ? rc : (int)n.value;
    }
    struct weft__wq_wakes wk = WEFT__WQ_WAKES_INIT;
    weft__wq_grant_all(&b->waiters, NULL, NULL, &wk);
    weft__qlock_release_wake(&b->qlock, &wk);
    return (int)live;
}

int weft_barrier_wait(weft_barrier *b)
{
    return wait(b, WEFT__NEVER);
}

int weft_barrier_wait_timeout(weft_barrier *b, double seconds)
{
    int64_t deadline_ns = weft__timeout_ns(seconds);
    return deadline_ns < 0 ? (int)deadline_ns : wait(b, deadline_ns);
}

/* Fail the current waiters with -EPIPE; leave the barrier broken or not. */
static int break_round(weft_barrier *barrier, bool broken)
{
    struct weft__barrier *b = barrier_of(barrier);
    if (!b)
        return -EINVAL;
    struct weft__wq_wakes wk = WEFT__WQ_WAKES_INIT;
    weft__qlock_acquire(&b->qlock);
    weft__wq_grant_all(&b->waiters, hand_broken, NULL, &wk);
    set_broken(b, broken);
    weft__qlock_release_wake(&b->qlock, &wk);
    return 0;
}

int weft_barrier_abort(weft_barrier *b)
{
    return break_round(b, true);
}

int weft_barrier_reset(weft_barrier *b)
{
    return break_round(b, false);
}

unsigned weft_barrier_n_waiting(const weft_barrier *barrier)
{
    struct weft__barrier *b = barrier_of(barrier);
    if (!b)
        return 0;
    weft__qlock_acquire(&b->qlock);
    unsigned n = (unsigned)weft__wq_count_live(&b->waiters);
    weft__qlock_release(&b->qlock);
    return n;
}

bool weft_barrier_broken(const weft_barrier *barrier)
{
    struct weft__barrier *b = barrier_of(barrier);
    return b && weft__load_rlx_u32(&b->broken);
}

int weft_barrier_destroy(weft_barrier *barrier)
{
    struct weft__barrier *b = barrier_of(barrier);
    return b ? weft__sync_destroy(&b->tag, &b->qlock, &b->waiters) : -EINVAL;
}
