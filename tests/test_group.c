/* Task groups (weft.h, "Task groups"): waiting for every member, members
 * spawning members, the owner cancelled or timed out while it waits,
 * weft_group_cancel, and misuse (spawn after wait, destroy before wait,
 * a non-owner waiting, NULL).
 */
#include <check.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

static atomic_int m_started, m_exited, m_ecanceled;

static void reset_counts(void)
{
    atomic_store(&m_started, 0);
    atomic_store(&m_exited, 0);
    atomic_store(&m_ecanceled, 0);
}

/* Sleeps arg milliseconds (-1: forever), counting how it went. */
static void *member_sleep(void *arg)
{
    intptr_t ms = (intptr_t)arg;
    atomic_fetch_add(&m_started, 1);
    int rc = weft_sleep(ms < 0 ? WEFT_FOREVER : (double)ms / 1e3);
    TU_ASSERT(rc == 0 || rc == -ECANCELED);
    if (rc == -ECANCELED)
        atomic_fetch_add(&m_ecanceled, 1);
    atomic_fetch_add(&m_exited, 1);
    return arg;
}

static void *mark_started(void *arg)
{
    atomic_fetch_add(&m_started, 1);
    return arg;
}

/* ------------------------------------------------------------------------
 * wait */

static void *wait_all_main(void *arg)
{
    (void)arg;
    enum { N = 20 };
    weft_group g;
    ck_assert_int_eq(weft_group_init(&g), 0);
    for (intptr_t i = 0; i < N; i++) {
        weft_task *m =
            weft_group_spawn(&g, member_sleep, (void *)(i % 7), NULL);
        ck_assert_ptr_nonnull(m);
        ck_assert_uint_ne(weft_task_id(m), 0);
    }
    weft_task_opts o = {.name = "named-member"};
    ck_assert_ptr_nonnull(weft_group_spawn(&g, member_sleep, (void *)1, &o));
    ck_assert_int_eq(weft_group_wait(&g), 0);
    ck_assert_int_eq(atomic_load(&m_exited), N + 1);
    ck_assert_int_eq(atomic_load(&m_ecanceled), 0);
    ck_assert_int_eq(weft_group_destroy(&g), 0);

    /* An empty group waits for nothing. */
    ck_assert_int_eq(weft_group_init(&g), 0);
    ck_assert_int_eq(weft_group_wait(&g), 0);
    ck_assert_int_eq(weft_group_destroy(&g), 0);
    return NULL;
}

START_TEST(group_wait_waits_for_every_member)
{
    reset_counts();
    tu_run_in(2, wait_all_main, NULL);
}
END_TEST

enum { FANOUT = 3, DEPTH = 4 };
static weft_group tree_group;
static atomic_int tree_members;

static void *member_spawns_members(void *arg)
{
    intptr_t depth = (intptr_t)arg;
    atomic_fetch_add(&tree_members, 1);
    /* Sleep first, so that most spawns come while the owner waits. */
    TU_ASSERT_INT_EQ(weft_sleep(0.001), 0);
    if (depth < DEPTH)
        for (int i = 0; i < FANOUT; i++)
            TU_ASSERT(weft_group_spawn(&tree_group, member_spawns_members,
                                       (void *)(depth + 1), NULL) != NULL);
    return NULL;
}

static void *members_spawn_main(void *arg)
{
    (void)arg;
    ck_assert_int_eq(weft_group_init(&tree_group), 0);
    ck_assert_ptr_nonnull(
        weft_group_spawn(&tree_group, member_spawns_members, (void *)0, NULL));
    ck_assert_int_eq(weft_group_wait(&tree_group), 0);
    ck_assert_int_eq(weft_group_destroy(&tree_group), 0);
    return NULL;
}

