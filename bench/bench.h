/* weft-bench: one workload, many ways of running it (DESIGN.md section 7).
 *
 * A *cell* is one workload run one way: a mode (weft coroutines, a thread
 * per unit, a thread pool, a process per unit, a process pool, or a Go or
 * Python reference) with a worker count and a size. Each cell runs in a
 * process of its own, verifies its answer, and prints one line:
 *
 *   RESULT workload=fib mode=weft workers=2 n=30 ns_per_op=45.1
 *          rss_kib=9000 check=ok tasks=2692537 ...
 *
 * The driver (driver.c) re-executes this program once per cell, reads that
 * line, takes the cell's peak RSS from wait4(), and prints the tables, the
 * CSV and the targets. Everything here is single-purpose benchmark code:
 * a failure prints why and fails the cell, it never tries to recover.
 */
#ifndef WEFT_BENCH_BENCH_H
#define WEFT_BENCH_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft.h"

/* One cell's parameters, as given on the command line. */
struct bench_cell {
    const char *workload;
    const char *mode;
    unsigned workers; /* weft workers, pool threads/processes, GOMAXPROCS */
    uint64_t n;       /* problem size; its meaning is the workload's */
    unsigned cutoff;  /* fib: at or below this n compute serially; 0 none */
    unsigned parties; /* yield: tasks taking turns (1 or 2); timer: busy
                         tasks beside the sleeper; pingpong: the primitive
                         (1 events, 2 one-slot queues); lock, lock_yield:
                         tasks, threads or processes sharing the lock;
                         else 0 */
};

#define BENCH_EXTRA_MAX 512

/* What a cell measured. extra holds " key=value" pairs that follow the
 * fixed keys of the RESULT line. */
struct bench_result {
    double ns_per_op;
    bool ok;
    char extra[BENCH_EXTRA_MAX];
};

struct bench_plan;

/* A workload, one per bench/<name>.c. */
struct bench_workload {
    const char *name;
    /* What one op is, for the table titles. */
    const char *op;
    /* Keys of the RESULT line beyond the fixed ones that the tables show
     * as columns, separated by spaces ("wall_ms spawn_ms"); NULL: none. */
    const char *columns;
    /* Run one cell of a C mode in this process. Returns 0 with res filled
     * in (res->ok false for a wrong answer), -ENOTSUP for a mode this
     * workload has no C implementation of, or another -errno. */
    int (*run)(const struct bench_cell *cell, struct bench_result *res);
    /* The default size for a cell that gave no --n. */
    uint64_t (*default_n)(const struct bench_cell *cell, bool full);
    /* Add the cells of the default run to plan. */
    void (*plan)(struct bench_plan *plan);
    /* Whether run() runs the Go and Python modes too: echo and mixed
     * start those references as servers and drive them from C. Otherwise
     * a reference cell is the reference program itself, exec'd. */
    bool runs_refs;
};

extern const struct bench_workload bench_yield;
extern const struct bench_workload bench_switch;
extern const struct bench_workload bench_spawn;
extern const struct bench_workload bench_fib;
extern const struct bench_workload bench_idle;
extern const struct bench_workload bench_sleepers;
extern const struct bench_workload bench_timer;
extern const struct bench_workload bench_pingpong;
extern const struct bench_workload bench_lock;
extern const struct bench_workload bench_lock_yield;
extern const struct bench_workload bench_echo;
extern const struct bench_workload bench_mixed;

/* The workloads in run order, NULL-terminated. */
extern const struct bench_workload *const bench_workloads[];

const struct bench_workload *bench_workload_find(const char *name);

/* ---------------------------------------------------------------------------
 * Plans (driver.c): the cells of a default run. */

/* Add a cell to the group named group ("parties=2", "fib(40) cutoff 20").
 * Rows of one group share a table and a baseline. note, if not NULL, says
 * why the cell differs from the others (a smaller n). A cell whose mode
 * was not selected with --modes is dropped; a cell of a reference that is
 * missing becomes a note. */
void bench_plan_add(struct bench_plan *plan, const char *group,
                    const char *mode, unsigned workers, uint64_t n,
                    unsigned cutoff, unsigned parties, const char *note);

/* A line printed under the group's table (a skipped mode and why). */
__attribute__((format(printf, 3, 4))) void
bench_plan_note(struct bench_plan *plan, const char *group, const char *fmt,
                ...);

/* Whether --full was given. */
bool bench_plan_full(const struct bench_plan *plan);

/* The worker counts to run weft and Go with: 1, 2 and the number of online
 * CPUs, without duplicates, ascending. Returns how many (1 to 3). */
unsigned bench_plan_worker_counts(const struct bench_plan *plan,
                                  unsigned out[3]);

/* The worker counts of a scaling series (fib and spawn, weft and Go): 1,
 * the powers of two below the number of online CPUs, and that number; with
 * --full, every count up to 16 and then the powers of two. Returns how
 * many (at most BENCH_SCALE_MAX), ascending. */
/* The group of the observability overhead, in yield and spawn: weft (the
 * hooks compiled in and off), weft-noobs (weft-bench-noobs: compiled out)
 * and weft-trace (WEFT_TRACE on), each at 1 worker with n tasks or yields,
 * an n whose trace fits the buffers (a million events a worker). */
#define BENCH_OBS_GROUP                                                        \
    "observability: hooks off, compiled out, and WEFT_TRACE on"
void bench_plan_observability(struct bench_plan *plan, uint64_t n,
                              unsigned parties);

