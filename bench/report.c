/* The tables printed after each workload, and the CSV of every row. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench/driver.h"

const struct bench_row *bench_report_baseline(const struct bench_plan *plan,
                                              const char *group,
                                              const struct bench_workload *wl)
{
    const struct bench_row *best = NULL;
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *r = &plan->rows[i];
        if (r->wl != wl || strcmp(r->group, group) != 0 ||
            strcmp(r->cell.mode, "weft") != 0 || r->cell.workers > plan->cpus)
            continue;
        if (!best || r->cell.workers > best->cell.workers)
            best = r;
    }
    return best;
}

static void format_n(uint64_t n, char *s, size_t len)
{
    if (n >= 1000000 && n % 1000000 == 0)
        snprintf(s, len, "%lluM", (unsigned long long)(n / 1000000));
    else if (n >= 10000 && n % 1000 == 0)
        snprintf(s, len, "%lluk", (unsigned long long)(n / 1000));
    else
        snprintf(s, len, "%llu", (unsigned long long)n);
}

/* The next key of a workload's columns list at *p, copied to key;
 * false at the end of the list. */
static bool next_column(const char **p, char *key, size_t len)
{
    while (**p == ' ')
        ++*p;
    size_t k = strcspn(*p, " ");
    if (k == 0)
        return false;
    snprintf(key, len, "%.*s", (int)k, *p);
    *p += k;
    return true;
}

static int column_width(const char *key)
{
    int len = (int)strlen(key);
    return len < 8 ? 8 : len;
}

/* The workload's extra columns: their names (r NULL) or r's values. */
static void print_columns(const struct bench_workload *wl,
                          const struct bench_row *r, FILE *f)
{
    char key[64], val[64];
    for (const char *p = wl->columns; p && next_column(&p, key, sizeof key);) {
        if (!r)
            snprintf(val, sizeof val, "%s", key);
        else if (!r->ok || !bench_line_get(r->line, key, val, sizeof val))
            snprintf(val, sizeof val, "-");
        fprintf(f, " %*s", column_width(key), val);
    }
}

static void print_row(const struct bench_row *r, bool speedups, FILE *f)
{
    char n[32], ratio[32], speedup[32];
    format_n(r->cell.n, n, sizeof n);
    if (r->ratio > 0)
        snprintf(ratio, sizeof ratio, "%.2fx", r->ratio);
    else
        snprintf(ratio, sizeof ratio, "-");
    if (r->speedup > 0)
        snprintf(speedup, sizeof speedup, "%.2f", r->speedup);
    else
        snprintf(speedup, sizeof speedup, "-");
    char others[16] = "-";
    if (r->others_pct >= 0)
        snprintf(others, sizeof others, "%.0f%s", r->others_pct,
                 r->others_pct > BENCH_NOISY_PCT ? "!" : "");
    fprintf(f, "  %-11s %7u %8s %12.1f %9.1f %7s %9s", r->cell.mode,
            r->cell.workers, n, r->ns_per_op, (double)r->rss_kib / 1024.0,
            others, ratio);
    if (speedups)
        fprintf(f, " %7s", speedup);
    print_columns(r->wl, r, f);
    fprintf(f, "  %-6s %s\n", r->ok ? "ok" : r->status, r->note);
}

