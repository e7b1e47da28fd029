/* The worker loop (sched/worker.c): what fork-join inlining may and may not
 * run, fairness of the LIFO slot, and threads outside the runtime racing
 * weft_runtime_free.
 *
 * Tasks wait and wake here through the scheduler's internal waiter
 * (sched/sched.h), the mechanism the sync primitives are built on.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/internal.h"
#include "testutil.h"

/* ------------------------------------------------------------------------
 * A one-shot event on a waiter: wait() suspends a task until set(). */

struct event {
    _Atomic(struct weft__waiter *) waiter;
    atomic_int set;
};

static void event_wait(struct event *e)
{
    struct weft__waiter w;
    weft__waiter_prepare(&w);
    atomic_store(&e->waiter, &w);
    if (atomic_load(&e->set)) {
        /* Already set: take the waiter back unless set() took it. */
        struct weft__waiter *mine = &w;
        if (atomic_compare_exchange_strong(&e->waiter, &mine, NULL)) {
            weft__waiter_abandon(&w);
            return;
        }
    }
    weft__waiter_wait(&w);
}

static void event_set(struct event *e)
{
    atomic_store(&e->set, 1);
    struct weft__waiter *w = atomic_exchange(&e->waiter, NULL);
    if (w)
        weft__waiter_wake(w);
}

/* ------------------------------------------------------------------------
 * Inline joins run only the task being joined. */

static struct event sibling_go;

static void *returns_arg(void *arg)
{
    return arg;
}

static void *waits_for_parent(void *arg)
{
    event_wait(&sibling_go);
    return arg;
}

/* A then B are spawned; B waits for an event the parent raises only after
 * joining A. Correct without inlining; if joining A ran B inline, B would
 * suspend on the parent's stack and the parent could never raise it. */
static void *parent_joins_a_then_frees_b(void *arg)
{
    (void)arg;
    memset(&sibling_go, 0, sizeof sibling_go);
    weft_task *a = weft_spawn(returns_arg, (void *)7);
    weft_task *b = weft_spawn(waits_for_parent, (void *)8);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    void *ra = NULL, *rb = NULL;
    ck_assert_int_eq(weft_join(a, &ra), 0);
    ck_assert_int_eq((intptr_t)ra, 7);
    event_set(&sibling_go);
    ck_assert_int_eq(weft_join(b, &rb), 0);
    ck_assert_int_eq((intptr_t)rb, 8);
    return NULL;
}

START_TEST(join_runs_the_joined_task_inline_but_never_a_sibling)
{
    /* A deadlock here ends in Check's timeout. */
    tu_run_in((unsigned)(_i + 1), parent_joins_a_then_frees_b, NULL);
}
END_TEST

/* ------------------------------------------------------------------------
 * Two tasks waking each other cannot starve the others. */

#define PINGPONG_LIMIT 2000000L

static struct event turn_ev[2];
static atomic_int turn;
static atomic_long rounds;
static atomic_long x_ran_at; /* round at which X ran; -1: not yet */
static atomic_int stop;

static void give_turn(int to)
{
    atomic_store(&turn, to);
    event_set(&turn_ev[to]);
}

static void wait_turn(int me)
{
    while (atomic_load(&turn) != me) {
        atomic_store(&turn_ev[me].set, 0);
        if (atomic_load(&turn) == me)
            break;
        event_wait(&turn_ev[me]);
    }
}

static void *pingpong(void *arg)
{
    int me = (int)(intptr_t)arg;
    for (;;) {
        wait_turn(me);
        if (atomic_load(&stop) ||
            atomic_fetch_add(&rounds, 1) >= PINGPONG_LIMIT) {
            atomic_store(&stop, 1);
            give_turn(1 - me);
            return NULL;
        }
        give_turn(1 - me);
    }
}

static void *older_task(void *arg)
{
    atomic_store(&x_ran_at, atomic_load(&rounds));
    atomic_store(&stop, 1);
    return arg;
}

static void *starvation_main(void *arg)
{
    (void)arg;
    atomic_store(&turn, 0);
    atomic_store(&rounds, 0);
    atomic_store(&x_ran_at, -1);
    atomic_store(&stop, 0);
    memset(turn_ev, 0, sizeof turn_ev);
    /* X first, so it is the oldest entry of the deque. */
    weft_task *x = weft_spawn(older_task, NULL);
    weft_task *a = weft_spawn(pingpong, (void *)0);
    weft_task *b = weft_spawn(pingpong, (void *)1);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(weft_join(a, NULL), 0);
    ck_assert_int_eq(weft_join(b, NULL), 0);
    ck_assert_int_eq(weft_join(x, NULL), 0);
    return NULL;
}

START_TEST(tasks_waking_each_other_do_not_starve_an_older_task)
{
    tu_run_in(1, starvation_main, NULL);
    long at = atomic_load(&x_ran_at);
    ck_assert_msg(at >= 0 && at < PINGPONG_LIMIT,
                  "the older task ran at round %ld of the ping-pong (limit "
                  "%ld): the woken tasks starved it",
                  at, PINGPONG_LIMIT);
}
END_TEST

