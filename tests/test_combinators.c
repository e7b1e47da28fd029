/* Combinators (weft.h, "Combinators"): weft_gather, weft_wait,
 * weft_shield and the as_completed iterator: results, per-task errors,
 * cancellation forwarded or not, time limits and bad input.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

static void wait_flag(atomic_int *flag)
{
    while (!atomic_load(flag))
        tu_yield();
}

static void *add_one(void *arg)
{
    return (void *)((intptr_t)arg + 1);
}

/* Sleeps arg milliseconds, then returns arg. */
static void *sleep_ms(void *arg)
{
    int rc = weft_sleep((double)(intptr_t)arg / 1e3);
    TU_ASSERT_INT_EQ(rc, 0);
    return arg;
}

/* Polls a flag, with short sleeps, until it is set; returns arg. */
static atomic_int release;

static void *until_released(void *arg)
{
    while (!atomic_load(&release))
        TU_ASSERT_INT_EQ(weft_sleep(0.001), 0);
    return arg;
}

static void *end_cancelled(void *arg)
{
    (void)arg;
    TU_ASSERT_INT_EQ(weft_cancel(weft_current()), 0);
    TU_ASSERT_INT_EQ(weft_yield(), -ECANCELED);
    return (void *)1;
}

/* ------------------------------------------------------------------------
 * gather */

static void *gather_main(void *arg)
{
    (void)arg;
    enum { N = 6 };
    weft_task *t[N];
    for (intptr_t i = 0; i < N; i++) {
        t[i] = weft_spawn(i == 2 || i == 4 ? end_cancelled : sleep_ms,
                          (void *)(N - i));
        ck_assert_ptr_nonnull(t[i]);
    }
    void *res[N];
    int errs[N];
    for (int i = 0; i < N; i++) {
        res[i] = (void *)-1;
        errs[i] = 1;
    }
    /* The first non-zero errs[i]. */
    ck_assert_int_eq(weft_gather(t, N, res, errs), -ECANCELED);
    for (intptr_t i = 0; i < N; i++) {
        if (i == 2 || i == 4) {
            ck_assert_int_eq(errs[i], -ECANCELED);
            ck_assert_ptr_null(res[i]);
        } else {
            ck_assert_int_eq(errs[i], 0);
            ck_assert_int_eq((intptr_t)res[i], N - i);
        }
    }

    /* All normal: 0; results and errs may be NULL; n may be 0. */
    for (intptr_t i = 0; i < N; i++) {
        t[i] = weft_spawn(add_one, (void *)i);
        ck_assert_ptr_nonnull(t[i]);
    }
    ck_assert_int_eq(weft_gather(t, N, res, NULL), 0);
    for (intptr_t i = 0; i < N; i++)
        ck_assert_int_eq((intptr_t)res[i], i + 1);
    for (intptr_t i = 0; i < N; i++) {
        t[i] = weft_spawn(add_one, (void *)i);
        ck_assert_ptr_nonnull(t[i]);
    }
    ck_assert_int_eq(weft_gather(t, N, NULL, errs), 0);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(errs[i], 0);
    ck_assert_int_eq(weft_gather(t, 0, NULL, NULL), 0);
    ck_assert_int_eq(weft_gather(NULL, 0, NULL, NULL), 0);
    return NULL;
}

START_TEST(gather_returns_results_and_per_task_errors)
{
    tu_run_in(2, gather_main, NULL);
}
END_TEST

static atomic_int gc_started, gc_exited;
static int gc_rc[3];

static void *gc_child(void *arg)
{
    intptr_t i = (intptr_t)arg;
    atomic_fetch_add(&gc_started, 1);
    gc_rc[i] = weft_sleep(WEFT_FOREVER);
    atomic_fetch_add(&gc_exited, 1);
    return arg;
}

struct gathering {
    weft_task *kids[3];
    atomic_int ready;
    int rc, exited_at_return;
    int errs[3];
};

