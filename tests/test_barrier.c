/* Barriers (weft.h, "Synchronisation": weft_barrier): asyncio.Barrier for
 * tasks and plain threads. Arrival indices, repeated rounds, abort and
 * reset (-EPIPE), waiters that leave a round (cancelled, timed out), the
 * _timeout form, bad input, destroy while waited on, and many rounds of
 * tasks and threads mixed.
 *
 * A task that must be waiting is waited for through weft_runtime_tasks
 * (state WAITING), a thread through weft_barrier_n_waiting; no test
 * sleeps to synchronise. Each test makes its own runtime: Check forks
 * every test.
 */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* One weft_barrier_wait (or _timeout), run as a task or as a thread. */
struct bwait {
    weft_barrier *b;
    bool timed; /* weft_barrier_wait_timeout(b, seconds) */
    double seconds;
    atomic_int started, finished;
    int rc;
    double elapsed; /* seconds the call took */
};

static void bwait_init(struct bwait *w, weft_barrier *b)
{
    memset(w, 0, sizeof *w);
    w->b = b;
    w->rc = 1000; /* neither an index nor an error */
}

static void *run_bwait(void *arg)
{
    struct bwait *w = arg;
    atomic_store(&w->started, 1);
    double t0 = weft_now();
    w->rc = w->timed ? weft_barrier_wait_timeout(w->b, w->seconds)
                     : weft_barrier_wait(w->b);
    w->elapsed = weft_now() - t0;
    atomic_store(&w->finished, 1);
    return NULL;
}

/* Start w as a task of rt (NULL: the caller's runtime) and wait until it
 * waits in the barrier, which then counts it. */
static weft_task *waiting_task(weft_runtime *rt, struct bwait *w,
                               unsigned n_waiting)
{
    weft_task *t = weft_spawn_ex(rt, run_bwait, w, NULL);
    ck_assert_ptr_nonnull(t);
    tu_wait_until_waiting(rt, t);
    ck_assert_msg(!atomic_load(&w->finished), "the wait returned %d", w->rc);
    ck_assert_uint_eq(weft_barrier_n_waiting(w->b), n_waiting);
    return t;
}

/* Start w as a plain thread and wait until the barrier counts it. */
static void waiting_thread(pthread_t *th, struct bwait *w, unsigned n_waiting)
{
    ck_assert_int_eq(pthread_create(th, NULL, run_bwait, w), 0);
    double t0 = weft_now();
    while (weft_barrier_n_waiting(w->b) < n_waiting) {
        ck_assert_msg(!atomic_load(&w->finished), "the wait returned %d",
                      w->rc);
        ck_assert_msg(weft_now() - t0 < 10.0, "the thread never waited");
        sched_yield();
    }
    ck_assert_uint_eq(weft_barrier_n_waiting(w->b), n_waiting);
}

/* A round of `parties` waits from the calling thread's point of view:
 * every index of the round handed out exactly once. */
static void check_permutation(const int *idx, unsigned parties)
{
    unsigned seen = 0;
    for (unsigned i = 0; i < parties; i++) {
        ck_assert_msg(idx[i] >= 0 && (unsigned)idx[i] < parties,
                      "index %d of %u parties", idx[i], parties);
        ck_assert_msg(!(seen & (1u << idx[i])), "index %d twice", idx[i]);
        seen |= 1u << idx[i];
    }
}

/* ------------------------------------------------------------------------
 * Arrival indices and rounds */

