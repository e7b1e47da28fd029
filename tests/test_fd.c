/* Coroutine-aware fds and the reactor (weft.h, "I/O on file descriptors"):
 * reads and writes that park a task until the fd is ready while the worker
 * runs others, the same calls blocking a plain thread, accept and connect
 * on 127.0.0.1, waits ended by cancellation, timeout scopes, the wait's own
 * timeout and weft_fd_close, no edge lost between a syscall's EAGAIN and
 * the wait (a stress of many pipe ping-pongs across workers), an fd number
 * reused after weft_fd_close, bad arguments, and no fd leaked.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

static void nb_pipe(int p[2])
{
    ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

static void close_pair(int p[2])
{
    ck_assert_int_eq(weft_fd_close(p[0]), 0);
    ck_assert_int_eq(weft_fd_close(p[1]), 0);
}

/* A listening socket on 127.0.0.1 with a free port; its port in *port. */
static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(fd, 128), 0);
    socklen_t len = sizeof(a);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static struct sockaddr_in loopback(int port)
{
    return (struct sockaddr_in){.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

/* ------------------------------------------------------------------------
 * Reads and writes */

struct reader {
    int fd;
    size_t want;
    int rc;
    uint64_t sum;
    size_t got;
};

static void *read_all(void *arg)
{
    struct reader *r = arg;
    char buf[4096];
    while (r->got < r->want) {
        ssize_t n = weft_fd_read(r->fd, buf, sizeof(buf));
        if (n <= 0) {
            r->rc = n == 0 ? -ENODATA : (int)n;
            return NULL;
        }
        for (ssize_t i = 0; i < n; i++)
            r->sum += (unsigned char)buf[i] * (uint64_t)(r->got + i + 1);
        r->got += (size_t)n;
    }
    return NULL;
}

struct writer {
    int fd;
    size_t n;
    int rc;
    size_t written;
};

static char pattern_byte(size_t i)
{
    return (char)(i * 7 + (i >> 9));
}

static void *write_pattern(void *arg)
{
    struct writer *w = arg;
    char *buf = malloc(w->n);
    for (size_t i = 0; i < w->n; i++)
        buf[i] = pattern_byte(i);
    w->rc = weft_fd_write_all(w->fd, buf, w->n, &w->written);
    free(buf);
    return NULL;
}

static uint64_t pattern_sum(size_t n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (unsigned char)pattern_byte(i) * (uint64_t)(i + 1);
    return sum;
}

/* 1 task writes 4 MiB into a pipe (64 KiB of kernel buffer: it parks many
 * times), another reads it; kinds 0..3 pair task/thread writer and reader. */
START_TEST(fd_pipe_carries_every_byte_between_tasks_and_threads)
{
    weft_runtime *rt = tu_new_runtime(2);
    int p[2];
    nb_pipe(p);
    struct reader r = {.fd = p[0], .want = 4u << 20};
    struct writer w = {.fd = p[1], .n = 4u << 20};
    bool reader_task = _i & 1, writer_task = _i & 2;
    weft_task *rt_task = NULL, *wt_task = NULL;
    pthread_t rth, wth;
    if (reader_task)
        rt_task = weft_spawn_ex(rt, read_all, &r, NULL);
    else
        ck_assert_int_eq(pthread_create(&rth, NULL, read_all, &r), 0);
    if (writer_task)
        wt_task = weft_spawn_ex(rt, write_pattern, &w, NULL);
    else
        ck_assert_int_eq(pthread_create(&wth, NULL, write_pattern, &w), 0);
    if (reader_task)
        tu_join_task(rt_task, 0);
    else
        tu_join_thread(rth);
    if (writer_task)
        tu_join_task(wt_task, 0);
    else
        tu_join_thread(wth);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_uint_eq(w.written, w.n);
    ck_assert_int_eq(r.rc, 0);
    ck_assert_uint_eq(r.got, r.want);
    ck_assert_uint_eq(r.sum, pattern_sum(r.want));
    close_pair(p);
    weft_runtime_free(rt);
}
END_TEST

static void *read_one(void *arg)
{
    int *fd = arg;
    char c;
    ssize_t n = weft_fd_read(*fd, &c, 1);
    return (void *)(intptr_t)(n == 1 ? c : n);
}

/* While a task is parked on an empty pipe, its worker runs other tasks. */
START_TEST(fd_read_parks_the_task_and_not_the_worker)
{
    weft_runtime *rt = tu_new_runtime(1);
    int p[2];
    nb_pipe(p);
    weft_task *t = weft_spawn_ex(rt, read_one, &p[0], NULL);
    tu_wait_until_waiting(rt, t);
    /* The only worker is free: another task runs to completion. */
    weft_task *f = weft_spawn_ex(rt, tu_fib_task, (void *)(intptr_t)15, NULL);
    tu_join_expect(f, tu_fib(15));
    ck_assert_int_eq(write(p[1], "x", 1), 1);
    tu_join_expect(t, 'x');
    close_pair(p);
    weft_runtime_free(rt);
}
END_TEST

static void *cancel_then_read(void *arg)
{
    int *fd = arg;
    char c;
    ssize_t n = weft_fd_read(*fd, &c, 1);
    if (n != -ECANCELED)
        return (void *)(intptr_t)-1000;
    weft_uncancel();
    n = weft_fd_read(*fd, &c, 1);
    return (void *)(intptr_t)(n == 1 ? c : n);
}

/* A cancelled read returns -ECANCELED and takes nothing: the byte written
 * afterwards is read by the next call. */
START_TEST(fd_read_cancelled_returns_ecanceled_and_loses_nothing)
{
    weft_runtime *rt = tu_new_runtime(2);
    int p[2];
    nb_pipe(p);
    weft_task *t = weft_spawn_ex(rt, cancel_then_read, &p[0], NULL);
    tu_wait_until_waiting(rt, t);
    ck_assert_int_eq(weft_cancel(t), 0);
    tu_wait_until_waiting(rt, t);
    ck_assert_int_eq(write(p[1], "y", 1), 1);
    tu_join_expect(t, 'y');
    close_pair(p);
    weft_runtime_free(rt);
}
END_TEST

static void *read_in_scope(void *arg)
{
    int *fd = arg;
    weft_timeout sc;
    ck_assert_int_eq(weft_timeout_enter(&sc, 0.05), 0);
    char c;
    double t0 = weft_now();
    ssize_t n = weft_fd_read(*fd, &c, 1);
    tu_check_elapsed(t0, 0.05, "read in a 50 ms scope");
    weft_timeout_exit(&sc);
    return (void *)(intptr_t)n;
}

START_TEST(fd_read_in_an_expiring_timeout_scope_returns_etimedout)
{
    int p[2];
    nb_pipe(p);
    ck_assert_int_eq((intptr_t)tu_run_in(1, read_in_scope, &p[0]), -ETIMEDOUT);
    close_pair(p);
}
END_TEST

/* ------------------------------------------------------------------------
 * weft_fd_wait */

static void *wait_readable(void *arg)
{
    int *fd = arg;
    return (void *)(intptr_t)weft_fd_wait(*fd, WEFT_READABLE, WEFT_FOREVER);
}

/* From a task (i = 0) or a thread (i = 1): readable once an eventfd is
 * written; writable at once; -ETIMEDOUT after its timeout. */
START_TEST(fd_wait_reports_readiness_and_times_out)
{
    weft_runtime *rt = tu_new_runtime(2);
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ck_assert_int_ge(efd, 0);
    weft_task *t = NULL;
    pthread_t th;
    if (_i == 0) {
        t = weft_spawn_ex(rt, wait_readable, &efd, NULL);
        tu_wait_until_waiting(rt, t);
    } else {
        ck_assert_int_eq(pthread_create(&th, NULL, wait_readable, &efd), 0);
        usleep(20000);
    }
    uint64_t one = 1;
    ck_assert_int_eq(write(efd, &one, 8), 8);
    if (_i == 0) {
        tu_join_expect(t, WEFT_READABLE);
    } else {
        void *res;
        ck_assert_int_eq(pthread_join(th, &res), 0);
        ck_assert_int_eq((intptr_t)res, WEFT_READABLE);
    }
    ck_assert_int_eq(weft_fd_wait(efd, WEFT_READABLE | WEFT_WRITABLE, 0),
                     WEFT_READABLE | WEFT_WRITABLE);
    uint64_t v;
    ck_assert_int_eq(read(efd, &v, 8), 8);
    double t0 = weft_now();
    ck_assert_int_eq(weft_fd_wait(efd, WEFT_READABLE, 0.03), -ETIMEDOUT);
    tu_check_elapsed(t0, 0.03, "a thread's fd wait of 30 ms");
    ck_assert_int_eq(weft_fd_close(efd), 0);
    weft_runtime_free(rt);
}
END_TEST

static void *timed_wait(void *arg)
{
    int *fd = arg;
    double t0 = weft_now();
    int rc = weft_fd_wait(*fd, WEFT_READABLE, 0.04);
    tu_check_elapsed(t0, 0.04, "a task's fd wait of 40 ms");
    return (void *)(intptr_t)rc;
}

START_TEST(fd_wait_from_a_task_times_out_after_its_timeout)
{
    int p[2];
    nb_pipe(p);
    ck_assert_int_eq((intptr_t)tu_run_in(2, timed_wait, &p[0]), -ETIMEDOUT);
    close_pair(p);
}
END_TEST

START_TEST(fd_calls_reject_bad_arguments)
{
    ck_assert_int_eq(weft_fd_wait(-1, WEFT_READABLE, 0), -EBADF);
    ck_assert_int_eq(weft_fd_wait(0, 0, 0), -EINVAL);
    ck_assert_int_eq(weft_fd_wait(0, 4, 0), -EINVAL);
    ck_assert_int_eq(weft_fd_wait(0, WEFT_READABLE, NAN), -EINVAL);
    ck_assert_int_eq(weft_fd_wait(0, WEFT_READABLE, -1), -EINVAL);
    char c;
    ck_assert_int_eq(weft_fd_read(-1, &c, 1), -EBADF);
    ck_assert_int_eq(weft_fd_write(-1, &c, 1), -EBADF);
    ck_assert_int_eq(weft_fd_accept(-1, NULL, NULL), -EBADF);
    ck_assert_int_eq(weft_fd_forget(-1), -EBADF);
    ck_assert_int_eq(weft_fd_close(-1), -EBADF);
    ck_assert_int_eq(weft_fd_set_nonblocking(-1), -EBADF);
}
END_TEST

START_TEST(fd_strerror_names_name_resolution_failures)
{
    ck_assert_str_eq(weft_strerror(WEFT_EAI(EAI_NONAME)),
                     gai_strerror(EAI_NONAME));
    ck_assert_str_eq(weft_strerror(WEFT_EAI(EAI_AGAIN)),
                     gai_strerror(EAI_AGAIN));
    ck_assert_str_eq(weft_strerror(-ECONNREFUSED), strerror(ECONNREFUSED));
}
END_TEST

/* ------------------------------------------------------------------------
 * Close, forget, reuse */

static void *wait_forever_on(void *arg)
{
    int *fd = arg;
    char c;
    return (void *)(intptr_t)weft_fd_read(*fd, &c, 1);
}

/* weft_fd_close wakes a parked reader with -EBADF; the next fd with the
 * same number is registered afresh and works. */
START_TEST(fd_close_wakes_waiters_and_the_number_can_be_reused)
{
    weft_runtime *rt = tu_new_runtime(2);
    int p[2];
    nb_pipe(p);
    weft_task *t = weft_spawn_ex(rt, wait_forever_on, &p[0], NULL);
    tu_wait_until_waiting(rt, t);
    int old = p[0];
    ck_assert_int_eq(weft_fd_close(p[0]), 0);
    tu_join_expect(t, -EBADF);
    ck_assert_int_eq(weft_fd_close(p[1]), 0);
    /* The lowest free numbers come back. */
    nb_pipe(p);
    ck_assert(p[0] == old || p[1] == old);
    int rfd = p[0];
    t = weft_spawn_ex(rt, read_one, &rfd, NULL);
    tu_wait_until_waiting(rt, t);
    ck_assert_int_eq(write(p[1], "z", 1), 1);
    tu_join_expect(t, 'z');
    close_pair(p);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Sockets */

struct conn_test {
    int lfd, port;
    size_t n;
    struct reader r;
    struct writer w;
    int accept_rc, connect_rc;
};

static void *accept_and_read(void *arg)
{
    struct conn_test *c = arg;
    struct sockaddr_in peer;
    socklen_t len = sizeof(peer);
    int fd = weft_fd_accept(c->lfd, (struct sockaddr *)&peer, &len);
    c->accept_rc = fd < 0 ? fd : 0;
    if (fd < 0)
        return NULL;
    ck_assert_int_eq(peer.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    ck_assert_int_ne(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    c->r.fd = fd;
    read_all(&c->r);
    weft_fd_close(fd);
    return NULL;
}

static void *connect_and_write(void *arg)
{
    struct conn_test *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback(c->port);
    c->connect_rc = weft_fd_connect(fd, (struct sockaddr *)&a, sizeof(a));
    if (c->connect_rc == 0) {
        c->w.fd = fd;
        write_pattern(&c->w);
    }
    weft_fd_close(fd);
    return NULL;
}

/* accept and connect from tasks (i = 0) or threads (i = 1), then 8 MiB
 * over the connection. */
START_TEST(fd_accept_and_connect_carry_a_stream_over_loopback)
{
    weft_runtime *rt = tu_new_runtime(2);
    struct conn_test c = {.n = 8u << 20};
    c.lfd = listen_any(&c.port);
    c.r.want = c.w.n = c.n;
    if (_i == 0) {
        weft_task *a = weft_spawn_ex(rt, accept_and_read, &c, NULL);
        weft_task *b = weft_spawn_ex(rt, connect_and_write, &c, NULL);
        tu_join_task(a, 0);
        tu_join_task(b, 0);
    } else {
        pthread_t a, b;
        ck_assert_int_eq(pthread_create(&a, NULL, accept_and_read, &c), 0);
        ck_assert_int_eq(pthread_create(&b, NULL, connect_and_write, &c), 0);
        tu_join_thread(a);
        tu_join_thread(b);
    }
    ck_assert_int_eq(c.accept_rc, 0);
    ck_assert_int_eq(c.connect_rc, 0);
    ck_assert_int_eq(c.w.rc, 0);
    ck_assert_int_eq(c.r.rc, 0);
    ck_assert_uint_eq(c.r.sum, pattern_sum(c.n));
    ck_assert_int_eq(weft_fd_close(c.lfd), 0);
    weft_runtime_free(rt);
}
END_TEST

static void *connect_refused(void *arg)
{
    int *port = arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback(*port);
    int rc = weft_fd_connect(fd, (struct sockaddr *)&a, sizeof(a));
    weft_fd_close(fd);
    return (void *)(intptr_t)rc;
}

START_TEST(fd_connect_to_a_closed_port_returns_econnrefused)
{
    /* A port that was free a moment ago: bound, then closed unlistened. */
    int lfd, port;
    lfd = listen_any(&port);
    close(lfd);
    ck_assert_int_eq((intptr_t)tu_run_in(1, connect_refused, &port),
                     -ECONNREFUSED);
}
END_TEST

static void *accept_forever(void *arg)
{
    int *lfd = arg;
    return (void *)(intptr_t)weft_fd_accept(*lfd, NULL, NULL);
}

START_TEST(fd_accept_cancelled_returns_ecanceled)
{
    weft_runtime *rt = tu_new_runtime(1);
    int port, lfd = listen_any(&port);
    weft_task *t = weft_spawn_ex(rt, accept_forever, &lfd, NULL);
    tu_wait_until_waiting(rt, t);
    ck_assert_int_eq(weft_cancel(t), 0);
    tu_join_task(t, -ECANCELED);
    ck_assert_int_eq(weft_fd_close(lfd), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * Stress: ping-pong over pipes across workers */

#define PAIRS  64
#define ROUNDS 2000

struct pp {
    int in, out; /* this side reads in, writes out */
    int rc;
    bool starts;
};

static void *ping_pong(void *arg)
{
    struct pp *p = arg;
    unsigned char c = 0;
    for (int i = 0; i < ROUNDS; i++) {
        if (p->starts || i > 0) {
            ssize_t n = weft_fd_write(p->out, &c, 1);
            if (n != 1) {
                p->rc = (int)n;
                return NULL;
            }
        }
        ssize_t n = weft_fd_read(p->in, &c, 1);
        if (n != 1) {
            p->rc = n == 0 ? -ENODATA : (int)n;
            return NULL;
        }
        c++;
    }
    if (!p->starts && weft_fd_write(p->out, &c, 1) != 1)
        p->rc = -EIO;
    return NULL;
}

/* 64 pairs of tasks bounce a byte 2000 times each over pipes on 4 workers:
 * an edge lost between EAGAIN and a wait would hang a pair. */
START_TEST(fd_stress_pipe_ping_pongs_on_four_workers_never_hang)
{
    int before = tu_count_fds();
    weft_runtime *rt = tu_new_runtime(4);
    struct pp sides[PAIRS][2];
    weft_task *tasks[PAIRS][2];
    for (int i = 0; i < PAIRS; i++) {
        int a[2], b[2];
        nb_pipe(a);
        nb_pipe(b);
        sides[i][0] = (struct pp){.in = b[0], .out = a[1], .starts = true};
        sides[i][1] = (struct pp){.in = a[0], .out = b[1]};
        for (int j = 0; j < 2; j++)
            tasks[i][j] = weft_spawn_ex(rt, ping_pong, &sides[i][j], NULL);
    }
    for (int i = 0; i < PAIRS; i++) {
        for (int j = 0; j < 2; j++) {
            tu_join_task(tasks[i][j], 0);
            ck_assert_int_eq(sides[i][j].rc, 0);
        }
        for (int j = 0; j < 2; j++) {
            weft_fd_close(sides[i][j].in);
            weft_fd_close(sides[i][j].out);
        }
    }
    weft_runtime_free(rt);
    ck_assert_int_eq(tu_count_fds(), before);
}
END_TEST

/* A runtime and its reactor take fds (epoll, eventfd) and give them all
 * back. */
START_TEST(fd_runtime_free_returns_every_fd)
{
    int before = tu_count_fds();
    for (int i = 0; i < 3; i++) {
        weft_runtime *rt = tu_new_runtime(2);
        weft_runtime_free(rt);
    }
    ck_assert_int_eq(tu_count_fds(), before);
}
END_TEST

static Suite *fd_suite(void)
{
    Suite *s = suite_create("fd");

    TCase *tc = tcase_create("rw");
    tcase_add_loop_test(
        tc, fd_pipe_carries_every_byte_between_tasks_and_threads, 0, 4);
    tcase_add_test(tc, fd_read_parks_the_task_and_not_the_worker);
    tcase_add_test(tc, fd_read_cancelled_returns_ecanceled_and_loses_nothing);
    tcase_add_test(tc, fd_read_in_an_expiring_timeout_scope_returns_etimedout);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("wait");
    tcase_add_loop_test(tc, fd_wait_reports_readiness_and_times_out, 0, 2);
    tcase_add_test(tc, fd_wait_from_a_task_times_out_after_its_timeout);
    tcase_add_test(tc, fd_calls_reject_bad_arguments);
    tcase_add_test(tc, fd_strerror_names_name_resolution_failures);
    tcase_add_test(tc, fd_close_wakes_waiters_and_the_number_can_be_reused);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("socket");
    tcase_add_loop_test(tc, fd_accept_and_connect_carry_a_stream_over_loopback,
                        0, 2);
    tcase_add_test(tc, fd_connect_to_a_closed_port_returns_econnrefused);
    tcase_add_test(tc, fd_accept_cancelled_returns_ecanceled);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("stress");
    tcase_add_test(tc, fd_stress_pipe_ping_pongs_on_four_workers_never_hang);
    tcase_add_test(tc, fd_runtime_free_returns_every_fd);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(fd_suite());
}
