/* Counters: each worker writes its own (weft__count, relaxed); readers sum
 * them with relaxed loads, so a reading thread may see a total a moment
 * old, and the workers pay no shared write for being observed. */
#include <errno.h>

#include "sched/internal.h"

static weft_runtime *resolve(weft_runtime *rt)
{
    return rt ? rt : weft_runtime_current();
}

static void read_counters(struct weft__worker *w, weft_counters *c)
{
    const uint64_t *src = (const uint64_t *)&w->counters;
    uint64_t *dst = (uint64_t *)c;
    for (size_t i = 0; i < sizeof(*c) / sizeof(uint64_t); i++)
        dst[i] = weft__load_rlx_u64((uint64_t *)&src[i]);
}

int weft_stats_worker(weft_runtime *rt, unsigned worker, weft_counters *c)
{
    rt = resolve(rt);
    if (!rt || !c || worker >= rt->nworkers)
        return -EINVAL;
    read_counters(rt->workers[worker], c);
    return 0;
}

int weft_stats_get(weft_runtime *rt, weft_stats *s)
{
    rt = resolve(rt);
    if (!rt || !s)
        return -EINVAL;
    s->workers = rt->nworkers;
    s->tasks_alive = weft__runtime_alive(rt);
    uint64_t *sum = (uint64_t *)&s->total;
    for (size_t i = 0; i < sizeof(s->total) / sizeof(uint64_t); i++)
        sum[i] = 0;
    for (unsigned w = 0; w < rt->nworkers; w++) {
        weft_counters c;
        read_counters(rt->workers[w], &c);
        const uint64_t *add = (const uint64_t *)&c;
        for (size_t i = 0; i < sizeof(c) / sizeof(uint64_t); i++)
            sum[i] += add[i];
    }
    return 0;
}
