/* The default run: plan every cell, run each in a child process, print
 * each RESULT line as it comes and each workload's tables when it is done,
 * then the CSV, the plots and the targets.
 *
 * A cell is run up to --repeat times (default 3) while its runs so far
 * took under REPEAT_BUDGET_S, and the fastest run is kept: short cells are
 * noisy, long ones are not worth repeating. A cell fails if any run exits
 * non-zero, prints check=FAIL, dies or times out; the driver then exits 1
 * at the end. A missing reference is a note, never a failure.
 */
#include "bench/driver.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REPEAT_BUDGET_S 3.0

bool bench_list_has(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; p && *p;) {
        size_t k = strcspn(p, ",");
        if (k == len && strncmp(p, name, len) == 0)
            return true;
        p += k + (p[k] == ',');
    }
    return false;
}

/* ---------------------------------------------------------------------------
 * The plan */

static void *grow(void *p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return p;
    *cap = *cap ? *cap * 2 : 64;
    p = realloc(p, *cap * size);
    if (!p) {
        fprintf(stderr, "weft-bench: out of memory\n");
        exit(3);
    }
    return p;
}

void bench_plan_note(struct bench_plan *plan, const char *group,
                     const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < plan->nnotes; i++)
        if (plan->notes[i].wl == plan->wl &&
            strcmp(plan->notes[i].group, group) == 0 &&
            strcmp(plan->notes[i].text, text) == 0)
            return;
    plan->notes =
        grow(plan->notes, &plan->notes_cap, plan->nnotes, sizeof *plan->notes);
    struct bench_note *n = &plan->notes[plan->nnotes++];
    n->wl = plan->wl;
    snprintf(n->group, sizeof n->group, "%s", group);
    snprintf(n->text, sizeof n->text, "%s", text);
}

void bench_plan_add(struct bench_plan *plan, const char *group,
                    const char *mode, unsigned workers, uint64_t n,
                    unsigned cutoff, unsigned parties, const char *note)
{
    if (plan->modes && !bench_list_has(plan->modes, mode))
        return;
    struct bench_cell cell = {plan->wl->name, mode,   workers, n,
                              cutoff,         parties};
    char why[256];
    if (bench_mode_is_ref(mode) &&
        !bench_ref_available(&cell, why, sizeof why)) {
        bench_plan_note(plan, group, "%s", why);
        return;
    }
    plan->rows = grow(plan->rows, &plan->cap, plan->nrows, sizeof *plan->rows);
    struct bench_row *r = &plan->rows[plan->nrows++];
    memset(r, 0, sizeof *r);
    r->cell = cell;
    r->wl = plan->wl;
    snprintf(r->group, sizeof r->group, "%s", group);
    snprintf(r->note, sizeof r->note, "%s", note ? note : "");
}

bool bench_plan_full(const struct bench_plan *plan)
{
    return plan->full;
}

unsigned bench_plan_worker_counts(const struct bench_plan *plan,
                                  unsigned out[3])
{
    unsigned k = 0;
    out[k++] = 1;
    if (plan->cpus >= 2)
        out[k++] = 2;
    if (plan->cpus > 2)
        out[k++] = plan->cpus;
    return k;
}

unsigned bench_plan_scaling_counts(const struct bench_plan *plan,
                                   unsigned out[BENCH_SCALE_MAX])
{
    unsigned k = 0;
    for (unsigned n = 1; n < plan->cpus && k < BENCH_SCALE_MAX - 1;
         n = plan->full && n < 16 ? n + 1 : n * 2)
        out[k++] = n;
    out[k++] = plan->cpus;
    return k;
}