START_TEST(members_spawning_members_are_all_waited_for)
{
    atomic_store(&tree_members, 0);
    tu_run_in(2, members_spawn_main, NULL);
    int want = 0, level = 1;
    for (int d = 0; d <= DEPTH; d++, level *= FANOUT)
        want += level;
    ck_assert_int_eq(atomic_load(&tree_members), want);
}
END_TEST

/* ------------------------------------------------------------------------
 * Cancellation */

enum { MEMBERS = 5 };

struct owner {
    atomic_int waiting;
    int rc, exited_at_return;
};

static void *owner_waits(void *arg)
{
    struct owner *o = arg;
    weft_group g;
    TU_ASSERT_INT_EQ(weft_group_init(&g), 0);
    for (int i = 0; i < MEMBERS; i++)
        TU_ASSERT(weft_group_spawn(&g, member_sleep, (void *)-1, NULL) != NULL);
    while (atomic_load(&m_started) < MEMBERS)
        tu_yield();
    atomic_store(&o->waiting, 1);
    o->rc = weft_group_wait(&g);
    o->exited_at_return = atomic_load(&m_exited);
    TU_ASSERT_INT_EQ(weft_group_destroy(&g), 0);
    return NULL;
}

static void *owner_cancelled_main(void *arg)
{
    (void)arg;
    struct owner o = {0};
    weft_task *t = weft_spawn(owner_waits, &o);
    ck_assert_ptr_nonnull(t);
    while (!atomic_load(&o.waiting))
        tu_yield();
    tu_wait_until_waiting(NULL, t);
    ck_assert_int_eq(weft_cancel(t), 0);
    ck_assert_int_eq(weft_join(t, NULL), -ECANCELED);
    ck_assert_int_eq(o.rc, -ECANCELED);
    ck_assert_int_eq(o.exited_at_return, MEMBERS);
    ck_assert_int_eq(atomic_load(&m_ecanceled), MEMBERS);
    return NULL;
}

START_TEST(owner_cancelled_while_waiting_cancels_and_reaps_every_member)
{
    reset_counts();
    tu_run_in(2, owner_cancelled_main, NULL);
}
END_TEST

static void *owner_times_out_main(void *arg)
{
    (void)arg;
    weft_group g;
    ck_assert_int_eq(weft_group_init(&g), 0);
    for (int i = 0; i < MEMBERS; i++)
        ck_assert_ptr_nonnull(
            weft_group_spawn(&g, member_sleep, (void *)-1, NULL));
    weft_timeout s;
    double t0 = weft_now(); /* no later than the scope's start */
    ck_assert_int_eq(weft_timeout_enter(&s, 0.05), 0);
    ck_assert_int_eq(weft_group_wait(&g), -ETIMEDOUT);
    double took = weft_now() - t0;
    ck_assert_msg(took >= 0.05 - TU_EARLY_EPS && took <= 0.05 + TU_SLACK,
                  "group wait timed out after %.3f s", took);
    ck_assert_int_eq(atomic_load(&m_exited), atomic_load(&m_started));
    ck_assert_int_eq(atomic_load(&m_ecanceled), atomic_load(&m_started));
    ck_assert_int_eq(weft_timeout_exit(&s), -ETIMEDOUT);
    ck_assert_int_eq(weft_group_destroy(&g), 0);
    ck_assert_int_eq(weft_cancelling(weft_current()), 0);
    ck_assert_int_eq(weft_yield(), 0);
    return NULL;
}

START_TEST(owner_scope_expiring_while_waiting_cancels_every_member)
{
    reset_counts();
    tu_run_in(2, owner_times_out_main, NULL);
}
END_TEST

static void *member_cancels_group(void *arg)
{
    weft_group *g = arg;
    TU_ASSERT_INT_EQ(weft_sleep(0.02), 0);
    TU_ASSERT_INT_EQ(weft_group_cancel(g), 0);
    return NULL;
}

