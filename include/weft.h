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

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

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

/** Run main(arg) as the first task of a new default runtime, wait for it,
 * then cancel and wait for every task it left running and free the
 * runtime (asyncio.run).
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

/** Cancel every task of rt still alive, wait for all of them to finish,
 * detached or not, then stop the workers and free rt (loop.close after
 * asyncio.run's cancel-and-gather). Tasks spawned while it waits are
 * cancelled too. A task handle is freed only by
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
 *
 * Cancellation, as `await task`: if the calling task is cancelled, or a
 * timeout scope around the join expires, t is cancelled too and the join
 * goes on waiting for it to end (use weft_shield to leave t alone). The
 * handle is freed in every case but -EINVAL. Returns 0 with the result
 * when t finished normally, else:
 *   -ECANCELED  t ended cancelled (and the caller was not interrupted, or
 *               was cancelled)
 *   -ETIMEDOUT  t ended cancelled because the caller's scope expired
 *   -EINVAL     t is NULL, t is the calling task, or t is already joined,
 *               waited for or detached elsewhere (the handle is kept)
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
 * sleep(0) does on an empty ready queue. A suspension point: returns 0, or
 * -ECANCELED / -ETIMEDOUT when the caller is cancelled or inside an expired
 * timeout scope (see "Cancellation"), or -EPERM outside a task. */
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
 * Time
 *
 * weft_now() is the runtime clock (loop.time()): CLOCK_MONOTONIC in
 * seconds. Deadlines are values of that clock. Timers live in one heap per
 * runtime, served by a timer thread, so they fire on time even while every
 * worker is busy; a sleeping task costs one heap entry, no thread, no fd.
 * WEFT_FOREVER is a duration or deadline that never comes.
 */

#define WEFT_FOREVER ((double)INFINITY)

/** Monotonic seconds (asyncio's loop.time()). Any thread. */
WEFT_API double weft_now(void);

/** Sleep for `seconds` (asyncio.sleep). Suspends; 0 is weft_yield() in a
 * task. From a plain thread it blocks the thread (and cannot be cancelled;
 * 0 returns at once).
 * Returns 0, or:
 *   -EINVAL     seconds is negative or NaN
 *   -ECANCELED  the calling task is cancelled (before or while sleeping)
 *   -ETIMEDOUT  an enclosing timeout scope expired
 *   -ENOMEM     the runtime's timer heap could not grow (a task, finite
 *               seconds)
 */
WEFT_API WEFT_NODISCARD int weft_sleep(double seconds);

/** Sleep until weft_now() >= deadline; a deadline in the past is
 * weft_yield(). As weft_sleep otherwise (-EINVAL for NaN only). */
WEFT_API WEFT_NODISCARD int weft_sleep_until(double deadline);

/* ---------------------------------------------------------------------------
 * Cancellation
 *
 * weft_cancel() is a request, as task.cancel(): the task sees -ECANCELED
 * at its next suspension point (weft_yield, weft_sleep, weft_join, every
 * combinator below, every sync wait and stream call) and at every later
 * one, until it returns or withdraws the requests with weft_uncancel().
 * A task cancelled before it starts never runs. A task "ends cancelled"
 * (weft_join returns -ECANCELED) when it never ran, or when it returned
 * after a suspension point gave it -ECANCELED with requests still pending;
 * a task that ignores the request and returns a value has finished
 * normally.
 *
 * Differences from asyncio, forced by C: the request is sticky (a
 * suspension point cannot throw, so each one reports it until the task
 * returns or uncancels), and counted as asyncio 3.11+ counts them: two
 * requests need two weft_uncancel() calls.
 *
 * Waiting for a task forwards cancellation to it, as `await task` does:
 * a task cancelled (or whose timeout scope expires) while in weft_join,
 * weft_gather or weft_wait_for cancels the task(s) it waits for and goes
 * on waiting until they end. weft_shield, weft_wait and the as_completed
 * iterator forward nothing and return at once.
 */

/** Request that t be cancelled. Never suspends. Any thread; t may be the
 * calling task (it then sees -ECANCELED at its next suspension point).
 * Returns 0, or -EINVAL (t NULL), or -ESRCH when t has already finished
 * (nothing to cancel: asyncio's cancel() returning False). */
WEFT_API int weft_cancel(weft_task *t);

/** Withdraw one cancellation request of the calling task (task.uncancel).
 * Returns the requests still pending (0: the task is no longer
 * cancelled), or -EPERM outside a task. */
WEFT_API int weft_uncancel(void);

/** The number of pending cancellation requests of t (task.cancelling()),
 * 0 for NULL. Never suspends. */
WEFT_API int weft_cancelling(const weft_task *t);

/** Whether t ended cancelled (task.cancelled()); false while it runs. */
WEFT_API bool weft_task_cancelled(const weft_task *t);

/* ---------------------------------------------------------------------------
 * Timeout scopes (async with asyncio.timeout(s) / asyncio.timeout_at(d))
 *
 *     weft_timeout scope;
 *     weft_timeout_enter(&scope, 1.5);
 *     ... every suspension point here returns -ETIMEDOUT once it expires
 *     if (weft_timeout_exit(&scope) == -ETIMEDOUT) { ... it expired ... }
 *
 * A scope belongs to the task that entered it and lives in that task's
 * storage (usually its stack) until weft_timeout_exit. Scopes nest: inner
 * ones may be shorter or longer than outer ones; a suspension point inside
 * any expired scope returns -ETIMEDOUT, and weft_timeout_exit reports
 * -ETIMEDOUT only for the scope that itself expired. A real cancellation
 * stays -ECANCELED inside scopes. Scopes are exited innermost first; a task
 * that returns with scopes still open has them closed for it (their timers
 * are removed), which is a bug in the task that this makes harmless.
 */

typedef struct weft_timeout {
    uint64_t weft_private_[10]; /* opaque: see sched/timeout.c */
} weft_timeout;

/** Open a scope that expires `seconds` from now (WEFT_FOREVER: never, but
 * reschedulable). Never suspends. Callable from a task only. Returns 0, or
 * (no scope opened) -EINVAL (scope NULL, seconds negative or NaN), -EPERM
 * (not a task), -ENOMEM (no memory for the scope or its timer). */
WEFT_API WEFT_NODISCARD int weft_timeout_enter(weft_timeout *scope,
                                               double seconds);

