/* Buffered streams: asyncio's StreamReader and StreamWriter in one object
 * over a connected, non-blocking socket (weft.h, "Buffered streams").
 *
 * Built on the public API only: weft_fd_read/wait/close for the socket,
 * weft_lock and weft_cond for the write side, weft_spawn_ex for the
 * background flusher.
 *
 * Reading. One reader at a time owns the read buffer: a call takes the
 * READING bit of `rd` with a CAS (a second concurrent reader gets -EBUSY)
 * and gives it back on return. Bytes received go into rbuf and leave it
 * only when a call returns them, so a call interrupted in weft_fd_read
 * (-ECANCELED, -ETIMEDOUT) leaves everything it received for the next one.
 * A read that finds the buffer empty and wants at least RBUF_MIN bytes
 * reads straight into the caller's buffer: what the kernel hands over is
 * returned at once, so nothing can be lost there either. Buffered bytes
 * always come out before end of stream or an error is reported; a read
 * error (-ECONNRESET, ...) is sticky, as asyncio's reader exception is.
 *
 * Writing. weft_stream_write never suspends (it may wait a moment for
 * wlock, which nobody holds across a suspension). With nothing buffered
 * and no flusher, it sends at once with send(MSG_DONTWAIT); what the
 * socket does not take goes into wbuf, and a flusher task, spawned on
 * demand into the writer's runtime (else the stream's), sends it and exits
 * when wbuf is empty. A plain thread with no runtime to spawn into flushes
 * itself, blocking, before write returns. The first send error is sticky
 * (werr): the unsent bytes are dropped, and write, drain and wait_closed
 * report it. drain waits on `cond` while more than high_water is buffered,
 * until it falls to low_water.
 *
 * Closing. close marks the stream closing, stops the reader (SHUT, plus
 * shutdown(SHUT_RD) to wake a reader parked in weft_fd_read), and leaves
 * the socket to the flusher if there is one, which closes it once wbuf is
 * sent (or the send failed). write_eof likewise shuts down the sending side
 * once wbuf is empty. free on a stream whose socket is still open aborts:
 * it cancels and joins the flusher (join, not a reference count, because a
 * task cancelled before it starts never runs and so could never drop a
 * reference), drops unsent bytes and closes the socket at once.
 *
 * Decisions beyond the header:
 *  - Reads after close return what is buffered, then end of stream (0, or
 *    -ENODATA from readexactly/readuntil), as asyncio's reader does after
 *    connection_lost; they never touch the socket again.
 *  - write after close or write_eof: -EPIPE. write_eof after close, or
 *    twice: 0. wait_closed on a stream nobody closes waits (as asyncio's).
 *  - free after close but before wait_closed aborts too: only wait_closed
 *    guarantees an orderly end.
 *  - A stream is used in one runtime: its flusher runs in the runtime of
 *    the task that writes, or for a plain thread's write in the runtime
 *    the stream was made in, which must still exist.
 *  - readline at end of stream returns what is left; with more than the
 *    limit and no "\n" it returns -EMSGSIZE and keeps the data, as
 *    readuntil (asyncio's readline would drop it).
 *
 * Invariants (who owns what):
 *  - fd, rt, limit, high, low: set by weft_stream_new, constant.
 *  - rd: any thread, atomic (seq CAS). READING: a reader owns rbuf, rstart,
 *    rend, rcap, eof, rerr, and may use the fd. SHUT: set once by close or
 *    free, under wlock; readers must not start a read on the fd after
 *    seeing it. PENDING_CLOSE: the closer found a reader inside; the
 *    reader closes the socket when it leaves (so the fd number is never
 *    freed under a reader that could still read it).
 *  - Under wlock: wbuf, wcap, wstart, wlen (wlen also read without the lock,
 *    relaxed, by weft_stream_buffered), werr, flusher, closing, eof_wanted,
 *    shut_wr, aborted, fd_closing, fd_released.
 *  - wlen > 0 implies flusher != NULL: every buffered byte has a sender.
 *  - The fd is closed exactly once, by whoever sets fd_closing (or the
 *    reader it hands off to), and only when no flusher can still use it:
 *    close closes it itself only when there is no flusher; free joins the
 *    flusher first.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sched/alloc.h"
#include "sched/atomic.h"

#define DEFAULT_LIMIT      (64 * 1024)
#define DEFAULT_HIGH_WATER (64 * 1024)
#define RBUF_MIN           (16 * 1024)  /* first read buffer; direct reads */
#define RBUF_ROOM          (4 * 1024)   /* free space a fill asks for */
#define BUF_KEEP           (256 * 1024) /* larger empty buffers are freed */
#define WBUF_MIN           (4 * 1024)

