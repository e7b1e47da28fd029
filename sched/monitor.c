/* The schedtrace thread: WEFT_SCHEDTRACE=<ms> prints one line per period
 * on stderr, in the spirit of Go's GODEBUG=schedtrace=<ms>:
 *
 *   weft schedtrace 1002ms: workers=2 running=1 spinning=0 parked=1
 *       inject=0 deques=[12 0] alive=13 steals=4 parks=1 delay_p99=12us
 *
 * (one line): time since weft_runtime_new; the workers running (neither
 * parked nor looking for work: running a task or between two), spinning
 * (looking for work to steal) and parked; the injection queue's length and
 * each worker's deque's; the tasks alive; the tasks stolen, the parks and
 * the 99th percentile of the sampled scheduling delay since the last line.
 *
 * The thread only reads what the workers publish anyway (their counters,
 * deque indices, the idle counts), with relaxed loads, so a line is a
 * moment's snapshot and tracing costs the workers nothing. It has its own
 * thread, not a timer on the reactor thread: a line is written with
 * write(2), which blocks while stderr is a full pipe, and that must hold
 * up neither the timers nor the fd events. Periods are counted from the
 * start (no drift); periods missed while the thread could not run are
 * skipped, not printed late in a burst.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sched/alloc.h"
#include "sched/internal.h"

struct weft__monitor {
    weft_runtime *rt; /* immutable */
    pthread_t thread;
    int64_t period_ns; /* immutable */
    /* Atomic futex word: 0, then 1 once weft__monitor_stop asks the thread
     * to end. */
    uint32_t stop;
    /* The thread only: what the previous line saw, and its buffer. */
    uint64_t steals, parks;
    uint64_t delay[WEFT_DELAY_BUCKETS];
    char *line;
    size_t cap;
};

/* Appends to a fixed buffer, truncating (the buffer is sized for the
 * longest line, so that never happens in practice). */
struct out {
    char *buf;
    size_t cap, len;
};

static void put(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    if (o->len >= o->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n < o->cap - o->len ? (size_t)n : o->cap - o->len;
}

/* The p99 of the delay samples taken since the last line, in ns. */
static uint64_t period_p99(struct weft__monitor *m)
{
    weft_runtime *rt = m->rt;
    uint64_t now[WEFT_DELAY_BUCKETS] = {0}, n = 0;
    for (unsigned i = 0; i < rt->nworkers; i++)
        for (unsigned b = 0; b < WEFT_DELAY_BUCKETS; b++)
            now[b] += weft__load_rlx_u64(&rt->workers[i]->delay.buckets[b]);
    uint64_t d[WEFT_DELAY_BUCKETS];
    for (unsigned b = 0; b < WEFT_DELAY_BUCKETS; b++) {
        d[b] = now[b] - m->delay[b];
        n += d[b];
        m->delay[b] = now[b];
    }
    /* The upper edge of the bucket holding the 99th percentile. */
    uint64_t rank = n - n / 100, seen = 0;
    for (unsigned b = 0; b < WEFT_DELAY_BUCKETS && n; b++) {
        seen += d[b];
        if (seen >= rank)
            return 2ull << b;
    }
    return 0;
}

static void put_ns(struct out *o, const char *key, uint64_t ns)
{
    if (ns < 10000)
        put(o, " %s=%lluns", key, (unsigned long long)ns);
    else if (ns < 10000000)
        put(o, " %s=%lluus", key, (unsigned long long)(ns / 1000));
    else
        put(o, " %s=%llums", key, (unsigned long long)(ns / 1000000));
}

static void print_line(struct weft__monitor *m, int64_t now)
{
    weft_runtime *rt = m->rt;
    struct out o = {m->line, m->cap, 0};
    /* Relaxed: a snapshot; the counts move while they are read. */
    uint32_t parked = weft__load_rlx_u32(&rt->nr_parked);
    uint32_t spinning = weft__load_rlx_u32(&rt->nr_spinning);
    uint32_t idle = parked + spinning;
    put(&o,
        "weft schedtrace %lldms: workers=%u running=%u spinning=%u "
        "parked=%u inject=%llu deques=[",
        (long long)((now - rt->start_ns) / 1000000), rt->nworkers,
        idle < rt->nworkers ? rt->nworkers - idle : 0, spinning, parked,
        (unsigned long long)weft__load_rlx_u64(&rt->inject.len));
    uint64_t steals = 0, parks = 0;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        struct weft__worker *w = rt->workers[i];
        put(&o, i ? " %zu" : "%zu", weft__deque_len(&w->deque));
        steals += weft__load_rlx_u64(&w->counters.steals);
        parks += weft__load_rlx_u64(&w->counters.parks);
    }
    put(&o, "] alive=%llu steals=%llu parks=%llu",
        (unsigned long long)weft__runtime_alive(rt),
        (unsigned long long)(steals - m->steals),
        (unsigned long long)(parks - m->parks));
    put_ns(&o, "delay_p99", period_p99(m));
    m->steals = steals;
    m->parks = parks;
    if (o.len == o.cap)
        o.len--; /* truncated: keep room for the newline */
    o.buf[o.len++] = '\n';
    /* One write per line, so that lines from several runtimes or threads
     * do not interleave. Nothing to do if it fails. */
    ssize_t r = write(STDERR_FILENO, o.buf, o.len);
    (void)r;
}

static void *monitor_main(void *arg)
{
    struct weft__monitor *m = arg;
    int64_t next = m->rt->start_ns + m->period_ns;
    /* Acquire: pairs with the release store in weft__monitor_stop. */
    while (!weft__load_acq_u32(&m->stop)) {
        weft__futex_wait_until(&m->stop, 0, next);
        int64_t now = weft__now_ns();
        if (now < next)
            continue; /* woken early: stop, or spuriously */
        print_line(m, now);
        next += m->period_ns;
        if (next <= now) /* skip the periods missed */
            next = now + m->period_ns - (now - next) % m->period_ns;
    }
    return NULL;
}

int weft__monitor_start(weft_runtime *rt)
{
    const char *v = getenv("WEFT_SCHEDTRACE");
    if (!v)
        return 0;
    char *end;
    long ms = strtol(v, &end, 10);
    if (end == v || *end != '\0' || ms <= 0)
        return 0; /* as GODEBUG=schedtrace=0: off */
    struct weft__monitor *m = weft__malloc(sizeof(*m));
    if (!m)
        return -ENOMEM;
    memset(m, 0, sizeof(*m));
    m->rt = rt;
    m->period_ns = (int64_t)ms * 1000000;
    m->cap = 160 + 21 * (size_t)rt->nworkers;
    m->line = weft__malloc(m->cap);
    if (!m->line) {
        weft__free(m);
        return -ENOMEM;
    }
    int err = pthread_create(&m->thread, NULL, monitor_main, m);
    if (err) {
        weft__free(m->line);
        weft__free(m);
        return -err;
    }
    pthread_setname_np(m->thread, "weft-sched");
    rt->monitor = m;
    return 0;
}

void weft__monitor_stop(weft_runtime *rt)
{
    struct weft__monitor *m = rt->monitor;
    if (!m)
        return;
    /* Release: nothing to publish but the request itself; the thread
     * reads it with acquire after each wait. */
    weft__store_rel_u32(&m->stop, 1);
    weft__futex_wake(&m->stop, 1);
    pthread_join(m->thread, NULL);
    weft__free(m->line);
    weft__free(m);
    rt->monitor = NULL;
}