static void *gathering_parent(void *arg)
{
    struct gathering *g = arg;
    for (intptr_t i = 0; i < 3; i++) {
        g->kids[i] = weft_spawn(gc_child, (void *)i);
        TU_ASSERT(g->kids[i] != NULL);
    }
    wait_flag(&g->ready); /* the children are asleep */
    g->rc = weft_gather(g->kids, 3, NULL, g->errs);
    g->exited_at_return = atomic_load(&gc_exited);
    return NULL;
}

static void *gather_cancel_main(void *arg)
{
    (void)arg;
    struct gathering g = {.errs = {1, 1, 1}};
    weft_task *p = weft_spawn(gathering_parent, &g);
    ck_assert_ptr_nonnull(p);
    while (atomic_load(&gc_started) < 3)
        tu_yield();
    for (int i = 0; i < 3; i++)
        tu_wait_until_waiting(NULL, g.kids[i]);
    atomic_store(&g.ready, 1);
    tu_wait_until_waiting(NULL, p);
    /* The parent is in weft_gather now (its only way to wait). */
    ck_assert_int_eq(weft_cancel(p), 0);
    /* Its gather saw the cancel, which is still pending when it returns. */
    ck_assert_int_eq(weft_join(p, NULL), -ECANCELED);
    ck_assert_int_eq(g.rc, -ECANCELED);
    /* Every child was cancelled and reaped before the gather returned. */
    ck_assert_int_eq(g.exited_at_return, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(gc_rc[i], -ECANCELED);
        ck_assert_int_eq(g.errs[i], -ECANCELED);
    }
    return NULL;
}

START_TEST(gather_cancels_children_when_caller_is_cancelled)
{
    atomic_store(&gc_started, 0);
    atomic_store(&gc_exited, 0);
    tu_run_in(2, gather_cancel_main, NULL);
}
END_TEST

/* The first child, run while the gather waits for it, outlives the
 * cancel and waits for its sibling to end: the caller's cancel must have
 * reached the sibling too, not only the child the gather waits for. */
static atomic_int sib_ended, sib_seen;
static int sib_rc;

static void *waits_for_sibling(void *arg)
{
    (void)arg;
    TU_ASSERT_INT_EQ(weft_sleep(WEFT_FOREVER), -ECANCELED);
    TU_ASSERT_INT_EQ(weft_uncancel(), 0);
    double t0 = weft_now();
    while (!atomic_load(&sib_ended) && weft_now() - t0 < 5.0)
        TU_ASSERT_INT_EQ(weft_yield(), 0);
    atomic_store(&sib_seen, atomic_load(&sib_ended));
    return NULL;
}

static void *sibling(void *arg)
{
    (void)arg;
    sib_rc = weft_sleep(WEFT_FOREVER);
    atomic_store(&sib_ended, 1);
    return NULL;
}

static weft_task *sib_kids[2];

static void *gathers_at_once(void *arg)
{
    (void)arg;
    weft_task *kids[2] = {weft_spawn(waits_for_sibling, NULL),
                          weft_spawn(sibling, NULL)};
    TU_ASSERT(kids[0] && kids[1]);
    __atomic_store_n(&sib_kids[0], kids[0], __ATOMIC_RELEASE);
    sib_kids[1] = kids[1];
    int errs[2];
    return (void *)(intptr_t)weft_gather(kids, 2, NULL, errs);
}

static void *gather_sibling_main(void *arg)
{
    (void)arg;
    weft_task *p = weft_spawn(gathers_at_once, NULL);
    ck_assert_ptr_nonnull(p);
    while (!__atomic_load_n(&sib_kids[0], __ATOMIC_ACQUIRE))
        tu_yield();
    tu_wait_until_waiting(NULL, sib_kids[0]);
    tu_wait_until_waiting(NULL, sib_kids[1]);
    ck_assert_int_eq(weft_cancel(p), 0);
    ck_assert_int_eq(weft_join(p, NULL), -ECANCELED);
    ck_assert_int_eq(atomic_load(&sib_seen), 1); /* not after 5 s */
    ck_assert_int_eq(sib_rc, -ECANCELED);
    return NULL;
}