static void *group_cancel_main(void *arg)
{
    (void)arg;
    weft_group g;
    ck_assert_int_eq(weft_group_init(&g), 0);
    for (int i = 0; i < MEMBERS; i++)
        ck_assert_ptr_nonnull(
            weft_group_spawn(&g, member_sleep, (void *)-1, NULL));
    ck_assert_ptr_nonnull(weft_group_spawn(&g, member_cancels_group, &g, NULL));
    double t0 = weft_now();
    /* A member ended cancelled: -ECANCELED; the owner itself is not. */
    ck_assert_int_eq(weft_group_wait(&g), -ECANCELED);
    ck_assert_msg(weft_now() - t0 < 0.02 + TU_SLACK, "took %.3f s",
                  weft_now() - t0);
    ck_assert_int_eq(atomic_load(&m_exited), atomic_load(&m_started));
    ck_assert_int_eq(atomic_load(&m_ecanceled), atomic_load(&m_started));
    ck_assert_int_eq(weft_cancelling(weft_current()), 0);
    ck_assert_int_eq(weft_yield(), 0);
    ck_assert_int_eq(weft_group_destroy(&g), 0);

    /* The owner cancels before waiting; later members never run. */
    reset_counts();
    ck_assert_int_eq(weft_group_init(&g), 0);
    ck_assert_ptr_nonnull(weft_group_spawn(&g, member_sleep, (void *)-1, NULL));
    ck_assert_int_eq(weft_group_cancel(&g), 0);
    ck_assert_ptr_nonnull(weft_group_spawn(&g, mark_started, NULL, NULL));
    ck_assert_ptr_nonnull(weft_group_spawn(&g, mark_started, NULL, NULL));
    ck_assert_int_eq(weft_group_wait(&g), -ECANCELED);
    /* At most the first member ran, and it was cancelled. */
    ck_assert_int_le(atomic_load(&m_started), 1);
    ck_assert_int_eq(atomic_load(&m_ecanceled), atomic_load(&m_started));
    ck_assert_int_eq(weft_group_destroy(&g), 0);
    return NULL;
}

START_TEST(group_cancel_ends_the_group_early)
{
    reset_counts();
    tu_run_in(2, group_cancel_main, NULL);
}
END_TEST

static void *cancel_one_member_main(void *arg)
{
    (void)arg;
    weft_group g;
    ck_assert_int_eq(weft_group_init(&g), 0);
    weft_task *a = weft_group_spawn(&g, member_sleep, (void *)-1, NULL);
    weft_task *b = weft_group_spawn(&g, member_sleep, (void *)5, NULL);
    ck_assert(a && b);
    while (atomic_load(&m_started) < 2)
        tu_yield();
    ck_assert(!weft_task_done(a));
    ck_assert_int_eq(weft_cancel(a), 0);
    ck_assert_int_eq(weft_group_wait(&g), -ECANCELED);
    ck_assert_int_eq(atomic_load(&m_exited), 2);
    ck_assert_int_eq(atomic_load(&m_ecanceled), 1); /* only a */
    ck_assert_int_eq(weft_group_destroy(&g), 0);
    return NULL;
}

START_TEST(a_member_cancelled_by_handle_makes_wait_return_ecanceled)
{
    reset_counts();
    tu_run_in(2, cancel_one_member_main, NULL);
}
END_TEST

/* ------------------------------------------------------------------------
 * Misuse */

static void *spawn_after_wait_main(void *arg)
{
    (void)arg;
    weft_group g;
    ck_assert_int_eq(weft_group_init(&g), 0);
    ck_assert_ptr_nonnull(weft_group_spawn(&g, mark_started, NULL, NULL));
    ck_assert_int_eq(weft_group_wait(&g), 0);
    errno = 0;
    ck_assert_ptr_null(weft_group_spawn(&g, mark_started, NULL, NULL));
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(weft_group_wait(&g), -EINVAL); /* already waited for */
    ck_assert_int_eq(weft_group_destroy(&g), 0);
    ck_assert_int_eq(atomic_load(&m_started), 1);
    return NULL;
}