/* Bits of weft_stream.rd. */
#define READING       1u
#define SHUT          2u
#define PENDING_CLOSE 4u

/* The value of `flusher` while a plain thread flushes inline. */
#define THREAD_FLUSHER ((weft_task *)(uintptr_t)1)

struct weft_stream {
    int fd;           /* constant */
    weft_runtime *rt; /* the maker's runtime or NULL; constant */
    size_t limit, high, low;

    uint32_t rd; /* READING | SHUT | PENDING_CLOSE; atomic */

    /* The reader's (the holder of READING). */
    char *rbuf;
    size_t rcap, rstart, rend; /* data is rbuf[rstart, rend) */
    bool eof;                  /* the socket said end of stream */
    int rerr;                  /* sticky read error, 0 if none */

    /* Under wlock. */
    weft_lock wlock;
    weft_cond cond; /* wlen fell, werr set, fd released, flusher done */
    char *wbuf;
    size_t wcap, wstart;
    uint64_t wlen;      /* data is wbuf[wstart, wstart + wlen) */
    int werr;           /* sticky send error, 0 if none */
    weft_task *flusher; /* the flusher task, THREAD_FLUSHER, or NULL */
    bool closing;       /* weft_stream_close was called */
    bool eof_wanted;    /* weft_stream_write_eof was called */
    bool shut_wr;       /* shutdown(SHUT_WR) done */
    bool aborted;       /* weft_stream_free: stop sending at once */
    bool fd_closing;    /* the socket is closed or handed to the reader */
    bool fd_released;   /* the socket is closed */
};

/* ------------------------------------------------------------------------
 * The write-side lock */

/* Take wlock from a call that must not fail. Nobody holds wlock across a
 * suspension (weft_cond_wait releases it), so a holder is running on some
 * thread and lets go soon; a task whose acquire is interrupted (a pending
 * cancel) spins on the nowait form until then. */
static void wlock_take(weft_stream *s)
{
    int rc = weft_lock_acquire(&s->wlock);
    if (WEFT_LIKELY(rc == 0))
        return;
    if (rc != -ECANCELED && rc != -ETIMEDOUT)
        weft__panic("stream: weft_lock_acquire returned %d", rc);
    while (weft_lock_acquire_nowait(&s->wlock) != 0)
        weft__cpu_relax();
}

static void wlock_drop(weft_stream *s)
{
    if (weft_lock_release(&s->wlock) != 0)
        weft__panic("stream: wlock released by a non-holder");
}

/* Caller holds wlock. Wakes drain and wait_closed to look again. */
static void wake_all_locked(weft_stream *s)
{
    (void)weft_cond_notify_all(&s->cond);
}

/* ------------------------------------------------------------------------
 * Closing the socket */

/* The reader leaves: give READING back; if a closer handed the socket to
 * it meanwhile, close it. Seq CAS (the relaxed load before it is only a
 * guess that the CAS checks): its release half publishes the read buffer
 * to the next reader's entry CAS, and it is ordered with the CAS in
 * close_fd_locked(), so exactly one of the two closes the socket. */
