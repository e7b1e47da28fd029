/* Queues (weft.h, "Synchronisation": weft_queue): asyncio.Queue, LifoQueue
 * and PriorityQueue of pointers, for tasks and plain threads. Orders,
 * growth and ring wrap-around, the _nowait forms, waiting puts and gets,
 * task_done and join, shutdown (Python 3.13), snapshots, destroy, bad
 * input, cancellation and timeouts, and stress runs that check every item
 * is delivered exactly once while waiters are cancelled and time out.
 *
 * A task that must be waiting is waited for through weft_runtime_tasks
 * (state WAITING); a plain thread through its state in /proc (asleep in
 * the kernel, on its futex). No test sleeps to synchronise; the stress
 * tests poll a counter to pace their cancellations. Each test makes its own
 * runtime: Check forks every test.
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
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sched/alloc.h"
#include "testutil.h"

#define ITEM(i) ((void *)(uintptr_t)(i))
#define NUM(p)  ((uintptr_t)(p))

/* What the out-parameter of a get that took nothing still holds. */
static char nothing_storage;
#define NOTHING ((void *)&nothing_storage)

static int cmp_num(const void *a, const void *b)
{
    uintptr_t x = NUM(a), y = NUM(b);
    return (x > y) - (x < y);
}

static int cmp_num_desc(const void *a, const void *b)
{
    return cmp_num(b, a);
}

static void init_q(weft_queue *q, size_t maxsize, enum weft_queue_order order)
{
    weft_queue_config cfg = {
        .maxsize = maxsize,
        .order = order,
        .compare = order == WEFT_QUEUE_PRIORITY ? cmp_num : NULL,
    };
    ck_assert_int_eq(weft_queue_init_ex(q, &cfg), 0);
}

static void put_now(weft_queue *q, uintptr_t v)
{
    TU_ASSERT_INT_EQ(weft_queue_put_nowait(q, ITEM(v)), 0);
}

static uintptr_t get_now(weft_queue *q)
{
    void *item = NOTHING;
    TU_ASSERT_INT_EQ(weft_queue_get_nowait(q, &item), 0);
    TU_ASSERT(item != NOTHING);
    return NUM(item);
}

static void check_empty_now(weft_queue *q)
{
    void *item = NOTHING;
    ck_assert_int_eq(weft_queue_get_nowait(q, &item), -EAGAIN);
    ck_assert_ptr_eq(item, NOTHING);
    ck_assert_uint_eq(weft_queue_size(q), 0);
}

/* ------------------------------------------------------------------------
 * One queue call, run as a task or as a plain thread */

enum op_kind { OP_PUT, OP_GET, OP_JOIN };

struct op {
    weft_queue *q;
    enum op_kind kind;
    bool timed; /* the _timeout form, bounded by `seconds` */
    double seconds;
    void *item; /* OP_PUT: what to put; OP_GET: what it got */
    atomic_int tid, started, finished;
    int rc;
    double elapsed; /* seconds the call took */
};

static void op_init(struct op *o, weft_queue *q, enum op_kind kind, void *item)
{
    memset(o, 0, sizeof *o);
    o->q = q;
    o->kind = kind;
    o->item = kind == OP_GET ? NOTHING : item;
    o->rc = 1000; /* no code weft returns */
}

static void op_bound(struct op *o, double seconds)
{
    o->timed = true;
    o->seconds = seconds;
}

static void *run_op(void *arg)
{
    struct op *o = arg;
    atomic_store(&o->tid, (int)syscall(SYS_gettid));
    atomic_store(&o->started, 1);
    double t0 = weft_now();
    switch (o->kind) {
    case OP_PUT:
        o->rc = o->timed ? weft_queue_put_timeout(o->q, o->item, o->seconds)
                         : weft_queue_put(o->q, o->item);
        break;
    case OP_GET:
        o->rc = o->timed ? weft_queue_get_timeout(o->q, &o->item, o->seconds)
                         : weft_queue_get(o->q, &o->item);
        break;
    case OP_JOIN:
        o->rc = o->timed ? weft_queue_join_timeout(o->q, o->seconds)
                         : weft_queue_join(o->q);
        break;
    }
    o->elapsed = weft_now() - t0;
    atomic_store(&o->finished, 1);
    return NULL;
}

/* Spawn o as a task of rt (NULL: the calling task's runtime). */
static weft_task *task_op(weft_runtime *rt, struct op *o)
{
    weft_task *t = weft_spawn_ex(rt, run_op, o, NULL);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* The same, and wait until the task waits inside the call. */
static weft_task *waiting_task_op(weft_runtime *rt, struct op *o)
{
    weft_task *t = task_op(rt, o);
    tu_wait_until_waiting(rt, t);
    ck_assert_msg(!atomic_load(&o->finished), "the call returned %d", o->rc);
    return t;
}

/* Run o on a new plain thread and wait until it blocks inside the call:
 * asleep in the kernel, on its wait's futex. (It could also sleep on the
 * queue's state lock, but nothing else touches the queue while a test
 * waits here.) */
static void waiting_thread_op(pthread_t *th, struct op *o)
{
    ck_assert_int_eq(pthread_create(th, NULL, run_op, o), 0);
    while (!atomic_load(&o->started))
        sched_yield();
    double t0 = weft_now();
    for (;;) {
        ck_assert_msg(!atomic_load(&o->finished),
                      "the thread's call returned %d", o->rc);
        if (tu_thread_asleep(atomic_load(&o->tid)))
            return;
        ck_assert_msg(weft_now() - t0 < 10.0, "the thread never blocked");
        sched_yield();
    }
}

/* ------------------------------------------------------------------------
 * Orders */

START_TEST(queue_fifo_gets_items_in_put_order)
{
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 0), 0);
    for (uintptr_t i = 0; i < 100; i++) /* item 0 is NULL */
        put_now(&q, i);
    ck_assert_uint_eq(weft_queue_size(&q), 100);
    for (uintptr_t i = 0; i < 100; i++)
        TU_ASSERT_INT_EQ(get_now(&q), i);
    check_empty_now(&q);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);

    /* init_ex(NULL) is an unbounded FIFO; the waiting forms on a plain
     * thread return at once when they need not wait. */
    ck_assert_int_eq(weft_queue_init_ex(&q, NULL), 0);
    for (uintptr_t i = 1; i <= 40; i++)
        ck_assert_int_eq(weft_queue_put(&q, ITEM(i)), 0);
    ck_assert(!weft_queue_full(&q));
    for (uintptr_t i = 1; i <= 40; i++) {
        void *item = NOTHING;
        ck_assert_int_eq(i % 2 ? weft_queue_get(&q, &item)
                               : weft_queue_get_timeout(&q, &item, 0),
                         0);
        ck_assert_ptr_eq(item, ITEM(i));
    }
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
}
END_TEST

START_TEST(queue_lifo_gets_the_last_item_put_first)
{
    weft_queue q;
    init_q(&q, 0, WEFT_QUEUE_LIFO);
    for (uintptr_t i = 0; i < 100; i++)
        put_now(&q, i);
    for (uintptr_t i = 100; i-- > 0;)
        TU_ASSERT_INT_EQ(get_now(&q), i);
    check_empty_now(&q);
    put_now(&q, 1);
    put_now(&q, 2);
    ck_assert_uint_eq(get_now(&q), 2);
    put_now(&q, 3);
    ck_assert_uint_eq(get_now(&q), 3);
    ck_assert_uint_eq(get_now(&q), 1);
    check_empty_now(&q);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
}
END_TEST

START_TEST(queue_priority_gets_the_smallest_item_by_compare_first)
{
    enum { VALUES = 64 };
    uint64_t seed = tu_seed("queue_priority_gets_the_smallest_item_first");
    weft_queue q;
    init_q(&q, 0, WEFT_QUEUE_PRIORITY);
    /* A random mix of puts and gets against a histogram: each get must
     * return the smallest value present (values repeat). */
    unsigned hist[VALUES] = {0};
    size_t n = 0;
    for (int step = 0; step < 20000; step++) {
        if (n == 0 || tu_rand(&seed) % 5 < 3) {
            uintptr_t v = tu_rand(&seed) % VALUES;
            put_now(&q, v);
            hist[v]++;
            n++;
        } else {
            uintptr_t v = get_now(&q), min = 0;
            while (hist[min] == 0)
                min++;
            TU_ASSERT_INT_EQ(v, min);
            hist[v]--;
            n--;
        }
        TU_ASSERT_INT_EQ(weft_queue_size(&q), n);
    }
    ck_assert_uint_gt(n, 16); /* the heap grew past its first slots */
    for (uintptr_t prev = 0; n > 0; n--) {
        uintptr_t v = get_now(&q);
        TU_ASSERT(v >= prev && hist[v] > 0);
        hist[v]--;
        prev = v;
    }
    check_empty_now(&q);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);

    /* compare decides the order: reversed, the largest comes first. */
    weft_queue_config cfg = {.order = WEFT_QUEUE_PRIORITY,
                             .compare = cmp_num_desc};
    ck_assert_int_eq(weft_queue_init_ex(&q, &cfg), 0);
    static const uintptr_t in[] = {5, 1, 9, 3, 7, 0};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        put_now(&q, in[i]);
    static const uintptr_t out[] = {9, 7, 5, 3, 1, 0};
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++)
        ck_assert_uint_eq(get_now(&q), out[i]);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
}
END_TEST

/* ------------------------------------------------------------------------
 * Growth and wrap-around */

START_TEST(queue_unbounded_grows_past_its_first_sixteen_slots)
{
    enum { N = 5000 }; /* 7919 is prime to N: i*7919 % N permutes 0..N-1 */
    static const enum weft_queue_order orders[] = {
        WEFT_QUEUE_FIFO, WEFT_QUEUE_LIFO, WEFT_QUEUE_PRIORITY};
    for (size_t o = 0; o < 3; o++) {
        weft_queue q;
        init_q(&q, 0, orders[o]);
        for (uintptr_t i = 0; i < N; i++)
            put_now(&q, orders[o] == WEFT_QUEUE_PRIORITY ? i * 7919 % N : i);
        ck_assert_uint_eq(weft_queue_size(&q), N);
        ck_assert(!weft_queue_full(&q));
        for (uintptr_t i = 0; i < N; i++)
            TU_ASSERT_INT_EQ(get_now(&q),
                             orders[o] == WEFT_QUEUE_LIFO ? N - 1 - i : i);
        check_empty_now(&q);
        ck_assert_int_eq(weft_queue_destroy(&q), 0);
    }
}
END_TEST

/* A FIFO queue against two counters. */
struct fifo_model {
    weft_queue q;
    size_t maxsize;
    uintptr_t next_put, next_get;
};

