/* The thread-pool mode: N threads take jobs from one FIFO under one mutex,
 * and a joiner waits for a job's future on one condition variable. This is
 * the pool most programs write (and what Python's ThreadPoolExecutor is),
 * not a tuned one: one lock round trip per submit, per job and per join
 * that has to wait.
 *
 * Invariant: job->done goes from false to true once, under pool->lock,
 * after job->result is written. A joiner that sees it true (acquire load)
 * without the lock also sees the result.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "bench/bench.h"

struct bench_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;     /* signalled when a job is queued or on stop */
    pthread_cond_t finished; /* broadcast when a job completes */
    /* Under lock: */
    struct bench_job *head, *tail;
    unsigned idle;    /* threads waiting on work */
    unsigned joiners; /* joiners waiting on finished */
    bool stopping;
    /* Immutable after bench_pool_new: */
    unsigned nthreads;
    pthread_t threads[];
};

/* Caller holds pool->lock. */
static struct bench_job *dequeue(struct bench_pool *pool)
{
    struct bench_job *job = pool->head;
    if (job) {
        pool->head = job->next;
        if (!pool->head)
            pool->tail = NULL;
    }
    return job;
}

static void *pool_thread(void *arg)
{
    struct bench_pool *pool = arg;
    struct bench_job *done = NULL;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        if (done) {
            /* Release: the result before done; pairs with the acquire
             * load in bench_pool_join(). */
            __atomic_store_n(&done->done, true, __ATOMIC_RELEASE);
            if (pool->joiners)
                pthread_cond_broadcast(&pool->finished);
            done = NULL;
        }
        struct bench_job *job = dequeue(pool);
        if (!job && pool->stopping)
            break;
        if (!job) {
            pool->idle++;
            pthread_cond_wait(&pool->work, &pool->lock);
            pool->idle--;
            continue;
        }
        pthread_mutex_unlock(&pool->lock);
        job->result = job->fn(job->arg);
        done = job;
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

struct bench_pool *bench_pool_new(unsigned threads)
{
    struct bench_pool *pool =
        calloc(1, sizeof *pool + threads * sizeof(pthread_t));
    if (!pool) {
        bench_perror("bench_pool_new", -ENOMEM);
        return NULL;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work, NULL);
    pthread_cond_init(&pool->finished, NULL);
    for (unsigned i = 0; i < threads; i++) {
        int err = pthread_create(&pool->threads[i], NULL, pool_thread, pool);
        if (err) {
            bench_perror("pthread_create", -err);
            bench_pool_free(pool);
            return NULL;
        }
        pool->nthreads++;
    }
    return pool;
}

void bench_pool_submit(struct bench_pool *pool, struct bench_job *job)
{
    job->done = false;
    job->next = NULL;
    pthread_mutex_lock(&pool->lock);
    if (pool->tail)
        pool->tail->next = job;
    else
        pool->head = job;
    pool->tail = job;
    if (pool->idle)
        pthread_cond_signal(&pool->work);
    pthread_mutex_unlock(&pool->lock);
}

void *bench_pool_join(struct bench_pool *pool, struct bench_job *job)
{
    /* Acquire: pairs with the release store in pool_thread(). */
    if (__atomic_load_n(&job->done, __ATOMIC_ACQUIRE))
        return job->result;
    pthread_mutex_lock(&pool->lock);
    pool->joiners++;
    while (!job->done)
        pthread_cond_wait(&pool->finished, &pool->lock);
    pool->joiners--;
    pthread_mutex_unlock(&pool->lock);
    return job->result;
}

void bench_pool_free(struct bench_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_cond_destroy(&pool->finished);
    pthread_cond_destroy(&pool->work);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

int bench_pool_sum(unsigned threads, size_t n, void *(*fn)(void *),
                   void *(*arg_of)(size_t i, const void *ctx), const void *ctx,
                   uint64_t *sum)
{
    struct bench_job *jobs = calloc(n, sizeof *jobs);
    if (!jobs)
        return -ENOMEM;
    struct bench_pool *pool = bench_pool_new(threads);
    if (!pool) {
        free(jobs);
        return -EAGAIN;
    }
    for (size_t i = 0; i < n; i++) {
        jobs[i].fn = fn;
        jobs[i].arg = arg_of(i, ctx);
        bench_pool_submit(pool, &jobs[i]);
    }
    for (size_t i = 0; i < n; i++)
        *sum += (uintptr_t)bench_pool_join(pool, &jobs[i]);
    bench_pool_free(pool);
    free(jobs);
    return 0;
}