START_TEST(gather_cancel_reaches_every_child_while_the_first_runs)
{
    atomic_store(&sib_ended, 0);
    atomic_store(&sib_seen, 0);
    sib_kids[0] = sib_kids[1] = NULL;
    tu_run_in(1, gather_sibling_main, NULL);
}
END_TEST

static void *gather_bad_main(void *arg)
{
    (void)arg;
    weft_task *a = weft_spawn(add_one, (void *)1);
    weft_task *b = weft_spawn(add_one, (void *)2);
    ck_assert(a && b);
    weft_task *self = weft_current();
    int errs[2];
    ck_assert_int_eq(weft_gather(NULL, 2, NULL, NULL), -EINVAL);
    ck_assert_int_eq(weft_gather((weft_task *[]){a, NULL}, 2, NULL, errs),
                     -EINVAL);
    ck_assert_int_eq(weft_gather((weft_task *[]){a, a}, 2, NULL, errs),
                     -EINVAL);
    ck_assert_int_eq(weft_gather((weft_task *[]){self}, 1, NULL, errs),
                     -EINVAL);
    ck_assert_int_eq(weft_gather((weft_task *[]){a, self}, 2, NULL, errs),
                     -EINVAL);
    /* Nothing was joined: both handles are still ours. */
    tu_join_expect(a, 2);
    tu_join_expect(b, 3);
    return NULL;
}

START_TEST(gather_with_bad_input_fails_with_einval_and_joins_nothing)
{
    tu_run_in(2, gather_bad_main, NULL);
}
END_TEST

struct joined_elsewhere {
    weft_task *target;
    int rc;
    void *result;
};

static void *join_target(void *arg)
{
    struct joined_elsewhere *je = arg;
    je->rc = weft_join(je->target, &je->result);
    return NULL;
}

static atomic_int target_started;

static void *target_body(void *arg)
{
    atomic_store(&target_started, 1);
    return until_released(arg);
}

static void *gather_joined_main(void *arg)
{
    (void)arg;
    struct joined_elsewhere je = {0};
    je.target = weft_spawn(target_body, (void *)21);
    ck_assert_ptr_nonnull(je.target);
    wait_flag(&target_started);
    weft_task *joiner = weft_spawn(join_target, &je);
    ck_assert_ptr_nonnull(joiner);
    tu_wait_until_waiting(NULL, joiner); /* it is in weft_join */
    weft_task *other = weft_spawn(add_one, (void *)4);
    ck_assert_ptr_nonnull(other);

    weft_task *t[2] = {je.target, other};
    void *res[2] = {0};
    int errs[2] = {1, 1};
    int rc = weft_gather(t, 2, res, errs);
    /* Either the whole gather is refused (nothing joined) or the entry
     * already being waited for gets -EINVAL and its handle is kept. */
    ck_assert_msg(rc == -EINVAL, "gather returned %d", rc);
    fprintf(stderr, "gather with a task joined elsewhere: %s\n",
            errs[0] == -EINVAL ? "errs[0] = -EINVAL, the others joined"
                               : "-EINVAL up front, nothing joined");
    if (errs[0] == -EINVAL) {
        ck_assert_int_eq(errs[1], 0);
        ck_assert_int_eq((intptr_t)res[1], 5);
    } else {
        tu_join_expect(other, 5);
    }
    atomic_store(&release, 1);
    ck_assert_int_eq(weft_join(joiner, NULL), 0);
    /* The first waiter was not disturbed. */
    ck_assert_int_eq(je.rc, 0);
    ck_assert_int_eq((intptr_t)je.result, 21);
    return NULL;
}

START_TEST(gather_of_a_task_joined_elsewhere_fails_with_einval)
{
    atomic_store(&release, 0);
    atomic_store(&target_started, 0);
    tu_run_in(2, gather_joined_main, NULL);
}
END_TEST

/* ------------------------------------------------------------------------
 * wait */

static void check_partition(weft_task **t, size_t n, size_t ndone)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(weft_task_done(t[i]) == (i < ndone),
                      "task %zu of %zu: done %d, ndone %zu", i, n,
                      weft_task_done(t[i]), ndone);
}

