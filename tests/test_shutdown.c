/* Shutdown and cancellation under load (weft.h, weft_runtime_free,
 * weft_run, "Cancellation"): freeing a runtime cancels and reaps every
 * task still alive, detached or not, including tasks spawned while it
 * waits; and a stress test of random task trees whose tasks are cancelled
 * at random by another task and another thread, which checks that every
 * task is reaped exactly once.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "testutil.h"

/* Under TSan every task that holds a stack is a fiber, and TSan allows
 * about 8k of them. */
#define N_SLEEPERS TU_SCALE(10000, 4000, 2000)

static void pause_briefly(void)
{
    nanosleep(&(struct timespec){.tv_nsec = 200000}, NULL);
}

static void wait_count(atomic_long *count, long want)
{
    double t0 = weft_now();
    while (atomic_load(count) < want) {
        ck_assert_msg(weft_now() - t0 < 30.0, "only %ld of %ld tasks started",
                      atomic_load(count), want);
        if (weft_current())
            tu_yield();
        else
            pause_briefly();
    }
}

/* ------------------------------------------------------------------------
 * weft_runtime_free and weft_run cancel what is left */

static atomic_long sd_entered, sd_exited, sd_ecanceled;

static void reset_counts(void)
{
    atomic_store(&sd_entered, 0);
    atomic_store(&sd_exited, 0);
    atomic_store(&sd_ecanceled, 0);
}

static void *sleep_forever_counted(void *arg)
{
    atomic_fetch_add(&sd_entered, 1);
    int rc = weft_sleep(WEFT_FOREVER);
    if (rc == -ECANCELED)
        atomic_fetch_add(&sd_ecanceled, 1);
    atomic_fetch_add(&sd_exited, 1);
    return arg;
}

START_TEST(runtime_free_cancels_and_reaps_ten_thousand_sleeping_tasks)
{
    long n = N_SLEEPERS;
    reset_counts();
    weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 2});
    ck_assert_ptr_nonnull(rt);
    /* Every other handle is kept, to be joined after the free. */
    weft_task **kept = calloc((size_t)n / 2 + 1, sizeof *kept);
    ck_assert_ptr_nonnull(kept);
    long nkept = 0;
    for (long i = 0; i < n; i++) {
        weft_task *t = weft_spawn_ex(rt, sleep_forever_counted, NULL, NULL);
        TU_ASSERT(t != NULL);
        if (i % 2)
            weft_detach(t);
        else
            kept[nkept++] = t;
    }
    wait_count(&sd_entered, n);
    weft_runtime_free(rt);
    ck_assert_int_eq(atomic_load(&sd_exited), n);
    ck_assert_int_eq(atomic_load(&sd_ecanceled), n);
    for (long i = 0; i < nkept; i++) {
        TU_ASSERT(weft_task_done(kept[i]));
        TU_ASSERT(weft_task_cancelled(kept[i]));
        TU_ASSERT_INT_EQ(weft_join(kept[i], NULL), -ECANCELED);
    }
    free(kept);
}
END_TEST

static void *leave_sleepers_main(void *arg)
{
    long n = (long)(intptr_t)arg;
    for (long i = 0; i < n; i++) {
        weft_task *t = weft_spawn(sleep_forever_counted, NULL);
        TU_ASSERT(t != NULL);
        weft_detach(t);
    }
    wait_count(&sd_entered, n);
    return (void *)99;
}

START_TEST(run_returning_cancels_the_tasks_main_left_sleeping)
{
    long n = N_SLEEPERS;
    reset_counts();
    void *r = NULL;
    ck_assert_int_eq(weft_run(leave_sleepers_main, (void *)(intptr_t)n, &r), 0);
    ck_assert_int_eq((intptr_t)r, 99);
    ck_assert_int_eq(atomic_load(&sd_exited), n);
    ck_assert_int_eq(atomic_load(&sd_ecanceled), n);
}
END_TEST

static atomic_long late_spawned, late_entered, late_exited, late_joined_rc;

