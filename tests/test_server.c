/* Connections and servers (weft.h, "Connections and servers") on real
 * sockets: an echo server and its clients on 127.0.0.1, its port, 1,000
 * concurrent connections on 2 workers, a refused connection, an unknown
 * host, a server closed while connections are live (they go on, new ones
 * are refused, wait_closed waits for the handlers), a handler that returns
 * with bytes still buffered, serve_forever, IPv6 loopback, every
 * interface reached through "localhost", bad arguments, and no fd leaked.
 *
 * Each test makes its own runtime (Check forks every test); a checked
 * fixture counts this process's fds before and after it.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

/* ------------------------------------------------------------------------
 * Fds */

/* A port nothing listens on (bound, then released). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static weft_task *spawn(weft_fn fn, void *arg)
{
    weft_task *t = weft_spawn(fn, arg);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* ------------------------------------------------------------------------
 * The echo handler and a client */

struct echo_stats {
    atomic_int live, max_live, served;
};

/* Echo lines until the client closes. arg: struct echo_stats or NULL. */
static void echo_lines(weft_stream *s, void *arg)
{
    struct echo_stats *st = arg;
    if (st) {
        int live = atomic_fetch_add(&st->live, 1) + 1;
        int max = atomic_load(&st->max_live);
        while (live > max &&
               !atomic_compare_exchange_weak(&st->max_live, &max, live))
            ;
    }
    char line[512];
    ssize_t r;
    while ((r = weft_stream_readline(s, line, sizeof line)) > 0) {
        if (weft_stream_write(s, line, (size_t)r) < 0 ||
            weft_stream_drain(s) < 0)
            break;
    }
    if (st) {
        atomic_fetch_sub(&st->live, 1);
        atomic_fetch_add(&st->served, 1);
    }
}

/* Send `lines` lines on s and check each echo. 0 or the first error. */
static int echo_check(weft_stream *s, int id, int lines)
{
    char out[64], in[64];
    for (int i = 0; i < lines; i++) {
        int n = snprintf(out, sizeof out, "client %d line %d\n", id, i);
        int rc = weft_stream_write(s, out, (size_t)n);
        if (rc < 0)
            return rc;
        ssize_t r = weft_stream_readline(s, in, sizeof in);
        if (r < 0)
            return (int)r;
        if (r != n || memcmp(in, out, (size_t)n) != 0)
            return -EPROTO;
    }
    return 0;
}

static void close_stream(weft_stream *s)
{
    ck_assert_int_eq(weft_stream_close(s), 0);
    ck_assert_int_eq(weft_stream_wait_closed(s), 0);
    weft_stream_free(s);
}

static void close_server(weft_server *srv)
{
    ck_assert_int_eq(weft_server_close(srv), 0);
    ck_assert_int_eq(weft_server_wait_closed(srv), 0);
    weft_server_free(srv);
}

/* ------------------------------------------------------------------------
 * Basics */

static void *basic_main(void *arg)
{
    (void)arg;
    weft_server *srv = NULL;
    ck_assert_int_eq(weft_start_server("127.0.0.1", 0, echo_lines, NULL, &srv),
                     0);
    int port = weft_server_port(srv);
    ck_assert_int_gt(port, 0);
    weft_stream *s = NULL;
    ck_assert_int_eq(weft_open_connection("127.0.0.1", port, &s), 0);
    ck_assert_int_eq(echo_check(s, 0, 10), 0);
    struct sockaddr_storage peer;
    socklen_t len;
    ck_assert_int_eq(weft_stream_peername(s, &peer, &len), 0);
    ck_assert_int_eq(peer.ss_family, AF_INET);
    ck_assert_int_eq(ntohs(((struct sockaddr_in *)&peer)->sin_port), port);
    /* A half-close ends the handler; the server then closes its end. */
    ck_assert_int_eq(weft_stream_write_eof(s), 0);
    char c;
    ck_assert_int_eq(weft_stream_read(s, &c, 1), 0);
    close_stream(s);
    close_server(srv);
    return NULL;
}