void bench_plan_observability(struct bench_plan *plan, uint64_t n,
                              unsigned parties)
{
    const char *group = BENCH_OBS_GROUP;
    bench_plan_add(plan, group, "weft", 1, n, 0, parties,
                   "hooks compiled in, off");
    char noobs[512];
    if (bench_noobs_path(noobs, sizeof noobs))
        bench_plan_add(plan, group, "weft-noobs", 1, n, 0, parties,
                       "hooks compiled out (WEFT_OBSERVE=0)");
    else
        bench_plan_note(plan, group,
                        "weft-noobs: skipped, weft-bench-noobs is not built");
    bench_plan_add(plan, group, "weft-trace", 1, n, 0, parties,
                   "WEFT_TRACE on; trace_mib: the file");
}

/* ---------------------------------------------------------------------------
 * Running the rows */

static void cell_argv(const struct bench_cell *c, const char *self,
                      char *argv[16], char buf[8][256])
{
    const struct bench_workload *wl = bench_workload_find(c->workload);
    if (bench_mode_is_ref(c->mode) && !(wl && wl->runs_refs)) {
        bench_ref_argv(c, argv, buf);
        return;
    }
    snprintf(buf[2], sizeof buf[2], "%u", c->workers);
    snprintf(buf[3], sizeof buf[3], "%llu", (unsigned long long)c->n);
    snprintf(buf[4], sizeof buf[4], "%u", c->cutoff);
    snprintf(buf[5], sizeof buf[5], "%u", c->parties);
    char *v[] = {(char *)self, (char *)c->workload,
                 "--mode",     (char *)c->mode,
                 "--workers",  buf[2],
                 "--n",        buf[3],
                 "--cutoff",   buf[4],
                 "--parties",  buf[5],
                 NULL};
    memcpy(argv, v, sizeof v);
}

static void describe_exit(const struct bench_child *ch, char *s, size_t len)
{
    if (ch->timed_out)
        snprintf(s, len, "timeout");
    else if (WIFSIGNALED(ch->status))
        snprintf(s, len, "signal %d", WTERMSIG(ch->status));
    else if (WIFEXITED(ch->status) && WEXITSTATUS(ch->status) != 0 &&
             WEXITSTATUS(ch->status) != 1)
        snprintf(s, len, "exit %d", WEXITSTATUS(ch->status));
    else if (!ch->line[0])
        snprintf(s, len, "no RESULT");
    else
        snprintf(s, len, "FAIL");
}

/* Keep the keys of line beyond the fixed ones in extra. */
static void keep_extra(const char *line, char *extra, size_t len)
{
    static const char *const fixed[] = {
        "RESULT",    "workload", "mode",          "workers", "n",
        "ns_per_op", "rss_kib",  "check",         "cutoff",  "parties",
        "runs",      "speedup",  "others_cpu_pct"};
    char buf[BENCH_LINE_MAX];
    snprintf(buf, sizeof buf, "%s", line);
    extra[0] = '\0';
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
        size_t klen = strcspn(tok, "=");
        bool skip = false;
        for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
            if (strlen(fixed[i]) == klen && strncmp(tok, fixed[i], klen) == 0)
                skip = true;
        if (!skip) {
            size_t used = strlen(extra);
            snprintf(extra + used, len - used, "%s%s", used ? " " : "", tok);
        }
    }
}

/* One run of row r. Returns false if it failed (r->status says how). */
static bool run_once(struct bench_row *r, const char *self, double timeout_s)
{
    char *argv[16], buf[8][256], val[64];
    struct bench_child ch;
    cell_argv(&r->cell, self, argv, buf);
    int err = bench_child_run(argv, timeout_s, &ch);
    r->runs++;
    if (err < 0) {
        snprintf(r->status, sizeof r->status, "fork: %s", strerror(-err));
        return false;
    }
    r->wall_s += ch.wall_s;
    if (ch.maxrss_kib > r->rss_kib)
        r->rss_kib = ch.maxrss_kib;
    bool ok = !ch.timed_out && WIFEXITED(ch.status) &&
              WEXITSTATUS(ch.status) == 0 &&
              bench_line_get(ch.line, "check", val, sizeof val) &&
              strcmp(val, "ok") == 0;
    double ns = 0;
    if (bench_line_get(ch.line, "ns_per_op", val, sizeof val))
        ns = strtod(val, NULL);
    if (!ok) {
        describe_exit(&ch, r->status, sizeof r->status);
        if (ch.line[0])
            snprintf(r->line, sizeof r->line, "%s", ch.line);
        r->ns_per_op = ns;
        return false;
    }
    if (r->runs == 1 || ns < r->ns_per_op) {
        r->ns_per_op = ns;
        r->others_pct = ch.others_pct;
        snprintf(r->line, sizeof r->line, "%s", ch.line);
    }
    return true;
}