/** The same with an absolute deadline on weft_now()'s clock
 * (asyncio.timeout_at); a deadline already passed expires at once.
 * Returns as weft_timeout_enter (-EINVAL: scope NULL, deadline NaN). */
WEFT_API WEFT_NODISCARD int weft_timeout_enter_at(weft_timeout *scope,
                                                  double deadline);

/** Move an open scope's deadline (Timeout.reschedule); WEFT_FOREVER
 * disarms it, a deadline already passed expires it at once. Never
 * suspends. Returns 0, or, with the scope left as it was (its deadline and
 * timer unchanged): -EINVAL (NaN, not open, not the caller's, or already
 * expired: an expired scope stays expired), -ENOMEM (a new finite deadline
 * could not be armed; WEFT_FOREVER and passed deadlines cannot fail so). */
WEFT_API WEFT_NODISCARD int weft_timeout_reschedule(weft_timeout *scope,
                                                    double deadline);

/** The scope's deadline (Timeout.when()), WEFT_FOREVER if none. */
WEFT_API double weft_timeout_when(const weft_timeout *scope);

/** Whether the scope has expired (Timeout.expired()). */
WEFT_API bool weft_timeout_expired(const weft_timeout *scope);

/** Close the innermost scope of the calling task. Returns 0, -ETIMEDOUT
 * when this scope expired, or -EINVAL when scope is not the calling
 * task's innermost open scope (nothing is closed then). */
WEFT_API int weft_timeout_exit(weft_timeout *scope);

/* ---------------------------------------------------------------------------
 * Combinators
 *
 * They wait for several tasks at once; each is a suspension point. A task
 * may be waited for by one call at a time (a join, a gather, a wait, ...):
 * a second concurrent waiter gets -EINVAL.
 */

/** Wait for a task while the caller may be cancelled (asyncio.shield).
 * Suspends. Callable from a task. If t finishes first: frees the handle,
 * stores its result and returns as weft_join does. If the caller is
 * cancelled or its timeout scope expires first, returns -ECANCELED /
 * -ETIMEDOUT at once, t keeps running untouched and the handle stays the
 * caller's (join or detach it later). Also -EINVAL (t NULL, the caller
 * itself, or already waited for), -ENOMEM (nothing waited for: the handle
 * stays the caller's) and -EPERM (not a task). */
WEFT_API WEFT_NODISCARD int weft_shield(weft_task *t, void **result);

/** Join t with a time limit (asyncio.wait_for, Python 3.12): after
 * `seconds`, cancel t, wait for it to end and return -ETIMEDOUT; if t
 * finished normally after all (it ignored the cancellation, or ended right
 * at the deadline) its result is returned with 0. It is a weft_join inside
 * a timeout scope, and returns what weft_join does, including -ECANCELED
 * when the caller is cancelled (t is cancelled too); the handle is freed
 * except on -EINVAL (also for a negative or NaN time) and -ENOMEM (no
 * memory for the scope: t was not waited for). Callable from a task only:
 * -EPERM from a plain thread. */
WEFT_API WEFT_NODISCARD int weft_wait_for(weft_task *t, double seconds,
                                          void **result);

/** Join every task of tasks[0..n) (asyncio.gather with
 * return_exceptions=True). Suspends. results[i] (if results is not NULL)
 * gets task i's return value or NULL; errs[i] (if errs is not NULL) gets
 * what weft_join returned for it. Every handle is freed, whatever
 * happens. If the caller is cancelled or its scope expires, the tasks not
 * yet finished are cancelled, and still reaped before it returns. Returns
 * 0 if every task finished normally; else the caller's -ECANCELED or
 * -ETIMEDOUT if it was interrupted; else the first non-zero errs[i].
 * -EINVAL (nothing is joined) for tasks NULL with n > 0, a NULL entry,
 * the same task twice, the calling task, or a task that another call
 * already joins, waits for or detached; -ENOMEM (nothing is joined: many
 * tasks are checked for duplicates in a sorted copy). */
WEFT_API WEFT_NODISCARD int weft_gather(weft_task **tasks, size_t n,
                                        void **results, int *errs);

enum {
    WEFT_WAIT_FIRST_COMPLETED = 1, /**< return when any task finishes */
    WEFT_WAIT_ALL_COMPLETED = 2,   /**< return when all have finished */
};

/** Wait until the first or all of tasks[0..n) finish, or `timeout`
 * seconds pass (asyncio.wait; WEFT_FOREVER for none). Suspends. Cancels
 * nothing and frees no handle: the caller joins them. Reorders tasks so
 * the finished ones come first, *ndone of them. Returns 0 (on time-out
 * too: compare *ndone with n), or -ECANCELED / -ETIMEDOUT (the caller was
 * interrupted; tasks and *ndone are still updated), -EINVAL (bad
 * return_when, negative or NaN timeout, NULL arrays, duplicate or NULL
 * task, a task already waited for), -ENOMEM, -EPERM (not a task). */
WEFT_API WEFT_NODISCARD int weft_wait(weft_task **tasks, size_t n,
                                      double timeout, int return_when,
                                      size_t *ndone);

/** An iterator over tasks in the order they finish (asyncio.as_completed).
 *
 *     weft_as_completed *it = weft_as_completed_new(tasks, n, 5.0);
 *     weft_task *t;
 *     while ((rc = weft_as_completed_next(it, &t)) > 0)
 *         ... weft_join(t, &result) returns at once ...
 *     weft_as_completed_free(it);
 */
typedef struct weft_as_completed weft_as_completed;

/** Start iterating over tasks[0..n) with an overall `timeout` in seconds
 * from now (WEFT_FOREVER: none). The array is copied; handles stay the
 * caller's. Callable from a task. Returns NULL with errno EINVAL (as
 * weft_wait), ENOMEM or EPERM. */
WEFT_API weft_as_completed *weft_as_completed_new(weft_task **tasks, size_t n,
                                                  double timeout);

/** Wait for the next task to finish. Suspends. Returns 1 and stores it in
 * *task; 0 when every task has been returned; -ETIMEDOUT once the overall
 * timeout has passed (and from then on); -ECANCELED / -ETIMEDOUT when the
 * caller is cancelled or its scope expires, -ENOMEM when the overall
 * timeout's timer could not be added (the iterator stays usable after
 * these); -EINVAL for NULL arguments. */
