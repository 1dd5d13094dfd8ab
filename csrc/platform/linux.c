/* Linux backend: POSIX shared memory (shm_open on /dev/shm), regular files, mmap,
 * futex wait/wake on shared mappings, process-shared robust pthread mutexes (the
 * kernel's robust futex list), SIGBUS guarding with sigsetjmp.
 */
#define _GNU_SOURCE
#include "platform.h"
#include "../atomics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ---- objects --------------------------------------------------------------------- */

static ms_status errno_status(int e, int *err)
{
    if (err) *err = e;
    switch (e) {
    case ENOENT: return MS_E_NOT_FOUND;
    case EEXIST: return MS_E_EXISTS;
    case EACCES: case EPERM: case ELOOP: case EROFS: return MS_E_PERMISSION;
    case ENOSPC: case EDQUOT: case EFBIG: return MS_E_NO_SPACE;
    case EINVAL: case ENAMETOOLONG: return MS_E_INVALID;
    default: return MS_E_OS;
    }
}

ms_status ms_p_object_create(const char *osname, const char *path, uint64_t size,
                             unsigned mode, unsigned flags, ms_object *out, int *err)
{
    int fd;
    (void)flags;  /* O_EXCL never follows a symlink, so MS_OBJ_FOLLOW_SYMLINKS changes nothing here */
    out->handle = out->file = MS_NO_HANDLE;
    out->size = 0;
    out->writable = 1;
    if (path)
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, (mode_t)mode);
    else
        fd = shm_open(osname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return errno_status(errno, err);

    /* The umask may have narrowed the mode; the caller asked for exactly `mode`. */
    int rc = fchmod(fd, (mode_t)mode);
    if (rc == 0 && ftruncate(fd, (off_t)size) != 0)
        rc = -1;
    if (rc == 0 && !(flags & MS_OBJ_RESERVE_LATER)) {
        /* Reserve every page now: on tmpfs and most filesystems this allocates blocks,
         * so ENOSPC is reported here instead of SIGBUS at first touch. */
        int e = posix_fallocate(fd, 0, (off_t)size);
        if (e != 0 && e != EOPNOTSUPP && e != EINVAL) {
            errno = e;
            rc = -1;
        }
    }
    if (rc != 0) {
        int e = errno;
        close(fd);
        if (path) unlink(path); else shm_unlink(osname);
        return errno_status(e, err);
    }
    out->handle = fd;
    out->size = size;
    return MS_OK;
}

ms_status ms_p_object_open(const char *osname, const char *path, int writable,
                           unsigned flags, ms_object *out, int *err)
{
    int fd;
    int oflags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
    struct stat st;
    out->handle = out->file = MS_NO_HANDLE;
    out->size = 0;
    out->writable = writable;
    if (path) {
        if (!(flags & MS_OBJ_FOLLOW_SYMLINKS))
            oflags |= O_NOFOLLOW;
        fd = open(path, oflags);
    } else {
        fd = shm_open(osname, oflags, 0);
    }
    if (fd < 0)
        return errno_status(errno, err);
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return errno_status(e, err);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        if (err) *err = EINVAL;
        return MS_E_PERMISSION;
    }
    out->handle = fd;
    out->size = (uint64_t)st.st_size;
    return MS_OK;
}

void ms_p_object_close(ms_object *obj)
{
    if (obj->handle != MS_NO_HANDLE)
        close((int)obj->handle);
    obj->handle = MS_NO_HANDLE;
}

ms_status ms_p_object_unlink(const char *osname, unsigned flags, int *err)
{
    (void)flags;
    if (shm_unlink(osname) != 0)
        return errno_status(errno, err);
    return MS_OK;
}

ms_status ms_p_object_list(unsigned flags, ms_list_fn fn, void *arg, int *err)
{
    DIR *dir;
    struct dirent *e;
    char name[NAME_MAX + 2];
    (void)flags;
    dir = opendir("/dev/shm");
    if (!dir)
        return errno_status(errno, err);
    while ((e = readdir(dir)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n <= 9 || strncmp(e->d_name, "mapshare.", 9) != 0 || n > NAME_MAX)
            continue;
        name[0] = '/';
        memcpy(name + 1, e->d_name, n + 1);
        if (fn(name, arg))
            break;
    }
    closedir(dir);
    return MS_OK;
}

ms_status ms_p_object_stat(const ms_object *obj, ms_object_stat *out, int *err)
{
    struct stat st;
    if (fstat((int)obj->handle, &st) != 0)
        return errno_status(errno, err);
    out->size = (uint64_t)st.st_size;
    out->uid = (uint32_t)st.st_uid;
    out->mode = (uint32_t)(st.st_mode & 07777);
    out->dev = (uint64_t)st.st_dev;
    out->ino = (uint64_t)st.st_ino;
    out->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    return MS_OK;
}

ms_status ms_p_object_reserve(const ms_object *obj, uint64_t offset, uint64_t length,
                              int *err)
{
    if (length == 0)
        return MS_OK;
    int e = posix_fallocate((int)obj->handle, (off_t)offset, (off_t)length);
    if (e != 0 && e != EOPNOTSUPP && e != EINVAL)
        return errno_status(e, err);
    return MS_OK;
}

/* ---- plain files (platform.h) --------------------------------------------------------- */

ms_status ms_p_file_allocate(int fd, uint64_t size, int *err)
{
    int e = posix_fallocate(fd, 0, (off_t)size);
    if (e == EOPNOTSUPP || e == EINVAL)   /* a file system without it (rare): best effort */
        e = ftruncate(fd, (off_t)size) == 0 ? 0 : errno;
    return e ? errno_status(e, err) : MS_OK;
}

