/* Coroutine stacks: guard-paged, carved from large mappings, cached per
 * worker, and diagnosed when they overflow.
 *
 * Layout of one stack, low to high addresses:
 *   [guard page][usable memory ........................][descriptor]
 * The descriptor (struct weft__stack) sits at the very top of the usable
 * memory, so a stack needs no heap allocation and its top page stays
 * resident while the rest is released.
 *
 * Default-sized stacks are carved from regions of several megabytes, and a
 * guard is put below each with madvise(MADV_GUARD_INSTALL) (Linux 6.13+),
 * which does not split the mapping: 200k guarded stacks fit in one VMA.
 * Where the kernel answers EINVAL, guards fall back to mprotect(PROT_NONE),
 * which splits the mapping in two per stack; vm.max_map_count (65530 by
 * default) then bounds the number of stacks, so the fallback stops at
 * WEFT__MPROTECT_GUARDS_MAX and reports ENOMEM before the process runs out
 * of mappings (which would also break LeakSanitizer at exit).
 *
 * Default-sized stacks reserve twice the configured size: a task may use
 * its own size, and a join may run an unstarted child inline on the
 * joiner's stack while at least the child's size is left (worker.c). Only
 * touched pages cost memory (MAP_NORESERVE), so the reserve is address
 * space, not RAM.
 *
 * Reuse: a worker keeps released default-sized stacks in its own cache (no
 * lock, still warm in cache) up to pool->cache_limit bytes; beyond that a
 * stack goes to the runtime's shared free list with all but its top page
 * given back to the kernel (MADV_DONTNEED), so RSS falls after a burst.
 * Stacks of other sizes get a mapping each and are unmapped on release.
 * Regions are unmapped when the runtime is freed.
 *
 * Overflow: a SIGSEGV handler on an alternate signal stack checks whether
 * the fault hit the guard page of the task running on this worker; if so it
 * names the task and its stack size and aborts. Any other fault goes to the
 * handler that was installed before ours. The guard is one page: a single
 * frame larger than that could step over it into the stack below, which is
 * why weft builds with -fstack-clash-protection (and task code should too:
 * it makes such frames touch every page on the way down).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sched/alloc.h"
#include "sched/internal.h"

#ifdef WEFT_ASAN
#include <sanitizer/asan_interface.h>
#endif
#ifdef WEFT_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL                                                     \
    102 /* Linux 6.13 uapi; Debian 12's headers lack it */
#endif

#define WEFT__REGION_BYTES        (8u << 20)
#define WEFT__MPROTECT_GUARDS_MAX 24000u
#define WEFT__DESC_BYTES          64u /* descriptor slot at the top */
#define WEFT__ALTSTACK_BYTES      (64u * 1024)

struct weft__region {
    struct weft__region *next;
    char *base;
    size_t len;
};

static size_t guard_bytes; /* one page; set once by install_handler */

/* Tests set this to run the mprotect fallback on kernels that have
 * MADV_GUARD_INSTALL. Read when a pool is made. */
bool weft__stack_test_mprotect_guards;

int weft__stack_pool_init(struct weft__stack_pool *p, size_t size,
                          size_t cache_limit)
{
    memset(p, 0, sizeof(*p));
    p->page = (size_t)sysconf(_SC_PAGESIZE);
    p->madv_guard_failed = weft__stack_test_mprotect_guards;
    p->task_size = (size + p->page - 1) & ~(p->page - 1);
    p->size = 2 * p->task_size;
    p->cache_limit = cache_limit;
    return -pthread_mutex_init(&p->lock, NULL);
}

static void tsan_fiber_new(struct weft__stack *st)
{
#ifdef WEFT_TSAN
    st->tsan_fiber = __tsan_create_fiber(0);
#else
    st->tsan_fiber = NULL;
#endif
}

/* TSan counts fibers as threads and stops the process past about 8k, so
 * only stacks in use or in a worker's cache keep one: a stack handed back
 * to the shared pool drops its fiber and gets a new one when reused. */
static void tsan_fiber_free(struct weft__stack *st)
{
#ifdef WEFT_TSAN
    if (st->tsan_fiber)
        __tsan_destroy_fiber(st->tsan_fiber);
#endif
    st->tsan_fiber = NULL;
}

static struct weft__stack *describe(char *lo, size_t size, bool pooled)
{
    struct weft__stack *st =
        (struct weft__stack *)(lo + size - WEFT__DESC_BYTES);
    st->next = NULL;
    st->lo = lo;
    st->size = size;
    st->pooled = pooled;
    tsan_fiber_new(st);
    return st;
}