static void *late_child(void *arg)
{
    atomic_fetch_add(&late_entered, 1);
    int rc = weft_sleep(WEFT_FOREVER);
    TU_ASSERT_INT_EQ(rc, -ECANCELED);
    atomic_fetch_add(&late_exited, 1);
    return arg;
}

/* Sleeps until the shutdown cancels it, then spawns a task that sleeps
 * forever too; half of them detach it, half join it. */
static void *spawns_when_cancelled(void *arg)
{
    atomic_fetch_add(&sd_entered, 1);
    int rc = weft_sleep(WEFT_FOREVER);
    TU_ASSERT_INT_EQ(rc, -ECANCELED);
    weft_task *c = weft_spawn(late_child, NULL);
    TU_ASSERT(c != NULL);
    atomic_fetch_add(&late_spawned, 1);
    if ((intptr_t)arg % 2) {
        weft_detach(c);
    } else {
        /* Still cancelled: the join forwards it to the child. */
        TU_ASSERT_INT_EQ(weft_join(c, NULL), -ECANCELED);
        atomic_fetch_add(&late_joined_rc, 1);
    }
    atomic_fetch_add(&sd_exited, 1);
    return NULL;
}

START_TEST(runtime_free_cancels_tasks_spawned_while_it_waits)
{
    long n = TU_SCALE(1000, 400, 200);
    reset_counts();
    atomic_store(&late_spawned, 0);
    atomic_store(&late_entered, 0);
    atomic_store(&late_exited, 0);
    atomic_store(&late_joined_rc, 0);
    weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 2});
    ck_assert_ptr_nonnull(rt);
    for (long i = 0; i < n; i++) {
        weft_task *t =
            weft_spawn_ex(rt, spawns_when_cancelled, (void *)(intptr_t)i, NULL);
        TU_ASSERT(t != NULL);
        weft_detach(t);
    }
    wait_count(&sd_entered, n);
    weft_runtime_free(rt);
    ck_assert_int_eq(atomic_load(&sd_exited), n);
    ck_assert_int_eq(atomic_load(&late_spawned), n);
    ck_assert_int_eq(atomic_load(&late_joined_rc), n / 2);
    /* Each late child either never ran or saw the cancel and ended. */
    ck_assert_int_eq(atomic_load(&late_exited), atomic_load(&late_entered));
}
END_TEST

/* ------------------------------------------------------------------------
 * Stress: random task trees, random cancels */

struct slot {
    atomic_int entered;   /* times its body started: 0 or 1 */
    atomic_int exited;    /* times its body returned: as entered */
    atomic_int saw_own;   /* a sleep or yield gave it -ECANCELED */
    atomic_int reaped;    /* times a join or gather reported its end */
    atomic_int cancelled; /* it was reaped with -ECANCELED */
};

static struct slot *slots;
static long budget;
static atomic_long next_slot, cancels_sent;
static atomic_int stop_cancelling;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
/* registry[i]: slot i's task while its body runs, else NULL. Under
 * reg_lock, so that a canceller only cancels a task whose handle is live:
 * a body clears its entry before it returns, and a handle outlives its
 * task's return until the join. */
static weft_task **registry;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static void reg_set(long i, weft_task *t)
{
    pthread_mutex_lock(&reg_lock);
    registry[i] = t;
    pthread_mutex_unlock(&reg_lock);
}

static long take_slot(void)
{
    long i = atomic_fetch_add(&next_slot, 1);
    return i < budget ? i : -1;
}

static long slots_used(void)
{
    long n = atomic_load(&next_slot);
    return n < budget ? n : budget;
}

struct node_arg {
    long idx;
    uint64_t rng;
    int depth;
};

/* args[i]: slot i's node_arg, here rather than malloc'd because a task
 * cancelled before it starts never reads (or frees) its argument. */
static struct node_arg *args;

static void *tree_node(void *p);

