/* Task lifecycle: spawn, join, detach, names, ids, and the all-tasks
 * registry.
 *
 * Completion meets join or detach at one atomic field, t->joiner:
 *   - the task finishing exchanges it with WEFT__JOIN_DONE (after writing
 *     its result): if it held a listener (struct weft__done: a joiner, or
 *     a weft_wait-style waiter of combine.c), it calls it; if it held
 *     WEFT__JOIN_DETACHED, it frees the task;
 *   - a joiner CASes NULL -> its listener and parks; if the CAS finds
 *     DONE, the result is already there; if it finds anything else,
 *     another party waits for t and the join fails with -EINVAL;
 *   - weft_join's joiner that runs t inline (worker.c) registers
 *     nothing; when t finishes it checks that the field still holds NULL:
 *     if another party began to wait (or detached t) meanwhile, that party
 *     owns t and the inline joiner returns -EINVAL without touching t
 *     again. (A gather or a group, whose claim is CLAIMED, never runs a
 *     member inline: see weft_join.)
 *   - detach CASes NULL -> DETACHED; if it finds DONE, it frees the task.
 * So exactly one party frees each task, and the result is read only after
 * DONE is observed with acquire ordering (the exchange, or the waker's
 * hand-off that resumed the joiner).
 *
 * Ids come from a process-wide counter in blocks of WEFT__ID_BLOCK per
 * worker, so spawning does not bounce a shared cache line: ids are unique
 * and never 0, but not ordered across workers.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "sched/alloc.h"
#include "sched/internal.h"

#define WEFT__ID_BLOCK 1024u

_Static_assert(sizeof(struct weft_task) <= 112,
               "a task must stay in mimalloc's 112-byte class (internal.h)");
_Static_assert(((WEFT_STACK_MAX + 4095) >> 12) <= UINT16_MAX,
               "stack_units must hold WEFT_STACK_MAX in 4 KiB units");

static uint64_t next_id = 1; /* any thread, atomic */

static uint64_t new_id(struct weft__worker *w)
{
    if (!w)
        return weft__faa_seq_u64(&next_id, 1);
    if (w->next_id == w->id_end) {
        w->next_id = weft__faa_seq_u64(&next_id, WEFT__ID_BLOCK);
        w->id_end = w->next_id + WEFT__ID_BLOCK;
    }
    return w->next_id++;
}

static struct weft__shard *shard_of(const weft_task *t)
{
    return &t->rt->shards[t->shard];
}

int weft__registry_init(weft_runtime *rt)
{
    unsigned n = rt->nworkers + 1;
    rt->shards = weft__malloc_aligned(WEFT__CACHELINE, n * sizeof(*rt->shards));
    if (!rt->shards)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        struct weft__shard *s = &rt->shards[i];
        weft__spin_init(&s->lock);
        s->slots = NULL;
        s->cap = s->used = s->live = 0;
        s->free_head = UINT32_MAX;
        s->orphaned = false;
        s->born = NULL;
    }
    /* Ages: an array per shard from the start, grown with the slots. */
    for (unsigned i = 0; rt->track_age && i < n; i++)
        if (!(rt->shards[i].born = weft__malloc(sizeof(int64_t))))
            return -ENOMEM;
    return 0;
}

void weft__registry_free(weft_runtime *rt)
{
    for (unsigned i = 0; rt->shards && i <= rt->nworkers; i++) {
        weft__free(rt->shards[i].slots);
        weft__free(rt->shards[i].born);
    }
    weft__free(rt->shards);
    weft__free(rt);
}

/* orphan_refs counts one reference per shard that still holds handles,
 * plus one held by this function while it marks them; whoever drops it
 * to 0 frees everything. It is set before any shard is marked (under the
 * shard's lock), so a weft__task_free that sees a mark sees the count. */
