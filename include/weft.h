/* weft: a work-stealing scheduler of stackful coroutines with asyncio's
 * programming model.
 *
 * This is the one public header. Conventions, for every function below:
 *
 *  - A function that can fail returns 0 (or a count) on success and a
 *    negative errno on failure; weft_strerror() names every code. The few
 *    functions that return a pointer return NULL and set errno, as malloc
 *    does, and say so.
 *  - Times are double seconds, as in asyncio.
 *  - A task body has the pthread signature (weft_fn), so the same function
 *    runs as a thread, in a process or as a coroutine.
 *  - "Suspends" means the call may park the calling task so that its worker
 *    runs something else. Called from a plain thread (not a task) such a
 *    function blocks the thread instead, where the entry says it may.
 *
 * Linking weft links Debian's mimalloc, which replaces malloc process-wide.
 */
#ifndef WEFT_H
#define WEFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WEFT_BUILDING) && defined(__GNUC__)
#define WEFT_API __attribute__((visibility("default")))
#else
#define WEFT_API
#endif

#if defined(__GNUC__)
#define WEFT_NODISCARD __attribute__((warn_unused_result))
#else
#define WEFT_NODISCARD
#endif

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0

/* ---------------------------------------------------------------------------
 * Runtime
 *
 * A runtime owns a set of worker threads, each running coroutines from its
 * own work-stealing deque. weft_runtime_new() starts the workers at once, so
 * tasks spawned into it with weft_spawn_ex() run even before anyone calls
 * weft_runtime_run(); an idle runtime's workers sleep and use no CPU.
 * weft_run() is asyncio.run(): a runtime made, used once and freed.
 */

typedef struct weft_runtime weft_runtime;
typedef struct weft_task weft_task;

/** A task body, with the pthread signature. */
typedef void *(*weft_fn)(void *arg);

/** Runtime configuration. A zeroed struct (or NULL) means defaults. */
typedef struct weft_config {
    /** Worker threads. 0: one per CPU the calling thread may run on
     * (sched_getaffinity, as Go's GOMAXPROCS). At most WEFT_MAX_WORKERS. */
    unsigned workers;
    /** Stack bytes every task is promised. 0: WEFT_STACK_DEFAULT. Rounded
     * up to whole pages; from WEFT_STACK_MIN to WEFT_STACK_MAX. Default-sized
     * stacks reserve twice this much address space (only touched pages use
     * memory) so that a join can run an unstarted child on the joiner's
     * stack while the child still has its full promised size (see
     * weft_join). Below the stack sits a guard page: an overflow prints
     * the task's id, name and stack size, then aborts. The guard is one
     * page: build task code with -fstack-clash-protection so that a frame
     * larger than a page cannot step over it. */
    size_t stack_size;
    /** Bytes of idle stacks each worker keeps for reuse before it hands
     * them back to the shared pool with their memory released.
     * 0: 64 * stack_size (32 default-sized stacks, each of which reserves
     * twice stack_size). */
    size_t stack_cache_bytes;
} weft_config;

#define WEFT_MAX_WORKERS   1024
#define WEFT_STACK_DEFAULT (64 * 1024)
#define WEFT_STACK_MIN     (16 * 1024)
#define WEFT_STACK_MAX     ((size_t)256 * 1024 * 1024 - 4096)

/** Run main(arg) as the first task of a new default runtime, wait for it and
 * for every task it left running, then free the runtime (asyncio.run).
 * Call it from a plain thread. Stores main's return value in *result if
 * result is not NULL. Returns 0, or:
 *   -EINVAL  main is NULL
 *   -EPERM   called from inside a task (use weft_runtime_run instead)
 *   -ENOMEM  the runtime or the first task could not be made
 *   -EAGAIN  the worker threads could not be started
 */
WEFT_API WEFT_NODISCARD int weft_run(weft_fn main, void *arg, void **result);

/** Make a runtime and start its workers (asyncio.new_event_loop). cfg may be
 * NULL. Returns NULL and sets errno on failure: EINVAL for a bad config
 * (too many workers), ENOMEM, or EAGAIN when threads could not be started;
 * nothing is left half-built. */
WEFT_API weft_runtime *weft_runtime_new(const weft_config *cfg);