static void model_put(struct fifo_model *m)
{
    size_t n = m->next_put - m->next_get;
    int rc = weft_queue_put_nowait(&m->q, ITEM(m->next_put));
    if (m->maxsize && n == m->maxsize) {
        TU_ASSERT_INT_EQ(rc, -EAGAIN);
    } else {
        TU_ASSERT_INT_EQ(rc, 0);
        m->next_put++;
    }
}

static void model_get(struct fifo_model *m)
{
    void *item = NOTHING;
    int rc = weft_queue_get_nowait(&m->q, &item);
    if (m->next_put == m->next_get) {
        TU_ASSERT_INT_EQ(rc, -EAGAIN);
        TU_ASSERT(item == NOTHING);
    } else {
        TU_ASSERT_INT_EQ(rc, 0);
        TU_ASSERT_INT_EQ(NUM(item), m->next_get);
        m->next_get++;
    }
}

static void model_check(struct fifo_model *m)
{
    size_t n = m->next_put - m->next_get;
    TU_ASSERT_INT_EQ(weft_queue_size(&m->q), n);
    TU_ASSERT_INT_EQ(weft_queue_empty(&m->q), n == 0);
    TU_ASSERT_INT_EQ(weft_queue_full(&m->q), m->maxsize && n == m->maxsize);
}

static void fifo_walk(size_t maxsize, uint64_t *seed, int steps)
{
    struct fifo_model m = {.maxsize = maxsize};
    ck_assert_int_eq(weft_queue_init(&m.q, maxsize), 0);
    /* 12 in, 10 out: the oldest item is in slot 10 of 16; 14 more fill
     * the ring across its end, and the next ones grow it while it is
     * wrapped (where maxsize allows). */
    for (int i = 0; i < 12; i++)
        model_put(&m);
    for (int i = 0; i < 10; i++)
        model_get(&m);
    for (int i = 0; i < 20; i++) {
        model_put(&m);
        model_check(&m);
    }
    /* Then a random walk whose bias flips every 300 steps, so the queue
     * fills and drains while its oldest slot goes round and round. */
    for (int step = 0; step < steps; step++) {
        unsigned put_pct = (step / 300) % 2 ? 30 : 70;
        if (tu_rand(seed) % 100 < put_pct)
            model_put(&m);
        else
            model_get(&m);
        model_check(&m);
    }
    while (m.next_get != m.next_put)
        model_get(&m);
    model_get(&m); /* -EAGAIN */
    ck_assert_int_eq(weft_queue_destroy(&m.q), 0);
}

START_TEST(queue_fifo_order_survives_ring_wraparound_and_growth)
{
    uint64_t seed = tu_seed("queue_fifo_order_survives_ring_wraparound");
    fifo_walk(0, &seed, 30000);  /* grows 16, 32, 64, ... */
    fifo_walk(20, &seed, 30000); /* 16, then 20 slots: not a power of 2 */
    fifo_walk(16, &seed, 30000); /* never grows */
    fifo_walk(3, &seed, 10000);
    fifo_walk(1, &seed, 10000);
}
END_TEST

/* ------------------------------------------------------------------------
 * The _nowait forms, NULL items */

START_TEST(queue_get_nowait_on_empty_returns_eagain)
{
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 4), 0);
    check_empty_now(&q);
    put_now(&q, 1);
    ck_assert_uint_eq(get_now(&q), 1);
    check_empty_now(&q);
    ck_assert(weft_queue_empty(&q));
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
}
END_TEST

START_TEST(queue_put_nowait_on_full_returns_eagain_and_adds_nothing)
{
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 3), 0);
    for (uintptr_t i = 1; i <= 3; i++)
        put_now(&q, i);
    ck_assert(weft_queue_full(&q));
    ck_assert_int_eq(weft_queue_put_nowait(&q, ITEM(4)), -EAGAIN);
    ck_assert_int_eq(weft_queue_put_nowait(&q, NULL), -EAGAIN);
    ck_assert_uint_eq(weft_queue_size(&q), 3);
    for (uintptr_t i = 1; i <= 3; i++)
        ck_assert_uint_eq(get_now(&q), i);
    check_empty_now(&q);
    /* Unfinished counts only what went in: three task_done calls. */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_task_done(&q), -EOVERFLOW);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
}
END_TEST

START_TEST(queue_null_items_are_put_and_got_like_any_other)
{
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 0), 0);
    ck_assert_int_eq(weft_queue_put_nowait(&q, NULL), 0);
    ck_assert_int_eq(weft_queue_put(&q, ITEM(1)), 0);
    ck_assert_int_eq(weft_queue_put_timeout(&q, NULL, 0), 0);
    ck_assert_uint_eq(weft_queue_size(&q), 3);
    void *item = NOTHING;
    ck_assert_int_eq(weft_queue_get_nowait(&q, &item), 0);
    ck_assert_ptr_null(item);
    ck_assert_int_eq(weft_queue_get(&q, &item), 0);
    ck_assert_ptr_eq(item, ITEM(1));
    item = NOTHING;
    ck_assert_int_eq(weft_queue_get_timeout(&q, &item, 1.0), 0);
    ck_assert_ptr_null(item);
    check_empty_now(&q);
    /* Handed straight to a waiting getter, too. */
    weft_runtime *rt = tu_new_runtime(1);
    struct op g;
    op_init(&g, &q, OP_GET, NULL);
    weft_task *t = waiting_task_op(rt, &g);
    ck_assert_int_eq(weft_queue_put(&q, NULL), 0);
    tu_join_task(t, 0);
    ck_assert_int_eq(g.rc, 0);
    ck_assert_ptr_null(g.item);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Waiting puts and gets */

START_TEST(queue_get_from_a_task_waits_for_the_next_put)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 0), 0);
    struct op g;
    op_init(&g, &q, OP_GET, NULL);
    weft_task *t = waiting_task_op(rt, &g);
    ck_assert_ptr_eq(g.item, NOTHING);
    ck_assert_int_eq(weft_queue_put(&q, ITEM(42)), 0);
    tu_join_task(t, 0);
    ck_assert_int_eq(g.rc, 0);
    ck_assert_ptr_eq(g.item, ITEM(42));
    check_empty_now(&q); /* handed over, not queued */
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(queue_put_from_a_task_waits_for_room)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 1), 0);
    put_now(&q, 1);
    struct op p;
    op_init(&p, &q, OP_PUT, ITEM(2));
    weft_task *t = waiting_task_op(rt, &p);
    ck_assert_uint_eq(weft_queue_size(&q), 1);
    ck_assert_uint_eq(get_now(&q), 1);
    /* The get moved the waiting putter's item in. */
    ck_assert_uint_eq(weft_queue_size(&q), 1);
    tu_join_task(t, 0);
    ck_assert_int_eq(p.rc, 0);
    ck_assert_uint_eq(get_now(&q), 2);
    check_empty_now(&q);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(queue_plain_threads_block_in_get_and_put_until_served)
{
    /* Threads only: no runtime exists. */
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 1), 0);
    struct op g, p;
    pthread_t th;
    op_init(&g, &q, OP_GET, NULL);
    waiting_thread_op(&th, &g);
    ck_assert_int_eq(weft_queue_put(&q, ITEM(7)), 0);
    tu_join_thread(th);
    ck_assert_int_eq(g.rc, 0);
    ck_assert_ptr_eq(g.item, ITEM(7));
    check_empty_now(&q);

    put_now(&q, 8);
    op_init(&p, &q, OP_PUT, ITEM(9));
    waiting_thread_op(&th, &p);
    ck_assert_uint_eq(get_now(&q), 8);
    tu_join_thread(th);
    ck_assert_int_eq(p.rc, 0);
    ck_assert_uint_eq(get_now(&q), 9);

    /* A task serves a thread, and a thread serves a task. */
    weft_runtime *rt = tu_new_runtime(2);
    op_init(&g, &q, OP_GET, NULL);
    waiting_thread_op(&th, &g);
    op_init(&p, &q, OP_PUT, ITEM(10));
    tu_join_task(task_op(rt, &p), 0);
    ck_assert_int_eq(p.rc, 0);
    tu_join_thread(th);
    ck_assert_int_eq(g.rc, 0);
    ck_assert_ptr_eq(g.item, ITEM(10));

    put_now(&q, 11);
    op_init(&p, &q, OP_PUT, ITEM(12));
    weft_task *t = waiting_task_op(rt, &p);
    op_init(&g, &q, OP_GET, NULL);
    pthread_t th2;
    ck_assert_int_eq(pthread_create(&th2, NULL, run_op, &g), 0);
    tu_join_thread(th2);
    ck_assert_int_eq(g.rc, 0);
    ck_assert_ptr_eq(g.item, ITEM(11));
    tu_join_task(t, 0);
    ck_assert_int_eq(p.rc, 0);
    ck_assert_uint_eq(get_now(&q), 12);
    check_empty_now(&q);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(queue_waiting_getters_are_served_in_arrival_order)
{
    enum { N = 4 };
    weft_runtime *rt = tu_new_runtime(2);
    weft_queue q;
    init_q(&q, 0, _i == 0 ? WEFT_QUEUE_FIFO : WEFT_QUEUE_LIFO);
    struct op g[N];
    weft_task *t[N];
    for (int i = 0; i < N; i++) {
        op_init(&g[i], &q, OP_GET, NULL);
        t[i] = waiting_task_op(rt, &g[i]);
    }
    for (uintptr_t i = 0; i < N; i++)
        ck_assert_int_eq(weft_queue_put(&q, ITEM(100 + i)), 0);
    for (int i = 0; i < N; i++) {
        tu_join_task(t[i], 0);
        ck_assert_int_eq(g[i].rc, 0);
        ck_assert_ptr_eq(g[i].item, ITEM(100 + i));
    }
    check_empty_now(&q);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(queue_waiting_putters_are_admitted_in_arrival_order)
{
    enum { N = 4 };
    weft_runtime *rt = tu_new_runtime(2);
    weft_queue q;
    static const enum weft_queue_order orders[] = {
        WEFT_QUEUE_FIFO, WEFT_QUEUE_LIFO, WEFT_QUEUE_PRIORITY};
    init_q(&q, 1, orders[_i]);
    put_now(&q, 0);
    struct op p[N];
    weft_task *t[N];
    for (int i = 0; i < N; i++) {
        op_init(&p[i], &q, OP_PUT, ITEM(i + 1));
        t[i] = waiting_task_op(rt, &p[i]);
    }
    /* Each get frees the slot and admits the next putter at once. */
    for (uintptr_t i = 0; i <= N; i++) {
        ck_assert_uint_eq(get_now(&q), i);
        ck_assert_uint_eq(weft_queue_size(&q), i < N ? 1 : 0);
    }
    for (int i = 0; i < N; i++) {
        tu_join_task(t[i], 0);
        ck_assert_int_eq(p[i].rc, 0);
    }
    check_empty_now(&q);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * task_done and join */

START_TEST(queue_join_returns_once_every_put_item_is_done)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 0), 0);
    for (uintptr_t i = 1; i <= 5; i++)
        put_now(&q, i);
    struct op jt, jth;
    op_init(&jt, &q, OP_JOIN, NULL);
    op_init(&jth, &q, OP_JOIN, NULL);
    weft_task *t = waiting_task_op(rt, &jt);
    pthread_t th;
    waiting_thread_op(&th, &jth);
    for (uintptr_t i = 1; i <= 5; i++)
        ck_assert_uint_eq(get_now(&q), i);
    /* Taken is not done. */
    ck_assert_int_eq(weft_queue_join_timeout(&q, 0), -ETIMEDOUT);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_join_timeout(&q, 0), -ETIMEDOUT);
    ck_assert(!atomic_load(&jt.finished) && !atomic_load(&jth.finished));
    ck_assert_int_eq(weft_queue_task_done(&q), 0);
    tu_join_task(t, 0);
    tu_join_thread(th);
    ck_assert_int_eq(jt.rc, 0);
    ck_assert_int_eq(jth.rc, 0);
    ck_assert_int_eq(weft_queue_join(&q), 0);

    /* An item handed straight to a waiting getter counts as well. */
    struct op g;
    op_init(&g, &q, OP_GET, NULL);
    t = waiting_task_op(rt, &g);
    ck_assert_int_eq(weft_queue_put(&q, ITEM(6)), 0);
    tu_join_task(t, 0);
    ck_assert_ptr_eq(g.item, ITEM(6));
    ck_assert_int_eq(weft_queue_join_timeout(&q, 0), -ETIMEDOUT);
    ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_join_timeout(&q, 0), 0);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

