/* Chrome trace-event export: WEFT_TRACE=<file.json>.
 *
 * What a viewer (Perfetto, chrome://tracing) shows: one track per worker,
 * one for the reactor thread, one per blocking-pool thread that ran a job
 * of this runtime ("blocking <slot>") and one for every other thread
 * (plain threads that spawn or wake tasks), in one process. On a worker's
 * track, a slice per task run, named after the task ("task <id>" when
 * unnamed), with the task's id in its args. Arrows (flow events) go from
 * where a task was made ready to the run that followed: "spawn" from the
 * spawner, "wake" from the waker (a task, the reactor thread firing timers
 * or fd events, a pool thread whose job is done, another thread), and
 * "steal" from the victim's track to the thief's. On the reactor's track,
 * a slice per round of timers fired. On a pool thread's track, a slice
 * ("job") per weft_to_thread call it ran, with a "to_thread" arrow from
 * the submitting task's run to it; the "wake" arrow from its end to the
 * caller's next run follows.
 *
 * Recording. Tracing rides on the hooks of the delay statistics (stats.c):
 * a traced runtime times every wait (delay_every 1) and watches every run
 * (w->watch), so there is no test of its own on the switch path and a
 * runtime without WEFT_TRACE pays nothing for it (the gates it shares are
 * measured in stats.c). A ready event records the start of a flow where it
 * stamps the task; the run that follows records its slice, when it ends,
 * with the end of that flow. Both ends compute the flow's id from the task
 * id and the stamp (weft__trace_flow_id), so the task carries nothing
 * more than its delay stamp.
 *
 * Buffers. Each worker appends to its own buffer, and the reactor thread
 * to its own: no lock, no atomic RMW. Other threads share a buffer under a
 * mutex (their spawns and wakes take the injection queue's lock anyway).
 * A buffer is a list of fixed chunks, never moved or freed before the
 * trace is: the writer fills an event, then publishes the chunk's count
 * with a release store; a reader takes the count with acquire and reads
 * that many. So the file can be written while the workers still run,
 * at process exit, as well as at weft_runtime_free, when they have
 * stopped. A buffer keeps at most WEFT__TRACE_MAX events; later ones are
 * counted and dropped (the file says how many).
 *
 * Blocking-pool threads. The pool belongs to the process (io/offload.c)
 * and outlives runtimes; a trace belongs to its runtime. So each trace
 * has a buffer per pool thread slot (WEFT__POOL_THREADS_MAX, empty until
 * used), and the pool thread that holds slot k is the only writer of
 * buffer k in every trace: it records without a lock, as a worker does. A
 * slot passes from a retiring thread to a new one under the pool's lock,
 * which orders the two writers. A job's event is recorded by the pool
 * thread in one go when the job is done (weft__trace_job), with the
 * submitter's stamp (weft__trace_job_stamp) in it: the submitter writes
 * nothing into the trace, so every "to_thread" arrow that starts ends.
 *
 * Invariant: a pool thread writes into rt's trace only while rt cannot be
 * finished: (1) a job's event, between winning the claim of its caller's
 * wait and waking the caller: the caller is a task of rt, parked until
 * that wake, and weft_runtime_free finishes the trace only once every
 * task of rt has ended; (2) the wake's own ready event, which set_ready
 * records before the task is queued, so still before it can run and end;
 * (3) ready events of tasks of rt that fn itself wakes or spawns, under
 * the contract of any other thread (a thread that uses rt keeps it
 * alive). So no pool thread writes into a trace after weft__trace_finish,
 * which may free it at once. The cost: a job whose caller was interrupted
 * before fn returned (the pool thread lost the claim) is not drawn, since
 * its runtime may be gone by then.
 *
 * The file is written at weft_runtime_free (complete: every run has ended)
 * or, for a runtime still alive then, by an atexit handler (the runs that
 * are under way are missing). One event per line. Several traced runtimes
 * in one process write the same path in turn: the last one written wins.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sched/alloc.h"
#include "sched/internal.h"

#define CHUNK_EVENTS     1024
#define WEFT__TRACE_MAX  (1u << 20) /* events per buffer */
#define TRACK_REACTOR(n) (n)        /* the tracks after the workers' */
#define TRACK_OTHER(n)   ((n) + 1)
#define TRACK_POOL(n, k) ((n) + 2 + (k)) /* pool thread slot k */