START_TEST(barrier_indices_follow_arrival_and_the_last_gets_parties_minus_one)
{
    enum { PARTIES = 4 };
    weft_runtime *rt = tu_new_runtime(2);
    weft_barrier b;
    ck_assert_int_eq(weft_barrier_init(&b, PARTIES), 0);
    ck_assert_uint_eq(weft_barrier_n_waiting(&b), 0);
    ck_assert(!weft_barrier_broken(&b));
    struct bwait w[PARTIES - 1];
    weft_task *t[PARTIES - 1];
    for (unsigned i = 0; i < PARTIES - 1; i++) {
        bwait_init(&w[i], &b);
        t[i] = waiting_task(rt, &w[i], i + 1);
    }
    /* The last arrival (this plain thread) does not wait. */
    ck_assert_int_eq(weft_barrier_wait(&b), PARTIES - 1);
    for (unsigned i = 0; i < PARTIES - 1; i++) {
        tu_join_task(t[i], 0);
        ck_assert_int_eq(w[i].rc, (int)i);
    }
    ck_assert_uint_eq(weft_barrier_n_waiting(&b), 0);
    ck_assert(!weft_barrier_broken(&b));
    ck_assert_int_eq(weft_barrier_destroy(&b), 0);
    weft_runtime_free(rt);
}
END_TEST

static void *one_party_main(void *arg)
{
    weft_barrier *b = arg;
    for (int i = 0; i < 100; i++)
        TU_ASSERT_INT_EQ(weft_barrier_wait(b), 0);
    TU_ASSERT_INT_EQ(weft_barrier_wait_timeout(b, 0), 0);
    /* It never waits, so a pending cancel does not stop it either. */
    ck_assert_int_eq(weft_cancel(weft_current()), 0);
    ck_assert_int_eq(weft_barrier_wait(b), 0);
    ck_assert_int_eq(weft_uncancel(), 0);
    return NULL;
}

START_TEST(barrier_of_one_party_returns_zero_at_once)
{
    weft_barrier b;
    ck_assert_int_eq(weft_barrier_init(&b, 1), 0);
    double t0 = weft_now();
    for (int i = 0; i < 100; i++)
        TU_ASSERT_INT_EQ(weft_barrier_wait(&b), 0);
    ck_assert_int_eq(weft_barrier_wait_timeout(&b, 0), 0);
    tu_run_in(1, one_party_main, &b);
    ck_assert_msg(weft_now() - t0 < 1.0, "took %.3f s", weft_now() - t0);
    ck_assert_uint_eq(weft_barrier_n_waiting(&b), 0);
    ck_assert_int_eq(weft_barrier_destroy(&b), 0);
}
END_TEST

enum { ROUND_PARTIES = 5, ROUNDS = 200 };

struct rounds {
    weft_barrier b;
    unsigned parties, rounds;
    atomic_uchar *marks; /* rounds * parties: times index i came out */
};

/* One party of `rounds` rounds: its r-th wait is in round r, since no
 * round can complete without it. */
static void *rounds_party(void *arg)
{
    struct rounds *s = arg;
    uint64_t rng = (uint64_t)(uintptr_t)&rng | 1;
    for (unsigned r = 0; r < s->rounds; r++) {
        int idx = weft_barrier_wait(&s->b);
        TU_ASSERT(idx >= 0 && (unsigned)idx < s->parties);
        unsigned char was =
            atomic_fetch_add(&s->marks[r * s->parties + (unsigned)idx], 1);
        TU_ASSERT_INT_EQ(was, 0);
        /* Vary the order of arrival. */
        if (tu_rand(&rng) % 4 == 0)
            tu_pause();
    }
    return NULL;
}

static void rounds_init(struct rounds *s, unsigned parties, unsigned rounds)
{
    memset(s, 0, sizeof *s);
    ck_assert_int_eq(weft_barrier_init(&s->b, parties), 0);
    s->parties = parties;
    s->rounds = rounds;
    s->marks = calloc((size_t)parties * rounds, 1);
    ck_assert_ptr_nonnull(s->marks);
}

