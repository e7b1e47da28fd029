/* Buffered streams (weft.h, "Buffered streams") over real TCP connections
 * on 127.0.0.1: 1 MiB echoed in random chunks and read back with each
 * read form, a separator split across packets, the readuntil limit, end
 * of stream inside readexactly, drain holding a fast writer to the
 * high-water mark, reads interrupted by cancellation and by timeout scopes
 * with half a message arrived (no byte lost), a peer that resets, close
 * and abort with bytes still buffered, a plain thread using a stream, one
 * reader at a time, and no fd leaked by any of them.
 *
 * Each test makes its own runtime (Check forks every test); a checked
 * fixture counts this process's fds before and after it.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

/* ------------------------------------------------------------------------
 * Sockets and fds */

static void set_bufs(int fd, int bytes)
{
    if (bytes <= 0)
        return;
    ck_assert_int_eq(
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes), 0);
    ck_assert_int_eq(
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes), 0);
}

/* A connected TCP pair on 127.0.0.1, both ends non-blocking. bufs > 0
 * shrinks both ends' kernel buffers, so that a writer fills them soon. */
static void tcp_pair(int fd[2], int bufs)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(l, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    set_bufs(l, bufs); /* inherited by the accepted socket */
    ck_assert_int_eq(listen(l, 1), 0);
    socklen_t len = sizeof a;
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
    fd[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd[0], 0);
    set_bufs(fd[0], bufs);
    ck_assert_int_eq(connect(fd[0], (struct sockaddr *)&a, sizeof a), 0);
    fd[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    ck_assert_int_ge(fd[1], 0);
    close(l);
    ck_assert_int_eq(weft_fd_set_nonblocking(fd[0]), 0);
    ck_assert_int_eq(weft_fd_set_nonblocking(fd[1]), 0);
}

static weft_stream *stream_of(int fd, const weft_stream_opts *o)
{
    weft_stream *s = NULL;
    ck_assert_int_eq(weft_stream_new(fd, o, &s), 0);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* Two streams over one TCP pair. */
static void stream_pair(weft_stream *s[2], const weft_stream_opts *o, int bufs)
{
    int fd[2];
    tcp_pair(fd, bufs);
    s[0] = stream_of(fd[0], o);
    s[1] = stream_of(fd[1], o);
}

/* The orderly end: close, wait until closed (expecting `want`), free. */
static void close_stream(weft_stream *s, int want)
{
    ck_assert_int_eq(weft_stream_close(s), 0);
    ck_assert_int_eq(weft_stream_wait_closed(s), want);
    weft_stream_free(s);
}

/* Send all of buf on a raw fd (from a task or a thread). */
static void raw_send(int fd, const void *buf, size_t n)
{
    size_t done = 0;
    TU_ASSERT_INT_EQ(weft_fd_write_all(fd, buf, n, &done), 0);
    TU_ASSERT_INT_EQ(done, n);
}

static weft_task *spawn(weft_fn fn, void *arg)
{
    weft_task *t = weft_spawn(fn, arg);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* Lines of [a-z0-9] ending in "\r\n", about `total` bytes in all. */
static char *make_lines(size_t total, uint64_t *rng, size_t *len)
{
    char *buf = malloc(total + 400);
    ck_assert_ptr_nonnull(buf);
    size_t n = 0;
    while (n < total) {
        size_t line = tu_rand(rng) % 300;
        for (size_t i = 0; i < line; i++)
            buf[n++] =
                "abcdefghijklmnopqrstuvwxyz0123456789"[tu_rand(rng) % 36];
        buf[n++] = '\r';
        buf[n++] = '\n';
    }
    *len = n;
    return buf;
}

/* ------------------------------------------------------------------------
 * Echo in random chunks, read back with each read form */

enum form { F_READ, F_READEXACTLY, F_READUNTIL, F_READLINE, F_FORMS };

struct echo_test {
    weft_stream *client, *server;
    const char *data;
    size_t n;
    uint64_t send_rng, recv_rng;
    int form;
    char *got;
    size_t ngot;
};

/* The server side: echo everything, then half-close. */
static void *echo_back(void *arg)
{
    weft_stream *s = arg;
    enum { N = 65536 };
    char *buf = malloc(N); /* more than a task's stack holds */
    TU_ASSERT(buf != NULL);
    for (;;) {
        ssize_t r = weft_stream_read(s, buf, N);
        TU_ASSERT(r >= 0);
        if (r == 0)
            break;
        TU_ASSERT_INT_EQ(weft_stream_write(s, buf, (size_t)r), 0);
        TU_ASSERT_INT_EQ(weft_stream_drain(s), 0);
    }
    free(buf);
    TU_ASSERT(weft_stream_at_eof(s));
    TU_ASSERT_INT_EQ(weft_stream_write_eof(s), 0);
    return NULL;
}

static void *send_in_chunks(void *arg)
{
    struct echo_test *e = arg;
    size_t off = 0;
    while (off < e->n) {
        size_t k = 1 + tu_rand(&e->send_rng) % 16384;
        if (k > e->n - off)
            k = e->n - off;
        TU_ASSERT_INT_EQ(weft_stream_write(e->client, e->data + off, k), 0);
        off += k;
        if (tu_rand(&e->send_rng) % 4 == 0)
            TU_ASSERT_INT_EQ(weft_stream_drain(e->client), 0);
    }
    TU_ASSERT_INT_EQ(weft_stream_drain(e->client), 0);
    TU_ASSERT_INT_EQ(weft_stream_write_eof(e->client), 0);
    /* Writing after the half-close is refused. */
    TU_ASSERT_INT_EQ(weft_stream_write(e->client, "x", 1), -EPIPE);
    return NULL;
}

/* One read of the chosen form into e->got; its result. */
static ssize_t read_form(struct echo_test *e)
{
    char *dst = e->got + e->ngot;
    size_t left = e->n - e->ngot;
    size_t k = 1 + tu_rand(&e->recv_rng) % 20000; /* some go direct */
    switch (e->form) {
    case F_READ:
        return weft_stream_read(e->client, dst, k);
    case F_READEXACTLY:
        return weft_stream_readexactly(e->client, dst, k < left ? k : left);
    case F_READUNTIL:
        return weft_stream_readuntil(e->client, "\r\n", 2, dst, 512);
    default:
        return weft_stream_readline(e->client, dst, 512);
    }
}

static void *receive_in_form(void *arg)
{
    struct echo_test *e = arg;
    while (e->ngot < e->n) {
        ssize_t r = read_form(e);
        TU_ASSERT(r > 0);
        if (e->form == F_READUNTIL || e->form == F_READLINE)
            TU_ASSERT(e->got[e->ngot + (size_t)r - 1] == '\n');
        e->ngot += (size_t)r;
    }
    char c;
    TU_ASSERT_INT_EQ(weft_stream_read(e->client, &c, 1), 0);
    TU_ASSERT(weft_stream_at_eof(e->client));
    return NULL;
}

static void *echo_main(void *arg)
{
    struct echo_test *e = arg;
    weft_stream *s[2];
    stream_pair(s, NULL, 0);
    e->client = s[0];
    e->server = s[1];
    weft_task *t[3] = {spawn(echo_back, e->server), spawn(send_in_chunks, e),
                       spawn(receive_in_form, e)};
    int errs[3];
    ck_assert_int_eq(weft_gather(t, 3, NULL, errs), 0);
    close_stream(e->client, 0);
    close_stream(e->server, 0);
    return NULL;
}

START_TEST(stream_echo_of_1mib_in_random_chunks_reads_back_with_each_form)
{
    uint64_t seed = tu_seed("stream_echo");
    uint64_t rng = seed;
    struct echo_test e = {
        .form = _i, .send_rng = seed ^ 1, .recv_rng = seed ^ 2};
    char *data = make_lines(1 << 20, &rng, &e.n);
    e.data = data;
    e.got = malloc(e.n + 20000);
    ck_assert_ptr_nonnull(e.got);
    tu_run_in(2, echo_main, &e);
    ck_assert_uint_eq(e.ngot, e.n);
    ck_assert(memcmp(e.got, data, e.n) == 0);
    free(e.got);
    free(data);
}
END_TEST

/* ------------------------------------------------------------------------
 * readuntil: separators split across packets, the limit */

struct until {
    weft_stream *s;
    const char *sep;
    char buf[256];
    ssize_t rc;
};

static void *read_until(void *arg)
{
    struct until *u = arg;
    u->rc = weft_stream_readuntil(u->s, u->sep, strlen(u->sep), u->buf,
                                  sizeof u->buf);
    return NULL;
}

/* Send `a`, start the reader, wait until it is parked on the socket (so
 * it has taken `a`), send `b`. Returns the reader. */
static weft_task *send_split(int fd, const char *a, const char *b,
                             struct until *u)
{
    raw_send(fd, a, strlen(a));
    weft_task *t = spawn(read_until, u);
    tu_wait_until_waiting(NULL, t);
    raw_send(fd, b, strlen(b));
    return t;
}

static void *split_main(void *arg)
{
    (void)arg;
    int fd[2];
    tcp_pair(fd, 0);
    weft_stream *s = stream_of(fd[0], NULL);

    /* The separator's halves in two packets, the reader waiting between. */
    struct until u = {.s = s, .sep = "\r\n"};
    weft_task *t = send_split(fd[1], "hello world\r", "\nnext", &u);
    tu_join_task(t, 0);
    ck_assert_int_eq(u.rc, 13);
    ck_assert(memcmp(u.buf, "hello world\r\n", 13) == 0);

    /* A longer one split three ways, after bytes left from before. */
    struct until v = {.s = s, .sep = "<END>"};
    t = send_split(fd[1], " line<E", "N", &v);
    TU_ASSERT_INT_EQ(weft_sleep(0.01), 0); /* let it park again */
    raw_send(fd[1], "D>tail", 6);
    tu_join_task(t, 0);
    ck_assert_int_eq(v.rc, 14);
    ck_assert(memcmp(v.buf, "next line<END>", 14) == 0);

    /* A false start of the separator is not taken for it. */
    struct until w = {.s = s, .sep = "<END>"};
    t = send_split(fd[1], "<EN<E", "ND><END>", &w);
    tu_join_task(t, 0);
    ck_assert_int_eq(w.rc, 12);
    ck_assert(memcmp(w.buf, "tail<EN<END>", 12) == 0);

    char rest[16];
    ck_assert_int_eq(weft_stream_readuntil(s, "<END>", 5, rest, sizeof rest),
                     5);
    ck_assert_int_eq(weft_fd_close(fd[1]), 0);
    close_stream(s, 0);
    return NULL;
}

START_TEST(stream_readuntil_finds_a_separator_split_across_packets)
{
    tu_run_in(2, split_main, NULL);
}
END_TEST

static void *limit_main(void *arg)
{
    (void)arg;
    int fd[2];
    tcp_pair(fd, 0);
    weft_stream_opts o = {.limit = 100};
    weft_stream *s = stream_of(fd[0], &o);
    char buf[1024], want[1024];
    for (size_t i = 0; i < sizeof want; i++)
        want[i] = (char)('a' + i % 26);

    /* 150 bytes and no separator: over the limit; the data stays. */
    raw_send(fd[1], want, 150);
    ck_assert_int_eq(weft_stream_readuntil(s, "\n", 1, buf, sizeof buf),
                     -EMSGSIZE);
    ck_assert_int_eq(weft_stream_readline(s, buf, sizeof buf), -EMSGSIZE);
    ck_assert_int_eq(weft_stream_readexactly(s, buf, 150), 150);
    ck_assert(memcmp(buf, want, 150) == 0);

    /* A separator that ends past the limit: the same. */
    raw_send(fd[1], want, 120);
    raw_send(fd[1], "\n", 1);
    ck_assert_int_eq(weft_stream_readuntil(s, "\n", 1, buf, sizeof buf),
                     -EMSGSIZE);
    ck_assert_int_eq(weft_stream_readexactly(s, buf, 121), 121);
    ck_assert(memcmp(buf, want, 120) == 0 && buf[120] == '\n');

    /* cap below the limit is the limit; the line is there for a larger
     * buffer; a line of exactly the limit fits. */
    raw_send(fd[1], "0123456789abc\n", 14);
    ck_assert_int_eq(weft_stream_readline(s, buf, 10), -EMSGSIZE);
    ck_assert_int_eq(weft_stream_readline(s, buf, 14), 14);
    ck_assert(memcmp(buf, "0123456789abc\n", 14) == 0);
    raw_send(fd[1], want, 99);
    raw_send(fd[1], "\n", 1);
    ck_assert_int_eq(weft_stream_readline(s, buf, sizeof buf), 100);

    /* Bad arguments. */
    ck_assert_int_eq(weft_stream_readuntil(s, "", 0, buf, sizeof buf), -EINVAL);
    ck_assert_int_eq(weft_stream_readuntil(s, NULL, 1, buf, sizeof buf),
                     -EINVAL);
    ck_assert_int_eq(weft_stream_read(NULL, buf, 1), -EINVAL);
    ck_assert_int_eq(weft_stream_write(NULL, buf, 1), -EINVAL);
    ck_assert_int_eq(weft_stream_read(s, buf, 0), 0);

    ck_assert_int_eq(weft_fd_close(fd[1]), 0);
    close_stream(s, 0);
    return NULL;
}

START_TEST(stream_readuntil_over_the_limit_returns_emsgsize_and_keeps_data)
{
    tu_run_in(1, limit_main, NULL);
}
END_TEST

/* ------------------------------------------------------------------------
 * End of stream */

static void *eof_main(void *arg)
{
    (void)arg;
    int fd[2];
    tcp_pair(fd, 0);
    weft_stream *s = stream_of(fd[0], NULL);
    char buf[64];

    raw_send(fd[1], "0123456789", 10);
    ck_assert_int_eq(weft_fd_close(fd[1]), 0);
    ck_assert_int_eq(weft_stream_readexactly(s, buf, 20), -ENODATA);
    ck_assert(!weft_stream_at_eof(s)); /* the 10 bytes are still there */
    ck_assert_int_eq(weft_stream_readuntil(s, "\n", 1, buf, sizeof buf),
                     -ENODATA);
    ck_assert_int_eq(weft_stream_readexactly(s, buf, 4), 4);
    ck_assert(memcmp(buf, "0123", 4) == 0);
    ck_assert_int_eq(weft_stream_readline(s, buf, sizeof buf), 6);
    ck_assert(memcmp(buf, "456789", 6) == 0);
    ck_assert(weft_stream_at_eof(s));
    ck_assert_int_eq(weft_stream_read(s, buf, sizeof buf), 0);
    ck_assert_int_eq(weft_stream_readline(s, buf, sizeof buf), 0);
    ck_assert_int_eq(weft_stream_readexactly(s, buf, 1), -ENODATA);
    close_stream(s, 0);
    return NULL;
}

START_TEST(stream_eof_inside_readexactly_returns_enodata_and_keeps_bytes)
{
    tu_run_in(1, eof_main, NULL);
}
END_TEST

/* ------------------------------------------------------------------------
 * drain */

struct drain_test {
    weft_stream *s[2];
    size_t total, chunk, high;
    size_t max_buffered; /* after a write */
    int drains_waited;   /* drains that found more than high buffered */
    uint64_t sum_sent, sum_got;
};

static void *fast_writer(void *arg)
{
    struct drain_test *d = arg;
    char *buf = malloc(d->chunk);
    TU_ASSERT(buf != NULL);
    for (size_t off = 0; off < d->total; off += d->chunk) {
        for (size_t i = 0; i < d->chunk; i++) {
            buf[i] = (char)((off + i) * 31 >> 3);
            d->sum_sent += (unsigned char)buf[i];
        }
        TU_ASSERT_INT_EQ(weft_stream_write(d->s[0], buf, d->chunk), 0);
        size_t b = weft_stream_buffered(d->s[0]);
        if (b > d->max_buffered)
            d->max_buffered = b;
        if (b > d->high)
            d->drains_waited++;
        TU_ASSERT_INT_EQ(weft_stream_drain(d->s[0]), 0);
        TU_ASSERT(weft_stream_buffered(d->s[0]) <= d->high);
    }
    free(buf);
    TU_ASSERT_INT_EQ(weft_stream_write_eof(d->s[0]), 0);
    return NULL;
}

static void *slow_reader(void *arg)
{
    struct drain_test *d = arg;
    char buf[8192];
    for (;;) {
        ssize_t r = weft_stream_read(d->s[1], buf, sizeof buf);
        TU_ASSERT(r >= 0);
        if (r == 0)
            return NULL;
        for (ssize_t i = 0; i < r; i++)
            d->sum_got += (unsigned char)buf[i];
        TU_ASSERT_INT_EQ(weft_sleep(0.0005), 0);
    }
}

static void *drain_main(void *arg)
{
    struct drain_test *d = arg;
    weft_stream_opts o = {.high_water = d->high};
    stream_pair(d->s, &o, 16384);
    weft_task *t[2] = {spawn(fast_writer, d), spawn(slow_reader, d)};
    ck_assert_int_eq(weft_gather(t, 2, NULL, NULL), 0);
    close_stream(d->s[0], 0);
    close_stream(d->s[1], 0);
    return NULL;
}

START_TEST(stream_drain_holds_a_fast_writer_near_the_high_water_mark)
{
    struct drain_test d = {
        .total = TU_SCALE(4, 4, 2) << 20, .chunk = 16384, .high = 64 * 1024};
    tu_run_in(2, drain_main, &d);
    ck_assert_uint_eq(d.sum_got, d.sum_sent);
    ck_assert_msg(d.drains_waited > 0, "the writer never got ahead");
    ck_assert_msg(d.max_buffered <= d.high + d.chunk,
                  "buffered %zu, high water %zu", d.max_buffered, d.high);
}
END_TEST

/* ------------------------------------------------------------------------
 * Interrupted reads lose nothing */

enum { MSG_LEN = 100 };
enum { BY_CANCEL, BY_SCOPE };

struct half {
    weft_stream *s;
    int form; /* F_READEXACTLY, F_READUNTIL or F_READLINE */
    int how;  /* BY_CANCEL or BY_SCOPE */
    weft_event first_done;
    ssize_t rc1, rc2;
    char got[2 * MSG_LEN];
};

static void make_message(char *msg, int form)
{
    for (int i = 0; i < MSG_LEN; i++)
        msg[i] = (char)('A' + i % 26);
    if (form == F_READLINE)
        msg[MSG_LEN - 1] = '\n';
    else
        memcpy(msg + MSG_LEN - 5, "<END>", 5);
}

static ssize_t read_message(struct half *h)
{
    switch (h->form) {
    case F_READEXACTLY:
        return weft_stream_readexactly(h->s, h->got, MSG_LEN);
    case F_READUNTIL:
        return weft_stream_readuntil(h->s, "<END>", 5, h->got, sizeof h->got);
    default:
        return weft_stream_readline(h->s, h->got, sizeof h->got);
    }
}

static void *interrupted_reader(void *arg)
{
    struct half *h = arg;
    if (h->how == BY_CANCEL) {
        h->rc1 = read_message(h);
        TU_ASSERT_INT_EQ(weft_uncancel(), 0);
    } else {
        weft_timeout scope;
        TU_ASSERT_INT_EQ(weft_timeout_enter(&scope, 0.05), 0);
        h->rc1 = read_message(h);
        TU_ASSERT_INT_EQ(weft_timeout_exit(&scope), -ETIMEDOUT);
    }
    TU_ASSERT_INT_EQ(weft_event_set(&h->first_done), 0);
    h->rc2 = read_message(h);
    return NULL;
}

static void *half_main(void *arg)
{
    struct half *h = arg;
    int fd[2];
    tcp_pair(fd, 0);
    h->s = stream_of(fd[0], NULL);
    ck_assert_int_eq(weft_event_init(&h->first_done), 0);
    char msg[MSG_LEN];
    make_message(msg, h->form);

    raw_send(fd[1], msg, MSG_LEN / 2);
    weft_task *t = spawn(interrupted_reader, h);
    if (h->how == BY_CANCEL) {
        tu_wait_until_waiting(NULL, t); /* it holds the first half */
        ck_assert_int_eq(weft_cancel(t), 0);
    }
    ck_assert_int_eq(weft_event_wait(&h->first_done), 0);
    raw_send(fd[1], msg + MSG_LEN / 2, MSG_LEN - MSG_LEN / 2);
    tu_join_task(t, 0);
    ck_assert_int_eq(h->rc1, h->how == BY_CANCEL ? -ECANCELED : -ETIMEDOUT);
    ck_assert_int_eq(h->rc2, MSG_LEN);
    ck_assert(memcmp(h->got, msg, MSG_LEN) == 0);

    ck_assert_int_eq(weft_event_destroy(&h->first_done), 0);
    ck_assert_int_eq(weft_fd_close(fd[1]), 0);
    close_stream(h->s, 0);
    return NULL;
}

/* _i: form (3) x how (2). */
START_TEST(stream_read_interrupted_with_half_a_message_loses_no_byte)
{
    static const int forms[] = {F_READEXACTLY, F_READUNTIL, F_READLINE};
    struct half h = {.form = forms[_i % 3], .how = _i / 3};
    tu_run_in(2, half_main, &h);
}
END_TEST

/* ------------------------------------------------------------------------
 * A peer that resets */

static void reset_peer(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    ck_assert_int_eq(weft_fd_close(fd), 0);
}

static bool is_reset(long rc)
{
    return rc == -ECONNRESET || rc == -EPIPE;
}

static void *reset_main(void *arg)
{
    (void)arg;
    int fd[2];
    tcp_pair(fd, 0);
    weft_stream *s = stream_of(fd[0], NULL);
    raw_send(fd[1], "hi", 2);
    enum { N = 65536 };
    char *buf = calloc(1, N); /* more than a task's stack holds */
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(weft_stream_readexactly(s, buf, 2), 2);
    reset_peer(fd[1]);

    ssize_t r = weft_stream_read(s, buf, N);
    ck_assert_msg(r == -ECONNRESET || r == 0, "read: %zd", r);
    /* The error sticks: the next read says so again (or end of stream). */
    r = weft_stream_read(s, buf, 1);
    ck_assert_msg(r == -ECONNRESET || r == 0, "read again: %zd", r);
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++) {
        rc = weft_stream_write(s, buf, N);
        if (rc == 0)
            rc = weft_stream_drain(s);
    }
    ck_assert_msg(is_reset(rc), "write/drain: %d", rc);
    /* Sticky too. */
    ck_assert_int_eq(weft_stream_write(s, buf, 1), rc);
    ck_assert_int_eq(weft_stream_drain(s), rc);
    ck_assert_int_eq(weft_stream_close(s), 0);
    rc = weft_stream_wait_closed(s);
    ck_assert_msg(is_reset(rc), "wait_closed: %d", rc);
    weft_stream_free(s);
    free(buf);
    return NULL;
}

START_TEST(stream_peer_reset_fails_reads_writes_and_drain_cleanly)
{
    tu_run_in(2, reset_main, NULL);
}
END_TEST

struct blocked_drain {
    weft_stream *s;
    int rc;
};

static void *drain_into_full_socket(void *arg)
{
    struct blocked_drain *b = arg;
    size_t n = 1 << 20;
    char *buf = calloc(1, n);
    TU_ASSERT(buf != NULL);
    TU_ASSERT_INT_EQ(weft_stream_write(b->s, buf, n), 0);
    free(buf);
    b->rc = weft_stream_drain(b->s);
    return NULL;
}

static void *reset_while_draining_main(void *arg)
{
    (void)arg;
    int fd[2];
    tcp_pair(fd, 16384);
    struct blocked_drain b = {.s = stream_of(fd[0], NULL)};
    weft_task *t = spawn(drain_into_full_socket, &b);
    tu_wait_until_waiting(NULL, t);
    ck_assert_uint_gt(weft_stream_buffered(b.s), 64 * 1024);
    reset_peer(fd[1]);
    tu_join_task(t, 0);
    ck_assert_msg(is_reset(b.rc), "drain: %d", b.rc);
    ck_assert_uint_eq(weft_stream_buffered(b.s), 0); /* dropped */
    ck_assert_int_eq(weft_stream_close(b.s), 0);
    ck_assert_int_eq(weft_stream_wait_closed(b.s), b.rc);
    weft_stream_free(b.s);
    return NULL;
}

START_TEST(stream_peer_reset_wakes_a_drain_with_the_error)
{
    tu_run_in(2, reset_while_draining_main, NULL);
}
END_TEST

/* ------------------------------------------------------------------------
 * Closing and aborting */

struct sink {
    int fd;
    size_t got;
    uint64_t sum;
    int rc;
};

/* Read a raw fd to end of stream, slowly at first. */
static void *sink_all(void *arg)
{
    struct sink *k = arg;
    char buf[16384];
    for (int i = 0;; i++) {
        ssize_t r = weft_fd_read(k->fd, buf, sizeof buf);
        if (r <= 0) {
            k->rc = (int)r;
            return NULL;
        }
        for (ssize_t j = 0; j < r; j++)
            k->sum += (unsigned char)buf[j];
        k->got += (size_t)r;
        if (i < 20)
            TU_ASSERT_INT_EQ(weft_sleep(0.001), 0);
    }
}

static void *close_flushes_main(void *arg)
{
    (void)arg;
    int fd[2];
    tcp_pair(fd, 16384);
    weft_stream *s = stream_of(fd[0], NULL);
    size_t n = 1 << 20;
    unsigned char *buf = malloc(n);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += buf[i] = (unsigned char)(i * 13);
    ck_assert_int_eq(weft_stream_write(s, buf, n), 0);
    free(buf);
    ck_assert_uint_gt(weft_stream_buffered(s), 0);
    struct sink k = {.fd = fd[1]};
    weft_task *t = spawn(sink_all, &k);
    /* close never waits; wait_closed returns once all of it went out. */
    ck_assert_int_eq(weft_stream_close(s), 0);
    ck_assert_int_eq(weft_stream_write(s, "x", 1), -EPIPE);
    ck_assert_int_eq(weft_stream_close(s), 0); /* twice: no-op */
    ck_assert_int_eq(weft_stream_wait_closed(s), 0);
    ck_assert_uint_eq(weft_stream_buffered(s), 0);
    weft_stream_free(s);
    tu_join_task(t, 0);
    ck_assert_int_eq(k.rc, 0);
    ck_assert_uint_eq(k.got, n);
    ck_assert_uint_eq(k.sum, sum);
    ck_assert_int_eq(weft_fd_close(fd[1]), 0);
    return NULL;
}

START_TEST(stream_close_sends_what_is_buffered_before_closing)
{
    tu_run_in(2, close_flushes_main, NULL);
}
END_TEST

static void *abort_main(void *arg)
{
    (void)arg;
    int fd[2];
    tcp_pair(fd, 16384);
    weft_stream *s = stream_of(fd[0], NULL);
    size_t n = 1 << 20;
    char *buf = calloc(1, n);
    ck_assert_int_eq(weft_stream_write(s, buf, n), 0);
    free(buf);
    ck_assert_uint_gt(weft_stream_buffered(s), 0);
    /* The flusher waits for room that never comes; free aborts. */
    weft_stream_free(s);
    struct sink k = {.fd = fd[1]};
    sink_all(&k);
    ck_assert_msg(k.rc == 0 || k.rc == -ECONNRESET, "rc %d", k.rc);
    ck_assert_uint_lt(k.got, n);
    ck_assert_int_eq(weft_fd_close(fd[1]), 0);

    /* Close, then free before wait_closed: aborted as well. */
    tcp_pair(fd, 16384);
    s = stream_of(fd[0], NULL);
    buf = calloc(1, n);
    ck_assert_int_eq(weft_stream_write(s, buf, n), 0);
    free(buf);
    ck_assert_int_eq(weft_stream_close(s), 0);
    weft_stream_free(s);
    ck_assert_int_eq(weft_fd_close(fd[1]), 0);
    return NULL;
}

START_TEST(stream_free_without_close_aborts_and_drops_unsent_bytes)
{
    tu_run_in(2, abort_main, NULL);
}
END_TEST

struct parked_reader {
    weft_stream *s;
    ssize_t rc;
    char buf[16];
};

static void *read_some(void *arg)
{
    struct parked_reader *p = arg;
    p->rc = weft_stream_read(p->s, p->buf, sizeof p->buf);
    return NULL;
}

static void *close_wakes_reader_main(void *arg)
{
    (void)arg;
    int fd[2];
    tcp_pair(fd, 0);
    struct parked_reader p = {.s = stream_of(fd[0], NULL)};
    weft_task *t = spawn(read_some, &p);
    tu_wait_until_waiting(NULL, t);
    /* One reader at a time. */
    char c;
    ck_assert_int_eq(weft_stream_read(p.s, &c, 1), -EBUSY);
    ck_assert_int_eq(weft_stream_readline(p.s, &c, 1), -EBUSY);
    ck_assert(!weft_stream_at_eof(p.s));
    /* close wakes the reader with end of stream, then closes the fd. */
    ck_assert_int_eq(weft_stream_close(p.s), 0);
    ck_assert_int_eq(weft_stream_wait_closed(p.s), 0);
    tu_join_task(t, 0);
    ck_assert_int_eq(p.rc, 0);
    ck_assert(weft_stream_at_eof(p.s));
    ck_assert_int_eq(weft_stream_read(p.s, &c, 1), 0);
    struct sockaddr_storage ss;
    socklen_t len;
    ck_assert_int_eq(weft_stream_peername(p.s, &ss, &len), -EBADF);
    weft_stream_free(p.s);
    /* The peer sees end of stream. */
    ck_assert_int_eq(weft_fd_read(fd[1], &c, 1), 0);
    ck_assert_int_eq(weft_fd_close(fd[1]), 0);
    return NULL;
}

START_TEST(stream_close_ends_a_waiting_read_and_one_reader_at_a_time)
{
    tu_run_in(2, close_wakes_reader_main, NULL);
}
END_TEST

static void *addr_main(void *arg)
{
    (void)arg;
    int fd[2];
    tcp_pair(fd, 0);
    weft_stream *s = stream_of(fd[0], NULL);
    struct sockaddr_storage peer, self;
    socklen_t plen = 0, slen = 0;
    ck_assert_int_eq(weft_stream_peername(s, &peer, &plen), 0);
    ck_assert_int_eq(weft_stream_sockname(s, &self, &slen), 0);
    ck_assert_uint_eq(plen, sizeof(struct sockaddr_in));
    ck_assert_int_eq(peer.ss_family, AF_INET);
    ck_assert_int_eq(self.ss_family, AF_INET);
    struct sockaddr_in want;
    socklen_t wlen = sizeof want;
    ck_assert_int_eq(getsockname(fd[1], (struct sockaddr *)&want, &wlen), 0);
    ck_assert(memcmp(&peer, &want, sizeof want) == 0);
    ck_assert_int_eq(weft_stream_fd(s), fd[0]);
    ck_assert_int_eq(weft_stream_peername(s, NULL, &plen), -EINVAL);
    ck_assert_int_eq(weft_fd_close(fd[1]), 0);
    close_stream(s, 0);
    return NULL;
}

START_TEST(stream_peername_and_sockname_name_both_ends)
{
    tu_run_in(1, addr_main, NULL);
}
END_TEST

START_TEST(stream_new_rejects_bad_arguments_and_closes_the_fd)
{
    weft_stream *s = NULL;
    ck_assert_int_eq(weft_stream_new(-1, NULL, &s), -EINVAL);
    int fd[2];
    tcp_pair(fd, 0);
    ck_assert_int_eq(weft_stream_new(fd[0], NULL, NULL), -EINVAL);
    weft_stream_opts bad = {.high_water = 100, .low_water = 200};
    ck_assert_int_eq(weft_stream_new(fd[1], &bad, &s), -EINVAL);
    ck_assert_ptr_null(s);
    /* Both fds were closed by the failed calls (the fixture checks). */
    weft_stream_free(NULL);
    ck_assert_int_eq(weft_stream_close(NULL), -EINVAL);
    ck_assert_int_eq(weft_stream_drain(NULL), -EINVAL);
}
END_TEST

/* ------------------------------------------------------------------------
 * A plain thread */

struct thread_side {
    int fd;
    size_t n;
    uint64_t sum;
};

static void *reader_task(void *arg)
{
    struct thread_side *t = arg;
    weft_stream *s = stream_of(t->fd, NULL);
    char buf[8192];
    ssize_t r;
    while ((r = weft_stream_read(s, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < r; i++)
            t->sum += (unsigned char)buf[i];
        t->n += (size_t)r;
        TU_ASSERT_INT_EQ(weft_sleep(0.0002), 0);
    }
    TU_ASSERT_INT_EQ(r, 0);
    TU_ASSERT_INT_EQ(weft_stream_write(s, "bye\n", 4), 0);
    close_stream(s, 0);
    return NULL;
}

START_TEST(stream_from_a_plain_thread_writes_and_reads_blocking)
{
    int fd[2];
    tcp_pair(fd, 16384);
    weft_runtime *rt = tu_new_runtime(2);
    struct thread_side ts = {.fd = fd[1]};
    weft_task *t = weft_spawn_ex(rt, reader_task, &ts, NULL);
    ck_assert_ptr_nonnull(t);

    /* Made on a plain thread: no runtime, so writes block until sent. */
    weft_stream *s = stream_of(fd[0], NULL);
    size_t n = 1 << 20;
    unsigned char *buf = malloc(n);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += buf[i] = (unsigned char)(i ^ (i >> 8));
    ck_assert_int_eq(weft_stream_write(s, buf, n), 0);
    ck_assert_uint_eq(weft_stream_buffered(s), 0);
    ck_assert_int_eq(weft_stream_drain(s), 0);
    ck_assert_int_eq(weft_stream_write_eof(s), 0);
    char line[16];
    ck_assert_int_eq(weft_stream_readline(s, line, sizeof line), 4);
    ck_assert(memcmp(line, "bye\n", 4) == 0);
    ck_assert_int_eq(weft_stream_readline(s, line, sizeof line), 0);
    close_stream(s, 0);
    free(buf);
    tu_join_task(t, 0);
    ck_assert_uint_eq(ts.n, n);
    ck_assert_uint_eq(ts.sum, sum);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------ */

static Suite *stream_suite(void)
{
    Suite *s = suite_create("stream");

    TCase *tc = tcase_create("read");
    tcase_add_checked_fixture(tc, tu_fds_mark, tu_fds_check);
    tcase_add_loop_test(
        tc, stream_echo_of_1mib_in_random_chunks_reads_back_with_each_form, 0,
        F_FORMS);
    tcase_add_test(tc, stream_readuntil_finds_a_separator_split_across_packets);
    tcase_add_test(
        tc, stream_readuntil_over_the_limit_returns_emsgsize_and_keeps_data);
    tcase_add_test(
        tc, stream_eof_inside_readexactly_returns_enodata_and_keeps_bytes);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);

    tc = tcase_create("interrupt");
    tcase_add_checked_fixture(tc, tu_fds_mark, tu_fds_check);
    tcase_add_loop_test(
        tc, stream_read_interrupted_with_half_a_message_loses_no_byte, 0, 6);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("write");
    tcase_add_checked_fixture(tc, tu_fds_mark, tu_fds_check);
    tcase_add_test(tc,
                   stream_drain_holds_a_fast_writer_near_the_high_water_mark);
    tcase_add_test(tc, stream_close_sends_what_is_buffered_before_closing);
    tcase_add_test(tc, stream_free_without_close_aborts_and_drops_unsent_bytes);
    tcase_add_test(tc, stream_from_a_plain_thread_writes_and_reads_blocking);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, tu_fds_mark, tu_fds_check);
    tcase_add_test(tc, stream_peer_reset_fails_reads_writes_and_drain_cleanly);
    tcase_add_test(tc, stream_peer_reset_wakes_a_drain_with_the_error);
    tcase_add_test(tc,
                   stream_close_ends_a_waiting_read_and_one_reader_at_a_time);
    tcase_add_test(tc, stream_peername_and_sockname_name_both_ends);
    tcase_add_test(tc, stream_new_rejects_bad_arguments_and_closes_the_fd);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(stream_suite());
}
