/* The load generator of echo and mixed, and the server process it
 * measures (the protocol is in loadgen.h).
 *
 * The load generator is one thread over epoll (edge-triggered), with
 * non-blocking TCP_NODELAY sockets to 127.0.0.1. It opens every
 * connection, sends one request on each, and answers every reply with the
 * connection's next request, so exactly `conns` requests are in flight at
 * any time (a closed loop: a slow server gets fewer requests, never a
 * queue). It runs warmup_s unmeasured, then the window: at each end of the
 * window it reads the server's CPU clock (clock_getcpuclockid on the
 * server and on each of its children: every thread, user and system, to
 * the nanosecond), and inside it counts replies and records each one's
 * latency, from the first write of the request to the read that completed
 * its reply. After the window no new request is sent; the ones in flight
 * must still come back (at most DRAIN_S), so that every server sees a
 * clean end of file rather than a reset.
 *
 * Every reply is compared, all 64 bytes, with the reply the request must
 * get. Payloads come from a table of TABLE_SIZE random payloads whose
 * hashes (mixed) are computed once here, so checking a reply costs a
 * memcmp however much work it cost the server; the tag makes every
 * request unique, so a reply sent to the wrong connection, repeated or
 * lost fails the check as surely as a wrong byte.
 */
#include "bench/loadgen.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TABLE_SIZE 256 /* a power of two */
#define BATCH      256 /* epoll events per wait */
#define DRAIN_S    5.0
#define READY_S    20.0 /* a server's start, Python's import included */
#define STOP_S     10.0
#define CALIBRATE  64 /* calls timed for the ready line */

/* ---------------------------------------------------------------------------
 * The protocol */

uint64_t bench_echo_work(const uint8_t *p, size_t len, unsigned rounds)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (unsigned r = 0; r < rounds; r++)
        for (size_t i = 0; i < len; i++) {
            h ^= p[i];
            h *= UINT64_C(1099511628211);
        }
    return h;
}

/* Little-endian by construction: weft is x86-64 only (CMakeLists.txt), and
 * memcpy of a uint64_t there is the little-endian encoding Go and Python
 * use. */
void bench_echo_answer(uint8_t buf[BENCH_ECHO_LEN], unsigned rounds)
{
    if (rounds == 0)
        return;
    uint64_t tag;
    memcpy(&tag, buf, sizeof tag);
    tag ^= bench_echo_work(buf + BENCH_ECHO_TAG, BENCH_ECHO_PAYLOAD, rounds);
    memcpy(buf, &tag, sizeof tag);
}

int bench_echo_ready(int port, unsigned rounds)
{
    uint8_t p[BENCH_ECHO_PAYLOAD] = {1};
    volatile uint64_t sink = 0;
    int64_t t0 = bench_now_ns();
    for (unsigned i = 0; i < CALIBRATE && rounds; i++) {
        p[0] = (uint8_t)i;
        sink += bench_echo_work(p, sizeof p, rounds);
    }
    double ns = (double)(bench_now_ns() - t0) / CALIBRATE;
    (void)sink;
    if (printf("port=%d work_ns=%.0f\n", port, rounds ? ns : 0.0) < 0 ||
        fflush(stdout) != 0)
        return -EIO;
    return 0;
}

/* ---------------------------------------------------------------------------
 * The server process */

