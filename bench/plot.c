/* Plots, drawn by gnuplot (Debian's gnuplot-nox draws PNGs without X);
 * without gnuplot the run says so and goes on.
 *
 *   <workload>-<k>.png   the k-th table of the workload as bars, one per
 *                        row (mode and workers), ns per op; the y axis is
 *                        logarithmic when the rows differ by more than
 *                        LOG_SPREAD times.
 *   <workload>-scaling.png   fib and spawn: weft's and Go's ns per op and
 *                        speedup against the worker count, one line per
 *                        table and mode, beside the ideal speedup.
 *
 * bench_plot_files() names them for the report, in the same order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/driver.h"

#define LOG_SPREAD 20.0

static bool have_gnuplot(void)
{
    const char *path = getenv("PATH");
    char buf[4096], file[4200];
    snprintf(buf, sizeof buf, "%s", path ? path : "/usr/bin:/bin");
    for (char *dir = strtok(buf, ":"); dir; dir = strtok(NULL, ":")) {
        snprintf(file, sizeof file, "%s/gnuplot", dir);
        if (access(file, X_OK) == 0)
            return true;
    }
    return false;
}

/* gnuplot string literal: drop the characters that would end it. */
static void quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++)
        if (*s != '"' && *s != '\\')
            fputc(*s, f);
    fputc('"', f);
}

static bool plotted(const struct bench_row *r, const struct bench_row *first)
{
    return bench_same_group(r, first) && r->ok && r->ns_per_op > 0;
}

/* The weft or Go rows of a scaling series: fib and spawn. */
static bool scales(const struct bench_row *r)
{
    return (r->wl == &bench_fib || r->wl == &bench_spawn) && r->ok &&
           r->ns_per_op > 0 &&
           (strcmp(r->cell.mode, "weft") == 0 ||
            strcmp(r->cell.mode, "go") == 0);
}

/* Whether the series of r (its group and mode) has a row with other
 * workers than r's, and r is its first row. */
static bool series_first(const struct bench_plan *plan, size_t i)
{
    const struct bench_row *r = &plan->rows[i];
    bool more = false;
    for (size_t j = 0; j < plan->nrows; j++) {
        const struct bench_row *o = &plan->rows[j];
        if (!scales(o) || !bench_same_group(o, r) ||
            strcmp(o->cell.mode, r->cell.mode) != 0)
            continue;
        if (j < i)
            return false;
        more |= o->cell.workers != r->cell.workers;
    }
    return scales(r) && more;
}

size_t bench_plot_files(const struct bench_plan *plan, struct bench_plot *out,
                        size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < plan->nrows && k < max; i++) {
        const struct bench_row *r = &plan->rows[i];
        if (!bench_first_of_group(plan, i))
            continue;
        bool any = false;
        for (size_t j = i; j < plan->nrows; j++)
            any |= plotted(&plan->rows[j], r);
        unsigned index = 1;
        for (size_t j = 0; j < i; j++)
            index += plan->rows[j].wl == r->wl && bench_first_of_group(plan, j);
        if (!any)
            continue;
        out[k].row = r;
        out[k].scaling = false;
        snprintf(out[k].name, sizeof out[k].name, "%s-%u.png", r->wl->name,
                 index);
        snprintf(out[k].title, sizeof out[k].title, "%s: %s", r->wl->name,
                 r->group);
        k++;
    }
    /* A scaling plot per workload that has a series. */
    for (size_t i = 0; i < plan->nrows && k < max; i++) {
        const struct bench_row *r = &plan->rows[i];
        bool first = series_first(plan, i);
        for (size_t j = 0; first && j < i; j++)
            first = !(plan->rows[j].wl == r->wl && series_first(plan, j));
        if (!first)
            continue;
        out[k].row = r;
        out[k].scaling = true;
        snprintf(out[k].name, sizeof out[k].name, "%s-scaling.png",
                 r->wl->name);
        snprintf(out[k].title, sizeof out[k].title,
                 "%s: ns per op and speedup against workers", r->wl->name);
        k++;
    }
    return k;
}