/** Run fn(arg) as a task of rt and wait for it (loop.run_until_complete).
 * From a plain thread, the thread blocks. From inside a task (of rt or of
 * another runtime) the calling task suspends until fn's task finishes; this
 * never deadlocks. Tasks fn leaves running keep running. Stores fn's return
 * value in *result if result is not NULL. Returns 0, or:
 *   -EINVAL  rt or fn is NULL
 *   -ENOMEM  the task could not be made
 */
WEFT_API WEFT_NODISCARD int weft_runtime_run(weft_runtime *rt, weft_fn fn,
                                             void *arg, void **result);

/** Wait for every task of rt to finish, detached or not, then stop the
 * workers and free rt (loop.close). A task handle is freed only by
 * weft_join or weft_detach, which stay valid after this call (they return
 * at once: the task has finished); a handle neither joined nor detached
 * stays allocated, with a small part of the runtime, as a pthread_t that
 * is never joined does, and LeakSanitizer reports it. Must not be called from a
 * task of rt itself (that could never finish: it aborts with a message); from a
 * task of another runtime it blocks that task's worker. NULL is a no-op. */
WEFT_API void weft_runtime_free(weft_runtime *rt);

/** The runtime of the calling task, or NULL outside a task. */
WEFT_API weft_runtime *weft_runtime_current(void);

/** The number of worker threads of rt (0 if rt is NULL). */
WEFT_API unsigned weft_runtime_workers(const weft_runtime *rt);

/* ---------------------------------------------------------------------------
 * Tasks
 *
 * Every task is joined or detached exactly once; the handle is freed by
 * that call. A task gets its stack when it first runs, so a spawned task
 * that has not started costs only its small task struct.
 */

/** Options for weft_spawn_ex. A zeroed struct (or NULL) means defaults. */
typedef struct weft_task_opts {
    /** Usable stack bytes; 0: the runtime's default. From WEFT_STACK_MIN
     * to WEFT_STACK_MAX, else weft_spawn_ex fails with EINVAL; rounded up
     * to 4 KiB. */
    size_t stack_size;
    /** Name, copied; NULL: unnamed. Shown by weft_all_tasks and in the
     * stack-overflow message. */
    const char *name;
} weft_task_opts;

/** Spawn fn(arg) as a task of the calling task's runtime
 * (asyncio.create_task). Never suspends. Callable from a task only.
 * Returns the handle, or NULL with errno set: EINVAL (fn is NULL), EPERM
 * (not called from a task), ENOMEM. */
WEFT_API WEFT_NODISCARD weft_task *weft_spawn(weft_fn fn, void *arg);

/** Spawn fn(arg) into rt (NULL: the calling task's runtime) with options.
 * Callable from any thread: a task of any runtime, or a plain thread.
 * Returns the handle, or NULL with errno set: EINVAL (fn NULL, no runtime,
 * or a stack_size outside WEFT_STACK_MIN..WEFT_STACK_MAX), ENOMEM. */
WEFT_API WEFT_NODISCARD weft_task *weft_spawn_ex(weft_runtime *rt, weft_fn fn,
                                                 void *arg,
                                                 const weft_task_opts *opts);

/** Wait for t to finish and free its handle (await task). Suspends.
 * Callable from a task, or from a plain thread (which blocks). A task must
 * not join itself. Stores t's return value in *result if result is not
 * NULL.
 *
 * Fork-join: if t has not started and is among the few tasks queued last
 * on the caller's worker (as right after the caller spawned it), the
 * caller runs t directly on its own stack instead of suspending, as TBB and
 * Cilk do. Only t: no other task runs on the caller's stack. t keeps its
 * identity (weft_current() is t) and may suspend as usual; this only
 * happens while the caller's stack has t's full stack size free.
 * A handle may be joined or detached on any thread, also after
 * weft_runtime_free (which waits for every task to finish).
 * Returns 0, or:
 *   -EINVAL   t is NULL, or t is the calling task (the handle is kept)
 */
WEFT_API WEFT_NODISCARD int weft_join(weft_task *t, void **result);

/** Give up the handle: the task runs on and is freed when it ends. Never
 * suspends. NULL is a no-op. */
