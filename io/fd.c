/* Coroutine-aware I/O on non-blocking fds: read, write, accept, connect and
 * "wait until ready" (weft.h, "I/O on file descriptors").
 *
 * Every call is the syscall first, and a wait only on EAGAIN: data that is
 * there already costs one syscall and no scheduler work. A task waits
 * through the reactor (io/reactor.c: weft__io_seq before the syscall,
 * weft__io_wait after EAGAIN, so an edge between the two is never lost); a
 * plain thread waits in poll(2). A call that finds its answer at once does
 * not look at cancellation, as a free lock's acquire does not.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/reactor.h"

#define DIR_READ  1
#define DIR_WRITE 2

/* A plain thread: poll until fd is ready for dirs or deadline_ns passes.
 * Returns the ready dirs (an error or hang-up counts as both), -ETIMEDOUT,
 * -EBADF or poll's error. */
static int thread_poll(int fd, int dirs, int64_t deadline_ns)
{
    struct pollfd p = {.fd = fd,
                       .events = (short)(((dirs & DIR_READ) ? POLLIN : 0) |
                                         ((dirs & DIR_WRITE) ? POLLOUT : 0))};
    for (;;) {
        int ms = -1;
        if (deadline_ns != WEFT__NEVER) {
            int64_t left = deadline_ns - weft__now_ns();
            if (left < 0)
                left = 0;
            ms = left / 1000000 > 1000000000 ? 1000000000
                                             : (int)((left + 999999) / 1000000);
        }
        int n = poll(&p, 1, ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0) {
            if (weft__now_ns() >= deadline_ns)
                return -ETIMEDOUT;
            continue;
        }
        if (p.revents & POLLNVAL)
            return -EBADF;
        int ready = 0;
        if (p.revents & (POLLIN | POLLERR | POLLHUP))
            ready |= DIR_READ;
        if (p.revents & (POLLOUT | POLLERR | POLLHUP))
            ready |= DIR_WRITE;
        return ready & dirs;
    }
}

/* After EAGAIN: wait until fd may be ready for dirs. 0 (or the ready
 * dirs, from a thread): try again; else a negative errno. */
static int await_ready(int fd, int dirs, uint64_t seq)
{
    if (!weft__current()) {
        int rc = thread_poll(fd, dirs, WEFT__NEVER);
        return rc < 0 ? rc : 0;
    }
    return weft__io_wait(fd, dirs, seq, WEFT__NEVER);
}

ssize_t weft_fd_read(int fd, void *buf, size_t n)
{
    for (;;) {
        uint64_t seq = weft__io_seq(fd);
        ssize_t r = read(fd, buf, n);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        int rc = await_ready(fd, DIR_READ, seq);
        if (rc < 0)
            return rc;
    }
}

/* One write attempt: send(2) with MSG_NOSIGNAL on a socket, write(2) on
 * anything else. */
static ssize_t write_once(int fd, const void *buf, size_t n)
{
    ssize_t r = send(fd, buf, n, MSG_NOSIGNAL);
    if (r < 0 && errno == ENOTSOCK)
        r = write(fd, buf, n);
    return r;
}

ssize_t weft_fd_write(int fd, const void *buf, size_t n)
{
    for (;;) {
        uint64_t seq = weft__io_seq(fd);
        ssize_t r = write_once(fd, buf, n);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        int rc = await_ready(fd, DIR_WRITE, seq);
        if (rc < 0)
            return rc;
    }
}

int weft_fd_write_all(int fd, const void *buf, size_t n, size_t *written)
{
    size_t done = 0;
    int rc = 0;
    while (done < n) {
        ssize_t r = weft_fd_write(fd, (const char *)buf + done, n - done);
        if (r < 0) {
            rc = (int)r;
            break;
        }
        done += (size_t)r;
    }
    if (written)
        *written = done;
    return rc;
}

int weft_fd_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    for (;;) {
        uint64_t seq = weft__io_seq(fd);
        int c = accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0)
            return c;
        /* ECONNABORTED: a connection reset while queued; take the next. */
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno != EAGAIN)
            return -errno;
        int rc = await_ready(fd, DIR_READ, seq);
        if (rc < 0)
            return rc;
    }
}

int weft_fd_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    uint64_t seq = weft__io_seq(fd);
    /* EINTR: the connection goes on in the background, as EINPROGRESS. */
    if (connect(fd, addr, len) == 0)
        return 0;
    if (errno != EINPROGRESS && errno != EINTR)
        return -errno;
    for (;;) {
        int rc = await_ready(fd, DIR_WRITE, seq);
        if (rc < 0)
            return rc;
        seq = weft__io_seq(fd);
        int err = 0;
        socklen_t elen = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
            return -errno;
        if (err)
            return -err;
        /* No error: connected, unless the wake-up was for something else
         * (then the peer address is not there yet). */
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        if (getpeername(fd, (struct sockaddr *)&peer, &plen) == 0)
            return 0;
        if (errno != ENOTCONN)
            return -errno;
    }
}

int weft_fd_wait(int fd, int events, double timeout)
{
    if (fd < 0)
        return -EBADF;
    if (events < 1 || events > (WEFT_READABLE | WEFT_WRITABLE))
        return -EINVAL;
    int64_t deadline_ns = weft__timeout_ns(timeout);
    if (deadline_ns < 0)
        return (int)deadline_ns;
    if (!weft__current())
        return thread_poll(fd, events, deadline_ns);
    for (;;) {
        uint64_t seq = weft__io_seq(fd);
        /* poll(2) with no timeout tells the readiness now, level-style. */
        int ready = thread_poll(fd, events, 0);
        if (ready != -ETIMEDOUT)
            return ready;
        int rc = weft__io_wait(fd, events, seq, deadline_ns);
        if (rc < 0)
            return rc;
    }
}

int weft_fd_set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -errno;
    if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

int weft_fd_forget(int fd)
{
    return weft__io_forget(fd);
}

int weft_fd_close(int fd)
{
    int rc = weft__io_forget(fd);
    if (rc < 0)
        return rc;
    /* Linux closes the fd even when close reports EINTR: never retry. */
    if (close(fd) < 0 && errno != EINTR)
        return -errno;
    return 0;
}
