/* The platform layer: everything that differs between operating systems, behind one
 * interface.  Algorithms (segment.c, sync.c, channel.c) call only these functions and
 * never test the OS themselves.
 *
 * Exactly one backend is compiled: linux.c (Linux) or windows.c (Windows); there is no
 * other yet (docs/platforms.md says what a new one must provide).  Every function
 * returns an ms_status; when the cause is an OS error, its number (errno or
 * GetLastError()) is stored in *err.
 *
 * If a platform cannot honour a promise (a timeout, owner-death detection), it returns
 * an error; it never silently degrades.
 */
#ifndef MS_PLATFORM_H
#define MS_PLATFORM_H

#include <stddef.h>
#include <stdint.h>
#include "../status.h"

/* A function shared by the files of one shared object but not exported from it. */
#if defined(__GNUC__) && !defined(_WIN32)
#define MS_P_HIDDEN __attribute__((visibility("hidden")))
#else
#define MS_P_HIDDEN  /* a DLL exports only what is marked dllexport */
#endif

/* An OS handle: a file descriptor on POSIX, a HANDLE on Windows (fits in intptr_t). */
typedef intptr_t ms_handle_t;
#define MS_NO_HANDLE ((ms_handle_t)-1)

/* An open shared-memory object or backing file. */
typedef struct ms_object {
    ms_handle_t handle;   /* POSIX: fd of the shm object or file. Windows: file-mapping HANDLE */
    ms_handle_t file;     /* Windows: the backing file HANDLE (or MS_NO_HANDLE). POSIX: unused */
    uint64_t size;        /* the object's size in bytes when created or opened */
    int writable;         /* opened for writing */
} ms_object;

/* Facts about an object, for the security checks and for listing. */
typedef struct ms_object_stat {
    uint64_t size;
    uint32_t uid;         /* owner (POSIX); 0 on Windows */
    uint32_t mode;        /* permission bits (POSIX); 0600 on Windows */
    uint64_t dev, ino;    /* identity of a backing file (POSIX) */
    int64_t mtime_ns;
} ms_object_stat;

/* Flags for ms_p_object_create / ms_p_object_open */
#define MS_OBJ_FOLLOW_SYMLINKS 0x1   /* path=: allow the last component to be a symlink */
#define MS_OBJ_GLOBAL          0x2   /* Windows: Global\ namespace instead of Local\ */
#define MS_OBJ_RESERVE_LATER   0x100 /* create: reserve no storage; the caller reserves what it
                                      * needs with ms_p_object_reserve (Windows: ignored) */

/* Access modes for mappings. */
#define MS_ACCESS_READ  1   /* read-only, shared */
#define MS_ACCESS_WRITE 2   /* read-write, shared */
#define MS_ACCESS_COPY  3   /* read-write, copy-on-write: writes stay in this mapping */

/* ---- objects --------------------------------------------------------------------- */

/* Create a new object exclusively.  `osname` is the OS-level name made by the Python
 * naming policy ("/mapshare.x" on POSIX; the Windows backend prefixes Local\ or Global\
 * itself and drops the leading '/').  With `path` != NULL the object is a regular file
 * created at `path` (O_EXCL, and O_NOFOLLOW unless MS_OBJ_FOLLOW_SYMLINKS); on POSIX the
 * name is then not used by this call (the name is handled one layer up), on Windows
 * the file mapping is created over the file under that name.
 * Storage for all `size` bytes is reserved before returning (posix_fallocate or the
 * equivalent), so a full /dev/shm or disk gives MS_E_NO_SPACE here, never SIGBUS later.
 * `mode` is the permission (POSIX bits; Windows: 0600 means current user only, anything
 * wider adds the Everyone group with read or read/write).
 * On failure nothing is left behind (a half-made object is removed). */
ms_status ms_p_object_create(const char *osname, const char *path, uint64_t size,
                             unsigned mode, unsigned flags, ms_object *out, int *err);

/* Open an existing object by name (path == NULL) or a backing file by path.
 * Missing: MS_E_NOT_FOUND.  Refused by the OS: MS_E_PERMISSION. */
ms_status ms_p_object_open(const char *osname, const char *path, int writable,
                           unsigned flags, ms_object *out, int *err);

/* Close the handle(s); the object lives on according to the OS rules. */
void ms_p_object_close(ms_object *obj);

/* Remove a name (POSIX shm_unlink).  Missing name: MS_E_NOT_FOUND.
 * Windows: names vanish with their last handle; returns MS_OK. */
