/* switch: the raw context switch, nothing else. Two contexts ping-pong
 * n round trips (2n switches); ns_per_op is per switch.
 *
 *   weft       weft__ctx_switch (sched/context_x86_64.S)
 *   boost      Boost.Context's jump_fcontext, the fastest hand-written
 *              switch we have a figure for (DESIGN.md section 3); built
 *              only where CMake found libboost_context
 *   ucontext   glibc's swapcontext, which also saves the signal mask with
 *              a syscall: the slow reference
 *
 * The other context counts its turns, and the count is checked.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include "bench/bench.h"
#include "sched/context.h"

#define STACK_BYTES (64 * 1024)

/* The contexts' shared state. Only one context runs at a time. */
static uint64_t turns;

/* ---------------------------------------------------------------------------
 * weft */

static void *weft_main_sp, *weft_other_sp;

static void weft_other(void *arg)
{
    (void)arg;
    for (;;) {
        turns++;
        weft__ctx_switch(&weft_other_sp, weft_main_sp);
    }
}

static void run_weft(uint64_t n, void *stack)
{
    weft_other_sp =
        weft__ctx_make((char *)stack + STACK_BYTES, weft_other, NULL);
    for (uint64_t i = 0; i < n; i++)
        weft__ctx_switch(&weft_main_sp, weft_other_sp);
}

/* ---------------------------------------------------------------------------
 * Boost.Context, declared as in boost/context/detail/fcontext.hpp (C ABI
 * symbols of libboost_context). */

#ifdef WEFT_BENCH_HAVE_BOOST
typedef void *fcontext_t;
typedef struct {
    fcontext_t fctx;
    void *data;
} transfer_t;
transfer_t jump_fcontext(fcontext_t const to, void *vp);
fcontext_t make_fcontext(void *sp, size_t size, void (*fn)(transfer_t));

static void boost_other(transfer_t t)
{
    for (;;) {
        turns++;
        t = jump_fcontext(t.fctx, NULL);
    }
}

static void run_boost(uint64_t n, void *stack)
{
    fcontext_t other =
        make_fcontext((char *)stack + STACK_BYTES, STACK_BYTES, boost_other);
    for (uint64_t i = 0; i < n; i++)
        other = jump_fcontext(other, NULL).fctx;
}
#endif

/* ---------------------------------------------------------------------------
 * ucontext */

static ucontext_t uc_main, uc_other;

static void uc_other_fn(void)
{
    for (;;) {
        turns++;
        swapcontext(&uc_other, &uc_main);
    }
}

static int run_ucontext(uint64_t n, void *stack)
{
    if (getcontext(&uc_other) < 0)
        return -errno;
    uc_other.uc_stack.ss_sp = stack;
    uc_other.uc_stack.ss_size = STACK_BYTES;
    uc_other.uc_link = NULL;
    makecontext(&uc_other, uc_other_fn, 0);
    for (uint64_t i = 0; i < n; i++)
        if (swapcontext(&uc_main, &uc_other) < 0)
            return -errno;
    return 0;
}

/* ---------------------------------------------------------------------------
 * The workload */

static int switch_run(const struct bench_cell *c, struct bench_result *res)
{
    void *stack = aligned_alloc(64, STACK_BYTES);
    if (!stack)
        return -ENOMEM;
    turns = 0;
    int err = 0;
    int64_t t0 = bench_now_ns();
    if (strcmp(c->mode, "weft") == 0)
        run_weft(c->n, stack);
#ifdef WEFT_BENCH_HAVE_BOOST
    else if (strcmp(c->mode, "boost") == 0)
        run_boost(c->n, stack);
#endif
    else if (strcmp(c->mode, "ucontext") == 0)
        err = run_ucontext(c->n, stack);
    else
        err = -ENOTSUP;
    int64_t ns = bench_now_ns() - t0;
    /* The other context never returns; its stack is simply dropped. */
    free(stack);
    if (err < 0)
        return err;
    res->ns_per_op = (double)ns / (2.0 * (double)c->n);
    res->ok = turns == c->n;
    return 0;
}

static uint64_t switch_default_n(const struct bench_cell *c, bool full)
{
    if (strcmp(c->mode, "ucontext") == 0)
        return full ? 10000000 : 2000000;
    return full ? 200000000 : 20000000;
}

static void switch_plan(struct bench_plan *plan)
{
    const char *group = "ping-pong between two contexts";
    bool full = bench_plan_full(plan);
    struct bench_cell c = {.mode = "weft"};
    bench_plan_add(plan, group, "weft", 1, switch_default_n(&c, full), 0, 0,
                   NULL);
#ifdef WEFT_BENCH_HAVE_BOOST
    bench_plan_add(plan, group, "boost", 1, switch_default_n(&c, full), 0, 0,
                   "Boost.Context jump_fcontext");
#else
    bench_plan_note(plan, group,
                    "boost: skipped, CMake found no libboost_context "
                    "(Debian: libboost-context-dev)");
#endif
    c.mode = "ucontext";
    bench_plan_add(plan, group, "ucontext", 1, switch_default_n(&c, full), 0, 0,
                   "swapcontext: a sigprocmask syscall per switch");
    bench_plan_note(plan, group,
                    "a single-threaded micro-benchmark: one row per "
                    "implementation, workers=1");
}

const struct bench_workload bench_switch = {
    .name = "switch",
    .op = "ns per switch",
    .run = switch_run,
    .default_n = switch_default_n,
    .plan = switch_plan,
};
