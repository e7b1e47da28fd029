/* The Chase–Lev deque (sched/deque.h): order, bounds, wrap-around, and an
 * owner racing four thieves.
 *
 * Items are pointers into an array, so an item names its index and the
 * stress test can count how many times each one was taken.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "sched/alloc.h"
#include "sched/deque.h"
#include "testutil.h"

/* Items 0..N-1 of the single-threaded tests. */
static char items[64];
#define ITEM(i) ((void *)&items[(i)])

static struct weft__deque make(size_t cap)
{
    struct weft__deque d;
    int rc = weft__deque_init(&d, cap);
    ck_assert_int_eq(rc, 0);
    return d;
}

/* ------------------------------------------------------------------------
 * Order: the owner is LIFO, thieves are FIFO. */

START_TEST(pop_returns_items_newest_first)
{
    struct weft__deque d = make(8);
    for (int i = 0; i < 8; i++)
        ck_assert(weft__deque_push(&d, ITEM(i)));
    ck_assert_uint_eq(weft__deque_len(&d), 8);
    for (int i = 7; i >= 0; i--)
        ck_assert_ptr_eq(weft__deque_pop(&d), ITEM(i));
    ck_assert_ptr_null(weft__deque_pop(&d));
    weft__deque_destroy(&d);
}
END_TEST

START_TEST(steal_returns_items_oldest_first)
{
    struct weft__deque d = make(8);
    for (int i = 0; i < 8; i++)
        ck_assert(weft__deque_push(&d, ITEM(i)));
    for (int i = 0; i < 8; i++)
        ck_assert_ptr_eq(weft__deque_steal(&d), ITEM(i));
    ck_assert_ptr_eq(weft__deque_steal(&d), WEFT__STEAL_EMPTY);
    weft__deque_destroy(&d);
}
END_TEST

START_TEST(pop_and_steal_take_opposite_ends)
{
    struct weft__deque d = make(8);
    for (int i = 0; i < 5; i++)
        ck_assert(weft__deque_push(&d, ITEM(i)));
    ck_assert_ptr_eq(weft__deque_steal(&d), ITEM(0));
    ck_assert_ptr_eq(weft__deque_pop(&d), ITEM(4));
    ck_assert_ptr_eq(weft__deque_steal(&d), ITEM(1));
    ck_assert_ptr_eq(weft__deque_pop(&d), ITEM(3));
    /* The last item: pop and steal meet on it; pop wins here. */
    ck_assert_ptr_eq(weft__deque_pop(&d), ITEM(2));
    ck_assert_ptr_null(weft__deque_pop(&d));
    ck_assert_ptr_eq(weft__deque_steal(&d), WEFT__STEAL_EMPTY);
    ck_assert_uint_eq(weft__deque_len(&d), 0);
    weft__deque_destroy(&d);
}
END_TEST

/* ------------------------------------------------------------------------
 * Bounds: full and empty. */

START_TEST(push_on_full_returns_false_and_changes_nothing)
{
    struct weft__deque d = make(4);
    for (int i = 0; i < 4; i++)
        ck_assert(weft__deque_push(&d, ITEM(i)));
    ck_assert(!weft__deque_push(&d, ITEM(9)));
    ck_assert(!weft__deque_push(&d, ITEM(10)));
    ck_assert_uint_eq(weft__deque_len(&d), 4);
    /* Both ends are as before the failed pushes. */
    ck_assert_ptr_eq(weft__deque_steal(&d), ITEM(0));
    ck_assert_ptr_eq(weft__deque_pop(&d), ITEM(3));
    ck_assert_ptr_eq(weft__deque_pop(&d), ITEM(2));
    ck_assert_ptr_eq(weft__deque_pop(&d), ITEM(1));
    ck_assert_ptr_null(weft__deque_pop(&d));
    /* Room again after a steal freed a slot at the top. */
    for (int i = 0; i < 4; i++)
        ck_assert(weft__deque_push(&d, ITEM(i)));
    ck_assert_ptr_eq(weft__deque_steal(&d), ITEM(0));
    ck_assert(weft__deque_push(&d, ITEM(4)));
    ck_assert(!weft__deque_push(&d, ITEM(5)));
    ck_assert_ptr_eq(weft__deque_pop(&d), ITEM(4));
    weft__deque_destroy(&d);
}
END_TEST