/* Called once a join or a gather has reported slot idx's end. */
static void check_reaped(long idx, int rc, void *r)
{
    struct slot *s = &slots[idx];
    TU_ASSERT(rc == 0 || rc == -ECANCELED);
    TU_ASSERT_INT_EQ(atomic_fetch_add(&s->reaped, 1), 0);
    int entered = atomic_load(&s->entered);
    /* The body has returned (or never ran) once its end is reported. */
    TU_ASSERT_INT_EQ(atomic_load(&s->exited), entered);
    if (rc == 0) {
        TU_ASSERT_INT_EQ(entered, 1);
        TU_ASSERT_INT_EQ((intptr_t)r, idx + 1);
        /* Saw -ECANCELED and never uncancelled: it cannot end normally. */
        TU_ASSERT_INT_EQ(atomic_load(&s->saw_own), 0);
    } else {
        atomic_store(&s->cancelled, 1);
    }
    if (!entered)
        TU_ASSERT_INT_EQ(rc, -ECANCELED); /* never ran: ended cancelled */
}

static weft_task *spawn_node(struct node_arg *self, int k, long *idx)
{
    *idx = take_slot();
    if (*idx < 0)
        return NULL;
    struct node_arg *c = &args[*idx];
    *c = (struct node_arg){.idx = *idx,
                           .rng = mix(self->rng + (uint64_t)k + 1),
                           .depth = self->depth + 1};
    weft_task *t = weft_spawn(tree_node, c);
    TU_ASSERT(t != NULL);
    return t;
}

/* Reap kids[0..n): one by one in a random order, by one gather, or a
 * gather of some and joins of the rest. */
static void reap_kids(uint64_t rng, weft_task **kids, const long *kidx, int n)
{
    void *res[4] = {0};
    int errs[4] = {0};
    int mode = (int)(rng % 3);
    int ngather = mode == 0 ? 0 : mode == 1 ? n : n / 2;
    if (ngather > 0) {
        int rc = weft_gather(kids, (size_t)ngather, res, errs);
        TU_ASSERT(rc == 0 || rc == -ECANCELED);
        for (int i = 0; i < ngather; i++)
            check_reaped(kidx[i], errs[i], res[i]);
    }
    int rest = n - ngather;
    int start = rest ? (int)((rng >> 8) % (uint64_t)rest) : 0;
    for (int k = 0; k < rest; k++) {
        int i = ngather + (start + k) % rest;
        void *r = NULL;
        int rc = weft_join(kids[i], &r);
        check_reaped(kidx[i], rc, r);
    }
}

static void *tree_node(void *p)
{
    struct node_arg self = *(struct node_arg *)p;
    struct slot *s = &slots[self.idx];
    TU_ASSERT_INT_EQ(atomic_fetch_add(&s->entered, 1), 0);
    reg_set(self.idx, weft_current());
    bool saw = false;

    self.rng = mix(self.rng);
    int want = self.depth < 2 ? 4 : self.depth < 12 ? (int)(self.rng % 5) : 0;
    weft_task *kids[4];
    long kidx[4];
    int n = 0;
    for (int k = 0; k < want; k++) {
        weft_task *t = spawn_node(&self, k, &kidx[n]);
        if (!t)
            break;
        kids[n++] = t;
        /* Now and then cancel a child at once: often before it starts. */
        if (mix(self.rng + 100 + (uint64_t)k) % 8 == 0) {
            int rc = weft_cancel(t);
            TU_ASSERT(rc == 0 || rc == -ESRCH);
        }
    }
    int rc = weft_sleep((double)(self.rng % 2000) / 1e6);
    TU_ASSERT(rc == 0 || rc == -ECANCELED);
    saw |= rc == -ECANCELED;
    reap_kids(mix(self.rng + 7), kids, kidx, n);
    rc = weft_yield();
    TU_ASSERT(rc == 0 || rc == -ECANCELED);
    saw |= rc == -ECANCELED;
    if (saw)
        atomic_store(&s->saw_own, 1);
    reg_set(self.idx, NULL);
    atomic_fetch_add(&s->exited, 1);
    return (void *)(intptr_t)(self.idx + 1);
}

/* Cancel the task of one random slot, if its body is running. */
static void cancel_one(uint64_t *rng)
{
    long n = slots_used();
    if (n == 0)
        return;
    long i = (long)(tu_rand(rng) % (uint64_t)n);
    pthread_mutex_lock(&reg_lock);
    if (registry[i]) {
        /* Its body has not returned: the task has not finished. */
        TU_ASSERT_INT_EQ(weft_cancel(registry[i]), 0);
        atomic_fetch_add(&cancels_sent, 1);
    }
    pthread_mutex_unlock(&reg_lock);
}