START_TEST(server_echoes_lines_to_a_client_on_the_port_it_reports)
{
    tu_run_in(2, basic_main, NULL);
}
END_TEST

/* A handler that returns at once with 1 MiB still buffered. */
static void write_and_return(weft_stream *s, void *arg)
{
    (void)arg;
    size_t n = 1 << 20;
    unsigned char *buf = malloc(n);
    TU_ASSERT(buf != NULL);
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(i * 7);
    TU_ASSERT_INT_EQ(weft_stream_write(s, buf, n), 0);
    free(buf);
}

static void *flush_on_return_main(void *arg)
{
    (void)arg;
    weft_server *srv = NULL;
    ck_assert_int_eq(
        weft_start_server("127.0.0.1", 0, write_and_return, NULL, &srv), 0);
    weft_stream *s = NULL;
    ck_assert_int_eq(
        weft_open_connection("127.0.0.1", weft_server_port(srv), &s), 0);
    size_t n = 1 << 20;
    unsigned char *buf = malloc(n);
    ck_assert_ptr_nonnull(buf);
    TU_ASSERT_INT_EQ(weft_sleep(0.05), 0); /* the handler has returned */
    ck_assert_int_eq(weft_stream_readexactly(s, buf, n), (ssize_t)n);
    for (size_t i = 0; i < n; i++)
        TU_ASSERT(buf[i] == (unsigned char)(i * 7));
    ck_assert_int_eq(weft_stream_read(s, buf, 1), 0);
    free(buf);
    close_stream(s);
    close_server(srv);
    return NULL;
}

START_TEST(server_closes_a_connection_after_sending_what_its_handler_left)
{
    tu_run_in(2, flush_on_return_main, NULL);
}
END_TEST

/* ------------------------------------------------------------------------
 * 1,000 concurrent connections */

struct crowd {
    int port;
    int n;
    weft_event all_in;
    atomic_int next_id;
    atomic_int connected;
    atomic_int failed;
};

static void *crowd_client(void *arg)
{
    struct crowd *c = arg;
    int id = atomic_fetch_add(&c->next_id, 1);
    weft_stream *s = NULL;
    int rc = weft_open_connection("127.0.0.1", c->port, &s);
    if (rc == 0)
        rc = echo_check(s, id, 2);
    if (rc < 0) {
        fprintf(stderr, "client: %s\n", weft_strerror(rc));
        atomic_fetch_add(&c->failed, 1);
    }
    atomic_fetch_add(&c->connected, 1);
    /* Hold the connection until every client is in. */
    TU_ASSERT_INT_EQ(weft_event_wait(&c->all_in), 0);
    if (s) {
        if (rc == 0)
            rc = echo_check(s, id, 1);
        if (rc < 0)
            atomic_fetch_add(&c->failed, 1);
        TU_ASSERT_INT_EQ(weft_stream_close(s), 0);
        TU_ASSERT_INT_EQ(weft_stream_wait_closed(s), 0);
        weft_stream_free(s);
    }
    return NULL;
}