/* The 1-worker row of the same group, mode and size as r, if r has more
 * workers and is a weft or Go row of fib or spawn. */
static const struct bench_row *one_worker_row(const struct bench_plan *plan,
                                              const struct bench_row *r)
{
    if (r->cell.workers < 2 ||
        (strcmp(r->cell.mode, "weft") != 0 && strcmp(r->cell.mode, "go") != 0))
        return NULL;
    if (r->wl != &bench_fib && r->wl != &bench_spawn)
        return NULL;
    for (const struct bench_row *o = plan->rows; o < r; o++)
        if (o->wl == r->wl && o->cell.workers == 1 && o->ok &&
            strcmp(o->group, r->group) == 0 &&
            strcmp(o->cell.mode, r->cell.mode) == 0 && o->cell.n == r->cell.n &&
            o->cell.cutoff == r->cell.cutoff)
            return o;
    return NULL;
}

/* Rewrite r->line with the wait4() RSS and the driver's figures. */
static void finish_line(const struct bench_plan *plan, struct bench_row *r)
{
    char out[BENCH_LINE_MAX];
    size_t used = 0;
    char buf[BENCH_LINE_MAX];
    snprintf(buf, sizeof buf, "%s", r->line);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
        if (strncmp(tok, "rss_kib=", 8) == 0)
            used +=
                (size_t)snprintf(out + used, sizeof out - used, "%srss_kib=%ld",
                                 used ? " " : "", r->rss_kib);
        else
            used += (size_t)snprintf(out + used, sizeof out - used, "%s%s",
                                     used ? " " : "", tok);
        if (used >= sizeof out)
            break;
    }
    const struct bench_row *one = one_worker_row(plan, r);
    if (one && r->ok && r->ns_per_op > 0) {
        r->speedup = one->ns_per_op / r->ns_per_op;
        used += (size_t)snprintf(out + used, sizeof out - used, " speedup=%.2f",
                                 r->speedup);
    }
    if (used < sizeof out && r->others_pct >= 0)
        used += (size_t)snprintf(out + used, sizeof out - used,
                                 " others_cpu_pct=%.0f", r->others_pct);
    if (used < sizeof out && r->runs > 1)
        snprintf(out + used, sizeof out - used, " runs=%u", r->runs);
    snprintf(r->line, sizeof r->line, "%s", out);
    keep_extra(r->line, r->extra, sizeof r->extra);
}

/* Where the run is, for the progress lines on stderr. */
struct progress {
    size_t cell, cells;           /* this row's index, of plan->nrows */
    unsigned workload, workloads; /* from 1 */
    int64_t start_ns;
};

