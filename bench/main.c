/* weft-bench's command line.
 *
 *   weft-bench [--full] [--only w1,w2] [--modes m1,m2] [--out DIR]
 *              [--repeat R] [--timeout S] [--no-plot] [--readme FILE]
 *       the default run: every workload in every mode, one child process
 *       per cell (driver.c), tables, then in DIR results.csv, the plots
 *       (plot.c) and results.md (markdown.c); the targets. --readme
 *       rewrites FILE's Results section from the run (./bench.sh --report).
 *   weft-bench WORKLOAD [--mode M] [--workers P] [--n N] [--cutoff C]
 *              [--parties K] [--full]
 *       one cell, in this process (a Go or Python reference is exec'd,
 *       except for echo and mixed, whose references are servers that the
 *       cell starts and drives): prints its RESULT line; exits 0 if the
 *       check passed, 1 if it failed, 2 for bad usage, 3 if the cell could
 *       not run.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/driver.h"

#ifndef WEFT_BENCH_OUT_DIR
#define WEFT_BENCH_OUT_DIR "bench/out"
#endif

const struct bench_workload *const bench_workloads[] = {
    &bench_yield, &bench_switch,     &bench_spawn,    &bench_pingpong,
    &bench_fib,   &bench_idle,       &bench_sleepers, &bench_timer,
    &bench_lock,  &bench_lock_yield, &bench_echo,     &bench_mixed,
    NULL,
};

const struct bench_workload *bench_workload_find(const char *name)
{
    for (size_t i = 0; bench_workloads[i]; i++)
        if (strcmp(bench_workloads[i]->name, name) == 0)
            return bench_workloads[i];
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: weft-bench [--full] [--only W1,W2] [--modes M1,M2] "
               "[--out DIR]\n"
               "                  [--repeat R] [--timeout S] [--no-plot] "
               "[--readme FILE]\n"
               "       weft-bench WORKLOAD [--mode M] [--workers P] [--n N] "
               "[--cutoff C]\n"
               "                  [--parties K] [--full]\n"
               "workloads: yield switch spawn pingpong fib idle sleepers "
               "timer lock\n"
               "           lock_yield echo mixed\n"
               "modes: weft thread threadpool process processpool go asyncio "
               "uvloop\n"
               "       weft-noobs (weft-bench-noobs: no observability hooks), "
               "weft-trace\n"
               "       (WEFT_TRACE on)\n"
               "       (switch: weft boost ucontext; pingpong, lock, "
               "lock_yield: thread-weft,\n"
               "       plain threads over weft's primitives)\n");
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v > max || s[0] == '-')
        return false;
    *out = v;
    return true;
}

/* The option at argv[*i], with its value in argv[*i + 1]. */
static const char *option_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "weft-bench: %s needs a value\n", argv[*i]);
        exit(2);
    }
    return argv[++*i];
}

static unsigned option_uint(int argc, char **argv, int *i)
{
    const char *name = argv[*i];
    uint64_t v;
    if (!parse_u64(option_value(argc, argv, i), UINT_MAX, &v)) {
        fprintf(stderr, "weft-bench: %s: not a number: %s\n", name, argv[*i]);
        exit(2);
    }
    return (unsigned)v;
}

#ifndef WEFT_BENCH_NOOBS
/* weft-noobs: the same cell in weft-bench-noobs, beside this program. */
static int exec_noobs(char **argv)
{
    char path[512];
    if (!bench_noobs_path(path, sizeof path)) {
        fprintf(stderr, "weft-bench: weft-noobs needs weft-bench-noobs beside "
                        "weft-bench (ninja weft-bench-noobs)\n");
        return 3;
    }
    fflush(NULL);
    execv(path, argv);
    bench_perror(path, -errno);
    return 3;
}
#endif

/* weft-trace: WEFT_TRACE names a file in $TMPDIR, which the runtime the
 * cell makes reads. Its size goes into the RESULT line, and then it goes:
 * a million events make some 100 MiB. */
static int trace_on(char *path, size_t len)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(path, len, "%s/weft-bench-trace-%d.json", tmp ? tmp : "/tmp",
             (int)getpid());
    return setenv("WEFT_TRACE", path, 1) < 0 ? -errno : 0;
}

static void trace_off(const char *path, struct bench_result *res)
{
    struct stat st;
    if (stat(path, &st) == 0)
        bench_extra(res, "trace_mib=%.1f", (double)st.st_size / 1048576.0);
    else
        res->ok = false; /* the runtime wrote no trace */
    unlink(path);
    unsetenv("WEFT_TRACE");
}