static void *crowd_main(void *arg)
{
    struct crowd *c = arg;
    struct echo_stats st = {0};
    weft_server_opts o = {.backlog = 2048};
    weft_server *srv = NULL;
    ck_assert_int_eq(
        weft_start_server_ex("127.0.0.1", 0, echo_lines, &st, &o, &srv), 0);
    c->port = weft_server_port(srv);
    ck_assert_int_eq(weft_event_init(&c->all_in), 0);
    weft_task **t = calloc((size_t)c->n, sizeof *t);
    ck_assert_ptr_nonnull(t);
    for (int i = 0; i < c->n; i++)
        t[i] = spawn(crowd_client, c);
    double t0 = weft_now();
    while (atomic_load(&c->connected) < c->n) {
        ck_assert_msg(weft_now() - t0 < 30, "only %d connected",
                      atomic_load(&c->connected));
        TU_ASSERT_INT_EQ(weft_sleep(0.001), 0);
    }
    /* Every connection is open and has echoed: the server has them all. */
    ck_assert_int_eq(atomic_load(&st.live), c->n);
    ck_assert_int_eq(weft_event_set(&c->all_in), 0);
    ck_assert_int_eq(weft_gather(t, (size_t)c->n, NULL, NULL), 0);
    free(t);
    close_server(srv);
    ck_assert_int_eq(atomic_load(&st.max_live), c->n);
    ck_assert_int_eq(atomic_load(&st.served), c->n);
    ck_assert_int_eq(atomic_load(&st.live), 0);
    ck_assert_int_eq(weft_event_destroy(&c->all_in), 0);
    return NULL;
}

START_TEST(server_serves_1000_concurrent_connections_on_2_workers)
{
    struct crowd c = {.n = 1000};
    /* Two fds per connection (both ends live in this process), plus
     * margin. */
    rlim_t need = (rlim_t)(2 * c.n + 256);
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < need) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
            fprintf(stderr,
                    "server_serves_1000_concurrent_connections: skipped, "
                    "RLIMIT_NOFILE hard limit %llu < %llu\n",
                    (unsigned long long)rl.rlim_max, (unsigned long long)need);
            return;
        }
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? need : rl.rlim_max;
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    tu_run_in(2, crowd_main, &c);
    ck_assert_int_eq(atomic_load(&c.failed), 0);
}
END_TEST

/* ------------------------------------------------------------------------
 * Failures */

static void *refused_main(void *arg)
{
    int port = (int)(intptr_t)arg;
    weft_stream *s = (weft_stream *)1;
    ck_assert_int_eq(weft_open_connection("127.0.0.1", port, &s),
                     -ECONNREFUSED);
    ck_assert_ptr_null(s);
    return NULL;
}

START_TEST(open_connection_to_a_closed_port_returns_econnrefused)
{
    int port = free_port();
    tu_run_in(1, refused_main, (void *)(intptr_t)port);
    refused_main((void *)(intptr_t)port); /* a plain thread: blocking */
}
END_TEST

static bool is_unknown_host(int rc)
{
    return rc == WEFT_EAI(EAI_NONAME) || rc == WEFT_EAI(EAI_AGAIN) ||
           rc == WEFT_EAI(EAI_FAIL);
}

static void *unknown_host_main(void *arg)
{
    (void)arg;
    weft_stream *s = NULL;
    int rc = weft_open_connection("no-such-host.invalid", 80, &s);
    ck_assert_msg(is_unknown_host(rc), "rc %d (%s)", rc, weft_strerror(rc));
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(weft_strerror(rc));
    weft_server *srv = NULL;
    rc = weft_start_server("no-such-host.invalid", 0, echo_lines, NULL, &srv);
    ck_assert_msg(is_unknown_host(rc), "rc %d (%s)", rc, weft_strerror(rc));
    ck_assert_ptr_null(srv);
    return NULL;
}

START_TEST(open_connection_to_an_unknown_host_returns_a_weft_eai_code)
{
    tu_run_in(1, unknown_host_main, NULL);
}
END_TEST

