/* The run as Markdown: results.md in the output folder (the machine, a
 * summary table, the plots, every table and the targets), and, with
 * --readme FILE, the summary and the plots spliced into FILE between its
 * two marker lines, so that one command (./bench.sh --report) remakes the
 * README's Results section and the PNGs it shows.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "bench/driver.h"

#define README_BEGIN "<!-- weft-bench --report: begin -->"
#define README_END   "<!-- weft-bench --report: end -->"

/* The modes as summary columns, in this order, when a row has them. */
static const char *const mode_order[] = {
    "weft",       "weft-noobs", "weft-trace",  "thread-weft", "thread",
    "threadpool", "process",    "processpool", "go",          "asyncio",
    "uvloop",     "boost",      "ucontext",
};
#define NMODES (sizeof mode_order / sizeof *mode_order)

/* The first line of a command's output, or "" (trailing newline cut). */
static void command_line(const char *cmd, char *out, size_t len)
{
    out[0] = '\0';
    FILE *p = popen(cmd, "r");
    if (!p)
        return;
    if (!fgets(out, (int)len, p))
        out[0] = '\0';
    pclose(p);
    out[strcspn(out, "\n")] = '\0';
}

/* The value of the first line of file that starts with key, or "". */
static void file_field(const char *file, const char *key, char *out, size_t len)
{
    char line[512];
    out[0] = '\0';
    FILE *f = fopen(file, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0) {
            char *v = strchr(line, ':');
            v = v ? v + 1 : line + strlen(key);
            v += strspn(v, " \t");
            v[strcspn(v, "\n")] = '\0';
            snprintf(out, len, "%s", v);
            break;
        }
    fclose(f);
}

static void machine(const struct bench_plan *plan, FILE *f)
{
    char cpu[256], mem[64], go[128], py[128], day[32];
    struct utsname u;
    file_field("/proc/cpuinfo", "model name", cpu, sizeof cpu);
    file_field("/proc/meminfo", "MemTotal", mem, sizeof mem);
    command_line("go version 2>/dev/null", go, sizeof go);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "'%s' --version 2>&1", bench_python());
    command_line(cmd, py, sizeof py);
    if (uname(&u) < 0)
        snprintf(u.release, sizeof u.release, "?");
    time_t now = time(NULL);
    strftime(day, sizeof day, "%Y-%m-%d", gmtime(&now));
    fprintf(f,
            "Machine: %s, %u online CPUs, %.0f GiB; Linux %s; weft-bench "
            "built by gcc %s; %s; %s. Run on %s, %s sizes.\n",
            cpu[0] ? cpu : "unknown CPU", plan->cpus,
            strtod(mem, NULL) / 1048576.0, u.release, __VERSION__,
            go[0] ? go : "no Go", py[0] ? py : "no Python", day,
            plan->full ? "--full" : "default");
}

static bool mode_used(const struct bench_plan *plan, const char *mode)
{
    for (size_t i = 0; i < plan->nrows; i++)
        if (strcmp(plan->rows[i].cell.mode, mode) == 0)
            return true;
    return false;
}

/* The fastest passing row of mode in r's group, or NULL. */
static const struct bench_row *best(const struct bench_plan *plan,
                                    const struct bench_row *first,
                                    const char *mode)
{
    const struct bench_row *b = NULL;
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *r = &plan->rows[i];
        if (bench_same_group(r, first) && strcmp(r->cell.mode, mode) == 0 &&
            r->ok && r->ns_per_op > 0 && (!b || r->ns_per_op < b->ns_per_op))
            b = r;
    }
    return b;
}

/* A Markdown table cell: '|' would end it. */
static void cell_text(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc(*s == '|' ? '/' : *s, f);
}

static void summary(const struct bench_plan *plan, FILE *f)
{
    bool used[NMODES];
    fprintf(f, "| workload: table | op |");
    for (size_t m = 0; m < NMODES; m++)
        if ((used[m] = mode_used(plan, mode_order[m])))
            fprintf(f, " %s |", mode_order[m]);
    fprintf(f, "\n|---|---|");
    for (size_t m = 0; m < NMODES; m++)
        if (used[m])
            fprintf(f, "---:|");
    fprintf(f, "\n");
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *r = &plan->rows[i];
        if (!bench_first_of_group(plan, i))
            continue;
        fprintf(f, "| %s: ", r->wl->name);
        cell_text(f, r->group);
        fprintf(f, " | ");
        cell_text(f, r->wl->op);
        fprintf(f, " |");
        for (size_t m = 0; m < NMODES; m++) {
            if (!used[m])
                continue;
            const struct bench_row *b = best(plan, r, mode_order[m]);
            if (b)
                fprintf(f,
                        b->ns_per_op >= 100 ? " %.0f (%uw) |" : " %.3g (%uw) |",
                        b->ns_per_op, b->cell.workers);
            else
                fprintf(f, " |");
        }
        fprintf(f, "\n");
    }
    fprintf(f, "\nEach cell: the fastest passing row of that mode in the "
               "table (lower is better) and its workers (threads, "
               "processes) as `(Nw)`; the full tables have every row, its "
               "size and its notes.\n");
}

/* The plots, shown (all), or the scaling plots shown and the others as
 * a list of links (!all: the README, where two dozen would drown it). */