/* Every round handed out each index 0 .. parties-1 exactly once. */
static void rounds_check_and_free(struct rounds *s)
{
    for (unsigned r = 0; r < s->rounds; r++)
        for (unsigned i = 0; i < s->parties; i++)
            ck_assert_msg(atomic_load(&s->marks[r * s->parties + i]) == 1,
                          "round %u: index %u came out %u times", r, i,
                          (unsigned)atomic_load(&s->marks[r * s->parties + i]));
    ck_assert_uint_eq(weft_barrier_n_waiting(&s->b), 0);
    ck_assert(!weft_barrier_broken(&s->b));
    ck_assert_int_eq(weft_barrier_destroy(&s->b), 0);
    free(s->marks);
}

/* Run `tasks` parties as tasks of rt and `threads` as plain threads. */
static void run_rounds(weft_runtime *rt, struct rounds *s, unsigned tasks,
                       unsigned threads)
{
    weft_task *t[16];
    pthread_t th[16];
    ck_assert(tasks <= 16 && threads <= 16);
    ck_assert_uint_eq(tasks + threads, s->parties);
    for (unsigned i = 0; i < tasks; i++) {
        t[i] = weft_spawn_ex(rt, rounds_party, s, NULL);
        ck_assert_ptr_nonnull(t[i]);
    }
    for (unsigned i = 0; i < threads; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, rounds_party, s), 0);
    for (unsigned i = 0; i < tasks; i++)
        tu_join_task(t[i], 0);
    for (unsigned i = 0; i < threads; i++)
        tu_join_thread(th[i]);
}