ms_status ms_p_file_lock(int fd, int exclusive, int *err)
{
    while (flock(fd, exclusive ? LOCK_EX : LOCK_UN) != 0)
        if (errno != EINTR)
            return errno_status(errno, err);
    return MS_OK;
}

ms_status ms_p_path_restrict(const char *path, unsigned mode, int *err)
{
    if (chmod(path, (mode_t)mode) != 0)
        return errno_status(errno, err);
    return MS_OK;
}

ms_status ms_p_object_truncate(ms_object *obj, uint64_t size, int *err)
{
    if (ftruncate((int)obj->handle, (off_t)size) != 0)
        return errno_status(errno, err);
    obj->size = size;
    return MS_OK;
}

/* ---- openers ---------------------------------------------------------------------- */

/* The opener count is a flock(LOCK_SH) on the handle's own open file description.  A lock
 * lives as long as its description, which every mapping made from it also keeps alive:
 * a forked child therefore moves its inherited handles, mappings included, to
 * descriptions of its own. */

ms_status ms_p_object_share(ms_object *obj, int *err)
{
    while (flock((int)obj->handle, LOCK_SH | LOCK_NB) != 0) {
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK)
            return MS_E_IN_USE;
        return errno_status(errno, err);
    }
    return MS_OK;
}

void ms_p_object_unshare(ms_object *obj)
{
    flock((int)obj->handle, LOCK_UN);
}

int ms_p_object_others(ms_object *obj)
{
    /* A failed conversion drops a shared lock this description held (Linux, BSD):
     * callers ask only with a handle that is leaving or never counted. */
    return flock((int)obj->handle, LOCK_EX | LOCK_NB) == 0 ? 0 : 1;
}