WEFT_API WEFT_NODISCARD int weft_as_completed_next(weft_as_completed *it,
                                                   weft_task **task);

/** Free the iterator; tasks not yet returned are not touched. NULL: no-op. */
WEFT_API void weft_as_completed_free(weft_as_completed *it);

/* ---------------------------------------------------------------------------
 * Task groups (asyncio.TaskGroup)
 *
 *     weft_group g;
 *     weft_group_init(&g);
 *     weft_group_spawn(&g, fetch, url1);
 *     weft_group_spawn(&g, fetch, url2);
 *     rc = weft_group_wait(&g);        // every member has ended
 *     weft_group_destroy(&g);
 *
 * The task that calls weft_group_init owns the group. Members run in the
 * owner's runtime; their handles belong to the group and are freed by
 * weft_group_wait, which must be called (no member outlives it). Members
 * may spawn more members while the owner waits. Cancelling the owner while
 * it waits cancels every member; weft_group_cancel ends a group early (a
 * failing member can call it to stop its siblings, as an exception in a
 * TaskGroup member does).
 */

typedef struct weft_group {
    uint64_t weft_private_[12]; /* opaque: see sched/group.c */
} weft_group;

/** Make the calling task the owner of a new, empty group. Returns 0,
 * -EINVAL (g NULL) or -EPERM (not a task). */
WEFT_API WEFT_NODISCARD int weft_group_init(weft_group *g);

/** Spawn fn(arg) as a member of g (TaskGroup.create_task). Callable from
 * the owner or a member. The handle is the group's: use it with
 * weft_cancel, weft_task_done, weft_task_id, but do not join or detach it;
 * it is valid until weft_group_wait returns. A member spawned while the
 * group is being cancelled starts cancelled (it never runs). Returns NULL
 * with errno EINVAL (g or fn NULL, or the group already waited for),
 * ENOMEM. */
WEFT_API weft_task *weft_group_spawn(weft_group *g, weft_fn fn, void *arg,
                                     const weft_task_opts *opts);

/** Cancel every member not yet finished, and members spawned from now on.
 * Never suspends. Any task of the group's runtime. Returns 0 or -EINVAL. */
WEFT_API int weft_group_cancel(weft_group *g);

/** Wait for every member, then free their handles (TaskGroup's exit).
 * Suspends. Owner only. If the owner is cancelled or its scope expires
 * while waiting, every member is cancelled and still waited for. Returns 0
 * if every member finished normally; the owner's -ECANCELED / -ETIMEDOUT
 * if it was interrupted; -ECANCELED if a member ended cancelled; -EINVAL
 * (g NULL, already waited for) or -EPERM (not the owner). */
WEFT_API WEFT_NODISCARD int weft_group_wait(weft_group *g);

/** Release g's memory once weft_group_wait has returned. Returns 0, or
 * -EBUSY (members not yet waited for: nothing is freed), -EINVAL. */
WEFT_API int weft_group_destroy(weft_group *g);

/* ---------------------------------------------------------------------------
 * Synchronisation: Lock, Semaphore, Event, Condition, Queue, Barrier
 *
 * asyncio's primitives, shared by tasks on any worker of any runtime and
 * by plain OS threads: a task that waits parks (its worker runs something
 * else), a thread that waits blocks on a futex. Each object lives in the
 * caller's storage between its init and destroy; its type is opaque.
 *
 * Waiters are served in FIFO order. Every wait honours, for a task,
 * weft_cancel (-ECANCELED) and enclosing timeout scopes (-ETIMEDOUT), and
 * has a `_timeout` form bounded in seconds (-ETIMEDOUT; WEFT_FOREVER: no
 * bound), which is how a plain thread bounds a wait. A call that finds
 * what it needs at once returns without suspending and without looking at
 * cancellation, as `await lock.acquire()` on a free lock does. A wait that
 * is interrupted at the moment it is satisfied is either satisfied (it
 * returns 0; the cancellation stays pending for the next suspension point)
 * or not at all (the permit, the lock or the item goes to the next waiter
 * or stays): nothing is lost either way.
 *
 * Common codes: -EINVAL for a NULL object, a bad argument, or an object
 * that is not initialised or already destroyed (detected by a tag the
 * object carries: use after destroy is caught until the storage is
 * reused); -EBUSY from destroy while the object is held or waited on (it
 * stays usable); -ENOMEM when a task's bounded wait cannot add its timer.
 */

typedef struct weft_lock {
    uint64_t weft_private_[6]; /* opaque: see sync/lock.c */
} weft_lock;

/** A free lock. Returns 0 or -EINVAL. */
WEFT_API WEFT_NODISCARD int weft_lock_init(weft_lock *lock);

/** Take the lock, waiting while another task or thread holds it.
 * Suspends. Callable from a task, or from a plain thread (which blocks).
 * Not reentrant: the holder that acquires again deadlocks, as asyncio's.
 * Returns 0 with the lock held, or, with the lock not held:
 *   -ECANCELED  the calling task was cancelled while waiting
 *   -ETIMEDOUT  an enclosing timeout scope expired (or, for _timeout, the
 *               bound passed)
 *   -EINVAL
 * Fairness: the lock is handed to waiters in FIFO order, but a running
 * acquirer may take a lock just released before the woken waiter does
 * (that keeps a lock shared by threads from convoying); a waiter passed
 * over for more than a millisecond is handed the lock directly. */
WEFT_API WEFT_NODISCARD int weft_lock_acquire(weft_lock *lock);
WEFT_API WEFT_NODISCARD int weft_lock_acquire_timeout(weft_lock *lock,
                                                      double seconds);
/** Take the lock if it is free. Never suspends. 0, -EBUSY or -EINVAL. */
WEFT_API WEFT_NODISCARD int weft_lock_acquire_nowait(weft_lock *lock);

/** Release the lock. Never suspends. The holder only: a task holds the
 * lock it acquired wherever it runs next; a thread holds what it acquired.
 * Returns 0, -EPERM (the caller does not hold it) or -EINVAL. */
WEFT_API int weft_lock_release(weft_lock *lock);

/** Whether some task or thread holds the lock (a snapshot). */
WEFT_API bool weft_lock_locked(const weft_lock *lock);

/** Returns 0, -EBUSY (held or waited on) or -EINVAL. */
WEFT_API int weft_lock_destroy(weft_lock *lock);

