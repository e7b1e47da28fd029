/* echo_server: asyncio's TCP echo server, in weft. Every connection runs
 * in its own task and echoes lines until the client closes; Ctrl-C (or
 * SIGTERM) stops the server.
 *
 *     async def handle(reader, writer):
 *         while line := await reader.readline():
 *             writer.write(line)
 *             await writer.drain()
 *         writer.close()
 *
 *     async def main():
 *         server = await asyncio.start_server(handle, host, port)
 *         async with server:
 *             await server.serve_forever()
 *
 * Usage: echo_server [host] [port]   (defaults: 127.0.0.1, 0 = a free
 * port; an empty host means every interface). It prints the port it
 * listens on. Try it with examples/fanout_client, or nc.
 *
 * SIGINT and SIGTERM are blocked in every thread and taken with sigwait(2)
 * on a thread of the blocking pool (weft_to_thread), so the program reacts
 * to them in a task, where weft's calls are allowed, rather than in a
 * signal handler, where they are not.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

static atomic_long served;

/* One connection: echo each line back. The server closes and frees the
 * stream when this returns. */
static void echo(weft_stream *s, void *arg)
{
    (void)arg;
    char line[4096];
    for (;;) {
        ssize_t n = weft_stream_readline(s, line, sizeof line);
        if (n == -EMSGSIZE) /* a longer line: echo it piece by piece */
            n = weft_stream_read(s, line, sizeof line);
        if (n <= 0) /* 0: the client closed; < 0: reset, or Ctrl-C */
            break;
        if (weft_stream_write(s, line, (size_t)n) < 0 ||
            weft_stream_drain(s) < 0)
            break;
    }
    atomic_fetch_add(&served, 1);
}

/* On a pool thread: wait for SIGINT or SIGTERM (blocked everywhere). */
static void *wait_sigint(void *arg)
{
    sigset_t *set = arg;
    int sig;
    sigwait(set, &sig);
    return NULL;
}

struct stopper {
    weft_server *srv;
    sigset_t set;
};

/* Close the server on Ctrl-C or SIGTERM. */
static void *stop_on_sigint(void *arg)
{
    struct stopper *st = arg;
    if (weft_to_thread(wait_sigint, &st->set, NULL) == 0) {
        fprintf(stderr, "\necho_server: closing\n");
        (void)weft_server_close(st->srv);
    }
    return NULL;
}

struct args {
    const char *host;
    int port;
    sigset_t set;
};

static void *main_task(void *arg)
{
    struct args *a = arg;
    weft_server *srv;
    int err = weft_start_server(a->host, a->port, echo, NULL, &srv);
    if (err < 0) {
        fprintf(stderr, "echo_server: %s: %s\n", a->host ? a->host : "*",
                weft_strerror(err));
        return (void *)1;
    }
    printf("echo_server: listening on %s port %d\n", a->host ? a->host : "*",
           weft_server_port(srv));
    fflush(stdout);

    struct stopper st = {.srv = srv, .set = a->set};
    weft_task *stopper = weft_spawn(stop_on_sigint, &st);
    if (!stopper) {
        perror("weft_spawn");
        (void)weft_server_close(srv);
    }
    err = weft_server_serve_forever(srv); /* until closed */

    /* Give the clients still connected a moment to finish; then leave
     * them to weft_run, which cancels what is left. */
    weft_timeout scope;
    if (err == 0 && weft_timeout_enter(&scope, 1.0) == 0) {
        err = weft_server_wait_closed(srv);
        (void)weft_timeout_exit(&scope);
    }
    if (err == 0)
        weft_server_free(srv);
    else
        fprintf(stderr, "echo_server: clients still connected: %s\n",
                weft_strerror(err));
    if (stopper)
        weft_detach(stopper);
    printf("echo_server: served %ld connections\n", atomic_load(&served));
    return NULL;
}

int main(int argc, char **argv)
{
    struct args a = {.host = "127.0.0.1", .port = 0};
    if (argc > 1)
        a.host = argv[1][0] ? argv[1] : NULL;
    if (argc > 2)
        a.port = atoi(argv[2]);
    if (argc > 3) {
        fprintf(stderr, "usage: echo_server [host] [port]\n");
        return 2;
    }
    /* Blocked before weft starts any thread, so every thread inherits it. */
    sigemptyset(&a.set);
    sigaddset(&a.set, SIGINT);
    sigaddset(&a.set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &a.set, NULL);

    void *failed = NULL;
    int err = weft_run(main_task, &a, &failed);
    if (err < 0) {
        fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
        return 1;
    }
    return failed ? 1 : 0;
}
