/* Plots: one PNG bar chart per group (ns_per_op per mode, log scale),
 * drawn by gnuplot (Debian's gnuplot-nox draws PNGs without X). Without
 * gnuplot the run says so and goes on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/driver.h"

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
    return r->wl == first->wl && strcmp(r->group, first->group) == 0 && r->ok &&
           r->ns_per_op > 0;
}

/* Returns whether the group had anything to draw. */
static bool plot_group(FILE *gp, const struct bench_plan *plan,
                       const struct bench_row *first, const char *png)
{
    size_t points = 0;
    for (size_t i = 0; i < plan->nrows; i++)
        points += plotted(&plan->rows[i], first);
    if (points == 0)
        return false;
    fprintf(gp,
            "set terminal png size 1000,560\n"
            "set output '%s'\n"
            "set title ",
            png);
    char title[256];
    snprintf(title, sizeof title, "%s: %s", first->wl->name, first->group);
    quoted(gp, title);
    fprintf(gp, "\nset ylabel ");
    quoted(gp, first->wl->op);
    fprintf(gp, "\nset logscale y\nset style data histograms\n"
                "set style fill solid 0.8 border -1\nset boxwidth 0.8\n"
                "set xtics rotate by -30\nset grid ytics\nunset key\n"
                "$d << EOD\n");
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *r = &plan->rows[i];
        if (!plotted(r, first))
            continue;
        fprintf(gp, "\"%s %uw\" %g\n", r->cell.mode, r->cell.workers,
                r->ns_per_op);
    }
    fprintf(gp, "EOD\nplot $d using 2:xtic(1) lc rgb \"#4477aa\"\n"
                "unset output\nreset\n");
    return true;
}

/* Whether row i is the first of its workload and group. */
static bool first_of_group(const struct bench_plan *plan, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (plan->rows[j].wl == plan->rows[i].wl &&
            strcmp(plan->rows[j].group, plan->rows[i].group) == 0)
            return false;
    return true;
}

void bench_plot(const struct bench_plan *plan, const char *dir, FILE *log)
{
    if (!have_gnuplot()) {
        fprintf(log, "plots: skipped, no gnuplot on PATH (Debian: "
                     "gnuplot-nox)\n");
        return;
    }
    /* gnuplot's own chatter goes to a log beside the PNGs. */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "gnuplot 2>'%s/gnuplot.log'", dir);
    fflush(NULL);
    FILE *gp = popen(cmd, "w");
    if (!gp) {
        fprintf(log, "plots: skipped, cannot start gnuplot\n");
        return;
    }
    unsigned made = 0;
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *r = &plan->rows[i];
        if (!first_of_group(plan, i))
            continue;
        unsigned index = 1;
        for (size_t j = 0; j < i; j++)
            if (plan->rows[j].wl == r->wl && first_of_group(plan, j))
                index++;
        char png[600];
        snprintf(png, sizeof png, "%s/%s-%u.png", dir, r->wl->name, index);
        made += plot_group(gp, plan, r, png);
    }
    int status = pclose(gp);
    if (status != 0)
        fprintf(log,
                "plots: gnuplot exited with status %d, see %s/gnuplot.log\n",
                status, dir);
    else
        fprintf(log, "plots: %u PNG file%s in %s\n", made, made == 1 ? "" : "s",
                dir);
}
