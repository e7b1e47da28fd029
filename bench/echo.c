/* echo and mixed: a TCP server on loopback under a closed-loop load.
 *
 * The cell forks the server into a process of its own and drives it from
 * this process with the load generator of loadgen.c: n connections (--n;
 * 100 by default, 1000 with --full), each with one 64-byte request in
 * flight, for WARMUP_S unmeasured and then WINDOW_S measured, whatever n.
 * Every reply is checked, all 64 bytes; check=ok needs every reply right,
 * no socket error, a reply on every connection in the window (a server
 * that leaves a connection waiting for the whole window is broken, however
 * good its percentiles: silent_conns= counts them), and a server that
 * stops cleanly when told to.
 *
 *   echo   the server sends each request back.
 *   mixed  the server first does a fixed slice of CPU work per request
 *          (MIXED_ROUNDS rounds of FNV-1a over the 56-byte payload, about
 *          50 us on the machines this was tuned on, the same count in C and
 *          Go) and XORs the hash into the reply's tag, so that CPU and I/O
 *          mix and the work cannot be skipped. work_us= is the slice as
 *          the server itself timed it.
 *
 * ns_per_op is the server's CPU time per request: user + system time of
 * the server process (every thread) and of its children (a process per
 * connection), read from its CPU clock at both ends of the window, over
 * the replies in the window. The load generator's own figures follow:
 * req_s= (replies per second of the window), p50_us=, p99_us= and max_us=
 * (request written to reply read), cpu_us_per_req= (ns_per_op in
 * microseconds), server_pct= and loadgen_pct= (each process's CPU
 * as a share of one core: a server at 100% with one worker is saturated;
 * a load generator near 100% is the bottleneck), conns=. With n requests
 * always in flight the mean latency is n / req_s whatever the server
 * does; p50 and p99 show how evenly it serves its connections.
 *
 * Servers (modes):
 *   weft       weft_start_server in a P-worker runtime; each connection's
 *              task does readexactly(64), write, drain until end of file
 *   thread     a thread per connection, blocking sockets
 *   process    a process per connection, forked per accept, blocking
 *              sockets
 *   go         bench/go/echo.go: net.Listen, a goroutine per connection,
 *              GOMAXPROCS=P
 *   asyncio,   bench/py/echo.py: asyncio.start_server, readexactly(64),
 *   uvloop     write, drain; uvloop's loop for uvloop
 *
 * Every server has TCP_NODELAY on its connections, so that no reply waits
 * for Nagle's algorithm: weft's server, Go and asyncio set it by default,
 * the thread and process servers here set it themselves.
 */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/loadgen.h"

#define WARMUP_S 0.5
#define WINDOW_S 3.0
#define BACKLOG  511
/* mixed's slice of work: ~50 us of FNV-1a in C and Go alike (about 62 ns a
 * round here). Pure Python runs a round ~70 times slower, so its servers
 * get fewer rounds for about the same time (see the plan's note). */
#define MIXED_ROUNDS    800
#define MIXED_PY_ROUNDS 12
#define CONNS_DEFAULT   100
#define CONNS_FULL      1000
#define CONNS_MAX       20000

/* ---------------------------------------------------------------------------
 * The C servers. Each runs in the forked server process: fd 0 is the
 * control pipe, fd 1 the pipe for the ready line. */

struct srv_args {
    const char *mode;
    unsigned workers;
    unsigned rounds;
};

