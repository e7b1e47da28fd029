/* The TCP side of echo and mixed (loadgen.c): the protocol every server
 * speaks, the server process the cell measures, and the load generator
 * that drives it. Only echo.c includes this.
 *
 * The protocol. A request is BENCH_ECHO_LEN (64) bytes: an 8-byte tag
 * (the connection's index and the request's sequence number, unique in
 * the run) and a 56-byte payload. The reply has the same length. With
 * rounds == 0 (echo) it is the request itself; with rounds > 0 (mixed) its
 * tag is XORed with bench_echo_work(payload, 56, rounds), both read as
 * little-endian 64-bit integers, and the payload comes back unchanged.
 * The Go and Python servers implement the same function.
 *
 * The server process. A server runs in a process of its own, so that its
 * CPU time is its own: stdin is a control pipe whose end of file tells it
 * to stop, and its first line on stdout says where it listens and what one
 * request's work costs it:
 *
 *   port=PORT work_ns=NS
 *
 * A server exits 0 after a clean stop and non-zero if it failed. What it
 * prints after the ready line (key=value pairs) joins the RESULT line.
 */
#ifndef WEFT_BENCH_LOADGEN_H
#define WEFT_BENCH_LOADGEN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bench/bench.h"

#define BENCH_ECHO_LEN     64
#define BENCH_ECHO_TAG     8
#define BENCH_ECHO_PAYLOAD (BENCH_ECHO_LEN - BENCH_ECHO_TAG)

/* FNV-1a over the len bytes at p, `rounds` times over, the hash carried
 * from round to round: a chain of dependent multiplies that no compiler
 * can shorten. */
uint64_t bench_echo_work(const uint8_t *p, size_t len, unsigned rounds);

/* Turn request buf into its reply, in place (see the protocol above). */
void bench_echo_answer(uint8_t buf[BENCH_ECHO_LEN], unsigned rounds);

/* For a server: print the ready line for port on stdout, with the mean
 * time of one request's work measured here. Returns 0 or -errno. */
int bench_echo_ready(int port, unsigned rounds);

/* A running server process, seen from the cell. */
struct bench_server {
    pid_t pid;
    int ctl;        /* write end of the server's stdin; closing it stops it */
    int out;        /* read end of the server's stdout */
    int port;       /* from its ready line */
    double work_ns; /* from its ready line */
    /* What it printed after the ready line, the newlines made spaces,
     * once it stopped (the weft server: its runtime's counters). */
    char trailer[256];
};

/* Start a server: fork, and in the child either exec argv (a Go or Python
 * server; argv may not be NULL then) or, if argv is NULL, exit with
 * fn(arg)'s result (a C server, in a copy of this process: call this
 * before this process starts any thread). Waits for the ready line.
 * Returns 0, or -errno with no process left behind. */
int bench_server_start(struct bench_server *srv, int (*fn)(void *arg),
                       void *arg, char *const argv[]);

/* CPU time (user + system, every thread) of the server and of the child
 * processes its main thread forked (a process-per-connection server's),
 * nanoseconds; -1 if the server's own clock cannot be read. */
int64_t bench_server_cpu_ns(const struct bench_server *srv);

/* Close the control pipe and wait for the server to exit (at most 10 s,
 * then SIGKILL). Returns 0 if it exited 0, else -ECHILD (and says why). */
int bench_server_stop(struct bench_server *srv);

/* What one run of the load generator does. */
struct bench_loadgen_opts {
    int port;        /* on 127.0.0.1 */
    unsigned conns;  /* connections, each with one request in flight */
    unsigned rounds; /* the server's work per request (0: echo) */
    double warmup_s; /* before the window: requests neither counted nor
                        timed */
    double window_s; /* the measured interval */
};

/* What it measured. Counts and times cover the window only. */
struct bench_loadgen_result {
    uint64_t replies;       /* replies completed in the window */
    double window_s;        /* the window as it ran */
    int64_t p50_ns, p99_ns; /* latency: request written to reply read */
    int64_t max_ns;         /* the slowest reply in the window */
    int64_t server_cpu_ns;  /* the server's CPU in the window */
    int64_t client_cpu_ns;  /* this process's CPU in the window */
    uint64_t mismatches;    /* replies that differed from the expected */
    unsigned silent_conns;  /* connections with no reply in the window */
    int err;                /* the first socket error, 0 if none */
};

/* Connect, warm up, measure, let the requests in flight finish, close.
 * Returns 0 with res filled in (check res->err, mismatches and
 * silent_conns), or -errno if it could not start. */
int bench_loadgen_run(const struct bench_loadgen_opts *opt,
                      const struct bench_server *srv,
                      struct bench_loadgen_result *res);

#endif /* WEFT_BENCH_LOADGEN_H */