ms_status ms_p_object_after_fork(ms_object *obj, int *err)
{
    /* A description of our own for the same file (through /proc: the same inode by
     * construction), under the same descriptor number. */
    char path[64];
    int fd = (int)obj->handle;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int nfd = open(path, (obj->writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (nfd < 0)
        return errno_status(errno, err);
    if (dup3(nfd, fd, O_CLOEXEC) < 0) {
        int e = errno;
        close(nfd);
        return errno_status(e, err);
    }
    close(nfd);
    return MS_OK;
}

ms_status ms_p_remap(const ms_object *obj, void *addr, uint64_t offset, size_t length,
                     int access, int *err)
{
    int prot = access == MS_ACCESS_READ ? PROT_READ : PROT_READ | PROT_WRITE;
    if (access == MS_ACCESS_COPY)
        return MS_OK;  /* private pages would be lost: keep the inherited mapping */
    void *p = mmap(addr, length, prot, MAP_SHARED | MAP_FIXED, (int)obj->handle,
                   (off_t)offset);
    if (p == MAP_FAILED)
        return errno_status(errno, err);
    return MS_OK;
}

ms_status ms_p_object_openers(const ms_object *obj, uint32_t *pids, unsigned max,
                              unsigned *n, int *err)
{
    struct stat st;
    char line[256];
    *n = 0;
    if (fstat((int)obj->handle, &st) != 0)
        return errno_status(errno, err);
    FILE *f = fopen("/proc/locks", "re");
    if (!f)
        return errno_status(errno, err);
    /* "1: FLOCK  ADVISORY  READ  1234 00:1a:5678 0 EOF"; "1: -> FLOCK ..." is a waiter */
    while (fgets(line, sizeof line, f)) {
        char type[16], adv[16], rw[16];
        unsigned pid, maj, min;
        unsigned long long ino;
        if (sscanf(line, "%*[^:]: %15s %15s %15s %u %x:%x:%llu", type, adv, rw, &pid, &maj,
                   &min, &ino) != 7)
            continue;
        if (strcmp(type, "FLOCK") != 0 || strcmp(rw, "READ") != 0 ||
            ino != (unsigned long long)st.st_ino || maj != major(st.st_dev) ||
            min != minor(st.st_dev))
            continue;
        if (*n < max)
            pids[*n] = pid;
        (*n)++;
    }
    fclose(f);
    return MS_OK;
}

/* ---- mappings -------------------------------------------------------------------- */

ms_status ms_p_map(const ms_object *obj, uint64_t offset, size_t length, int access,
                   void **addr, int *err)
{
    int prot, mflags;
    void *p;
    switch (access) {
    case MS_ACCESS_READ:  prot = PROT_READ; mflags = MAP_SHARED; break;
    case MS_ACCESS_WRITE: prot = PROT_READ | PROT_WRITE; mflags = MAP_SHARED; break;
    case MS_ACCESS_COPY:  prot = PROT_READ | PROT_WRITE; mflags = MAP_PRIVATE; break;
    default: if (err) *err = EINVAL; return MS_E_INVALID;
    }
    if (length == 0) {
        if (err) *err = EINVAL;
        return MS_E_INVALID;
    }
    p = mmap(NULL, length, prot, mflags, (int)obj->handle, (off_t)offset);
    if (p == MAP_FAILED)
        return errno_status(errno, err);
    *addr = p;
    return MS_OK;
}

void ms_p_unmap(void *addr, size_t length)
{
    if (addr && length)
        munmap(addr, length);
}

ms_status ms_p_flush(const ms_object *obj, void *addr, size_t length, int durable, int *err)
{
    size_t page = ms_p_page_size();
    uintptr_t start = (uintptr_t)addr & ~(uintptr_t)(page - 1);
    size_t len = length + ((uintptr_t)addr - start);
    if (len && msync((void *)start, len, MS_SYNC) != 0)
        return errno_status(errno, err);
    if (durable && obj && obj->handle != MS_NO_HANDLE && fsync((int)obj->handle) != 0)
        return errno_status(errno, err);
    return MS_OK;
}

size_t ms_p_page_size(void)
{
    static size_t page;
    if (!page)
        page = (size_t)sysconf(_SC_PAGESIZE);
    return page;
}

size_t ms_p_granularity(void) { return ms_p_page_size(); }

const char *ms_p_name(void) { return "linux"; }

int ms_p_err_is_winerror(void) { return 0; }

/* ---- processes and clocks ---------------------------------------------------------- */

uint32_t ms_p_pid(void) { return (uint32_t)getpid(); }
uint32_t ms_p_uid(void) { return (uint32_t)geteuid(); }

/* Read /proc/<pid>/stat once: the start time (field 22, clock ticks since boot) and the
 * state letter (field 3).  Returns 0 if the process does not exist. */
static uint64_t read_proc_stat(uint32_t pid, char *state)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%u/stat", (unsigned)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    /* The command name (field 2) may contain spaces and parentheses: fields are
     * counted from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    while (*p == ' ') p++;
    if (state)
        *state = *p;
    for (int field = 3; field < 22 && *p; field++) {
        while (*p && *p != ' ') p++;
        while (*p == ' ') p++;
    }
    uint64_t start = strtoull(p, NULL, 10);
    /* A start of 0 is possible only for pid 1 at boot; keep 0 as "unknown". */
    return start ? start : 1;
}

uint64_t ms_p_process_start(uint32_t pid)
{
    return read_proc_stat(pid, NULL);
}

int ms_p_process_alive(uint32_t pid, uint64_t start)
{
    if (pid == 0)
        return 0;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return 0;
    char state = 0;
    uint64_t now = read_proc_stat(pid, &state);
    if (now == 0)
        return kill((pid_t)pid, 0) == 0 || errno == EPERM ? -1 : 0;
    if (start && now != start)
        return 0;  /* the pid was reused by another process */
    /* A zombie has not released its resources to us in any useful way: it is dead. */
    if (state == 'Z' || state == 'X')
        return 0;
    return 1;
}

uint64_t ms_p_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void ms_p_yield(void) { sched_yield(); }

uint64_t ms_p_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- waiting and waking ------------------------------------------------------------ */

struct ms_waitctx { int unused; };
static struct ms_waitctx linux_waitctx;

ms_status ms_p_waitctx_open(const char *osname, unsigned flags, ms_waitctx **out, int *err)
{
    (void)osname; (void)flags; (void)err;
    *out = &linux_waitctx;  /* futexes need no per-segment state */
    return MS_OK;
}

void ms_p_waitctx_close(ms_waitctx *ctx) { (void)ctx; }

ms_status ms_p_wait32(ms_waitctx *ctx, unsigned slot, volatile uint32_t *word,
                      uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    (void)ctx; (void)slot;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000LL);
        ts.tv_nsec = (long)(timeout_ns % 1000000000LL);
        tsp = &ts;
    }
    /* Not FUTEX_PRIVATE_FLAG: the word lives in a mapping shared between processes. */
    long rc = syscall(SYS_futex, word, FUTEX_WAIT, expected, tsp, NULL, 0);
    if (rc == 0)
        return MS_OK;
    switch (errno) {
    case EAGAIN: return MS_OK;  /* the value had already changed */
    case ETIMEDOUT: return MS_E_TIMEOUT;
    case EINTR: return MS_E_INTERRUPTED;
    default: return MS_E_OS;
    }
}

int ms_p_wake32(ms_waitctx *ctx, unsigned slot, volatile uint32_t *word, int all)
{
    (void)ctx; (void)slot;
    long n = syscall(SYS_futex, word, FUTEX_WAKE, all ? INT_MAX : 1, NULL, NULL, 0);
    return n < 0 ? -1 : (int)n;
}

/* futex_waitv (Linux 5.16): defined here, not taken from <linux/futex.h>, so that the
 * build does not depend on the headers' age; the probe decides at run time. */
#define MS_NR_FUTEX_WAITV 449
#define MS_FUTEX2_SIZE_U32 0x02   /* no FUTEX2_PRIVATE: the words are in shared mappings */
#define MS_FUTEX_WAITV_MAX 128

struct ms_futex_waitv {
    uint64_t val;
    uint64_t uaddr;
    uint32_t flags;
    uint32_t reserved;
};

size_t ms_p_wait_many_max(void)
{
    /* 0 unknown, 1 present, 2 absent.  A call with no futexes is refused with EINVAL by
     * a kernel that has the system call; ENOSYS (older kernel) or EPERM (a seccomp
     * filter that does not know it) means we must poll. */
    static volatile int have;
    int h = have;
    if (h == 0) {
        long rc = syscall(MS_NR_FUTEX_WAITV, NULL, 0, 0, NULL, CLOCK_MONOTONIC);
        h = (rc < 0 && errno == EINVAL) ? 1 : 2;
        have = h;
    }
    return h == 1 ? MS_FUTEX_WAITV_MAX : 0;
}