enum ev_kind {
    EV_RUN,    /* a task's run: a slice, and the end of `flow` */
    EV_READY,  /* a task made ready: the start of `flow` */
    EV_STEAL,  /* tasks stolen from `track2` by `track` */
    EV_TIMERS, /* the reactor fired `n` timers */
    EV_JOB,    /* a pool thread ran a job of task `n`: a slice, ending
                  `flow`, which starts on worker `track2` at submit_ts */
};

struct ev {
    int64_t ts, dur; /* ns since the runtime started; dur for slices */
    uint64_t flow;   /* RUN: the flow it ends (0: none); READY, STEAL */
    uint64_t n;      /* RUN, READY: the task's id; STEAL, TIMERS: count */
    uint32_t track;  /* where it happened */
    uint32_t track2; /* STEAL: the victim's track; JOB: the submitter's */
    uint8_t kind;
    union {
        char name[32]; /* RUN: the task's name, "" for none */
        struct {
            int64_t submit_ts; /* when the task submitted it */
            uintptr_t fn;      /* what it ran */
        } job;                 /* JOB */
    };
};

struct chunk {
    struct chunk *next; /* atomic: set once (release) by the writer */
    uint32_t n;         /* atomic: events published (release) */
    struct ev ev[CHUNK_EVENTS];
};

/* One writer at a time (its owner, or the holder of other_lock). */
struct weft__trace_buf {
    struct chunk *head; /* immutable once the first event is in */
    struct chunk *tail; /* the writer only */
    uint64_t events;    /* the writer only */
    uint64_t dropped;   /* atomic: the writer adds, readers load */
    uint32_t track;     /* immutable */
};

struct weft__trace {
    char *path; /* immutable */
    struct weft__trace_buf reactor;
    pthread_mutex_t other_lock;
    struct weft__trace_buf other; /* under other_lock */
    weft_runtime *exit_next;      /* the atexit list, under exit_lock */
    /* Pool thread slot k's, written by that thread only (top of file). */
    struct weft__trace_buf pool[WEFT__POOL_THREADS_MAX];
    struct weft__trace_buf workers[];
};

__thread weft_runtime *weft__tls_reactor_of;
__thread uint32_t weft__tls_pool_slot;

/* --------------------------------------------------------------------------
 * Recording
 */

static void buf_init(struct weft__trace_buf *b, uint32_t track)
{
    memset(b, 0, sizeof(*b));
    b->track = track;
}

/* A slot for the next event of b, or NULL (full, or no memory: dropped).
 * The writer fills it, then calls commit. */
static struct ev *ev_slot(struct weft__trace_buf *b)
{
    struct chunk *c = b->tail;
    /* Relaxed: the writer reads its own count. */
    uint32_t used = c ? weft__load_rlx_u32(&c->n) : CHUNK_EVENTS;
    if (used < CHUNK_EVENTS)
        return &c->ev[used];
    if (b->events >= WEFT__TRACE_MAX || !(c = weft__malloc(sizeof(*c)))) {
        /* An RMW only because other_lock's holders are several threads;
         * it orders nothing. */
        weft__faa_seq_u64(&b->dropped, 1);
        return NULL;
    }
    c->next = NULL;
    c->n = 0;
    /* Release: the chunk's zeroed count before its link, for readers
     * that follow the link with acquire (read_buf). */
    if (b->tail)
        weft__store_rel_ptr(&b->tail->next, c);
    else
        weft__store_rel_ptr(&b->head, c);
    b->tail = c;
    return &c->ev[0];
}

static void commit(struct weft__trace_buf *b)
{
    /* Release: the event's fields before the count that shows it. Pairs
     * with the acquire load in read_buf. */
    weft__store_rel_u32(&b->tail->n, weft__load_rlx_u32(&b->tail->n) + 1);
    b->events++;
}

/* The buffer of the calling thread for events of rt: a worker's own, the
 * reactor thread's, a pool thread's slot's, or the shared one (then
 * *locked, and the caller unlocks). */
