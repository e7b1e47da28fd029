/* fanout_client: many concurrent connections to an echo server, at most
 * `concurrency` open at a time (a semaphore bounds them, as
 * asyncio.Semaphore would). Each connection sends a few lines, checks
 * that each comes back unchanged, and closes.
 *
 *     async def one(i):
 *         async with sem:
 *             reader, writer = await asyncio.open_connection(host, port)
 *             for k in range(LINES):
 *                 writer.write(f"conn {i} line {k}\n".encode())
 *                 assert await reader.readline() == ...
 *             writer.close()
 *             await writer.wait_closed()
 *
 *     await asyncio.gather(*(one(i) for i in range(connections)))
 *
 * Usage: fanout_client host port [connections=1000] [concurrency=100].
 * Prints a summary; the exit status is 0 only if every connection
 * echoed correctly. Start examples/echo_server first.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#define LINES 5

struct fanout {
    const char *host;
    int port;
    long connections;
    long concurrency;
    weft_sem sem;
    atomic_long ok, failed, lines;
    atomic_int first_error;
};

struct conn {
    struct fanout *f;
    long id;
};

/* Send LINES lines and check their echoes. 0, or a negative errno
 * (-EPROTO: an echo came back different). */
static int talk(weft_stream *s, struct conn *c)
{
    char out[64], in[64];
    for (int k = 0; k < LINES; k++) {
        int n = snprintf(out, sizeof out, "conn %ld line %d\n", c->id, k);
        int err = weft_stream_write(s, out, (size_t)n);
        if (err < 0)
            return err;
        ssize_t got = weft_stream_readline(s, in, sizeof in);
        if (got < 0)
            return (int)got;
        if (got != n || memcmp(in, out, (size_t)n) != 0)
            return -EPROTO;
        atomic_fetch_add(&c->f->lines, 1);
    }
    return 0;
}

static void *one_connection(void *arg)
{
    struct conn *c = arg;
    struct fanout *f = c->f;
    int err = weft_sem_acquire(&f->sem); /* at most `concurrency` at once */
    if (err == 0) {
        weft_stream *s;
        err = weft_open_connection(f->host, f->port, &s);
        if (err == 0) {
            err = talk(s, c);
            (void)weft_stream_close(s);
            int closed = weft_stream_wait_closed(s);
            if (err == 0)
                err = closed;
            weft_stream_free(s);
        }
        (void)weft_sem_release(&f->sem);
    }
    if (err == 0) {
        atomic_fetch_add(&f->ok, 1);
    } else {
        atomic_fetch_add(&f->failed, 1);
        int none = 0;
        atomic_compare_exchange_strong(&f->first_error, &none, err);
    }
    return NULL;
}

static void *main_task(void *arg)
{
    struct fanout *f = arg;
    if (weft_sem_init(&f->sem, f->concurrency) < 0)
        return (void *)1;
    size_t n = (size_t)f->connections;
    weft_task **tasks = calloc(n, sizeof *tasks);
    struct conn *conns = calloc(n, sizeof *conns);
    if (!tasks || !conns) {
        perror("calloc");
        exit(1);
    }
    double t0 = weft_now();
    size_t spawned = 0;
    for (; spawned < n; spawned++) {
        conns[spawned] = (struct conn){.f = f, .id = (long)spawned};
        tasks[spawned] = weft_spawn(one_connection, &conns[spawned]);
        if (!tasks[spawned]) {
            perror("weft_spawn");
            break;
        }
    }
    int err = weft_gather(tasks, spawned, NULL, NULL);
    double took = weft_now() - t0;
    if (err < 0)
        fprintf(stderr, "weft_gather: %s\n", weft_strerror(err));
    printf("fanout_client: %ld connections (at most %ld at once) to %s port "
           "%d: %ld ok, %ld failed, %ld lines echoed in %.3f s "
           "(%.0f connections/s)\n",
           f->connections, f->concurrency, f->host, f->port,
           atomic_load(&f->ok), atomic_load(&f->failed), atomic_load(&f->lines),
           took, (double)spawned / took);
    if (atomic_load(&f->failed))
        printf("fanout_client: first error: %s\n",
               weft_strerror(atomic_load(&f->first_error)));
    free(tasks);
    free(conns);
    (void)weft_sem_destroy(&f->sem);
    bool all_ok = spawned == n && atomic_load(&f->ok) == f->connections;
    return all_ok ? NULL : (void *)1;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: fanout_client host port [connections=1000] "
                        "[concurrency=100]\n");
        return 2;
    }
    struct fanout f = {.host = argv[1],
                       .port = atoi(argv[2]),
                       .connections = argc > 3 ? atol(argv[3]) : 1000,
                       .concurrency = argc > 4 ? atol(argv[4]) : 100};
    if (f.connections < 1 || f.concurrency < 1) {
        fprintf(stderr, "fanout_client: connections and concurrency must be "
                        "at least 1\n");
        return 2;
    }
    void *failed = NULL;
    int err = weft_run(main_task, &f, &failed);
    if (err < 0) {
        fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
        return 1;
    }
    return failed ? 1 : 0;
}
