/* The driver's private structures: the plan of a default run, its rows,
 * and the functions of driver.c, runner.c, ref.c, report.c, targets.c and
 * plot.c that share them. The cells (yield.c, fib.c, ...) see none of it.
 */
#ifndef WEFT_BENCH_DRIVER_H
#define WEFT_BENCH_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "bench/bench.h"

#define BENCH_LINE_MAX 1024

/* A run during which other processes used more than this share of the
 * CPUs is noisy: the driver says so and tries another run. */
#define BENCH_NOISY_PCT 15.0

/* One cell of the run and what it measured. */
struct bench_row {
    struct bench_cell cell;
    const struct bench_workload *wl;
    char group[96];
    char note[128];
    /* Filled in by the runs: */
    bool ok;           /* every run exited 0 with check=ok */
    char status[48];   /* "ok", "FAIL", "exit 3", "signal 11", "timeout" */
    double ns_per_op;  /* the best run's */
    long rss_kib;      /* the largest run's, from wait4() */
    unsigned runs;     /* runs made */
    double wall_s;     /* wall time of all runs, for progress */
    double others_pct; /* others' share of the CPUs during the kept run;
                          -1: unknown */
    char extra[BENCH_EXTRA_MAX]; /* the best run's keys beyond the fixed */
    double ratio;   /* ns_per_op over the group's baseline; 0: none */
    double speedup; /* 1-worker ns_per_op over this one; 0: none */
    char line[BENCH_LINE_MAX]; /* the RESULT line as printed */
};

struct bench_note {
    const struct bench_workload *wl;
    char group[96];
    char text[256];
};

struct bench_plan {
    bool full;
    unsigned cpus;
    const char *modes;               /* --modes filter; NULL: all */
    const struct bench_workload *wl; /* the workload being planned */
    struct bench_row *rows;
    size_t nrows, cap;
    struct bench_note *notes;
    size_t nnotes, notes_cap;
};

/* Options of a default run. */
struct bench_options {
    bool full;
    const char *only;  /* comma-separated workloads; NULL: all */
    const char *modes; /* comma-separated modes; NULL: all */
    const char *out;   /* output folder */
    unsigned repeat;   /* best of up to this many runs per cell */
    double timeout_s;  /* per run */
    bool plot;
    const char *readme; /* --readme: the file whose Results to rewrite */
};

/* driver.c */
int bench_driver_main(const struct bench_options *opt);
bool bench_list_has(const char *list, const char *name);

/* ref.c: the Go and Python references, declared in bench.h (echo and
 * mixed start theirs as servers). */

/* runner.c: run one command, collect its RESULT line and rusage. */
struct bench_child {
    char line[BENCH_LINE_MAX]; /* "" if no RESULT line came */
    int status;                /* from wait4 */
    long maxrss_kib;
    double wall_s;
    /* CPU that processes other than the child used meanwhile, as a share
     * of all CPUs; -1 if /proc/stat could not be read. */
    double others_pct;
    bool timed_out;
};
int bench_child_run(char *const argv[], double timeout_s,
                    struct bench_child *out);

/* CPU seconds all CPUs have been busy since boot (/proc/stat), or -1. */
double bench_busy_seconds(void);

/* Value of key in a RESULT line, copied to val; false if absent. */
bool bench_line_get(const char *line, const char *key, char *val, size_t len);

/* report.c */
void bench_report_group_tables(const struct bench_plan *plan,
                               const struct bench_workload *wl, FILE *f);
int bench_report_csv(const struct bench_plan *plan, const char *path);
/* Whether a and b are rows of one table (workload and group). */
bool bench_same_group(const struct bench_row *a, const struct bench_row *b);
/* Whether row i is the first of its table. */
bool bench_first_of_group(const struct bench_plan *plan, size_t i);
/* The group's baseline row (weft with the most workers up to the CPU
 * count), or NULL. */
const struct bench_row *bench_report_baseline(const struct bench_plan *plan,
                                              const char *group,
                                              const struct bench_workload *wl);

/* markdown.c: results.md, and the README's Results section between its
 * markers (-EBADMSG: no markers). */
int bench_report_markdown(const struct bench_plan *plan, const char *path);
int bench_report_readme(const struct bench_plan *plan, const char *readme,
                        const char *out_dir);

/* targets.c */
void bench_targets_print(const struct bench_plan *plan, FILE *f);

/* plot.c: one PNG per group, and a scaling plot for fib and spawn, with
 * gnuplot if it is installed. */
#define BENCH_PLOTS_MAX 64
struct bench_plot {
    char name[64];               /* the file, in the output folder */
    char title[200];             /* what it shows */
    const struct bench_row *row; /* the first row of its group, workload */
    bool scaling;
};
/* The plots a run makes, at most max, in order. */
size_t bench_plot_files(const struct bench_plan *plan, struct bench_plot *out,
                        size_t max);
void bench_plot(const struct bench_plan *plan, const char *dir, FILE *log);

#endif /* WEFT_BENCH_DRIVER_H */