static void *join_now_main(void *arg)
{
    weft_queue *q = arg;
    /* Nothing unfinished: join does not suspend, so a pending cancel does
     * not stop it. */
    ck_assert_int_eq(weft_cancel(weft_current()), 0);
    ck_assert_int_eq(weft_queue_join(q), 0);
    ck_assert_int_eq(weft_queue_join_timeout(q, 0), 0);
    ck_assert_int_eq(weft_uncancel(), 0);
    return (void *)1;
}

START_TEST(queue_join_with_nothing_unfinished_returns_at_once)
{
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 2), 0);
    double t0 = weft_now();
    ck_assert_int_eq(weft_queue_join(&q), 0);
    ck_assert_int_eq(weft_queue_join_timeout(&q, 0), 0);
    put_now(&q, 1);
    ck_assert_uint_eq(get_now(&q), 1);
    ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_join(&q), 0);
    ck_assert_ptr_eq(tu_run_in(1, join_now_main, &q), (void *)1);
    ck_assert_msg(weft_now() - t0 < 1.0, "took %.3f s", weft_now() - t0);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
}
END_TEST

START_TEST(queue_task_done_more_times_than_items_put_returns_eoverflow)
{
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 0), 0);
    ck_assert_int_eq(weft_queue_task_done(&q), -EOVERFLOW);
    put_now(&q, 1);
    put_now(&q, 2);
    ck_assert_uint_eq(get_now(&q), 1);
    ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_join_timeout(&q, 0), -ETIMEDOUT);
    /* As asyncio: task_done counts calls against items put, not got. */
    ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_task_done(&q), -EOVERFLOW);
    ck_assert_int_eq(weft_queue_join_timeout(&q, 0), 0);
    ck_assert_uint_eq(get_now(&q), 2);
    ck_assert_int_eq(weft_queue_task_done(&q), -EOVERFLOW);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
}
END_TEST

/* join_timeout expires on time while an item is unfinished; from a task
 * or from a thread. */
static void *join_timeout_body(void *arg)
{
    weft_queue *q = arg;
    double t0 = weft_now();
    TU_ASSERT_INT_EQ(weft_queue_join_timeout(q, 0.03), -ETIMEDOUT);
    tu_check_took(weft_now() - t0, 0.03, "weft_queue_join_timeout");
    t0 = weft_now();
    TU_ASSERT_INT_EQ(weft_queue_join_timeout(q, 0), -ETIMEDOUT);
    TU_ASSERT(weft_now() - t0 < TU_SLACK);
    return (void *)1;
}

START_TEST(queue_join_timeout_expires_while_items_are_unfinished)
{
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 0), 0);
    put_now(&q, 1);
    ck_assert_ptr_eq(join_timeout_body(&q), (void *)1);
    ck_assert_ptr_eq(tu_run_in(2, join_timeout_body, &q), (void *)1);
    ck_assert_uint_eq(get_now(&q), 1);
    ck_assert_ptr_eq(join_timeout_body(&q), (void *)1); /* got, not done */
    ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_join_timeout(&q, 0), 0);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
}
END_TEST

/* ------------------------------------------------------------------------
 * shutdown */

static void check_shut_down_and_empty(weft_queue *q)
{
    void *item = NOTHING;
    ck_assert_int_eq(weft_queue_get(q, &item), -ESHUTDOWN);
    ck_assert_int_eq(weft_queue_get_nowait(q, &item), -ESHUTDOWN);
    ck_assert_int_eq(weft_queue_get_timeout(q, &item, 10.0), -ESHUTDOWN);
    ck_assert_ptr_eq(item, NOTHING);
    ck_assert_int_eq(weft_queue_put(q, ITEM(1)), -ESHUTDOWN);
    ck_assert_int_eq(weft_queue_put_nowait(q, ITEM(1)), -ESHUTDOWN);
    ck_assert_int_eq(weft_queue_put_timeout(q, ITEM(1), 10.0), -ESHUTDOWN);
    ck_assert_uint_eq(weft_queue_size(q), 0);
}

START_TEST(queue_shutdown_fails_waiting_getters_with_eshutdown)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 0), 0);
    struct op g1, g2, gth;
    op_init(&g1, &q, OP_GET, NULL);
    op_init(&g2, &q, OP_GET, NULL);
    op_bound(&g2, 10.0);
    op_init(&gth, &q, OP_GET, NULL);
    weft_task *t1 = waiting_task_op(rt, &g1);
    weft_task *t2 = waiting_task_op(rt, &g2);
    pthread_t th;
    waiting_thread_op(&th, &gth);
    double t0 = weft_now();
    ck_assert_int_eq(weft_queue_shutdown(&q, false), 0);
    tu_join_task(t1, 0);
    tu_join_task(t2, 0);
    tu_join_thread(th);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "woke after %.3f s",
                  weft_now() - t0);
    struct op *g[] = {&g1, &g2, &gth};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(g[i]->rc, -ESHUTDOWN);
        ck_assert_ptr_eq(g[i]->item, NOTHING);
    }
    check_shut_down_and_empty(&q);
    ck_assert_int_eq(weft_queue_shutdown(&q, false), 0); /* again: no-op */
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(queue_shutdown_fails_waiting_putters_and_keeps_their_items_out)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 1), 0);
    put_now(&q, 1);
    struct op p1, pth;
    op_init(&p1, &q, OP_PUT, ITEM(2));
    op_init(&pth, &q, OP_PUT, ITEM(3));
    op_bound(&pth, 10.0);
    weft_task *t = waiting_task_op(rt, &p1);
    pthread_t th;
    waiting_thread_op(&th, &pth);
    ck_assert_int_eq(weft_queue_shutdown(&q, false), 0);
    tu_join_task(t, 0);
    tu_join_thread(th);
    ck_assert_int_eq(p1.rc, -ESHUTDOWN);
    ck_assert_int_eq(pth.rc, -ESHUTDOWN);
    /* Only the item put before the shutdown is there. */
    ck_assert_uint_eq(weft_queue_size(&q), 1);
    ck_assert_uint_eq(get_now(&q), 1);
    check_shut_down_and_empty(&q);
    ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_task_done(&q), -EOVERFLOW);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(queue_shutdown_lets_remaining_items_be_got_then_fails_gets)
{
    weft_queue q;
    init_q(&q, 5, _i == 0 ? WEFT_QUEUE_FIFO : WEFT_QUEUE_PRIORITY);
    for (uintptr_t i = 1; i <= 3; i++)
        put_now(&q, i);
    ck_assert_int_eq(weft_queue_shutdown(&q, false), 0);
    ck_assert_int_eq(weft_queue_put_nowait(&q, ITEM(0)), -ESHUTDOWN);
    ck_assert_int_eq(weft_queue_put(&q, ITEM(0)), -ESHUTDOWN);
    ck_assert_int_eq(weft_queue_put_timeout(&q, ITEM(0), 1.0), -ESHUTDOWN);
    ck_assert_uint_eq(weft_queue_size(&q), 3);
    void *item = NOTHING;
    ck_assert_int_eq(weft_queue_get(&q, &item), 0);
    ck_assert_ptr_eq(item, ITEM(1));
    ck_assert_int_eq(weft_queue_get_timeout(&q, &item, 0), 0);
    ck_assert_ptr_eq(item, ITEM(2));
    ck_assert_uint_eq(get_now(&q), 3);
    check_shut_down_and_empty(&q);
    /* join still waits for the items to be done. */
    ck_assert_int_eq(weft_queue_join_timeout(&q, 0), -ETIMEDOUT);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_join(&q), 0);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
}
END_TEST