static void *wait_first_main(void *arg)
{
    (void)arg;
    weft_task *slow1 = weft_spawn(until_released, (void *)1);
    weft_task *slow2 = weft_spawn(until_released, (void *)2);
    double t0 = weft_now(); /* before the quick one starts its sleep */
    weft_task *quick = weft_spawn(sleep_ms, (void *)20);
    ck_assert(slow1 && slow2 && quick);
    weft_task *t[3] = {slow1, slow2, quick};
    size_t ndone = 99;
    ck_assert_int_eq(
        weft_wait(t, 3, WEFT_FOREVER, WEFT_WAIT_FIRST_COMPLETED, &ndone), 0);
    tu_check_elapsed(t0, 0.02, "wait for the first of three");
    ck_assert_uint_eq(ndone, 1);
    ck_assert_ptr_eq(t[0], quick); /* moved to the front */
    check_partition(t, 3, ndone);
    /* Nothing was cancelled or freed. */
    ck_assert_int_eq(weft_cancelling(slow1), 0);
    ck_assert_int_eq(weft_cancelling(slow2), 0);
    atomic_store(&release, 1);
    tu_join_expect(quick, 20);
    tu_join_expect(slow1, 1);
    tu_join_expect(slow2, 2);
    return NULL;
}

START_TEST(wait_first_completed_returns_when_one_finishes)
{
    atomic_store(&release, 0);
    tu_run_in(2, wait_first_main, NULL);
}
END_TEST

static void *wait_all_main(void *arg)
{
    (void)arg;
    enum { N = 5 };
    weft_task *t[N];
    double t0 = weft_now(); /* before any of them starts its sleep */
    for (intptr_t i = 0; i < N; i++) {
        t[i] = weft_spawn(sleep_ms, (void *)(5 * (N - i)));
        ck_assert_ptr_nonnull(t[i]);
    }
    size_t ndone = 0;
    ck_assert_int_eq(
        weft_wait(t, N, WEFT_FOREVER, WEFT_WAIT_ALL_COMPLETED, &ndone), 0);
    tu_check_elapsed(t0, 0.005 * N, "wait for all");
    ck_assert_uint_eq(ndone, N);
    check_partition(t, N, ndone);
    intptr_t sum = 0;
    for (int i = 0; i < N; i++) {
        void *r = NULL;
        ck_assert_int_eq(weft_join(t[i], &r), 0);
        sum += (intptr_t)r;
    }
    ck_assert_int_eq(sum, 5 * (1 + 2 + 3 + 4 + 5));
    return NULL;
}

START_TEST(wait_all_completed_returns_when_all_finish)
{
    tu_run_in(2, wait_all_main, NULL);
}
END_TEST

static void *wait_timeout_main(void *arg)
{
    (void)arg;
    weft_task *slow = weft_spawn(until_released, (void *)1);
    weft_task *quick = weft_spawn(sleep_ms, (void *)1);
    ck_assert(slow && quick);
    weft_task *t[2] = {slow, quick};
    size_t ndone = 99;
    double t0 = weft_now();
    ck_assert_int_eq(weft_wait(t, 2, 0.05, WEFT_WAIT_ALL_COMPLETED, &ndone), 0);
    tu_check_elapsed(t0, 0.05, "wait with a 50 ms time-out");
    ck_assert_uint_eq(ndone, 1);
    ck_assert_ptr_eq(t[0], quick);
    ck_assert_ptr_eq(t[1], slow);
    check_partition(t, 2, ndone);
    ck_assert_int_eq(weft_cancelling(slow), 0);
    /* The caller is not in trouble either. */
    ck_assert_int_eq(weft_yield(), 0);

    /* A zero time-out polls. */
    ndone = 99;
    ck_assert_int_eq(weft_wait(t, 2, 0, WEFT_WAIT_FIRST_COMPLETED, &ndone), 0);
    ck_assert_uint_eq(ndone, 1);
    ck_assert_ptr_eq(t[0], quick);

    atomic_store(&release, 1);
    void *r = NULL;
    ck_assert_int_eq(weft_join(slow, &r), 0); /* not cancelled: a result */
    ck_assert_int_eq((intptr_t)r, 1);
    ck_assert_int_eq(weft_join(quick, &r), 0);
    return NULL;
}