static void run_row(struct bench_plan *plan, struct bench_row *r,
                    const struct bench_options *opt, const char *self,
                    const struct progress *p)
{
    char parties[32] = "";
    if (r->cell.parties >= 2)
        snprintf(parties, sizeof parties, " parties=%u", r->cell.parties);
    unsigned elapsed = (unsigned)((bench_now_ns() - p->start_ns) / 1000000000);
    fflush(stdout); /* the tables before the progress, when both are one */
    fprintf(stderr,
            "[%u:%02u cell %zu/%zu, workload %u/%u] %s %s workers=%u "
            "n=%llu%s ...",
            elapsed / 60, elapsed % 60, p->cell + 1, p->cells, p->workload,
            p->workloads, r->cell.workload, r->cell.mode, r->cell.workers,
            (unsigned long long)r->cell.n,
            r->cell.cutoff ? " cutoff" : parties);
    fflush(stderr);
    r->ok = true;
    snprintf(r->status, sizeof r->status, "ok");
    do {
        if (!run_once(r, self, opt->timeout_s)) {
            r->ok = false;
            break;
        }
        /* A kept run that others disturbed earns more tries. */
    } while (r->runs < opt->repeat && (r->wall_s < REPEAT_BUDGET_S ||
                                       (r->others_pct > BENCH_NOISY_PCT &&
                                        r->wall_s < 3 * REPEAT_BUDGET_S)));
    if (!r->line[0])
        snprintf(r->line, sizeof r->line,
                 "RESULT workload=%s mode=%s workers=%u n=%llu ns_per_op=0 "
                 "rss_kib=%ld check=FAIL error=%s",
                 r->cell.workload, r->cell.mode, r->cell.workers,
                 (unsigned long long)r->cell.n, r->rss_kib, r->status);
    else if (!r->ok && !strstr(r->line, "check=FAIL"))
        snprintf(r->line + strlen(r->line), sizeof r->line - strlen(r->line),
                 " error=%s", r->status);
    finish_line(plan, r);
    fprintf(stderr, " %.1f %s (%.1f s, %u run%s)%s%s\n", r->ns_per_op,
            r->wl->op, r->wall_s, r->runs, r->runs == 1 ? "" : "s",
            r->ok ? "" : " FAILED: ", r->ok ? "" : r->status);
    printf("%s\n", r->line);
    fflush(stdout);
}

static void compute_ratios(struct bench_plan *plan)
{
    for (size_t i = 0; i < plan->nrows; i++) {
        struct bench_row *r = &plan->rows[i];
        const struct bench_row *base =
            bench_report_baseline(plan, r->group, r->wl);
        r->ratio = base && base->ns_per_op > 0 && r->ok
                       ? r->ns_per_op / base->ns_per_op
                       : 0;
    }
}