/* ------------------------------------------------------------------------
 * Threads outside the runtime racing weft_runtime_free. */

static struct event parked_ev;

static void *parks_until_set(void *arg)
{
    event_wait(&parked_ev);
    return arg;
}

struct joiner_arg {
    weft_task *task;
    int rc;
    void *result;
};

static void *join_from_thread(void *p)
{
    struct joiner_arg *j = p;
    j->rc = weft_join(j->task, &j->result);
    return NULL;
}

/* A plain thread joins a task while the main thread frees the runtime:
 * the join still uses the runtime's registry when it frees the handle,
 * after the free may have returned (ASan reports it if that is unsafe). */
START_TEST(a_join_in_progress_on_another_thread_survives_runtime_free)
{
    for (int i = 0; i < TU_SCALE(200, 100, 20); i++) {
        memset(&parked_ev, 0, sizeof parked_ev);
        weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 2});
        ck_assert_ptr_nonnull(rt);
        struct joiner_arg j = {
            .task = weft_spawn_ex(rt, parks_until_set, (void *)9, NULL)};
        ck_assert_ptr_nonnull(j.task);
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, join_from_thread, &j), 0);
        /* Wait until the thread has registered as the joiner. */
        while (!weft__load_acq_ptr(&j.task->joiner))
            sched_yield();
        /* A plain thread wakes the task, which may run, finish and wake
         * the joiner while the runtime is being freed. */
        event_set(&parked_ev);
        weft_runtime_free(rt);
        ck_assert_int_eq(pthread_join(th, NULL), 0);
        if (j.rc == -ECANCELED)
            continue; /* the free cancelled it before it started */
        ck_assert_int_eq(j.rc, 0);
        ck_assert_int_eq((intptr_t)j.result, 9);
    }
}
END_TEST

/* ------------------------------------------------------------------------
 * A stress test: random task trees on 4 workers and 2 plain threads. */

static atomic_long tree_spawned, tree_ran, tree_detached_nodes;
static long tree_budget;
static uint64_t tree_seed;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

struct node {
    uint64_t rng;
    int depth;
    bool detached;
};

static void *tree_node(void *arg);

/* Spawn a child unless the budget is spent. */
static weft_task *spawn_node(struct node *parent, bool detached)
{
    if (atomic_fetch_add(&tree_spawned, 1) >= tree_budget) {
        atomic_fetch_sub(&tree_spawned, 1);
        return NULL;
    }
    struct node *c = malloc(sizeof *c);
    TU_ASSERT(c != NULL);
    parent->rng = mix(parent->rng + 1);
    *c = (struct node){
        .rng = parent->rng, .depth = parent->depth + 1, .detached = detached};
    weft_task *t = weft_spawn(tree_node, c);
    TU_ASSERT(t != NULL);
    return t;
}

/* Returns the number of nodes in its subtree that were joined to it (itself
 * included); a detached node adds its count to tree_detached_nodes. */
static void *tree_node(void *arg)
{
    struct node self = *(struct node *)arg;
    free(arg);
    atomic_fetch_add(&tree_ran, 1);
    weft_task *kids[4];
    int n = 0;
    /* Bushy near the root, random below, bounded by depth and budget. */
    int want = self.depth < 3 ? 4 : self.depth < 16 ? (int)(self.rng % 4) : 0;
    long count = 1;
    for (int i = 0; i < want; i++) {
        self.rng = mix(self.rng);
        bool detach = self.rng % 5 == 0;
        weft_task *t = spawn_node(&self, detach);
        if (!t)
            break;
        if (detach)
            weft_detach(t);
        else
            kids[n++] = t;
        if (self.rng % 3 == 0)
            TU_ASSERT_INT_EQ(weft_yield(), 0);
    }
    /* Join in a random order: newest first, oldest first, or from the
     * middle, so inline joins meet every position in the deque. */
    int start = n ? (int)(self.rng % (uint64_t)n) : 0;
    for (int i = 0; i < n; i++) {
        void *r = NULL;
        TU_ASSERT_INT_EQ(weft_join(kids[(start + i) % n], &r), 0);
        count += (long)(intptr_t)r;
    }
    if (self.detached) {
        atomic_fetch_add(&tree_detached_nodes, count);
        return NULL;
    }
    return (void *)(intptr_t)count;
}

static void *tree_root(void *arg)
{
    return tree_node(arg);
}

struct tree_thread {
    weft_runtime *rt;
    uint64_t seed;
    long joined_nodes;
};

/* A plain thread spawns trees into the runtime and joins them. */
static void *tree_from_thread(void *p)
{
    struct tree_thread *tt = p;
    for (int i = 0; i < 8; i++) {
        struct node *root = malloc(sizeof *root);
        TU_ASSERT(root != NULL);
        *root = (struct node){.rng = mix(tt->seed + (uint64_t)i)};
        atomic_fetch_add(&tree_spawned, 1);
        weft_task *t = weft_spawn_ex(tt->rt, tree_root, root, NULL);
        TU_ASSERT(t != NULL);
        void *r = NULL;
        TU_ASSERT_INT_EQ(weft_join(t, &r), 0);
        tt->joined_nodes += (long)(intptr_t)r;
    }
    return NULL;
}