START_TEST(queue_shutdown_immediate_drops_items_and_lets_join_return)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 0), 0);
    for (uintptr_t i = 1; i <= 3; i++)
        put_now(&q, i);
    struct op j;
    op_init(&j, &q, OP_JOIN, NULL);
    weft_task *t = waiting_task_op(rt, &j);
    ck_assert_uint_eq(get_now(&q), 1); /* taken, not yet done */
    ck_assert_int_eq(weft_queue_shutdown(&q, true), 0);
    check_shut_down_and_empty(&q);
    /* The dropped items count as done; the one taken is not yet. */
    ck_assert_int_eq(weft_queue_join_timeout(&q, 0), -ETIMEDOUT);
    ck_assert(!atomic_load(&j.finished));
    ck_assert_int_eq(weft_queue_task_done(&q), 0);
    tu_join_task(t, 0);
    ck_assert_int_eq(j.rc, 0);
    ck_assert_int_eq(weft_queue_task_done(&q), -EOVERFLOW);
    /* Nothing dropped is left behind: destroy succeeds. */
    ck_assert_int_eq(weft_queue_destroy(&q), 0);

    /* With nothing taken, the shutdown alone releases the joiner, and
     * waiting putters fail. */
    ck_assert_int_eq(weft_queue_init(&q, 2), 0);
    put_now(&q, 1);
    put_now(&q, 2);
    op_init(&j, &q, OP_JOIN, NULL);
    t = waiting_task_op(rt, &j);
    struct op p;
    op_init(&p, &q, OP_PUT, ITEM(3));
    weft_task *tp = waiting_task_op(rt, &p);
    ck_assert_int_eq(weft_queue_shutdown(&q, true), 0);
    tu_join_task(t, 0);
    tu_join_task(tp, 0);
    ck_assert_int_eq(j.rc, 0);
    ck_assert_int_eq(p.rc, -ESHUTDOWN);
    check_shut_down_and_empty(&q);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(queue_shutdown_immediate_after_every_item_is_done_keeps_join_free)
{
    /* task_done counts calls against items put, so every item may be
     * marked done while one is still queued; dropping that one must not
     * count it done a second time (Python 3.13 checks
     * `if self._unfinished_tasks > 0` there). */
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 0), 0);
    put_now(&q, 1);
    put_now(&q, 2);
    ck_assert_uint_eq(get_now(&q), 1);
    ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_join_timeout(&q, 0), 0);
    ck_assert_int_eq(weft_queue_shutdown(&q, true), 0); /* drops item 2 */
    ck_assert_uint_eq(weft_queue_size(&q), 0);
    ck_assert_int_eq(weft_queue_join_timeout(&q, 0), 0);
    ck_assert_int_eq(weft_queue_task_done(&q), -EOVERFLOW);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
}
END_TEST

/* ------------------------------------------------------------------------
 * Snapshots */

START_TEST(queue_size_empty_and_full_follow_the_contents)
{
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 2), 0);
    ck_assert_uint_eq(weft_queue_size(&q), 0);
    ck_assert(weft_queue_empty(&q) && !weft_queue_full(&q));
    put_now(&q, 1);
    ck_assert_uint_eq(weft_queue_size(&q), 1);
    ck_assert(!weft_queue_empty(&q) && !weft_queue_full(&q));
    put_now(&q, 2);
    ck_assert_uint_eq(weft_queue_size(&q), 2);
    ck_assert(!weft_queue_empty(&q) && weft_queue_full(&q));
    (void)get_now(&q);
    ck_assert_uint_eq(weft_queue_size(&q), 1);
    ck_assert(!weft_queue_empty(&q) && !weft_queue_full(&q));
    (void)get_now(&q);
    ck_assert(weft_queue_empty(&q) && !weft_queue_full(&q));
    ck_assert_int_eq(weft_queue_destroy(&q), 0);

    /* Unbounded: never full. */
    ck_assert_int_eq(weft_queue_init(&q, 0), 0);
    for (uintptr_t i = 0; i < 1000; i++)
        put_now(&q, i);
    ck_assert_uint_eq(weft_queue_size(&q), 1000);
    ck_assert(!weft_queue_full(&q));
    ck_assert_int_eq(weft_queue_shutdown(&q, true), 0);
    ck_assert_uint_eq(weft_queue_size(&q), 0);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);

    /* No queue: size 0, empty, not full. */
    ck_assert_uint_eq(weft_queue_size(NULL), 0);
    ck_assert(weft_queue_empty(NULL) && !weft_queue_full(NULL));
    ck_assert_uint_eq(weft_queue_size(&q), 0); /* destroyed */
    ck_assert(weft_queue_empty(&q) && !weft_queue_full(&q));
}
END_TEST

/* ------------------------------------------------------------------------
 * destroy */

START_TEST(queue_destroy_while_waited_on_returns_ebusy_and_keeps_the_queue)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 1), 0);
    /* A getter waits. */
    struct op g;
    op_init(&g, &q, OP_GET, NULL);
    weft_task *t = waiting_task_op(rt, &g);
    ck_assert_int_eq(weft_queue_destroy(&q), -EBUSY);
    ck_assert_int_eq(weft_queue_put(&q, ITEM(1)), 0);
    tu_join_task(t, 0);
    ck_assert_ptr_eq(g.item, ITEM(1));
    /* A joiner waits (the item got is not done). */
    struct op j;
    op_init(&j, &q, OP_JOIN, NULL);
    t = waiting_task_op(rt, &j);
    ck_assert_int_eq(weft_queue_destroy(&q), -EBUSY);
    ck_assert_int_eq(weft_queue_task_done(&q), 0);
    tu_join_task(t, 0);
    ck_assert_int_eq(j.rc, 0);
    /* A putter (a thread) waits on a full queue. */
    put_now(&q, 2);
    struct op p;
    op_init(&p, &q, OP_PUT, ITEM(3));
    pthread_t th;
    waiting_thread_op(&th, &p);
    ck_assert_int_eq(weft_queue_destroy(&q), -EBUSY);
    ck_assert_uint_eq(get_now(&q), 2);
    tu_join_thread(th);
    ck_assert_int_eq(p.rc, 0);
    ck_assert_uint_eq(get_now(&q), 3);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(queue_destroy_with_items_returns_enotempty)
{
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 0), 0);
    put_now(&q, 1);
    put_now(&q, 2);
    ck_assert_int_eq(weft_queue_destroy(&q), -ENOTEMPTY);
    ck_assert_uint_eq(weft_queue_size(&q), 2); /* still usable */
    ck_assert_uint_eq(get_now(&q), 1);
    ck_assert_int_eq(weft_queue_destroy(&q), -ENOTEMPTY);
    ck_assert_uint_eq(get_now(&q), 2);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    /* A plain shutdown keeps the items: still not empty. */
    ck_assert_int_eq(weft_queue_init(&q, 0), 0);
    put_now(&q, 1);
    ck_assert_int_eq(weft_queue_shutdown(&q, false), 0);
    ck_assert_int_eq(weft_queue_destroy(&q), -ENOTEMPTY);
    ck_assert_int_eq(weft_queue_shutdown(&q, true), 0);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
}
END_TEST

/* ------------------------------------------------------------------------
 * Bad input */

static void check_all_einval(weft_queue *q)
{
    void *item = NOTHING;
    ck_assert_int_eq(weft_queue_put(q, ITEM(1)), -EINVAL);
    ck_assert_int_eq(weft_queue_put_timeout(q, ITEM(1), 1.0), -EINVAL);
    ck_assert_int_eq(weft_queue_put_nowait(q, ITEM(1)), -EINVAL);
    ck_assert_int_eq(weft_queue_get(q, &item), -EINVAL);
    ck_assert_int_eq(weft_queue_get_timeout(q, &item, 1.0), -EINVAL);
    ck_assert_int_eq(weft_queue_get_nowait(q, &item), -EINVAL);
    ck_assert_ptr_eq(item, NOTHING);
    ck_assert_int_eq(weft_queue_task_done(q), -EINVAL);
    ck_assert_int_eq(weft_queue_join(q), -EINVAL);
    ck_assert_int_eq(weft_queue_join_timeout(q, 1.0), -EINVAL);
    ck_assert_int_eq(weft_queue_shutdown(q, false), -EINVAL);
    ck_assert_int_eq(weft_queue_shutdown(q, true), -EINVAL);
    ck_assert_int_eq(weft_queue_destroy(q), -EINVAL);
    ck_assert_uint_eq(weft_queue_size(q), 0);
}

START_TEST(queue_bad_arguments_return_einval)
{
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(NULL, 0), -EINVAL);
    ck_assert_int_eq(weft_queue_init_ex(NULL, NULL), -EINVAL);
    check_all_einval(NULL);

    /* A bad config. */
    weft_queue_config cfg = {.order = WEFT_QUEUE_PRIORITY};
    ck_assert_int_eq(weft_queue_init_ex(&q, &cfg), -EINVAL);
    cfg = (weft_queue_config){.order = (enum weft_queue_order)7,
                              .compare = cmp_num};
    ck_assert_int_eq(weft_queue_init_ex(&q, &cfg), -EINVAL);

    /* Never initialised. */
    weft_queue zero;
    memset(&zero, 0, sizeof zero);
    check_all_einval(&zero);

    /* A valid queue, with an item: NULL out-pointers and bad bounds fail
     * and change nothing. */
    ck_assert_int_eq(weft_queue_init(&q, 1), 0);
    put_now(&q, 5);
    ck_assert_int_eq(weft_queue_get(&q, NULL), -EINVAL);
    ck_assert_int_eq(weft_queue_get_timeout(&q, NULL, 1.0), -EINVAL);
    ck_assert_int_eq(weft_queue_get_nowait(&q, NULL), -EINVAL);
    ck_assert_uint_eq(weft_queue_size(&q), 1);
    static const double bad[] = {-1.0, -1e-9, NAN, -INFINITY};
    void *item = NOTHING;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(weft_queue_get_timeout(&q, &item, bad[i]), -EINVAL);
        ck_assert_int_eq(weft_queue_join_timeout(&q, bad[i]), -EINVAL);
        ck_assert_int_eq(weft_queue_put_timeout(&q, ITEM(6), bad[i]), -EINVAL);
    }
    ck_assert_ptr_eq(item, NOTHING);
    ck_assert_uint_eq(weft_queue_size(&q), 1);
    ck_assert_uint_eq(get_now(&q), 5);
    /* Room now, and still a bad bound: nothing is put. */
    ck_assert_int_eq(weft_queue_put_timeout(&q, ITEM(6), NAN), -EINVAL);
    ck_assert_uint_eq(weft_queue_size(&q), 0);
    ck_assert_int_eq(weft_queue_task_done(&q), 0);

    /* Destroyed. */
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    check_all_einval(&q);
}
END_TEST

/* ------------------------------------------------------------------------
 * Out of memory */

START_TEST(queue_put_that_cannot_grow_the_buffer_returns_enomem)
{
    /* No runtime: the countdown fails this thread's next allocation. */
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 0), 0);
    weft__alloc_fail_after(1); /* the first slots */
    int rc = weft_queue_put_nowait(&q, ITEM(0));
    weft__alloc_fail_after(0);
    ck_assert_int_eq(rc, -ENOMEM);
    check_empty_now(&q);
    ck_assert_int_eq(weft_queue_task_done(&q), -EOVERFLOW); /* not counted */
    for (uintptr_t i = 0; i < 16; i++)
        put_now(&q, i);
    (void)get_now(&q); /* the ring's oldest slot is now 1 */
    put_now(&q, 16);   /* full ring, wrapped */
    weft__alloc_fail_after(1);
    rc = weft_queue_put(&q, ITEM(17));
    weft__alloc_fail_after(0);
    ck_assert_int_eq(rc, -ENOMEM);
    weft__alloc_fail_after(1);
    rc = weft_queue_put_timeout(&q, ITEM(17), 1.0);
    weft__alloc_fail_after(0);
    ck_assert_int_eq(rc, -ENOMEM);
    ck_assert_uint_eq(weft_queue_size(&q), 16);
    put_now(&q, 17); /* memory again: it grows */
    for (uintptr_t i = 1; i <= 17; i++)
        ck_assert_uint_eq(get_now(&q), i);
    check_empty_now(&q);
    for (int i = 0; i < 18; i++)
        ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_task_done(&q), -EOVERFLOW);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
}
END_TEST

