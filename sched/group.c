/* Task groups (asyncio.TaskGroup).
 *
 * A group is the one joiner of its members: each is created with its
 * joiner field already WEFT__JOIN_CLAIMED (task.c), before it can run, so
 * no other join, wait or detach can take it, and weft_group_wait joins
 * them in the order they were spawned. Its interrupt hook cancels every
 * member not yet reaped, and marks the group as cancelling, so that
 * members spawned from then on start cancelled (they never run).
 *
 * Lock order: the owner's task lock (the hook runs under it), then the
 * group's lock, then member task locks (weft_cancel). A spawn takes the
 * registry lock before, not inside, the group's.
 */
#include <errno.h>
#include <pthread.h>

#include "sched/alloc.h"
#include "sched/internal.h"

#define GROUP_MAGIC  0x6e0e0e00u
#define GROUP_OPEN   0x6e0e0e01u
#define GROUP_WAITED 0x6e0e0e02u

struct group {
    uint32_t magic;   /* GROUP_MAGIC from init to destroy */
    weft_task *owner; /* immutable */
    weft_runtime *rt; /* immutable */
    pthread_mutex_t lock;
    /* Under lock: */
    weft_task **members; /* members[next..n) not reaped yet */
    uint32_t n, cap, next;
    uint32_t state;
    bool cancelling;
};

_Static_assert(sizeof(struct group) <= sizeof(weft_group),
               "weft_group must hold a struct group");

static struct group *group_of(weft_group *g)
{
    return (struct group *)g;
}

/* Initialised and not destroyed (magic is written by init and destroy
 * only, both by the owner, never concurrently with other calls). */
static bool is_group(const struct group *g)
{
    return g && g->magic == GROUP_MAGIC;
}

int weft_group_init(weft_group *pg)
{
    if (!pg)
        return -EINVAL;
    weft_task *self = weft_current();
    if (!self)
        return -EPERM;
    struct group *g = group_of(pg);
    *g = (struct group){.magic = GROUP_MAGIC,
                        .owner = self,
                        .rt = self->rt,
                        .state = GROUP_OPEN};
    pthread_mutex_init(&g->lock, NULL);
    return 0;
}

/* Caller holds g->lock. */
static int append_locked(struct group *g, weft_task *t)
{
    if (g->n == g->cap) {
        uint32_t cap = g->cap ? 2 * g->cap : 8;
        weft_task **m = weft__realloc(g->members, cap * sizeof(*m));
        if (!m)
            return -ENOMEM;
        g->members = m;
        g->cap = cap;
    }
    g->members[g->n++] = t;
    return 0;
}

weft_task *weft_group_spawn(weft_group *pg, weft_fn fn, void *arg,
                            const weft_task_opts *opts)
{
    struct group *g = group_of(pg);
    weft_task *self = weft_current();
    if (!is_group(g) || !fn || !self || self->rt != g->rt) {
        errno = EINVAL;
        return NULL;
    }
    pthread_mutex_lock(&g->lock);
    bool open = g->state == GROUP_OPEN;
    pthread_mutex_unlock(&g->lock);
    if (!open) {
        errno = EINVAL;
        return NULL;
    }
    weft_task *t = weft__task_new(g->rt, fn, arg, opts);
    if (!t)
        return NULL;
    /* Relaxed: t is not runnable yet, and weft__task_start publishes it
     * to whoever runs it; registry scans read the field (for DONE) under
     * the shard's lock, concurrently, so it must be atomic. */
    weft__store_rlx_ptr(&t->joiner, WEFT__JOIN_CLAIMED);
    pthread_mutex_lock(&g->lock);
    int err = g->state == GROUP_OPEN ? append_locked(g, t) : -EINVAL;
    if (!err && g->cancelling)
        (void)weft_cancel(t); /* it will never run */
    pthread_mutex_unlock(&g->lock);
    if (err) {
        /* The group was waited for meanwhile, or no memory. t never
         * started: nobody else has its handle, and nothing counts it but
         * the registry, which weft__task_free leaves under the shard's
         * lock, after any scan that found it there (a snapshot,
         * weft__runtime_cancel_all) is done with it. */
        weft__task_free(t);
        errno = -err;
        return NULL;
    }
    weft__task_start(t);
    return t;
}

/* Caller holds g->lock. */
static void cancel_members_locked(struct group *g)
{
    g->cancelling = true;
    for (uint32_t i = g->next; i < g->n; i++)
        (void)weft_cancel(g->members[i]);
}

int weft_group_cancel(weft_group *pg)
{
    struct group *g = group_of(pg);
    if (!is_group(g))
        return -EINVAL;
    pthread_mutex_lock(&g->lock);
    if (g->state == GROUP_OPEN)
        cancel_members_locked(g);
    pthread_mutex_unlock(&g->lock);
    return 0;
}

/* Under the owner's lock: the owner was interrupted while waiting. */
static void group_forward(struct weft__wait *w, int code)
{
    (void)code;
    struct group *g = w->arg;
    pthread_mutex_lock(&g->lock);
    cancel_members_locked(g);
    pthread_mutex_unlock(&g->lock);
}

int weft_group_wait(weft_group *pg)
{
    struct group *g = group_of(pg);
    if (!is_group(g))
        return -EINVAL;
    if (weft_current() != g->owner)
        return -EPERM;
    if (g->state != GROUP_OPEN) /* the owner alone writes it */
        return -EINVAL;
    int rc = 0;
    for (;;) {
        pthread_mutex_lock(&g->lock);
        if (g->next == g->n) {
            g->state = GROUP_WAITED; /* no more members from now on */
            pthread_mutex_unlock(&g->lock);
            break;
        }
        weft_task *t = g->members[g->next];
        pthread_mutex_unlock(&g->lock);
        /* Cannot fail: the group is t's one joiner. */
        (void)weft__join_done(t, WEFT__JOIN_CLAIMED, group_forward, g);
        /* Out of the members that weft_group_cancel may cancel before it
         * is freed. */
        pthread_mutex_lock(&g->lock);
        g->next++;
        pthread_mutex_unlock(&g->lock);
        int e = weft__join_reap(t, NULL);
        if (e && !rc)
            rc = e;
    }
    int code = weft__check_interrupt();
    return code ? code : rc;
}

int weft_group_destroy(weft_group *pg)
{
    struct group *g = group_of(pg);
    if (!is_group(g))
        return -EINVAL;
    pthread_mutex_lock(&g->lock);
    bool busy = g->state == GROUP_OPEN && g->n > 0;
    pthread_mutex_unlock(&g->lock);
    if (busy)
        return -EBUSY;
    pthread_mutex_destroy(&g->lock);
    weft__free(g->members);
    *g = (struct group){0};
    return 0;
}