static void reader_exit(weft_stream *s)
{
    uint32_t old;
    do
        old = weft__load_rlx_u32(&s->rd);
    while (!weft__cas_seq_u32(&s->rd, old, old & ~(READING | PENDING_CLOSE)));
    if (!(old & PENDING_CLOSE))
        return;
    (void)weft_fd_close(s->fd);
    wlock_take(s);
    s->fd_released = true;
    wake_all_locked(s);
    wlock_drop(s);
}

/* Take READING. Returns 0, or -EBUSY when another read is in progress.
 * Seq CAS: its acquire half makes the previous reader's buffer visible
 * (pairs with the CAS in reader_exit). */
static int reader_enter(weft_stream *s)
{
    for (;;) {
        uint32_t old = weft__load_rlx_u32(&s->rd);
        if (old & READING)
            return -EBUSY;
        if (weft__cas_seq_u32(&s->rd, old, old | READING))
            return 0;
    }
}

/* Whether readers must leave the socket alone. Relaxed: a reader that
 * entered after SHUT was set saw it in its entry CAS, and this later load
 * of the same word cannot see an older value; one that entered before is
 * woken by the closer's shutdown(SHUT_RD). */
static bool read_shut(const weft_stream *s)
{
    return weft__load_rlx_u32((uint32_t *)&s->rd) & SHUT;
}

/* Caller holds wlock. Set SHUT; if a reader is inside, wake it with
 * shutdown(SHUT_RD), which makes its read return end of stream. */
static void shut_reading_locked(weft_stream *s)
{
    uint32_t old;
    do
        old = weft__load_rlx_u32(&s->rd);
    /* Seq CAS: a reader whose entry CAS comes later sees SHUT. */
    while (!weft__cas_seq_u32(&s->rd, old, old | SHUT));
    if ((old & READING) && !s->fd_closing)
        (void)shutdown(s->fd, SHUT_RD);
}

/* Caller holds wlock, SHUT is set and no flusher can use the fd. Close the
 * socket, or hand it to the reader inside (reader_exit closes it). */
static void close_fd_locked(weft_stream *s)
{
    if (s->fd_closing)
        return;
    s->fd_closing = true;
    for (;;) {
        uint32_t old = weft__load_rlx_u32(&s->rd);
        /* Seq CAS, also when nothing changes: it reads the latest value of
         * rd, so either the reader's entry CAS came first (we see READING)
         * or it comes after and sees SHUT, set before this. */
        if (old & READING) {
            if (weft__cas_seq_u32(&s->rd, old, old | PENDING_CLOSE))
                return;
        } else if (weft__cas_seq_u32(&s->rd, old, old)) {
            break;
        }
    }
    (void)weft_fd_close(s->fd);
    s->fd_released = true;
    wake_all_locked(s);
}

/* ------------------------------------------------------------------------
 * The write buffer and the flusher */

/* Caller holds wlock. The first send error sticks; unsent bytes go. */
static void fail_locked(weft_stream *s, int err)
{
    if (!s->werr)
        s->werr = err;
    s->wstart = 0;
    weft__store_rlx_u64(&s->wlen, 0); /* relaxed: see weft_stream_buffered */
    wake_all_locked(s);
}

/* Caller holds wlock. n bytes of the head went out. */
static void consume_locked(weft_stream *s, size_t n)
{
    s->wstart += n;
    /* Relaxed: only weft_stream_buffered reads wlen outside wlock. */
    weft__store_rlx_u64(&s->wlen, s->wlen - n);
    if (s->wlen == 0) {
        s->wstart = 0;
        if (s->wcap > BUF_KEEP) {
            weft__free(s->wbuf);
            s->wbuf = NULL;
            s->wcap = 0;
        }
    }
    if (s->wlen <= s->low)
        wake_all_locked(s);
}