ms_status ms_p_object_unlink(const char *osname, unsigned flags, int *err);

/* Enumerate the mapshare objects of the namespace: fn("/mapshare.xxx", arg) for each,
 * in no particular order; a nonzero return from fn stops the walk.  Names that do not
 * start with "mapshare." are never reported.
 * Linux: the entries of /dev/shm.  Windows: the Section objects of the session's
 * BaseNamedObjects directory (the global one with MS_OBJ_GLOBAL), without the helper
 * objects ('#' in the name).  A namespace that cannot be read gives an error. */
typedef int (*ms_list_fn)(const char *osname, void *arg);
ms_status ms_p_object_list(unsigned flags, ms_list_fn fn, void *arg, int *err);

/* fstat-like facts about an open object. */
ms_status ms_p_object_stat(const ms_object *obj, ms_object_stat *st, int *err);

/* Reserve storage for [offset, offset+length) of an object opened for writing (a hole
 * otherwise filled on first touch, which on a full /dev/shm or disk would be SIGBUS):
 * MS_E_NO_SPACE if it cannot be had.  Already reserved ranges cost one system call.
 * Windows: sections are committed whole at creation; MS_OK. */
ms_status ms_p_object_reserve(const ms_object *obj, uint64_t offset, uint64_t length,
                              int *err);

/* Resize (grow) an object we created; used only before publication. */
ms_status ms_p_object_truncate(ms_object *obj, uint64_t size, int *err);

/* ---- openers: who has the object open ---------------------------------------------- */

/* Every handle that attaches counts as an opener of the object until it is closed or its
 * process dies, whatever its access: a read-only opener cannot write the attach table,
 * so the attach table alone cannot tell whether a 'shared' object is still in use.
 * Linux: flock(LOCK_SH) on the handle's open file description, released by the kernel
 * when the process dies.  A description lives as long as any mapping made from it, so
 * a handle lets go explicitly (ms_p_object_unshare) as it detaches, and a forked child
 * moves each inherited handle, mappings included, to a description of its own.  Windows: a name lives as long as any handle, so these are
 * no-ops (ms_p_object_others answers 0). */

/* Count this handle.  MS_E_IN_USE while another handle is removing the object (it holds
 * the exclusive lock of ms_p_object_others); the caller retries or gives up. */
ms_status ms_p_object_share(ms_object *obj, int *err);
/* Stop counting this handle (every handle does, as it detaches). */
void ms_p_object_unshare(ms_object *obj);
/* 1 if another handle counts as an opener -- of any process, this one's other handles
 * included; 0 if none does: this handle then holds the object exclusively until it is
 * closed, so no new opener can start counting while the caller removes the name.
 * Asking gives up this handle's own count: ask only from a handle that is leaving (after
 * ms_p_object_unshare) or that never counted (an inspector).  Errors answer 1. */
int ms_p_object_others(ms_object *obj);
/* In a forked child: give this handle an open description of its own, under the same
 * descriptor (the inherited one, and its opener lock, are the parent's).  The caller
 * then moves its mappings over (ms_p_remap) and takes its own count.  Windows: no fork. */
ms_status ms_p_object_after_fork(ms_object *obj, int *err);
/* Map [offset, offset+length) of the object again at `addr`, replacing the mapping there
 * (same contents: the object is shared), so that it refers to the handle's current
 * description.  Copy-on-write mappings are left alone (their private pages would be
 * lost).  Windows: a no-op. */
ms_status ms_p_remap(const ms_object *obj, void *addr, uint64_t offset, size_t length,
                     int access, int *err);
/* The pids of the processes counted as openers, up to `max` of them; *n is the total.
 * Linux: /proc/locks.  MS_E_INVALID where the OS cannot tell (Windows). */
ms_status ms_p_object_openers(const ms_object *obj, uint32_t *pids, unsigned max,
                              unsigned *n, int *err);

/* ---- mappings -------------------------------------------------------------------- */

/* Map [offset, offset+length) of the object.  `offset` must be a multiple of
 * ms_p_granularity().  `access` is one of MS_ACCESS_*. */
ms_status ms_p_map(const ms_object *obj, uint64_t offset, size_t length, int access,
                   void **addr, int *err);
void ms_p_unmap(void *addr, size_t length);

/* Write dirty pages of [addr, addr+length) back to the backing file.  With `durable`,
 * also wait until the file data reaches stable storage (fsync / FlushFileBuffers). */