WEFT_API void weft_detach(weft_task *t);

/** Whether t has finished (task.done()). Never suspends. */
WEFT_API bool weft_task_done(const weft_task *t);

/** Name t (copied; truncated to 31 bytes). Returns 0, -EINVAL (t or name
 * NULL) or -ENOMEM. Safe while t runs: weft_all_tasks sees either name. */
WEFT_API WEFT_NODISCARD int weft_task_set_name(weft_task *t, const char *name);

/** t's id: unique within the process, never 0. */
WEFT_API uint64_t weft_task_id(const weft_task *t);

/** The calling task (asyncio.current_task), or NULL outside a task. */
WEFT_API weft_task *weft_current(void);

/** Let the other ready tasks run, then continue (asyncio.sleep(0)).
 * Suspends: the caller goes behind every task ready on its worker. When no
 * other task is ready there, it returns at once without switching, as
 * sleep(0) does on an empty ready queue. Returns 0, or -EPERM outside a
 * task. */
WEFT_API WEFT_NODISCARD int weft_yield(void);

enum weft_task_state {
    WEFT_TASK_NEW = 0, /**< spawned, has not run yet */
    WEFT_TASK_READY,   /**< waiting in a run queue to run again */
    WEFT_TASK_RUNNING, /**< running on a worker now */
    WEFT_TASK_WAITING, /**< suspended until something wakes it */
};

/** One task in a weft_all_tasks snapshot. */
typedef struct weft_task_info {
    uint64_t id;
    char name[32];              /**< "" when unnamed */
    enum weft_task_state state; /**< racy by nature: a snapshot */
    int worker;                 /**< last worker it ran on; -1 if none */
} weft_task_info;

/** Snapshot the live (unfinished) tasks of the calling task's runtime
 * (asyncio.all_tasks). Writes up to cap entries to out and returns the
 * number of live tasks, which may exceed cap. Never suspends. Returns 0
 * outside a task. */
WEFT_API size_t weft_all_tasks(weft_task_info *out, size_t cap);

/** Like weft_all_tasks, for any runtime, from any thread. */
WEFT_API size_t weft_runtime_tasks(weft_runtime *rt, weft_task_info *out,
                                   size_t cap);

/* ---------------------------------------------------------------------------
 * Errors
 */

/** A message for err, a negative errno returned by weft (or errno values of
 * the system). Never NULL. */
WEFT_API const char *weft_strerror(int err);

/* ---------------------------------------------------------------------------
 * Observability
 *
 * Counters are kept per worker, written by their worker only, and summed
 * when read; reading them costs the workers nothing.
 */

typedef struct weft_counters {
    uint64_t spawned;      /**< tasks this worker spawned into its runtime */
    uint64_t runs;         /**< times a task was resumed here */
    uint64_t completed;    /**< tasks that finished here */
    uint64_t switches;     /**< context switches (a child run inline by
                                its joiner takes none) */
    uint64_t steals_tried; /**< steal attempts on other workers' deques */
    uint64_t steals;       /**< tasks taken by those attempts */
    uint64_t inject_pops;  /**< tasks taken from the injection queue */
    uint64_t grows;        /**< times its deque doubled in size */
    uint64_t parks;        /**< times this worker went to sleep */
    uint64_t wakeups;      /**< times this worker woke a sleeping one */
} weft_counters;

typedef struct weft_stats {
    unsigned workers;     /**< number of workers in rt */
    uint64_t tasks_alive; /**< spawned and not yet finished */
    weft_counters total;  /**< the sum over all workers */
} weft_stats;

/** Totals for rt (NULL: the calling task's runtime). Returns 0 or -EINVAL
 * (no runtime). Never suspends; callable from any thread. (DESIGN.md calls
 * this weft_stats(); C does not allow a function and the weft_stats type
 * to share a name.) */
WEFT_API WEFT_NODISCARD int weft_stats_get(weft_runtime *rt, weft_stats *s);

/** The counters of one worker of rt (NULL: the calling task's runtime).
 * Returns 0 or -EINVAL (no runtime, c NULL, worker out of range). */
WEFT_API WEFT_NODISCARD int weft_stats_worker(weft_runtime *rt, unsigned worker,
                                              weft_counters *c);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H */