static void child_start(int ctl[2], int out[2], int (*fn)(void *), void *arg,
                        char *const argv[])
{
    /* dup2 clears close-on-exec on the copies; the originals go, the
     * write end of ctl above all: while the server held it, closing ours
     * would never reach it as end of file. */
    if (dup2(ctl[0], 0) < 0 || dup2(out[1], 1) < 0)
        _exit(127);
    for (int i = 0; i < 2; i++) {
        if (ctl[i] > 2)
            close(ctl[i]);
        if (out[i] > 2)
            close(out[i]);
    }
    if (!argv)
        _exit(fn(arg));
    execv(argv[0], argv);
    fprintf(stderr, "weft-bench: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Read the ready line, waiting at most READY_S. */
static int read_ready(struct bench_server *srv)
{
    char line[256];
    size_t len = 0;
    int64_t deadline = bench_now_ns() + (int64_t)(READY_S * 1e9);
    while (!memchr(line, '\n', len)) {
        int64_t left_ms = (deadline - bench_now_ns()) / 1000000;
        if (left_ms <= 0 || len == sizeof line - 1) {
            fprintf(stderr, "weft-bench: the server sent no ready line\n");
            return -ETIMEDOUT;
        }
        struct pollfd p = {.fd = srv->out, .events = POLLIN};
        int k = poll(&p, 1, (int)left_ms);
        if (k < 0 && errno != EINTR)
            return -errno;
        if (k <= 0)
            continue;
        ssize_t r = read(srv->out, line + len, sizeof line - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "weft-bench: the server exited before it was "
                            "ready\n");
            return -ECHILD;
        }
        len += (size_t)r;
    }
    line[len] = '\0';
    if (sscanf(line, "port=%d work_ns=%lf", &srv->port, &srv->work_ns) != 2 ||
        srv->port <= 0 || srv->port > 65535) {
        fprintf(stderr, "weft-bench: bad ready line from the server: %s", line);
        return -EPROTO;
    }
    return 0;
}

int bench_server_start(struct bench_server *srv, int (*fn)(void *arg),
                       void *arg, char *const argv[])
{
    int ctl[2], out[2];
    if (pipe2(ctl, O_CLOEXEC) < 0)
        return -errno;
    if (pipe2(out, O_CLOEXEC) < 0) {
        int err = -errno;
        close(ctl[0]);
        close(ctl[1]);
        return err;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        child_start(ctl, out, fn, arg, argv);
    int err = pid < 0 ? -errno : 0;
    close(ctl[0]);
    close(out[1]);
    *srv = (struct bench_server){.pid = pid, .ctl = ctl[1], .out = out[0]};
    if (err == 0)
        err = read_ready(srv);
    if (err < 0 && pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (err < 0) {
        close(ctl[1]);
        close(out[0]);
    }
    return err;
}

static int64_t pid_cpu_ns(pid_t pid)
{
    clockid_t clk;
    struct timespec ts;
    if (clock_getcpuclockid(pid, &clk) != 0 || clock_gettime(clk, &ts) < 0)
        return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The CPU of the children listed in one of /proc/PID/task/TID/children. */
static int64_t children_cpu_ns(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int64_t sum = 0;
    int child;
    while (fscanf(f, "%d", &child) == 1) {
        int64_t ns = pid_cpu_ns(child);
        if (ns > 0) /* a child that just exited is gone with its time */
            sum += ns;
    }
    fclose(f);
    return sum;
}

int64_t bench_server_cpu_ns(const struct bench_server *srv)
{
    int64_t sum = pid_cpu_ns(srv->pid);
    if (sum < 0)
        return -1;
    /* A process-per-connection server's children are its connections.
     * The kernel lists a process's children per thread; the servers fork
     * from their main thread only, so one list is all of them, and a
     * thread-per-connection server's thousand threads are not walked. */
    char path[128];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)srv->pid,
             (int)srv->pid);
    return sum + children_cpu_ns(path);
}

static void describe_status(int status)
{
    if (WIFEXITED(status))
        fprintf(stderr, "weft-bench: the server exited with status %d\n",
                WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        fprintf(stderr, "weft-bench: the server died of signal %d\n",
                WTERMSIG(status));
}

/* Keep what the server printed after its ready line; it has exited, so
 * the pipe holds all of it (unless a child it left behind holds the pipe
 * open: then wait no longer than a moment). */
static void read_trailer(struct bench_server *srv)
{
    size_t len = 0;
    struct pollfd p = {.fd = srv->out, .events = POLLIN};
    while (len < sizeof srv->trailer - 1 && poll(&p, 1, 100) > 0) {
        ssize_t k =
            read(srv->out, srv->trailer + len, sizeof srv->trailer - 1 - len);
        if (k <= 0)
            break;
        len += (size_t)k;
    }
    srv->trailer[len] = '\0';
    for (char *c = srv->trailer; *c; c++)
        if (*c == '\n')
            *c = ' ';
    while (len > 0 && srv->trailer[len - 1] == ' ')
        srv->trailer[--len] = '\0';
    size_t lead = strspn(srv->trailer, " ");
    memmove(srv->trailer, srv->trailer + lead, len - lead + 1);
}

int bench_server_stop(struct bench_server *srv)
{
    close(srv->ctl);
    int status = 0;
    int64_t deadline = bench_now_ns() + (int64_t)(STOP_S * 1e9);
    pid_t got;
    while ((got = waitpid(srv->pid, &status, WNOHANG)) == 0 &&
           bench_now_ns() < deadline) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    if (got == 0) {
        fprintf(stderr,
                "weft-bench: the server did not stop within %.0f s "
                "of its end of file; killed\n",
                STOP_S);
        kill(srv->pid, SIGKILL);
        waitpid(srv->pid, &status, 0);
        status = -1;
    }
    read_trailer(srv);
    close(srv->out);
    if (got < 0)
        return -errno;
    if (status == 0)
        return 0;
    if (status != -1)
        describe_status(status);
    return -ECHILD;
}

/* ---------------------------------------------------------------------------
 * The load generator */

/* One connection. */
struct lg_conn {
    int fd;
    unsigned id;
    bool idle;         /* no request in flight (after the window) */
    bool want_out;     /* EPOLLOUT is in its interest set */
    uint64_t seq;      /* requests sent so far */
    uint64_t rng;      /* xorshift64 state: the next payload */
    size_t sent, got;  /* bytes of req written, of the reply read */
    int64_t t_sent;    /* when req was started */
    uint64_t answered; /* replies completed in the window */
    uint8_t req[BENCH_ECHO_LEN], want[BENCH_ECHO_LEN], buf[BENCH_ECHO_LEN];
};

/* Random payloads and the work hash of each. */
struct lg_table {
    uint8_t payload[TABLE_SIZE][BENCH_ECHO_PAYLOAD];
    uint64_t hash[TABLE_SIZE];
};

enum lg_phase { WARMUP, WINDOW, DRAIN };

struct lg {
    const struct bench_loadgen_opts *opt;
    const struct lg_table *table;
    struct lg_conn *conns;
    int ep;
    enum lg_phase phase;
    unsigned busy;       /* connections with a request in flight */
    int64_t *lat;        /* latencies in the window */
    size_t nlat, caplat; /* their count and room */
    uint64_t mismatches;
};

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static struct lg_table *table_new(unsigned rounds)
{
    struct lg_table *t = malloc(sizeof *t);
    if (!t)
        return NULL;
    uint64_t s = UINT64_C(0x9e3779b97f4a7c15);
    for (unsigned k = 0; k < TABLE_SIZE; k++) {
        for (unsigned i = 0; i < BENCH_ECHO_PAYLOAD; i++)
            t->payload[k][i] = (uint8_t)xorshift(&s);
        t->hash[k] =
            rounds ? bench_echo_work(t->payload[k], BENCH_ECHO_PAYLOAD, rounds)
                   : 0;
    }
    return t;
}

static int record(struct lg *lg, int64_t ns)
{
    if (lg->nlat == lg->caplat) {
        size_t cap = lg->caplat ? 2 * lg->caplat : 65536;
        int64_t *p = realloc(lg->lat, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        lg->lat = p;
        lg->caplat = cap;
    }
    lg->lat[lg->nlat++] = ns;
    return 0;
}

/* Write what is left of c's request. At EAGAIN (never seen with 64-byte
 * requests, but possible) ask for EPOLLOUT too, and stop: its edge brings
 * us back. Interest in EPOLLOUT from the start would report an event for
 * every ACK. */
static int conn_send(struct lg *lg, struct lg_conn *c)
{
    while (c->sent < BENCH_ECHO_LEN) {
        ssize_t k = send(c->fd, c->req + c->sent, BENCH_ECHO_LEN - c->sent,
                         MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c->want_out)
                return 0;
            c->want_out = true;
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET,
                                     .data.ptr = c};
            return epoll_ctl(lg->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0 ? -errno
                                                                    : 0;
        }
        if (k < 0)
            return -errno;
        c->sent += (size_t)k;
    }
    return 0;
}

/* Start c's next request: a fresh tag, a payload from the table, and the
 * reply it must get. */
static int conn_request(struct lg *lg, struct lg_conn *c, int64_t now)
{
    uint64_t tag =
        (uint64_t)c->id << 40 | (c->seq++ & ((UINT64_C(1) << 40) - 1));
    unsigned k = (unsigned)(xorshift(&c->rng) & (TABLE_SIZE - 1));
    uint64_t want = tag ^ lg->table->hash[k];
    memcpy(c->req, &tag, sizeof tag);
    memcpy(c->want, &want, sizeof want);
    memcpy(c->req + BENCH_ECHO_TAG, lg->table->payload[k], BENCH_ECHO_PAYLOAD);
    memcpy(c->want + BENCH_ECHO_TAG, lg->table->payload[k], BENCH_ECHO_PAYLOAD);
    c->sent = c->got = 0;
    c->t_sent = now;
    return conn_send(lg, c);
}

/* c's reply is complete: check it, count it, send the next request. */
static int conn_reply(struct lg *lg, struct lg_conn *c)
{
    int64_t now = bench_now_ns();
    if (memcmp(c->buf, c->want, BENCH_ECHO_LEN) != 0)
        lg->mismatches++;
    if (lg->phase == WINDOW) {
        c->answered++;
        int err = record(lg, now - c->t_sent);
        if (err < 0)
            return err;
    }
    if (lg->phase == DRAIN) {
        c->idle = true;
        lg->busy--;
        c->got = 0;
        return 0;
    }
    return conn_request(lg, c, now);
}

/* Read until EAGAIN or the end of the reply. Stopping at the reply's end
 * without the read that would say EAGAIN is safe with edge triggering and
 * one request in flight: the next reply can only arrive after the next
 * request, and its arrival is a new edge. A byte beyond a reply (a broken
 * server) lands in the next reply's place and fails its comparison. */
static int conn_recv(struct lg *lg, struct lg_conn *c)
{
    for (;;) {
        if (c->idle) {
            uint8_t extra;
            ssize_t k = recv(c->fd, &extra, 1, 0);
            if (k > 0)
                lg->mismatches++;
            return k < 0 && errno != EAGAIN && errno != EWOULDBLOCK ? -errno
                                                                    : 0;
        }
        ssize_t k = recv(c->fd, c->buf + c->got, BENCH_ECHO_LEN - c->got, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (k < 0)
            return -errno;
        if (k == 0)
            return -EPIPE; /* the server closed a connection in use */
        c->got += (size_t)k;
        if (c->got == BENCH_ECHO_LEN)
            return conn_reply(lg, c);
    }
}

static int conn_open(struct lg_conn *c, unsigned id, int port, int ep)
{
    c->id = id;
    c->rng = UINT64_C(0x2545f4914f6cdd1d) * (id + 1);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -errno;
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* A blocking connect: simple, and the kernel completes it from the
     * listen backlog whether or not the server has accepted yet. */
    if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
        connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        fcntl(c->fd, F_SETFL, O_NONBLOCK) < 0)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0 ? -errno : 0;
}

/* Milliseconds to wait for events before the phase may change at `at`. */
static int wait_ms(int64_t now, int64_t at)
{
    int64_t ms = (at - now + 999999) / 1000000;
    return ms < 1 ? 1 : ms > 1000 ? 1000 : (int)ms;
}

/* Wait once and serve what is ready. */
static int serve_events(struct lg *lg, int timeout_ms)
{
    struct epoll_event ev[BATCH];
    int n = epoll_wait(lg->ep, ev, BATCH, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        struct lg_conn *c = ev[i].data.ptr;
        int err = 0;
        if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            err = conn_recv(lg, c);
        if (err == 0 && (ev[i].events & EPOLLOUT) && !c->idle)
            err = conn_send(lg, c);
        if (err < 0)
            return err;
    }
    return 0;
}

static int compare_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t sorted_at(const int64_t *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(q * (double)n);
    return v[i < n ? i : n - 1];
}

/* The three phases, then the figures. */
static int drive(struct lg *lg, const struct bench_server *srv,
                 struct bench_loadgen_result *res)
{
    const struct bench_loadgen_opts *opt = lg->opt;
    int64_t now = bench_now_ns();
    int64_t warm_end = now + (int64_t)(opt->warmup_s * 1e9);
    int64_t win_end = warm_end + (int64_t)(opt->window_s * 1e9);
    int64_t win_start = 0, srv0 = 0, cli0 = 0, drain_end = 0;
    for (unsigned i = 0; i < opt->conns; i++) {
        int err = conn_request(lg, &lg->conns[i], now);
        if (err < 0)
            return err;
    }
    lg->busy = opt->conns;
    for (;;) {
        now = bench_now_ns();
        if (lg->phase == WARMUP && now >= warm_end) {
            lg->phase = WINDOW;
            srv0 = bench_server_cpu_ns(srv);
            cli0 = bench_cpu_ns();
            win_start = bench_now_ns();
        } else if (lg->phase == WINDOW && now >= win_end) {
            int64_t srv1 = bench_server_cpu_ns(srv);
            res->server_cpu_ns = srv0 < 0 || srv1 < 0 ? -1 : srv1 - srv0;
            res->client_cpu_ns = bench_cpu_ns() - cli0;
            res->window_s = (double)(now - win_start) / 1e9;
            lg->phase = DRAIN;
            drain_end = now + (int64_t)(DRAIN_S * 1e9);
        }
        if (lg->phase == DRAIN && (lg->busy == 0 || now >= drain_end))
            break;
        int64_t at = lg->phase == WARMUP   ? warm_end
                     : lg->phase == WINDOW ? win_end
                                           : drain_end;
        int err = serve_events(lg, wait_ms(now, at));
        if (err < 0)
            return err;
    }
    if (lg->busy) {
        fprintf(stderr,
                "weft-bench: %u requests still unanswered %.0f s "
                "after the window\n",
                lg->busy, DRAIN_S);
        return -ETIMEDOUT;
    }
    return 0;
}

static void figures(struct lg *lg, struct bench_loadgen_result *res)
{
    qsort(lg->lat, lg->nlat, sizeof *lg->lat, compare_i64);
    res->replies = lg->nlat;
    res->p50_ns = sorted_at(lg->lat, lg->nlat, 0.50);
    res->p99_ns = sorted_at(lg->lat, lg->nlat, 0.99);
    res->max_ns = lg->nlat ? lg->lat[lg->nlat - 1] : 0;
    res->mismatches = lg->mismatches;
    for (unsigned i = 0; i < lg->opt->conns; i++)
        res->silent_conns += lg->conns[i].answered == 0;
}

int bench_loadgen_run(const struct bench_loadgen_opts *opt,
                      const struct bench_server *srv,
                      struct bench_loadgen_result *res)
{
    memset(res, 0, sizeof *res);
    struct lg lg = {.opt = opt, .table = table_new(opt->rounds)};
    lg.conns = calloc(opt->conns, sizeof *lg.conns);
    int ep = lg.ep = epoll_create1(EPOLL_CLOEXEC);
    int err = !lg.table || !lg.conns ? -ENOMEM : ep < 0 ? -errno : 0;
    unsigned opened = 0;
    while (err == 0 && opened < opt->conns) {
        err = conn_open(&lg.conns[opened], opened, opt->port, ep);
        if (err < 0 && lg.conns[opened].fd >= 0)
            close(lg.conns[opened].fd);
        else if (err == 0)
            opened++;
    }
    if (err < 0) {
        bench_perror("loadgen: connecting", err);
    } else {
        /* An error mid-run is a result (the server failed), not a
         * failure to start. */
        res->err = drive(&lg, srv, res);
        figures(&lg, res);
    }
    /* Closing every connection is the servers' clean end of file. */
    for (unsigned i = 0; i < opened; i++)
        close(lg.conns[i].fd);
    if (ep >= 0)
        close(ep);
    free(lg.lat);
    free(lg.conns);
    free((void *)lg.table);
    return err;
}