ms_status ms_p_wait32_many(const ms_wait_word *w, size_t n, int64_t timeout_ns)
{
    struct ms_futex_waitv v[MS_FUTEX_WAITV_MAX];
    struct timespec ts, *tsp = NULL;
    if (n == 0 || n > MS_FUTEX_WAITV_MAX)
        return MS_E_INVALID;
    for (size_t i = 0; i < n; i++) {
        v[i].val = w[i].expected;
        v[i].uaddr = (uint64_t)(uintptr_t)w[i].word;
        v[i].flags = MS_FUTEX2_SIZE_U32;
        v[i].reserved = 0;
    }
    if (timeout_ns >= 0) {
        /* futex_waitv takes an absolute time on the given clock */
        uint64_t end = ms_p_monotonic_ns() + (uint64_t)timeout_ns;
        ts.tv_sec = (time_t)(end / 1000000000ULL);
        ts.tv_nsec = (long)(end % 1000000000ULL);
        tsp = &ts;
    }
    long rc = syscall(MS_NR_FUTEX_WAITV, v, (unsigned)n, 0, tsp, CLOCK_MONOTONIC);
    if (rc >= 0)
        return MS_OK;
    switch (errno) {
    case EAGAIN: return MS_OK;  /* a value had already changed */
    case ETIMEDOUT: return MS_E_TIMEOUT;
    case EINTR: case ERESTART: return MS_E_INTERRUPTED;
    default: return MS_E_OS;
    }
}

/* ---- robust lock ------------------------------------------------------------------- */

/* glibc links every robust mutex a thread holds into that thread's robust list, through
 * two pointers stored inside the pthread_mutex_t -- that is, in shared memory.  On
 * unlock it writes through them.  A peer with write access could aim them anywhere in
 * our address space, so before unlocking we check that both point either at this
 * thread's list head or into a lock area this thread holds.  The set of held areas is
 * kept per thread; glibc resets the robust list in a forked child, and so do we. */
#define MS_MAX_HELD 64

/* Everything this file keeps per thread, in one struct: in a shared library each access
 * to a thread-local goes through __tls_get_addr, so we look it up once per call. */
struct ms_tls {
    sigjmp_buf *guard_jmp;      /* the innermost ms_p_guarded_call of this thread */
    uintptr_t robust_head;      /* this thread's registered robust list head */
    uint32_t tid;               /* gettid(), 0 until fast_ready() asked (and after fork) */
    int fast;                   /* fast_trylock/fast_unlock usable: fast_ready() */
    int held_count;
    void *held_areas[MS_MAX_HELD];
};
static __thread struct ms_tls tls;

#if defined(__GLIBC__)
/* A pointer to this thread's `tls`, in the initial-exec TLS model: one load from %fs
 * instead of a call to __tls_get_addr (the general-dynamic model a shared library gets),
 * on every lock acquire and release.  Only 8 bytes of the static TLS that glibc sets
 * aside for libraries loaded by dlopen.  Both variables live and die with the thread;
 * a forked child's thread has them at the same addresses. */
static __thread struct ms_tls *tls_self __attribute__((tls_model("initial-exec")));

__attribute__((noinline)) static struct ms_tls *my_tls_first(void)
{
    struct ms_tls *t = &tls;
    tls_self = t;
    return t;
}

static inline struct ms_tls *my_tls(void)
{
    struct ms_tls *t = tls_self;
    if (__builtin_expect(t == NULL, 0))
        t = my_tls_first();
    return t;
}
#else
static struct ms_tls *my_tls(void)
{
    struct ms_tls *t = &tls;
    /* Hide where t comes from: otherwise GCC recomputes the address -- a call to
     * __tls_get_addr -- on every use, even once per iteration of held_find's loop. */
    __asm__("" : "+r"(t));
    return t;
}
#endif

static inline void held_add(struct ms_tls *t, void *area)
{
    if (t->held_count < MS_MAX_HELD)
        t->held_areas[t->held_count++] = area;
}

/* The held areas are kept in the order they were taken, the newest last, and searched
 * from the newest: a thread usually releases the lock it took last, so a release finds
 * its area at the first comparison however many locks the thread holds. */
static inline int held_find(struct ms_tls *t, void *area)
{
    for (int i = t->held_count - 1; i >= 0; i--)
        if (t->held_areas[i] == area)
            return i;
    return -1;
}

/* Drop entry i (from held_find), keeping the order of the others. */
static inline void held_remove_at(struct ms_tls *t, int i)
{
    int n = --t->held_count;
    for (; i < n; i++)
        t->held_areas[i] = t->held_areas[i + 1];
}

static int held_contains_ptr(struct ms_tls *t, uintptr_t p)
{
    for (int i = 0; i < t->held_count; i++) {
        uintptr_t a = (uintptr_t)t->held_areas[i];
        if (p >= a && p < a + MS_LOCK_AREA)
            return 1;
    }
    return 0;
}

static inline uintptr_t get_robust_head(struct ms_tls *t)
{
    if (!t->robust_head) {
        struct robust_list_head *head = NULL;
        size_t len = 0;
        if (syscall(SYS_get_robust_list, 0, &head, &len) == 0)
            t->robust_head = (uintptr_t)head;
    }
    return t->robust_head;
}

static inline int list_ptr_ok(struct ms_tls *t, uintptr_t p)
{
    uintptr_t h = get_robust_head(t);
    p &= ~(uintptr_t)1;
    if (p - h < 32)  /* the common case: the thread's list head itself */
        return 1;
    return held_contains_ptr(t, p);
}

static void atfork_child(void)
{
    struct ms_tls *t = my_tls();
    t->held_count = 0;
    t->robust_head = 0;
    t->tid = 0;     /* the child is another thread id: fast_ready() asks again */
    t->fast = 0;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(NULL, NULL, atfork_child); }