START_TEST(barrier_repeated_rounds_each_hand_out_every_index_once)
{
    weft_runtime *rt = tu_new_runtime(2);
    struct rounds s;
    rounds_init(&s, ROUND_PARTIES, ROUNDS);
    run_rounds(rt, &s, ROUND_PARTIES, 0);
    rounds_check_and_free(&s);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(barrier_rounds_mix_tasks_and_threads)
{
    weft_runtime *rt = tu_new_runtime(2);
    struct rounds s;
    rounds_init(&s, 4, ROUNDS);
    run_rounds(rt, &s, 2, 2);
    rounds_check_and_free(&s);
    /* Threads only, with no runtime involved. */
    rounds_init(&s, 3, ROUNDS);
    run_rounds(NULL, &s, 0, 3);
    rounds_check_and_free(&s);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * abort and reset */

START_TEST(barrier_abort_fails_waiters_and_later_callers_with_epipe)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_barrier b;
    ck_assert_int_eq(weft_barrier_init(&b, 3), 0);
    struct bwait wt, wth;
    bwait_init(&wt, &b);
    bwait_init(&wth, &b);
    weft_task *t = waiting_task(rt, &wt, 1);
    pthread_t th;
    waiting_thread(&th, &wth, 2);
    ck_assert_int_eq(weft_barrier_abort(&b), 0);
    tu_join_task(t, 0);
    tu_join_thread(th);
    ck_assert_int_eq(wt.rc, -EPIPE);
    ck_assert_int_eq(wth.rc, -EPIPE);
    ck_assert(weft_barrier_broken(&b));
    ck_assert_uint_eq(weft_barrier_n_waiting(&b), 0);
    /* Later callers fail at once, the would-be last one included. */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(weft_barrier_wait(&b), -EPIPE);
        ck_assert_int_eq(weft_barrier_wait_timeout(&b, 10.0), -EPIPE);
    }
    struct bwait late;
    bwait_init(&late, &b);
    t = weft_spawn_ex(rt, run_bwait, &late, NULL);
    ck_assert_ptr_nonnull(t);
    tu_join_task(t, 0);
    ck_assert_int_eq(late.rc, -EPIPE);
    ck_assert_int_eq(weft_barrier_abort(&b), 0); /* again: no change */
    ck_assert(weft_barrier_broken(&b));
    /* reset mends it. */
    ck_assert_int_eq(weft_barrier_reset(&b), 0);
    ck_assert(!weft_barrier_broken(&b));
    bwait_init(&wt, &b);
    t = waiting_task(rt, &wt, 1);
    bwait_init(&wth, &b);
    waiting_thread(&th, &wth, 2);
    int last = weft_barrier_wait(&b);
    tu_join_task(t, 0);
    tu_join_thread(th);
    check_permutation((int[]){wt.rc, wth.rc, last}, 3);
    ck_assert_int_eq(last, 2);
    ck_assert_int_eq(weft_barrier_destroy(&b), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(barrier_reset_fails_current_waiters_with_epipe_and_works_again)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_barrier b;
    ck_assert_int_eq(weft_barrier_init(&b, 3), 0);
    ck_assert_int_eq(weft_barrier_reset(&b), 0); /* nobody waiting: no-op */
    ck_assert(!weft_barrier_broken(&b));
    struct bwait wt, wth;
    bwait_init(&wt, &b);
    bwait_init(&wth, &b);
    weft_task *t = waiting_task(rt, &wt, 1);
    pthread_t th;
    waiting_thread(&th, &wth, 2);
    ck_assert_int_eq(weft_barrier_reset(&b), 0);
    tu_join_task(t, 0);
    tu_join_thread(th);
    ck_assert_int_eq(wt.rc, -EPIPE);
    ck_assert_int_eq(wth.rc, -EPIPE);
    ck_assert(!weft_barrier_broken(&b));
    ck_assert_uint_eq(weft_barrier_n_waiting(&b), 0);
    /* A fresh round of three, which the reset waiters are not part of. */
    for (int round = 0; round < 3; round++) {
        bwait_init(&wt, &b);
        bwait_init(&wth, &b);
        t = waiting_task(rt, &wt, 1);
        waiting_thread(&th, &wth, 2);
        ck_assert_int_eq(weft_barrier_wait(&b), 2);
        tu_join_task(t, 0);
        tu_join_thread(th);
        ck_assert_int_eq(wt.rc, 0);
        ck_assert_int_eq(wth.rc, 1);
    }
    ck_assert_int_eq(weft_barrier_destroy(&b), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Leaving a round: cancellation, timeout scopes, _timeout */

START_TEST(barrier_cancelled_waiter_leaves_the_round_without_breaking_it)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_barrier b;
    ck_assert_int_eq(weft_barrier_init(&b, 3), 0);
    struct bwait a, c, d;
    bwait_init(&a, &b);
    bwait_init(&c, &b);
    bwait_init(&d, &b);
    weft_task *ta = waiting_task(rt, &a, 1);
    weft_task *tc = waiting_task(rt, &c, 2);
    ck_assert_int_eq(weft_cancel(ta), 0);
    tu_join_task(ta, -ECANCELED);
    ck_assert_int_eq(a.rc, -ECANCELED);
    ck_assert_uint_eq(weft_barrier_n_waiting(&b), 1);
    ck_assert(!weft_barrier_broken(&b));
    /* The round still needs three: c, d and this thread. */
    weft_task *td = waiting_task(rt, &d, 2);
    ck_assert_int_eq(weft_barrier_wait(&b), 2);
    tu_join_task(tc, 0);
    tu_join_task(td, 0);
    ck_assert_int_eq(c.rc, 0);
    ck_assert_int_eq(d.rc, 1);
    ck_assert_int_eq(weft_barrier_destroy(&b), 0);
    weft_runtime_free(rt);
}
END_TEST

struct early_cancel {
    weft_barrier b;
    struct bwait a;
    int last_rc;
};

static void *early_cancel_main(void *arg)
{
    struct early_cancel *e = arg;
    bwait_init(&e->a, &e->b);
    weft_task *ta = waiting_task(NULL, &e->a, 1);
    /* One worker: a is cancelled, and cannot run until this task waits. */
    ck_assert_int_eq(weft_cancel(ta), 0);
    ck_assert_uint_eq(weft_barrier_n_waiting(&e->b), 0); /* a left */
    e->last_rc = weft_barrier_wait_timeout(&e->b, 0.05);
    tu_join_task(ta, -ECANCELED);
    return NULL;
}

START_TEST(barrier_waiter_cancelled_before_the_last_arrival_does_not_count)
{
    /* weft.h: "A waiter interrupted before its round completes leaves the
     * round (it no longer counts)". The only other party of a two-party
     * barrier was cancelled before this caller arrived, so this caller is
     * alone and must wait; it must not pass the barrier, least of all
     * with index 0 as the last arrival. */
    struct early_cancel e;
    ck_assert_int_eq(weft_barrier_init(&e.b, 2), 0);
    tu_run_in(1, early_cancel_main, &e);
    ck_assert_int_eq(e.a.rc, -ECANCELED);
    ck_assert_msg(e.last_rc == -ETIMEDOUT,
                  "a lone caller of a 2-party barrier passed it with %d",
                  e.last_rc);
    ck_assert_uint_eq(weft_barrier_n_waiting(&e.b), 0);
    ck_assert(!weft_barrier_broken(&e.b));
    ck_assert_int_eq(weft_barrier_destroy(&e.b), 0);
}
END_TEST

static void *pending_cancel_main(void *arg)
{
    weft_barrier *b = arg;
    ck_assert_int_eq(weft_cancel(weft_current()), 0);
    /* Not the last: it would have to wait, so it fails at once. */
    double t0 = weft_now();
    ck_assert_int_eq(weft_barrier_wait(b), -ECANCELED);
    ck_assert_int_eq(weft_barrier_wait_timeout(b, 10.0), -ECANCELED);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "took %.3f s", weft_now() - t0);
    ck_assert_uint_eq(weft_barrier_n_waiting(b), 0);
    ck_assert_int_eq(weft_uncancel(), 0);
    /* The last arrival does not wait: a pending cancel does not stop it. */
    struct bwait w;
    bwait_init(&w, b);
    weft_task *t = waiting_task(NULL, &w, 1);
    ck_assert_int_eq(weft_cancel(weft_current()), 0);
    ck_assert_int_eq(weft_barrier_wait(b), 1);
    ck_assert_int_eq(weft_yield(), -ECANCELED); /* still pending */
    ck_assert_int_eq(weft_uncancel(), 0);
    tu_join_task(t, 0);
    ck_assert_int_eq(w.rc, 0);
    return NULL;
}

START_TEST(barrier_pending_cancel_fails_a_wait_but_not_the_last_arrival)
{
    weft_barrier b;
    ck_assert_int_eq(weft_barrier_init(&b, 2), 0);
    tu_run_in(2, pending_cancel_main, &b);
    ck_assert(!weft_barrier_broken(&b));
    ck_assert_int_eq(weft_barrier_destroy(&b), 0);
}
END_TEST

static void *scope_main(void *arg)
{
    weft_barrier *b = arg;
    weft_timeout scope;
    double t0 = weft_now();
    ck_assert_int_eq(weft_timeout_enter(&scope, 0.03), 0);
    ck_assert_int_eq(weft_barrier_wait(b), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.03, "barrier wait in a timeout scope");
    ck_assert_int_eq(weft_timeout_exit(&scope), -ETIMEDOUT);
    ck_assert_uint_eq(weft_barrier_n_waiting(b), 0);
    ck_assert(!weft_barrier_broken(b));
    /* A _timeout bound inside a longer scope: the bound ends the wait. */
    t0 = weft_now();
    ck_assert_int_eq(weft_timeout_enter(&scope, 10.0), 0);
    ck_assert_int_eq(weft_barrier_wait_timeout(b, 0.02), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.02, "bounded barrier wait in a long scope");
    ck_assert_int_eq(weft_timeout_exit(&scope), 0);
    /* A scope shorter than the bound: the scope ends it. */
    t0 = weft_now();
    ck_assert_int_eq(weft_timeout_enter(&scope, 0.02), 0);
    ck_assert_int_eq(weft_barrier_wait_timeout(b, 10.0), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.02, "long barrier wait in a short scope");
    ck_assert_int_eq(weft_timeout_exit(&scope), -ETIMEDOUT);
    ck_assert_uint_eq(weft_barrier_n_waiting(b), 0);
    return NULL;
}

START_TEST(barrier_wait_in_an_expired_timeout_scope_returns_etimedout)
{
    weft_barrier b;
    ck_assert_int_eq(weft_barrier_init(&b, 2), 0);
    tu_run_in(2, scope_main, &b);
    ck_assert(!weft_barrier_broken(&b));
    ck_assert_int_eq(weft_barrier_destroy(&b), 0);
}
END_TEST

/* The _timeout form, from a task or a thread: it expires on time, leaves
 * the round, and does not stop a round that completes in time. */
static void *timeout_forms(void *arg)
{
    weft_barrier *b = arg;
    double t0 = weft_now();
    TU_ASSERT_INT_EQ(weft_barrier_wait_timeout(b, 0.03), -ETIMEDOUT);
    double took = weft_now() - t0;
    tu_check_took(took, 0.03, "weft_barrier_wait_timeout");
    TU_ASSERT_INT_EQ(weft_barrier_n_waiting(b), 0);
    t0 = weft_now();
    TU_ASSERT_INT_EQ(weft_barrier_wait_timeout(b, 0), -ETIMEDOUT);
    TU_ASSERT(weft_now() - t0 < TU_SLACK);
    TU_ASSERT(!weft_barrier_broken(b));
    TU_ASSERT_INT_EQ(weft_barrier_n_waiting(b), 0);
    return (void *)1;
}

static void *timeout_forms_main(void *arg)
{
    return timeout_forms(arg);
}

START_TEST(barrier_wait_timeout_expires_and_leaves_the_round)
{
    weft_barrier b;
    ck_assert_int_eq(weft_barrier_init(&b, 2), 0);
    ck_assert_ptr_eq(timeout_forms(&b), (void *)1); /* a plain thread */
    ck_assert_ptr_eq(tu_run_in(2, timeout_forms_main, &b), (void *)1);
    /* After the timeouts, a round of two still works: a bounded waiter is
     * released by the last arrival, which itself needs no time at all. */
    weft_runtime *rt = tu_new_runtime(2);
    struct bwait w;
    bwait_init(&w, &b);
    w.timed = true;
    w.seconds = 10.0;
    weft_task *t = waiting_task(rt, &w, 1);
    ck_assert_int_eq(weft_barrier_wait_timeout(&b, 0), 1);
    tu_join_task(t, 0);
    ck_assert_int_eq(w.rc, 0);
    bwait_init(&w, &b);
    w.timed = true;
    w.seconds = WEFT_FOREVER;
    pthread_t th;
    waiting_thread(&th, &w, 1);
    ck_assert_int_eq(weft_barrier_wait_timeout(&b, WEFT_FOREVER), 1);
    tu_join_thread(th);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(weft_barrier_destroy(&b), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Bad input, destroy */

START_TEST(barrier_bad_arguments_return_einval)
{
    weft_barrier b;
    ck_assert_int_eq(weft_barrier_init(NULL, 2), -EINVAL);
    ck_assert_int_eq(weft_barrier_init(&b, 0), -EINVAL);
    ck_assert_int_eq(weft_barrier_wait(NULL), -EINVAL);
    ck_assert_int_eq(weft_barrier_wait_timeout(NULL, 1.0), -EINVAL);
    ck_assert_int_eq(weft_barrier_abort(NULL), -EINVAL);
    ck_assert_int_eq(weft_barrier_reset(NULL), -EINVAL);
    ck_assert_int_eq(weft_barrier_destroy(NULL), -EINVAL);
    ck_assert_uint_eq(weft_barrier_n_waiting(NULL), 0);
    ck_assert(!weft_barrier_broken(NULL));

    /* Never initialised. */
    weft_barrier zero;
    memset(&zero, 0, sizeof zero);
    ck_assert_int_eq(weft_barrier_wait(&zero), -EINVAL);
    ck_assert_int_eq(weft_barrier_wait_timeout(&zero, 1.0), -EINVAL);
    ck_assert_int_eq(weft_barrier_abort(&zero), -EINVAL);
    ck_assert_int_eq(weft_barrier_reset(&zero), -EINVAL);
    ck_assert_int_eq(weft_barrier_destroy(&zero), -EINVAL);
    ck_assert_uint_eq(weft_barrier_n_waiting(&zero), 0);

    /* Bad bounds, on a valid barrier: nothing happens. */
    ck_assert_int_eq(weft_barrier_init(&b, 1), 0);
    ck_assert_int_eq(weft_barrier_wait_timeout(&b, -1.0), -EINVAL);
    ck_assert_int_eq(weft_barrier_wait_timeout(&b, -1e-9), -EINVAL);
    ck_assert_int_eq(weft_barrier_wait_timeout(&b, NAN), -EINVAL);
    ck_assert_int_eq(weft_barrier_wait_timeout(&b, -INFINITY), -EINVAL);
    ck_assert_int_eq(weft_barrier_wait(&b), 0);

    /* Destroyed. */
    ck_assert_int_eq(weft_barrier_destroy(&b), 0);
    ck_assert_int_eq(weft_barrier_wait(&b), -EINVAL);
    ck_assert_int_eq(weft_barrier_wait_timeout(&b, 1.0), -EINVAL);
    ck_assert_int_eq(weft_barrier_abort(&b), -EINVAL);
    ck_assert_int_eq(weft_barrier_reset(&b), -EINVAL);
    ck_assert_int_eq(weft_barrier_destroy(&b), -EINVAL);
    ck_assert(!weft_barrier_broken(&b));
}
END_TEST

START_TEST(barrier_destroy_while_waited_on_returns_ebusy)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_barrier b;
    ck_assert_int_eq(weft_barrier_init(&b, 3), 0);
    struct bwait wt, wth;
    bwait_init(&wt, &b);
    bwait_init(&wth, &b);
    weft_task *t = waiting_task(rt, &wt, 1);
    ck_assert_int_eq(weft_barrier_destroy(&b), -EBUSY);
    pthread_t th;
    waiting_thread(&th, &wth, 2);
    ck_assert_int_eq(weft_barrier_destroy(&b), -EBUSY);
    /* Still usable: the round completes. */
    ck_assert_uint_eq(weft_barrier_n_waiting(&b), 2);
    ck_assert_int_eq(weft_barrier_wait(&b), 2);
    tu_join_task(t, 0);
    tu_join_thread(th);
    ck_assert_int_eq(wt.rc, 0);
    ck_assert_int_eq(wth.rc, 1);
    ck_assert_int_eq(weft_barrier_destroy(&b), 0);
    /* A broken barrier nobody waits on can be destroyed. */
    ck_assert_int_eq(weft_barrier_init(&b, 2), 0);
    ck_assert_int_eq(weft_barrier_abort(&b), 0);
    ck_assert_int_eq(weft_barrier_destroy(&b), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Stress */

START_TEST(barrier_stress_rounds_of_tasks_and_threads_are_permutations)
{
    /* 8 tasks on 4 workers and 2 plain threads, many rounds. */
    unsigned rounds = TU_SCALE(20000, 8000, 3000);
    double t0 = weft_now();
    weft_runtime *rt = tu_new_runtime(4);
    struct rounds s;
    rounds_init(&s, 10, rounds);
    run_rounds(rt, &s, 8, 2);
    rounds_check_and_free(&s);
    weft_runtime_free(rt);
    fprintf(stderr, "barrier_stress: %u rounds of 10 in %.3f s, %s build\n",
            rounds, weft_now() - t0, TU_BUILD);
}
END_TEST

/* Two threads call a 2-party barrier with bounds of tens of microseconds,
 * so that a deadline often claims a waiter just as the other arrives. */
struct short_rounds {
    weft_barrier b;
    int calls;
    atomic_long got[2]; /* returns of index 0 and of index 1 */
};

static void *short_rounds_party(void *arg)
{
    struct short_rounds *s = arg;
    uint64_t rng = tu_seed("barrier_short_rounds") | 1;
    for (int i = 0; i < s->calls; i++) {
        /* Arrivals spread wider than the bound plus the futex's timer
         * slack (50 us), so that deadlines often fire just as the other
         * party arrives. */
        tu_spin_random(&rng, 100000);
        int rc = weft_barrier_wait_timeout(&s->b, 20e-6);
        TU_ASSERT(rc == 0 || rc == 1 || rc == -ETIMEDOUT);
        if (rc >= 0)
            atomic_fetch_add(&s->got[rc], 1);
    }
    return NULL;
}

START_TEST(barrier_timeouts_racing_the_last_arrival_never_release_a_lone_caller)
{
    /* Every 0 belongs to a full round, whose last arrival returned 1; a
     * waiter whose deadline fires as the other arrives may still count
     * (it returns -ETIMEDOUT, and that round's 0 goes unused), but a
     * caller must never pass alone. So there are never more 0s than 1s. */
    static struct short_rounds s;
    ck_assert_int_eq(weft_barrier_init(&s.b, 2), 0);
    s.calls = TU_SCALE(20000, 10000, 5000);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, short_rounds_party, &s),
                         0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    long zeros = atomic_load(&s.got[0]), ones = atomic_load(&s.got[1]);
    fprintf(stderr, "barrier short rounds: %ld x 0, %ld x 1 of %d calls\n",
            zeros, ones, 2 * s.calls);
    ck_assert_msg(zeros <= ones, "%ld lone callers passed the barrier",
                  zeros - ones);
    ck_assert_int_eq(weft_barrier_destroy(&s.b), 0);
}
END_TEST

static Suite *barrier_suite(void)
{
    Suite *s = suite_create("barrier");

    TCase *tc = tcase_create("indices");
    tcase_add_test(
        tc, barrier_indices_follow_arrival_and_the_last_gets_parties_minus_one);
    tcase_add_test(tc, barrier_of_one_party_returns_zero_at_once);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("rounds");
    tcase_add_test(tc, barrier_repeated_rounds_each_hand_out_every_index_once);
    tcase_add_test(tc, barrier_rounds_mix_tasks_and_threads);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("abort_reset");
    tcase_add_test(tc,
                   barrier_abort_fails_waiters_and_later_callers_with_epipe);
    tcase_add_test(
        tc, barrier_reset_fails_current_waiters_with_epipe_and_works_again);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("cancel");
    tcase_add_test(
        tc, barrier_cancelled_waiter_leaves_the_round_without_breaking_it);
    tcase_add_test(
        tc, barrier_waiter_cancelled_before_the_last_arrival_does_not_count);
    tcase_add_test(
        tc, barrier_pending_cancel_fails_a_wait_but_not_the_last_arrival);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("timeout");
    tcase_add_test(tc,
                   barrier_wait_in_an_expired_timeout_scope_returns_etimedout);
    tcase_add_test(tc, barrier_wait_timeout_expires_and_leaves_the_round);
    tcase_add_test(
        tc,
        barrier_timeouts_racing_the_last_arrival_never_release_a_lone_caller);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad_input");
    tcase_add_test(tc, barrier_bad_arguments_return_einval);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("destroy");
    tcase_add_test(tc, barrier_destroy_while_waited_on_returns_ebusy);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_add_test(tc,
                   barrier_stress_rounds_of_tasks_and_threads_are_permutations);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(barrier_suite());
}