START_TEST(wait_with_timeout_returns_0_with_fewer_done_and_cancels_nothing)
{
    atomic_store(&release, 0);
    tu_run_in(2, wait_timeout_main, NULL);
}
END_TEST

static void *wait_bad_main(void *arg)
{
    (void)arg;
    weft_task *a = weft_spawn(add_one, (void *)1);
    weft_task *b = weft_spawn(add_one, (void *)2);
    ck_assert(a && b);
    weft_task *t[2] = {a, b};
    size_t ndone = 0;
    const int F = WEFT_WAIT_FIRST_COMPLETED;
    ck_assert_int_eq(weft_wait(t, 2, 1.0, 0, &ndone), -EINVAL);
    ck_assert_int_eq(weft_wait(t, 2, 1.0, 3, &ndone), -EINVAL);
    ck_assert_int_eq(weft_wait(t, 2, 1.0, -1, &ndone), -EINVAL);
    ck_assert_int_eq(weft_wait(t, 2, -1.0, F, &ndone), -EINVAL);
    ck_assert_int_eq(weft_wait(t, 2, NAN, F, &ndone), -EINVAL);
    ck_assert_int_eq(weft_wait(NULL, 2, 1.0, F, &ndone), -EINVAL);
    ck_assert_int_eq(weft_wait((weft_task *[]){a, NULL}, 2, 1.0, F, &ndone),
                     -EINVAL);
    ck_assert_int_eq(weft_wait((weft_task *[]){a, a}, 2, 1.0, F, &ndone),
                     -EINVAL);
    tu_join_expect(a, 2);
    tu_join_expect(b, 3);
    return NULL;
}

START_TEST(wait_with_bad_input_fails_with_einval)
{
    tu_run_in(2, wait_bad_main, NULL);
    /* From a plain thread. */
    size_t ndone = 0;
    weft_task *none[1] = {NULL};
    int rc = weft_wait(none, 0, 1.0, WEFT_WAIT_ALL_COMPLETED, &ndone);
    ck_assert_msg(rc == -EPERM || rc == -EINVAL, "rc %d", rc);
}
END_TEST

/* ------------------------------------------------------------------------
 * shield */

static void *shielded_body(void *arg)
{
    int rc = weft_sleep(0.1);
    TU_ASSERT_INT_EQ(rc, 0); /* never cancelled */
    return arg;
}

struct shielding {
    weft_task *inner;
    atomic_int shielding;
    int rc;
    double took;
};

static void *shield_caller(void *arg)
{
    struct shielding *sh = arg;
    sh->inner = weft_spawn(shielded_body, (void *)77);
    TU_ASSERT(sh->inner != NULL);
    atomic_store(&sh->shielding, 1);
    double t0 = weft_now();
    sh->rc = weft_shield(sh->inner, NULL);
    sh->took = weft_now() - t0;
    return NULL; /* the inner handle is left to the test */
}

static void *shield_main(void *arg)
{
    (void)arg;
    struct shielding sh = {0};
    weft_task *outer = weft_spawn(shield_caller, &sh);
    ck_assert_ptr_nonnull(outer);
    wait_flag(&sh.shielding);
    tu_wait_until_waiting(NULL, outer);
    ck_assert_int_eq(weft_cancel(outer), 0);
    ck_assert_int_eq(weft_join(outer, NULL), -ECANCELED);
    ck_assert_int_eq(sh.rc, -ECANCELED);
    ck_assert_msg(sh.took < 0.1, "shield returned after %.3f s", sh.took);
    /* The inner task runs on, untouched, and is still ours to join. */
    ck_assert(!weft_task_done(sh.inner));
    ck_assert_int_eq(weft_cancelling(sh.inner), 0);
    void *r = NULL;
    tu_join_expect(sh.inner, 77);

    /* Finishing first: the result, and the handle is freed. */
    weft_task *t = weft_spawn(add_one, (void *)1);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(weft_shield(t, &r), 0);
    ck_assert_int_eq((intptr_t)r, 2);

    /* A scope expiring: -ETIMEDOUT at once, the task untouched. */
    t = weft_spawn(shielded_body, (void *)78);
    ck_assert_ptr_nonnull(t);
    weft_timeout s;
    double t0 = weft_now(); /* no later than the scope's start */
    ck_assert_int_eq(weft_timeout_enter(&s, 0.02), 0);
    ck_assert_int_eq(weft_shield(t, &r), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.02, "shield in a 20 ms scope");
    ck_assert_int_eq(weft_timeout_exit(&s), -ETIMEDOUT);
    ck_assert_int_eq(weft_cancelling(t), 0);
    tu_join_expect(t, 78);
    return NULL;
}