typedef struct weft_sem {
    uint64_t weft_private_[6]; /* opaque: see sync/semaphore.c */
} weft_sem;

/** A semaphore holding `value` permits (>= 0). _bounded makes `value` also
 * the most it may ever hold (BoundedSemaphore). Returns 0 or -EINVAL. */
WEFT_API WEFT_NODISCARD int weft_sem_init(weft_sem *sem, long value);
WEFT_API WEFT_NODISCARD int weft_sem_init_bounded(weft_sem *sem, long value);

/** Take a permit, waiting while there is none. Suspends; tasks and
 * threads. A permit is never taken ahead of an earlier waiter. Returns 0,
 * -ECANCELED, -ETIMEDOUT or -EINVAL. */
WEFT_API WEFT_NODISCARD int weft_sem_acquire(weft_sem *sem);
WEFT_API WEFT_NODISCARD int weft_sem_acquire_timeout(weft_sem *sem,
                                                     double seconds);
/** Take a permit if one is free. Never suspends. 0, -EAGAIN or -EINVAL. */
WEFT_API WEFT_NODISCARD int weft_sem_acquire_nowait(weft_sem *sem);

/** Give a permit back (to the first waiter, if any). Never suspends; any
 * task or thread. Returns 0, -EOVERFLOW (a bounded semaphore would exceed
 * its bound: nothing changes, as BoundedSemaphore's ValueError) or
 * -EINVAL. */
WEFT_API int weft_sem_release(weft_sem *sem);

/** The permits free now (a snapshot), or -EINVAL. */
WEFT_API long weft_sem_value(const weft_sem *sem);

/** Returns 0, -EBUSY (waited on) or -EINVAL. */
WEFT_API int weft_sem_destroy(weft_sem *sem);

typedef struct weft_event {
    uint64_t weft_private_[6]; /* opaque: see sync/event.c */
} weft_event;

/** An event, initially not set. Returns 0 or -EINVAL. */
WEFT_API WEFT_NODISCARD int weft_event_init(weft_event *ev);
/** Set the event and wake every waiter. Never suspends; any task or
 * thread. Returns 0 or -EINVAL. */
WEFT_API int weft_event_set(weft_event *ev);
/** Reset the event. Never suspends. Returns 0 or -EINVAL. */
WEFT_API int weft_event_clear(weft_event *ev);
WEFT_API bool weft_event_is_set(const weft_event *ev);
/** Wait until the event is set (at once if it is). Suspends; tasks and
 * threads. Returns 0, -ECANCELED, -ETIMEDOUT or -EINVAL. */
WEFT_API WEFT_NODISCARD int weft_event_wait(weft_event *ev);
WEFT_API WEFT_NODISCARD int weft_event_wait_timeout(weft_event *ev,
                                                    double seconds);
/** Returns 0, -EBUSY (waited on) or -EINVAL. */
WEFT_API int weft_event_destroy(weft_event *ev);

typedef struct weft_cond {
    uint64_t weft_private_[6]; /* opaque: see sync/condition.c */
} weft_cond;

/** A condition variable over `lock` (which must outlive it). Returns 0 or
 * -EINVAL. */
WEFT_API WEFT_NODISCARD int weft_cond_init(weft_cond *cond, weft_lock *lock);

/** Release the lock, wait for a notify, take the lock again. Suspends;
 * tasks and threads; the caller must hold the lock. The lock is held again
 * whatever it returns, -ECANCELED and -ETIMEDOUT included (re-taking it
 * ignores cancellation, as asyncio's Condition.wait does). Returns 0,
 * -ECANCELED, -ETIMEDOUT, -EPERM (lock not held: nothing happens) or
 * -EINVAL. Wake-ups are not spurious, but the state may have changed again
 * before the lock is re-taken: loop on the predicate, or use wait_for. */
WEFT_API WEFT_NODISCARD int weft_cond_wait(weft_cond *cond);
WEFT_API WEFT_NODISCARD int weft_cond_wait_timeout(weft_cond *cond,
                                                   double seconds);

/** Wait until pred(arg) is true, evaluated with the lock held (at once if
 * it is true already). The bound of _timeout covers the whole wait.
 * Returns as weft_cond_wait does; the lock is held whatever it returns. */
WEFT_API WEFT_NODISCARD int
weft_cond_wait_for(weft_cond *cond, bool (*pred)(void *arg), void *arg);
WEFT_API WEFT_NODISCARD int weft_cond_wait_for_timeout(weft_cond *cond,
                                                       bool (*pred)(void *arg),
                                                       void *arg,
                                                       double seconds);

/** Wake up to n waiters (notify_all: every waiter). The caller must hold
 * the lock. Never suspends. Returns how many waiters it woke, -EPERM (lock
 * not held) or -EINVAL. */
WEFT_API int weft_cond_notify(weft_cond *cond, int n);
WEFT_API int weft_cond_notify_all(weft_cond *cond);

/** Returns 0, -EBUSY (waited on) or -EINVAL. */
WEFT_API int weft_cond_destroy(weft_cond *cond);

/* Queue orders: first in first out, last in first out, smallest first. */
enum weft_queue_order {
    WEFT_QUEUE_FIFO = 0,
    WEFT_QUEUE_LIFO,
    WEFT_QUEUE_PRIORITY
};

typedef struct weft_queue_config {
    size_t maxsize;              /* 0: unbounded */
    enum weft_queue_order order; /* zeroed: FIFO */
    /* PRIORITY only: < 0 when a comes out before b. Items that compare
     * equal come out in no particular order (as heapq's). */
    int (*compare)(const void *a, const void *b);
} weft_queue_config;

typedef struct weft_queue {
    uint64_t weft_private_[20]; /* opaque: see sync/queue.c */
} weft_queue;

/** A FIFO queue of pointers holding at most maxsize items (0: no bound).
 * _ex takes a config (NULL: unbounded FIFO). Returns 0 or -EINVAL (a
 * PRIORITY queue without compare, an unknown order). */
WEFT_API WEFT_NODISCARD int weft_queue_init(weft_queue *q, size_t maxsize);
WEFT_API WEFT_NODISCARD int weft_queue_init_ex(weft_queue *q,
                                               const weft_queue_config *cfg);