_Static_assert(sizeof(pthread_mutex_t) <= MS_LOCK_AREA, "pthread mutex fits the lock area");

/* A writer can forge the mutex's kind: glibc then takes another code path (priority
 * inheritance, recursive, ...), and some of those abort() the process on an owner that
 * does not exist (an assertion in pthread_mutex_clocklock).  Refuse a mutex whose kind is
 * not the one ms_p_lock_init writes, ignoring the lock-elision bits (0x300), which
 * depend on the glibc build.  A writer racing this check can still win; the window is
 * the call itself instead of any time. */
#if defined(__GLIBC__)
#define MS_KIND_IGNORED 0x300
static int expected_kind = -1;

__attribute__((noinline)) static int expected_kind_init(void)
{
    pthread_mutex_t m;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_NORMAL);
    pthread_mutex_init(&m, &attr);
    pthread_mutexattr_destroy(&attr);
    int k = m.__data.__kind & ~MS_KIND_IGNORED;
    __atomic_store_n(&expected_kind, k, __ATOMIC_RELAXED);
    return k;
}

/* inline: it runs on every acquire and release, the uncontended Lock's hot path */
static inline int kind_ok(const void *area)
{
    int expected = __atomic_load_n(&expected_kind, __ATOMIC_RELAXED);
    if (__builtin_expect(expected == -1, 0))
        expected = expected_kind_init();
    int kind = __atomic_load_n(&((const pthread_mutex_t *)area)->__data.__kind, __ATOMIC_RELAXED);
    return (kind & ~MS_KIND_IGNORED) == expected;
}
#else
static int kind_ok(const void *area) { (void)area; return 1; }
#endif

/* The pthread_mutex_t internals we validate: x86-64/aarch64 glibc layout, where the
 * robust-list pointers (__prev, __next) follow five ints and two shorts. */
struct glibc_mutex_view {
    int lock;
    unsigned count;
    int owner;
    unsigned nusers;
    int kind;
    short spins, elision;
    uintptr_t prev, next;
};

#if defined(__GLIBC__) && defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
#define MS_FAST_ROBUST 1
/* The uncontended acquire and release of the robust mutex, done here instead of in
 * glibc's pthread_mutex_trylock/unlock: the same steps on the same words in the same
 * order, for the one kind kind_ok admits (a process-shared robust normal mutex), so that
 * a mutex taken here can be released by glibc and the other way round, and the kernel
 * finds it on the thread's robust list when the thread dies.  What it saves is glibc's
 * dispatch on the mutex kind and two calls through the PLT per acquire+release pair:
 * about 70 of the uncontended pair's instructions.  Anything but the clean case (the
 * word not 0 on acquire, not exactly our thread id on release, the owner field not ours,
 * the robust-list pointers not exactly what they must be) goes to glibc, which decides.
 * TSan does not see these atomics pair with glibc's (uninstrumented) ones: off there.
 *
 * The thread's robust list (kernel ABI, set_robust_list(2); glibc's layout):
 *   head = &THREAD_SELF->robust_head = {list, futex_offset, list_op_pending}, obtained
 *   from get_robust_list(2); the list links the `__list.__next` fields of the held
 *   mutexes (an "entry"), the last entry's next is the head itself, and glibc keeps a
 *   `__prev` back-pointer too: a mutex's __prev is the previous entry (or the head), and
 *   the head's own back-pointer is the word just before it (robust_prev), since
 *   (entry - MS_QUEUE_ADJUST) is where an entry's __prev lives.
 *
 * Why this is sound against hostile shared memory: the only addresses written are
 * (a) the mutex's own area (mapped, ours while we hold the mapping), (b) this thread's
 * robust head and the word before it (thread memory glibc reserves for this), and
 * (c) the __prev/__next fields of other mutexes this thread holds.  Addresses (c) come
 * on acquire from head->list, which only this thread writes (trusted); on release from
 * the mutex's __prev/__next, which a writer can forge: they are read once into locals,
 * and the release goes on only when each is exactly the head or exactly the entry of an
 * area in this thread's held list (fast_entry_ok), and writes through those locals, not
 * through a second read.  A forged lock word or owner field only sends the call to
 * glibc (with the checks it had before), and the futex wake is on our own area. */
#define MS_ENTRY_OFF offsetof(pthread_mutex_t, __data.__list.__next)
#define MS_QUEUE_ADJUST offsetof(__pthread_list_t, __next)

struct ms_robust_head {        /* the kernel's struct robust_list_head */
    uintptr_t list;
    long futex_offset;
    uintptr_t pending;
};

__attribute__((noinline)) static int fast_init(struct ms_tls *t)
{
    t->tid = (uint32_t)syscall(SYS_gettid);
    uintptr_t h = get_robust_head(t);
    /* the head glibc registered describes the layout this file assumes: the futex word
     * at futex_offset from each entry; otherwise leave everything to glibc */
    t->fast = h != 0 && t->tid != 0 &&
              ((const struct ms_robust_head *)h)->futex_offset ==
                  (long)offsetof(pthread_mutex_t, __data.__lock) - (long)MS_ENTRY_OFF;
    return t->fast;
}

static inline int fast_ready(struct ms_tls *t)
{
    if (__builtin_expect(t->tid == 0, 0))
        return fast_init(t);
    return t->fast;
}