static struct weft__trace_buf *buf_for(weft_runtime *rt, bool *locked)
{
    struct weft__worker *w = weft__tls_worker;
    *locked = false;
    if (w && w->rt == rt)
        return w->trace;
    if (weft__tls_reactor_of == rt)
        return &rt->trace->reactor;
    if (weft__tls_pool_slot)
        return &rt->trace->pool[weft__tls_pool_slot - 1];
    pthread_mutex_lock(&rt->trace->other_lock);
    *locked = true;
    return &rt->trace->other;
}

static void buf_done(weft_runtime *rt, bool locked)
{
    if (locked)
        pthread_mutex_unlock(&rt->trace->other_lock);
}

void weft__trace_run(struct weft__worker *w, const weft_task *t,
                     int64_t start_ns, int64_t end_ns, uint64_t flow)
{
    struct ev *e = ev_slot(w->trace);
    if (!e)
        return;
    e->kind = EV_RUN;
    e->ts = start_ns - w->rt->start_ns;
    e->dur = end_ns - start_ns;
    e->flow = flow;
    e->n = t->id;
    e->track = w->index;
    weft__task_name(t, e->name); /* t is alive: its run just ended */
    commit(w->trace);
}

void weft__trace_ready(weft_task *t, int64_t now_ns)
{
    weft_runtime *rt = t->rt;
    bool locked;
    struct weft__trace_buf *b = buf_for(rt, &locked);
    struct ev *e = ev_slot(b);
    if (e) {
        e->kind = EV_READY;
        e->ts = now_ns - rt->start_ns;
        e->flow = weft__trace_flow_id(t->id, now_ns, !t->stack);
        e->n = t->id;
        e->track = b->track;
        commit(b);
    }
    buf_done(rt, locked);
}

void weft__trace_steal(struct weft__worker *thief, unsigned victim, uint64_t n)
{
    struct ev *e = ev_slot(thief->trace);
    if (!e)
        return;
    e->kind = EV_STEAL;
    e->ts = weft__now_ns() - thief->rt->start_ns;
    /* Unique and not 0: the thief's event count and index. */
    e->flow = ((thief->trace->events + 1) << 11) | thief->index;
    e->n = n;
    e->track = thief->index;
    e->track2 = victim;
    commit(thief->trace);
}

void weft__trace_timers(weft_runtime *rt, int64_t start_ns, uint64_t n)
{
    struct weft__trace_buf *b = &rt->trace->reactor;
    struct ev *e = ev_slot(b);
    if (!e)
        return;
    e->kind = EV_TIMERS;
    e->ts = start_ns - rt->start_ns;
    e->dur = weft__now_ns() - start_ns;
    e->n = n;
    e->track = b->track;
    commit(b);
}

void weft__trace_job_stamp(struct weft__trace_job *j)
{
    struct weft__worker *w = weft__tls_worker;
    /* w->trace: set before w started, then immutable (stats.c). */
    if (WEFT_LIKELY(!w || !w->trace || !w->current)) {
        j->rt = NULL;
        return;
    }
    j->rt = w->rt;
    j->task = w->current->id;
    j->submit_ns = weft__now_ns();
    j->worker = w->index;
}

void weft__trace_job(const struct weft__trace_job *j, weft_fn fn,
                     int64_t start_ns, int64_t end_ns)
{
    uint32_t slot = weft__tls_pool_slot;
    WEFT_ASSERT(slot > 0 && slot <= WEFT__POOL_THREADS_MAX);
    weft_runtime *rt = j->rt;
    /* Alive: the caller holds the claim of a wait of a task of rt (top of
     * file). Slot's buffer: ours alone. */
    struct weft__trace_buf *b = &rt->trace->pool[slot - 1];
    struct ev *e = ev_slot(b);
    if (!e)
        return;
    e->kind = EV_JOB;
    e->ts = start_ns - rt->start_ns;
    e->dur = end_ns - start_ns;
    /* A flow of its own name ("to_thread"), so its ids cannot meet those
     * of "spawn" and "wake"; unique, as a task has one call at a time. */
    e->flow = weft__trace_flow_id(j->task, j->submit_ns, false);
    e->n = j->task;
    e->track = b->track;
    e->track2 = j->worker;
    e->job.submit_ts = j->submit_ns - rt->start_ns;
    e->job.fn = (uintptr_t)fn;
    commit(b);
}

