/* The hardware floors the mapshare figures are bounded by, measured in plain C on this
 * machine: copying 1 MiB into a shared ring (what a 1 MiB send costs at least), with
 * ordinary and with non-temporal stores, and a robust process-shared mutex lock+unlock
 * against a plain one.  Built and run by benchmarks/floors.py. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static void nt_copy(void *d, const void *s, size_t n)
{
    char *dd = d;
    const char *ss = s;
    for (size_t i = 0; i < n; i += 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(ss + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(ss + i + 32));
        _mm256_stream_si256((__m256i *)(dd + i), a);
        _mm256_stream_si256((__m256i *)(dd + i + 32), b);
    }
    _mm_sfence();
}
#endif

int main(void)
{
    size_t ring = 8u << 20, msg = 1u << 20;
    char name[64];
    snprintf(name, sizeof name, "/mapshare-floors-%d", (int)getpid());
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)ring) != 0)
        return 1;
    shm_unlink(name);
    char *r = mmap(NULL, ring, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *src = aligned_alloc(64, msg);
    if (r == MAP_FAILED || !src)
        return 1;
    memset(src, 1, msg);
    memset(r, 0, ring);
    int n = 2000;
    double t = now();
    for (int i = 0; i < n; i++)
        memcpy(r + (size_t)(i % 8) * msg, src, msg);
    double a = (now() - t) / n;
    printf("memcpy 1 MiB into an 8 MiB shared ring: %.1f us, %.1f GB/s\n", a * 1e6, msg / a / 1e9);
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) {
        t = now();
        for (int i = 0; i < n; i++)
            nt_copy(r + (size_t)(i % 8) * msg, src, msg);
        double b = (now() - t) / n;
        printf("non-temporal copy 1 MiB into the ring: %.1f us, %.1f GB/s\n", b * 1e6,
               msg / b / 1e9);
    }
#endif
    pthread_mutex_t *m = (pthread_mutex_t *)r;
    pthread_mutexattr_t at;
    pthread_mutexattr_init(&at);
    pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(m, &at);
    int k = 20000000;
    t = now();
    for (int i = 0; i < k; i++) {
        pthread_mutex_trylock(m);
        pthread_mutex_unlock(m);
    }
    printf("robust process-shared mutex trylock+unlock: %.1f ns\n", (now() - t) / k * 1e9);
    pthread_mutex_t plain;
    pthread_mutex_init(&plain, NULL);
    t = now();
    for (int i = 0; i < k; i++) {
        pthread_mutex_trylock(&plain);
        pthread_mutex_unlock(&plain);
    }
    printf("plain mutex trylock+unlock: %.1f ns\n", (now() - t) / k * 1e9);
    return 0;
}