ms_status ms_p_flush(const ms_object *obj, void *addr, size_t length, int durable, int *err);

size_t ms_p_page_size(void);
/* The backend's name, exported as mapshare._core.PLATFORM: "linux" or "windows". */
const char *ms_p_name(void);
/* 1 if the `*err` numbers this backend reports are Windows error codes (GetLastError()),
 * 0 if they are errno values: the binding builds OSError from them accordingly. */
int ms_p_err_is_winerror(void);
size_t ms_p_granularity(void);      /* mapping offset alignment: page size, 64 KiB on Windows */

/* ---- processes and clocks ---------------------------------------------------------- */

uint32_t ms_p_pid(void);
uint32_t ms_p_uid(void);            /* effective uid; 0 on Windows */
/* A value that, with the pid, identifies one process instance across PID reuse
 * (Linux: start time in clock ticks since boot; Windows: creation FILETIME).  0 if the
 * process does not exist or cannot be inspected. */
uint64_t ms_p_process_start(uint32_t pid);
/* 1: that process instance is alive; 0: it is dead (or the pid now names another
 * process); -1: cannot tell (e.g. another PID namespace). */
int ms_p_process_alive(uint32_t pid, uint64_t start);
uint64_t ms_p_monotonic_ns(void);
uint64_t ms_p_realtime_ns(void);
/* Give the CPU to another runnable thread, if any (sched_yield / SwitchToThread). */
void ms_p_yield(void);

/* ---- waiting and waking ------------------------------------------------------------ */

/* Per-mapping local state for waiting (Windows: the named events and mutexes of one
 * segment, opened lazily; POSIX: nothing).  Created after the object is opened. */
typedef struct ms_waitctx ms_waitctx;
ms_status ms_p_waitctx_open(const char *osname, unsigned flags, ms_waitctx **out, int *err);
void ms_p_waitctx_close(ms_waitctx *ctx);

/* Sleep while *word == expected, at most timeout_ns (-1: no limit).  Returns MS_OK when
 * woken or when the value differed (spurious wake-ups allowed: callers re-check),
 * MS_E_TIMEOUT, or MS_E_INTERRUPTED when a signal arrived.  `slot` is a 32-bit key that
 * names the word inside its segment, so that a platform without address-based
 * cross-process waiting (Windows) can use one named object per key: the header's words
 * use the small MS_SLOT_* numbers of layout.h; an event or semaphore placed in the user
 * area at byte offset `off` uses MS_SLOT_USER_BASE + off / 8. */
ms_status ms_p_wait32(ms_waitctx *ctx, unsigned slot, volatile uint32_t *word,
                      uint32_t expected, int64_t timeout_ns);
/* Wake one (all == 0) or all waiters sleeping on `word`.  Returns how many were woken,
 * or -1 if the platform cannot tell (callers use 0 to repair waiter counts left behind
 * by a waiter that died in its sleep). */
int ms_p_wake32(ms_waitctx *ctx, unsigned slot, volatile uint32_t *word, int all);

/* One word of a multi-word wait (ms_p_wait32_many). */
typedef struct ms_wait_word {
    ms_waitctx *ctx;             /* the wait context of the word's segment */
    unsigned slot;               /* the word's slot key, as for ms_p_wait32 */
    volatile uint32_t *word;
    uint32_t expected;
} ms_wait_word;

/* How many words ms_p_wait32_many can sleep on at once; 0 if this system cannot sleep
 * on several at all (callers then poll: sync.c's ms_wait_any).  Linux: 128
 * (FUTEX_WAITV_MAX) where the kernel has futex_waitv (5.16+; probed once), else 0.
 * Windows: 64 (MAXIMUM_WAIT_OBJECTS). */
size_t ms_p_wait_many_max(void);

/* Sleep while every w[i].word still holds w[i].expected, at most timeout_ns (-1: no
 * limit); n <= ms_p_wait_many_max().  The same contract as ms_p_wait32 (MS_OK when
 * woken or when a value differed, spurious wake-ups allowed; MS_E_TIMEOUT;
 * MS_E_INTERRUPTED), for a waker of any one of the words: each ms_p_wake32 on one of
 * them wakes this sleeper.  Linux: futex_waitv on shared (not private) 32-bit futexes.
 * Windows: WaitForMultipleObjects on the slots' semaphores (words of one context and
 * slot share one). */
ms_status ms_p_wait32_many(const ms_wait_word *w, size_t n, int64_t timeout_ns);

/* ---- robust lock ------------------------------------------------------------------- */