/* Put a guard on [at, at + page). Caller holds p->lock. */
static int guard_install(struct weft__stack_pool *p, char *at)
{
    if (!p->madv_guard_failed) {
        if (madvise(at, p->page, MADV_GUARD_INSTALL) == 0)
            return 0;
        if (errno != EINVAL)
            return -errno;
        p->madv_guard_failed = true;
    }
    if (p->mprotect_guards >= WEFT__MPROTECT_GUARDS_MAX)
        return -ENOMEM;
    if (mprotect(at, p->page, PROT_NONE) < 0)
        return -errno;
    p->mprotect_guards++;
    return 0;
}

/* Carve a new pooled stack. Caller holds p->lock. A region's first page
 * holds its descriptor, so carving never touches the heap: stacks come from
 * mmap alone, and a heap that is out of memory cannot stop a task from
 * starting. */
static struct weft__stack *carve(struct weft__stack_pool *p)
{
    size_t slot = p->page + p->size;
    if ((size_t)(p->carve_end - p->carve) < slot) {
        size_t len = p->page + slot * (WEFT__REGION_BYTES / slot + 1);
        char *base = mmap(NULL, len, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED)
            return NULL;
        struct weft__region *r = (struct weft__region *)base;
        r->base = base;
        r->len = len;
        r->next = p->regions;
        p->regions = r;
        p->carve = base + p->page;
        p->carve_end = base + len;
    }
    int err = guard_install(p, p->carve);
    if (err < 0) {
        errno = -err;
        return NULL;
    }
    char *lo = p->carve + p->page;
    p->carve += slot;
    return describe(lo, p->size, true);
}

static struct weft__stack *map_one(struct weft__stack_pool *p, size_t size)
{
    /* One page more than asked: the descriptor and the first frame live at
     * the top, and the task is promised all of `size` below them. */
    size = ((size + p->page - 1) & ~(p->page - 1)) + p->page;
    char *base = mmap(NULL, p->page + size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    pthread_mutex_lock(&p->lock);
    int err = guard_install(p, base);
    pthread_mutex_unlock(&p->lock);
    if (err < 0) {
        munmap(base, p->page + size);
        errno = -err;
        return NULL;
    }
    return describe(base + p->page, size, false);
}

static void unmap_one(struct weft__stack_pool *p, struct weft__stack *st)
{
    tsan_fiber_free(st);
    pthread_mutex_lock(&p->lock);
    if (p->madv_guard_failed && p->mprotect_guards > 0)
        p->mprotect_guards--;
    pthread_mutex_unlock(&p->lock);
    munmap(st->lo - p->page, p->page + st->size);
}

struct weft__stack *weft__stack_acquire(struct weft__stack_pool *p,
                                        struct weft__stack_cache *c,
                                        size_t size)
{
    struct weft__stack *st;
    if (size != p->task_size) {
        st = map_one(p, size);
    } else if (c->head) {
        st = c->head;
        c->head = st->next;
        c->bytes -= st->size;
    } else {
        pthread_mutex_lock(&p->lock);
        st = p->free;
        if (st) {
            p->free = st->next;
            tsan_fiber_new(st);
        } else {
            st = carve(p);
        }
        pthread_mutex_unlock(&p->lock);
    }
#ifdef WEFT_ASAN
    /* The previous task on this stack ended without unwinding its frames;
     * their redzones must not poison the new task's frames. */
    if (st)
        ASAN_UNPOISON_MEMORY_REGION(st->lo, st->size - WEFT__DESC_BYTES);
#endif
    return st;
}

void weft__stack_release(struct weft__stack_pool *p,
                         struct weft__stack_cache *c, struct weft__stack *st)
{
    if (!st->pooled) {
        unmap_one(p, st);
        return;
    }
    if (c && c->bytes + st->size <= p->cache_limit) {
        st->next = c->head;
        c->head = st;
        c->bytes += st->size;
        return;
    }
    /* Give back everything below the top page, which holds st itself. */
    madvise(st->lo, st->size - p->page, MADV_DONTNEED);
    tsan_fiber_free(st);
    pthread_mutex_lock(&p->lock);
    st->next = p->free;
    p->free = st;
    pthread_mutex_unlock(&p->lock);
}

void weft__stack_cache_drain(struct weft__stack_pool *p,
                             struct weft__stack_cache *c)
{
    while (c->head) {
        struct weft__stack *st = c->head;
        c->head = st->next;
        c->bytes -= st->size;
        weft__stack_release(p, NULL, st);
    }
}

void weft__stack_pool_destroy(struct weft__stack_pool *p)
{
    size_t slot = p->page + p->size;
    while (p->regions) {
        struct weft__region *r = p->regions;
        p->regions = r->next;
        /* Every carved slot has a descriptor; the rest of the newest
         * region was never carved. */
        char *first = r->base + p->page;
        char *end = (r->base <= p->carve && p->carve <= r->base + r->len)
                        ? p->carve
                        : r->base + r->len;
        for (char *s = first; s + slot <= end; s += slot)
            tsan_fiber_free(
                (struct weft__stack *)(s + slot - WEFT__DESC_BYTES));
        munmap(r->base, r->len);
    }
    pthread_mutex_destroy(&p->lock);
}

/* --------------------------------------------------------------------------
 * Overflow diagnosis
 */

static struct sigaction prev_segv, prev_bus;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;

/* Async-signal-safe formatting: append s, then a decimal number. */
static char *put_str(char *at, char *end, const char *s)
{
    while (*s && at < end)
        *at++ = *s++;
    return at;
}

static char *put_u64(char *at, char *end, uint64_t v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n > 0 && at < end)
        *at++ = digits[--n];
    return at;
}