/** Put item (any pointer, NULL included), waiting while the queue is full.
 * Suspends; tasks and threads. An item handed to a waiting getter goes to
 * it directly. Returns 0 (the item is in the queue or delivered), or with
 * the item not in the queue: -ECANCELED, -ETIMEDOUT, -ESHUTDOWN (the queue
 * was shut down, also while waiting), -ENOMEM (the buffer, which grows as
 * needed up to maxsize, could not grow), -EINVAL. */
WEFT_API WEFT_NODISCARD int weft_queue_put(weft_queue *q, void *item);
WEFT_API WEFT_NODISCARD int weft_queue_put_timeout(weft_queue *q, void *item,
                                                   double seconds);
/** Never suspends: as put, or -EAGAIN when full (QueueFull). */
WEFT_API WEFT_NODISCARD int weft_queue_put_nowait(weft_queue *q, void *item);

/** Take the next item into *item, waiting while the queue is empty.
 * Suspends; tasks and threads. Returns 0 with *item set, or with nothing
 * taken: -ECANCELED, -ETIMEDOUT, -ESHUTDOWN (shut down and empty, also
 * while waiting), -EINVAL. */
WEFT_API WEFT_NODISCARD int weft_queue_get(weft_queue *q, void **item);
WEFT_API WEFT_NODISCARD int weft_queue_get_timeout(weft_queue *q, void **item,
                                                   double seconds);
/** Never suspends: as get, or -EAGAIN when empty (QueueEmpty). */
WEFT_API WEFT_NODISCARD int weft_queue_get_nowait(weft_queue *q, void **item);

/** Say that an item taken earlier is processed (Queue.task_done). Never
 * suspends. Returns 0, -EOVERFLOW (more calls than items put) or -EINVAL. */
WEFT_API int weft_queue_task_done(weft_queue *q);

/** Wait until every item put has been taken and marked done (Queue.join).
 * Suspends; tasks and threads. Returns 0, -ECANCELED, -ETIMEDOUT or
 * -EINVAL. */
WEFT_API WEFT_NODISCARD int weft_queue_join(weft_queue *q);
WEFT_API WEFT_NODISCARD int weft_queue_join_timeout(weft_queue *q,
                                                    double seconds);

/** Shut the queue down (Python 3.13's Queue.shutdown). Puts fail with
 * -ESHUTDOWN from now on, waiting putters at once; gets go on while items
 * remain, then fail with -ESHUTDOWN, waiting getters at once. With
 * `immediate`, the items still queued are dropped (each counted as done,
 * so join returns) and gets fail at once. Never suspends. 0 or -EINVAL. */
WEFT_API int weft_queue_shutdown(weft_queue *q, bool immediate);

/** Snapshots: items queued (0 for an invalid queue), empty, full (never,
 * if unbounded). */
WEFT_API size_t weft_queue_size(const weft_queue *q);
WEFT_API bool weft_queue_empty(const weft_queue *q);
WEFT_API bool weft_queue_full(const weft_queue *q);

/** Free the queue. Returns 0, -EBUSY (waited on), -ENOTEMPTY (items still
 * queued: take them or shut down with `immediate` first, so that none is
 * lost unseen) or -EINVAL. */
WEFT_API int weft_queue_destroy(weft_queue *q);

typedef struct weft_barrier {
    uint64_t weft_private_[6]; /* opaque: see sync/barrier.c */
} weft_barrier;

/** A barrier for `parties` (>= 1) tasks or threads (asyncio.Barrier).
 * Returns 0 or -EINVAL. */
WEFT_API WEFT_NODISCARD int weft_barrier_init(weft_barrier *b,
                                              unsigned parties);

/** Wait until `parties` callers are waiting, then release them all at
 * once; the next caller starts a new round. Suspends; tasks and threads.
 * Returns the arrival index, 0 .. parties-1 (the last arrival gets
 * parties-1), or -EPIPE (the barrier is broken: aborted, or reset while
 * waiting, as BrokenBarrierError), -ECANCELED, -ETIMEDOUT, -EINVAL. A
 * waiter interrupted before its round fills leaves the round (it no longer
 * counts), without breaking the barrier, as asyncio's does; one
 * interrupted just as the last party arrives still counted, returns its
 * interrupt, and its index goes unused. */
WEFT_API WEFT_NODISCARD int weft_barrier_wait(weft_barrier *b);
WEFT_API WEFT_NODISCARD int weft_barrier_wait_timeout(weft_barrier *b,
                                                      double seconds);

/** Break the barrier: current and future waiters get -EPIPE until reset.
 * Never suspends. 0 or -EINVAL. */
WEFT_API int weft_barrier_abort(weft_barrier *b);
/** Back to empty: current waiters get -EPIPE, the barrier works again.
 * Never suspends. 0 or -EINVAL. */
WEFT_API int weft_barrier_reset(weft_barrier *b);
/** Snapshots: callers waiting now; whether broken. */
WEFT_API unsigned weft_barrier_n_waiting(const weft_barrier *b);
WEFT_API bool weft_barrier_broken(const weft_barrier *b);
/** Returns 0, -EBUSY (waited on) or -EINVAL. */
WEFT_API int weft_barrier_destroy(weft_barrier *b);

/* ---------------------------------------------------------------------------
 * I/O on file descriptors (io/fd.c)
 *
 * Coroutine-aware read, write, accept and connect on any non-blocking fd:
 * sockets, pipes, eventfds. From a task, a call that would block (EAGAIN)
 * parks the task until the runtime's reactor (one epoll instance per
 * runtime, edge-triggered) sees the fd ready, and the worker runs other
 * tasks meanwhile. From a plain thread the same call blocks the thread in
 * poll(2). The fd must be O_NONBLOCK for a task's call (a blocking fd would
 * block the worker): weft_fd_set_nonblocking does it, and every fd that
 * weft creates (accept, streams, servers) is non-blocking and close-on-exec.
 *
 * Every call that suspends honours cancellation (-ECANCELED) and timeout
 * scopes (-ETIMEDOUT), and loses nothing when interrupted: a read either
 * returned its bytes or left them in the kernel, an accepted connection is
 * either returned or still queued.
 *
 * An fd is registered with a reactor the first time a task waits on it,
 * and stays registered. Close an fd that tasks have waited on with
 * weft_fd_close (or call weft_fd_forget before close(2)): the kernel may
 * give the same number to the next fd, and weft must know it is new.
 * weft_fd_close also wakes tasks still waiting on the fd with -EBADF.
 * A task cannot wait on fds numbered 2^20 or above (-EMFILE).
 *
 * SIGPIPE never kills the process: writes to sockets use MSG_NOSIGNAL, and
 * weft ignores SIGPIPE when it creates its first runtime (unless the program
 * installed a handler), so writes to pipes get -EPIPE.
 */

