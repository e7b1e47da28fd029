/* Connections and servers: asyncio's open_connection and start_server over
 * weft streams (weft.h, "Connections and servers").
 *
 * Built on the public API only: weft_to_thread for getaddrinfo,
 * weft_fd_connect/accept/close for the sockets, weft_stream_* for the
 * connections, weft_lock and weft_cond for the server's state.
 *
 * Name resolution. A numeric host (or none) is resolved inline with
 * AI_NUMERICHOST, which never blocks; any other name goes to the blocking
 * pool. The pool job owns a copy of the name and a reference count, so a
 * caller interrupted while getaddrinfo runs returns at once and the last of
 * the two frees the job and its result. getaddrinfo's codes map to
 * WEFT_EAI(code), except EAI_SYSTEM (its errno) and EAI_MEMORY (-ENOMEM).
 *
 * Connecting tries every address in order (socket, TCP_NODELAY as asyncio
 * sets it, weft_fd_connect) and returns the last error when none answers;
 * an interrupt stops the attempts at once.
 *
 * A server listens on every address the host resolves to (NULL or "":
 * every interface, IPv4 and IPv6), with SO_REUSEADDR, IPV6_V6ONLY on IPv6
 * sockets, and one acceptor task per listening socket. Port 0 picks a free
 * port on the first address and uses it on the others. Each accepted
 * connection gets TCP_NODELAY, a stream and a detached task that runs
 * cb(stream, arg), then closes the stream, waits until it is closed and
 * frees it.
 *
 * Closing a server: weft_server_close shuts down every listening socket
 * (shutdown(SHUT_RDWR) on a listening socket makes Linux stop listening:
 * new connections are refused at once, and an acceptor parked in accept
 * wakes with -EINVAL). The acceptor, which alone closes its socket, then
 * closes it and ends. The acceptors are not cancelled: a task cancelled
 * before it starts never runs, and its socket would never be closed.
 *
 * Invariants (fields of struct weft_server):
 *  - rt, cb, arg, sopts, port, n, ls[i].fd's first value: set before the
 *    acceptors start, constant until weft_server_free.
 *  - Under lock: closed, acceptors (acceptor tasks not yet ended), conns
 *    (connection tasks not yet ended), freed, ls[i].fd (the acceptor sets
 *    it to -1 before it closes the socket, so close never shuts down a
 *    number that may have been reused). cond is notified whenever one of
 *    them changes.
 *  - ls[i].task: the acceptor's handle, joined by weft_server_free.
 *  - A connection task holds the server: weft_server_free after close
 *    leaves the memory to the last connection task (freed, conns).
 *  - Every fd is closed exactly once: a listening socket by its acceptor
 *    (or by free if the acceptor never ran), a connection's by its stream.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sched/alloc.h"
#include "sched/atomic.h"

#define DEFAULT_BACKLOG 511
#define MAX_LISTENERS   16
#define ACCEPT_RETRY_S  0.1 /* after EMFILE and the like, as libuv */

/* ------------------------------------------------------------------------
 * Name resolution */

struct resolve_job {
    uint32_t refs; /* atomic: the caller and the pool job */
    char *host;    /* copy, or NULL */
    char service[8];
    struct addrinfo hints;
    struct addrinfo *res; /* written by the job */
    int eai;              /* getaddrinfo's result, written by the job */
    int sys_errno;        /* errno after EAI_SYSTEM, written by the job */
};

static int eai_error(int eai, int sys_errno)
{
    if (eai == EAI_SYSTEM)
        return sys_errno ? -sys_errno : -EIO;
    if (eai == EAI_MEMORY)
        return -ENOMEM;
    return WEFT_EAI(eai);
}

static void resolve_job_free(struct resolve_job *j)
{
    if (j->res)
        freeaddrinfo(j->res);
    weft__free(j->host);
    weft__free(j);
}

/* Drop one reference; the last one frees the job. Seq RMW: the job's
 * writes (res, eai) come before its decrement, and the caller that reads
 * them after its own decrement, or after weft_to_thread returned 0,
 * synchronises with it. */