START_TEST(pop_and_steal_on_empty_return_nothing)
{
    struct weft__deque d = make(4);
    ck_assert_uint_eq(weft__deque_len(&d), 0);
    ck_assert_ptr_null(weft__deque_pop(&d));
    ck_assert_ptr_eq(weft__deque_steal(&d), WEFT__STEAL_EMPTY);
    /* Popping an empty deque twice must not move bottom below top. */
    ck_assert_ptr_null(weft__deque_pop(&d));
    ck_assert_uint_eq(weft__deque_len(&d), 0);
    ck_assert(weft__deque_push(&d, ITEM(1)));
    ck_assert_uint_eq(weft__deque_len(&d), 1);
    ck_assert_ptr_eq(weft__deque_steal(&d), ITEM(1));
    ck_assert_ptr_null(weft__deque_pop(&d));
    ck_assert_ptr_eq(weft__deque_steal(&d), WEFT__STEAL_EMPTY);
    ck_assert(weft__deque_push(&d, ITEM(2)));
    ck_assert_ptr_eq(weft__deque_pop(&d), ITEM(2));
    ck_assert_ptr_eq(weft__deque_steal(&d), WEFT__STEAL_EMPTY);
    ck_assert_uint_eq(weft__deque_len(&d), 0);
    weft__deque_destroy(&d);
}
END_TEST

/* ------------------------------------------------------------------------
 * Growth: a full deque doubles and keeps every item in place and order. */

START_TEST(grow_keeps_every_item_and_doubles_the_room)
{
    struct weft__deque d = make(4);
    for (int i = 0; i < 4; i++)
        ck_assert(weft__deque_push(&d, ITEM(i)));
    ck_assert(!weft__deque_push(&d, ITEM(4)));
    ck_assert_int_eq(weft__deque_grow(&d), 0);
    ck_assert_uint_eq(weft__deque_len(&d), 4);
    for (int i = 4; i < 8; i++)
        ck_assert(weft__deque_push(&d, ITEM(i)));
    ck_assert(!weft__deque_push(&d, ITEM(8)));
    ck_assert_int_eq(weft__deque_grow(&d), 0);
    for (int i = 8; i < 16; i++)
        ck_assert(weft__deque_push(&d, ITEM(i)));
    ck_assert(!weft__deque_push(&d, ITEM(16)));
    ck_assert_uint_eq(weft__deque_len(&d), 16);
    /* Oldest at the top, newest at the bottom, across both growths. */
    for (int i = 0; i < 8; i++)
        ck_assert_ptr_eq(weft__deque_steal(&d), ITEM(i));
    for (int i = 15; i >= 8; i--)
        ck_assert_ptr_eq(weft__deque_pop(&d), ITEM(i));
    ck_assert_ptr_null(weft__deque_pop(&d));
    ck_assert_ptr_eq(weft__deque_steal(&d), WEFT__STEAL_EMPTY);
    weft__deque_destroy(&d);
}
END_TEST

START_TEST(grow_after_wrap_around_keeps_order)
{
    /* Top and bottom past the end of the buffer: the copy must move each
     * item by its index, not by its slot. */
    struct weft__deque d = make(4);
    for (int i = 0; i < 4; i++)
        ck_assert(weft__deque_push(&d, ITEM(i)));
    for (int i = 0; i < 3; i++)
        ck_assert_ptr_eq(weft__deque_steal(&d), ITEM(i));
    for (int i = 4; i < 7; i++) /* slots 0..2 again */
        ck_assert(weft__deque_push(&d, ITEM(i)));
    ck_assert(!weft__deque_push(&d, ITEM(7)));
    ck_assert_int_eq(weft__deque_grow(&d), 0);
    for (int i = 7; i < 11; i++)
        ck_assert(weft__deque_push(&d, ITEM(i)));
    ck_assert(!weft__deque_push(&d, ITEM(11)));
    for (int i = 3; i < 7; i++)
        ck_assert_ptr_eq(weft__deque_steal(&d), ITEM(i));
    for (int i = 10; i >= 7; i--)
        ck_assert_ptr_eq(weft__deque_pop(&d), ITEM(i));
    ck_assert_uint_eq(weft__deque_len(&d), 0);
    weft__deque_destroy(&d);
}
END_TEST