/** Readiness for weft_fd_wait: either or both. */
#define WEFT_READABLE 1
#define WEFT_WRITABLE 2

/** Wait until fd is readable and/or writable (an error or hang-up counts as
 * both), or `timeout` seconds (WEFT_FOREVER: none) pass. Suspends a task;
 * blocks a thread. Returns the ready subset of `events` (> 0), or
 * -ETIMEDOUT, -ECANCELED, -EBADF (fd < 0, or closed by weft_fd_close while
 * waited on), -EINVAL (events not 1..3, timeout negative or NaN),
 * -ENOMEM. */
WEFT_API WEFT_NODISCARD int weft_fd_wait(int fd, int events, double timeout);

/** read(2) that suspends while nothing is available. Returns the bytes
 * read (> 0), 0 at end of file, or a negative errno (-ECONNRESET, ...). */
WEFT_API WEFT_NODISCARD ssize_t weft_fd_read(int fd, void *buf, size_t n);
/** write(2) that suspends while nothing can be written; a partial write
 * returns what it wrote (> 0). Sockets get MSG_NOSIGNAL. */
WEFT_API WEFT_NODISCARD ssize_t weft_fd_write(int fd, const void *buf,
                                              size_t n);
/** Write all n bytes, suspending as often as needed. Returns 0, or a
 * negative errno; *written (may be NULL) says how many went out either
 * way, so an interrupted write loses track of nothing. */
WEFT_API WEFT_NODISCARD int weft_fd_write_all(int fd, const void *buf, size_t n,
                                              size_t *written);
/** accept4(2) that suspends until a connection arrives. The new fd is
 * non-blocking and close-on-exec. addr and len may be NULL. Returns the fd
 * or a negative errno. */
WEFT_API WEFT_NODISCARD int weft_fd_accept(int fd, struct sockaddr *addr,
                                           socklen_t *len);
/** connect(2) on a non-blocking socket, suspending until the connection is
 * made or fails. Returns 0 or a negative errno (-ECONNREFUSED,
 * -ETIMEDOUT, -ECANCELED, ...). An interrupted connect leaves the socket
 * half-connected: close it. */
WEFT_API WEFT_NODISCARD int weft_fd_connect(int fd, const struct sockaddr *addr,
                                            socklen_t len);
/** Set O_NONBLOCK. 0 or a negative errno. */
WEFT_API int weft_fd_set_nonblocking(int fd);
/** Forget everything weft knows of fd (its reactor registration), waking
 * its waiters with -EBADF; the fd stays open. 0 or -EBADF (fd < 0). */
WEFT_API int weft_fd_forget(int fd);
/** weft_fd_forget, then close(2). 0 or a negative errno. */
WEFT_API int weft_fd_close(int fd);

/* ---------------------------------------------------------------------------
 * Buffered streams (io/stream.c): asyncio's StreamReader and StreamWriter
 * in one object over a connected socket.
 *
 * Reading: one reader at a time (a second concurrent reader gets -EBUSY,
 * as asyncio raises RuntimeError). Bytes received stay in the stream's
 * buffer until a read returns them, so a read interrupted by cancel or a
 * timeout scope loses nothing: the next read sees the same bytes.
 *
 * Writing: weft_stream_write never suspends; what the socket does not take
 * at once is buffered and sent in the background by a task of the
 * stream's runtime. weft_stream_drain waits while more than the high-water
 * mark (64 KiB by default, as asyncio) is buffered, until it falls to the
 * low-water mark (a quarter of it). Any task or thread may write.
 *
 * Distinct codes: -ENODATA from readexactly/readuntil at end of stream
 * before the request is met (asyncio's IncompleteReadError; the bytes that
 * did arrive stay readable); -EMSGSIZE when no separator is found within
 * the limit (LimitOverrunError; the data stays in the buffer).
 *
 * Reads after close return what is buffered, then end of stream. A stream
 * belongs to one runtime: its flusher runs in the writer's runtime, or the
 * stream's.
 */

typedef struct weft_stream weft_stream;

typedef struct weft_stream_opts {
    size_t limit;      /**< readuntil/readline limit; 0: 64 KiB */
    size_t high_water; /**< drain's high-water mark; 0: 64 KiB */
    size_t low_water;  /**< 0: high_water / 4 */
} weft_stream_opts;

/** Wrap a connected, non-blocking socket; the stream owns it from now on
 * (also on failure: it is closed). opts may be NULL. Callable from a task
 * or a thread. 0, or -EINVAL, -ENOMEM. */
WEFT_API WEFT_NODISCARD int
weft_stream_new(int fd, const weft_stream_opts *opts, weft_stream **out);
/** Up to n bytes (n > 0): what is buffered, else suspend until something
 * arrives. Returns the count (> 0), 0 at end of stream, or a negative
 * errno. */
WEFT_API WEFT_NODISCARD ssize_t weft_stream_read(weft_stream *s, void *buf,
                                                 size_t n);
/** Exactly n bytes. Returns n; -ENODATA at end of stream before n bytes
 * (they stay readable); or a negative errno (the bytes stay buffered). */
WEFT_API WEFT_NODISCARD ssize_t weft_stream_readexactly(weft_stream *s,
                                                        void *buf, size_t n);
/** Read up to and including the separator sep[0..seplen). Returns the
 * length copied into buf, separator included. -EMSGSIZE if the separator
 * does not end within min(cap, the stream's limit) bytes; -ENODATA at end
 * of stream without it. Both leave the data in the buffer. */
WEFT_API WEFT_NODISCARD ssize_t weft_stream_readuntil(weft_stream *s,
                                                      const void *sep,
                                                      size_t seplen, void *buf,
                                                      size_t cap);
/** readuntil "\n", except that at end of stream it returns what is left
 * (possibly 0 bytes) instead of -ENODATA, as asyncio's readline. */
WEFT_API WEFT_NODISCARD ssize_t weft_stream_readline(weft_stream *s, void *buf,
                                                     size_t cap);