static void resolve_job_put(struct resolve_job *j)
{
    if (weft__faa_seq_u32(&j->refs, (uint32_t)-1) == 1)
        resolve_job_free(j);
}

static void *resolve_job_run(void *arg)
{
    struct resolve_job *j = arg;
    j->eai = getaddrinfo(j->host, j->service, &j->hints, &j->res);
    j->sys_errno = j->eai == EAI_SYSTEM ? errno : 0;
    resolve_job_put(j);
    return NULL;
}

/* Resolve host:port for TCP (passive: to bind). Stores the list in *out,
 * which the caller frees with freeaddrinfo. 0, WEFT_EAI(..), -ENOMEM, or
 * -ECANCELED / -ETIMEDOUT (the lookup goes on in the pool and its result
 * is dropped). */
static int resolve(const char *host, int port, bool passive,
                   struct addrinfo **out)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_protocol = IPPROTO_TCP,
                             .ai_flags =
                                 AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    /* Numeric hosts (and none) never block: no need for the pool. */
    hints.ai_flags |= AI_NUMERICHOST;
    int eai = getaddrinfo(host, service, &hints, out);
    if (eai != EAI_NONAME || !host)
        return eai ? eai_error(eai, errno) : 0;
    hints.ai_flags &= ~AI_NUMERICHOST;

    struct resolve_job *j = weft__calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    size_t hl = strlen(host) + 1;
    j->host = weft__malloc(hl);
    if (!j->host) {
        weft__free(j);
        return -ENOMEM;
    }
    memcpy(j->host, host, hl);
    memcpy(j->service, service, sizeof service);
    j->hints = hints;
    j->refs = 2;
    int rc = weft_to_thread(resolve_job_run, j, NULL);
    if (rc == -EINVAL || rc == -ENOMEM) { /* the job never ran */
        resolve_job_free(j);
        return rc;
    }
    if (rc == 0) {
        rc = j->eai ? eai_error(j->eai, j->sys_errno) : 0;
        *out = j->res;
        j->res = NULL;
    }
    resolve_job_put(j); /* interrupted: the job may still be running */
    return rc;
}

static void set_nodelay(int fd)
{
    int one = 1;
    /* Best effort, as asyncio's: a failure leaves Nagle on. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ------------------------------------------------------------------------
 * Connecting */

/* Try one address: a connected, non-blocking socket, or a negative errno. */
static int connect_one(const struct addrinfo *ai)
{
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
               ai->ai_protocol);
    if (fd < 0)
        return -errno;
    set_nodelay(fd);
    int rc = weft_fd_connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc < 0) {
        (void)weft_fd_close(fd);
        return rc;
    }
    return fd;
}

int weft_open_connection_ex(const char *host, int port,
                            const weft_stream_opts *opts, weft_stream **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (port < 0 || port > 65535)
        return -EINVAL;
    struct addrinfo *list = NULL;
    int rc = resolve(host, port, false, &list);
    if (rc < 0)
        return rc;
    rc = -ECONNREFUSED; /* an empty list: nothing answered */
    int fd = -1;
    for (const struct addrinfo *ai = list; ai && fd < 0; ai = ai->ai_next) {
        rc = connect_one(ai);
        if (rc >= 0)
            fd = rc;
        else if (rc == -ECANCELED || rc == -ETIMEDOUT)
            break; /* interrupted: try nothing more */
    }
    freeaddrinfo(list);
    if (fd < 0)
        return rc;
    return weft_stream_new(fd, opts, out);
}

int weft_open_connection(const char *host, int port, weft_stream **out)
{
    return weft_open_connection_ex(host, port, NULL, out);
}

/* ------------------------------------------------------------------------
 * The server */

struct listener {
    weft_server *srv;
    int fd;          /* under srv->lock once the acceptor runs; -1: closed */
    weft_task *task; /* the acceptor */
};

struct weft_server {
    weft_runtime *rt;
    weft_conn_fn cb;
    void *arg;
    weft_stream_opts sopts;
    int port;
    size_t n;
    struct listener ls[MAX_LISTENERS];