/* exactly the head, or exactly the entry of a mutex this thread holds */
static inline int fast_entry_ok(struct ms_tls *t, uintptr_t p)
{
    if (p == t->robust_head)
        return 1;
    for (int i = t->held_count - 1; i >= 0; i--)
        if ((uintptr_t)t->held_areas[i] + MS_ENTRY_OFF == p)
            return 1;
    return 0;
}

/* The lock word of a mutex some live thread holds: its tid, maybe the waiters bit, not
 * the owner-died bit (a dead holder's lock is glibc's to hand over). */
static inline int fast_busy(int word)
{
    return (word & FUTEX_TID_MASK) != 0 && !(word & FUTEX_OWNER_DIED);
}

/* 1: taken (and on the robust list); 0: busy, as glibc's trylock would answer (EBUSY);
 * -1: anything else, glibc's trylock decides.  A busy lock is answered from one read,
 * with no CAS: contending processes do not take the cache line from the holder. */
static inline int fast_trylock(struct ms_tls *t, pthread_mutex_t *m)
{
    volatile struct ms_robust_head *head = (volatile struct ms_robust_head *)t->robust_head;
    uintptr_t entry = (uintptr_t)m + MS_ENTRY_OFF;
    int word = __atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED);
    if (word != 0)
        return fast_busy(word) ? 0 : -1;
    /* the owner field is 0 after every clean release; anything else (a dead holder's
     * tid, glibc's "inconsistent" or "not recoverable" marks) is glibc's case */
    if (m->__data.__owner != 0)
        return -1;
    head->pending = entry;
    __asm__ volatile("" ::: "memory");
    int expected = 0;
    if (!__atomic_compare_exchange_n(&m->__data.__lock, &expected, (int)t->tid, 0,
                                     __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        head->pending = 0;
        return fast_busy(expected) ? 0 : -1;
    }
    /* enqueue at the front (glibc's ENQUEUE_MUTEX_BOTH) */
    uintptr_t first = head->list & ~(uintptr_t)1;
    ((__pthread_list_t *)(first - MS_QUEUE_ADJUST))->__prev = (__pthread_list_t *)entry;
    m->__data.__list.__next = (__pthread_list_t *)head->list;
    m->__data.__list.__prev = (__pthread_list_t *)t->robust_head;
    __asm__ volatile("" ::: "memory");
    head->list = entry;
    __asm__ volatile("" ::: "memory");
    head->pending = 0;
    m->__data.__owner = (int)t->tid;
    ++m->__data.__nusers;
    return 1;
}

/* 1: released; 0: not clean, glibc's unlock decides.  prev and next: the mutex's list
 * pointers as read once by the caller. */
static inline int fast_unlock(struct ms_tls *t, pthread_mutex_t *m, uintptr_t prev,
                              uintptr_t next)
{
    int word = __atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED);
    /* (the head and every entry are even: an exact match also refuses a PI-marked
     * pointer, bit 0) */
    if ((uint32_t)word != t->tid || m->__data.__owner != (int)t->tid ||
        !fast_entry_ok(t, prev) || !fast_entry_ok(t, next))
        return 0;
    volatile struct ms_robust_head *head = (volatile struct ms_robust_head *)t->robust_head;
    head->pending = (uintptr_t)m + MS_ENTRY_OFF;
    __asm__ volatile("" ::: "memory");
    /* dequeue (glibc's DEQUEUE_MUTEX), through the checked locals */
    ((__pthread_list_t *)(next - MS_QUEUE_ADJUST))->__prev = (__pthread_list_t *)prev;
    ((__pthread_list_t *)(prev - MS_QUEUE_ADJUST))->__next = (__pthread_list_t *)next;
    __asm__ volatile("" ::: "memory");
    m->__data.__list.__prev = NULL;
    m->__data.__list.__next = NULL;
    m->__data.__owner = 0;
    --m->__data.__nusers;
    if (__atomic_exchange_n(&m->__data.__lock, 0, __ATOMIC_RELEASE) & FUTEX_WAITERS)
        syscall(SYS_futex, &m->__data.__lock, FUTEX_WAKE, 1, NULL, NULL, 0);
    __asm__ volatile("" ::: "memory");
    head->pending = 0;
    return 1;
}
#endif

ms_status ms_p_lock_init(void *area, int *err)
{
    pthread_mutexattr_t attr;
    int rc;
    memset(area, 0, MS_LOCK_AREA);
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_NORMAL);
    rc = pthread_mutex_init((pthread_mutex_t *)area, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0)
        return errno_status(rc, err);
    return MS_OK;
}

static ms_status lock_result(struct ms_tls *t, int rc, void *area, int *err)
{
    pthread_mutex_t *m = (pthread_mutex_t *)area;
    switch (rc) {
    case 0:
        held_add(t, area);
        return MS_OK;
    case EOWNERDEAD:
        /* We hold it now.  Mark it consistent at once: the owner-died news travels to
         * Python as an exception, and recovery is the caller's policy. */
        pthread_mutex_consistent(m);
        held_add(t, area);
        return MS_E_OWNER_DIED;
    case EBUSY: case ETIMEDOUT:
        return MS_E_TIMEOUT;
    case EDEADLK:
        if (err) *err = rc;
        return MS_E_ALREADY_HELD;
    case ENOTRECOVERABLE: case EINVAL:
        if (err) *err = rc;
        return MS_E_LAYOUT;
    default:
        return errno_status(rc, err);
    }
}

static int atfork_registered;

/* Everything but the uncontended try of ms_p_lock_acquire (kept out of line so that
 * the fast path saves no registers for it). */