START_TEST(grow_out_of_memory_fails_and_changes_nothing)
{
    struct weft__deque d = make(4);
    for (int i = 0; i < 4; i++)
        ck_assert(weft__deque_push(&d, ITEM(i)));
    weft__alloc_fail_after(1);
    int rc = weft__deque_grow(&d);
    weft__alloc_fail_after(0);
    ck_assert_int_eq(rc, -ENOMEM);
    ck_assert_uint_eq(weft__deque_len(&d), 4);
    ck_assert(!weft__deque_push(&d, ITEM(4)));
    ck_assert_ptr_eq(weft__deque_steal(&d), ITEM(0));
    for (int i = 3; i >= 1; i--)
        ck_assert_ptr_eq(weft__deque_pop(&d), ITEM(i));
    ck_assert_ptr_null(weft__deque_pop(&d));
    /* And it grows once memory is back. */
    ck_assert_int_eq(weft__deque_grow(&d), 0);
    weft__deque_destroy(&d);
}
END_TEST

START_TEST(init_rejects_a_capacity_not_a_power_of_two)
{
    struct weft__deque d;
    ck_assert_int_eq(weft__deque_init(&d, 0), -EINVAL);
    ck_assert_int_eq(weft__deque_init(&d, 3), -EINVAL);
    ck_assert_int_eq(weft__deque_init(&d, 100), -EINVAL);
    weft__alloc_fail_after(1);
    int rc = weft__deque_init(&d, 4);
    weft__alloc_fail_after(0);
    ck_assert_int_eq(rc, -ENOMEM);
    ck_assert_int_eq(weft__deque_init(&d, 1), 0);
    ck_assert(weft__deque_push(&d, ITEM(0)));
    ck_assert(!weft__deque_push(&d, ITEM(1)));
    ck_assert_ptr_eq(weft__deque_pop(&d), ITEM(0));
    weft__deque_destroy(&d);
}
END_TEST

/* ------------------------------------------------------------------------
 * Wrap-around: random operations on a capacity-4 deque, checked against a
 * plain ring model; the indices wrap the buffer tens of thousands of
 * times. */

START_TEST(wraps_around_small_capacity_many_times)
{
    enum { CAP = 4, OPS = 200000 };
    uint64_t rng = tu_seed("wraps_around_small_capacity_many_times");
    struct weft__deque d = make(CAP);
    int model[CAP];
    size_t head = 0, tail = 0; /* model holds items [head, tail) */
    int next = 0;
    unsigned long pushes = 0;
    for (int op = 0; op < OPS; op++) {
        uint64_t r = tu_rand(&rng) % 8;
        size_t len = tail - head;
        TU_ASSERT_INT_EQ(weft__deque_len(&d), len);
        if (r < 4) { /* push, on full or not */
            bool ok = weft__deque_push(&d, ITEM(next));
            TU_ASSERT_INT_EQ(ok, len < CAP);
            if (ok) {
                model[tail++ % CAP] = next;
                pushes++;
            }
            next = (next + 1) % 64;
        } else if (r < 6) { /* pop: newest */
            void *got = weft__deque_pop(&d);
            if (len == 0) {
                TU_ASSERT(got == NULL);
            } else {
                TU_ASSERT(got == ITEM(model[--tail % CAP]));
            }
        } else { /* steal: oldest */
            void *got = weft__deque_steal(&d);
            if (len == 0) {
                TU_ASSERT(got == WEFT__STEAL_EMPTY);
            } else {
                TU_ASSERT(got == ITEM(model[head++ % CAP]));
            }
        }
    }
    /* Tens of thousands of trips round a 4-slot buffer. */
    ck_assert_uint_gt(pushes / CAP, 10000);
    weft__deque_destroy(&d);
}
END_TEST

