/* The one way weft code touches shared memory atomically.
 *
 * Every name carries its memory order (rlx, acq, rel, seq), so a reader sees
 * at the call what is ordered. Normal builds map to Concurrency Kit's ck_pr;
 * the TSan build (WEFT_TSAN) maps to the compiler's __atomic builtins, the
 * same operations <stdatomic.h> expands to, because Debian's CK 0.7.1
 * implements ck_pr with inline assembly that TSan cannot see and would
 * report every task hand-off between workers as a race.
 *
 * Suffixes name the width: _ptr (void *), _u64, _u32. Read-modify-write
 * operations are sequentially consistent: on x86-64 every locked
 * instruction is a full barrier anyway, and ck_pr offers nothing weaker.
 */
#ifndef WEFT_SCHED_ATOMIC_H
#define WEFT_SCHED_ATOMIC_H

#include <stdbool.h>
#include <stdint.h>

#ifdef WEFT_TSAN

#define WEFT__LD(p, o)    __atomic_load_n((p), (o))
#define WEFT__ST(p, v, o) __atomic_store_n((p), (v), (o))

#define weft__load_rlx_ptr(p) WEFT__LD((void **)(p), __ATOMIC_RELAXED)
#define weft__load_acq_ptr(p) WEFT__LD((void **)(p), __ATOMIC_ACQUIRE)
#define weft__store_rlx_ptr(p, v)                                              \
    WEFT__ST((void **)(p), (void *)(v), __ATOMIC_RELAXED)
#define weft__store_rel_ptr(p, v)                                              \
    WEFT__ST((void **)(p), (void *)(v), __ATOMIC_RELEASE)
#define weft__load_rlx_u64(p)     WEFT__LD((p), __ATOMIC_RELAXED)
#define weft__load_acq_u64(p)     WEFT__LD((p), __ATOMIC_ACQUIRE)
#define weft__store_rlx_u64(p, v) WEFT__ST((p), (v), __ATOMIC_RELAXED)
#define weft__store_rel_u64(p, v) WEFT__ST((p), (v), __ATOMIC_RELEASE)
#define weft__load_rlx_u32(p)     WEFT__LD((p), __ATOMIC_RELAXED)
#define weft__load_acq_u32(p)     WEFT__LD((p), __ATOMIC_ACQUIRE)
#define weft__store_rlx_u32(p, v) WEFT__ST((p), (v), __ATOMIC_RELAXED)
#define weft__store_rel_u32(p, v) WEFT__ST((p), (v), __ATOMIC_RELEASE)