#define BENCH_SCALE_MAX 32
unsigned bench_plan_scaling_counts(const struct bench_plan *plan,
                                   unsigned out[BENCH_SCALE_MAX]);

/* ---------------------------------------------------------------------------
 * The Go and Python references (ref.c). */

/* Whether mode is go, asyncio or uvloop. */
bool bench_mode_is_ref(const char *mode);
/* The Python the references run with: $WEFT_BENCH_PYTHON, else
 * /usr/bin/python3 (Debian's, which has python3-uvloop). */
const char *bench_python(void);
/* Whether the reference for cell exists; if not, writes why to why. */
bool bench_ref_available(const struct bench_cell *cell, char *why, size_t len);
/* Fill argv (room for 16; the last 2 are free for a workload's own
 * options) with the command of cell, in buf (buf[6] and buf[7] free). */
void bench_ref_argv(const struct bench_cell *cell, char *argv[16],
                    char buf[8][256]);

/* ---------------------------------------------------------------------------
 * Helpers for the cells (util.c). */

/* Online CPUs (at least 1). */
unsigned bench_cpus(void);

/* The path of weft-bench-noobs, the copy of weft-bench built without the
 * observability hooks, beside weft-bench (the caller); false if it is not
 * there. */
bool bench_noobs_path(char *path, size_t len);

/* Monotonic clock, nanoseconds. */
int64_t bench_now_ns(void);

/* CPU time of the whole process (every thread), nanoseconds. */
int64_t bench_cpu_ns(void);

/* Append " key=value" to res->extra. */
__attribute__((format(printf, 2, 3))) void bench_extra(struct bench_result *res,
                                                       const char *fmt, ...);

/* Print the RESULT line of cell, with this process's peak RSS (its own or
 * its largest waited-for child's, whichever is larger). */
void bench_result_print(const struct bench_cell *cell,
                        const struct bench_result *res);

/* Make a weft runtime with the given number of workers; on failure print
 * why and return NULL. */
weft_runtime *bench_weft_new(unsigned workers);

/* Run fn(arg) as a task of a fresh runtime of `workers` workers. Stores
 * its result in *result and the wall time of weft_runtime_run in *ns (each
 * may be NULL), and adds the counters that tell what the scheduler did to
 * res's extras (if res is not NULL). Returns 0 or -errno. */
int bench_weft_run(unsigned workers, weft_fn fn, void *arg, void **result,
                   int64_t *ns, struct bench_result *res);

/* Pin the calling thread to the first CPU it may run on, so that two
 * threads (or processes) pinned this way take turns on one core. Returns 0
 * or -errno. */
int bench_pin_first_cpu(void);

/* Print "weft-bench: <what>: <strerror(-err)>" to stderr. */
void bench_perror(const char *what, int err);

/* Write or read exactly len bytes, retrying short transfers and EINTR.
 * Return 0, -errno, or -EPIPE at end of file. */
int bench_write_full(int fd, const void *buf, size_t len);
int bench_read_full(int fd, void *buf, size_t len);

/* ---------------------------------------------------------------------------
 * A plain thread pool (pool.c): a mutex-protected FIFO of jobs, N threads,
 * and a future per job. What most programs write when they need one. */

struct bench_job {
    void *(*fn)(void *arg);
    void *arg;
    void *result;           /* written by the pool thread before done */
    bool done;              /* under the pool's lock; read atomically */
    struct bench_job *next; /* queue link, under the pool's lock */
};

struct bench_pool;

/* Start threads pool threads. Returns NULL and prints why on failure. */
struct bench_pool *bench_pool_new(unsigned threads);

/* Queue job (the caller's storage, untouched until joined). */
void bench_pool_submit(struct bench_pool *pool, struct bench_job *job);

/* Wait for job and return its result. */
void *bench_pool_join(struct bench_pool *pool, struct bench_job *job);

/* Stop the threads once the queue is empty, and free the pool. */
void bench_pool_free(struct bench_pool *pool);

/* Run fn(arg_of(i, ctx)) for every i < n on a new pool of `threads`, all
 * submitted before the first is joined, and add the results (as integers)
 * to *sum. Returns 0, -ENOMEM or -EAGAIN (no pool). */
int bench_pool_sum(unsigned threads, size_t n, void *(*fn)(void *),
                   void *(*arg_of)(size_t i, const void *ctx), const void *ctx,
                   uint64_t *sum);

/* ---------------------------------------------------------------------------
 * A process pool (procpool.c): N forked workers, each reading requests
 * (a length and bytes) from a pipe and answering each with one uint64_t. */

typedef uint64_t (*bench_procpool_fn)(const void *req, size_t len);

struct bench_procpool;

/* Fork `workers` processes running fn. Returns NULL and prints why. */
struct bench_procpool *bench_procpool_new(unsigned workers,
                                          bench_procpool_fn fn);

/* Send one request to worker w. Returns 0 or -errno. */
int bench_procpool_send(struct bench_procpool *pp, unsigned w, const void *req,
                        uint32_t len);

/* Read worker w's next answer. Returns 0 or -errno (-EPIPE: it died). */
int bench_procpool_recv(struct bench_procpool *pp, unsigned w,
                        uint64_t *answer);

/* Close the pipes and reap the workers. Returns 0 if every worker exited
 * with status 0, else -ECHILD. */
int bench_procpool_free(struct bench_procpool *pp);

#endif /* WEFT_BENCH_BENCH_H */
