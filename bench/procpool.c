/* The process-pool mode: N forked workers, each with a request pipe and an
 * answer pipe (what Python's ProcessPoolExecutor does, without pickling).
 * A request is a uint32_t length and that many bytes; the worker answers
 * each with one uint64_t. A worker exits when its request pipe reaches end
 * of file.
 *
 * Deadlock freedom: a worker writes an answer only after reading a whole
 * request, so as long as the parent sends fewer answers' worth of requests
 * per worker than an answer pipe holds (64 KiB: 8192 answers) before it
 * reads answers, neither side waits on the other while holding a full pipe.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"

struct procpool_worker {
    pid_t pid;
    int req_fd; /* parent writes requests */
    int ans_fd; /* parent reads answers */
};

struct bench_procpool {
    unsigned nworkers;
    struct procpool_worker w[];
};

static void worker_main(int req_fd, int ans_fd, bench_procpool_fn fn)
{
    size_t cap = 0;
    char *buf = NULL;
    for (;;) {
        uint32_t len;
        int err = bench_read_full(req_fd, &len, sizeof len);
        if (err == -EPIPE)
            _exit(0);
        if (err < 0)
            _exit(2);
        if (len > cap) {
            cap = len;
            buf = realloc(buf, cap);
            if (!buf)
                _exit(3);
        }
        if (bench_read_full(req_fd, buf, len) < 0)
            _exit(2);
        uint64_t answer = fn(buf, len);
        if (bench_write_full(ans_fd, &answer, sizeof answer) < 0)
            _exit(2);
    }
}

/* Fork worker i; the child closes the parent's ends of the pipes of the
 * workers before it, or they would never see end of file. */
static int start_worker(struct bench_procpool *pp, unsigned i,
                        bench_procpool_fn fn)
{
    int req[2], ans[2];
    if (pipe(req) < 0)
        return -errno;
    if (pipe(ans) < 0) {
        int err = -errno;
        close(req[0]);
        close(req[1]);
        return err;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int err = -errno;
        close(req[0]);
        close(req[1]);
        close(ans[0]);
        close(ans[1]);
        return err;
    }
    if (pid == 0) {
        for (unsigned j = 0; j < i; j++) {
            close(pp->w[j].req_fd);
            close(pp->w[j].ans_fd);
        }
        close(req[1]);
        close(ans[0]);
        worker_main(req[0], ans[1], fn);
    }
    close(req[0]);
    close(ans[1]);
    pp->w[i] = (struct procpool_worker){pid, req[1], ans[0]};
    return 0;
}

struct bench_procpool *bench_procpool_new(unsigned workers,
                                          bench_procpool_fn fn)
{
    struct bench_procpool *pp =
        calloc(1, sizeof *pp + workers * sizeof(struct procpool_worker));
    if (!pp) {
        bench_perror("bench_procpool_new", -ENOMEM);
        return NULL;
    }
    for (unsigned i = 0; i < workers; i++) {
        int err = start_worker(pp, i, fn);
        if (err < 0) {
            bench_perror("bench_procpool_new: fork", err);
            bench_procpool_free(pp);
            return NULL;
        }
        pp->nworkers++;
    }
    return pp;
}

int bench_procpool_send(struct bench_procpool *pp, unsigned w, const void *req,
                        uint32_t len)
{
    int err = bench_write_full(pp->w[w].req_fd, &len, sizeof len);
    if (err < 0)
        return err;
    return bench_write_full(pp->w[w].req_fd, req, len);
}

int bench_procpool_recv(struct bench_procpool *pp, unsigned w, uint64_t *answer)
{
    return bench_read_full(pp->w[w].ans_fd, answer, sizeof *answer);
}

int bench_procpool_free(struct bench_procpool *pp)
{
    int err = 0;
    for (unsigned i = 0; i < pp->nworkers; i++)
        close(pp->w[i].req_fd);
    for (unsigned i = 0; i < pp->nworkers; i++) {
        int status;
        close(pp->w[i].ans_fd);
        if (waitpid(pp->w[i].pid, &status, 0) < 0 || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            err = -ECHILD;
    }
    free(pp);
    return err;
}