START_TEST(shield_keeps_the_inner_task_alive_while_the_outer_is_cancelled)
{
    tu_run_in(2, shield_main, NULL);
}
END_TEST

static void *shield_bad_main(void *arg)
{
    (void)arg;
    ck_assert_int_eq(weft_shield(NULL, NULL), -EINVAL);
    ck_assert_int_eq(weft_shield(weft_current(), NULL), -EINVAL);
    return NULL;
}

START_TEST(shield_of_null_or_itself_fails_with_einval)
{
    tu_run_in(1, shield_bad_main, NULL);
}
END_TEST

/* ------------------------------------------------------------------------
 * as_completed */

static void *as_completed_main(void *arg)
{
    (void)arg;
    /* Spawned out of order; finishing 150 ms apart. */
    static const intptr_t ms[] = {450, 150, 0, 300};
    enum { N = 4 };
    weft_task *t[N];
    for (int i = 0; i < N; i++) {
        t[i] = weft_spawn(sleep_ms, (void *)ms[i]);
        ck_assert_ptr_nonnull(t[i]);
    }
    weft_as_completed *it = weft_as_completed_new(t, N, WEFT_FOREVER);
    ck_assert_ptr_nonnull(it);
    for (int k = 0; k < N; k++) {
        weft_task *done = NULL;
        ck_assert_int_eq(weft_as_completed_next(it, &done), 1);
        ck_assert_ptr_nonnull(done);
        ck_assert(weft_task_done(done));
        tu_join_expect(done, 150 * k); /* in finishing order */
    }
    weft_task *none = (weft_task *)&none;
    ck_assert_int_eq(weft_as_completed_next(it, &none), 0);
    ck_assert_int_eq(weft_as_completed_next(it, &none), 0);
    weft_as_completed_free(it);
    return NULL;
}

START_TEST(as_completed_returns_tasks_in_finishing_order)
{
    tu_run_in(2, as_completed_main, NULL);
}
END_TEST

static void *as_completed_timeout_main(void *arg)
{
    (void)arg;
    weft_task *slow = weft_spawn(until_released, (void *)1);
    weft_task *quick = weft_spawn(sleep_ms, (void *)1);
    ck_assert(slow && quick);
    weft_task *t[2] = {slow, quick};
    double t0 = weft_now();
    weft_as_completed *it = weft_as_completed_new(t, 2, 0.1);
    ck_assert_ptr_nonnull(it);
    t[0] = t[1] = NULL; /* the array was copied */
    weft_task *done = NULL;
    ck_assert_int_eq(weft_as_completed_next(it, &done), 1);
    ck_assert_ptr_eq(done, quick);
    ck_assert_int_eq(weft_as_completed_next(it, &done), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.1, "as_completed with a 100 ms time-out");
    ck_assert_int_eq(weft_as_completed_next(it, &done), -ETIMEDOUT);
    weft_as_completed_free(it);
    /* Not our scope: the caller is fine and the slow task untouched. */
    ck_assert_int_eq(weft_yield(), 0);
    ck_assert_int_eq(weft_cancelling(slow), 0);
    atomic_store(&release, 1);
    tu_join_expect(slow, 1);
    tu_join_expect(quick, 1);
    return NULL;
}

START_TEST(as_completed_overall_timeout_returns_etimedout)
{
    atomic_store(&release, 0);
    tu_run_in(2, as_completed_timeout_main, NULL);
}
END_TEST