START_TEST(random_task_trees_count_every_task_exactly_once)
{
    tree_seed = tu_seed("random_task_trees_count_every_task_exactly_once");
    /* Under TSan, few enough that the stacks parked joins hold at once stay
     * well below TSan's limit of about 8k fibers (it counts them as
     * threads). */
    tree_budget = TU_SCALE(200000, 100000, 8000);
    atomic_store(&tree_spawned, 0);
    atomic_store(&tree_ran, 0);
    atomic_store(&tree_detached_nodes, 0);
    weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 4});
    ck_assert_ptr_nonnull(rt);
    struct tree_thread tt[2] = {{rt, mix(tree_seed), 0},
                                {rt, mix(tree_seed + 1), 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, tree_from_thread, &tt[i]),
                         0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    /* Detached subtrees may still run: let them finish (the free would
     * cancel them). */
    tu_wait_idle(rt);
    weft_runtime_free(rt);
    long spawned = atomic_load(&tree_spawned);
    long ran = atomic_load(&tree_ran);
    long counted = tt[0].joined_nodes + tt[1].joined_nodes +
                   atomic_load(&tree_detached_nodes);
    printf("random trees: %ld tasks spawned, %ld ran, %ld counted\n", spawned,
           ran, counted);
    ck_assert_int_eq(ran, spawned);
    ck_assert_int_eq(counted, spawned);
    ck_assert_int_gt(spawned, 16);
}
END_TEST

/* ------------------------------------------------------------------------
 * Handles outlive their runtime. */

START_TEST(handles_can_be_joined_renamed_and_detached_after_runtime_free)
{
    weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 2});
    ck_assert_ptr_nonnull(rt);
    weft_task *a = weft_spawn_ex(rt, returns_arg, (void *)41, NULL);
    weft_task *b = weft_spawn_ex(rt, returns_arg, (void *)42, NULL);
    weft_task *c = weft_spawn_ex(rt, returns_arg, (void *)43, NULL);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(c);
    tu_wait_idle(rt); /* a, b and c finish (the free would cancel them) */
    weft_runtime_free(rt);
    ck_assert(weft_task_done(a));
    ck_assert_int_eq(weft_task_set_name(b, "after-free"), 0);
    void *r = NULL;
    ck_assert_int_eq(weft_join(a, &r), 0);
    ck_assert_int_eq((intptr_t)r, 41);
    weft_detach(c);
    ck_assert_int_eq(weft_join(b, &r), 0); /* the last: frees the rest */
    ck_assert_int_eq((intptr_t)r, 42);
}
END_TEST

struct late {
    weft_task *task;
    atomic_int go;
    void *result;
    int rc;
};

/* Joins or detaches once told to, racing weft_runtime_free. */
static void *late_handle_user(void *p)
{
    struct late *l = p;
    while (!atomic_load(&l->go))
        sched_yield();
    if (l->result == (void *)-1) {
        weft_detach(l->task);
        l->rc = 0;
    } else {
        l->rc = weft_join(l->task, &l->result);
    }
    return NULL;
}

START_TEST(a_join_or_detach_racing_runtime_free_is_safe)
{
    for (int i = 0; i < TU_SCALE(300, 150, 40); i++) {
        weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 2});
        ck_assert_ptr_nonnull(rt);
        struct late l = {.task =
                             weft_spawn_ex(rt, returns_arg, (void *)5, NULL),
                         .result = (i & 1) ? (void *)-1 : NULL};
        ck_assert_ptr_nonnull(l.task);
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, late_handle_user, &l), 0);
        atomic_store(&l.go, 1);
        weft_runtime_free(rt);
        ck_assert_int_eq(pthread_join(th, NULL), 0);
        /* The free cancels the task if it has not run yet. */
        if (l.rc == -ECANCELED)
            continue;
        ck_assert_int_eq(l.rc, 0);
        if (!(i & 1))
            ck_assert_int_eq((intptr_t)l.result, 5);
    }
}
END_TEST

static Suite *worker_suite(void)
{
    Suite *s = suite_create("worker");
    TCase *tc = tcase_create("inline_join");
    tcase_add_loop_test(
        tc, join_runs_the_joined_task_inline_but_never_a_sibling, 0, 2);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("fairness");
    tcase_add_test(tc, tasks_waking_each_other_do_not_starve_an_older_task);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_add_test(tc, random_task_trees_count_every_task_exactly_once);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);

    tc = tcase_create("outside_threads");
    tcase_add_test(tc,
                   a_join_in_progress_on_another_thread_survives_runtime_free);
    tcase_add_test(
        tc, handles_can_be_joined_renamed_and_detached_after_runtime_free);
    tcase_add_test(tc, a_join_or_detach_racing_runtime_free_is_safe);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(worker_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