/* ------------------------------------------------------------------------
 * Cancellation and timeouts */

START_TEST(queue_cancelled_getter_returns_ecanceled_and_takes_nothing)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 0), 0);
    struct op g;
    op_init(&g, &q, OP_GET, NULL);
    weft_task *t = waiting_task_op(rt, &g);
    ck_assert_int_eq(weft_cancel(t), 0);
    tu_join_task(t, -ECANCELED);
    ck_assert_int_eq(g.rc, -ECANCELED);
    ck_assert_ptr_eq(g.item, NOTHING);
    /* The next item is queued, not handed to the cancelled getter. */
    put_now(&q, 1);
    ck_assert_uint_eq(weft_queue_size(&q), 1);
    ck_assert_uint_eq(get_now(&q), 1);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(queue_cancelled_putter_returns_ecanceled_and_puts_nothing)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 1), 0);
    put_now(&q, 1);
    struct op p;
    op_init(&p, &q, OP_PUT, ITEM(2));
    weft_task *t = waiting_task_op(rt, &p);
    ck_assert_int_eq(weft_cancel(t), 0);
    tu_join_task(t, -ECANCELED);
    ck_assert_int_eq(p.rc, -ECANCELED);
    /* Freeing the slot admits nothing: item 2 never went in. */
    ck_assert_uint_eq(get_now(&q), 1);
    check_empty_now(&q);
    ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_task_done(&q), -EOVERFLOW);
    /* A cancelled joiner too. */
    put_now(&q, 3);
    struct op j;
    op_init(&j, &q, OP_JOIN, NULL);
    t = waiting_task_op(rt, &j);
    ck_assert_int_eq(weft_cancel(t), 0);
    tu_join_task(t, -ECANCELED);
    ck_assert_int_eq(j.rc, -ECANCELED);
    ck_assert_uint_eq(get_now(&q), 3);
    ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

static void *pending_cancel_main(void *arg)
{
    (void)arg;
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 1), 0);
    ck_assert_int_eq(weft_cancel(weft_current()), 0);
    double t0 = weft_now();
    void *item = NOTHING;
    /* What would wait fails at once. */
    ck_assert_int_eq(weft_queue_get(&q, &item), -ECANCELED);
    ck_assert_int_eq(weft_queue_get_timeout(&q, &item, 10.0), -ECANCELED);
    ck_assert_ptr_eq(item, NOTHING);
    /* What need not wait succeeds without looking at cancellation. */
    ck_assert_int_eq(weft_queue_put(&q, ITEM(1)), 0);
    ck_assert_int_eq(weft_queue_put(&q, ITEM(2)), -ECANCELED);
    ck_assert_int_eq(weft_queue_put_timeout(&q, ITEM(2), 10.0), -ECANCELED);
    ck_assert_int_eq(weft_queue_join(&q), -ECANCELED);
    ck_assert_int_eq(weft_queue_get(&q, &item), 0);
    ck_assert_ptr_eq(item, ITEM(1));
    ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_join(&q), 0);
    ck_assert_msg(weft_now() - t0 < TU_SLACK, "took %.3f s", weft_now() - t0);
    ck_assert_int_eq(weft_yield(), -ECANCELED); /* still pending */
    ck_assert_int_eq(weft_uncancel(), 0);
    ck_assert_int_eq(weft_queue_get_timeout(&q, &item, 0.001), -ETIMEDOUT);
    check_empty_now(&q);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    return (void *)1;
}

START_TEST(queue_task_with_a_pending_cancel_fails_only_calls_that_would_wait)
{
    ck_assert_ptr_eq(tu_run_in(1, pending_cancel_main, NULL), (void *)1);
}
END_TEST

static void *scope_main(void *arg)
{
    (void)arg;
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 1), 0);
    weft_timeout scope;
    void *item = NOTHING;

    double t0 = weft_now();
    ck_assert_int_eq(weft_timeout_enter(&scope, 0.03), 0);
    ck_assert_int_eq(weft_queue_get(&q, &item), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.03, "get in a timeout scope");
    ck_assert_int_eq(weft_timeout_exit(&scope), -ETIMEDOUT);
    ck_assert_ptr_eq(item, NOTHING);

    put_now(&q, 1);
    t0 = weft_now();
    ck_assert_int_eq(weft_timeout_enter(&scope, 0.03), 0);
    ck_assert_int_eq(weft_queue_put(&q, ITEM(2)), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.03, "put in a timeout scope");
    ck_assert_int_eq(weft_timeout_exit(&scope), -ETIMEDOUT);
    ck_assert_uint_eq(get_now(&q), 1); /* 2 never went in */
    check_empty_now(&q);

    t0 = weft_now();
    ck_assert_int_eq(weft_timeout_enter(&scope, 0.03), 0);
    ck_assert_int_eq(weft_queue_join(&q), -ETIMEDOUT); /* 1 is not done */
    tu_check_elapsed(t0, 0.03, "join in a timeout scope");
    ck_assert_int_eq(weft_timeout_exit(&scope), -ETIMEDOUT);
    ck_assert_int_eq(weft_queue_task_done(&q), 0);

    /* A _timeout bound inside a longer scope: the bound ends the wait,
     * the scope has not expired. */
    t0 = weft_now();
    ck_assert_int_eq(weft_timeout_enter(&scope, 10.0), 0);
    ck_assert_int_eq(weft_queue_get_timeout(&q, &item, 0.02), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.02, "bounded get in a long scope");
    ck_assert_int_eq(weft_timeout_exit(&scope), 0);
    /* A scope shorter than the bound ends it. */
    t0 = weft_now();
    ck_assert_int_eq(weft_timeout_enter(&scope, 0.02), 0);
    ck_assert_int_eq(weft_queue_get_timeout(&q, &item, 10.0), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.02, "long bounded get in a short scope");
    ck_assert_int_eq(weft_timeout_exit(&scope), -ETIMEDOUT);
    ck_assert_ptr_eq(item, NOTHING);
    /* An expired scope lets a get that finds an item succeed. */
    put_now(&q, 4);
    ck_assert_int_eq(weft_timeout_enter(&scope, 0), 0);
    ck_assert_int_eq(weft_queue_get(&q, &item), 0);
    ck_assert_ptr_eq(item, ITEM(4));
    ck_assert_int_eq(weft_queue_get(&q, &item), -ETIMEDOUT);
    ck_assert_int_eq(weft_timeout_exit(&scope), -ETIMEDOUT);
    ck_assert_int_eq(weft_queue_task_done(&q), 0);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    return (void *)1;
}

START_TEST(queue_waits_in_an_expired_timeout_scope_return_etimedout)
{
    ck_assert_ptr_eq(tu_run_in(2, scope_main, NULL), (void *)1);
}
END_TEST

/* The _timeout forms expire on time and take or put nothing; 0 is a poll
 * that fails only where the call would wait. From a task or a thread. */
static void *timeout_forms(void *arg)
{
    (void)arg;
    weft_queue q;
    TU_ASSERT_INT_EQ(weft_queue_init(&q, 1), 0);
    void *item = NOTHING;
    double t0 = weft_now();
    TU_ASSERT_INT_EQ(weft_queue_get_timeout(&q, &item, 0.03), -ETIMEDOUT);
    tu_check_took(weft_now() - t0, 0.03, "weft_queue_get_timeout");
    t0 = weft_now();
    TU_ASSERT_INT_EQ(weft_queue_get_timeout(&q, &item, 0), -ETIMEDOUT);
    TU_ASSERT(weft_now() - t0 < TU_SLACK);
    TU_ASSERT(item == NOTHING);

    TU_ASSERT_INT_EQ(weft_queue_put_timeout(&q, ITEM(1), 0), 0);
    t0 = weft_now();
    TU_ASSERT_INT_EQ(weft_queue_put_timeout(&q, ITEM(2), 0.03), -ETIMEDOUT);
    tu_check_took(weft_now() - t0, 0.03, "weft_queue_put_timeout");
    TU_ASSERT_INT_EQ(weft_queue_put_timeout(&q, ITEM(2), 0), -ETIMEDOUT);
    TU_ASSERT_INT_EQ(weft_queue_size(&q), 1);
    TU_ASSERT_INT_EQ(weft_queue_get_timeout(&q, &item, 0), 0);
    TU_ASSERT(item == ITEM(1));
    TU_ASSERT_INT_EQ(weft_queue_get_nowait(&q, &item), -EAGAIN);

    TU_ASSERT_INT_EQ(weft_queue_put_timeout(&q, ITEM(3), WEFT_FOREVER), 0);
    TU_ASSERT_INT_EQ(weft_queue_get_timeout(&q, &item, WEFT_FOREVER), 0);
    TU_ASSERT(item == ITEM(3));
    TU_ASSERT_INT_EQ(weft_queue_task_done(&q), 0);
    TU_ASSERT_INT_EQ(weft_queue_task_done(&q), 0);
    TU_ASSERT_INT_EQ(weft_queue_join_timeout(&q, 0), 0);
    TU_ASSERT_INT_EQ(weft_queue_destroy(&q), 0);
    return (void *)1;
}

START_TEST(queue_timeout_forms_expire_in_tasks_and_threads)
{
    ck_assert_ptr_eq(timeout_forms(NULL), (void *)1); /* a plain thread */
    ck_assert_ptr_eq(tu_run_in(2, timeout_forms, NULL), (void *)1);
}
END_TEST

START_TEST(queue_bounded_waits_are_served_before_their_bound)
{
    weft_runtime *rt = tu_new_runtime(2);
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 1), 0);
    struct op g, gth;
    op_init(&g, &q, OP_GET, NULL);
    op_bound(&g, 10.0);
    op_init(&gth, &q, OP_GET, NULL);
    op_bound(&gth, WEFT_FOREVER);
    weft_task *t = waiting_task_op(rt, &g);
    pthread_t th;
    waiting_thread_op(&th, &gth);
    ck_assert_int_eq(weft_queue_put(&q, ITEM(1)), 0);
    ck_assert_int_eq(weft_queue_put(&q, ITEM(2)), 0);
    tu_join_task(t, 0);
    tu_join_thread(th);
    ck_assert_int_eq(g.rc, 0);
    ck_assert_int_eq(gth.rc, 0);
    ck_assert_ptr_eq(g.item, ITEM(1));
    ck_assert_ptr_eq(gth.item, ITEM(2));
    ck_assert_msg(g.elapsed < 5.0 && gth.elapsed < 5.0, "waited the bound");

    put_now(&q, 3);
    struct op p, pth;
    op_init(&p, &q, OP_PUT, ITEM(4));
    op_bound(&p, 10.0);
    op_init(&pth, &q, OP_PUT, ITEM(5));
    op_bound(&pth, 10.0);
    t = waiting_task_op(rt, &p);
    waiting_thread_op(&th, &pth);
    for (uintptr_t i = 3; i <= 5; i++)
        ck_assert_uint_eq(get_now(&q), i);
    tu_join_task(t, 0);
    tu_join_thread(th);
    ck_assert_int_eq(p.rc, 0);
    ck_assert_int_eq(pth.rc, 0);
    check_empty_now(&q);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