static void set_nodelay(int fd)
{
    int one = 1;
    /* Best effort: a refusal only costs latency, which the figures show. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* weft: one task per connection, through the buffered stream. */
static void weft_conn(weft_stream *s, void *arg)
{
    const struct srv_args *a = arg;
    uint8_t buf[BENCH_ECHO_LEN];
    for (;;) {
        ssize_t k = weft_stream_readexactly(s, buf, sizeof buf);
        if (k == -ENODATA)
            return; /* the client closed: the end of every connection */
        if (k != (ssize_t)sizeof buf) {
            fprintf(stderr, "weft-bench: weft server: readexactly: %s\n",
                    weft_strerror((int)k));
            return;
        }
        bench_echo_answer(buf, a->rounds);
        int err = weft_stream_write(s, buf, sizeof buf);
        if (err == 0)
            err = weft_stream_drain(s);
        if (err < 0) {
            fprintf(stderr, "weft-bench: weft server: write: %s\n",
                    weft_strerror(err));
            return;
        }
    }
}

/* Read fd (the control pipe) until end of file, suspending meanwhile. */
static int weft_wait_eof(int fd)
{
    int err = weft_fd_set_nonblocking(fd);
    char b[64];
    ssize_t k = 0;
    while (err == 0 && (k = weft_fd_read(fd, b, sizeof b)) > 0)
        ;
    return err < 0 ? err : (int)k;
}

/* The root task: serve until the control pipe closes, then close the
 * server and wait for its connections' tasks (the clients have closed). */
static void *weft_server_task(void *arg)
{
    struct srv_args *a = arg;
    weft_server *srv;
    int err = weft_start_server("127.0.0.1", 0, weft_conn, a, &srv);
    if (err < 0) {
        bench_perror("weft_start_server", err);
        return (void *)(intptr_t)err;
    }
    err = bench_echo_ready(weft_server_port(srv), a->rounds);
    if (err == 0)
        err = weft_wait_eof(0);
    weft_server_close(srv);
    int rc = weft_server_wait_closed(srv);
    if (rc == 0)
        weft_server_free(srv);
    if (err < 0 || rc < 0)
        bench_perror("weft server", err < 0 ? err : rc);
    return (void *)(intptr_t)(err < 0 ? err : rc);
}

/* The runtime's counters (whole life of the server, warm-up included) go
 * after the ready line, for the cell's RESULT line. */
static int weft_server_main(const struct srv_args *a)
{
    void *result = NULL;
    struct bench_result counters = {0};
    int err = bench_weft_run(a->workers, weft_server_task, (void *)a, &result,
                             NULL, &counters);
    if (err == 0) {
        printf("%s\n", counters.extra);
        fflush(stdout); /* the process ends in _exit */
    }
    return err == 0 && result == NULL ? 0 : 1;
}

/* A listening socket on 127.0.0.1 and a free port. */
static int listen_local(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(fd, BACKLOG) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* One connection, blocking: read a request, answer it, until end of
 * file. Returns 0 at end of file, else -errno. */
static int serve_blocking(int fd, unsigned rounds)
{
    uint8_t buf[BENCH_ECHO_LEN];
    for (;;) {
        int err = bench_read_full(fd, buf, sizeof buf);
        if (err == -EPIPE)
            return 0;
        if (err < 0)
            return err;
        bench_echo_answer(buf, rounds);
        err = bench_write_full(fd, buf, sizeof buf);
        if (err < 0)
            return err;
    }
}

struct conn_thread {
    int fd;
    unsigned rounds;
};

static void *conn_thread_main(void *arg)
{
    struct conn_thread ct = *(struct conn_thread *)arg;
    free(arg);
    int err = serve_blocking(ct.fd, ct.rounds);
    if (err < 0)
        bench_perror("thread server: connection", err);
    close(ct.fd);
    return NULL;
}

static int start_thread(int fd, const struct srv_args *a)
{
    struct conn_thread *ct = malloc(sizeof *ct);
    if (!ct)
        return -ENOMEM;
    *ct = (struct conn_thread){fd, a->rounds};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int err = pthread_create(&th, &attr, conn_thread_main, ct);
    pthread_attr_destroy(&attr);
    if (err) {
        free(ct);
        return -err;
    }
    return 0;
}

/* The child serves the connection and exits; the parent keeps accepting.
 * The child is single-threaded: the server process never starts a
 * thread in process mode. */
static int start_process(int fd, int lfd, unsigned rounds)
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        close(lfd);
        close(0); /* the control pipe is the parent's business */
        int err = serve_blocking(fd, rounds);
        if (err < 0)
            bench_perror("process server: connection", err);
        _exit(err < 0 ? 1 : 0);
    }
    return 0;
}

/* Accept connections until the control pipe (fd 0) reaches end of file,
 * handing each to a thread or a process. */
static int accept_loop(int lfd, const struct srv_args *a, bool processes)
{
    struct pollfd p[2] = {{.fd = lfd, .events = POLLIN},
                          {.fd = 0, .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (p[1].revents) {
            char b[64];
            ssize_t k = read(0, b, sizeof b);
            if (k == 0)
                return 0;
            if (k < 0 && errno != EINTR)
                return -errno;
        }
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
            continue;
        if (fd < 0)
            return -errno;
        set_nodelay(fd);
        int err =
            processes ? start_process(fd, lfd, a->rounds) : start_thread(fd, a);
        if (processes || err < 0)
            close(fd); /* a child has its own copy */
        if (err < 0)
            return err;
    }
}

/* A process server reaps its connections before it exits (their time then
 * counts in its rusage, and so in the cell's). */
static int reap_children(void)
{
    int status, failed = 0;
    pid_t pid;
    while ((pid = wait(&status)) > 0 || (pid < 0 && errno == EINTR))
        if (pid > 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            failed++;
    return failed ? -ECHILD : 0;
}

static int blocking_server_main(const struct srv_args *a, bool processes)
{
    int port = 0, lfd = listen_local(&port);
    if (lfd < 0) {
        bench_perror("server: listen", lfd);
        return 1;
    }
    int err = bench_echo_ready(port, a->rounds);
    if (err == 0)
        err = accept_loop(lfd, a, processes);
    close(lfd);
    if (processes) {
        int rc = reap_children();
        err = err < 0 ? err : rc;
    }
    if (err < 0)
        bench_perror(processes ? "process server" : "thread server", err);
    return err < 0 ? 1 : 0;
}

/* The forked server process's main. */
static int c_server_main(void *arg)
{
    const struct srv_args *a = arg;
    /* A write to a connection the client closed must fail with EPIPE,
     * not kill the server. */
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(a->mode, "weft") == 0)
        return weft_server_main(a);
    return blocking_server_main(a, strcmp(a->mode, "process") == 0);
}

/* ---------------------------------------------------------------------------
 * The cell */

static bool is_python(const char *mode)
{
    return strcmp(mode, "asyncio") == 0 || strcmp(mode, "uvloop") == 0;
}

static bool is_c_mode(const char *mode)
{
    return strcmp(mode, "weft") == 0 || strcmp(mode, "thread") == 0 ||
           strcmp(mode, "process") == 0;
}

/* Room for n connections on each side, plus a margin. */
static void raise_nofile(uint64_t n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= n + 64)
        return;
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl); /* connecting reports EMFILE */
}

