/* Small helpers shared by the cells: clocks, the RESULT line, weft
 * runtimes made to measure, CPU pinning, whole reads and writes. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"

unsigned bench_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (unsigned)n;
}

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bench_now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

int64_t bench_cpu_ns(void)
{
    return clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}

void bench_extra(struct bench_result *res, const char *fmt, ...)
{
    size_t used = strlen(res->extra);
    if (used + 2 >= sizeof res->extra)
        return;
    res->extra[used++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->extra + used, sizeof res->extra - used, fmt, ap);
    va_end(ap);
}

void bench_result_print(const struct bench_cell *cell,
                        const struct bench_result *res)
{
    struct rusage self, children;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    long rss = self.ru_maxrss > children.ru_maxrss ? self.ru_maxrss
                                                   : children.ru_maxrss;
    printf("RESULT workload=%s mode=%s workers=%u n=%llu ns_per_op=%.2f "
           "rss_kib=%ld check=%s",
           cell->workload, cell->mode, cell->workers,
           (unsigned long long)cell->n, res->ns_per_op, rss,
           res->ok ? "ok" : "FAIL");
    if (cell->cutoff)
        printf(" cutoff=%u", cell->cutoff);
    if (cell->parties)
        printf(" parties=%u", cell->parties);
    printf("%s\n", res->extra);
    fflush(stdout);
}

void bench_perror(const char *what, int err)
{
    fprintf(stderr, "weft-bench: %s: %s\n", what, strerror(-err));
}

weft_runtime *bench_weft_new(unsigned workers)
{
    weft_config cfg = {.workers = workers};
    weft_runtime *rt = weft_runtime_new(&cfg);
    if (!rt)
        bench_perror("weft_runtime_new", -errno);
    return rt;
}

static void extra_stats(struct bench_result *res, const weft_stats *s)
{
    bench_extra(res,
                "switches=%llu steals=%llu inject_pops=%llu parks=%llu "
                "wakeups=%llu",
                (unsigned long long)s->total.switches,
                (unsigned long long)s->total.steals,
                (unsigned long long)s->total.inject_pops,
                (unsigned long long)s->total.parks,
                (unsigned long long)s->total.wakeups);
}

int bench_weft_run(unsigned workers, weft_fn fn, void *arg, void **result,
                   int64_t *ns, struct bench_result *res)
{
    weft_runtime *rt = bench_weft_new(workers);
    if (!rt)
        return -ENOMEM;
    int64_t t0 = bench_now_ns();
    int err = weft_runtime_run(rt, fn, arg, result);
    if (ns)
        *ns = bench_now_ns() - t0;
    if (err < 0)
        bench_perror("weft_runtime_run", err);
    weft_stats st;
    if (res && err == 0) {
        err = weft_stats_get(rt, &st);
        if (err < 0)
            bench_perror("weft_stats_get", err);
        else
            extra_stats(res, &st);
    }
    weft_runtime_free(rt);
    return err;
}

int bench_pin_first_cpu(void)
{
    cpu_set_t set;
    int err = pthread_getaffinity_np(pthread_self(), sizeof set, &set);
    if (err)
        return -err;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &set))
            continue;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        return -pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    return -EINVAL;
}

int bench_write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t k = write(fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

int bench_read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t k = read(fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return -EPIPE;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

bool bench_noobs_path(char *path, size_t len)
{
    const char *suffix = "-noobs";
    ssize_t k = readlink("/proc/self/exe", path, len - strlen(suffix) - 1);
    if (k <= 0)
        return false;
    path[k] = '\0';
    strcat(path, suffix);
    return access(path, X_OK) == 0;
}