/* A plain thread that cancels `target` each time `go` moves on. */
struct canceller {
    atomic_int go, done; /* go < 0: quit */
    weft_task *_Atomic target;
    pthread_t th;
};

static void *canceller_thread(void *arg)
{
    struct canceller *c = arg;
    int seen = 0;
    for (;;) {
        int go;
        for (unsigned spins = 0; (go = atomic_load(&c->go)) == seen; spins++)
            if (spins % 64 == 63)
                sched_yield();
        if (go < 0)
            return NULL;
        int rc = weft_cancel(atomic_load(&c->target));
        TU_ASSERT(rc == 0 || rc == -ESRCH); /* -ESRCH: it returned first */
        seen = go;
        atomic_store(&c->done, go);
    }
}

static void canceller_start(struct canceller *c)
{
    memset(c, 0, sizeof *c);
    ck_assert_int_eq(pthread_create(&c->th, NULL, canceller_thread, c), 0);
}

/* Cancel t on the canceller thread while the caller goes on. */
static void canceller_fire(struct canceller *c, weft_task *t, int round)
{
    atomic_store(&c->target, t);
    atomic_store(&c->go, round);
}

static void canceller_wait(struct canceller *c, int round)
{
    while (atomic_load(&c->done) != round)
        sched_yield();
}

/* Spin for about `n` short pauses. */
static void spin(int n)
{
    for (int i = 0; i < n; i++)
        __builtin_ia32_pause();
}

/* The delay before the caller's own move, tuned as the rounds go so that
 * the cancel and that move land close together: longer while the move
 * keeps winning, shorter while the cancel does. */
static int retune(int delay, bool move_won, uint64_t *rng)
{
    delay += move_won ? 1 + delay / 8 : -(1 + delay / 8);
    delay += (int)(tu_rand(rng) % 5) - 2;
    return delay < 0 ? 0 : delay > 100000 ? 100000 : delay;
}

static void canceller_stop(struct canceller *c)
{
    atomic_store(&c->go, -1);
    ck_assert_int_eq(pthread_join(c->th, NULL), 0);
}