static void *interrupted_resolve_main(void *arg)
{
    (void)arg;
    weft_server *srv = NULL;
    ck_assert_int_eq(weft_start_server("127.0.0.1", 0, echo_lines, NULL, &srv),
                     0);
    int port = weft_server_port(srv);
    weft_stream *s = NULL;
    /* "localhost" is looked up on the blocking pool; an interrupted caller
     * returns at once and the lookup's result is dropped when it ends. */
    ck_assert_int_eq(weft_cancel(weft_current()), 0);
    ck_assert_int_eq(weft_open_connection("localhost", port, &s), -ECANCELED);
    ck_assert_int_eq(weft_uncancel(), 0);
    ck_assert_ptr_null(s);
    weft_timeout scope;
    ck_assert_int_eq(weft_timeout_enter_at(&scope, weft_now() - 1), 0);
    ck_assert_int_eq(weft_open_connection("localhost", port, &s), -ETIMEDOUT);
    /* A numeric host needs no lookup: the connect is what is interrupted
     * (or it completed at once, as loopback connects may). */
    int rc = weft_open_connection("127.0.0.1", port, &s);
    ck_assert_msg(rc == -ETIMEDOUT || rc == 0, "rc %d", rc);
    if (rc == 0)
        weft_stream_free(s);
    ck_assert_int_eq(weft_timeout_exit(&scope), -ETIMEDOUT);
    /* The pool still answers. */
    ck_assert_int_eq(weft_open_connection("localhost", port, &s), 0);
    ck_assert_int_eq(echo_check(s, 0, 2), 0);
    close_stream(s);
    close_server(srv);
    return NULL;
}

START_TEST(open_connection_interrupted_while_resolving_returns_at_once)
{
    tu_run_in(2, interrupted_resolve_main, NULL);
}
END_TEST

static void *bad_args_main(void *arg)
{
    (void)arg;
    weft_stream *s = NULL;
    weft_server *srv = NULL;
    ck_assert_int_eq(weft_open_connection("127.0.0.1", -1, &s), -EINVAL);
    ck_assert_int_eq(weft_open_connection("127.0.0.1", 65536, &s), -EINVAL);
    ck_assert_int_eq(weft_open_connection("127.0.0.1", 80, NULL), -EINVAL);
    ck_assert_int_eq(
        weft_start_server("127.0.0.1", 70000, echo_lines, NULL, &srv), -EINVAL);
    ck_assert_int_eq(weft_start_server("127.0.0.1", 0, NULL, NULL, &srv),
                     -EINVAL);
    ck_assert_int_eq(weft_start_server("127.0.0.1", 0, echo_lines, NULL, NULL),
                     -EINVAL);
    weft_server_opts o = {.stream = {.high_water = 10, .low_water = 20}};
    ck_assert_int_eq(
        weft_start_server_ex("127.0.0.1", 0, echo_lines, NULL, &o, &srv),
        -EINVAL);
    ck_assert_ptr_null(srv);
    ck_assert_int_eq(weft_server_port(NULL), -EINVAL);
    ck_assert_int_eq(weft_server_close(NULL), -EINVAL);
    ck_assert_int_eq(weft_server_wait_closed(NULL), -EINVAL);
    weft_server_free(NULL);

    /* The port in use, without SO_REUSEPORT: -EADDRINUSE. */
    ck_assert_int_eq(weft_start_server("127.0.0.1", 0, echo_lines, NULL, &srv),
                     0);
    weft_server *again = NULL;
    ck_assert_int_eq(weft_start_server("127.0.0.1", weft_server_port(srv),
                                       echo_lines, NULL, &again),
                     -EADDRINUSE);
    close_server(srv);
    return NULL;
}

START_TEST(server_and_connection_reject_bad_arguments)
{
    tu_run_in(1, bad_args_main, NULL);
    weft_server *srv = NULL;
    ck_assert_int_eq(weft_start_server("127.0.0.1", 0, echo_lines, NULL, &srv),
                     -EPERM);
    ck_assert_ptr_null(srv);
}
END_TEST

/* ------------------------------------------------------------------------
 * Closing a server with live connections */

struct waiter {
    weft_server *srv;
    int rc;
};

static void *wait_closed_task(void *arg)
{
    struct waiter *w = arg;
    w->rc = weft_server_wait_closed(w->srv);
    return NULL;
}

static void *serve_forever_task(void *arg)
{
    struct waiter *w = arg;
    w->rc = weft_server_serve_forever(w->srv);
    return NULL;
}