static void plots(const struct bench_plan *plan, const char *prefix, bool all,
                  FILE *f)
{
    struct bench_plot p[BENCH_PLOTS_MAX];
    size_t n = bench_plot_files(plan, p, BENCH_PLOTS_MAX);
    for (size_t i = 0; i < n; i++) {
        if (!all && !p[i].scaling)
            continue;
        fprintf(f, "![%s](%s%s)\n\n`%s`: ", p[i].name, prefix, p[i].name,
                p[i].name);
        cell_text(f, p[i].title);
        fprintf(f, "\n\n");
    }
    for (size_t i = 0; i < n && !all; i++)
        if (!p[i].scaling) {
            fprintf(f, "- [`%s`](%s%s): ", p[i].name, prefix, p[i].name);
            cell_text(f, p[i].title);
            fprintf(f, "\n");
        }
}

static void every_table(const struct bench_plan *plan, FILE *f)
{
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *g = &plan->rows[i];
        if (!bench_first_of_group(plan, i))
            continue;
        fprintf(f, "### %s: ", g->wl->name);
        cell_text(f, g->group);
        fprintf(f,
                "\n\n%s\n\n| mode | workers | n | ns/op | ratio | "
                "speedup | RSS MiB | check | note |\n"
                "|---|---:|---:|---:|---:|---:|---:|---|---|\n",
                g->wl->op);
        for (size_t j = i; j < plan->nrows; j++) {
            const struct bench_row *r = &plan->rows[j];
            if (!bench_same_group(r, g))
                continue;
            fprintf(f, "| %s | %u | %llu | %.1f | ", r->cell.mode,
                    r->cell.workers, (unsigned long long)r->cell.n,
                    r->ns_per_op);
            if (r->ratio > 0)
                fprintf(f, "%.2f", r->ratio);
            fprintf(f, " | ");
            if (r->speedup > 0)
                fprintf(f, "%.2f", r->speedup);
            fprintf(f, " | %.1f | %s | ", (double)r->rss_kib / 1024.0,
                    r->ok ? "ok" : r->status);
            cell_text(f, r->note);
            fprintf(f, " |\n");
        }
        fprintf(f, "\n");
    }
}

int bench_report_markdown(const struct bench_plan *plan, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    fprintf(f, "# weft-bench results\n\n");
    machine(plan, f);
    fprintf(f, "\nratio: a row's ns/op over its table's weft row with the "
               "most workers; speedup: the same mode's 1-worker ns/op over "
               "the row's.\n\n## Summary\n\n");
    summary(plan, f);
    fprintf(f, "\n## Plots\n\n");
    plots(plan, "", true, f);
    fprintf(f, "## Every table\n\n");
    every_table(plan, f);
    fprintf(f, "## Targets\n\n```\n");
    bench_targets_print(plan, f);
    fprintf(f, "```\n");
    if (fclose(f) != 0)
        return -errno;
    return 0;
}

/* The whole of a file, NUL-terminated, or NULL with errno set. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0, k;
    char *buf = malloc(cap);
    while (buf && (k = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += k;
        if (len + 1 == cap) {
            char *more = realloc(buf, cap *= 2);
            if (!more)
                free(buf);
            buf = more;
        }
    }
    int err = !buf ? ENOMEM : ferror(f) ? EIO : 0;
    fclose(f);
    if (err) {
        free(buf);
        errno = err;
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* dir as a link from the folder of file: relative when dir lies under
 * it, else absolute; with a trailing slash. */
static void link_prefix(const char *file, const char *dir, char *out,
                        size_t len)
{
    char base[PATH_MAX], target[PATH_MAX];
    snprintf(base, sizeof base, "%s", file);
    char *slash = strrchr(base, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(base, sizeof base, ".");
    char *b = realpath(base, NULL), *t = realpath(dir, NULL);
    snprintf(target, sizeof target, "%s", t ? t : dir);
    size_t k = b ? strlen(b) : 0;
    if (b && strncmp(target, b, k) == 0 && target[k] == '/')
        snprintf(out, len, "%s/", target + k + 1);
    else
        snprintf(out, len, "%s/", target);
    free(b);
    free(t);
}

int bench_report_readme(const struct bench_plan *plan, const char *readme,
                        const char *out_dir)
{
    char *text = slurp(readme);
    if (!text)
        return -errno;
    char *begin = strstr(text, README_BEGIN);
    char *end = begin ? strstr(begin, README_END) : NULL;
    if (!begin || !end) {
        free(text);
        return -EBADMSG; /* the markers are missing */
    }
    begin = strchr(begin, '\n');
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", readme);
    FILE *f = fopen(tmp, "w");
    if (!f || !begin) {
        int err = f ? -EINVAL : -errno;
        if (f)
            fclose(f);
        free(text);
        return err;
    }
    char prefix[PATH_MAX + 2];
    link_prefix(readme, out_dir, prefix, sizeof prefix);
    fwrite(text, 1, (size_t)(begin + 1 - text), f);
    fprintf(f, "\n");
    machine(plan, f);
    fprintf(f, "\n");
    summary(plan, f);
    fprintf(f,
            "\nEvery row, its notes and the targets: [%sresults.md]"
            "(%sresults.md); the CSV: `%sresults.csv`.\n\n",
            prefix, prefix, prefix);
    plots(plan, prefix, false, f);
    fprintf(f, "\n");
    fputs(end, f);
    free(text);
    if (fclose(f) != 0 || rename(tmp, readme) < 0)
        return -errno;
    return 0;
}