START_TEST(queue_getter_cancelled_as_an_item_arrives_gets_it_or_leaves_it)
{
    int rounds = TU_SCALE(2000, 800, 500);
    double t0 = weft_now();
    weft_runtime *rt = tu_new_runtime(2);
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 0), 0);
    struct canceller c;
    canceller_start(&c);
    int got = 0, left = 0, delay = 0;
    uint64_t rng = 1;
    for (int r = 1; r <= rounds; r++) {
        struct op g;
        op_init(&g, &q, OP_GET, NULL);
        weft_task *t = waiting_task_op(rt, &g);
        canceller_fire(&c, t, r);
        spin(delay);
        TU_ASSERT_INT_EQ(weft_queue_put_nowait(&q, ITEM(r)), 0);
        canceller_wait(&c, r);
        int jrc = weft_join(t, NULL);
        if (g.rc == 0) { /* it got the item: the queue is empty */
            TU_ASSERT_INT_EQ(jrc, 0);
            TU_ASSERT(g.item == ITEM(r));
            TU_ASSERT_INT_EQ(weft_queue_size(&q), 0);
            got++;
            delay = retune(delay, true, &rng);
        } else { /* it took nothing: the item is in the queue */
            TU_ASSERT_INT_EQ(g.rc, -ECANCELED);
            TU_ASSERT_INT_EQ(jrc, -ECANCELED);
            TU_ASSERT(g.item == NOTHING);
            TU_ASSERT_INT_EQ(get_now(&q), (uintptr_t)r);
            left++;
            delay = retune(delay, false, &rng);
        }
        TU_ASSERT_INT_EQ(weft_queue_size(&q), 0);
    }
    canceller_stop(&c);
    fprintf(stderr,
            "queue_getter_cancelled_as_an_item_arrives: got %d, "
            "left %d (final delay %d), %.3f s\n",
            got, left, delay, weft_now() - t0);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(queue_putter_cancelled_as_room_appears_puts_or_keeps_its_item)
{
    int rounds = TU_SCALE(2000, 800, 500);
    double t0 = weft_now();
    weft_runtime *rt = tu_new_runtime(2);
    weft_queue q;
    ck_assert_int_eq(weft_queue_init(&q, 1), 0);
    struct canceller c;
    canceller_start(&c);
    int put = 0, kept = 0, delay = 0;
    uint64_t rng = 1;
    for (int r = 1; r <= rounds; r++) {
        put_now(&q, 0);
        struct op p;
        op_init(&p, &q, OP_PUT, ITEM(r));
        weft_task *t = waiting_task_op(rt, &p);
        canceller_fire(&c, t, r);
        spin(delay);
        TU_ASSERT_INT_EQ(get_now(&q), 0);
        canceller_wait(&c, r);
        int jrc = weft_join(t, NULL);
        if (p.rc == 0) { /* its item went in */
            TU_ASSERT_INT_EQ(jrc, 0);
            TU_ASSERT_INT_EQ(get_now(&q), (uintptr_t)r);
            put++;
            delay = retune(delay, true, &rng);
        } else { /* it kept its item */
            TU_ASSERT_INT_EQ(p.rc, -ECANCELED);
            TU_ASSERT_INT_EQ(jrc, -ECANCELED);
            kept++;
            delay = retune(delay, false, &rng);
        }
        TU_ASSERT_INT_EQ(weft_queue_size(&q), 0);
    }
    canceller_stop(&c);
    fprintf(stderr,
            "queue_putter_cancelled_as_room_appears: put %d, "
            "kept %d (final delay %d), %.3f s\n",
            put, kept, delay, weft_now() - t0);
    ck_assert_int_eq(weft_queue_destroy(&q), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Stress: every item delivered exactly once */

struct flow {
    weft_queue q;
    size_t n;                   /* items 0 .. n-1, item i is ITEM(i) */
    atomic_uchar *seen;         /* times each item was got */
    atomic_size_t received;     /* items got */
    atomic_size_t put_timeouts; /* puts that timed out (and were retried) */
    atomic_size_t get_timeouts; /* gets that timed out */
};

static void flow_init(struct flow *f, size_t n, size_t maxsize)
{
    memset(f, 0, sizeof *f);
    ck_assert_int_eq(weft_queue_init(&f->q, maxsize), 0);
    f->n = n;
    f->seen = calloc(n, 1);
    ck_assert_ptr_nonnull(f->seen);
}

static void flow_record(struct flow *f, void *item)
{
    uintptr_t i = NUM(item);
    TU_ASSERT(i < f->n);
    unsigned char was =
        atomic_fetch_add_explicit(&f->seen[i], 1, memory_order_relaxed);
    if (was != 0)
        ck_abort_msg("item %zu got twice", (size_t)i);
    atomic_fetch_add(&f->received, 1);
}

/* Every item was got once, and the queue is left empty. */
static void flow_check_and_free(struct flow *f)
{
    ck_assert_uint_eq(atomic_load(&f->received), f->n);
    for (size_t i = 0; i < f->n; i++)
        if (atomic_load_explicit(&f->seen[i], memory_order_relaxed) != 1)
            ck_abort_msg("item %zu got %u times", i,
                         (unsigned)atomic_load(&f->seen[i]));
    ck_assert_uint_eq(weft_queue_size(&f->q), 0);
    ck_assert_int_eq(weft_queue_destroy(&f->q), 0);
    free(f->seen);
}

/* Pace a loop of cancellations by progress, not by time: wait (polling)
 * until `step` more items were received, or all of them. */
static void flow_wait_progress(struct flow *f, size_t step)
{
    size_t target = atomic_load(&f->received) + step;
    struct timespec ts = {0, 50000};
    while (atomic_load(&f->received) < target &&
           atomic_load(&f->received) < f->n)
        nanosleep(&ts, NULL);
}

/* A tiny bound: 0 to 63 microseconds, 0 one time in eight. */
static double tiny(uint64_t r)
{
    return (r >> 32) % 8 == 0 ? 0.0 : (double)((r >> 40) % 64) * 1e-6;
}

/* Items next .. end-1, still to put. */
struct producer {
    struct flow *f;
    size_t next, end;
    uint64_t rng;
    weft_task *task; /* when run as a task */
    pthread_t th;    /* when run as a thread */
};

static void *producer_thread(void *arg)
{
    struct producer *p = arg;
    while (p->next < p->end) {
        uint64_t r = tu_rand(&p->rng);
        void *item = ITEM(p->next);
        int rc = r % 16 == 0 ? weft_queue_put_timeout(&p->f->q, item, tiny(r))
                             : weft_queue_put(&p->f->q, item);
        if (rc == 0) {
            p->next++;
        } else {
            TU_ASSERT_INT_EQ(rc, -ETIMEDOUT); /* not in: put it again */
            atomic_fetch_add(&p->f->put_timeouts, 1);
        }
    }
    return NULL;
}

/* A consumer task: gets until cancelled (returns NULL) or the queue is
 * shut down (returns 1). It yields now and then, so that a cancel reaches
 * it even while items keep coming: a get that finds one does not look. */
static void *consumer_task(void *arg)
{
    struct flow *f = arg;
    for (unsigned k = 1;; k++) {
        void *item = NOTHING;
        int rc = weft_queue_get(&f->q, &item);
        if (rc == -ECANCELED)
            return NULL;
        if (rc == -ESHUTDOWN)
            return ITEM(1);
        TU_ASSERT_INT_EQ(rc, 0);
        flow_record(f, item);
        if (k % 16 == 0) {
            rc = weft_yield();
            if (rc == -ECANCELED)
                return NULL;
            TU_ASSERT_INT_EQ(rc, 0);
        }
    }
}

START_TEST(queue_stress_thread_producers_and_cancelled_task_consumers)
{
    enum { PRODUCERS = 2, CONSUMERS = 4 };
    size_t n = TU_SCALE(1000000, 300000, 150000);
    uint64_t seed = tu_seed("queue_stress_thread_producers_task_consumers");
    double t0 = weft_now();
    struct flow f;
    flow_init(&f, n, 64);
    weft_runtime *rt = tu_new_runtime(2);
    weft_task *cons[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        cons[i] = weft_spawn_ex(rt, consumer_task, &f, NULL);
        ck_assert_ptr_nonnull(cons[i]);
    }
    struct producer prod[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        prod[i] = (struct producer){.f = &f,
                                    .next = n * i / PRODUCERS,
                                    .end = n * (i + 1) / PRODUCERS,
                                    .rng = seed + 2 * i + 1};
        ck_assert_int_eq(
            pthread_create(&prod[i].th, NULL, producer_thread, &prod[i]), 0);
    }
    /* Cancel a random consumer about 200 times along the way, and replace
     * it. A cancelled consumer ends cancelled: it returned on -ECANCELED. */
    unsigned cancels = 0;
    uint64_t rng = seed;
    while (atomic_load(&f.received) < n) {
        flow_wait_progress(&f, n / 200 + 1);
        int i = (int)(tu_rand(&rng) % CONSUMERS);
        ck_assert_int_eq(weft_cancel(cons[i]), 0);
        ck_assert_int_eq(weft_join(cons[i], NULL), -ECANCELED);
        cons[i] = weft_spawn_ex(rt, consumer_task, &f, NULL);
        ck_assert_ptr_nonnull(cons[i]);
        cancels++;
    }
    for (int i = 0; i < PRODUCERS; i++) {
        ck_assert_int_eq(pthread_join(prod[i].th, NULL), 0);
        ck_assert_uint_eq(prod[i].next, prod[i].end);
    }
    /* All delivered: the shutdown ends the consumers normally. */
    ck_assert_int_eq(weft_queue_shutdown(&f.q, false), 0);
    for (int i = 0; i < CONSUMERS; i++) {
        void *r = NULL;
        ck_assert_int_eq(weft_join(cons[i], &r), 0);
        ck_assert_ptr_eq(r, ITEM(1));
    }
    weft_runtime_free(rt);
    fprintf(stderr,
            "queue_stress_thread_producers: %zu items, %u cancels, %zu put "
            "timeouts, %.3f s\n",
            n, cancels, atomic_load(&f.put_timeouts), weft_now() - t0);
    ck_assert_uint_gt(cancels, 0);
    flow_check_and_free(&f);
}
END_TEST

/* A producer task: puts its items until done (returns normally) or
 * cancelled (returns on -ECANCELED, with `next` the item it did not put).
 * Now and then a put runs under a tiny bound or a tiny timeout scope; an
 * item that timed out is put again. */
static void *producer_task(void *arg)
{
    struct producer *p = arg;
    while (p->next < p->end) {
        uint64_t r = tu_rand(&p->rng);
        void *item = ITEM(p->next);
        int rc;
        if (r % 32 == 0) {
            weft_timeout scope;
            TU_ASSERT_INT_EQ(weft_timeout_enter(&scope, tiny(r)), 0);
            rc = weft_queue_put(&p->f->q, item);
            int xrc = weft_timeout_exit(&scope);
            if (rc == -ETIMEDOUT)
                TU_ASSERT_INT_EQ(xrc, -ETIMEDOUT);
        } else if (r % 32 == 1) {
            rc = weft_queue_put_timeout(&p->f->q, item, tiny(r));
        } else {
            rc = weft_queue_put(&p->f->q, item);
        }
        if (rc == 0) {
            p->next++;
        } else if (rc == -ECANCELED) {
            return NULL;
        } else {
            TU_ASSERT_INT_EQ(rc, -ETIMEDOUT);
            atomic_fetch_add(&p->f->put_timeouts, 1);
        }
    }
    return NULL;
}

struct consumer {
    struct flow *f;
    uint64_t rng;
    pthread_t th;
};

/* A consumer thread: gets (some with a tiny bound) until shutdown. */
static void *consumer_thread(void *arg)
{
    struct consumer *c = arg;
    for (;;) {
        uint64_t r = tu_rand(&c->rng);
        void *item = NOTHING;
        int rc = r % 8 == 0 ? weft_queue_get_timeout(&c->f->q, &item, tiny(r))
                            : weft_queue_get(&c->f->q, &item);
        if (rc == -ESHUTDOWN)
            return NULL;
        if (rc == -ETIMEDOUT) {
            TU_ASSERT(item == NOTHING);
            atomic_fetch_add(&c->f->get_timeouts, 1);
            continue;
        }
        TU_ASSERT_INT_EQ(rc, 0);
        flow_record(c->f, item);
    }
}

static void spawn_producer(weft_runtime *rt, struct producer *p)
{
    p->task = weft_spawn_ex(rt, producer_task, p, NULL);
    ck_assert_ptr_nonnull(p->task);
}

/* Join a producer task; one that was cancelled before its last item is
 * replaced by a new task for the rest. */
static void join_producer(weft_runtime *rt, struct producer *p)
{
    int rc = weft_join(p->task, NULL);
    p->task = NULL;
    if (rc == 0) {
        ck_assert_uint_eq(p->next, p->end);
    } else {
        ck_assert_int_eq(rc, -ECANCELED);
        ck_assert_uint_lt(p->next, p->end);
        spawn_producer(rt, p);
    }
}

START_TEST(queue_stress_cancelled_task_producers_and_thread_consumers)
{
    enum { PRODUCERS = 4, CONSUMERS = 2 };
    size_t n = TU_SCALE(1000000, 300000, 150000);
    uint64_t seed = tu_seed("queue_stress_task_producers_thread_consumers");
    double t0 = weft_now();
    struct flow f;
    flow_init(&f, n, 64);
    weft_runtime *rt = tu_new_runtime(2);
    struct consumer cons[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        cons[i] = (struct consumer){.f = &f, .rng = seed + 2 * i + 1};
        ck_assert_int_eq(
            pthread_create(&cons[i].th, NULL, consumer_thread, &cons[i]), 0);
    }
    struct producer prod[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        prod[i] = (struct producer){.f = &f,
                                    .next = n * i / PRODUCERS,
                                    .end = n * (i + 1) / PRODUCERS,
                                    .rng = seed + 2 * (i + CONSUMERS) + 1};
        spawn_producer(rt, &prod[i]);
    }
    /* Cancel a random producer about 200 times along the way; its items
     * not yet put go to a new task. A cancelled put must not have put its
     * item, or that item would arrive twice. */
    unsigned cancels = 0;
    uint64_t rng = seed;
    while (atomic_load(&f.received) < n) {
        flow_wait_progress(&f, n / 200 + 1);
        struct producer *p = &prod[tu_rand(&rng) % PRODUCERS];
        if (!p->task)
            continue;
        int rc = weft_cancel(p->task);
        ck_assert(rc == 0 || rc == -ESRCH);
        join_producer(rt, p);
        cancels++;
    }
    for (int i = 0; i < PRODUCERS; i++) {
        if (prod[i].task)
            join_producer(rt, &prod[i]);
        ck_assert_ptr_null(prod[i].task);
        ck_assert_uint_eq(prod[i].next, prod[i].end);
    }
    ck_assert_int_eq(weft_queue_shutdown(&f.q, false), 0);
    for (int i = 0; i < CONSUMERS; i++)
        ck_assert_int_eq(pthread_join(cons[i].th, NULL), 0);
    weft_runtime_free(rt);
    fprintf(stderr,
            "queue_stress_task_producers: %zu items, %u cancels, %zu put "
            "timeouts, %zu get timeouts, %.3f s\n",
            n, cancels, atomic_load(&f.put_timeouts),
            atomic_load(&f.get_timeouts), weft_now() - t0);
    ck_assert_uint_gt(cancels, 0);
    flow_check_and_free(&f);
}
END_TEST

/* Racing bounded calls: producers retry puts that timed out, consumers
 * get with tiny bounds until every item has arrived. */
static void *timed_producer(void *arg)
{
    struct producer *p = arg;
    while (p->next < p->end) {
        uint64_t r = tu_rand(&p->rng);
        int rc = weft_queue_put_timeout(&p->f->q, ITEM(p->next), tiny(r));
        if (rc == 0) {
            p->next++;
        } else {
            TU_ASSERT_INT_EQ(rc, -ETIMEDOUT);
            atomic_fetch_add(&p->f->put_timeouts, 1);
        }
    }
    return NULL;
}

static void *timed_consumer(void *arg)
{
    struct consumer *c = arg;
    while (atomic_load(&c->f->received) < c->f->n) {
        uint64_t r = tu_rand(&c->rng);
        void *item = NOTHING;
        int rc = weft_queue_get_timeout(&c->f->q, &item, tiny(r));
        if (rc == 0) {
            flow_record(c->f, item);
        } else {
            TU_ASSERT_INT_EQ(rc, -ETIMEDOUT);
            TU_ASSERT(item == NOTHING);
            atomic_fetch_add(&c->f->get_timeouts, 1);
        }
    }
    return NULL;
}

START_TEST(queue_stress_tiny_timeouts_racing_deliver_each_item_once)
{
    /* Three producers and three consumers, two of each plain threads and
     * one of each a task, on a queue of 4. */
    enum { SIDE = 3 };
    size_t n = TU_SCALE(200000, 60000, 30000);
    uint64_t seed = tu_seed("queue_stress_tiny_timeouts");
    double t0 = weft_now();
    struct flow f;
    flow_init(&f, n, 4);
    weft_runtime *rt = tu_new_runtime(1);
    struct producer prod[SIDE];
    struct consumer cons[SIDE];
    weft_task *tp = NULL, *tc = NULL;
    for (int i = 0; i < SIDE; i++) {
        prod[i] = (struct producer){.f = &f,
                                    .next = n * i / SIDE,
                                    .end = n * (i + 1) / SIDE,
                                    .rng = seed + 2 * i + 1};
        cons[i] = (struct consumer){.f = &f, .rng = seed + 2 * (i + SIDE) + 1};
        if (i == 0) {
            tp = weft_spawn_ex(rt, timed_producer, &prod[i], NULL);
            tc = weft_spawn_ex(rt, timed_consumer, &cons[i], NULL);
            ck_assert(tp && tc);
        } else {
            ck_assert_int_eq(
                pthread_create(&prod[i].th, NULL, timed_producer, &prod[i]), 0);
            ck_assert_int_eq(
                pthread_create(&cons[i].th, NULL, timed_consumer, &cons[i]), 0);
        }
    }
    tu_join_task(tp, 0);
    tu_join_task(tc, 0);
    for (int i = 1; i < SIDE; i++) {
        tu_join_thread(prod[i].th);
        tu_join_thread(cons[i].th);
    }
    for (int i = 0; i < SIDE; i++)
        ck_assert_uint_eq(prod[i].next, prod[i].end);
    weft_runtime_free(rt);
    fprintf(stderr,
            "queue_stress_tiny_timeouts: %zu items, %zu put timeouts, %zu "
            "get timeouts, %.3f s\n",
            n, atomic_load(&f.put_timeouts), atomic_load(&f.get_timeouts),
            weft_now() - t0);
    ck_assert_uint_gt(
        atomic_load(&f.put_timeouts) + atomic_load(&f.get_timeouts), 0);
    flow_check_and_free(&f);
}
END_TEST

/* Shutdown in mid-stream: producers (threads and tasks) put until their
 * puts fail with -ESHUTDOWN; consumers (threads and tasks) get and mark
 * each item done until their gets fail. */
enum { PUT_UNTRIED = 0, PUT_ACCEPTED, PUT_REJECTED };

struct shut_flow {
    struct flow f;
    unsigned char *status; /* each item: PUT_UNTRIED, _ACCEPTED, _REJECTED */
};

struct shut_producer {
    struct shut_flow *s;
    size_t next, end;
    uint64_t rng;
    pthread_t th;
};

static void *shut_producer_body(void *arg)
{
    struct shut_producer *p = arg;
    struct flow *f = &p->s->f;
    while (p->next < p->end) {
        uint64_t r = tu_rand(&p->rng);
        void *item = ITEM(p->next);
        int rc = r % 4 == 0 ? weft_queue_put_timeout(&f->q, item, tiny(r))
                            : weft_queue_put(&f->q, item);
        if (rc == -ETIMEDOUT)
            continue; /* not in: put it again */
        if (rc == -ESHUTDOWN) {
            p->s->status[p->next] = PUT_REJECTED;
            return NULL;
        }
        TU_ASSERT_INT_EQ(rc, 0);
        p->s->status[p->next++] = PUT_ACCEPTED;
    }
    return NULL;
}

static void *shut_consumer_body(void *arg)
{
    struct flow *f = arg;
    for (;;) {
        void *item = NOTHING;
        int rc = weft_queue_get(&f->q, &item);
        if (rc == -ESHUTDOWN)
            return NULL;
        TU_ASSERT_INT_EQ(rc, 0);
        flow_record(f, item);
        TU_ASSERT_INT_EQ(weft_queue_task_done(&f->q), 0);
    }
}

START_TEST(queue_stress_shutdown_midstream_loses_and_duplicates_nothing)
{
    /* 0: shutdown(false), every accepted item is got; 1: shutdown(true),
     * the items still queued are dropped and count as done. Either way no
     * item is got twice, none whose put failed is got, and join returns. */
    enum { SIDE = 4 }; /* producers 0, 1 and consumers 0, 1 are threads */
    bool immediate = _i == 1;
    size_t n = TU_SCALE(400000, 100000, 40000);
    uint64_t seed = tu_seed(immediate ? "queue_stress_shutdown_immediate"
                                      : "queue_stress_shutdown");
    double t0 = weft_now();
    struct shut_flow s;
    flow_init(&s.f, n, 16);
    s.status = calloc(n, 1);
    ck_assert_ptr_nonnull(s.status);
    weft_runtime *rt = tu_new_runtime(2);
    struct shut_producer prod[SIDE];
    pthread_t cons_th[SIDE];
    weft_task *prod_t[SIDE], *cons_t[SIDE];
    for (int i = 0; i < SIDE; i++) {
        prod[i] = (struct shut_producer){.s = &s,
                                         .next = n * i / SIDE,
                                         .end = n * (i + 1) / SIDE,
                                         .rng = seed + 2 * i + 1};
        if (i < 2) {
            ck_assert_int_eq(
                pthread_create(&prod[i].th, NULL, shut_producer_body, &prod[i]),
                0);
            ck_assert_int_eq(
                pthread_create(&cons_th[i], NULL, shut_consumer_body, &s.f), 0);
        } else {
            prod_t[i] = weft_spawn_ex(rt, shut_producer_body, &prod[i], NULL);
            cons_t[i] = weft_spawn_ex(rt, shut_consumer_body, &s.f, NULL);
            ck_assert(prod_t[i] && cons_t[i]);
        }
    }
    while (atomic_load(&s.f.received) < n / 2) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    ck_assert_int_eq(weft_queue_shutdown(&s.f.q, immediate), 0);
    for (int i = 0; i < SIDE; i++) {
        if (i < 2) {
            tu_join_thread(prod[i].th);
            tu_join_thread(cons_th[i]);
        } else {
            tu_join_task(prod_t[i], 0);
            tu_join_task(cons_t[i], 0);
        }
    }
    weft_runtime_free(rt);
    size_t accepted = 0, rejected = 0, got = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned seen =
            atomic_load_explicit(&s.f.seen[i], memory_order_relaxed);
        accepted += s.status[i] == PUT_ACCEPTED;
        rejected += s.status[i] == PUT_REJECTED;
        got += seen;
        if (seen > 1 || (seen == 1 && s.status[i] != PUT_ACCEPTED) ||
            (!immediate && s.status[i] == PUT_ACCEPTED && seen != 1))
            ck_abort_msg("item %zu: put %u, got %u times", i,
                         (unsigned)s.status[i], seen);
    }
    fprintf(stderr,
            "queue_stress_shutdown (immediate %d): %zu items, %zu accepted, "
            "%zu rejected, %zu got, %.3f s\n",
            immediate, n, accepted, rejected, got, weft_now() - t0);
    ck_assert_uint_eq(got, atomic_load(&s.f.received));
    ck_assert_uint_le(got, accepted);
    ck_assert_uint_ge(got, n / 2);
    /* Each producer that did not finish stopped at its first failure. */
    size_t unfinished = 0;
    for (int i = 0; i < SIDE; i++)
        unfinished += prod[i].next < prod[i].end;
    ck_assert_uint_eq(rejected, unfinished);
    ck_assert_uint_eq(weft_queue_size(&s.f.q), 0);
    /* Got and done, or dropped: nothing is unfinished. */
    ck_assert_int_eq(weft_queue_join_timeout(&s.f.q, 0), 0);
    ck_assert_int_eq(weft_queue_task_done(&s.f.q), -EOVERFLOW);
    ck_assert_int_eq(weft_queue_destroy(&s.f.q), 0);
    free(s.f.seen);
    free(s.status);
}
END_TEST

static Suite *queue_suite(void)
{
    Suite *s = suite_create("queue");

    TCase *tc = tcase_create("order");
    tcase_add_test(tc, queue_fifo_gets_items_in_put_order);
    tcase_add_test(tc, queue_lifo_gets_the_last_item_put_first);
    tcase_add_test(tc, queue_priority_gets_the_smallest_item_by_compare_first);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("growth");
    tcase_add_test(tc, queue_unbounded_grows_past_its_first_sixteen_slots);
    tcase_add_test(tc, queue_fifo_order_survives_ring_wraparound_and_growth);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("nowait");
    tcase_add_test(tc, queue_get_nowait_on_empty_returns_eagain);
    tcase_add_test(tc,
                   queue_put_nowait_on_full_returns_eagain_and_adds_nothing);
    tcase_add_test(tc, queue_null_items_are_put_and_got_like_any_other);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("wait");
    tcase_add_test(tc, queue_get_from_a_task_waits_for_the_next_put);
    tcase_add_test(tc, queue_put_from_a_task_waits_for_room);
    tcase_add_test(tc, queue_plain_threads_block_in_get_and_put_until_served);
    /* 0: FIFO, 1: LIFO (waiters are FIFO whatever the order of items) */
    tcase_add_loop_test(tc, queue_waiting_getters_are_served_in_arrival_order,
                        0, 2);
    /* 0: FIFO, 1: LIFO, 2: PRIORITY */
    tcase_add_loop_test(tc, queue_waiting_putters_are_admitted_in_arrival_order,
                        0, 3);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("task_done_join");
    tcase_add_test(tc, queue_join_returns_once_every_put_item_is_done);
    tcase_add_test(tc, queue_join_with_nothing_unfinished_returns_at_once);
    tcase_add_test(tc,
                   queue_task_done_more_times_than_items_put_returns_eoverflow);
    tcase_add_test(tc, queue_join_timeout_expires_while_items_are_unfinished);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("shutdown");
    tcase_add_test(tc, queue_shutdown_fails_waiting_getters_with_eshutdown);
    tcase_add_test(
        tc, queue_shutdown_fails_waiting_putters_and_keeps_their_items_out);
    /* 0: FIFO, 1: PRIORITY */
    tcase_add_loop_test(
        tc, queue_shutdown_lets_remaining_items_be_got_then_fails_gets, 0, 2);
    tcase_add_test(tc,
                   queue_shutdown_immediate_drops_items_and_lets_join_return);
    tcase_add_test(
        tc, queue_shutdown_immediate_after_every_item_is_done_keeps_join_free);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("snapshots");
    tcase_add_test(tc, queue_size_empty_and_full_follow_the_contents);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("destroy");
    tcase_add_test(
        tc, queue_destroy_while_waited_on_returns_ebusy_and_keeps_the_queue);
    tcase_add_test(tc, queue_destroy_with_items_returns_enotempty);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad_input");
    tcase_add_test(tc, queue_bad_arguments_return_einval);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("out_of_memory");
    tcase_add_test(tc, queue_put_that_cannot_grow_the_buffer_returns_enomem);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("cancel_timeout");
    tcase_add_test(tc,
                   queue_cancelled_getter_returns_ecanceled_and_takes_nothing);
    tcase_add_test(tc,
                   queue_cancelled_putter_returns_ecanceled_and_puts_nothing);
    tcase_add_test(
        tc, queue_task_with_a_pending_cancel_fails_only_calls_that_would_wait);
    tcase_add_test(tc,
                   queue_waits_in_an_expired_timeout_scope_return_etimedout);
    tcase_add_test(tc, queue_timeout_forms_expire_in_tasks_and_threads);
    tcase_add_test(tc, queue_bounded_waits_are_served_before_their_bound);
    tcase_add_test(
        tc, queue_getter_cancelled_as_an_item_arrives_gets_it_or_leaves_it);
    tcase_add_test(
        tc, queue_putter_cancelled_as_room_appears_puts_or_keeps_its_item);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_add_test(tc,
                   queue_stress_thread_producers_and_cancelled_task_consumers);
    tcase_add_test(tc,
                   queue_stress_cancelled_task_producers_and_thread_consumers);
    tcase_add_test(tc,
                   queue_stress_tiny_timeouts_racing_deliver_each_item_once);
    /* 0: shutdown(false), 1: shutdown(true) */
    tcase_add_loop_test(
        tc, queue_stress_shutdown_midstream_loses_and_duplicates_nothing, 0, 2);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(queue_suite());
}