/* A lock whose state lives in MS_LOCK_AREA bytes of shared memory (`area`), plus, on
 * Windows, a named mutex found through ctx/slot.  When its holder dies while holding it,
 * the next acquirer gets it with MS_E_OWNER_DIED (and the lock is consistent again).
 * Linux: a process-shared robust pthread mutex (the kernel's robust futex list), which
 * holds across PID reuse and PID namespaces. */
#define MS_LOCK_AREA 64
ms_status ms_p_lock_init(void *area, int *err);
/* timeout_ns: -1 forever, 0 try once.  Returns MS_OK, MS_E_OWNER_DIED (held),
 * MS_E_TIMEOUT.  Implementations may return MS_E_INTERRUPTED only if they sleep
 * interruptibly; callers wanting Ctrl-C slice long waits themselves. */
ms_status ms_p_lock_acquire(ms_waitctx *ctx, unsigned slot, void *area, int64_t timeout_ns,
                            int *err);
/* MS_E_NOT_OWNER if the calling thread does not hold it. */
ms_status ms_p_lock_release(ms_waitctx *ctx, unsigned slot, void *area, int *err);
/* Best-effort snapshot for inspection: *held = 1 if locked; *holder = OS thread id of
 * the holder if known (0 otherwise); *dead = 1 if the holder is known to be dead. */
void ms_p_lock_inspect(void *area, int *held, uint32_t *holder, int *dead);

/* ---- plain files (a journal's meta and segment files) ------------------------------ */

/* `fd` is a C runtime file descriptor (os.open's; on Windows the UCRT's, whose OS handle
 * the backend looks up). */

/* Make the file `size` bytes long with its storage allocated, so that a full disk fails
 * here (MS_E_NO_SPACE), never as SIGBUS or EXCEPTION_IN_PAGE_ERROR on a mapping later.
 * Linux: posix_fallocate (ftruncate where the file system has none).  Windows:
 * FileAllocationInfo, then the end of file (SetEndOfFile's FileEndOfFileInfo); where
 * FileAllocationInfo is not supported (Wine 8, some file systems), zeros written over
 * the new range. */
ms_status ms_p_file_allocate(int fd, uint64_t size, int *err);

/* Take (exclusive != 0) or drop an exclusive lock on the whole file, waiting as long as
 * it takes; the OS drops it when its holder dies.  Linux: flock.  Windows: LockFileEx /
 * UnlockFileEx over the whole range.  Not interruptible: callers hold it briefly. */
ms_status ms_p_file_lock(int fd, int exclusive, int *err);

/* Give the file or directory at `path` the permission `mode` (POSIX bits: chmod;
 * Windows: the protected DACL of ms_p_object_create -- the current user, plus Everyone
 * when `mode` has group/other bits). */
ms_status ms_p_path_restrict(const char *path, unsigned mode, int *err);

/* ---- faults ------------------------------------------------------------------------ */

/* Run fn(arg) so that a fault on a mapping (SIGBUS on POSIX, EXCEPTION_IN_PAGE_ERROR on
 * Windows: a peer truncated the object, or its storage vanished) makes it return
 * MS_E_FAULT instead of crashing the process.  fn must not allocate or take locks that
 * would be left inconsistent if it is abandoned half-way. Nesting is allowed (the inner
 * guard wins). */
typedef ms_status (*ms_guarded_fn)(void *arg);
ms_status ms_p_guarded_call(ms_guarded_fn fn, void *arg);

/* After a fault: replace [addr, addr+length) of a mapping with private zero-filled
 * memory at the same address, so that stale pointers into it (a lock on this thread's
 * robust list, a buffer Python still exports) stay valid memory instead of faulting. */
void ms_p_quarantine(void *addr, size_t length);

/* Watch a mapping: a fault on it *outside* any ms_p_guarded_call -- an access from
 * Python through a memoryview or numpy array, say -- quarantines the whole mapping (as
 * ms_p_quarantine) and sets *flag (if not NULL), instead of killing the process; the
 * faulting access then reads zeros or writes into nothing, and the next mapshare call
 * reports the fault.  Unwatch before unmapping.  Platforms that cannot do this make
 * these no-ops (and say so in docs/platforms.md). */
void ms_p_map_watch(void *addr, size_t length, volatile int *flag);
void ms_p_map_unwatch(void *addr);

/* memcpy under the same guard. */
ms_status ms_p_guarded_copy(void *dst, const void *src, size_t n);

#endif