    weft_lock lock;
    weft_cond cond;
    bool closed, freed;
    size_t acceptors, conns;
};

struct conn {
    weft_server *srv;
    weft_stream *stream;
};

/* Take srv->lock in a call that must not fail: nobody holds it across a
 * suspension (weft_cond_wait releases it), so a task interrupted while it
 * waits for the lock spins on the nowait form until the holder lets go. */
static void srv_lock(weft_server *srv)
{
    int rc = weft_lock_acquire(&srv->lock);
    if (WEFT_LIKELY(rc == 0))
        return;
    if (rc != -ECANCELED && rc != -ETIMEDOUT)
        weft__panic("server: weft_lock_acquire returned %d", rc);
    while (weft_lock_acquire_nowait(&srv->lock) != 0)
        weft__cpu_relax();
}

static void srv_unlock(weft_server *srv)
{
    if (weft_lock_release(&srv->lock) != 0)
        weft__panic("server: lock released by a non-holder");
}

static void srv_destroy(weft_server *srv)
{
    if (weft_cond_destroy(&srv->cond) != 0 ||
        weft_lock_destroy(&srv->lock) != 0)
        weft__panic("weft_server_free: the server is still waited on");
    weft__free(srv);
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    weft_server *srv = c->srv;
    weft_stream *s = c->stream;
    weft__free(c);
    srv->cb(s, srv->arg);
    (void)weft_stream_close(s);
    int rc = weft_stream_wait_closed(s); /* interrupted: free aborts */
    (void)rc;
    weft_stream_free(s);
    srv_lock(srv);
    bool last = --srv->conns == 0 && srv->freed;
    (void)weft_cond_notify_all(&srv->cond);
    srv_unlock(srv);
    if (last)
        srv_destroy(srv);
    return NULL;
}

/* Serve an accepted socket in a new task. */
static void conn_start(weft_server *srv, int fd)
{
    set_nodelay(fd);
    weft_stream *s;
    if (weft_stream_new(fd, &srv->sopts, &s) < 0)
        return; /* the stream closed fd */
    struct conn *c = weft__malloc(sizeof *c);
    if (!c)
        goto err_free;
    *c = (struct conn){.srv = srv, .stream = s};
    srv_lock(srv);
    srv->conns++;
    srv_unlock(srv);
    weft_task_opts opts = {.name = "weft-conn"};
    weft_task *t = weft_spawn_ex(srv->rt, conn_main, c, &opts);
    if (t) {
        weft_detach(t);
        return;
    }
    srv_lock(srv);
    srv->conns--;
    (void)weft_cond_notify_all(&srv->cond);
    srv_unlock(srv);
    weft__free(c);
err_free:
    weft_stream_free(s); /* aborts: the client sees the connection close */
}

static bool srv_closed(weft_server *srv)
{
    srv_lock(srv);
    bool closed = srv->closed;
    srv_unlock(srv);
    return closed;
}

/* Whether accept's error is about one connection or a passing shortage,
 * so that accepting should go on (after a pause for a shortage). */
static bool accept_error_passes(int err, bool *pause)
{
    *pause =
        err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
    return *pause || err == -EPROTO || err == -EPERM || err == -ENETDOWN ||
           err == -ENOPROTOOPT || err == -EHOSTDOWN || err == -ENONET ||
           err == -EHOSTUNREACH || err == -EOPNOTSUPP || err == -ENETUNREACH;
}

static void *acceptor_main(void *arg)
{
    struct listener *l = arg;
    weft_server *srv = l->srv;
    int fd = l->fd; /* only this task closes it */
    for (;;) {
        int c = weft_fd_accept(fd, NULL, NULL);
        if (c >= 0) {
            conn_start(srv, c);
            continue;
        }
        bool pause;
        if (srv_closed(srv) || !accept_error_passes(c, &pause))
            break; /* closed (-EINVAL), interrupted, or broken */
        if (pause && weft_sleep(ACCEPT_RETRY_S) < 0)
            break;
    }
    srv_lock(srv);
    l->fd = -1;
    srv->acceptors--;
    (void)weft_cond_notify_all(&srv->cond);
    srv_unlock(srv);
    (void)weft_fd_close(fd);
    return NULL;
}