START_TEST(spawn_after_wait_fails_with_einval)
{
    reset_counts();
    tu_run_in(2, spawn_after_wait_main, NULL);
}
END_TEST

static atomic_int go;

static void *member_until_go(void *arg)
{
    while (!atomic_load(&go))
        TU_ASSERT_INT_EQ(weft_sleep(0.001), 0);
    return arg;
}

static void *destroy_early_main(void *arg)
{
    (void)arg;
    weft_group g;
    ck_assert_int_eq(weft_group_init(&g), 0);
    ck_assert_ptr_nonnull(weft_group_spawn(&g, member_until_go, NULL, NULL));
    ck_assert_int_eq(weft_group_destroy(&g), -EBUSY);
    /* Nothing was freed: the group still works. */
    ck_assert_ptr_nonnull(weft_group_spawn(&g, mark_started, NULL, NULL));
    atomic_store(&go, 1);
    ck_assert_int_eq(weft_group_wait(&g), 0);
    ck_assert_int_eq(weft_group_destroy(&g), 0);
    return NULL;
}

START_TEST(destroy_before_wait_fails_with_ebusy)
{
    atomic_store(&go, 0);
    tu_run_in(2, destroy_early_main, NULL);
}
END_TEST

struct not_owner {
    weft_group *g;
    int wait_rc;
};

static void *wait_as_non_owner(void *arg)
{
    struct not_owner *no = arg;
    no->wait_rc = weft_group_wait(no->g);
    return NULL;
}

static void *misuse_main(void *arg)
{
    (void)arg;
    ck_assert_int_eq(weft_group_init(NULL), -EINVAL);
    weft_group g;
    ck_assert_int_eq(weft_group_init(&g), 0);
    errno = 0;
    ck_assert_ptr_null(weft_group_spawn(NULL, mark_started, NULL, NULL));
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_null(weft_group_spawn(&g, NULL, NULL, NULL));
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(weft_group_cancel(NULL), -EINVAL);
    ck_assert_int_eq(weft_group_wait(NULL), -EINVAL);
    ck_assert_int_eq(weft_group_destroy(NULL), -EINVAL);

    /* Only the owner may wait. */
    struct not_owner no = {.g = &g, .wait_rc = 1};
    weft_task *t = weft_spawn(wait_as_non_owner, &no);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(weft_join(t, NULL), 0);
    ck_assert_int_eq(no.wait_rc, -EPERM);
    ck_assert_int_eq(weft_group_wait(&g), 0);
    ck_assert_int_eq(weft_group_destroy(&g), 0);
    return NULL;
}

START_TEST(group_misuse_fails_with_einval_or_eperm)
{
    tu_run_in(2, misuse_main, NULL);
    weft_group g;
    ck_assert_int_eq(weft_group_init(&g), -EPERM); /* a plain thread */
}
END_TEST

static Suite *group_suite(void)
{
    Suite *s = suite_create("group");

    TCase *tc = tcase_create("wait");
    tcase_add_test(tc, group_wait_waits_for_every_member);
    tcase_add_test(tc, members_spawning_members_are_all_waited_for);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("cancel");
    tcase_add_test(
        tc, owner_cancelled_while_waiting_cancels_and_reaps_every_member);
    tcase_add_test(tc, owner_scope_expiring_while_waiting_cancels_every_member);
    tcase_add_test(tc, group_cancel_ends_the_group_early);
    tcase_add_test(tc,
                   a_member_cancelled_by_handle_makes_wait_return_ecanceled);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("misuse");
    tcase_add_test(tc, spawn_after_wait_fails_with_einval);
    tcase_add_test(tc, destroy_before_wait_fails_with_ebusy);
    tcase_add_test(tc, group_misuse_fails_with_einval_or_eperm);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(group_suite());
}