/* Start the cell's server: a fork of this process, or a reference. */
static int start_server(const struct bench_cell *c, struct srv_args *a,
                        struct bench_server *srv)
{
    if (!bench_mode_is_ref(c->mode))
        return bench_server_start(srv, c_server_main, a, NULL);
    char *argv[16], buf[8][256], why[256];
    if (!bench_ref_available(c, why, sizeof why)) {
        fprintf(stderr, "weft-bench: %s\n", why);
        return -ENOENT;
    }
    bench_ref_argv(c, argv, buf);
    size_t i = 0;
    while (argv[i])
        i++;
    snprintf(buf[6], sizeof buf[6], "%u", a->rounds);
    argv[i++] = "--rounds";
    argv[i++] = buf[6];
    argv[i] = NULL;
    return bench_server_start(srv, NULL, NULL, argv);
}

static void report(const struct bench_cell *c, const struct srv_args *a,
                   const struct bench_server *srv,
                   const struct bench_loadgen_result *lr, int stopped,
                   struct bench_result *res)
{
    double replies = lr->replies ? (double)lr->replies : 1;
    /* A window cut short by an error has no duration: its rates are 0. */
    double window_ns = lr->window_s > 0 ? lr->window_s * 1e9 : INFINITY;
    if (lr->err < 0)
        bench_perror("loadgen", lr->err);
    if (lr->mismatches)
        fprintf(stderr, "weft-bench: %llu replies differed from the expected\n",
                (unsigned long long)lr->mismatches);
    if (lr->server_cpu_ns < 0)
        fprintf(stderr, "weft-bench: could not read the server's CPU clock\n");
    if (lr->silent_conns)
        fprintf(stderr,
                "weft-bench: %u connections got no reply in the window\n",
                lr->silent_conns);
    res->ns_per_op = (double)lr->server_cpu_ns / replies;
    res->ok = lr->err == 0 && lr->mismatches == 0 && lr->silent_conns == 0 &&
              lr->replies > 0 && lr->server_cpu_ns >= 0 && stopped == 0;
    bench_extra(
        res,
        "req_s=%.0f p50_us=%.1f p99_us=%.1f max_us=%.0f "
        "cpu_us_per_req=%.2f server_pct=%.0f "
        "loadgen_pct=%.0f conns=%llu window_s=%.2f replies=%llu",
        (double)lr->replies / (window_ns / 1e9), (double)lr->p50_ns / 1e3,
        (double)lr->p99_ns / 1e3, (double)lr->max_ns / 1e3,
        res->ns_per_op / 1e3, 100.0 * (double)lr->server_cpu_ns / window_ns,
        100.0 * (double)lr->client_cpu_ns / window_ns, (unsigned long long)c->n,
        lr->window_s, (unsigned long long)lr->replies);
    if (a->rounds)
        bench_extra(res, "rounds=%u work_us=%.1f", a->rounds,
                    srv->work_ns / 1e3);
    if (lr->silent_conns)
        bench_extra(res, "silent_conns=%u", lr->silent_conns);
    if (lr->mismatches)
        bench_extra(res, "mismatches=%llu", (unsigned long long)lr->mismatches);
    if (srv->trailer[0])
        bench_extra(res, "%s", srv->trailer);
}