static inline bool weft__cas_seq_ptr(void *p, void *old, void *new_)
{
    return __atomic_compare_exchange_n((void **)p, &old, new_, false,
                                       __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline bool weft__cas_seq_u64(uint64_t *p, uint64_t old, uint64_t new_)
{
    return __atomic_compare_exchange_n(p, &old, new_, false, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
}
static inline bool weft__cas_seq_u32(uint32_t *p, uint32_t old, uint32_t new_)
{
    return __atomic_compare_exchange_n(p, &old, new_, false, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
}
#define weft__xchg_seq_ptr(p, v)                                               \
    __atomic_exchange_n((void **)(p), (void *)(v), __ATOMIC_SEQ_CST)
#define weft__xchg_seq_u32(p, v) __atomic_exchange_n((p), (v), __ATOMIC_SEQ_CST)
#define weft__faa_seq_u64(p, v)  __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define weft__faa_seq_u32(p, v)  __atomic_fetch_add((p), (v), __ATOMIC_SEQ_CST)
#define weft__or_seq_u32(p, v)                                                 \
    ((void)__atomic_fetch_or((p), (v), __ATOMIC_SEQ_CST))
static inline bool weft__cas_seq_ptr_val(void *p, void *old, void *new_,
                                         void *seen)
{
    *(void **)seen = old;
    return __atomic_compare_exchange_n((void **)p, (void **)seen, new_, false,
                                       __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
/* TSan does not model standalone fences (GCC refuses them under
 * -fsanitize=thread). Every fence becomes a sequentially consistent RMW on
 * one shared word instead: those RMWs are totally ordered and synchronize
 * with each other, which is at least as strong as the fences they stand
 * for, so TSan sees every ordering the code relies on. It may see more
 * (and so miss a race that needs a fence to be weaker), never less. */
extern uint64_t weft__tsan_fence_word;
#define weft__fence_seq()                                                      \
    ((void)__atomic_fetch_add(&weft__tsan_fence_word, 0, __ATOMIC_SEQ_CST))
#define weft__cpu_relax() __builtin_ia32_pause()

#else /* ck_pr */

#include <ck_pr.h>

/* On TSO targets ck_pr_fence_acquire/release are compiler barriers only;
 * elsewhere they are the fences the orders need. */
#define weft__load_rlx_ptr(p) ck_pr_load_ptr(p)
#define weft__load_acq_ptr(p)                                                  \
    __extension__({                                                            \
        void *v_ = ck_pr_load_ptr(p);                                          \
        ck_pr_fence_acquire();                                                 \
        v_;                                                                    \
    })
#define weft__store_rlx_ptr(p, v) ck_pr_store_ptr((p), (v))
#define weft__store_rel_ptr(p, v)                                              \
    do {                                                                       \
        ck_pr_fence_release();                                                 \
        ck_pr_store_ptr((p), (v));                                             \
    } while (0)
#define weft__load_rlx_u64(p) ck_pr_load_64(p)
#define weft__load_acq_u64(p)                                                  \
    __extension__({                                                            \
        uint64_t v_ = ck_pr_load_64(p);                                        \
        ck_pr_fence_acquire();                                                 \
        v_;                                                                    \
    })
#define weft__store_rlx_u64(p, v) ck_pr_store_64((p), (v))
#define weft__store_rel_u64(p, v)                                              \
    do {                                                                       \
        ck_pr_fence_release();                                                 \
        ck_pr_store_64((p), (v));                                              \
    } while (0)
#define weft__load_rlx_u32(p) ck_pr_load_32(p)
#define weft__load_acq_u32(p)                                                  \
    __extension__({                                                            \
        uint32_t v_ = ck_pr_load_32(p);                                        \
        ck_pr_fence_acquire();                                                 \
        v_;                                                                    \
    })
#define weft__store_rlx_u32(p, v) ck_pr_store_32((p), (v))
#define weft__store_rel_u32(p, v)                                              \
    do {                                                                       \
        ck_pr_fence_release();                                                 \
        ck_pr_store_32((p), (v));                                              \
    } while (0)

#define weft__cas_seq_ptr(p, o, n) ck_pr_cas_ptr((p), (o), (n))
#define weft__cas_seq_u64(p, o, n) ck_pr_cas_64((p), (o), (n))
#define weft__cas_seq_u32(p, o, n) ck_pr_cas_32((p), (o), (n))
#define weft__xchg_seq_ptr(p, v)   ck_pr_fas_ptr((p), (v))
#define weft__xchg_seq_u32(p, v)   ck_pr_fas_32((p), (v))
#define weft__faa_seq_u64(p, v)    ck_pr_faa_64((p), (v))
#define weft__faa_seq_u32(p, v)    ck_pr_faa_32((p), (v))
#define weft__or_seq_u32(p, v)     ck_pr_or_32((p), (v))
/* CAS that stores the value it found in *seen (when it fails). */
#define weft__cas_seq_ptr_val(p, o, n, seen)                                   \
    ck_pr_cas_ptr_value((p), (o), (n), (seen))
/* A locked no-op on the stack is a full barrier for ordinary memory and
 * costs less than mfence (Linux's smp_mb() on x86-64 does the same);
 * elsewhere, CK's full fence. */
#if defined(__x86_64__)
#define weft__fence_seq()                                                      \
    __asm__ __volatile__("lock; orq $0, (%%rsp)" ::: "memory", "cc")
#else
#define weft__fence_seq() ck_pr_fence_memory()
#endif
#define weft__cpu_relax() ck_pr_stall()

#endif

/* A spinlock for critical sections of a few pointer writes. CK's
 * test-and-set lock normally; under TSan glibc's pthread spinlock, which
 * TSan intercepts and so understands as a lock. */
#ifdef WEFT_TSAN
#include <pthread.h>
typedef pthread_spinlock_t weft__spinlock;
#define weft__spin_init(l)    pthread_spin_init((l), PTHREAD_PROCESS_PRIVATE)
#define weft__spin_lock(l)    pthread_spin_lock(l)
#define weft__spin_trylock(l) (pthread_spin_trylock(l) == 0)
#define weft__spin_unlock(l)  pthread_spin_unlock(l)
#else
#include <ck_spinlock.h>
typedef ck_spinlock_fas_t weft__spinlock;
#define weft__spin_init(l)    ck_spinlock_fas_init(l)
#define weft__spin_lock(l)    ck_spinlock_fas_lock(l)
#define weft__spin_trylock(l) ck_spinlock_fas_trylock(l)
#define weft__spin_unlock(l)  ck_spinlock_fas_unlock(l)
#endif

/* A counter written by one thread and read by others: a relaxed increment
 * (load + store, no locked instruction) is enough because only its owner
 * writes it; readers accept a slightly old value. */
#define weft__count(p, n) weft__store_rlx_u64((p), weft__load_rlx_u64(p) + (n))
/* The same, publishing what the owner did before it (a release store). */
#define weft__count_rel(p, n)                                                  \
    weft__store_rel_u64((p), weft__load_rlx_u64(p) + (n))

#endif /* WEFT_SCHED_ATOMIC_H */
