/* Runtime lifecycle: create, run, free, and the current runtime.
 *
 * Shutdown: weft_runtime_free cancels every live task, waits until no task
 * of the runtime is alive (weft__runtime_alive), then stops the workers
 * and the timer thread. When the last task ends,
 * the worker that ran it finds no more work and parks; a parking worker
 * that sees rt->freeing bumps rt->exit_futex (worker.c, park). The freeing
 * thread does F1 (set freeing), F2 (a seq fence), F3 (read exit_futex,
 * then count); the worker does P1 (count the completion), P2 (the seq
 * fence in park), P3 (read freeing). Either F3 sees the completion or P3
 * sees freeing and bumps the futex after F3 read it, so the wait returns.
 * Nothing is added to the path of a finishing task. The wait still wakes
 * every WEFT__SWEEP_NS, but only to cancel tasks spawned since the last
 * sweep (which do not bump the futex): the hand-shake alone ends it.
 *
 * Threads outside the workers: a producer (a spawn or wake from a plain
 * thread or another runtime) is done with rt before its task can run
 * (worker.c, inject_from_outside), so before the free can see it finish.
 * Task handles may outlive the runtime: the registry, the only part of rt
 * a handle uses after its task finished, is freed with the last handle
 * (task.c, weft__registry_orphan), so a join, detach or rename on any
 * thread is safe before, during and after weft_runtime_free.
 */
#include <errno.h>
#include <netdb.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "io/reactor.h"
#include "sched/alloc.h"
#include "sched/internal.h"

/* How often weft_runtime_free cancels tasks spawned since its last look. */
#define WEFT__SWEEP_NS (10 * 1000 * 1000)

uint64_t weft__alloc_countdown;

void weft__alloc_fail_after(long n)
{
    weft__store_rlx_u64(&weft__alloc_countdown, n > 0 ? (uint64_t)n : 0);
}

bool weft__alloc_should_fail_slow(void)
{
    for (;;) {
        uint64_t left = weft__load_rlx_u64(&weft__alloc_countdown);
        if (left == 0)
            return false;
        if (weft__cas_seq_u64(&weft__alloc_countdown, left, left - 1))
            return left == 1;
    }
}

/* Stop the first `launched` workers and free everything rt holds, but the
 * registry (and rt itself) while task handles remain: the last
 * weft__task_free frees those (task.c). */
static void runtime_release(weft_runtime *rt, unsigned launched)
{
    /* The observers first: they read the workers. */
    weft__dump_unregister(rt);
    weft__monitor_stop(rt);
    weft__worker_stop_all(rt, launched);
    if (rt->timers_started)
        weft__timers_stop(rt);
    if (rt->reactor)
        weft__reactor_free(rt->reactor);
    /* Every thread that records events has stopped. */
    weft__trace_finish(rt);
    for (unsigned i = 0; i < rt->nworkers; i++)
        weft__worker_free(rt->workers[i]);
    weft__stack_pool_destroy(&rt->stacks);
    weft__inject_destroy(&rt->inject);
    pthread_mutex_destroy(&rt->idle_lock);
    weft__free(rt->idle);
    weft__free(rt->workers);
    rt->workers = NULL;
    if (weft__registry_orphan(rt))
        weft__registry_free(rt);
}

/* One worker per CPU this thread may run on (as Go's GOMAXPROCS), so that
 * a process limited by taskset or a cgroup cpuset does not start more
 * workers than it has CPUs. */
static unsigned default_workers(void)
{
    cpu_set_t set;
    long n = 0;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0)
        return 1;
    return n < WEFT_MAX_WORKERS ? (unsigned)n : WEFT_MAX_WORKERS;
}