static int run_cell(const struct bench_cell *c, bool mixed,
                    struct bench_result *res)
{
    if (!is_c_mode(c->mode) && !bench_mode_is_ref(c->mode))
        return -ENOTSUP;
    if (c->n == 0 || c->n > CONNS_MAX || c->workers == 0 ||
        c->workers > WEFT_MAX_WORKERS)
        return -EINVAL;
    struct srv_args a = {
        .mode = c->mode,
        .workers = c->workers,
        .rounds = !mixed               ? 0
                  : is_python(c->mode) ? MIXED_PY_ROUNDS
                                       : MIXED_ROUNDS,
    };
    raise_nofile(c->n);
    struct bench_server srv;
    int err = start_server(c, &a, &srv);
    if (err < 0)
        return err;
    struct bench_loadgen_opts opt = {
        .port = srv.port,
        .conns = (unsigned)c->n,
        .rounds = a.rounds,
        .warmup_s = WARMUP_S,
        .window_s = WINDOW_S,
    };
    struct bench_loadgen_result lr;
    err = bench_loadgen_run(&opt, &srv, &lr);
    /* After the load generator closed every connection. */
    int stopped = bench_server_stop(&srv);
    if (err < 0)
        return err;
    report(c, &a, &srv, &lr, stopped, res);
    return 0;
}

static int echo_run(const struct bench_cell *c, struct bench_result *res)
{
    return run_cell(c, false, res);
}

static int mixed_run(const struct bench_cell *c, struct bench_result *res)
{
    return run_cell(c, true, res);
}

/* ---------------------------------------------------------------------------
 * The plan */

static uint64_t echo_default_n(const struct bench_cell *c, bool full)
{
    (void)c;
    return full ? CONNS_FULL : CONNS_DEFAULT;
}

static void plan_workload(struct bench_plan *plan, bool mixed)
{
    uint64_t n = echo_default_n(NULL, bench_plan_full(plan));
    unsigned w[3], nw = bench_plan_worker_counts(plan, w);
    unsigned wn = w[nw - 1]; /* the CPU count */
    char group[96];
    if (mixed)
        snprintf(group, sizeof group,
                 "%llu connections, %d rounds of FNV-1a per request",
                 (unsigned long long)n, MIXED_ROUNDS);
    else
        snprintf(group, sizeof group,
                 "%llu connections, one %d-byte request in flight each",
                 (unsigned long long)n, BENCH_ECHO_LEN);

    bench_plan_add(plan, group, "weft", 1, n, 0, 0, NULL);
    if (wn > 1)
        bench_plan_add(plan, group, "weft", wn, n, 0, 0, NULL);
    /* workers = n: one thread or process per connection. */
    bench_plan_add(plan, group, "thread", (unsigned)n, n, 0, 0,
                   "a thread per connection");
    if (!mixed)
        bench_plan_add(plan, group, "process", (unsigned)n, n, 0, 0,
                       "a process per connection");
    bench_plan_add(plan, group, "go", 1, n, 0, 0, "goroutine per conn.");
    if (wn > 1)
        bench_plan_add(plan, group, "go", wn, n, 0, 0, "goroutine per conn.");
    bench_plan_add(plan, group, "asyncio", 1, n, 0, 0,
                   mixed ? "12 rounds, see below" : "asyncio streams");
    if (!mixed)
        bench_plan_add(plan, group, "uvloop", 1, n, 0, 0, "asyncio streams");

    bench_plan_note(plan, group,
                    "ns/op: the server process's CPU time (user + system, "
                    "every thread and child) per request over the %.0f s "
                    "window, after %.1f s of warm-up",
                    WINDOW_S, WARMUP_S);
    bench_plan_note(plan, group,
                    "req_s, p50_us, p99_us: the load generator's, one "
                    "thread in the cell's process; it needs a core of its "
                    "own (loadgen_pct), which it shares with the "
                    "server on small machines");
    if (mixed) {
        bench_plan_note(plan, group,
                        "asyncio: %d rounds instead of %d, which pure "
                        "Python takes about as long (work_us: each "
                        "server's own timing of its slice)",
                        MIXED_PY_ROUNDS, MIXED_ROUNDS);
        bench_plan_note(plan, group,
                        "process, uvloop: left out to keep the run short "
                        "(weft-bench mixed --mode process runs one)");
    }
    bench_plan_note(plan, group,
                    "threadpool, processpool: skipped, a pool thread or "
                    "process would hold a connection for its whole life, "
                    "as in thread and process");
}

static void echo_plan(struct bench_plan *plan)
{
    plan_workload(plan, false);
}

static void mixed_plan(struct bench_plan *plan)
{
    plan_workload(plan, true);
}

const struct bench_workload bench_echo = {
    .name = "echo",
    .op = "server CPU ns per request",
    .columns = "req_s p50_us p99_us server_pct loadgen_pct",
    .run = echo_run,
    .default_n = echo_default_n,
    .plan = echo_plan,
    .runs_refs = true,
};

const struct bench_workload bench_mixed = {
    .name = "mixed",
    .op = "server CPU ns per request",
    .columns = "req_s p50_us p99_us server_pct loadgen_pct work_us",
    .run = mixed_run,
    .default_n = echo_default_n,
    .plan = mixed_plan,
    .runs_refs = true,
};