/* Caller holds wlock. Append buf[0, n) to wbuf. 0 or -ENOMEM. */
static int append_locked(weft_stream *s, const char *buf, size_t n)
{
    size_t need = (size_t)s->wlen + n;
    if (need > s->wcap - s->wstart) {
        if (need <= s->wcap) { /* room enough once compacted */
            memmove(s->wbuf, s->wbuf + s->wstart, s->wlen);
        } else {
            size_t cap = s->wcap ? s->wcap : WBUF_MIN;
            while (cap < need) {
                if (cap > SIZE_MAX / 2)
                    return -ENOMEM;
                cap *= 2;
            }
            char *nb = weft__malloc(cap);
            if (!nb)
                return -ENOMEM;
            if (s->wlen)
                memcpy(nb, s->wbuf + s->wstart, s->wlen);
            weft__free(s->wbuf);
            s->wbuf = nb;
            s->wcap = cap;
        }
        s->wstart = 0;
    }
    memcpy(s->wbuf + s->wstart + s->wlen, buf, n);
    weft__store_rlx_u64(&s->wlen, need); /* relaxed: as in consume_locked */
    return 0;
}

/* send(2) that never blocks and never raises SIGPIPE: bytes sent, or a
 * negative errno (-EAGAIN when the socket is full). */