/* --------------------------------------------------------------------------
 * Writing the file
 */

struct out {
    FILE *f;
    int pid;
    bool first; /* no event written yet: no comma before the next */
};

static void begin_event(struct out *o)
{
    fputs(o->first ? "\n" : ",\n", o->f);
    o->first = false;
}

/* A JSON string's body: quotes, backslashes and control bytes escaped. */
static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
}

static void put_us(FILE *f, const char *key, int64_t ns)
{
    fprintf(f, ",\"%s\":%lld.%03lld", key, (long long)(ns / 1000),
            (long long)(ns % 1000));
}

/* A slice (X) of name on track at ts for dur ns, in category "weft", with
 * args (a JSON object's body, or NULL). */
static void put_slice(struct out *o, const char *name, bool escape,
                      uint32_t track, int64_t ts, int64_t dur, const char *args)
{
    begin_event(o);
    fputs("{\"ph\":\"X\",\"cat\":\"weft\",\"name\":\"", o->f);
    if (escape)
        put_escaped(o->f, name);
    else
        fputs(name, o->f);
    fputc('"', o->f);
    put_us(o->f, "ts", ts);
    put_us(o->f, "dur", dur);
    fprintf(o->f, ",\"pid\":%d,\"tid\":%u", o->pid, track);
    if (args)
        fprintf(o->f, ",\"args\":{%s}", args);
    fputc('}', o->f);
}

/* A flow event (s: start, binding the slice around it; f: end, binding
 * the slice it starts, "bp":"e"). Start and end match by cat, name, id. */
static void put_flow(struct out *o, char ph, const char *name, uint64_t id,
                     uint32_t track, int64_t ts)
{
    begin_event(o);
    fprintf(o->f, "{\"ph\":\"%c\",\"cat\":\"weft\",\"name\":\"%s\",", ph, name);
    if (ph == 'f')
        fputs("\"bp\":\"e\",", o->f);
    fprintf(o->f, "\"id\":\"0x%llx\"", (unsigned long long)id);
    put_us(o->f, "ts", ts);
    fprintf(o->f, ",\"pid\":%d,\"tid\":%u}", o->pid, track);
}

static const char *flow_name(uint64_t flow)
{
    return flow & 1 ? "spawn" : "wake";
}

static void put_ev(struct out *o, const struct ev *e)
{
    char args[96];
    switch (e->kind) {
    case EV_RUN:
        snprintf(args, sizeof args, "\"task\":%llu", (unsigned long long)e->n);
        if (e->name[0]) {
            put_slice(o, e->name, true, e->track, e->ts, e->dur, args);
        } else {
            char name[32];
            snprintf(name, sizeof name, "task %llu", (unsigned long long)e->n);
            put_slice(o, name, false, e->track, e->ts, e->dur, args);
        }
        if (e->flow)
            put_flow(o, 'f', flow_name(e->flow), e->flow, e->track, e->ts);
        break;
    case EV_READY:
        /* A 1 ns mark for the arrow to start from: a viewer binds a flow
         * start to a slice around it (or at its time), which a waker that
         * is not running a task (the reactor, a plain thread) lacks. */
        snprintf(args, sizeof args, "\"for\":%llu", (unsigned long long)e->n);
        put_slice(o, flow_name(e->flow), false, e->track, e->ts, 1, args);
        put_flow(o, 's', flow_name(e->flow), e->flow, e->track, e->ts);
        break;
    case EV_STEAL:
        snprintf(args, sizeof args, "\"tasks\":%llu,\"from\":%u",
                 (unsigned long long)e->n, e->track2);
        put_slice(o, "stolen", false, e->track2, e->ts, 1, NULL);
        put_flow(o, 's', "steal", e->flow, e->track2, e->ts);
        put_slice(o, "steal", false, e->track, e->ts, 1, args);
        put_flow(o, 'f', "steal", e->flow, e->track, e->ts);
        break;
    case EV_TIMERS:
        snprintf(args, sizeof args, "\"fired\":%llu", (unsigned long long)e->n);
        put_slice(o, "timers", false, e->track, e->ts, e->dur, args);
        break;
    case EV_JOB:
        /* A mark in the submitter's run for the arrow to start from, as
         * for EV_READY. */
        snprintf(args, sizeof args, "\"for\":%llu", (unsigned long long)e->n);
        put_slice(o, "to_thread", false, e->track2, e->job.submit_ts, 1, args);
        put_flow(o, 's', "to_thread", e->flow, e->track2, e->job.submit_ts);
        snprintf(args, sizeof args, "\"for\":%llu,\"fn\":\"%#llx\"",
                 (unsigned long long)e->n, (unsigned long long)e->job.fn);
        put_slice(o, "job", false, e->track, e->ts, e->dur, args);
        put_flow(o, 'f', "to_thread", e->flow, e->track, e->ts);
        break;
    }
}