static void plot_bars(FILE *gp, const struct bench_plan *plan,
                      const struct bench_plot *p, const char *png)
{
    double lo = 0, hi = 0;
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *r = &plan->rows[i];
        if (!plotted(r, p->row))
            continue;
        if (lo == 0 || r->ns_per_op < lo)
            lo = r->ns_per_op;
        if (r->ns_per_op > hi)
            hi = r->ns_per_op;
    }
    bool log = hi / lo > LOG_SPREAD;
    fprintf(gp,
            "set terminal pngcairo size 1000,560 noenhanced\n"
            "set output '%s'\nset title ",
            png);
    quoted(gp, p->title);
    fprintf(gp, "\nset ylabel ");
    quoted(gp, p->row->wl->op);
    unsigned bars = 0;
    for (size_t i = 0; i < plan->nrows; i++)
        bars += plotted(&plan->rows[i], p->row);
    fprintf(gp,
            "\n%s\nset yrange [%s:*]\nset xrange [-0.6:%u.6]\n"
            "set style fill solid 0.8 border -1\nset boxwidth 0.7\n"
            "set xtics rotate by -30\nset grid ytics\nunset key\n"
            "$d << EOD\n",
            log ? "set logscale y" : "unset logscale y", log ? "*" : "0",
            bars - 1);
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *r = &plan->rows[i];
        /* weft's own rows blue, the others grey. */
        if (plotted(r, p->row))
            fprintf(gp, "\"%s %uw\" %g %d\n", r->cell.mode, r->cell.workers,
                    r->ns_per_op,
                    strncmp(r->cell.mode, "weft", 4) == 0 ? 0x4477aa
                                                          : 0x999999);
    }
    fprintf(gp, "EOD\nplot $d using 0:2:3:xtic(1) with boxes lc rgb variable, "
                "$d using 0:2:($2 >= 100 ? sprintf(\"%%.0f\", $2) : "
                "sprintf(\"%%.3g\", $2)) with labels offset 0,0.7 "
                "font \",9\"\nunset output\nreset\n");
}

/* One data block per series of p's workload: workers, ns, speedup. */
static unsigned scaling_data(FILE *gp, const struct bench_plan *plan,
                             const struct bench_plot *p, char titles[][160],
                             unsigned max)
{
    unsigned n = 0;
    for (size_t i = 0; i < plan->nrows && n < max; i++) {
        const struct bench_row *s = &plan->rows[i];
        if (s->wl != p->row->wl || !series_first(plan, i))
            continue;
        snprintf(titles[n], sizeof titles[n], "%s, %s", s->cell.mode, s->group);
        fprintf(gp, "$s%u << EOD\n", n);
        for (size_t j = i; j < plan->nrows; j++) {
            const struct bench_row *r = &plan->rows[j];
            if (scales(r) && bench_same_group(r, s) &&
                strcmp(r->cell.mode, s->cell.mode) == 0)
                fprintf(gp, "%u %g %g\n", r->cell.workers, r->ns_per_op,
                        r->cell.workers == 1 ? 1.0 : r->speedup);
        }
        fprintf(gp, "EOD\n");
        n++;
    }
    return n;
}

static void plot_scaling(FILE *gp, const struct bench_plan *plan,
                         const struct bench_plot *p, const char *png)
{
    char titles[16][160];
    unsigned n = scaling_data(gp, plan, p, titles, 16);
    fprintf(gp,
            "set terminal pngcairo size 1200,520 noenhanced\n"
            "set output '%s'\nset multiplot layout 1,2 title ",
            png);
    quoted(gp, p->title);
    fprintf(gp,
            "\nset logscale x 2\nset xrange [0.8:%u]\nset xlabel "
            "\"workers\"\nset grid\nset key top right font \",9\"\n"
            "set ylabel ",
            plan->cpus + plan->cpus / 4 + 1);
    quoted(gp, p->row->wl->op);
    fprintf(gp, "\nset logscale y\nplot ");
    for (unsigned i = 0; i < n; i++) {
        fprintf(gp, "%s$s%u using 1:2 with linespoints lw 2 lc %u title ",
                i ? ", " : "", i, i + 1);
        quoted(gp, titles[i]);
    }
    fprintf(gp, "\nunset logscale y\nset ylabel \"speedup over 1 worker\"\n"
                "set yrange [0:*]\nset key top left\n"
                "plot x with lines dt 2 lc rgb \"gray\" title \"ideal\"");
    for (unsigned i = 0; i < n; i++) {
        fprintf(gp, ", $s%u using 1:3 with linespoints lw 2 lc %u title ", i,
                i + 1);
        quoted(gp, titles[i]);
    }
    fprintf(gp, "\nunset multiplot\nunset output\nreset\n");
}

void bench_plot(const struct bench_plan *plan, const char *dir, FILE *log)
{
    if (!have_gnuplot()) {
        fprintf(log, "plots: skipped, no gnuplot on PATH (Debian: "
                     "gnuplot-nox)\n");
        return;
    }
    struct bench_plot plots[BENCH_PLOTS_MAX];
    size_t n = bench_plot_files(plan, plots, BENCH_PLOTS_MAX);
    /* gnuplot's own chatter goes to a log beside the PNGs. */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "gnuplot 2>'%s/gnuplot.log'", dir);
    fflush(NULL);
    FILE *gp = popen(cmd, "w");
    if (!gp) {
        fprintf(log, "plots: skipped, cannot start gnuplot\n");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char png[600];
        snprintf(png, sizeof png, "%.500s/%.63s", dir, plots[i].name);
        if (plots[i].scaling)
            plot_scaling(gp, plan, &plots[i], png);
        else
            plot_bars(gp, plan, &plots[i], png);
    }
    int status = pclose(gp);
    if (status != 0)
        fprintf(log,
                "plots: gnuplot exited with status %d, see %s/gnuplot.log\n",
                status, dir);
    else
        fprintf(log, "plots: %zu PNG file%s in %s\n", n, n == 1 ? "" : "s",
                dir);
}