static ssize_t send_now(int fd, const void *buf, size_t n)
{
    for (;;) {
        ssize_t r = send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r >= 0)
            return r;
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* Caller holds wlock and is the flusher (a task, or a plain thread with
 * flusher == THREAD_FLUSHER). Send wbuf until it is empty, a send fails or
 * the stream is aborted; wlock is dropped while waiting for room. Returns
 * with wlock held. */
static void flush_locked(weft_stream *s)
{
    while (!s->aborted && s->wlen > 0) {
        ssize_t r = send_now(s->fd, s->wbuf + s->wstart, s->wlen);
        if (r > 0) {
            consume_locked(s, (size_t)r);
            continue;
        }
        if (r == 0)
            r = -EIO; /* cannot happen for n > 0 on a stream socket */
        if (r == -EAGAIN) {
            /* The fd stays open while we wait: only the flusher, or free
             * after joining it, closes it while there is a flusher. */
            wlock_drop(s);
            int rc = weft_fd_wait(s->fd, WEFT_WRITABLE, WEFT_FOREVER);
            wlock_take(s);
            if (rc > 0)
                continue;
            r = rc; /* interrupted: the runtime is going, or free */
        }
        fail_locked(s, (int)r);
    }
}

/* Caller holds wlock, is the flusher and has flushed. Do what waited for
 * an empty buffer: the half-close, or the close. */
static void after_flush_locked(weft_stream *s)
{
    if (s->aborted)
        return; /* weft_stream_free closes the socket */
    if (s->closing) {
        close_fd_locked(s);
    } else if (s->eof_wanted && !s->shut_wr && s->wlen == 0) {
        s->shut_wr = true;
        if (shutdown(s->fd, SHUT_WR) < 0 && !s->werr)
            s->werr = -errno;
    }
}

static void *flusher_main(void *arg)
{
    weft_stream *s = arg;
    wlock_take(s);
    flush_locked(s);
    after_flush_locked(s);
    /* free may have taken the handle to join it; else give it up here. */
    weft_task *me = weft_current();
    if (s->flusher == me) {
        s->flusher = NULL;
        weft_detach(me); /* the task runs on and is freed when it ends */
    }
    wake_all_locked(s);
    wlock_drop(s);
    return NULL;
}

/* Caller holds wlock. A flusher that ended without running (cancelled
 * before it started: its runtime is being freed) leaves its bytes behind;
 * drop them, as its cancellation would have. */
static void reap_dead_flusher_locked(weft_stream *s)
{
    weft_task *t = s->flusher;
    if (!t || t == THREAD_FLUSHER || !weft_task_done(t))
        return;
    s->flusher = NULL;
    weft_detach(t);
    fail_locked(s, -ECANCELED);
    if (s->closing)
        close_fd_locked(s);
}

/* Caller holds wlock; wlen > 0 and there is no flusher. Start one: a task
 * in the caller's runtime (else the stream's), or, on a plain thread with
 * neither, flush here. Returns 0 or werr. */
static int start_flusher_locked(weft_stream *s)
{
    weft_runtime *rt = weft_runtime_current();
    if (!rt)
        rt = s->rt;
    if (!rt) {
        s->flusher = THREAD_FLUSHER;
        flush_locked(s);
        after_flush_locked(s);
        s->flusher = NULL;
        wake_all_locked(s);
        return s->werr;
    }
    weft_task_opts opts = {.name = "weft-stream-flush"};
    weft_task *t = weft_spawn_ex(rt, flusher_main, s, &opts);
    if (!t) {
        fail_locked(s, -ENOMEM);
        return s->werr;
    }
    s->flusher = t;
    return 0;
}

/* ------------------------------------------------------------------------
 * Making and freeing */

/* weft_stream_new for an fd known to be non-blocking. */
static int stream_make(int fd, const weft_stream_opts *opts, weft_stream **out)
{
    weft_stream_opts o = opts ? *opts : (weft_stream_opts){0};
    if (!o.limit)
        o.limit = DEFAULT_LIMIT;
    if (!o.high_water)
        o.high_water = DEFAULT_HIGH_WATER;
    if (!o.low_water)
        o.low_water = o.high_water / 4;
    int err = -EINVAL;
    if (o.low_water > o.high_water || o.limit > SSIZE_MAX)
        goto err_close;
    err = -ENOMEM;
    weft_stream *s = weft__calloc(1, sizeof *s);
    if (!s)
        goto err_close;
    s->fd = fd;
    s->rt = weft_runtime_current();
    s->limit = o.limit;
    s->high = o.high_water;
    s->low = o.low_water;
    if (weft_lock_init(&s->wlock) != 0 || weft_cond_init(&s->cond, &s->wlock))
        weft__panic("weft_stream_new: lock or cond init failed");
    *out = s;
    return 0;
err_close:
    (void)weft_fd_close(fd);
    return err;
}

int weft_stream_new(int fd, const weft_stream_opts *opts, weft_stream **out)
{
    if (fd < 0)
        return -EINVAL;
    int err = -EINVAL;
    if (!out)
        goto err_close;
    *out = NULL;
    err = weft_fd_set_nonblocking(fd);
    if (err < 0)
        goto err_close;
    return stream_make(fd, opts, out);
err_close:
    (void)weft_fd_close(fd);
    return err;
}

void weft_stream_free(weft_stream *s)
{
    if (!s)
        return;
    wlock_take(s);
    shut_reading_locked(s);
    weft_task *t = s->flusher;
    if (t == THREAD_FLUSHER)
        weft__panic("weft_stream_free: a thread is writing to the stream");
    s->flusher = NULL; /* ours to join now: the flusher will not detach */
    if (!s->fd_released) {
        s->aborted = true;
        fail_locked(s, -EPIPE);
    }
    wlock_drop(s);
    if (t) {
        /* Cancel, then join: the flusher wakes from weft_fd_wait, sees
         * `aborted` and ends; one that never started is done already. */
        (void)weft_cancel(t);
        int jrc = weft_join(t, NULL); /* -ECANCELED: it was interrupted */
        (void)jrc;
    }
    wlock_take(s);
    close_fd_locked(s);
    bool handed_off = !s->fd_released;
    wlock_drop(s);
    if (handed_off)
        weft__panic("weft_stream_free: a read is in progress");
    if (weft_cond_destroy(&s->cond) != 0 || weft_lock_destroy(&s->wlock) != 0)
        weft__panic("weft_stream_free: the stream is still waited on");
    weft__free(s->rbuf);
    weft__free(s->wbuf);
    weft__free(s);
}

int weft_stream_fd(const weft_stream *s)
{
    return s ? s->fd : -EINVAL;
}

/* ------------------------------------------------------------------------
 * Reading: the buffer */

static size_t ravail(const weft_stream *s)
{
    return s->rend - s->rstart;
}

/* Reader only. n buffered bytes were handed out. */
static void rconsume(weft_stream *s, size_t n)
{
    s->rstart += n;
    if (s->rstart == s->rend) {
        s->rstart = s->rend = 0;
        if (s->rcap > BUF_KEEP) {
            weft__free(s->rbuf);
            s->rbuf = NULL;
            s->rcap = 0;
        }
    }
}

/* Reader only. Make room for at least `need` more bytes after rend,
 * compacting or growing the buffer. 0 or -ENOMEM (nothing changed). */
static int rreserve(weft_stream *s, size_t need)
{
    size_t avail = ravail(s);
    if (s->rcap - s->rend >= need)
        return 0;
    if (s->rcap - avail >= need) {
        memmove(s->rbuf, s->rbuf + s->rstart, avail);
        s->rstart = 0;
        s->rend = avail;
        return 0;
    }
    size_t cap = s->rcap ? s->rcap : RBUF_MIN;
    while (cap - avail < need) {
        if (cap > SIZE_MAX / 2)
            return -ENOMEM;
        cap *= 2;
    }
    char *nb = weft__malloc(cap);
    if (!nb)
        return -ENOMEM;
    if (avail)
        memcpy(nb, s->rbuf + s->rstart, avail);
    weft__free(s->rbuf);
    s->rbuf = nb;
    s->rcap = cap;
    s->rstart = 0;
    s->rend = avail;
    return 0;
}

/* Reader only. What a read of the socket returned: the count (> 0), or 0
 * at end of stream (remembered), or an error; interrupts are not sticky,
 * other errors are. */
static ssize_t rresult(weft_stream *s, ssize_t r)
{
    if (r == 0) {
        s->eof = true;
    } else if (r < 0 && r != -ECANCELED && r != -ETIMEDOUT && r != -ENOMEM) {
        s->rerr = (int)r;
    }
    return r;
}

/* Reader only. Whether reading the socket is over: true with *rc set to
 * the sticky error, or to 0 at end of stream (also once the stream is
 * closed: what is buffered is returned, then end of stream). */
static bool rdone(weft_stream *s, ssize_t *rc)
{
    if (s->rerr) {
        *rc = s->rerr;
        return true;
    }
    if (!s->eof && read_shut(s))
        s->eof = true; /* closed: what is buffered, then end of stream */
    if (s->eof) {
        *rc = 0;
        return true;
    }
    return false;
}

/* Reader only. Receive more bytes into the buffer: the count (> 0), 0 at
 * end of stream, or a negative errno. Asks for at least `need` bytes of
 * room (the buffer grows to hold them). */
static ssize_t rfill(weft_stream *s, size_t need)
{
    ssize_t rc;
    if (rdone(s, &rc))
        return rc;
    int err = rreserve(s, need > RBUF_ROOM ? need : RBUF_ROOM);
    if (err < 0)
        return err;
    rc = weft_fd_read(s->fd, s->rbuf + s->rend, s->rcap - s->rend);
    if (rc > 0)
        s->rend += (size_t)rc;
    return rresult(s, rc);
}

/* ------------------------------------------------------------------------
 * Reading: the calls */

static ssize_t read_locked(weft_stream *s, void *buf, size_t n)
{
    while (ravail(s) == 0) {
        ssize_t rc;
        if (n >= RBUF_MIN) { /* straight into the caller's buffer */
            if (rdone(s, &rc))
                return rc;
            return rresult(s, weft_fd_read(s->fd, buf, n));
        }
        rc = rfill(s, 1);
        if (rc <= 0)
            return rc;
    }
    size_t k = ravail(s) < n ? ravail(s) : n;
    memcpy(buf, s->rbuf + s->rstart, k);
    rconsume(s, k);
    return (ssize_t)k;
}

ssize_t weft_stream_read(weft_stream *s, void *buf, size_t n)
{
    if (!s || !buf)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    int err = reader_enter(s);
    if (err < 0)
        return err;
    ssize_t rc = read_locked(s, buf, n);
    reader_exit(s);
    return rc;
}

static ssize_t readexactly_locked(weft_stream *s, void *buf, size_t n)
{
    while (ravail(s) < n) {
        ssize_t rc = rfill(s, n - ravail(s));
        if (rc == 0)
            return -ENODATA;
        if (rc < 0)
            return rc;
    }
    memcpy(buf, s->rbuf + s->rstart, n);
    rconsume(s, n);
    return (ssize_t)n;
}

ssize_t weft_stream_readexactly(weft_stream *s, void *buf, size_t n)
{
    if (!s || !buf || n > SSIZE_MAX)
        return -EINVAL;
    if (n == 0)
        return 0;
    int err = reader_enter(s);
    if (err < 0)
        return err;
    ssize_t rc = readexactly_locked(s, buf, n);
    reader_exit(s);
    return rc;
}

/* Reader only. Copy the first n buffered bytes out. */
static ssize_t take(weft_stream *s, void *buf, size_t n)
{
    memcpy(buf, s->rbuf + s->rstart, n);
    rconsume(s, n);
    return (ssize_t)n;
}

/* readuntil; with rest_at_eof (readline) end of stream returns what is
 * left instead of -ENODATA. */
static ssize_t readuntil_locked(weft_stream *s, const char *sep, size_t seplen,
                                void *buf, size_t cap, bool rest_at_eof)
{
    size_t limit = cap < s->limit ? cap : s->limit;
    size_t searched = 0; /* bytes known to hold no separator start */
    for (;;) {
        size_t avail = ravail(s);
        if (avail >= seplen) {
            const char *from = s->rbuf + s->rstart + searched;
            const char *hit = memmem(from, avail - searched, sep, seplen);
            if (hit) {
                size_t len = (size_t)(hit - (s->rbuf + s->rstart)) + seplen;
                if (len > limit)
                    return -EMSGSIZE;
                return take(s, buf, len);
            }
            searched = avail - seplen + 1;
        }
        if (avail >= limit)
            return -EMSGSIZE;
        ssize_t rc = rfill(s, 1);
        if (rc > 0)
            continue;
        if (rc < 0)
            return rc;
        if (!rest_at_eof)
            return -ENODATA;
        return take(s, buf, ravail(s)); /* < limit <= cap */
    }
}

static ssize_t readuntil(weft_stream *s, const void *sep, size_t seplen,
                         void *buf, size_t cap, bool rest_at_eof)
{
    if (!s || !sep || seplen == 0 || (!buf && cap))
        return -EINVAL;
    if (cap > SSIZE_MAX)
        cap = SSIZE_MAX;
    int err = reader_enter(s);
    if (err < 0)
        return err;
    ssize_t rc = readuntil_locked(s, sep, seplen, buf, cap, rest_at_eof);
    reader_exit(s);
    return rc;
}

ssize_t weft_stream_readuntil(weft_stream *s, const void *sep, size_t seplen,
                              void *buf, size_t cap)
{
    return readuntil(s, sep, seplen, buf, cap, false);
}

ssize_t weft_stream_readline(weft_stream *s, void *buf, size_t cap)
{
    return readuntil(s, "\n", 1, buf, cap, true);
}

bool weft_stream_at_eof(weft_stream *s)
{
    if (!s || reader_enter(s) < 0)
        return false; /* a read in progress: not known to be at the end */
    bool at_eof = ravail(s) == 0 && (s->eof || read_shut(s));
    reader_exit(s);
    return at_eof;
}

/* ------------------------------------------------------------------------
 * Writing */

/* Caller holds wlock; nothing is buffered and there is no flusher. Send
 * what the socket takes now; buffer the rest and start a flusher. */
static int write_direct_locked(weft_stream *s, const char *p, size_t n)
{
    ssize_t r = send_now(s->fd, p, n);
    if (r < 0 && r != -EAGAIN) {
        fail_locked(s, (int)r);
        return (int)r;
    }
    size_t sent = r > 0 ? (size_t)r : 0;
    if (sent == n)
        return 0;
    int err = append_locked(s, p + sent, n - sent);
    if (err < 0) {
        /* A prefix went out and the rest cannot follow: the byte stream
         * is broken, so the error sticks. */
        if (sent > 0)
            fail_locked(s, err);
        return err;
    }
    return start_flusher_locked(s);
}

int weft_stream_write(weft_stream *s, const void *buf, size_t n)
{
    if (!s || (!buf && n))
        return -EINVAL;
    if (n == 0)
        return 0;
    wlock_take(s);
    reap_dead_flusher_locked(s);
    int rc;
    if (s->werr)
        rc = s->werr;
    else if (s->closing || s->eof_wanted)
        rc = -EPIPE;
    else if (s->flusher) /* it sends what we add, in order */
        rc = append_locked(s, buf, n);
    else
        rc = write_direct_locked(s, buf, n);
    wlock_drop(s);
    return rc;
}

int weft_stream_drain(weft_stream *s)
{
    if (!s)
        return -EINVAL;
    int rc = weft_lock_acquire(&s->wlock);
    if (rc < 0)
        return rc;
    reap_dead_flusher_locked(s);
    if (s->wlen > s->high) {
        while (!s->werr && s->wlen > s->low && rc == 0)
            rc = weft_cond_wait(&s->cond);
    }
    if (rc == 0)
        rc = s->werr;
    wlock_drop(s);
    return rc;
}

size_t weft_stream_buffered(weft_stream *s)
{
    /* Relaxed: a snapshot; wlen is written under wlock with relaxed stores
     * and publishes nothing else. */
    return s ? (size_t)weft__load_rlx_u64(&s->wlen) : 0;
}

int weft_stream_write_eof(weft_stream *s)
{
    if (!s)
        return -EINVAL;
    int rc = 0;
    wlock_take(s);
    reap_dead_flusher_locked(s);
    if (!s->closing && !s->eof_wanted) {
        s->eof_wanted = true;
        if (!s->flusher) {
            s->shut_wr = true;
            if (shutdown(s->fd, SHUT_WR) < 0)
                rc = -errno;
        }
    }
    wlock_drop(s);
    return rc;
}

int weft_stream_close(weft_stream *s)
{
    if (!s)
        return -EINVAL;
    wlock_take(s);
    if (!s->closing) {
        s->closing = true;
        shut_reading_locked(s);
        reap_dead_flusher_locked(s);
        if (!s->flusher)
            close_fd_locked(s); /* else the flusher does, once done */
    }
    wlock_drop(s);
    return 0;
}

int weft_stream_wait_closed(weft_stream *s)
{
    if (!s)
        return -EINVAL;
    int rc = weft_lock_acquire(&s->wlock);
    if (rc < 0)
        return rc;
    reap_dead_flusher_locked(s);
    while (!s->fd_released && rc == 0)
        rc = weft_cond_wait(&s->cond);
    if (rc == 0)
        rc = s->werr;
    wlock_drop(s);
    return rc;
}

/* ------------------------------------------------------------------------
 * Addresses */

static int sockaddr_of(weft_stream *s, struct sockaddr_storage *addr,
                       socklen_t *len, bool peer)
{
    if (!s || !addr || !len)
        return -EINVAL;
    socklen_t l = sizeof *addr;
    int rc = 0;
    wlock_take(s);
    if (s->fd_closing)
        rc = -EBADF;
    else if (peer && getpeername(s->fd, (struct sockaddr *)addr, &l) < 0)
        rc = -errno;
    else if (!peer && getsockname(s->fd, (struct sockaddr *)addr, &l) < 0)
        rc = -errno;
    wlock_drop(s);
    if (rc == 0)
        *len = l;
    return rc;
}

int weft_stream_peername(weft_stream *s, struct sockaddr_storage *addr,
                         socklen_t *len)
{
    return sockaddr_of(s, addr, len, true);
}

int weft_stream_sockname(weft_stream *s, struct sockaddr_storage *addr,
                         socklen_t *len)
{
    return sockaddr_of(s, addr, len, false);
}