__attribute__((noinline)) static ms_status lock_acquire_slow(struct ms_tls *t, void *area,
                                                              int64_t timeout_ns, int *err)
{
    pthread_mutex_t *m = (pthread_mutex_t *)area;
    int rc;
    if (__builtin_expect(!__atomic_load_n(&atfork_registered, __ATOMIC_ACQUIRE), 0)) {
        pthread_once(&atfork_once, register_atfork);
        __atomic_store_n(&atfork_registered, 1, __ATOMIC_RELEASE);
    }
    /* A normal mutex relocked by its own holder would deadlock; refuse instead. */
    if (held_find(t, area) >= 0) {
        if (err) *err = EDEADLK;
        return MS_E_ALREADY_HELD;
    }
    if (!kind_ok(area)) {
        if (err) *err = EINVAL;
        return MS_E_LAYOUT;
    }
    if (timeout_ns == 0) {
#ifdef MS_FAST_ROBUST
        int got = fast_ready(t) ? fast_trylock(t, m) : -1;
        if (got > 0) {
            held_add(t, area);
            return MS_OK;
        }
        if (got == 0)
            return MS_E_TIMEOUT;  /* busy: lock_result's answer to glibc's EBUSY */
#endif
        rc = pthread_mutex_trylock(m);
    } else if (timeout_ns < 0) {
        rc = pthread_mutex_lock(m);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)timeout_ns;
        ts.tv_sec += (time_t)(ns / 1000000000ULL);
        ts.tv_nsec = (long)(ns % 1000000000ULL);
        rc = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts);
    }
    return lock_result(t, rc, area, err);
}

ms_status ms_p_lock_acquire(ms_waitctx *ctx, unsigned slot, void *area, int64_t timeout_ns,
                            int *err)
{
    struct ms_tls *t = my_tls();
    (void)ctx; (void)slot;
#ifdef MS_FAST_ROBUST
    /* The uncontended Lock's path: the checks of lock_acquire_slow, in its order (the
     * atfork handler registered, not held by this thread, the kind ours), then the
     * in-place try; t->fast is only set once fast_init has run in this thread. */
    if (timeout_ns == 0 && t->fast && __atomic_load_n(&atfork_registered, __ATOMIC_ACQUIRE) &&
        held_find(t, area) < 0 && kind_ok(area)) {
        int got = fast_trylock(t, (pthread_mutex_t *)area);
        if (got > 0) {
            held_add(t, area);
            return MS_OK;
        }
        if (got == 0)
            return MS_E_TIMEOUT;  /* busy: lock_result's answer to glibc's EBUSY */
    }
#endif
    return lock_acquire_slow(t, area, timeout_ns, err);
}

/* Everything but the uncontended release (out of line, as lock_acquire_slow): i is the
 * area's index in the held list, the kind already checked. */
__attribute__((noinline)) static ms_status lock_release_slow(struct ms_tls *t, void *area,
                                                              int i, int *err)
{
#if defined(__GLIBC__) && (defined(__x86_64__) || defined(__aarch64__))
    {
        struct glibc_mutex_view v;
        memcpy(&v, area, sizeof v);
        if (!list_ptr_ok(t, v.prev) || !list_ptr_ok(t, v.next)) {
            if (err) *err = EFAULT;
            return MS_E_LAYOUT;
        }
    }
#endif
    int rc = pthread_mutex_unlock((pthread_mutex_t *)area);
    if (rc == 0) {
        held_remove_at(t, i);
        return MS_OK;
    }
    if (rc == EPERM) {
        /* Someone rewrote the owner field: we no longer hold it as far as glibc knows. */
        held_remove_at(t, i);
        if (err) *err = rc;
        return MS_E_NOT_OWNER;
    }
    return errno_status(rc, err);
}

ms_status ms_p_lock_release(ms_waitctx *ctx, unsigned slot, void *area, int *err)
{
    struct ms_tls *t = my_tls();
    (void)ctx; (void)slot;
    /* one search: its index removes the entry (nothing else changes the list of this
     * thread's held areas in between) */
    int i = held_find(t, area);
    if (i < 0) {
        if (err) *err = EPERM;
        return MS_E_NOT_OWNER;
    }
    if (!kind_ok(area)) {
        if (err) *err = EINVAL;
        return MS_E_LAYOUT;
    }
#ifdef MS_FAST_ROBUST
    if (t->fast) {
        /* each pointer read once; fast_unlock checks them exactly (stricter than
         * list_ptr_ok, which the slow path applies) and writes through these copies */
        pthread_mutex_t *m = (pthread_mutex_t *)area;
        uintptr_t prev = __atomic_load_n((uintptr_t *)&m->__data.__list.__prev, __ATOMIC_RELAXED);
        uintptr_t next = __atomic_load_n((uintptr_t *)&m->__data.__list.__next, __ATOMIC_RELAXED);
        if (fast_unlock(t, m, prev, next)) {
            held_remove_at(t, i);
            return MS_OK;
        }
    }
#endif
    return lock_release_slow(t, area, i, err);
}

void ms_p_lock_inspect(void *area, int *held, uint32_t *holder, int *dead)
{
    struct glibc_mutex_view v;
    memcpy(&v, area, sizeof v);
    uint32_t word = ms_load_relaxed32(area);
    uint32_t tid = word & FUTEX_TID_MASK;
    if (word & FUTEX_OWNER_DIED) {
        /* The kernel cleared the tid when the holder died; glibc's __owner still names
         * it.  Held (nobody has taken it over yet), by a dead holder. */
        *held = 1;
        *dead = 1;
        *holder = tid ? tid : (uint32_t)v.owner;
        return;
    }
    *held = tid != 0;
    *holder = tid;
    *dead = 0;
    if (tid && !*dead) {
        /* The tid is a thread id; a dead thread whose lock the kernel has not yet marked
         * can only be seen through /proc. */
        char path[64];
        struct stat st;
        snprintf(path, sizeof path, "/proc/%u", (unsigned)tid);
        if (stat(path, &st) != 0 && errno == ENOENT)
            *dead = 1;
    }
}