static void *close_live_main(void *arg)
{
    (void)arg;
    struct echo_stats st = {0};
    weft_server *srv = NULL;
    ck_assert_int_eq(weft_start_server("127.0.0.1", 0, echo_lines, &st, &srv),
                     0);
    int port = weft_server_port(srv);
    enum { N = 3 };
    weft_stream *c[N];
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(weft_open_connection("127.0.0.1", port, &c[i]), 0);
        ck_assert_int_eq(echo_check(c[i], i, 1), 0);
    }
    struct waiter fw = {.srv = srv, .rc = 1};
    weft_task *ft = spawn(serve_forever_task, &fw);
    struct waiter w = {.srv = srv, .rc = 1};
    weft_task *wt = spawn(wait_closed_task, &w);
    tu_wait_until_waiting(NULL, ft);
    tu_wait_until_waiting(NULL, wt);

    ck_assert_int_eq(weft_server_close(srv), 0);
    ck_assert_int_eq(weft_server_close(srv), 0); /* twice: no-op */
    tu_join_task(ft, 0);
    ck_assert_int_eq(fw.rc, 0); /* serve_forever returns once closed */
    /* New connections are refused at once. */
    weft_stream *late = NULL;
    ck_assert_int_eq(weft_open_connection("127.0.0.1", port, &late),
                     -ECONNREFUSED);
    /* The live ones go on; wait_closed waits for their handlers. */
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(echo_check(c[i], i, 3), 0);
        ck_assert(!weft_task_done(wt));
        close_stream(c[i]);
    }
    tu_join_task(wt, 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(atomic_load(&st.served), N);
    ck_assert_int_eq(atomic_load(&st.live), 0);
    ck_assert_int_eq(weft_server_serve_forever(srv), 0);
    ck_assert_int_eq(weft_server_wait_closed(srv), 0);
    weft_server_free(srv);
    return NULL;
}

START_TEST(server_closed_with_live_connections_serves_them_refuses_new_ones)
{
    tu_run_in(2, close_live_main, NULL);
}
END_TEST

static void *serve_interrupted_main(void *arg)
{
    (void)arg;
    weft_server *srv = NULL;
    ck_assert_int_eq(weft_start_server("127.0.0.1", 0, echo_lines, NULL, &srv),
                     0);
    struct waiter fw = {.srv = srv, .rc = 1};
    weft_task *ft = spawn(serve_forever_task, &fw);
    tu_wait_until_waiting(NULL, ft);
    ck_assert_int_eq(weft_cancel(ft), 0);
    tu_join_task(ft, -ECANCELED);
    ck_assert_int_eq(fw.rc, -ECANCELED);
    weft_timeout scope;
    ck_assert_int_eq(weft_timeout_enter(&scope, 0.02), 0);
    ck_assert_int_eq(weft_server_serve_forever(srv), -ETIMEDOUT);
    ck_assert_int_eq(weft_server_wait_closed(srv), -ETIMEDOUT);
    ck_assert_int_eq(weft_timeout_exit(&scope), -ETIMEDOUT);
    /* Still serving. */
    weft_stream *s = NULL;
    ck_assert_int_eq(
        weft_open_connection("127.0.0.1", weft_server_port(srv), &s), 0);
    ck_assert_int_eq(echo_check(s, 0, 2), 0);
    close_stream(s);
    close_server(srv);
    return NULL;
}

START_TEST(server_serve_forever_interrupted_leaves_the_server_serving)
{
    tu_run_in(2, serve_interrupted_main, NULL);
}
END_TEST

/* ------------------------------------------------------------------------
 * Addresses: IPv6, every interface, names */