weft_runtime *weft_runtime_new(const weft_config *cfg)
{
    weft_config c = cfg ? *cfg : (weft_config){0};
    if (c.workers == 0)
        c.workers = default_workers();
    if (c.stack_size == 0)
        c.stack_size = WEFT_STACK_DEFAULT;
    if (c.workers > WEFT_MAX_WORKERS || c.stack_size < WEFT_STACK_MIN ||
        c.stack_size > WEFT_STACK_MAX) {
        errno = EINVAL;
        return NULL;
    }
    if (c.stack_cache_bytes == 0)
        c.stack_cache_bytes = 64 * c.stack_size;

    weft_runtime *rt = weft__malloc_aligned(WEFT__CACHELINE, sizeof(*rt));
    if (!rt)
        goto err_nomem;
    memset(rt, 0, sizeof(*rt));
    rt->nworkers = c.workers;
    weft__stats_configure(rt); /* before the workers copy its settings */
    rt->workers = weft__calloc(c.workers, sizeof(*rt->workers));
    rt->idle = weft__calloc(c.workers, sizeof(*rt->idle));
    if (!rt->workers || !rt->idle)
        goto err_free;
    int err = weft__registry_init(rt);
    if (err < 0)
        goto err_free;
    err = weft__stack_pool_init(&rt->stacks, c.stack_size, c.stack_cache_bytes);
    if (err < 0)
        goto err_free;
    weft__inject_init(&rt->inject);
    pthread_mutex_init(&rt->idle_lock, NULL);
    /* Before any thread that records events starts (the reactor thread,
     * the workers), as they read rt->trace without a lock. */
    if ((err = weft__trace_new(rt)) < 0)
        fprintf(stderr, "weft: WEFT_TRACE: %s\n", strerror(-err));
    if ((err = weft__reactor_new(&rt->nr_parked, &rt->reactor)) < 0) {
        runtime_release(rt, 0);
        errno = -err;
        return NULL;
    }
    if (weft__timers_start(rt) < 0) {
        runtime_release(rt, 0);
        errno = EAGAIN;
        return NULL;
    }
    rt->timers_started = true;
    for (unsigned i = 0; i < c.workers; i++) {
        if ((err = weft__worker_new(rt, i)) < 0) {
            runtime_release(rt, 0);
            errno = ENOMEM;
            return NULL;
        }
    }
    for (unsigned i = 0; i < c.workers; i++) {
        if ((err = weft__worker_launch(rt->workers[i])) < 0) {
            runtime_release(rt, i);
            errno = EAGAIN;
            return NULL;
        }
    }
    /* Observability asked for in the environment. A runtime that cannot
     * have it still runs: say so and go on. */
    if ((err = weft__monitor_start(rt)) < 0 ||
        (err = weft__dump_register(rt)) < 0)
        fprintf(stderr, "weft: WEFT_SCHEDTRACE or WEFT_DUMP_ON_SIGNAL: %s\n",
                strerror(-err));
    return rt;
err_free:
    weft__free(rt->idle);
    weft__free(rt->workers);
    weft__registry_free(rt); /* frees rt */
err_nomem:
    errno = ENOMEM;
    return NULL;
}

void weft_runtime_free(weft_runtime *rt)
{
    if (!rt)
        return;
    struct weft__worker *w = weft__tls_worker;
    if (w && w->rt == rt)
        weft__panic("weft_runtime_free: called from a task of the runtime "
                    "being freed, which would wait for itself forever");
    weft__xchg_seq_u32(&rt->freeing, 1);
    weft__fence_seq(); /* F2: pairs with P2, the fence in park */
    /* asyncio.run's shutdown: cancel what is left and wait for it. Tasks
     * spawned meanwhile (by cleanup code) are cancelled by the next sweep;
     * a task that withdraws its cancellation is cancelled again. */
    weft__runtime_cancel_all(rt);
    for (;;) {
        uint32_t seq = weft__load_acq_u32(&rt->exit_futex);
        if (weft__runtime_alive(rt) == 0)
            break;
        weft__futex_wait_until(&rt->exit_futex, seq,
                               weft__now_ns() + WEFT__SWEEP_NS);
        weft__runtime_cancel_all(rt);
    }
    runtime_release(rt, rt->nworkers);
}

int weft_runtime_run(weft_runtime *rt, weft_fn fn, void *arg, void **result)
{
    if (!rt || !fn)
        return -EINVAL;
    weft_task *t = weft_spawn_ex(rt, fn, arg, NULL);
    if (!t)
        return -errno;
    return weft_join(t, result);
}

int weft_run(weft_fn main, void *arg, void **result)
{
    if (!main)
        return -EINVAL;
    if (weft__current())
        return -EPERM;
    weft_runtime *rt = weft_runtime_new(NULL);
    if (!rt)
        return -errno;
    int rc = weft_runtime_run(rt, main, arg, result);
    weft_runtime_free(rt);
    return rc;
}

weft_runtime *weft_runtime_current(void)
{
    struct weft__worker *w = weft__tls_worker;
    return w && w->current ? w->rt : NULL;
}

struct weft__reactor *weft__runtime_reactor(weft_runtime *rt)
{
    return rt->reactor;
}

unsigned weft_runtime_workers(const weft_runtime *rt)
{
    return rt ? rt->nworkers : 0;
}

const char *weft_strerror(int err)
{
    if (err == 0)
        return "success";
    /* Name resolution (weft.h, WEFT_EAI): glibc's EAI codes run from -1
     * to -105, and gai_strerror returns constant strings. */
    if (err < -WEFT_EAI_BASE && err >= -WEFT_EAI_BASE - 128)
        return gai_strerror(err + WEFT_EAI_BASE);
    if (err < 0)
        err = -err;
    /* glibc's strerror is thread-safe for known codes (it returns constant
     * strings) since 2.32; Debian 12 has 2.36. */
    return strerror(err);
}