/* Every published event of b. */
static void put_buf(struct out *o, struct weft__trace_buf *b)
{
    /* Acquire: pairs with the release stores in ev_slot and commit. */
    for (struct chunk *c = weft__load_acq_ptr(&b->head); c;
         c = weft__load_acq_ptr(&c->next)) {
        uint32_t n = weft__load_acq_u32(&c->n);
        for (uint32_t i = 0; i < n; i++)
            put_ev(o, &c->ev[i]);
    }
}

static void put_track_name(struct out *o, uint32_t track, const char *name)
{
    begin_event(o);
    fprintf(o->f,
            "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%d,\"tid\":%u,"
            "\"args\":{\"name\":\"%s\"}}",
            o->pid, track, name);
    begin_event(o);
    fprintf(o->f,
            "{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":%d,"
            "\"tid\":%u,\"args\":{\"sort_index\":%u}}",
            o->pid, track, track);
}

static uint64_t dropped(struct weft__trace_buf *b)
{
    return weft__load_rlx_u64(&b->dropped);
}

static void write_file(weft_runtime *rt)
{
    struct weft__trace *tr = rt->trace;
    FILE *f = fopen(tr->path, "w");
    if (!f) {
        fprintf(stderr, "weft: WEFT_TRACE=%s: %s\n", tr->path, strerror(errno));
        return;
    }
    struct out o = {.f = f, .pid = (int)getpid(), .first = true};
    unsigned n = rt->nworkers;
    uint64_t lost = dropped(&tr->reactor) + dropped(&tr->other);
    for (unsigned i = 0; i < n; i++)
        lost += dropped(&tr->workers[i]);
    for (unsigned k = 0; k < WEFT__POOL_THREADS_MAX; k++)
        lost += dropped(&tr->pool[k]);
    fprintf(f,
            "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"source\":\"weft\","
            "\"workers\":%u,\"dropped_events\":%llu},\"traceEvents\":[",
            n, (unsigned long long)lost);
    begin_event(&o);
    fprintf(f,
            "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%d,"
            "\"args\":{\"name\":\"weft runtime %p\"}}",
            o.pid, (void *)rt);
    char name[32];
    for (unsigned i = 0; i < n; i++) {
        snprintf(name, sizeof name, "worker %u", i);
        put_track_name(&o, i, name);
    }
    put_track_name(&o, TRACK_REACTOR(n), "reactor");
    put_track_name(&o, TRACK_OTHER(n), "other threads");
    for (unsigned k = 0; k < WEFT__POOL_THREADS_MAX; k++) {
        /* Only the slots that ran a job of rt. Acquire: as in put_buf. */
        if (!weft__load_acq_ptr(&tr->pool[k].head))
            continue;
        snprintf(name, sizeof name, "blocking %u", k);
        put_track_name(&o, TRACK_POOL(n, k), name);
    }
    for (unsigned i = 0; i < n; i++)
        put_buf(&o, &tr->workers[i]);
    put_buf(&o, &tr->reactor);
    for (unsigned k = 0; k < WEFT__POOL_THREADS_MAX; k++)
        put_buf(&o, &tr->pool[k]);
    pthread_mutex_lock(&tr->other_lock);
    put_buf(&o, &tr->other);
    pthread_mutex_unlock(&tr->other_lock);
    fputs("\n]}\n", f);
    if (fclose(f) != 0)
        fprintf(stderr, "weft: WEFT_TRACE=%s: %s\n", tr->path, strerror(errno));
}