/** Whether end of stream was reached and the buffer is empty. */
WEFT_API bool weft_stream_at_eof(weft_stream *s);
/** Buffer n bytes for sending. Never suspends for I/O (it may wait a moment
 * for another writer of the same stream) and never returns an interrupt.
 * From a plain thread with no runtime behind the stream, what the socket
 * does not take at once is written before it returns. 0, or -EPIPE (closed or
 * write_eof called), -ECONNRESET and the like (the connection failed
 * earlier), -ENOMEM. */
WEFT_API WEFT_NODISCARD int weft_stream_write(weft_stream *s, const void *buf,
                                              size_t n);
/** Suspends while the buffer is above the high-water mark, until it is
 * at or below the low-water mark. 0, or the connection's error, or
 * -ECANCELED / -ETIMEDOUT (nothing buffered is lost). */
WEFT_API WEFT_NODISCARD int weft_stream_drain(weft_stream *s);
/** Bytes buffered and not yet sent. */
WEFT_API size_t weft_stream_buffered(weft_stream *s);
/** Half-close: shut down the sending side once the buffer is sent. 0 (also
 * when already closing or half-closed), or shutdown(2)'s error. */
WEFT_API int weft_stream_write_eof(weft_stream *s);
/** Start closing: stop reading, send what is buffered, then close the
 * socket. Never suspends. 0 or -EINVAL. */
WEFT_API int weft_stream_close(weft_stream *s);
/** Suspends until a closed stream's buffer is sent and its socket closed.
 * Returns 0 or the error that stopped the sending. */
WEFT_API WEFT_NODISCARD int weft_stream_wait_closed(weft_stream *s);
/** Free the stream. If it is not closed yet it is aborted: the socket is
 * closed at once and unsent bytes are dropped (transport.abort()); close
 * and wait_closed first for an orderly end (free before wait_closed has
 * returned aborts too). May suspend briefly, to reap the stream's flusher
 * task. No other call on s may be running. */
WEFT_API void weft_stream_free(weft_stream *s);
/** The socket's peer / local address (getpeername / getsockname); *len is
 * set. -EBADF once the socket is closed. */
WEFT_API int weft_stream_peername(weft_stream *s, struct sockaddr_storage *addr,
                                  socklen_t *len);
WEFT_API int weft_stream_sockname(weft_stream *s, struct sockaddr_storage *addr,
                                  socklen_t *len);
/** The socket (still owned by the stream). */
WEFT_API int weft_stream_fd(const weft_stream *s);

/* ---------------------------------------------------------------------------
 * Connections and servers (io/server.c)
 *
 * Host names are resolved with getaddrinfo on the blocking pool (never on a
 * worker); a resolution failure returns WEFT_EAI(code), a code below
 * -WEFT_EAI_BASE that weft_strerror names (WEFT_EAI(EAI_NONAME): unknown
 * host). IPv4 and IPv6 both work; NULL or "" as a server's host means
 * every interface.
 */

#define WEFT_EAI_BASE 20000
/** The weft code for getaddrinfo's result `eai` (negative in glibc). */
#define WEFT_EAI(eai) (-WEFT_EAI_BASE + (eai))

/** Connect to host:port, trying every resolved address in order. Suspends.
 * Callable from a task (or a thread, which blocks). Honours cancel and
 * timeout scopes. 0 with *out set, or -ECONNREFUSED, -ETIMEDOUT,
 * -ECANCELED, WEFT_EAI(...), -EINVAL (port outside 0..65535, NULL out). */
WEFT_API WEFT_NODISCARD int weft_open_connection(const char *host, int port,
                                                 weft_stream **out);
WEFT_API WEFT_NODISCARD int
weft_open_connection_ex(const char *host, int port,
                        const weft_stream_opts *opts, weft_stream **out);

typedef struct weft_server weft_server;
/** Runs as its own task, one per connection. The server closes (flushing
 * what is buffered) and frees the stream when it returns. */
typedef void (*weft_conn_fn)(weft_stream *s, void *arg);

typedef struct weft_server_opts {
    int backlog;             /**< listen(2) backlog; 0: 511 */
    bool reuse_port;         /**< SO_REUSEPORT (SO_REUSEADDR is always set) */
    weft_stream_opts stream; /**< for each connection's stream */
} weft_server_opts;

/** Listen on host:port (port 0: a free one, see weft_server_port) and
 * start accepting: each connection runs cb(stream, arg) in a new task of
 * the caller's runtime. Callable from a task. 0 with *out set, or a
 * negative errno (-EADDRINUSE, WEFT_EAI(...), -EINVAL, -EPERM from a plain
 * thread). */
WEFT_API WEFT_NODISCARD int weft_start_server(const char *host, int port,
                                              weft_conn_fn cb, void *arg,
                                              weft_server **out);
WEFT_API WEFT_NODISCARD int weft_start_server_ex(const char *host, int port,
                                                 weft_conn_fn cb, void *arg,
                                                 const weft_server_opts *opts,
                                                 weft_server **out);
/** The port the server listens on (the first address's). */
WEFT_API int weft_server_port(const weft_server *srv);
/** Suspends until the server is closed; -ECANCELED/-ETIMEDOUT on
 * interrupt (the server keeps serving). */
WEFT_API WEFT_NODISCARD int weft_server_serve_forever(weft_server *srv);
/** Stop accepting; connections being served go on. Never suspends. */
WEFT_API int weft_server_close(weft_server *srv);
/** Suspends until the server is closed and every connection's task has
 * returned (asyncio 3.12). 0 or -ECANCELED/-ETIMEDOUT. */
WEFT_API WEFT_NODISCARD int weft_server_wait_closed(weft_server *srv);
/** Free a server after weft_server_wait_closed returned 0. (After close
 * alone it is safe too: the last connection task frees the memory.) */
WEFT_API void weft_server_free(weft_server *srv);

/* ---------------------------------------------------------------------------
 * Offloading blocking work (io/offload.c)
 */

