/* Atomic operations on shared memory, one spelling for every compiler.
 *
 * Algorithms use only these macros.  GCC/Clang (including mingw-w64) get the __atomic
 * builtins; MSVC, whose C11 atomics are experimental, gets Interlocked* calls, which on
 * x86-64 are full barriers (stronger than needed, never weaker).
 */
#ifndef MS_ATOMICS_H
#define MS_ATOMICS_H
#include <stdint.h>

#if defined(_MSC_VER) && !defined(__clang__)
#include <windows.h>
#include <intrin.h>
#define ms_load32(p)            ((uint32_t)InterlockedOr((volatile LONG *)(p), 0))
#define ms_load64(p)            ((uint64_t)InterlockedOr64((volatile LONG64 *)(p), 0))
#define ms_load_relaxed32(p)    (*(volatile uint32_t *)(p))
#define ms_load_relaxed64(p)    (*(volatile uint64_t *)(p))
#define ms_store32(p, v)        ((void)InterlockedExchange((volatile LONG *)(p), (LONG)(v)))
#define ms_store64(p, v)        ((void)InterlockedExchange64((volatile LONG64 *)(p), (LONG64)(v)))
#define ms_add32(p, v)          ((uint32_t)InterlockedExchangeAdd((volatile LONG *)(p), (LONG)(v)))
#define ms_add64(p, v)          ((uint64_t)InterlockedExchangeAdd64((volatile LONG64 *)(p), (LONG64)(v)))
#define ms_xchg32(p, v)         ((uint32_t)InterlockedExchange((volatile LONG *)(p), (LONG)(v)))
static __inline int ms_cas32(volatile uint32_t *p, uint32_t *expected, uint32_t desired) {
    LONG prev = InterlockedCompareExchange((volatile LONG *)p, (LONG)desired, (LONG)*expected);
    if ((uint32_t)prev == *expected) return 1;
    *expected = (uint32_t)prev; return 0;
}
static __inline int ms_cas64(volatile uint64_t *p, uint64_t *expected, uint64_t desired) {
    LONG64 prev = InterlockedCompareExchange64((volatile LONG64 *)p, (LONG64)desired, (LONG64)*expected);
    if ((uint64_t)prev == *expected) return 1;
    *expected = (uint64_t)prev; return 0;
}
#define ms_store_sc64(p, v)     ((void)InterlockedExchange64((volatile LONG64 *)(p), (LONG64)(v)))
#define ms_load_sc32(p)         ((uint32_t)InterlockedOr((volatile LONG *)(p), 0))
#define ms_fence()              MemoryBarrier()
#define ms_cpu_relax()          YieldProcessor()
#else
#define ms_load32(p)            __atomic_load_n((volatile uint32_t *)(p), __ATOMIC_ACQUIRE)
#define ms_load64(p)            __atomic_load_n((volatile uint64_t *)(p), __ATOMIC_ACQUIRE)
#define ms_load_relaxed32(p)    __atomic_load_n((volatile uint32_t *)(p), __ATOMIC_RELAXED)
#define ms_load_relaxed64(p)    __atomic_load_n((volatile uint64_t *)(p), __ATOMIC_RELAXED)
#define ms_store32(p, v)        __atomic_store_n((volatile uint32_t *)(p), (uint32_t)(v), __ATOMIC_RELEASE)
#define ms_store64(p, v)        __atomic_store_n((volatile uint64_t *)(p), (uint64_t)(v), __ATOMIC_RELEASE)
#define ms_add32(p, v)          __atomic_fetch_add((volatile uint32_t *)(p), (uint32_t)(v), __ATOMIC_SEQ_CST)
#define ms_add64(p, v)          __atomic_fetch_add((volatile uint64_t *)(p), (uint64_t)(v), __ATOMIC_SEQ_CST)
#define ms_xchg32(p, v)         __atomic_exchange_n((volatile uint32_t *)(p), (uint32_t)(v), __ATOMIC_SEQ_CST)
#define ms_cas32(p, e, d)       __atomic_compare_exchange_n((volatile uint32_t *)(p), (e), (d), 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)
#define ms_cas64(p, e, d)       __atomic_compare_exchange_n((volatile uint64_t *)(p), (e), (d), 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)
/* Sequentially consistent store and load: a publish (store) followed by a check of a
 * waiter count (load) must not be reordered, and these two are the cheapest pair that
 * guarantees it (an xchg and a plain load on x86-64), cheaper than store + mfence. */
#define ms_store_sc64(p, v)     __atomic_store_n((volatile uint64_t *)(p), (uint64_t)(v), __ATOMIC_SEQ_CST)
#define ms_load_sc32(p)         __atomic_load_n((volatile uint32_t *)(p), __ATOMIC_SEQ_CST)
#define ms_fence()              __atomic_thread_fence(__ATOMIC_SEQ_CST)
#if defined(__x86_64__) || defined(__i386__)
#define ms_cpu_relax()          __builtin_ia32_pause()
#elif defined(__aarch64__)
#define ms_cpu_relax()          __asm__ __volatile__("yield" ::: "memory")
#else
#define ms_cpu_relax()          __asm__ __volatile__("" ::: "memory")
#endif
#endif

#endif