/* Whether ai's address is already among the first n listeners'. */
static bool already_bound(const weft_server *srv, const struct addrinfo *ai,
                          const struct sockaddr_storage *bound)
{
    for (size_t i = 0; i < srv->n; i++)
        if (memcmp(&bound[i], ai->ai_addr, ai->ai_addrlen) == 0)
            return true;
    return false;
}

static int sockaddr_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static void sockaddr_set_port(struct sockaddr *sa, int port)
{
    if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
    else if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
}

/* A listening socket on ai (with `port` when not 0), or a negative errno. */
static int listen_one(const struct addrinfo *ai, int port,
                      const weft_server_opts *o)
{
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
               ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int one = 1;
    struct sockaddr_storage addr;
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    if (port)
        sockaddr_set_port((struct sockaddr *)&addr, port);
    int err = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        (o->reuse_port &&
         setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
        (ai->ai_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) ||
        bind(fd, (struct sockaddr *)&addr, ai->ai_addrlen) < 0 ||
        listen(fd, o->backlog > 0 ? o->backlog : DEFAULT_BACKLOG) < 0)
        err = -errno;
    if (err) {
        (void)weft_fd_close(fd);
        return err;
    }
    return fd;
}

/* Whether socket(2) failed because this kind of socket does not exist
 * here (no IPv6, say): asyncio skips such addresses, and so do we. */
static bool family_missing(int err)
{
    return err == -EAFNOSUPPORT || err == -EPROTONOSUPPORT ||
           err == -ESOCKTNOSUPPORT;
}

static void close_listeners(weft_server *srv, size_t from)
{
    for (size_t i = from; i < srv->n; i++)
        (void)weft_fd_close(srv->ls[i].fd);
}

/* Open a listening socket on every address of list. 0 or a negative
 * errno (the sockets opened are closed again). */
static int listen_all(weft_server *srv, const struct addrinfo *list,
                      const weft_server_opts *o)
{
    struct sockaddr_storage bound[MAX_LISTENERS];
    int port = 0;
    int err = -EADDRNOTAVAIL; /* an empty list */
    for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        if (srv->n == MAX_LISTENERS ||
            ai->ai_addrlen > sizeof(struct sockaddr_storage) ||
            already_bound(srv, ai, bound))
            continue;
        int fd = listen_one(ai, port, o);
        if (fd < 0 && family_missing(fd)) {
            err = fd;
            continue;
        }
        if (fd < 0) {
            close_listeners(srv, 0);
            srv->n = 0;
            return fd;
        }
        memset(&bound[srv->n], 0, sizeof bound[0]);
        memcpy(&bound[srv->n], ai->ai_addr, ai->ai_addrlen);
        if (!port) { /* port 0: the kernel's pick, for the others too */
            struct sockaddr_storage ss;
            socklen_t len = sizeof ss;
            if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
                port = sockaddr_port(&ss);
        }
        srv->ls[srv->n++] = (struct listener){.srv = srv, .fd = fd};
    }
    srv->port = port;
    return srv->n ? 0 : err;
}

/* Start one acceptor per listening socket. On failure the server is
 * closed, the acceptors started are joined, the sockets closed. */
static int start_acceptors(weft_server *srv)
{
    weft_task_opts opts = {.name = "weft-accept"};
    /* Counted before any starts: an acceptor may end on another worker
     * before the next spawn returns. */
    srv->acceptors = srv->n;
    size_t i;
    for (i = 0; i < srv->n; i++) {
        srv->ls[i].task =
            weft_spawn_ex(srv->rt, acceptor_main, &srv->ls[i], &opts);
        if (!srv->ls[i].task)
            break;
    }
    if (i == srv->n)
        return 0;
    int err = errno == EINVAL ? -EINVAL : -ENOMEM;
    (void)weft_server_close(srv);
    for (size_t k = 0; k < i; k++) {
        int jrc = weft_join(srv->ls[k].task, NULL);
        (void)jrc;
    }
    close_listeners(srv, i);
    return err;
}