bool weft__registry_orphan(weft_runtime *rt)
{
    unsigned n = rt->nworkers + 1, unused = 1;
    weft__store_rlx_u32(&rt->orphan_refs, n + 1);
    for (unsigned i = 0; i < n; i++) {
        struct weft__shard *s = &rt->shards[i];
        weft__spin_lock(&s->lock);
        if (s->live == 0)
            unused++;
        else
            s->orphaned = true;
        weft__spin_unlock(&s->lock);
    }
    return weft__faa_seq_u32(&rt->orphan_refs, -unused) == unused;
}

/* Caller holds s->lock. Doubles the slot array (and the spawn times', if
 * the runtime keeps them: s->born is set from the start then). */
static int shard_grow_locked(struct weft__shard *s, bool ages)
{
    uint32_t cap = s->cap ? 2 * s->cap : 64;
    if (ages) {
        int64_t *born = weft__realloc(s->born, cap * sizeof(*born));
        if (!born)
            return -ENOMEM;
        s->born = born;
    }
    uintptr_t *slots = weft__realloc(s->slots, cap * sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    s->slots = slots;
    s->cap = cap;
    return 0;
}

int64_t weft__coarse_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int shard_insert(struct weft__shard *s, weft_task *t)
{
    weft__spin_lock(&s->lock);
    bool ages = s->born != NULL;
    uint32_t i = s->free_head;
    if (i != UINT32_MAX) {
        s->free_head = (uint32_t)(s->slots[i] >> 1);
    } else {
        if (s->used == s->cap && shard_grow_locked(s, ages) < 0) {
            weft__spin_unlock(&s->lock);
            return -ENOMEM;
        }
        i = s->used++;
    }
    s->slots[i] = (uintptr_t)t;
    if (WEFT_UNLIKELY(ages))
        s->born[i] = weft__coarse_now_ns();
    s->live++;
    t->slot = i;
    weft__spin_unlock(&s->lock);
    return 0;
}

/* Returns true if this emptied a shard of a freed runtime. */
static bool shard_remove(struct weft__shard *s, const weft_task *t)
{
    weft__spin_lock(&s->lock);
    s->slots[t->slot] = ((uintptr_t)s->free_head << 1) | 1;
    s->free_head = t->slot;
    bool last = --s->live == 0 && s->orphaned;
    weft__spin_unlock(&s->lock);
    return last;
}

static char *copy_name(const char *name)
{
    size_t n = strnlen(name, 31);
    char *copy = weft__malloc(n + 1);
    if (copy) {
        memcpy(copy, name, n);
        copy[n] = '\0';
    }
    return copy;
}

weft_task *weft__task_new(weft_runtime *rt, weft_fn fn, void *arg,
                          const weft_task_opts *opts)
{
    struct weft__worker *w = weft__tls_worker;
    if (!rt && w && w->current)
        rt = w->rt;
    size_t stack_size = opts ? opts->stack_size : 0;
    if (!rt || !fn || (stack_size && stack_size < WEFT_STACK_MIN) ||
        stack_size > WEFT_STACK_MAX) {
        errno = EINVAL;
        return NULL;
    }
    weft_task *t = weft__malloc(sizeof(*t));
    if (!t)
        goto err_nomem;
    t->name = NULL;
    if (opts && opts->name && !(t->name = copy_name(opts->name)))
        goto err_free;
    bool local = w && w->rt == rt;
    t->sp = NULL;
    t->stack = NULL;
    t->fn = fn;
    t->arg = arg;
    t->rt = rt;
    t->joiner = NULL;
    t->next = NULL;
    t->cancel = 0;
    weft__spin_init(&t->lock);
    t->wait = NULL;
    t->scope = NULL;
    t->id = new_id(local ? w : NULL);
    t->park_state = WEFT__RUN;
    t->stack_units = (uint16_t)((stack_size + 4095) >> 12);
    t->shard = local ? w->index : rt->nworkers;
    t->where = weft__where_encode(-1, WEFT_TASK_NEW);

    if (shard_insert(shard_of(t), t) < 0)
        goto err_free_name;
    return t;
err_free_name:
    weft__free(t->name);
err_free:
    weft__free(t);
err_nomem:
    errno = ENOMEM;
    return NULL;
}

void weft__task_start(weft_task *t)
{
    struct weft__worker *w = weft__tls_worker;
    weft_runtime *rt = t->rt;
    /* Counted before the task can run, so that its completion can never be
     * counted before its spawn (weft__runtime_alive). */
    uint64_t n;
    if (w && w->rt == rt) {
        n = weft__load_rlx_u64(&w->counters.spawned) + 1;
        weft__store_rel_u64(&w->counters.spawned, n); /* the owner's */
    } else {
        n = weft__faa_seq_u64(&rt->ext_spawned, 1) + 1;
    }
    /* Its wait to start may be a delay sample, picked by the spawn count
     * (stats.c). Relaxed: nobody else sees t before the submit publishes
     * it. */
    if (WEFT__OBSERVED(weft__delay_pick(n, rt->sample_limit)))
        weft__store_rlx_u32(&t->where, t->where | weft__delay_stamp(t));
    weft__task_submit(t);
}

weft_task *weft_spawn_ex(weft_runtime *rt, weft_fn fn, void *arg,
                         const weft_task_opts *opts)
{
    weft_task *t = weft__task_new(rt, fn, arg, opts);
    if (t)
        weft__task_start(t);
    return t;
}

weft_task *weft_spawn(weft_fn fn, void *arg)
{
    struct weft__worker *w = weft__tls_worker;
    if (!fn) {
        errno = EINVAL;
        return NULL;
    }
    if (!w || !w->current) {
        errno = EPERM;
        return NULL;
    }
    return weft_spawn_ex(w->rt, fn, arg, NULL);
}

/* Free a finished task's handle, and take it out of the registry. The
 * registry holds a task from spawn to this point, not just until it
 * finishes: its joiner is almost always the task that spawned it, on the
 * same worker, so the shard lock and its slots stay in one worker's
 * cache. Unlinking when the task finishes would make every
 * stolen task write its spawner's shard from another CPU (measured: a
 * third of the cost of a 2-worker spawn+join). */
void weft__task_free(weft_task *t)
{
    weft_runtime *rt = t->rt;
    bool last = shard_remove(shard_of(t), t);
    weft__free(t->name);
    weft__free(t);
    /* Seq RMW: the shards' last users are done before the one that frees
     * them (see weft__registry_orphan). */
    if (last && weft__faa_seq_u32(&rt->orphan_refs, (uint32_t)-1) == 1)
        weft__registry_free(rt);
}

/* Publish t's end and hand it to whoever waits for it. Returns what the
 * joiner field held. */
static void *complete(weft_task *t)
{
    /* Seq exchange: releases the result (t->arg, and the ENDED bit) to
     * whoever observes DONE, and acquires the listener or the detach
     * mark. */
    void *j = weft__xchg_seq_ptr(&t->joiner, WEFT__JOIN_DONE);
    if (j == WEFT__JOIN_DETACHED) {
        weft__task_free(t);
    } else if ((uintptr_t)j > WEFT__JOIN_SENTINELS) {
        struct weft__done *d = j;
        d->fn(d);
    }
    return j;
}

void weft__task_finish(struct weft__worker *w, weft_task *t)
{
    weft_runtime *rt = t->rt;
    if (t->stack) /* NULL when it was cancelled before it started */
        weft__stack_release(&rt->stacks, &w->stacks, t->stack);
    t->stack = NULL;

    /* Release: see weft__runtime_alive. */
    weft__count_rel(&w->counters.completed, 1);

    complete(t);
}

bool weft__task_finish_inline(struct weft__worker *w, weft_task *t)
{
    /* Release: see weft__runtime_alive. */
    weft__count_rel(&w->counters.completed, 1);
    return complete(t) == NULL;
}

/* A joiner's listener and wait, on its stack. */
struct join_wait {
    struct weft__done done;
    struct weft__wait wait;
};

static void join_done(struct weft__done *d)
{
    struct join_wait *j = (struct join_wait *)d;
    weft__wait_complete(&j->wait, 0);
}

/* weft_join's hook: the caller was interrupted, so t is cancelled. */
static void join_forward(struct weft__wait *w, int code)
{
    (void)code;
    weft_cancel(w->arg);
}

int weft__join_done(weft_task *t, void *claim,
                    void (*hook)(struct weft__wait *, int), void *arg)
{
    /* Acquire: pairs with the exchange in complete(). */
    if (weft__load_acq_ptr(&t->joiner) == WEFT__JOIN_DONE)
        return 0;
    struct join_wait j = {.done.fn = join_done};
    weft__wait_init(&j.wait, hook, arg);
    weft__wait_set_kind(&j.wait, WEFT__WAIT_JOIN, t->id);
    /* With a hook arm returns 0: a pending interrupt has been forwarded,
     * the wait stays armed, and the join goes on. */
    (void)weft__wait_arm(&j.wait);
    /* Seq CAS: publishes the listener to the finishing task's exchange.
     * On failure only the value it saw counts: DONE then means finished
     * before anyone else waited; a listener that turns DONE a moment
     * later belongs to another joiner, which will free t. */
    void *seen;
    if (!weft__cas_seq_ptr_val(&t->joiner, claim, &j.done, &seen)) {
        weft__wait_abandon(&j.wait);
        return seen == WEFT__JOIN_DONE ? 0 : -EINVAL;
    }
    (void)weft__wait_block(&j.wait);
    return 0;
}

int weft__join_reap(weft_task *t, void **result)
{
    bool cancelled = weft__load_rlx_u32(&t->cancel) & WEFT__CANCEL_ENDED;
    void *r = t->arg;
    weft__task_free(t);
    if (result)
        *result = cancelled ? NULL : r;
    if (!cancelled)
        return 0;
    int code = weft__check_interrupt();
    return code ? code : -ECANCELED;
}

int weft__join_task(weft_task *t, void *claim,
                    void (*hook)(struct weft__wait *, int), void *arg,
                    void **result)
{
    int err = weft__join_done(t, claim, hook, arg);
    return err < 0 ? err : weft__join_reap(t, result);
}

int weft_join(weft_task *t, void **result)
{
    struct weft__worker *w = weft__tls_worker;
    weft_task *self = w ? w->current : NULL;
    if (!t || t == self)
        return -EINVAL;
    /* Fork-join: if t has not started, run it right here instead of
     * parking (worker.c). Only worth looking for while t is still new:
     * a started task can never run inline, and most joins of a spawn burst
     * find their task finished. `where` is a relaxed snapshot, so it may
     * say NEW a moment too long, which costs only the search.
     * Only here, not in a gather's or a group's joins: while one of those
     * ran a member inline, its hook (cancel every member) could not run on
     * an interrupt, as the inline child, not the hook's wait, is what the
     * owner publishes (cancel.c). */
    if (self && w->rt == t->rt &&
        weft__where_state(weft__load_rlx_u32(&t->where)) == WEFT_TASK_NEW) {
        int ran = weft__join_run_inline(t);
        if (ran < 0)
            return -EINVAL;
        if (ran > 0)
            return weft__join_reap(t, result);
    }
    return weft__join_task(t, NULL, join_forward, t, result);
}

void weft_detach(weft_task *t)
{
    if (!t)
        return;
    /* Seq CAS: if it fails the task is DONE (the exchange in complete()
     * happened first) and nobody else will free it. */
    void *seen;
    if (!weft__cas_seq_ptr_val(&t->joiner, NULL, WEFT__JOIN_DETACHED, &seen) &&
        seen == WEFT__JOIN_DONE)
        weft__task_free(t);
}

bool weft_task_done(const weft_task *t)
{
    return t && weft__load_acq_ptr((void **)&t->joiner) == WEFT__JOIN_DONE;
}

uint64_t weft_task_id(const weft_task *t)
{
    return t ? t->id : 0;
}

int weft_task_set_name(weft_task *t, const char *name)
{
    if (!t || !name)
        return -EINVAL;
    char *copy = copy_name(name);
    if (!copy)
        return -ENOMEM;
    struct weft__shard *s = shard_of(t);
    weft__spin_lock(&s->lock);
    char *old = t->name;
    t->name = copy;
    weft__spin_unlock(&s->lock);
    weft__free(old);
    return 0;
}

weft_task *weft_current(void)
{
    return weft__current();
}

void weft__task_name(const weft_task *t, char out[32])
{
    struct weft__shard *s = shard_of(t);
    weft__spin_lock(&s->lock);
    if (t->name)
        strcpy(out, t->name); /* at most 31 bytes + NUL */
    else
        out[0] = '\0';
    weft__spin_unlock(&s->lock);
}

/* --------------------------------------------------------------------------
 * The registry
 */

static size_t snapshot_shard(struct weft__shard *s, weft_task_info *out,
                             size_t cap, size_t count)
{
    weft__spin_lock(&s->lock);
    for (uint32_t slot = 0; slot < s->used; slot++) {
        if (s->slots[slot] & 1)
            continue; /* a free slot */
        const weft_task *t = (const weft_task *)s->slots[slot];
        /* Finished tasks stay registered until their handle is freed. */
        if (weft__load_acq_ptr((void **)&t->joiner) == WEFT__JOIN_DONE)
            continue;
        if (count < cap) {
            weft_task_info *i = &out[count];
            uint32_t where = weft__load_rlx_u32((uint32_t *)&t->where);
            i->id = t->id;
            i->state = weft__where_state(where);
            i->worker = weft__where_worker(where);
            if (t->name)
                strcpy(i->name, t->name); /* at most 31 bytes + NUL */
            else
                i->name[0] = '\0';
        }
        count++;
    }
    weft__spin_unlock(&s->lock);
    return count;
}

size_t weft_runtime_tasks(weft_runtime *rt, weft_task_info *out, size_t cap)
{
    if (!rt)
        return 0;
    if (!out)
        cap = 0;
    size_t n = 0;
    for (unsigned i = 0; i <= rt->nworkers; i++)
        n = snapshot_shard(&rt->shards[i], out, cap, n);
    return n;
}

size_t weft_all_tasks(weft_task_info *out, size_t cap)
{
    return weft_runtime_tasks(weft_runtime_current(), out, cap);
}

void weft__runtime_cancel_all(weft_runtime *rt)
{
    for (unsigned i = 0; i <= rt->nworkers; i++) {
        struct weft__shard *s = &rt->shards[i];
        /* Under the shard's lock no handle here can be freed. weft_cancel
         * takes task locks inside it; no task lock holder takes a shard
         * lock (cancel.c). */
        weft__spin_lock(&s->lock);
        for (uint32_t slot = 0; slot < s->used; slot++) {
            if (s->slots[slot] & 1)
                continue;
            weft_task *t = (weft_task *)s->slots[slot];
            if (!weft_cancelling(t))
                (void)weft_cancel(t);
        }
        weft__spin_unlock(&s->lock);
    }
}

/* Tasks spawned into rt and not finished. Completions are read before
 * spawns, each with acquire: a task's spawn was counted (release) before it
 * could run, so every completion read here has its spawn read too, and
 * spawned - completed never undercounts. So 0 means that, at the moment the
 * completions were read, every task spawned so far had finished. */
uint64_t weft__runtime_alive(weft_runtime *rt)
{
    uint64_t completed = 0, spawned = 0;
    for (unsigned i = 0; i < rt->nworkers; i++)
        completed += weft__load_acq_u64(&rt->workers[i]->counters.completed);
    for (unsigned i = 0; i < rt->nworkers; i++)
        spawned += weft__load_acq_u64(&rt->workers[i]->counters.spawned);
    spawned += weft__load_acq_u64(&rt->ext_spawned);
    return spawned - completed;
}