static int run_cell(struct bench_cell *cell, char **self_argv, bool full,
                    bool have_n)
{
    const struct bench_workload *wl = bench_workload_find(cell->workload);
    if (!wl) {
        fprintf(stderr, "weft-bench: no workload %s\n", cell->workload);
        usage(stderr);
        return 2;
    }
    if (cell->parties == 0 && (wl == &bench_yield || wl == &bench_pingpong))
        cell->parties = 1; /* pingpong: events */
    if (cell->parties == 0 && (wl == &bench_lock || wl == &bench_lock_yield))
        cell->parties = 4;
    if (!have_n)
        cell->n = wl->default_n(cell, full);
    if (bench_mode_is_ref(cell->mode) && !wl->runs_refs) {
        char *argv[16], buf[8][256], why[256];
        if (!bench_ref_available(cell, why, sizeof why)) {
            fprintf(stderr, "weft-bench: %s\n", why);
            return 3;
        }
        bench_ref_argv(cell, argv, buf);
        fflush(NULL);
        execv(argv[0], argv);
        bench_perror(argv[0], -errno);
        return 3;
    }
    /* The observability modes run as weft, and say their own name. */
    const char *shown = cell->mode;
    char trace[512] = "";
    if (strcmp(cell->mode, "weft-noobs") == 0) {
#ifdef WEFT_BENCH_NOOBS
        (void)self_argv;
        cell->mode = "weft";
#else
        return exec_noobs(self_argv);
#endif
    } else if (strcmp(cell->mode, "weft-trace") == 0) {
        int err = trace_on(trace, sizeof trace);
        if (err < 0) {
            bench_perror("WEFT_TRACE", err);
            return 3;
        }
        cell->mode = "weft";
    }
    struct bench_result res = {0};
    int err = wl->run(cell, &res);
    cell->mode = shown;
    if (trace[0])
        trace_off(trace, &res);
    if (err == -ENOTSUP) {
        fprintf(stderr,
                "weft-bench: %s has no mode %s (or not with these "
                "options)\n",
                cell->workload, cell->mode);
        return 2;
    }
    if (err < 0) {
        bench_perror(cell->workload, err);
        return 3;
    }
    bench_result_print(cell, &res);
    return res.ok ? 0 : 1;
}

static int cell_main(int argc, char **argv)
{
    struct bench_cell cell = {
        .workload = argv[1], .mode = "weft", .workers = bench_cpus()};
    bool full = false, have_n = false, have_workers = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--mode") == 0) {
            cell.mode = option_value(argc, argv, &i);
        } else if (strcmp(a, "--workers") == 0) {
            cell.workers = option_uint(argc, argv, &i);
            have_workers = true;
        } else if (strcmp(a, "--n") == 0) {
            if (!parse_u64(option_value(argc, argv, &i), UINT64_MAX / 4,
                           &cell.n)) {
                fprintf(stderr, "weft-bench: --n: not a number\n");
                return 2;
            }
            have_n = true;
        } else if (strcmp(a, "--cutoff") == 0) {
            cell.cutoff = option_uint(argc, argv, &i);
        } else if (strcmp(a, "--parties") == 0) {
            cell.parties = option_uint(argc, argv, &i);
        } else if (strcmp(a, "--full") == 0) {
            full = true;
        } else {
            fprintf(stderr, "weft-bench: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!have_workers && strcmp(cell.workload, "switch") == 0)
        cell.workers = 1; /* one thread, whatever the CPUs */
    if (cell.workers == 0) {
        fprintf(stderr, "weft-bench: --workers must be at least 1\n");
        return 2;
    }
    return run_cell(&cell, argv, full, have_n);
}

static int driver_args(int argc, char **argv)
{
    struct bench_options opt = {
        .out = WEFT_BENCH_OUT_DIR, .repeat = 5, .timeout_s = 180, .plot = true};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--full") == 0) {
            opt.full = true;
        } else if (strcmp(a, "--only") == 0) {
            opt.only = option_value(argc, argv, &i);
        } else if (strcmp(a, "--modes") == 0) {
            opt.modes = option_value(argc, argv, &i);
        } else if (strcmp(a, "--out") == 0) {
            opt.out = option_value(argc, argv, &i);
        } else if (strcmp(a, "--repeat") == 0) {
            opt.repeat = option_uint(argc, argv, &i);
        } else if (strcmp(a, "--timeout") == 0) {
            opt.timeout_s = option_uint(argc, argv, &i);
        } else if (strcmp(a, "--no-plot") == 0) {
            opt.plot = false;
        } else if (strcmp(a, "--readme") == 0) {
            opt.readme = option_value(argc, argv, &i);
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "weft-bench: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (opt.repeat == 0)
        opt.repeat = 1;
    if (opt.only) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", opt.only);
        for (char *s = strtok(buf, ","); s; s = strtok(NULL, ","))
            if (!bench_workload_find(s)) {
                fprintf(stderr, "weft-bench: --only: no workload %s\n", s);
                return 2;
            }
    }
    return bench_driver_main(&opt);
}

int main(int argc, char **argv)
{
    if (argc > 1 && argv[1][0] != '-')
        return cell_main(argc, argv);
    return driver_args(argc, argv);
}