START_TEST(fifo_through_small_capacity_keeps_order)
{
    /* Fill and drain by stealing, over and over: the top index runs far
     * past the capacity and every item still comes out in order. */
    struct weft__deque d = make(2);
    for (int round = 0; round < 100000; round++) {
        TU_ASSERT(weft__deque_push(&d, ITEM(round % 64)));
        TU_ASSERT(weft__deque_push(&d, ITEM((round + 1) % 64)));
        TU_ASSERT(!weft__deque_push(&d, ITEM(0)));
        TU_ASSERT(weft__deque_steal(&d) == ITEM(round % 64));
        TU_ASSERT(weft__deque_pop(&d) == ITEM((round + 1) % 64));
    }
    ck_assert_uint_eq(weft__deque_len(&d), 0);
    weft__deque_destroy(&d);
}
END_TEST

/* ------------------------------------------------------------------------
 * Stress: one owner pushing and popping, four thieves stealing. Every item
 * must be taken exactly once. */

enum { THIEVES = 4 };

struct stress {
    struct weft__deque d;
    unsigned char *seen; /* per item: times taken; atomic increments */
    void *base;          /* item i is base + i */
    size_t n;
    atomic_int done;            /* the owner has pushed and drained all */
    atomic_ulong stolen;        /* summed by the thieves as they leave */
    atomic_ulong steal_retries; /* lost races: proof that thieves raced */
};

static void take(struct stress *s, void *item)
{
    uintptr_t i = (uintptr_t)((char *)item - (char *)s->base);
    if (i >= s->n)
        ck_abort_msg("item %p is not one of ours", item);
    __atomic_fetch_add(&s->seen[i], 1, __ATOMIC_RELAXED);
}

static void *thief(void *arg)
{
    struct stress *s = arg;
    unsigned long stolen = 0, retries = 0;
    for (;;) {
        void *item = weft__deque_steal(&s->d);
        if (item == WEFT__STEAL_RETRY) {
            retries++;
            continue;
        }
        if (item != WEFT__STEAL_EMPTY) {
            take(s, item);
            stolen++;
            continue;
        }
        /* Empty, and the owner pushes no more: every item is taken. */
        if (atomic_load_explicit(&s->done, memory_order_acquire))
            break;
    }
    atomic_fetch_add(&s->stolen, stolen);
    atomic_fetch_add(&s->steal_retries, retries);
    return NULL;
}