static void *canceller_task(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg | 1;
    while (!atomic_load(&stop_cancelling)) {
        for (int k = 0; k < 4; k++)
            cancel_one(&rng);
        TU_ASSERT_INT_EQ(weft_sleep(0.0003), 0);
    }
    return NULL;
}

static void *canceller_thread(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg | 1;
    while (!atomic_load(&stop_cancelling)) {
        for (int k = 0; k < 4; k++)
            cancel_one(&rng);
        pause_briefly();
    }
    return NULL;
}

START_TEST(random_trees_with_random_cancels_reap_every_task_once)
{
    enum { ROOTS = 4 };
    uint64_t seed =
        tu_seed("random_trees_with_random_cancels_reap_every_task_once");
    budget = TU_SCALE(20000, 6000, 1500);
    slots = calloc((size_t)budget, sizeof *slots);
    registry = calloc((size_t)budget, sizeof *registry);
    args = calloc((size_t)budget, sizeof *args);
    ck_assert(slots && registry && args);
    atomic_store(&next_slot, 0);
    atomic_store(&cancels_sent, 0);
    atomic_store(&stop_cancelling, 0);

    weft_runtime *rt = weft_runtime_new(&(weft_config){.workers = 4});
    ck_assert_ptr_nonnull(rt);
    weft_task *ct = weft_spawn_ex(rt, canceller_task,
                                  (void *)(uintptr_t)mix(seed + 1), NULL);
    ck_assert_ptr_nonnull(ct);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, canceller_thread,
                                    (void *)(uintptr_t)mix(seed + 2)),
                     0);
    weft_task *roots[ROOTS];
    long ridx[ROOTS];
    for (int i = 0; i < ROOTS; i++) {
        ridx[i] = take_slot();
        struct node_arg *a = &args[ridx[i]];
        *a = (struct node_arg){.idx = ridx[i],
                               .rng = mix(seed + 10 + (uint64_t)i)};
        roots[i] = weft_spawn_ex(rt, tree_node, a, NULL);
        ck_assert_ptr_nonnull(roots[i]);
    }
    for (int i = 0; i < ROOTS; i++) {
        void *r = NULL;
        int rc = weft_join(roots[i], &r);
        check_reaped(ridx[i], rc, r);
    }
    atomic_store(&stop_cancelling, 1);
    ck_assert_int_eq(weft_join(ct, NULL), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    weft_runtime_free(rt);

    long n = slots_used(), ran = 0, cancelled = 0;
    for (long i = 0; i < n; i++) {
        struct slot *s = &slots[i];
        int entered = atomic_load(&s->entered);
        TU_ASSERT(entered == 0 || entered == 1);
        TU_ASSERT_INT_EQ(atomic_load(&s->exited), entered);
        TU_ASSERT_INT_EQ(atomic_load(&s->reaped), 1);
        ran += entered;
        cancelled += atomic_load(&s->cancelled);
    }
    printf("cancelled trees: %ld tasks, %ld ran, %ld never started, "
           "%ld ended cancelled, %ld cancels sent\n",
           n, ran, n - ran, cancelled, atomic_load(&cancels_sent));
    ck_assert_int_gt(n, ROOTS * 4);
    free(slots);
    free(registry);
    free(args);
}
END_TEST

static Suite *shutdown_suite(void)
{
    Suite *s = suite_create("shutdown");

    TCase *tc = tcase_create("free_cancels");
    tcase_add_test(tc,
                   runtime_free_cancels_and_reaps_ten_thousand_sleeping_tasks);
    tcase_add_test(tc, run_returning_cancels_the_tasks_main_left_sleeping);
    tcase_add_test(tc, runtime_free_cancels_tasks_spawned_while_it_waits);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_add_loop_test(
        tc, random_trees_with_random_cancels_reap_every_task_once, 0, 3);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(shutdown_suite());
}