/* --------------------------------------------------------------------------
 * Life cycle, and the file at process exit
 */

static pthread_mutex_t exit_lock = PTHREAD_MUTEX_INITIALIZER;
static weft_runtime *exit_list; /* under exit_lock */
static bool exit_registered;    /* under exit_lock */

/* At exit, a runtime still alive has its trace written from what its
 * threads have published so far; they may still be running. */
static void write_at_exit(void)
{
    pthread_mutex_lock(&exit_lock);
    for (weft_runtime *rt = exit_list; rt; rt = rt->trace->exit_next)
        write_file(rt);
    exit_list = NULL;
    pthread_mutex_unlock(&exit_lock);
}

static void free_buf(struct weft__trace_buf *b)
{
    for (struct chunk *c = b->head, *next; c; c = next) {
        next = c->next;
        weft__free(c);
    }
}

static void trace_free(weft_runtime *rt)
{
    struct weft__trace *tr = rt->trace;
    for (unsigned i = 0; i < rt->nworkers; i++)
        free_buf(&tr->workers[i]);
    free_buf(&tr->reactor);
    free_buf(&tr->other);
    for (unsigned k = 0; k < WEFT__POOL_THREADS_MAX; k++)
        free_buf(&tr->pool[k]);
    pthread_mutex_destroy(&tr->other_lock);
    weft__free(tr->path);
    weft__free(tr);
    rt->trace = NULL;
}

int weft__trace_new(weft_runtime *rt)
{
    const char *path = getenv("WEFT_TRACE");
    if (!path || !*path)
        return 0;
    unsigned n = rt->nworkers;
    struct weft__trace *tr =
        weft__malloc(sizeof(*tr) + n * sizeof(struct weft__trace_buf));
    if (!tr)
        return -ENOMEM;
    memset(tr, 0, sizeof(*tr));
    size_t len = strlen(path);
    if (!(tr->path = weft__malloc(len + 1))) {
        weft__free(tr);
        return -ENOMEM;
    }
    memcpy(tr->path, path, len + 1);
    for (unsigned i = 0; i < n; i++)
        buf_init(&tr->workers[i], i);
    buf_init(&tr->reactor, TRACK_REACTOR(n));
    buf_init(&tr->other, TRACK_OTHER(n));
    for (unsigned k = 0; k < WEFT__POOL_THREADS_MAX; k++)
        buf_init(&tr->pool[k], TRACK_POOL(n, k));
    pthread_mutex_init(&tr->other_lock, NULL);
    rt->trace = tr;
    /* Every wait is timed: each one is a flow (stats.c). */
    rt->delay_every = 1;
    rt->sample_limit = UINT64_MAX;
    pthread_mutex_lock(&exit_lock);
    if (!exit_registered && atexit(write_at_exit) == 0)
        exit_registered = true;
    tr->exit_next = exit_list;
    exit_list = rt;
    pthread_mutex_unlock(&exit_lock);
    return 0;
}

struct weft__trace_buf *weft__trace_buf_of(weft_runtime *rt, unsigned i)
{
    return rt->trace ? &rt->trace->workers[i] : NULL;
}

void weft__trace_finish(weft_runtime *rt)
{
    struct weft__trace *tr = rt->trace;
    if (!tr)
        return;
    /* Off the exit list first: the atexit writer must not read a trace
     * that is being freed. If exit ran already, the list is empty. */
    pthread_mutex_lock(&exit_lock);
    bool listed = false;
    for (weft_runtime **p = &exit_list; *p; p = &(*p)->trace->exit_next) {
        if (*p == rt) {
            *p = tr->exit_next;
            listed = true;
            break;
        }
    }
    pthread_mutex_unlock(&exit_lock);
    if (listed)
        write_file(rt);
    trace_free(rt);
}