START_TEST(owner_and_four_thieves_take_every_item_exactly_once)
{
    struct stress s = {.n = TU_SCALE(10000000u, 2000000u, 2000000u)};
    uint64_t rng =
        tu_seed("owner_and_four_thieves_take_every_item_exactly_once");
    s.d = make(64);
    s.seen = calloc(s.n, 1);
    ck_assert_ptr_nonnull(s.seen);
    /* Addresses only, never dereferenced: the item pointers are the seen
     * array's slots, which are distinct, non-NULL and not STEAL_RETRY. */
    s.base = s.seen;

    pthread_t t[THIEVES];
    for (int i = 0; i < THIEVES; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, thief, &s), 0);

    unsigned long popped = 0, full = 0;
    for (size_t i = 0; i < s.n; i++) {
        void *item = (char *)s.base + i;
        while (!weft__deque_push(&s.d, item)) {
            /* Full: make room as a worker would, by running one. */
            full++;
            void *mine = weft__deque_pop(&s.d);
            if (mine) {
                take(&s, mine);
                popped++;
            }
        }
        /* Two phases alternate every 64Ki items. In the first the owner
         * pops about as often as it pushes, so the deque stays short and
         * pops race steals for the last items; in the second it pops less
         * than it pushes, so the deque fills and the full path runs. */
        uint64_t r = tu_rand(&rng);
        int pops;
        if ((i >> 16) & 1)
            pops = (r & 7) == 0 ? 1 + (int)((r >> 8) & 15) : 0;
        else
            pops = (r & 3) == 0 ? 1 + (int)((r >> 8) & 7) : 0;
        for (int k = 0; k < pops; k++) {
            void *mine = weft__deque_pop(&s.d);
            if (!mine)
                break;
            take(&s, mine);
            popped++;
        }
    }
    void *mine;
    while ((mine = weft__deque_pop(&s.d)) != NULL) {
        take(&s, mine);
        popped++;
    }
    atomic_store_explicit(&s.done, 1, memory_order_release);
    for (int i = 0; i < THIEVES; i++)
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);

    unsigned long stolen = atomic_load(&s.stolen);
    fprintf(stderr,
            "deque stress: %zu items, %lu popped, %lu stolen, %lu steal "
            "retries, %lu pushes on full\n",
            s.n, popped, stolen, atomic_load(&s.steal_retries), full);
    ck_assert_uint_eq(popped + stolen, s.n);
    ck_assert_uint_gt(stolen, 0);
    ck_assert_uint_gt(popped, 0);
    size_t lost = 0, twice = 0, first_bad = s.n;
    for (size_t i = 0; i < s.n; i++) {
        if (s.seen[i] == 1)
            continue;
        if (first_bad == s.n)
            first_bad = i;
        if (s.seen[i] == 0)
            lost++;
        else
            twice++;
    }
    ck_assert_msg(lost == 0 && twice == 0,
                  "%zu items lost, %zu taken more than once (first: item %zu)",
                  lost, twice, first_bad);
    ck_assert_ptr_eq(weft__deque_steal(&s.d), WEFT__STEAL_EMPTY);
    weft__deque_destroy(&s.d);
    free(s.seen);
}
END_TEST

/* Growth under fire: rounds of a fresh deque of capacity 2 that the owner
 * grows whenever it is full, while the four thieves steal, so that thieves
 * read arrays that are being replaced. Between rounds the thieves wait, so
 * that the owner can destroy the deque and make a new one. */
struct grow_stress {
    struct weft__deque d;
    unsigned char *seen;
    size_t n;
    atomic_uint round;   /* current round; the owner publishes a new deque */
    atomic_uint drained; /* last round the owner has pushed and drained */
    atomic_uint parked;  /* thieves done with the current round */
    atomic_int stop;
    atomic_ulong stolen;
};

static void grow_take(struct grow_stress *s, void *item)
{
    uintptr_t i = (uintptr_t)((unsigned char *)item - s->seen);
    if (i >= s->n)
        ck_abort_msg("item %p is not one of ours", item);
    __atomic_fetch_add(&s->seen[i], 1, __ATOMIC_RELAXED);
}

static void *grow_thief(void *arg)
{
    struct grow_stress *s = arg;
    unsigned seen_round = 0;
    unsigned long stolen = 0;
    for (;;) {
        unsigned r;
        while ((r = atomic_load(&s->round)) == seen_round &&
               !atomic_load(&s->stop))
            sched_yield();
        if (atomic_load(&s->stop))
            break;
        seen_round = r;
        for (;;) {
            void *item = weft__deque_steal(&s->d);
            if (item == WEFT__STEAL_RETRY)
                continue;
            if (item != WEFT__STEAL_EMPTY) {
                grow_take(s, item);
                stolen++;
            } else if (atomic_load(&s->drained) == r) {
                break;
            }
        }
        atomic_fetch_add(&s->parked, 1);
    }
    atomic_fetch_add(&s->stolen, stolen);
    return NULL;
}