static void print_group(const struct bench_plan *plan,
                        const struct bench_workload *wl, const char *group,
                        FILE *f)
{
    const struct bench_row *base = bench_report_baseline(plan, group, wl);
    bool speedups = false;
    for (size_t i = 0; i < plan->nrows; i++)
        if (plan->rows[i].wl == wl && plan->rows[i].speedup > 0 &&
            strcmp(plan->rows[i].group, group) == 0)
            speedups = true;
    fprintf(f, "== %s: %s ==\n", wl->name, group);
    fprintf(f, "  %-11s %7s %8s %12s %9s %7s %9s", "mode", "workers", "n",
            "ns/op", "rss MiB", "others%", "ratio");
    if (speedups)
        fprintf(f, " %7s", "speedup");
    print_columns(wl, NULL, f);
    fprintf(f, "  %-6s %s\n", "check", "note");
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *r = &plan->rows[i];
        if (r->wl == wl && strcmp(r->group, group) == 0)
            print_row(r, speedups, f);
    }
    if (base)
        fprintf(f, "  (op: %s; ratio: to weft %uw", wl->op, base->cell.workers);
    else
        fprintf(f, "  (op: %s; ratio: none, no weft row", wl->op);
    fprintf(f, ")\n");
    if (speedups)
        fprintf(f, "  (speedup: the same mode's 1-worker ns/op over this "
                   "row's)\n");
    for (size_t i = 0; i < plan->nnotes; i++)
        if (plan->notes[i].wl == wl && strcmp(plan->notes[i].group, group) == 0)
            fprintf(f, "  note: %s\n", plan->notes[i].text);
    fprintf(f, "\n");
}

/* Whether group already appeared before row or note index `upto`. */
static bool seen_group(const struct bench_plan *plan,
                       const struct bench_workload *wl, const char *group,
                       size_t rows_upto)
{
    for (size_t i = 0; i < rows_upto; i++)
        if (plan->rows[i].wl == wl && strcmp(plan->rows[i].group, group) == 0)
            return true;
    return false;
}

bool bench_same_group(const struct bench_row *a, const struct bench_row *b)
{
    return a->wl == b->wl && strcmp(a->group, b->group) == 0;
}

bool bench_first_of_group(const struct bench_plan *plan, size_t i)
{
    return !seen_group(plan, plan->rows[i].wl, plan->rows[i].group, i);
}

void bench_report_group_tables(const struct bench_plan *plan,
                               const struct bench_workload *wl, FILE *f)
{
    for (size_t i = 0; i < plan->nrows; i++)
        if (plan->rows[i].wl == wl &&
            !seen_group(plan, wl, plan->rows[i].group, i))
            print_group(plan, wl, plan->rows[i].group, f);
    /* Groups whose every mode was skipped still show their notes. */
    for (size_t i = 0; i < plan->nnotes; i++) {
        const struct bench_note *n = &plan->notes[i];
        if (n->wl != wl || seen_group(plan, wl, n->group, plan->nrows))
            continue;
        bool first = true;
        for (size_t j = 0; j < i; j++)
            if (plan->notes[j].wl == wl &&
                strcmp(plan->notes[j].group, n->group) == 0)
                first = false;
        if (first)
            fprintf(f, "== %s: %s == (no rows)\n", wl->name, n->group);
        fprintf(f, "  note: %s\n", n->text);
    }
}

/* A CSV field, quoted when it holds a comma or a quote. */
static void csv_field(FILE *f, const char *s, bool last)
{
    if (strpbrk(s, ",\"")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"')
                fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
    fputc(last ? '\n' : ',', f);
}

int bench_report_csv(const struct bench_plan *plan, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    fprintf(f, "workload,group,mode,workers,n,cutoff,parties,ns_per_op,"
               "rss_kib,check,ratio,speedup,runs,others_cpu_pct,note,extra\n");
    for (size_t i = 0; i < plan->nrows; i++) {
        const struct bench_row *r = &plan->rows[i];
        csv_field(f, r->cell.workload, false);
        csv_field(f, r->group, false);
        csv_field(f, r->cell.mode, false);
        fprintf(f, "%u,%llu,%u,%u,%.3f,%ld,", r->cell.workers,
                (unsigned long long)r->cell.n, r->cell.cutoff, r->cell.parties,
                r->ns_per_op, r->rss_kib);
        csv_field(f, r->ok ? "ok" : r->status, false);
        fprintf(f, "%.4f,%.4f,%u,%.1f,", r->ratio, r->speedup, r->runs,
                r->others_pct);
        csv_field(f, r->note, false);
        csv_field(f, r->extra, true);
    }
    if (fclose(f) != 0)
        return -errno;
    return 0;
}