static bool ipv6_loopback_works(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6,
                             .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void *ipv6_main(void *arg)
{
    (void)arg;
    weft_server *srv = NULL;
    ck_assert_int_eq(weft_start_server("::1", 0, echo_lines, NULL, &srv), 0);
    weft_stream *s = NULL;
    ck_assert_int_eq(weft_open_connection("::1", weft_server_port(srv), &s), 0);
    ck_assert_int_eq(echo_check(s, 6, 3), 0);
    struct sockaddr_storage peer;
    socklen_t len;
    ck_assert_int_eq(weft_stream_peername(s, &peer, &len), 0);
    ck_assert_int_eq(peer.ss_family, AF_INET6);
    close_stream(s);
    /* An IPv6 server does not take IPv4 (IPV6_V6ONLY). */
    ck_assert_int_eq(
        weft_open_connection("127.0.0.1", weft_server_port(srv), &s),
        -ECONNREFUSED);
    close_server(srv);
    return NULL;
}

START_TEST(server_and_connection_work_on_ipv6_loopback)
{
    if (!ipv6_loopback_works()) {
        fprintf(stderr, "server_and_connection_work_on_ipv6_loopback: "
                        "skipped, no IPv6 loopback\n");
        return;
    }
    tu_run_in(2, ipv6_main, NULL);
}
END_TEST

static void *any_main(void *arg)
{
    (void)arg;
    weft_server *srv = NULL;
    ck_assert_int_eq(weft_start_server(NULL, 0, echo_lines, NULL, &srv), 0);
    int port = weft_server_port(srv);
    ck_assert_int_gt(port, 0);
    /* "localhost" goes through getaddrinfo on the blocking pool. */
    const char *hosts[] = {"127.0.0.1", "localhost", "::1"};
    for (int i = 0; i < 3; i++) {
        if (i == 2 && !ipv6_loopback_works())
            continue;
        weft_stream *s = NULL;
        int rc = weft_open_connection(hosts[i], port, &s);
        ck_assert_msg(rc == 0, "%s: %s", hosts[i], weft_strerror(rc));
        ck_assert_int_eq(echo_check(s, i, 2), 0);
        close_stream(s);
    }
    close_server(srv);
    ck_assert_int_eq(weft_start_server("", 0, echo_lines, NULL, &srv), 0);
    close_server(srv);
    return NULL;
}

START_TEST(server_on_every_interface_is_reached_by_name_and_address)
{
    tu_run_in(2, any_main, NULL);
}
END_TEST

/* ------------------------------------------------------------------------ */

static Suite *server_suite(void)
{
    Suite *s = suite_create("server");

    TCase *tc = tcase_create("serve");
    tcase_add_checked_fixture(tc, tu_fds_mark, tu_fds_check);
    tcase_add_test(tc, server_echoes_lines_to_a_client_on_the_port_it_reports);
    tcase_add_test(
        tc, server_closes_a_connection_after_sending_what_its_handler_left);
    tcase_add_test(tc, server_serves_1000_concurrent_connections_on_2_workers);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);

    tc = tcase_create("close");
    tcase_add_checked_fixture(tc, tu_fds_mark, tu_fds_check);
    tcase_add_test(
        tc, server_closed_with_live_connections_serves_them_refuses_new_ones);
    tcase_add_test(tc,
                   server_serve_forever_interrupted_leaves_the_server_serving);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, tu_fds_mark, tu_fds_check);
    tcase_add_test(tc, open_connection_to_a_closed_port_returns_econnrefused);
    tcase_add_test(tc,
                   open_connection_to_an_unknown_host_returns_a_weft_eai_code);
    tcase_add_test(tc,
                   open_connection_interrupted_while_resolving_returns_at_once);
    tcase_add_test(tc, server_and_connection_reject_bad_arguments);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("addresses");
    tcase_add_checked_fixture(tc, tu_fds_mark, tu_fds_check);
    tcase_add_test(tc, server_and_connection_work_on_ipv6_loopback);
    tcase_add_test(tc,
                   server_on_every_interface_is_reached_by_name_and_address);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(server_suite());
}