START_TEST(grow_while_four_thieves_steal_loses_nothing)
{
    enum { PER_ROUND = 20000 };
    struct grow_stress s = {.n = TU_SCALE(2000000u, 1000000u, 400000u)};
    uint64_t rng = tu_seed("grow_while_four_thieves_steal_loses_nothing");
    s.seen = calloc(s.n, 1);
    ck_assert_ptr_nonnull(s.seen);
    pthread_t t[THIEVES];
    for (int i = 0; i < THIEVES; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, grow_thief, &s), 0);

    unsigned long popped = 0, grows = 0;
    unsigned rounds = 0;
    for (size_t base = 0; base < s.n; base += PER_ROUND) {
        ck_assert_int_eq(weft__deque_init(&s.d, 2), 0);
        atomic_store(&s.parked, 0);
        atomic_store(&s.round, ++rounds); /* publishes s.d */
        size_t end = base + PER_ROUND < s.n ? base + PER_ROUND : s.n;
        for (size_t i = base; i < end; i++) {
            while (!weft__deque_push(&s.d, s.seen + i)) {
                TU_ASSERT_INT_EQ(weft__deque_grow(&s.d), 0);
                grows++;
            }
            uint64_t r = tu_rand(&rng);
            if ((i & 4095) == 0) /* let the thieves in while it grows */
                sched_yield();
            if ((r & 15) == 0) { /* now and then, pop a few */
                for (int k = 0; k < (int)((r >> 8) & 3); k++) {
                    void *mine = weft__deque_pop(&s.d);
                    if (!mine)
                        break;
                    grow_take(&s, mine);
                    popped++;
                }
            }
        }
        void *mine;
        while ((mine = weft__deque_pop(&s.d)) != NULL) {
            grow_take(&s, mine);
            popped++;
        }
        atomic_store(&s.drained, rounds);
        while (atomic_load(&s.parked) < THIEVES)
            sched_yield();
        weft__deque_destroy(&s.d);
    }
    atomic_store(&s.stop, 1);
    for (int i = 0; i < THIEVES; i++)
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);

    unsigned long stolen = atomic_load(&s.stolen);
    fprintf(stderr,
            "deque growth stress: %zu items in %u rounds, %lu grows, %lu "
            "popped, %lu stolen\n",
            s.n, rounds, grows, popped, stolen);
    ck_assert_uint_eq(popped + stolen, s.n);
    ck_assert_uint_gt(stolen, 0);
    ck_assert_uint_ge(grows, rounds);
    size_t lost = 0, twice = 0, first_bad = s.n;
    for (size_t i = 0; i < s.n; i++) {
        if (s.seen[i] == 1)
            continue;
        if (first_bad == s.n)
            first_bad = i;
        if (s.seen[i] == 0)
            lost++;
        else
            twice++;
    }
    ck_assert_msg(lost == 0 && twice == 0,
                  "%zu items lost, %zu taken more than once (first: item %zu)",
                  lost, twice, first_bad);
    free(s.seen);
}
END_TEST

static Suite *deque_suite(void)
{
    Suite *s = suite_create("deque");

    TCase *tc = tcase_create("order");
    tcase_add_test(tc, pop_returns_items_newest_first);
    tcase_add_test(tc, steal_returns_items_oldest_first);
    tcase_add_test(tc, pop_and_steal_take_opposite_ends);
    suite_add_tcase(s, tc);

    tc = tcase_create("bounds");
    tcase_add_test(tc, push_on_full_returns_false_and_changes_nothing);
    tcase_add_test(tc, pop_and_steal_on_empty_return_nothing);
    suite_add_tcase(s, tc);

    tc = tcase_create("grow");
    tcase_add_test(tc, grow_keeps_every_item_and_doubles_the_room);
    tcase_add_test(tc, grow_after_wrap_around_keeps_order);
    tcase_add_test(tc, grow_out_of_memory_fails_and_changes_nothing);
    tcase_add_test(tc, init_rejects_a_capacity_not_a_power_of_two);
    suite_add_tcase(s, tc);

    tc = tcase_create("wrap_around");
    tcase_add_test(tc, wraps_around_small_capacity_many_times);
    tcase_add_test(tc, fifo_through_small_capacity_keeps_order);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_add_test(tc, owner_and_four_thieves_take_every_item_exactly_once);
    tcase_add_test(tc, grow_while_four_thieves_steal_loses_nothing);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(deque_suite());
}