/* ---- faults ------------------------------------------------------------------------ */

static struct sigaction previous_bus;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

/* Watched mappings (ms_p_map_watch), read by the signal handler without locks: an
 * entry is claimed by a CAS of `start` from 0 to 1, filled, then published. */
#define MS_MAX_WATCHED 4096
struct watched { uintptr_t start; size_t len; volatile int *flag; };
static struct watched watched[MS_MAX_WATCHED];

static int quarantine_watched(uintptr_t addr)
{
    for (int i = 0; i < MS_MAX_WATCHED; i++) {
        uintptr_t s0 = __atomic_load_n(&watched[i].start, __ATOMIC_ACQUIRE);
        if (s0 > 1 && addr >= s0 && addr < s0 + watched[i].len) {
            /* mmap is a plain system call: safe here.  The access is re-executed on
             * zero pages; the flag makes the next mapshare call raise. */
            mmap((void *)s0, watched[i].len, PROT_READ | PROT_WRITE,
                 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (watched[i].flag)
                *watched[i].flag = 1;
            return 1;
        }
    }
    return 0;
}

static void bus_handler(int sig, siginfo_t *info, void *uc)
{
    /* tls was touched by ms_p_guarded_call on this thread before any guarded access,
     * so this lookup allocates nothing (async-signal-safe in practice). */
    struct ms_tls *t = my_tls();
    sigjmp_buf *jb = t->guard_jmp;
    if (jb) {
        t->guard_jmp = NULL;
        siglongjmp(*jb, 1);
    }
    /* An unguarded access to one of our mappings whose object shrank under it. */
    if (info && quarantine_watched((uintptr_t)info->si_addr))
        return;
    /* Not ours: behave as if we were never installed. */
    if (previous_bus.sa_flags & SA_SIGINFO) {
        previous_bus.sa_sigaction(sig, info, uc);
    } else if (previous_bus.sa_handler != SIG_IGN && previous_bus.sa_handler != SIG_DFL) {
        previous_bus.sa_handler(sig);
    } else {
        sigaction(SIGBUS, &previous_bus, NULL);
        /* returning re-executes the access, which now gets the default action */
    }
}

static void install_guard(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = bus_handler;
    /* SA_NODEFER: we leave the handler by siglongjmp without restoring the mask, so
     * SIGBUS must not stay blocked afterwards. */
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &previous_bus);
}

static int guard_installed;

ms_status ms_p_guarded_call(ms_guarded_fn fn, void *arg)
{
    sigjmp_buf jb;
    sigjmp_buf *volatile outer;
    volatile ms_status st;
    struct ms_tls *volatile t = my_tls();
    if (!__atomic_load_n(&guard_installed, __ATOMIC_ACQUIRE)) {
        pthread_once(&guard_once, install_guard);
        __atomic_store_n(&guard_installed, 1, __ATOMIC_RELEASE);
    }
    outer = t->guard_jmp;
    if (sigsetjmp(jb, 0) != 0) {
        t->guard_jmp = outer;
        return MS_E_FAULT;
    }
    t->guard_jmp = &jb;
    st = fn(arg);
    t->guard_jmp = outer;
    return st;
}

void ms_p_map_watch(void *addr, size_t length, volatile int *flag)
{
    if (!addr || !length)
        return;
    if (!__atomic_load_n(&guard_installed, __ATOMIC_ACQUIRE)) {
        pthread_once(&guard_once, install_guard);
        __atomic_store_n(&guard_installed, 1, __ATOMIC_RELEASE);
    }
    for (int i = 0; i < MS_MAX_WATCHED; i++) {
        uintptr_t expected = 0;
        if (__atomic_compare_exchange_n(&watched[i].start, &expected, 1, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            watched[i].len = length;
            watched[i].flag = flag;
            __atomic_store_n(&watched[i].start, (uintptr_t)addr, __ATOMIC_RELEASE);
            return;
        }
    }
    /* table full: this mapping stays protected only inside guarded calls */
}

void ms_p_map_unwatch(void *addr)
{
    for (int i = 0; i < MS_MAX_WATCHED; i++)
        if (__atomic_load_n(&watched[i].start, __ATOMIC_ACQUIRE) == (uintptr_t)addr) {
            __atomic_store_n(&watched[i].start, 0, __ATOMIC_RELEASE);
            return;
        }
}

struct copy_args { void *dst; const void *src; size_t n; };

static ms_status copy_fn(void *arg)
{
    struct copy_args *a = (struct copy_args *)arg;
    memcpy(a->dst, a->src, a->n);
    return MS_OK;
}

ms_status ms_p_guarded_copy(void *dst, const void *src, size_t n)
{
    struct copy_args a = { dst, src, n };
    return ms_p_guarded_call(copy_fn, &a);
}

void ms_p_quarantine(void *addr, size_t length)
{
    /* Replace the pages with private zero pages at the same address: pointers that
     * glibc's robust list or Python buffers still hold stay valid memory, and the
     * zeroed header makes every later operation report MS_E_LAYOUT. */
    if (addr && length)
        mmap(addr, length, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}