/** Run fn(arg) on a thread of the blocking pool (at most min(32, CPUs + 4)
 * threads, as asyncio's default executor; process-wide, threads started
 * on demand and retired after a while idle) and suspend until it returns;
 * its return value goes to *result (may be NULL). From a plain thread, fn
 * runs on the calling thread. Returns 0; -ECANCELED or -ETIMEDOUT at once
 * when the caller is interrupted, in which case fn still runs to the end
 * on its thread and its result is dropped (a thread cannot be cancelled);
 * -EINVAL (fn NULL); -ENOMEM. fn runs exactly once unless the call
 * returns -EINVAL or -ENOMEM, also when the caller was interrupted before
 * the call (asyncio would skip it), so fn may own arg. */
WEFT_API WEFT_NODISCARD int weft_to_thread(weft_fn fn, void *arg,
                                           void **result);

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
 * when read; reading them costs the workers nothing. What threads other
 * than the workers do (the reactor thread fires timers and turns fd events
 * into wake-ups, the blocking pool runs jobs) is counted apart, in
 * weft_stats' `outside`.
 *
 * Scheduling delay: the time a task waits in a run queue, from its spawn,
 * wake-up or yield to the run that follows, kept per worker (the one that
 * ran the task) as a histogram of power-of-two buckets. To keep the clock
 * off the switch path, about one wait in WEFT_DELAY_SAMPLE (default 256;
 * 1: all; 0: none) is timed; counts and percentiles are of those samples.
 * A child that weft_join runs inline (on the joiner's stack) has its wait
 * since its spawn timed; its own later waits are not picked.
 *
 * The environment, read by weft_runtime_new:
 *   WEFT_SCHEDTRACE=<ms>      every ms, one line on stderr with the
 *                             workers' state (running, spinning, parked),
 *                             each worker's deque length, the injection
 *                             queue's, the live tasks, and the steals,
 *                             parks and delay p99 since the last line, as
 *                             Go's GODEBUG=schedtrace does.
 *   WEFT_SLOW_TASK_MS=<ms>    report on stderr every task that runs longer
 *                             than ms (empty or 0: 100) without suspending,
 *                             with its id, name and duration, as asyncio's
 *                             debug mode does. Costs a clock read per
 *                             switch, so it is off when unset.
 *   WEFT_DELAY_SAMPLE=<n>     see above.
 *   WEFT_DUMP_ON_SIGNAL=1     SIGUSR1 prints weft_runtime_dump of every
 *                             such runtime on stderr (from a thread of
 *                             weft's, not from the signal handler); the
 *                             dump then shows ages (a coarse clock read
 *                             per spawn).
 *   WEFT_TRACE=<file.json>    a Chrome trace-event file for Perfetto or
 *                             chrome://tracing: a track per worker, one
 *                             for the reactor thread and one for other
 *                             threads; a slice per task run, named after
 *                             the task (a child run inline splits its
 *                             joiner's slice in two); arrows for spawns,
 *                             wake-ups and steals, from the waker to the
 *                             run that followed. Written, complete, by
 *                             weft_runtime_free, or at exit for a runtime
 *                             still alive (without the runs under way).
 *                             Costs two clock reads and a few dozen bytes
 *                             per switch while on (every wait is timed),
 *                             nothing when off.
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
    uint64_t timers_fired; /**< deadlines that expired (sleeps, timeouts,
                                scopes): the reactor thread's */
    uint64_t io_events;    /**< fd events that woke tasks: a worker's own
                                polls, or the reactor thread's */
    uint64_t pool_jobs;    /**< calls handed to the blocking pool
                                (weft_to_thread) by tasks of this worker */
    uint64_t slow_runs;    /**< runs reported by WEFT_SLOW_TASK_MS */
} weft_counters;

/** Power-of-two buckets of a delay histogram: bucket 0 holds 0-1 ns,
 * bucket i > 0 holds [2^i, 2^(i+1)) ns, the last one everything above. */
#define WEFT_DELAY_BUCKETS 40

/** Scheduling delay samples (see the top of this section). The
 * percentiles are estimated within their bucket (linearly), so they are
 * exact to a factor of 2 at worst, and never above max_ns; all three are
 * 0 without samples. max_ns is the longest sampled wait, not necessarily
 * the longest wait. */
typedef struct weft_delay_hist {
    uint64_t samples;      /**< waits timed */
    uint64_t p50_ns;       /**< median */
    uint64_t p99_ns;       /**< 99th percentile */
    uint64_t max_ns;       /**< longest sample */
    unsigned sample_every; /**< one wait in this many is timed (0: none) */
    uint64_t buckets[WEFT_DELAY_BUCKETS]; /**< samples per bucket */
} weft_delay_hist;

typedef struct weft_stats {
    unsigned workers;      /**< number of workers in rt */
    uint64_t tasks_alive;  /**< spawned and not yet finished */
    weft_counters total;   /**< the sum over all workers and `outside` */
    weft_counters outside; /**< threads other than the workers: timers,
                                the reactor thread's fd events, spawns
                                from plain threads, pool jobs of callers
                                that are not workers */
    weft_delay_hist delay; /**< scheduling delay, all workers together */
    uint64_t inject_len;   /**< tasks in the injection queue now */
    double uptime;         /**< seconds since weft_runtime_new */
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

/** weft_stats_delay's `worker` for every worker together. */
#define WEFT_STATS_ALL_WORKERS (~0u)

/** The scheduling delay histogram of one worker of rt (the tasks it ran),
 * or of all of them (WEFT_STATS_ALL_WORKERS); rt NULL: the calling task's
 * runtime. Never suspends; callable from any thread. Returns 0 or -EINVAL
 * (no runtime, h NULL, worker out of range). */
WEFT_API WEFT_NODISCARD int weft_stats_delay(weft_runtime *rt, unsigned worker,
                                             weft_delay_hist *h);

/** Write every live task of rt (NULL: the calling task's runtime) to the
 * file descriptor fd (e.g. STDERR_FILENO): its id, name, state, last
 * worker, age (if rt keeps ages: WEFT_DUMP_ON_SIGNAL), and for a waiting
 * task what it waits on (sleep, join, lock, queue, fd, ...: a wait the
 * layer below has not labelled shows as plain "waiting"), after a line
 * per worker. A snapshot: tasks move while
 * it is taken. Locks are held only to copy, never while writing, so a
 * slow fd holds up no task. Never suspends (a task that calls it blocks
 * its worker while it writes); callable from any thread. Returns the
 * number of tasks written, or -EINVAL (no runtime), -ENOMEM, or write's
 * error. */
WEFT_API int weft_runtime_dump(weft_runtime *rt, int fd);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H */