static void *as_completed_cancel_main(void *arg)
{
    (void)arg;
    weft_task *t = weft_spawn(sleep_ms, (void *)30);
    ck_assert_ptr_nonnull(t);
    weft_as_completed *it = weft_as_completed_new(&t, 1, WEFT_FOREVER);
    ck_assert_ptr_nonnull(it);
    weft_task *done = NULL;
    ck_assert_int_eq(weft_cancel(weft_current()), 0);
    ck_assert_int_eq(weft_as_completed_next(it, &done), -ECANCELED);
    /* It forwards nothing, and stays usable. */
    ck_assert_int_eq(weft_cancelling(t), 0);
    ck_assert_int_eq(weft_uncancel(), 0);
    ck_assert_int_eq(weft_as_completed_next(it, &done), 1);
    ck_assert_ptr_eq(done, t);
    ck_assert_int_eq(weft_as_completed_next(it, &done), 0);
    weft_as_completed_free(it);
    tu_join_expect(t, 30);
    return NULL;
}

START_TEST(as_completed_of_a_cancelled_caller_stays_usable)
{
    tu_run_in(2, as_completed_cancel_main, NULL);
}
END_TEST

static void *as_completed_bad_main(void *arg)
{
    (void)arg;
    weft_task *a = weft_spawn(add_one, (void *)1);
    ck_assert_ptr_nonnull(a);
    errno = 0;
    ck_assert_ptr_null(weft_as_completed_new(NULL, 2, 1.0));
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_null(weft_as_completed_new((weft_task *[]){a, a}, 2, 1.0));
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_null(weft_as_completed_new(&a, 1, NAN));
    ck_assert_int_eq(errno, EINVAL);
    weft_as_completed *it = weft_as_completed_new(&a, 1, 1.0);
    ck_assert_ptr_nonnull(it);
    weft_task *done = NULL;
    ck_assert_int_eq(weft_as_completed_next(NULL, &done), -EINVAL);
    ck_assert_int_eq(weft_as_completed_next(it, NULL), -EINVAL);
    weft_as_completed_free(it);
    weft_as_completed_free(NULL);
    ck_assert_int_eq(weft_join(a, NULL), 0);
    return NULL;
}

START_TEST(as_completed_with_bad_input_fails_with_einval)
{
    tu_run_in(1, as_completed_bad_main, NULL);
    errno = 0;
    weft_task *none[1] = {NULL};
    ck_assert_ptr_null(weft_as_completed_new(none, 0, 1.0));
    ck_assert_msg(errno == EPERM || errno == EINVAL, "errno %d", errno);
}
END_TEST

static Suite *combinators_suite(void)
{
    Suite *s = suite_create("combinators");

    TCase *tc = tcase_create("gather");
    tcase_add_test(tc, gather_returns_results_and_per_task_errors);
    tcase_add_test(tc, gather_cancels_children_when_caller_is_cancelled);
    tcase_add_test(tc, gather_cancel_reaches_every_child_while_the_first_runs);
    tcase_add_test(tc,
                   gather_with_bad_input_fails_with_einval_and_joins_nothing);
    tcase_add_test(tc, gather_of_a_task_joined_elsewhere_fails_with_einval);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("wait");
    tcase_add_test(tc, wait_first_completed_returns_when_one_finishes);
    tcase_add_test(tc, wait_all_completed_returns_when_all_finish);
    tcase_add_test(
        tc, wait_with_timeout_returns_0_with_fewer_done_and_cancels_nothing);
    tcase_add_test(tc, wait_with_bad_input_fails_with_einval);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("shield");
    tcase_add_test(
        tc, shield_keeps_the_inner_task_alive_while_the_outer_is_cancelled);
    tcase_add_test(tc, shield_of_null_or_itself_fails_with_einval);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("as_completed");
    tcase_add_test(tc, as_completed_returns_tasks_in_finishing_order);
    tcase_add_test(tc, as_completed_overall_timeout_returns_etimedout);
    tcase_add_test(tc, as_completed_of_a_cancelled_caller_stays_usable);
    tcase_add_test(tc, as_completed_with_bad_input_fails_with_einval);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(combinators_suite());
}