/* The task's name, if its shard's lock can be had right now: another
 * thread may be renaming it (weft_task_set_name frees the old name), and a
 * signal handler must not wait for a lock this thread might hold. */
static const char *name_if_safe(const weft_task *t, struct weft__shard **held)
{
    struct weft__shard *s = &t->rt->shards[t->shard];
    *held = NULL;
    if (!weft__spin_trylock(&s->lock))
        return NULL;
    *held = s;
    return t->name;
}

static void report_overflow(const weft_task *t)
{
    /* The size the task was promised (its own, or the runtime's default),
     * not the reserve behind it: that is the figure a user can change. */
    uint64_t size = weft__task_stack_size(t);
    char msg[512];
    char *at = msg, *end = msg + sizeof(msg);
    at = put_str(at, end, "weft: stack overflow in task ");
    at = put_u64(at, end, t->id);
    struct weft__shard *held;
    const char *name = name_if_safe(t, &held);
    if (name) {
        at = put_str(at, end, " \"");
        at = put_str(at, end, name);
        at = put_str(at, end, "\"");
    }
    if (held)
        weft__spin_unlock(&held->lock);
    at = put_str(at, end, ": it used all of its stack of ");
    at = put_u64(at, end, size / 1024);
    at = put_str(at, end, " KiB (");
    at = put_u64(at, end, size);
    at = put_str(at, end,
                 " bytes). Give it more with weft_task_opts.stack_size "
                 "(weft_spawn_ex), or weft_config.stack_size for every "
                 "task.\n");
    ssize_t unused = write(STDERR_FILENO, msg, (size_t)(at - msg));
    (void)unused;
}

/* Not a guard page of ours: deliver the signal as the kernel would have
 * to the handler installed before ours, which stays installed for the next
 * overflow. */
static void chain(int sig, siginfo_t *si, void *uctx)
{
    const struct sigaction *prev = sig == SIGSEGV ? &prev_segv : &prev_bus;
    bool sent = si->si_code <= 0; /* by kill or raise, not a fault */
    if (prev->sa_handler == SIG_IGN && sent)
        return;
    if (prev->sa_handler == SIG_DFL || prev->sa_handler == SIG_IGN) {
        /* The default action cannot be called: restore it. A fault then
         * happens again on return and gets it (the kernel does not let a
         * fault be ignored); a sent signal is sent again, and arrives when
         * this handler returns. */
        signal(sig, SIG_DFL);
        if (sent)
            raise(sig);
        return;
    }
    if (prev->sa_flags & SA_RESETHAND)
        signal(sig, SIG_DFL); /* one-shot, as the kernel would have made it */
    sigset_t old;
    pthread_sigmask(SIG_BLOCK, &prev->sa_mask, &old);
    if (prev->sa_flags & SA_SIGINFO)
        prev->sa_sigaction(sig, si, uctx);
    else
        prev->sa_handler(sig);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void on_fault(int sig, siginfo_t *si, void *uctx)
{
    struct weft__worker *w = weft__tls_worker;
    const weft_task *t = w ? w->current : NULL;
    const char *addr = si->si_addr;
    if (t && t->stack && addr < t->stack->lo &&
        addr >= t->stack->lo - guard_bytes) {
        report_overflow(t);
        abort();
    }
    chain(sig, si, uctx);
}

static void install_handler(void)
{
    guard_bytes = (size_t)sysconf(_SC_PAGESIZE);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &prev_segv);
    sigaction(SIGBUS, &sa, &prev_bus);
}

void *weft__stack_altstack_new(void)
{
    pthread_once(&handler_once, install_handler);
    void *mem = mmap(NULL, WEFT__ALTSTACK_BYTES, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return NULL;
    stack_t ss = {.ss_sp = mem, .ss_size = WEFT__ALTSTACK_BYTES};
    if (sigaltstack(&ss, NULL) < 0) {
        int err = errno;
        munmap(mem, WEFT__ALTSTACK_BYTES);
        errno = err;
        return NULL;
    }
    return mem;
}

void weft__stack_altstack_free(void *alt)
{
    if (!alt)
        return;
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    munmap(alt, WEFT__ALTSTACK_BYTES);
}