static int make_dirs(const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Busy share of all CPUs over the next ms milliseconds (every process,
 * ours too); -1 if it cannot be read. */
static double cpu_busy_pct(unsigned ms)
{
    double b0 = bench_busy_seconds();
    int64_t t0 = bench_now_ns();
    usleep(ms * 1000);
    double b1 = bench_busy_seconds();
    double wall = (double)(bench_now_ns() - t0) / 1e9;
    if (b0 < 0 || b1 < 0)
        return -1;
    return 100.0 * (b1 - b0) / (wall * (double)bench_cpus());
}

/* Say how busy the machine is: others' work makes every figure noisy. */
static void print_load(const char *when)
{
    double busy = cpu_busy_pct(300);
    if (busy < 0)
        return;
    printf("CPU busy %s: %.0f%% of all CPUs%s\n", when, busy,
           busy > 10 ? " -- WARNING: other processes are running, figures "
                       "will be noisy"
                     : "");
}

static void print_header(const struct bench_plan *plan,
                         const struct bench_options *opt)
{
    printf("weft-bench: %u online CPUs; weft and Go run with %s; "
           "%s sizes; best of up to %u runs per cell (while under %.0f s)\n",
           plan->cpus,
           plan->cpus > 2    ? "1, 2 and N workers"
           : plan->cpus == 2 ? "1 and 2 workers"
                             : "1 worker",
           opt->full ? "--full" : "default", opt->repeat, REPEAT_BUDGET_S);
    printf("ratio: a row's ns_per_op over its group's weft row with the most "
           "workers\n(named under each table); below 1 beats weft\n"
           "others%%: CPU that other processes used while the row's kept run "
           "ran, as a\nshare of all CPUs; '!' above %.0f%%: a noisy figure\n"
           "rss MiB: the cell's peak RSS from wait4(); where a mode forks, "
           "its largest\nprocess, not their sum\n",
           BENCH_NOISY_PCT);
    print_load("before the run");
    printf("\n");
}

static bool self_path(char *buf, size_t len)
{
    ssize_t k = readlink("/proc/self/exe", buf, len - 1);
    if (k <= 0)
        return false;
    buf[k] = '\0';
    return true;
}

int bench_driver_main(const struct bench_options *opt)
{
    char self[512];
    if (!self_path(self, sizeof self)) {
        fprintf(stderr, "weft-bench: cannot read /proc/self/exe\n");
        return 3;
    }
    struct bench_plan plan = {
        .full = opt->full, .cpus = bench_cpus(), .modes = opt->modes};
    for (size_t i = 0; bench_workloads[i]; i++) {
        if (opt->only && !bench_list_has(opt->only, bench_workloads[i]->name))
            continue;
        plan.wl = bench_workloads[i];
        plan.wl->plan(&plan);
    }
    print_header(&plan, opt);
    int64_t t0 = bench_now_ns();
    bool all_ok = true;
    struct progress p = {.cells = plan.nrows, .start_ns = t0};
    for (size_t w = 0; bench_workloads[w]; w++)
        p.workloads +=
            !opt->only || bench_list_has(opt->only, bench_workloads[w]->name);
    for (size_t w = 0; bench_workloads[w]; w++) {
        const struct bench_workload *wl = bench_workloads[w];
        if (opt->only && !bench_list_has(opt->only, wl->name))
            continue;
        p.workload++;
        for (size_t i = 0; i < plan.nrows; i++) {
            if (plan.rows[i].wl != wl)
                continue;
            p.cell = i;
            run_row(&plan, &plan.rows[i], opt, self, &p);
            all_ok &= plan.rows[i].ok;
        }
        compute_ratios(&plan);
        printf("\n");
        bench_report_group_tables(&plan, wl, stdout);
    }
    int err = make_dirs(opt->out);
    char csv[600];
    snprintf(csv, sizeof csv, "%s/results.csv", opt->out);
    if (err == 0)
        err = bench_report_csv(&plan, csv);
    if (err < 0)
        fprintf(stderr, "weft-bench: writing %s: %s\n", csv, strerror(-err));
    else
        printf("CSV: %s\n", csv);
    if (opt->plot && err == 0)
        bench_plot(&plan, opt->out, stdout);
    char md[600];
    snprintf(md, sizeof md, "%s/results.md", opt->out);
    if (err == 0 && (err = bench_report_markdown(&plan, md)) < 0)
        fprintf(stderr, "weft-bench: writing %s: %s\n", md, strerror(-err));
    else if (err == 0)
        printf("Markdown: %s\n", md);
    if (err == 0 && opt->readme) {
        err = bench_report_readme(&plan, opt->readme, opt->out);
        if (err == -EBADMSG)
            fprintf(stderr, "weft-bench: --readme %s: no '%s' marker lines\n",
                    opt->readme, "<!-- weft-bench --report: begin/end -->");
        else if (err < 0)
            fprintf(stderr, "weft-bench: --readme %s: %s\n", opt->readme,
                    strerror(-err));
        else
            printf("README: %s, its Results section rewritten\n", opt->readme);
    }
    print_load("after the run");
    size_t noisy = 0;
    for (size_t i = 0; i < plan.nrows; i++)
        noisy += plan.rows[i].others_pct > BENCH_NOISY_PCT;
    if (noisy)
        printf("WARNING: %zu cells ran while other processes used more "
               "than %.0f%% of the CPUs (column others%%): their figures "
               "are noisy\n",
               noisy, BENCH_NOISY_PCT);
    printf("\n");
    bench_targets_print(&plan, stdout);
    printf("\nweft-bench: %zu cells in %.0f s; %s\n", plan.nrows,
           (double)(bench_now_ns() - t0) / 1e9,
           all_ok ? "every check passed" : "SOME CELLS FAILED (see above)");
    free(plan.rows);
    free(plan.notes);
    return all_ok ? 0 : 1;
}