/* The stream options as weft_stream_new will see them are valid. */
static bool stream_opts_ok(const weft_stream_opts *so)
{
    size_t high = so->high_water ? so->high_water : 64 * 1024;
    size_t low = so->low_water ? so->low_water : high / 4;
    return low <= high && so->limit <= SSIZE_MAX;
}

int weft_start_server_ex(const char *host, int port, weft_conn_fn cb, void *arg,
                         const weft_server_opts *opts, weft_server **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!cb || port < 0 || port > 65535 ||
        (opts && (opts->backlog < 0 || !stream_opts_ok(&opts->stream))))
        return -EINVAL;
    weft_runtime *rt = weft_runtime_current();
    if (!rt)
        return -EPERM;
    weft_server_opts o = opts ? *opts : (weft_server_opts){0};
    struct addrinfo *list = NULL;
    int err = resolve(host && *host ? host : NULL, port, true, &list);
    if (err < 0)
        return err;
    err = -ENOMEM;
    weft_server *srv = weft__calloc(1, sizeof *srv);
    if (!srv)
        goto err_list;
    *srv = (weft_server){.rt = rt, .cb = cb, .arg = arg, .sopts = o.stream};
    if (weft_lock_init(&srv->lock) != 0 ||
        weft_cond_init(&srv->cond, &srv->lock) != 0)
        weft__panic("weft_start_server: lock or cond init failed");
    err = listen_all(srv, list, &o);
    if (err < 0)
        goto err_srv;
    err = start_acceptors(srv);
    if (err < 0)
        goto err_srv;
    freeaddrinfo(list);
    *out = srv;
    return 0;
err_srv:
    srv_destroy(srv);
err_list:
    freeaddrinfo(list);
    return err;
}

int weft_start_server(const char *host, int port, weft_conn_fn cb, void *arg,
                      weft_server **out)
{
    return weft_start_server_ex(host, port, cb, arg, NULL, out);
}

int weft_server_port(const weft_server *srv)
{
    return srv ? srv->port : -EINVAL;
}

int weft_server_close(weft_server *srv)
{
    if (!srv)
        return -EINVAL;
    srv_lock(srv);
    if (!srv->closed) {
        srv->closed = true;
        /* Stop listening now; each acceptor wakes and closes its fd. */
        for (size_t i = 0; i < srv->n; i++)
            if (srv->ls[i].fd >= 0)
                (void)shutdown(srv->ls[i].fd, SHUT_RDWR);
        (void)weft_cond_notify_all(&srv->cond);
    }
    srv_unlock(srv);
    return 0;
}

/* Wait on srv->cond until done(srv). 0, or an interrupt. */
static int srv_wait(weft_server *srv, bool (*done)(const weft_server *))
{
    if (!srv)
        return -EINVAL;
    int rc = weft_lock_acquire(&srv->lock);
    if (rc < 0)
        return rc;
    while (!done(srv) && rc == 0)
        rc = weft_cond_wait(&srv->cond);
    srv_unlock(srv);
    return rc;
}

static bool is_closed(const weft_server *srv)
{
    return srv->closed;
}

static bool is_finished(const weft_server *srv)
{
    return srv->closed && srv->acceptors == 0 && srv->conns == 0;
}

int weft_server_serve_forever(weft_server *srv)
{
    return srv_wait(srv, is_closed);
}

int weft_server_wait_closed(weft_server *srv)
{
    return srv_wait(srv, is_finished);
}

void weft_server_free(weft_server *srv)
{
    if (!srv)
        return;
    (void)weft_server_close(srv);
    /* The acceptors end promptly once the sockets are shut down; one that
     * never ran (its runtime was freed) is done already and left its
     * socket open. */
    for (size_t i = 0; i < srv->n; i++) {
        int jrc = weft_join(srv->ls[i].task, NULL);
        (void)jrc;
        if (srv->ls[i].fd >= 0)
            (void)weft_fd_close(srv->ls[i].fd);
    }
    srv_lock(srv);
    srv->freed = true;
    bool last = srv->conns == 0;
    srv_unlock(srv);
    if (last)
        srv_destroy(srv);
}
