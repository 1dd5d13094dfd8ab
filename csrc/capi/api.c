/* libmapshare: the public C API (include/mapshare.h) over the C core.
 *
 * The core (the .c files of csrc/) is the mechanism; the Python package (src/mapshare/_naming.py,
 * _handle.py, _options.py, _link.py, _gc.py) is the policy: how a logical name becomes
 * an OS name, the defaults, the permission checks, waiting for a name and for a creator,
 * reclaiming abandoned names, file-backed segments named by a 'link' object.  This file
 * reproduces that policy, step for step, so that a C program and a Python process meet
 * on the same objects and see the same behaviour; tests/c_api/ checks that they agree.
 * Where a step of the Python code is mirrored, its comment names the Python function.
 *
 * Not compiled into the Python extension (setup.py takes the files of csrc/ and csrc/binding/ only).
 */
#if !defined(_WIN32)
#define _GNU_SOURCE 1  /* clock_gettime, nanosleep, strdup under -std=c11 */
#endif
#define MAPSHARE_BUILDING 1
#include "../../include/mapshare.h"

#include "../channel.h"
#include "../segment.h"
#include "../status.h"
#include "../sync.h"
#include "../atomics.h"
#include "blake2b.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if !defined(_WIN32)
#include <sys/stat.h>
#include <unistd.h>
#endif

/* The public codes are the core's, value for value. */
MS_STATIC_ASSERT((int)MAPSHARE_E_OS == (int)MS_E_OS, "status values");
MS_STATIC_ASSERT((int)MAPSHARE_E_LAYOUT == (int)MS_E_LAYOUT, "status values");
MS_STATIC_ASSERT((int)MAPSHARE_E_OWNER_DIED == (int)MS_E_OWNER_DIED, "status values");
MS_STATIC_ASSERT((int)MAPSHARE_E_DESTROYED == (int)MS_E_DESTROYED, "status values");
MS_STATIC_ASSERT((int)MAPSHARE_E_WINDOW_OPEN == (int)MS_E_WINDOW_OPEN, "status values");
MS_STATIC_ASSERT((int)MAPSHARE_E_VERSION == (int)MS_E_VERSION, "status values");
MS_STATIC_ASSERT(MS_STATUS_COUNT == 30, "a new core status needs a public code and a text");
MS_STATIC_ASSERT(MAPSHARE_LAYOUT_VERSION == MS_LAYOUT_VERSION, "layout version");
MS_STATIC_ASSERT(MAPSHARE_ACCESS_READ == MS_ACCESS_READ && MAPSHARE_ACCESS_WRITE ==
                 MS_ACCESS_WRITE && MAPSHARE_ACCESS_COPY == MS_ACCESS_COPY, "access codes");
MS_STATIC_ASSERT(MAPSHARE_KIND_CHANNEL == MS_KIND_CHANNEL &&
                 MAPSHARE_KIND_LATEST == MS_KIND_LATEST, "kind codes");
MS_STATIC_ASSERT(MAPSHARE_LIFETIME_SHARED == MS_LIFETIME_SHARED, "lifetime codes");

/* _naming.py */
#define PREFIX "mapshare."
#define DIRECT_MAX 20
/* _options.py INIT_WAIT */
#define INIT_WAIT 2.0
/* _handle.py _RECLAIM_TRIES, _gc.py UNFINISHED_GRACE */
#define RECLAIM_TRIES 3
#define UNFINISHED_GRACE 10.0
/* the binding's default spin (SegmentObject.spin_ns) */
#define DEFAULT_SPIN_NS 50000
/* a link object's user area: <QQ dev, ino, then the path, NUL-terminated (_link.py) */
#define LINK_HEAD 16
#define SHM_DIR "/dev/shm"

struct mapshare_segment {
    ms_segment seg;
    ms_channel ch;
    int ch_bound;
    char name[MAPSHARE_NAME_MAX + 1];
    char osname[MAPSHARE_OS_NAME_MAX];
    char *path;              /* absolute path of the backing file, or NULL */
    int access;
    int unlinked;
    int64_t spin_ns;
    uint64_t dev, ino;       /* the object's identity */
    int has_link;            /* link_dev/link_ino name this segment's link object */
    uint64_t link_dev, link_ino;
    unsigned flags;          /* MS_OBJ_GLOBAL */
    /* An event or semaphore placed in a plain segment (mapshare_event_create_in...):
     * `parent` is that segment's handle (which must outlive this one), `offset` where in
     * its user area; `seg` above stays empty (not attached), so segment calls on such a
     * handle find no header and return MAPSHARE_E_INVALID. */
    mapshare_segment *parent;
    uint64_t offset;
    int placed_kind;         /* MS_KIND_EVENT / MS_KIND_SEMAPHORE when placed */
    /* On a segment: how many placed handles borrow it.  Closing the segment while some
     * do unmaps it but keeps this struct (closed = 1) until the last of them is closed,
     * so that they find no memory (MAPSHARE_E_INVALID, as Python's closed-segment error)
     * instead of a freed pointer. */
    unsigned placed_refs;
    int closed;
    /* The exit path: every handle is on one list until it is freed, so that a program
     * that returns from main (or calls exit) detaches like close() instead of looking
     * like a crashed peer.  owner_pid is the process whose attach-table entry the handle
     * holds (the opener, or a forked child after mapshare_segment_after_fork). */
    struct mapshare_segment *live_prev, *live_next;
    uint32_t owner_pid;
};

struct mapshare_view {
    void *base;
    size_t base_len;
    uint8_t *ptr;
    uint64_t length;
};

/* ---- status ------------------------------------------------------------------------- */

static _Thread_local int last_os_error;

static mapshare_status ret(ms_status st, int err)
{
    if (st != MS_OK)
        last_os_error = err;
    return (mapshare_status)st;
}

int mapshare_last_os_error(void) { return last_os_error; }

const char *mapshare_strerror(int status)
{
    switch (status) {
    case MAPSHARE_OK: return "success";
    case MAPSHARE_E_OS: return "operating system error (see mapshare_last_os_error)";
    case MAPSHARE_E_NOT_FOUND: return "no such segment";
    case MAPSHARE_E_EXISTS: return "a segment of that name already exists";
    case MAPSHARE_E_PERMISSION: return "permission denied";
    case MAPSHARE_E_LAYOUT: return "not a valid mapshare segment of the expected kind "
                                   "(wrong magic or kind, corrupt, never finished, or a "
                                   "name collision)";
    case MAPSHARE_E_TIMEOUT: return "timed out";
    case MAPSHARE_E_OWNER_DIED: return "lock acquired, but its previous owner died while "
                                       "holding it: the data it guards may be inconsistent";
    case MAPSHARE_E_FULL: return "channel is full";
    case MAPSHARE_E_EMPTY: return "channel is empty";
    case MAPSHARE_E_CLOSED: return "end of channel: closed for sending and drained";
    case MAPSHARE_E_TOO_LARGE: return "message is larger than the channel can ever hold";
    case MAPSHARE_E_NOT_OWNER: return "lock is not held by this thread";
    case MAPSHARE_E_NO_SPACE: return "no space left to reserve the storage";
    case MAPSHARE_E_IN_USE: return "the object is in use by another handle";
    case MAPSHARE_E_DESTROYED: return "segment was destroyed";
    case MAPSHARE_E_BROKEN: return "a sender died without closing the channel, and none is "
                                   "left";
    case MAPSHARE_E_FAULT: return "the segment's memory vanished (truncated by another "
                                  "process?)";
    case MAPSHARE_E_INVALID: return "invalid argument";
    case MAPSHARE_E_VALUE: return "semaphore released above its maximum";
    case MAPSHARE_E_ATTACH_LIMIT: return "the attach table is full of live processes";
    case MAPSHARE_E_ALREADY_HELD: return "this thread already holds the lock (locks are not "
                                         "reentrant)";
    case MAPSHARE_E_WINDOW_OPEN: return "a loan or a received view is already open on this "
                                        "channel handle: finish it first";
    case MAPSHARE_E_VERSION: return "unsupported layout version: the segment was made with "
                                    "another mapshare layout version than the one this "
                                    "library reads (MAPSHARE_LAYOUT_VERSION); open it with "
                                    "the mapshare that made it, or upgrade";
    case MAPSHARE_E_BUFFER_TOO_SMALL: return "the message does not fit the buffer (it stays "
                                             "queued)";
    default: return "unknown mapshare status";
    }
}

/* ---- time --------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int64_t timeout_ns(double timeout)
{
    if (timeout < 0 || timeout != timeout)
        return -1;
    if (timeout > 9e9)
        return -1;  /* centuries: forever */
    return (int64_t)(timeout * 1e9);
}

static void wait_opts(const mapshare_segment *s, double timeout, ms_wait_opts *o)
{
    memset(o, 0, sizeof *o);
    o->timeout_ns = timeout_ns(timeout);
    o->spin_ns = s->spin_ns;
}

/* ---- options and names -------------------------------------------------------------- */

void mapshare_options_init(mapshare_options *o)
{
    memset(o, 0, sizeof *o);
    o->path = NULL;
    o->mode = 0600;
    o->lifetime = MAPSHARE_LIFETIME_SHARED;
    o->access = MAPSHARE_ACCESS_WRITE;
    o->kind = MAPSHARE_KIND_SEGMENT;
    o->wait = 0;
    o->init_timeout = INIT_WAIT;
    o->spin = -1;
}

static const mapshare_options *opts_or_default(const mapshare_options *o,
                                               mapshare_options *tmp)
{
    if (o)
        return o;
    mapshare_options_init(tmp);
    return tmp;
}

/* _naming.validate */
int mapshare_name_valid(const char *name)
{
    if (!name)
        return 0;
    size_t n = strlen(name);
    if (n == 0 || n > MAPSHARE_NAME_MAX || name[0] == '.' || name[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

/* _naming.os_name */
mapshare_status mapshare_os_name(const char *name, char *buf, size_t buflen)
{
    if (!mapshare_name_valid(name) || !buf)
        return ret(MS_E_INVALID, 0);
    size_t n = strlen(name);
    char out[MAPSHARE_OS_NAME_MAX];
    if (n <= DIRECT_MAX) {
        memcpy(out, "/" PREFIX, sizeof "/" PREFIX - 1);
        memcpy(out + sizeof "/" PREFIX - 1, name, n + 1);
    } else {
        static const char hex[] = "0123456789abcdef";
        uint8_t digest[6];
        ms_blake2b(name, n, digest, sizeof digest);
        size_t k = sizeof "/" PREFIX - 1;
        memcpy(out, "/" PREFIX, k);
        memcpy(out + k, name, 7);
        k += 7;
        out[k++] = '~';
        for (size_t i = 0; i < sizeof digest; i++) {
            out[k++] = hex[digest[i] >> 4];
            out[k++] = hex[digest[i] & 15];
        }
        out[k] = 0;
    }
    if (strlen(out) + 1 > buflen)
        return ret(MS_E_INVALID, 0);
    memcpy(buf, out, strlen(out) + 1);
    return MAPSHARE_OK;
}

/* _options.check_mode */
static int mode_ok(unsigned mode) { return mode <= 0777 && (mode & 0600) == 0600; }

/* ---- handles ------------------------------------------------------------------------ */

/* Every handle of this process (see struct mapshare_segment).  A spin lock, not a
 * pthread mutex: held for a few pointer writes, and safe to take again in a forked
 * child, whose copy is unlocked unless the fork hit those few instructions. */
static mapshare_segment *live_head;
static int live_lock_word;
static int exit_registered;

static void live_lock(void)
{
    while (__atomic_exchange_n(&live_lock_word, 1, __ATOMIC_ACQUIRE))
        ;
}

static void live_unlock(void) { __atomic_store_n(&live_lock_word, 0, __ATOMIC_RELEASE); }

static void exit_path(void);

static void live_add(mapshare_segment *s)
{
    live_lock();
    s->live_next = live_head;
    if (live_head)
        live_head->live_prev = s;
    live_head = s;
    live_unlock();
    if (!__atomic_exchange_n(&exit_registered, 1, __ATOMIC_ACQ_REL))
        atexit(exit_path);
}

static void live_remove(mapshare_segment *s)
{
    live_lock();
    if (s->live_prev)
        s->live_prev->live_next = s->live_next;
    else if (live_head == s)
        live_head = s->live_next;
    if (s->live_next)
        s->live_next->live_prev = s->live_prev;
    s->live_prev = s->live_next = NULL;
    live_unlock();
}

static void remove_name(mapshare_segment *s);

/* Leave the channel's peer tables and the attach table; the last user of a 'shared'
 * object removes its name.  Nothing is unmapped.  -1 (and nothing done) while a channel
 * loan or view is open.  Shared by close() and the exit path. */
static int detach_handle(mapshare_segment *s)
{
    if (s->ch_bound) {
        if (s->ch.loan_open || s->ch.view_open)
            return -1;
        ms_channel_detach(&s->ch);
        s->ch_bound = 0;
    }
    int last = 0, err = 0;
    if (s->seg.attached && !s->seg.faulted)
        ms_segment_detach(&s->seg, &last, &err);
    s->seg.attached = 0;
    if (last && !s->unlinked) {
        if (!s->path)
            ms_segment_remove_name(&s->seg, s->osname, s->flags, &last, &err);
        else
            remove_name(s);
    }
    return 0;
}

/* Run by exit() (a return from main included), never by _exit or a signal: detach every
 * handle this process still holds, as mapshare_segment_close would, so that peers see a
 * clean detach and the last user of a 'shared' object removes its name -- a program that
 * ends normally is not a dead peer (Python's handles do the same at interpreter exit).
 * Nothing is unmapped or freed: another thread may still be inside a call on a handle
 * until the process ends, and the memory must stay valid for it.  Skipped: handles a
 * forked child inherited and did not adopt (they are its parent's entries), and handles
 * with an open loan or view (a half-written message: left to the peers' dead-process
 * recovery, as a crash would be). */
static void exit_path(void)
{
    uint32_t me = ms_p_pid();
    /* bounded: a forked child whose parent thread held the lock at fork would spin for
     * ever; it then exits as it did before there was an exit path */
    for (long spins = 0; __atomic_exchange_n(&live_lock_word, 1, __ATOMIC_ACQUIRE); spins++)
        if (spins > 100000000L)
            return;
    for (mapshare_segment *s = live_head; s; s = s->live_next) {
        if (s->parent || s->closed || s->owner_pid != me)
            continue;
        if (detach_handle(s) == 0)
            s->unlinked = 1;
    }
    live_unlock();
}

static mapshare_segment *new_handle(const char *name, const char *osname, const mapshare_options *o)
{
    mapshare_segment *s = (mapshare_segment *)calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->seg.obj.handle = MS_NO_HANDLE;
    s->seg.obj.file = MS_NO_HANDLE;
    if (name)
        snprintf(s->name, sizeof s->name, "%s", name);
    if (osname)
        snprintf(s->osname, sizeof s->osname, "%s", osname);
    s->spin_ns = o->spin < 0 ? DEFAULT_SPIN_NS : (int64_t)(o->spin * 1e9);
    s->flags = o->global_namespace ? MS_OBJ_GLOBAL : 0;
    s->owner_pid = ms_p_pid();
    live_add(s);
    return s;
}

static void free_handle(mapshare_segment *s)
{
    if (!s)
        return;
    live_remove(s);
    free(s->path);
    free(s);
}

static char *abs_path(const char *path)
{
#if defined(_WIN32)
    return _strdup(path);
#else
    if (path[0] == '/')
        return strdup(path);
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
        return NULL;
    size_t n = strlen(cwd) + 1 + strlen(path) + 1;
    char *p = (char *)malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", cwd, path);
    return p;
#endif
}

static void fill_ident(mapshare_segment *s)
{
    ms_object_stat st;
    int err = 0;
    if (ms_p_object_stat(&s->seg.obj, &st, &err) == MS_OK) {
        s->dev = st.dev;
        s->ino = st.ino;
    }
}

static ms_kind_init_fn kind_init(int kind) {
    switch (kind) {
    case MS_KIND_EVENT: return ms_event_init;
    case MS_KIND_SEMAPHORE: return ms_semaphore_init;
    case MS_KIND_CHANNEL: return ms_ring_init;
    default: return NULL;
    }
}

/* _gc._age: seconds since the /dev/shm entry was modified (-1: cannot tell). */
static double shm_age(const char *osname)
{
#if defined(_WIN32)
    (void)osname;
    return -1;
#else
    char p[128];
    struct stat st;
    snprintf(p, sizeof p, SHM_DIR "%s", osname);
    if (stat(p, &st) != 0)
        return -1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)(ts.tv_sec - st.st_mtim.tv_sec) +
           (double)(ts.tv_nsec - st.st_mtim.tv_nsec) / 1e9;
#endif
}

/* _gc.reclaim: 1 when the name is free now. */
static int reclaim(const char *osname, unsigned flags)
{
    int result = MS_RECLAIM_KEPT, err = 0;
    ms_status st = ms_segment_reclaim(osname, flags, 0, &result, &err);
    if (st != MS_OK)
        return 0;
    if (result == MS_RECLAIM_UNFINISHED && shm_age(osname) > UNFINISHED_GRACE) {
        if (ms_segment_reclaim(osname, flags, 1, &result, &err) != MS_OK)
            return 0;
    }
    return result == MS_RECLAIM_REMOVED || result == MS_RECLAIM_ABSENT;
}

/* ms_header.name as a C string */
static void header_name(ms_segment *seg, char *out)
{
    uint32_t n = ms_load_relaxed32(&seg->hdr->name_len);
    if (n > MAPSHARE_NAME_MAX)
        n = MAPSHARE_NAME_MAX;
    if (ms_p_guarded_copy(out, seg->hdr->name, n) != MS_OK)
        n = 0;
    out[n] = 0;
}

/* The link object of a file-backed segment (_link.new / _link.fill). */
static ms_status link_create(const char *osname, const char *name, const char *path,
                             unsigned mode, ms_segment *link, int *err)
{
    size_t plen = strlen(path);
    memset(link, 0, sizeof *link);
    link->obj.handle = MS_NO_HANDLE;
    link->obj.file = MS_NO_HANDLE;
    return ms_segment_create(link, osname, NULL, name, MS_KIND_LINK,
                             (uint64_t)(LINK_HEAD + plen + 1 + 4096), mode,
                             MS_LIFETIME_PERSISTENT, 0, NULL, NULL, err);
}

/* Write the identity and path (the path first: an all-zero identity means "being
 * written"), then close the link; its own identity in *ldev and *lino. */
static void link_fill(ms_segment *link, const char *path, uint64_t dev, uint64_t ino,
                      uint64_t *ldev, uint64_t *lino)
{
    size_t plen = strlen(path);
    memcpy(link->data + LINK_HEAD, path, plen + 1);
    uint64_t ident[2] = {dev, ino};
    memcpy(link->data, ident, sizeof ident);  /* little-endian hosts only (as the core) */
    ms_object_stat st;
    int err = 0;
    if (ms_p_object_stat(&link->obj, &st, &err) == MS_OK) {
        *ldev = st.dev;
        *lino = st.ino;
    }
    int last = 0;
    ms_segment_detach(link, &last, &err);
    ms_segment_close(link);
}

/* core_unlink_if_same (binding) */
static int unlink_if_same(const char *osname, unsigned flags, uint64_t dev, uint64_t ino)
{
    ms_object obj;
    ms_object_stat st;
    int err = 0;
    if (ms_p_object_open(osname, NULL, 0, flags, &obj, &err) != MS_OK)
        return 0;
    ms_status s = ms_p_object_stat(&obj, &st, &err);
    ms_p_object_close(&obj);
    if (s != MS_OK || st.dev != dev || st.ino != ino)
        return 0;
    return ms_p_object_unlink(osname, flags, &err) == MS_OK;
}

static void seg_reset(ms_segment *seg);

/* _gc.reclaim_link: the name of a file-backed segment is a persistent link object; it
 * is stale when its file is gone or replaced, or when that segment is 'shared' and every
 * process attached to it died.  Remove such a link (under its meta lock); 1 when the
 * name is free now.  The file itself is data and always stays. */
static int reclaim_link(const char *osname)
{
    ms_segment link, target;
    int err = 0;
    seg_reset(&link);
    ms_status st = ms_segment_open(&link, osname, NULL, MS_KIND_LINK, MS_ACCESS_WRITE, 0, 0,
                                   &err);
    if (st == MS_E_NOT_FOUND)
        return 1;
    if (st != MS_OK)
        return reclaim(osname, 0);  /* not a link: the ordinary rules */
    int stale = 0, done = 0;
    uint64_t ident[2] = {0, 0};
    size_t n = (size_t)link.size;
    char *path = n >= LINK_HEAD ? (char *)malloc(n - LINK_HEAD + 1) : NULL;
    if (!path || ms_p_guarded_copy(ident, link.data, LINK_HEAD) != MS_OK ||
        ms_p_guarded_copy(path, link.data + LINK_HEAD, n - LINK_HEAD) != MS_OK ||
        (ident[0] == 0 && ident[1] == 0))
        done = 1;  /* too short to be a link, faulted, or still being written */
    if (!done) {
        path[n - LINK_HEAD] = 0;
        seg_reset(&target);
        st = ms_segment_open(&target, osname, path, 0, MS_ACCESS_WRITE, 0, 0, &err);
        if (st == MS_E_NOT_FOUND) {
            stale = 1;
        } else if (st == MS_OK) {
            ms_object_stat ts;
            if (ms_p_object_stat(&target.obj, &ts, &err) == MS_OK &&
                (ts.dev != ident[0] || ts.ino != ident[1])) {
                stale = 1;
            } else if (target.lifetime == MS_LIFETIME_SHARED) {
                int removed = 0, empty = 0;
                if (ms_segment_reap(&target, &removed, &empty, &err) == MS_OK)
                    stale = empty;
            }
            ms_segment_close(&target);
        }
    }
    free(path);
    if (stale) {
        int removed = 0;
        ms_segment_remove_name(&link, osname, 0, &removed, &err);
    }
    ms_segment_close(&link);
    return stale;
}

/* ---- create ------------------------------------------------------------------------- */

/* Handle._create */
static mapshare_status create_kind(const char *name, uint32_t kind, uint64_t size,
                                   void *init_arg, const mapshare_options *o,
                                   mapshare_segment **out)
{
    mapshare_options tmp;
    o = opts_or_default(o, &tmp);
    if (!out)
        return ret(MS_E_INVALID, 0);
    *out = NULL;
    char osname[MAPSHARE_OS_NAME_MAX];
    if (mapshare_os_name(name, osname, sizeof osname) != MAPSHARE_OK || !mode_ok(o->mode) ||
        (o->lifetime != MS_LIFETIME_SHARED && o->lifetime != MS_LIFETIME_PERSISTENT))
        return ret(MS_E_INVALID, 0);
    mapshare_segment *s = new_handle(name, osname, o);
    if (!s)
        return ret(MS_E_NO_SPACE, ENOMEM);
    int err = 0;
    ms_status st = MS_E_EXISTS;
    ms_kind_init_fn init = kind_init((int)kind);
    if (o->path == NULL) {
        for (int attempt = 0; attempt < RECLAIM_TRIES; attempt++) {
            st = ms_segment_create(&s->seg, osname, NULL, name, kind, size, o->mode,
                                   (uint32_t)o->lifetime, s->flags, init, init_arg, &err);
            if (st != MS_E_EXISTS)
                break;
            /* an object abandoned by processes that all died is replaced */
            if (!(attempt + 1 < RECLAIM_TRIES && reclaim(osname, s->flags)))
                break;
        }
    } else {
        /* Handle._create_file_backed: the name is a link object to the file */
        s->path = abs_path(o->path);
        if (!s->path) {
            free_handle(s);
            return ret(MS_E_NO_SPACE, ENOMEM);
        }
        ms_segment link;
        for (int attempt = 0; attempt < RECLAIM_TRIES; attempt++) {
            st = link_create(osname, name, s->path, o->mode, &link, &err);
            if (st != MS_E_EXISTS)
                break;
            /* a link left to a file that is gone, or to a segment nobody uses */
            if (!(attempt + 1 < RECLAIM_TRIES && reclaim_link(osname)))
                break;
        }
        if (st == MS_OK) {
            st = ms_segment_create(&s->seg, osname, s->path, name, kind, size, o->mode,
                                   (uint32_t)o->lifetime, 0, init, init_arg, &err);
            if (st != MS_OK) {
                ms_segment_close(&link);
                int e2 = 0;
                ms_p_object_unlink(osname, 0, &e2);
            } else {
                fill_ident(s);
                link_fill(&link, s->path, s->dev, s->ino, &s->link_dev, &s->link_ino);
                s->has_link = 1;
            }
        }
    }
    if (st != MS_OK) {
        free_handle(s);
        return ret(st, err);
    }
    if (!s->dev)
        fill_ident(s);
    s->access = MS_ACCESS_WRITE;
    *out = s;
    return MAPSHARE_OK;
}

mapshare_status mapshare_segment_create(const char *name, uint64_t size,
                                        const mapshare_options *o, mapshare_segment **out)
{
    return create_kind(name, MS_KIND_SEGMENT, size, NULL, o, out);
}

/* ---- open --------------------------------------------------------------------------- */

/* Handle._check_opened */
static ms_status check_opened(mapshare_segment *s, const char *name, int want_kind,
                              int allow_foreign)
{
    char hname[MAPSHARE_NAME_MAX + 1];
    header_name(&s->seg, hname);
    if (strcmp(hname, name) != 0)
        return MS_E_LAYOUT;  /* two names that share an OS name */
    if (want_kind && (int)s->seg.kind != want_kind)
        return MS_E_LAYOUT;
#if !defined(_WIN32)
    if (!allow_foreign) {
        ms_object_stat st;
        int err = 0;
        if (ms_p_object_stat(&s->seg.obj, &st, &err) != MS_OK)
            return MS_E_PERMISSION;
        if (st.uid != ms_p_uid() || (st.mode & 0002))
            return MS_E_PERMISSION;
    }
#else
    (void)allow_foreign;
#endif
    return MS_OK;
}

static void seg_reset(ms_segment *seg)
{
    memset(seg, 0, sizeof *seg);
    seg->obj.handle = MS_NO_HANDLE;
    seg->obj.file = MS_NO_HANDLE;
}

/* Handle._open_once: MS_E_INITIALIZING / MS_E_DESTROYED are retried by the caller. */
static ms_status open_once(mapshare_segment *s, const char *name, const char *path,
                           int acc, unsigned flags, int allow_foreign, int want_kind,
                           int *err)
{
    ms_status st;
    char hname[MAPSHARE_NAME_MAX + 1];
    int by_path = path != NULL;
    seg_reset(&s->seg);
    if (!path) {
        st = ms_segment_open(&s->seg, s->osname, NULL, 0, acc, 0, flags, err);
        if (st != MS_OK)
            return st;
        if (s->seg.kind == MS_KIND_LINK) {
            /* _link.read */
            uint8_t head[LINK_HEAD];
            uint64_t ident[2];
            size_t n = (size_t)s->seg.size;
            if (n < LINK_HEAD + 1) {
                ms_segment_close(&s->seg);
                return MS_E_INITIALIZING;
            }
            char *p = (char *)malloc(n - LINK_HEAD + 1);
            if (!p) {
                ms_segment_close(&s->seg);
                return MS_E_NO_SPACE;
            }
            st = ms_p_guarded_copy(head, s->seg.data, LINK_HEAD);
            if (st == MS_OK)
                st = ms_p_guarded_copy(p, s->seg.data + LINK_HEAD, n - LINK_HEAD);
            p[n - LINK_HEAD] = 0;
            ms_object_stat lst;
            int lerr = 0;
            if (ms_p_object_stat(&s->seg.obj, &lst, &lerr) == MS_OK) {
                s->link_dev = lst.dev;
                s->link_ino = lst.ino;
            }
            ms_segment_close(&s->seg);
            memcpy(ident, head, sizeof ident);
            if (st != MS_OK) {
                free(p);
                return st;
            }
            if (ident[0] == 0 && ident[1] == 0) {
                free(p);
                return MS_E_INITIALIZING;
            }
            seg_reset(&s->seg);
            st = ms_segment_open(&s->seg, s->osname, p, 0, acc, 0, flags, err);
            if (st != MS_OK) {
                free(p);
                return st;
            }
            fill_ident(s);
            if (s->dev != ident[0] || s->ino != ident[1]) {
                free(p);
                ms_segment_close(&s->seg);
                return MS_E_LAYOUT;  /* the file behind the name was replaced */
            }
            free(s->path);
            s->path = p;
            s->has_link = 1;
        }
    } else {
        /* by path: the name (and so the OS name) comes from the file's header */
        ms_segment peek;
        seg_reset(&peek);
        st = ms_segment_open(&peek, "", path, 0, MS_ACCESS_READ, 0, flags, err);
        if (st != MS_OK)
            return st;
        header_name(&peek, hname);
        ms_segment_close(&peek);
        if (name && strcmp(hname, name) != 0)
            return MS_E_LAYOUT;
        name = hname;
        if (mapshare_os_name(name, s->osname, sizeof s->osname) != MAPSHARE_OK)
            return MS_E_LAYOUT;
        snprintf(s->name, sizeof s->name, "%s", name);
        st = ms_segment_open(&s->seg, s->osname, path, 0, acc, 0, flags, err);
        if (st != MS_OK)
            return st;
        free(s->path);
        s->path = abs_path(path);
    }
    st = check_opened(s, name, want_kind, allow_foreign);
    if (st == MS_OK)
        st = ms_segment_attach(&s->seg, err);  /* every opener counts, read-only ones too */
    if (st != MS_OK) {
        ms_segment_close(&s->seg);
        return st;
    }
    fill_ident(s);
    if (by_path && s->path) {
        /* Handle._register_link: a name that went with its last process comes back */
        ms_object_stat ost;
        int e2 = 0;
        if (ms_p_object_stat(&s->seg.obj, &ost, &e2) == MS_OK) {
            ms_segment link;
            if (link_create(s->osname, s->name, s->path, (ost.mode & 0777) | 0600, &link,
                            &e2) == MS_OK) {
                link_fill(&link, s->path, s->dev, s->ino, &s->link_dev, &s->link_ino);
                s->has_link = 1;
            }
        }
    }
    return MS_OK;
}

/* Handle.open: wait for the name (`wait`), then for the creator (`init_timeout`). */
static mapshare_status open_kind(const char *name, int want_kind, int kind_from_opts,
                                 const mapshare_options *o, mapshare_segment **out)
{
    mapshare_options tmp;
    o = opts_or_default(o, &tmp);
    if (!out)
        return ret(MS_E_INVALID, 0);
    *out = NULL;
    if (!name && !o->path)
        return ret(MS_E_INVALID, 0);
    char osname[MAPSHARE_OS_NAME_MAX] = "";
    if (name && mapshare_os_name(name, osname, sizeof osname) != MAPSHARE_OK)
        return ret(MS_E_INVALID, 0);
    int acc = o->access ? o->access : MS_ACCESS_WRITE;
    if (acc != MS_ACCESS_READ && acc != MS_ACCESS_WRITE && acc != MS_ACCESS_COPY)
        return ret(MS_E_INVALID, 0);
    if (kind_from_opts) {
        want_kind = o->kind;
        if (want_kind < 0 || want_kind > (int)MS_KIND_MAX || want_kind == (int)MS_KIND_LINK)
            return ret(MS_E_INVALID, 0);
    }
    if (o->init_timeout < 0 || o->init_timeout != o->init_timeout)
        return ret(MS_E_INVALID, 0);
    unsigned flags = (o->follow_symlinks ? MS_OBJ_FOLLOW_SYMLINKS : 0) |
                     (o->global_namespace ? MS_OBJ_GLOBAL : 0);
    mapshare_segment *s = new_handle(name, osname, o);
    if (!s)
        return ret(MS_E_NO_SPACE, ENOMEM);
    double start = now_s();
    int err = 0;
    ms_status st;
    for (;;) {
        double init_deadline = now_s() + o->init_timeout;
        for (;;) {
            err = 0;
            st = open_once(s, name, o->path, acc, flags, o->allow_foreign, want_kind, &err);
            if (st != MS_E_INITIALIZING && st != MS_E_DESTROYED)
                break;
            if (now_s() >= init_deadline) {
                /* destroyed by its last user: gone; never finished: not a segment */
                st = st == MS_E_DESTROYED ? MS_E_NOT_FOUND : MS_E_LAYOUT;
                break;
            }
            sleep_s(0.005);
        }
        if (st != MS_E_NOT_FOUND)
            break;
        double waited = now_s() - start;
        if (o->wait >= 0 && waited >= o->wait)
            break;
        /* Python sleeps on inotify events of /dev/shm; looking every 5 ms (what it does
         * where there is no inotify) finds the name as surely, a little later. */
        sleep_s(0.005);
    }
    if (st != MS_OK) {
        free_handle(s);
        return ret(st, err);
    }
    s->access = acc;
    *out = s;
    return MAPSHARE_OK;
}

mapshare_status mapshare_segment_open(const char *name, const mapshare_options *o,
                                      mapshare_segment **out)
{
    return open_kind(name, 0, 1, o, out);
}

/* Handle._open_or_create */
static mapshare_status open_or_create_kind(const char *name, uint32_t kind, uint64_t size,
                                           void *init_arg, const mapshare_options *o,
                                           mapshare_segment **out)
{
    mapshare_options tmp;
    o = opts_or_default(o, &tmp);
    if (!out)
        return ret(MS_E_INVALID, 0);
    *out = NULL;
    char osname[MAPSHARE_OS_NAME_MAX];
    if (mapshare_os_name(name, osname, sizeof osname) != MAPSHARE_OK)
        return ret(MS_E_INVALID, 0);
    double deadline = now_s() + o->init_timeout;
    if (!o->path)
        reclaim(osname, o->global_namespace ? MS_OBJ_GLOBAL : 0);
    for (;;) {
        mapshare_options oo = *o;
        oo.path = NULL;
        oo.kind = MAPSHARE_KIND_ANY;
        oo.wait = 0;
        oo.access = MAPSHARE_ACCESS_WRITE;
        oo.init_timeout = deadline - now_s() > 0 ? deadline - now_s() : 0;
        mapshare_segment *s = NULL;
        mapshare_status st = open_kind(name, 0, 1, &oo, &s);
        if (st == MAPSHARE_E_NOT_FOUND && o->path) {
#if !defined(_WIN32)
            struct stat fst;
            if (stat(o->path, &fst) == 0) {
                oo.path = o->path;
                st = open_kind(name, 0, 1, &oo, &s);
                if (st == MAPSHARE_E_NOT_FOUND)
                    continue;
            }
#endif
        }
        if (st == MAPSHARE_E_NOT_FOUND) {
            st = create_kind(name, kind, size, init_arg, o, out);
            if (st == MAPSHARE_E_EXISTS && now_s() < deadline)
                continue;  /* lost the race, or a destroyed one is going away */
            return st;
        }
        if (st != MAPSHARE_OK)
            return st;
        /* Handle._check_same */
        if (s->seg.size != size || s->seg.kind != kind) {
            mapshare_segment_close(s);
            return ret(MS_E_LAYOUT, 0);
        }
        *out = s;
        return MAPSHARE_OK;
    }
}

mapshare_status mapshare_segment_open_or_create(const char *name, uint64_t size,
                                                const mapshare_options *o,
                                                mapshare_segment **out)
{
    return open_or_create_kind(name, MS_KIND_SEGMENT, size, NULL, o, out);
}

/* ---- close and unlink --------------------------------------------------------------- */

/* Handle._find_link: opened by path, the name's link object if it points at our file
 * (a name re-created for another file must not be taken away). */
static void find_link(mapshare_segment *s)
{
    ms_segment link;
    uint64_t ident[2];
    int err = 0;
    seg_reset(&link);
    if (ms_segment_open(&link, s->osname, NULL, MS_KIND_LINK, MS_ACCESS_READ, 0, 0, &err) !=
        MS_OK)
        return;
    ms_object_stat st;
    if (link.size >= LINK_HEAD && ms_p_guarded_copy(ident, link.data, LINK_HEAD) == MS_OK &&
        ident[0] == s->dev && ident[1] == s->ino &&
        ms_p_object_stat(&link.obj, &st, &err) == MS_OK) {
        s->link_dev = st.dev;
        s->link_ino = st.ino;
        s->has_link = 1;
    }
    ms_segment_close(&link);
}

/* Handle._remove_name */
static void remove_name(mapshare_segment *s)
{
    int removed = 0, err = 0;
    if (!s->path) {
        ms_segment_remove_name(&s->seg, s->osname, s->flags, &removed, &err);
        return;
    }
    if (!s->has_link)
        find_link(s);
    if (s->has_link)
        unlink_if_same(s->osname, 0, s->link_dev, s->link_ino);
}

/* Handle.close */
mapshare_status mapshare_segment_close(mapshare_segment *s)
{
    if (!s)
        return MAPSHARE_OK;
    if (s->parent) {  /* placed: the memory is the parent's, nothing is attached */
        mapshare_segment *p = s->parent;
        free_handle(s);
        if (__atomic_sub_fetch(&p->placed_refs, 1, __ATOMIC_ACQ_REL) == 0 && p->closed)
            free_handle(p);
        return MAPSHARE_OK;
    }
    if (s->closed)
        return MAPSHARE_OK;  /* closed already, kept for its placed handles */
    if (detach_handle(s) != 0)
        return ret(MS_E_WINDOW_OPEN, 0);
    ms_segment_close(&s->seg);  /* hdr and data are NULL from now on */
    if (__atomic_load_n(&s->placed_refs, __ATOMIC_ACQUIRE)) {
        s->closed = 1;  /* close must not race with other calls on s (docs: Threads) */
        return MAPSHARE_OK;
    }
    free_handle(s);
    return MAPSHARE_OK;
}

/* Handle.unlink */
mapshare_status mapshare_segment_unlink(mapshare_segment *s)
{
    if (!s)
        return ret(MS_E_INVALID, 0);
    int err = 0;
    if (s->seg.hdr_writable && !s->seg.faulted)
        ms_segment_mark_destroyed(&s->seg, &err);
    remove_name(s);
    s->unlinked = 1;
    return MAPSHARE_OK;
}

mapshare_status mapshare_unlink(const char *name, const mapshare_options *o)
{
    mapshare_options tmp;
    o = opts_or_default(o, &tmp);
    mapshare_options oo = *o;
    oo.kind = MAPSHARE_KIND_ANY;
    oo.wait = 0;
    oo.access = MAPSHARE_ACCESS_WRITE;
    mapshare_segment *s = NULL;
    mapshare_status st = open_kind(name, 0, 1, &oo, &s);
    if (st != MAPSHARE_OK)
        return st;
    mapshare_segment_unlink(s);
    return mapshare_segment_close(s);
}

/* ---- attributes and data ------------------------------------------------------------ */

void *mapshare_segment_data(mapshare_segment *s)
{
    return s && s->seg.size && !s->seg.faulted ? s->seg.data : NULL;
}
uint64_t mapshare_segment_size(const mapshare_segment *s) { return s ? s->seg.size : 0; }
int mapshare_segment_kind(const mapshare_segment *s) { return s ? (int)s->seg.kind : 0; }
int mapshare_segment_lifetime(const mapshare_segment *s)
{
    return s ? (int)s->seg.lifetime : 0;
}
int mapshare_segment_access(const mapshare_segment *s) { return s ? s->access : 0; }
const char *mapshare_segment_name(const mapshare_segment *s) { return s ? s->name : NULL; }
const char *mapshare_segment_os_name(const mapshare_segment *s)
{
    return s ? s->osname : NULL;
}
const char *mapshare_segment_path(const mapshare_segment *s) { return s ? s->path : NULL; }

static ms_status check_range(mapshare_segment *s, uint64_t offset, size_t n)
{
    if (!s || s->seg.faulted)
        return !s ? MS_E_INVALID : MS_E_FAULT;
    if (offset > s->seg.size || n > s->seg.size - offset)
        return MS_E_INVALID;
    return MS_OK;
}

mapshare_status mapshare_segment_read(mapshare_segment *s, uint64_t offset, void *dst,
                                      size_t n)
{
    ms_status st = check_range(s, offset, n);
    if (st != MS_OK || n == 0)
        return ret(st, 0);
    st = ms_p_guarded_copy(dst, s->seg.data + offset, n);
    if (st == MS_E_FAULT)
        ms_segment_fault(&s->seg);
    return ret(st, 0);
}

mapshare_status mapshare_segment_write(mapshare_segment *s, uint64_t offset,
                                       const void *src, size_t n)
{
    ms_status st = check_range(s, offset, n);
    if (st != MS_OK || n == 0)
        return ret(st, 0);
    if (s->access == MS_ACCESS_READ)
        return ret(MS_E_PERMISSION, 0);
    st = ms_p_guarded_copy(s->seg.data + offset, src, n);
    if (st == MS_E_FAULT)
        ms_segment_fault(&s->seg);
    return ret(st, 0);
}

mapshare_status mapshare_segment_flush(mapshare_segment *s, int durable)
{
    if (!s)
        return ret(MS_E_INVALID, 0);
    if (s->seg.faulted)
        return ret(MS_E_FAULT, 0);
    int err = 0;
    ms_status st = MS_OK;
    if (s->access == MS_ACCESS_COPY)
        return MAPSHARE_OK;  /* private pages have nowhere to go */
    if (s->seg.data && s->seg.size)
        st = ms_p_flush(&s->seg.obj, s->seg.data, (size_t)s->seg.size, durable, &err);
    if (st == MS_OK && s->seg.hdr && s->seg.hdr_writable)
        st = ms_p_flush(&s->seg.obj, s->seg.hdr, s->seg.hdr_len, durable, &err);
    return ret(st, err);
}

mapshare_status mapshare_segment_after_fork(mapshare_segment *s)
{
    if (!s)
        return ret(MS_E_INVALID, 0);
    int err = 0;
    ms_status st = ms_segment_after_fork(&s->seg, &err);
    if (st == MS_OK)
        s->owner_pid = ms_p_pid();  /* the child's own entry now: its exit detaches it */
    return ret(st, err);
}

/* ---- views -------------------------------------------------------------------------- */

mapshare_status mapshare_segment_map_view(mapshare_segment *s, uint64_t offset,
                                          uint64_t length, int access, mapshare_view **out)
{
    if (!s || !out)
        return ret(MS_E_INVALID, 0);
    *out = NULL;
    if (s->seg.faulted)
        return ret(MS_E_FAULT, 0);
    if (access == 0)
        access = s->access;
    if (access != MS_ACCESS_READ && access != MS_ACCESS_WRITE && access != MS_ACCESS_COPY)
        return ret(MS_E_INVALID, 0);
    if (access == MS_ACCESS_WRITE && s->access == MS_ACCESS_READ)
        return ret(MS_E_PERMISSION, 0);
    mapshare_view *v = (mapshare_view *)calloc(1, sizeof *v);
    if (!v)
        return ret(MS_E_NO_SPACE, ENOMEM);
    int err = 0;
    ms_status st = ms_segment_map_range(&s->seg, offset, length, access, &v->base,
                                        &v->base_len, &v->ptr, &err);
    if (st != MS_OK) {
        free(v);
        return ret(st, err);
    }
    v->length = length;
    *out = v;
    return MAPSHARE_OK;
}

void *mapshare_view_data(mapshare_view *v) { return v ? v->ptr : NULL; }
uint64_t mapshare_view_size(const mapshare_view *v) { return v ? v->length : 0; }
void mapshare_view_release(mapshare_view *v)
{
    if (!v)
        return;
    ms_p_map_unwatch(v->base);
    ms_p_unmap(v->base, v->base_len);
    free(v);
}

/* ---- change notification ------------------------------------------------------------ */

static ms_status need_header(mapshare_segment *s)
{
    if (!s || !s->seg.hdr)
        return MS_E_INVALID;
    return s->seg.faulted ? MS_E_FAULT : MS_OK;
}

mapshare_status mapshare_segment_notify(mapshare_segment *s)
{
    ms_status st = need_header(s);
    if (st != MS_OK)
        return ret(st, 0);
    if (!s->seg.hdr_writable)
        return ret(MS_E_PERMISSION, 0);
    ms_change_notify(&s->seg);
    return MAPSHARE_OK;
}

uint32_t mapshare_segment_change_count(mapshare_segment *s)
{
    return need_header(s) == MS_OK ? ms_change_count(&s->seg) : 0;
}

mapshare_status mapshare_segment_wait_for_change(mapshare_segment *s, uint32_t since,
                                                 double timeout, uint32_t *now)
{
    ms_status st = need_header(s);
    if (st != MS_OK)
        return ret(st, 0);
    if (!s->seg.hdr_writable)  /* a waiter counts itself in the header */
        return ret(MS_E_PERMISSION, 0);
    ms_wait_opts o;
    wait_opts(s, timeout, &o);
    uint32_t n = 0;
    st = ms_change_wait(&s->seg, since, &o, &n);
    if (now)
        *now = n;
    return ret(st, 0);
}

/* ---- named kinds ----------------------------------------------------------------------
 * Lock, Event, Semaphore and Channel factories take no path= and no access= (Python's
 * have no such keyword): they live in shared memory, opened for writing. */

static const mapshare_options *named_opts(const mapshare_options *o, mapshare_options *tmp)
{
    if (o)
        *tmp = *o;
    else
        mapshare_options_init(tmp);
    tmp->path = NULL;
    tmp->access = MAPSHARE_ACCESS_WRITE;
    return tmp;
}

/* ---- locks -------------------------------------------------------------------------- */

mapshare_status mapshare_lock_create(const char *name, const mapshare_options *o,
                                     mapshare_segment **out)
{
    mapshare_options tmp;
    return create_kind(name, MS_KIND_LOCK, 0, NULL, named_opts(o, &tmp), out);
}

mapshare_status mapshare_lock_open(const char *name, const mapshare_options *o,
                                   mapshare_segment **out)
{
    mapshare_options tmp;
    return open_kind(name, MS_KIND_LOCK, 0, named_opts(o, &tmp), out);
}

mapshare_status mapshare_lock_open_or_create(const char *name, const mapshare_options *o,
                                             mapshare_segment **out)
{
    mapshare_options tmp;
    return open_or_create_kind(name, MS_KIND_LOCK, 0, NULL, named_opts(o, &tmp), out);
}

mapshare_status mapshare_lock_acquire(mapshare_segment *s, double timeout)
{
    ms_status st = need_header(s);
    if (st != MS_OK)
        return ret(st, 0);
    if (!s->seg.hdr_writable)
        return ret(MS_E_PERMISSION, 0);
    ms_wait_opts o;
    wait_opts(s, timeout, &o);
    int err = 0;
    st = ms_lock_acquire(&s->seg, MS_SLOT_USER_LOCK, s->seg.hdr->user_lock, &o, &err);
    return ret(st, err);
}

mapshare_status mapshare_lock_release(mapshare_segment *s)
{
    ms_status st = need_header(s);
    if (st != MS_OK)
        return ret(st, 0);
    if (!s->seg.hdr_writable)
        return ret(MS_E_PERMISSION, 0);
    int err = 0;
    return ret(ms_lock_release(&s->seg, MS_SLOT_USER_LOCK, s->seg.hdr->user_lock, &err), err);
}

/* ---- events ------------------------------------------------------------------------- */

static ms_status sync_error(mapshare_segment *s)
{
    if (s && s->parent) {  /* placed: the parent closed (INVALID) or faulted, else the
                            * wrong kind for the call */
        ms_status st = need_header(s->parent);
        return st != MS_OK ? st : MS_E_INVALID;
    }
    if (!s || !s->seg.hdr)
        return MS_E_INVALID;
    if (s->seg.faulted)
        return MS_E_FAULT;
    return s->seg.hdr_writable ? MS_E_LAYOUT : MS_E_PERMISSION;
}

/* The binding's sync_area: every operation (even is_set) needs a writable header. */
static ms_event *event_of(mapshare_segment *s)
{
    if (s && s->parent)
        return s->placed_kind == MS_KIND_EVENT && need_header(s->parent) == MS_OK
                   ? (ms_event *)(void *)(s->parent->seg.data + s->offset) : NULL;
    if (need_header(s) != MS_OK || s->seg.kind != MS_KIND_EVENT || !s->seg.hdr_writable)
        return NULL;
    return (ms_event *)(void *)s->seg.hdr->kind_area;
}

/* The segment whose wait context an event's or semaphore's word belongs to, and its
 * wait slot: the object's own (named) or the parent's, keyed by the offset as the
 * binding's sync_area does (MS_SLOT_USER_BASE + offset / 8), so that a Python waiter on
 * the same object in the same segment shares the key (Windows named events). */
static ms_segment *sync_seg(mapshare_segment *s, unsigned named_slot, unsigned *slot)
{
    if (s->parent) {
        *slot = MS_SLOT_USER_BASE + (unsigned)(s->offset / 8);
        return &s->parent->seg;
    }
    *slot = named_slot;
    return &s->seg;
}

/* create_in / open_in: the binding's sync_area and Event_new / Semaphore_new checks, in
 * their order, with their statuses (TypeError and ValueError are MAPSHARE_E_INVALID). */
static ms_status place(mapshare_segment *seg, uint64_t offset, int kind, size_t need,
                       int creating, mapshare_segment **out, uint8_t **area)
{
    if (!seg || !out)
        return MS_E_INVALID;
    if (seg->parent || seg->seg.kind != MS_KIND_SEGMENT)
        return MS_E_INVALID;  /* _check_in: only a plain segment's user area */
    ms_status st = need_header(seg);
    if (st != MS_OK)
        return st;
    if (!seg->seg.hdr_writable)
        return MS_E_PERMISSION;
    if (offset % 8 != 0 || offset > seg->seg.size || need > seg->seg.size - offset)
        return MS_E_INVALID;
    if (seg->access != MAPSHARE_ACCESS_WRITE)
        return MS_E_PERMISSION;
    uint8_t *p = seg->seg.data + offset;
    if (!creating) {
        uint32_t want = kind == MS_KIND_EVENT ? MS_EVENT_TAG : MS_SEMAPHORE_TAG;
        if (ms_load32((const uint32_t *)(void *)(p + need - 4)) != want)
            return MS_E_LAYOUT;
    }
    mapshare_segment *h = (mapshare_segment *)calloc(1, sizeof *h);
    if (!h)
        return MS_E_NO_SPACE;
    h->seg.obj.handle = MS_NO_HANDLE;
    h->seg.obj.file = MS_NO_HANDLE;
    memcpy(h->name, seg->name, sizeof h->name);
    memcpy(h->osname, seg->osname, sizeof h->osname);
    h->access = seg->access;
    h->spin_ns = seg->spin_ns;
    h->parent = seg;
    h->offset = offset;
    h->placed_kind = kind;
    __atomic_add_fetch(&seg->placed_refs, 1, __ATOMIC_ACQ_REL);  /* threads may place at once */
    *area = p;
    *out = h;
    return MS_OK;
}

mapshare_status mapshare_event_create_in(mapshare_segment *seg, uint64_t offset,
                                         int initially_set, mapshare_segment **out)
{
    uint8_t *p = NULL;
    mapshare_segment *h = NULL;
    if (out)
        *out = NULL;
    ms_status st = place(seg, offset, MS_KIND_EVENT, sizeof(ms_event), 1, &h, &p);
    if (st != MS_OK)
        return ret(st, 0);
    ms_event_init_at((ms_event *)(void *)p, initially_set ? 1u : 0u);
    if (seg->seg.faulted) {
        mapshare_segment_close(h);  /* drops its count on seg */
        return ret(MS_E_FAULT, 0);
    }
    *out = h;
    return MAPSHARE_OK;
}

mapshare_status mapshare_event_open_in(mapshare_segment *seg, uint64_t offset,
                                       mapshare_segment **out)
{
    uint8_t *p = NULL;
    mapshare_segment *h = NULL;
    if (out)
        *out = NULL;
    ms_status st = place(seg, offset, MS_KIND_EVENT, sizeof(ms_event), 0, &h, &p);
    if (st != MS_OK)
        return ret(st, 0);
    if (ms_load32(&((ms_event *)(void *)p)->state) > 1)
        st = MS_E_LAYOUT;  /* Event_new: "no event at offset ... (state N)" */
    else if (seg->seg.faulted)
        st = MS_E_FAULT;
    if (st != MS_OK) {
        mapshare_segment_close(h);  /* drops its count on seg */
        return ret(st, 0);
    }
    *out = h;
    return MAPSHARE_OK;
}

mapshare_status mapshare_event_create(const char *name, int initially_set,
                                      const mapshare_options *o, mapshare_segment **out)
{
    uint32_t init[2] = {initially_set ? 1u : 0u, 0};
    mapshare_options tmp;
    return create_kind(name, MS_KIND_EVENT, 0, init, named_opts(o, &tmp), out);
}

mapshare_status mapshare_event_open(const char *name, const mapshare_options *o,
                                    mapshare_segment **out)
{
    mapshare_options tmp;
    return open_kind(name, MS_KIND_EVENT, 0, named_opts(o, &tmp), out);
}

mapshare_status mapshare_event_open_or_create(const char *name, int initially_set,
                                              const mapshare_options *o,
                                              mapshare_segment **out)
{
    mapshare_options tmp;
    uint32_t init[2] = {initially_set ? 1u : 0u, 0};
    return open_or_create_kind(name, MS_KIND_EVENT, 0, init, named_opts(o, &tmp), out);
}

mapshare_status mapshare_event_set(mapshare_segment *s)
{
    ms_event *e = event_of(s);
    if (!e)
        return ret(sync_error(s), 0);
    unsigned slot;
    ms_segment *ws = sync_seg(s, MS_SLOT_EVENT, &slot);
    ms_event_set(ws, slot, e);
    return MAPSHARE_OK;
}

mapshare_status mapshare_event_clear(mapshare_segment *s)
{
    ms_event *e = event_of(s);
    if (!e)
        return ret(sync_error(s), 0);
    ms_event_clear(e);
    return MAPSHARE_OK;
}

int mapshare_event_is_set(mapshare_segment *s)
{
    ms_event *e = event_of(s);
    if (!e)
        return -(int)MAPSHARE_E_LAYOUT;
    return ms_event_is_set(e) ? 1 : 0;
}

mapshare_status mapshare_event_wait(mapshare_segment *s, double timeout)
{
    ms_event *e = event_of(s);
    if (!e)
        return ret(sync_error(s), 0);
    ms_wait_opts o;
    wait_opts(s, timeout, &o);
    unsigned slot;
    ms_segment *ws = sync_seg(s, MS_SLOT_EVENT, &slot);
    return ret(ms_event_wait(ws, slot, e, &o), 0);
}

/* ---- semaphores --------------------------------------------------------------------- */

static ms_semaphore *sem_of(mapshare_segment *s)
{
    if (s && s->parent)
        return s->placed_kind == MS_KIND_SEMAPHORE && need_header(s->parent) == MS_OK
                   ? (ms_semaphore *)(void *)(s->parent->seg.data + s->offset) : NULL;
    if (need_header(s) != MS_OK || s->seg.kind != MS_KIND_SEMAPHORE || !s->seg.hdr_writable)
        return NULL;
    return (ms_semaphore *)(void *)s->seg.hdr->kind_area;
}

mapshare_status mapshare_semaphore_create_in(mapshare_segment *seg, uint64_t offset,
                                             uint32_t value, uint32_t maximum,
                                             mapshare_segment **out)
{
    uint8_t *p = NULL;
    mapshare_segment *h = NULL;
    if (out)
        *out = NULL;
    /* Semaphore._init runs before _check_in in Python, both ValueError/TypeError */
    if (maximum == 0 || value > maximum)
        return ret(MS_E_INVALID, 0);
    ms_status st = place(seg, offset, MS_KIND_SEMAPHORE, sizeof(ms_semaphore), 1, &h, &p);
    if (st != MS_OK)
        return ret(st, 0);
    st = ms_semaphore_init_at((ms_semaphore *)(void *)p, value, maximum);
    if (st == MS_OK && seg->seg.faulted)
        st = MS_E_FAULT;
    if (st != MS_OK) {
        mapshare_segment_close(h);  /* drops its count on seg */
        return ret(st, 0);
    }
    *out = h;
    return MAPSHARE_OK;
}

mapshare_status mapshare_semaphore_open_in(mapshare_segment *seg, uint64_t offset,
                                           mapshare_segment **out)
{
    uint8_t *p = NULL;
    mapshare_segment *h = NULL;
    if (out)
        *out = NULL;
    ms_status st = place(seg, offset, MS_KIND_SEMAPHORE, sizeof(ms_semaphore), 0, &h, &p);
    if (st != MS_OK)
        return ret(st, 0);
    ms_semaphore *m = (ms_semaphore *)(void *)p;
    uint32_t v = ms_load32(&m->value), mx = ms_load32(&m->maximum);
    if (mx < 1 || v > mx)
        st = MS_E_LAYOUT;  /* Semaphore_new: "no semaphore at offset ..." */
    else if (seg->seg.faulted)
        st = MS_E_FAULT;
    if (st != MS_OK) {
        mapshare_segment_close(h);  /* drops its count on seg */
        return ret(st, 0);
    }
    *out = h;
    return MAPSHARE_OK;
}

mapshare_status mapshare_semaphore_create(const char *name, uint32_t value, uint32_t maximum,
                                          const mapshare_options *o, mapshare_segment **out)
{
    /* Semaphore.create's checks (conv_value, conv_maximum): 1 <= maximum, value <= it */
    if (maximum == 0 || value > maximum) {  /* Semaphore._init */
        if (out)
            *out = NULL;
        return ret(MS_E_INVALID, 0);
    }
    uint32_t init[2] = {value, maximum};
    mapshare_options tmp;
    return create_kind(name, MS_KIND_SEMAPHORE, 0, init, named_opts(o, &tmp), out);
}

mapshare_status mapshare_semaphore_open(const char *name, const mapshare_options *o,
                                        mapshare_segment **out)
{
    mapshare_options tmp;
    return open_kind(name, MS_KIND_SEMAPHORE, 0, named_opts(o, &tmp), out);
}

mapshare_status mapshare_semaphore_open_or_create(const char *name, uint32_t value,
                                                  uint32_t maximum,
                                                  const mapshare_options *o,
                                                  mapshare_segment **out)
{
    if (maximum == 0 || value > maximum) {  /* Semaphore._init */
        if (out)
            *out = NULL;
        return ret(MS_E_INVALID, 0);
    }
    mapshare_options tmp;
    uint32_t init[2] = {value, maximum};
    return open_or_create_kind(name, MS_KIND_SEMAPHORE, 0, init, named_opts(o, &tmp), out);
}

mapshare_status mapshare_semaphore_acquire(mapshare_segment *s, double timeout)
{
    ms_semaphore *m = sem_of(s);
    if (!m)
        return ret(sync_error(s), 0);
    ms_wait_opts o;
    wait_opts(s, timeout, &o);
    unsigned slot;
    ms_segment *ws = sync_seg(s, MS_SLOT_SEMAPHORE, &slot);
    return ret(ms_semaphore_acquire(ws, slot, m, &o), 0);
}

mapshare_status mapshare_semaphore_release(mapshare_segment *s, uint32_t n)
{
    ms_semaphore *m = sem_of(s);
    if (!m)
        return ret(sync_error(s), 0);
    if (n == 0)
        return ret(MS_E_INVALID, 0);
    unsigned slot;
    ms_segment *ws = sync_seg(s, MS_SLOT_SEMAPHORE, &slot);
    return ret(ms_semaphore_release(ws, slot, m, n), 0);
}

uint32_t mapshare_semaphore_value(mapshare_segment *s)
{
    ms_semaphore *m = sem_of(s);
    return m ? ms_load32(&m->value) : 0;
}

/* ---- channels ----------------------------------------------------------------------- */

/* Channel._capacity: >= 64 bytes, rounded up to a multiple of 8 */
mapshare_status mapshare_channel_create(const char *name, uint64_t capacity,
                                        const mapshare_options *o, mapshare_segment **out)
{
    if (capacity < 64 || capacity > UINT64_MAX - 7) {
        if (out)
            *out = NULL;
        return ret(MS_E_INVALID, 0);
    }
    mapshare_options tmp;
    return create_kind(name, MS_KIND_CHANNEL, (capacity + 7) / 8 * 8, NULL,
                       named_opts(o, &tmp), out);
}

mapshare_status mapshare_channel_open(const char *name, const mapshare_options *o,
                                      mapshare_segment **out)
{
    mapshare_options tmp;
    return open_kind(name, MS_KIND_CHANNEL, 0, named_opts(o, &tmp), out);
}

mapshare_status mapshare_channel_open_or_create(const char *name, uint64_t capacity,
                                                const mapshare_options *o,
                                                mapshare_segment **out)
{
    if (capacity < 64 || capacity > UINT64_MAX - 7) {
        if (out)
            *out = NULL;
        return ret(MS_E_INVALID, 0);
    }
    mapshare_options tmp;
    return open_or_create_kind(name, MS_KIND_CHANNEL, (capacity + 7) / 8 * 8, NULL,
                               named_opts(o, &tmp), out);
}

static ms_status channel_of(mapshare_segment *s, ms_channel **ch)
{
    ms_status st = need_header(s);
    if (st != MS_OK)
        return st;
    if (s->seg.kind != MS_KIND_CHANNEL)
        return MS_E_LAYOUT;
    if (!s->seg.hdr_writable || s->seg.access != MS_ACCESS_WRITE)
        return MS_E_PERMISSION;
    if (!s->ch_bound) {
        st = ms_channel_bind(&s->ch, &s->seg);
        if (st != MS_OK)
            return st;
        s->ch_bound = 1;
    }
    *ch = &s->ch;
    return MS_OK;
}

mapshare_status mapshare_channel_send(mapshare_segment *s, const void *data, size_t n,
                                      double timeout)
{
    ms_channel *ch;
    ms_status st = channel_of(s, &ch);
    if (st != MS_OK)
        return ret(st, 0);
    if (ch->loan_open || ch->view_open)
        return ret(MS_E_WINDOW_OPEN, 0);
    if (!data && n)
        return ret(MS_E_INVALID, 0);
    ms_wait_opts o;
    wait_opts(s, timeout, &o);
    return ret(ms_channel_send(ch, data ? data : "", n, &o), 0);
}

mapshare_status mapshare_channel_view(mapshare_segment *s, const void **ptr, size_t *len,
                                      double timeout)
{
    ms_channel *ch;
    ms_status st = channel_of(s, &ch);
    if (st != MS_OK)
        return ret(st, 0);
    if (!ptr || !len)
        return ret(MS_E_INVALID, 0);
    if (ch->loan_open || ch->view_open)
        return ret(MS_E_WINDOW_OPEN, 0);
    ms_wait_opts o;
    wait_opts(s, timeout, &o);
    const uint8_t *p = NULL;
    size_t n = 0;
    st = ms_channel_peek(ch, &p, &n, &o);
    if (st != MS_OK)
        return ret(st, 0);
    *ptr = p;
    *len = n;
    return MAPSHARE_OK;
}

mapshare_status mapshare_channel_view_release(mapshare_segment *s, int consume)
{
    ms_channel *ch;
    ms_status st = channel_of(s, &ch);
    if (st != MS_OK)
        return ret(st, 0);
    if (!ch->view_open)
        return ret(MS_E_INVALID, 0);
    return ret(consume ? ms_channel_consume(ch) : ms_channel_unconsume(ch), 0);
}

mapshare_status mapshare_channel_receive(mapshare_segment *s, void *buf, size_t cap,
                                         size_t *len, double timeout)
{
    const void *p;
    size_t n;
    if (!len || (!buf && cap))
        return ret(MS_E_INVALID, 0);
    mapshare_status st = mapshare_channel_view(s, &p, &n, timeout);
    if (st != MAPSHARE_OK)
        return st;
    *len = n;
    if (n > cap) {
        ms_channel_unconsume(&s->ch);
        return ret((ms_status)MAPSHARE_E_BUFFER_TOO_SMALL, 0);
    }
    ms_status cs = n ? ms_p_guarded_copy(buf, p, n) : MS_OK;
    if (cs != MS_OK) {
        ms_channel_unconsume(&s->ch);
        ms_segment_fault(&s->seg);
        return ret(cs, 0);
    }
    return ret(ms_channel_consume(&s->ch), 0);
}

mapshare_status mapshare_channel_loan(mapshare_segment *s, size_t n, void **ptr,
                                      double timeout)
{
    ms_channel *ch;
    ms_status st = channel_of(s, &ch);
    if (st != MS_OK)
        return ret(st, 0);
    if (!ptr)
        return ret(MS_E_INVALID, 0);
    if (ch->loan_open || ch->view_open)
        return ret(MS_E_WINDOW_OPEN, 0);
    ms_wait_opts o;
    wait_opts(s, timeout, &o);
    uint8_t *p = NULL;
    st = ms_channel_loan(ch, n, &p, &o);
    if (st == MS_OK)
        *ptr = p;
    return ret(st, 0);
}

mapshare_status mapshare_channel_commit(mapshare_segment *s, size_t used)
{
    ms_channel *ch;
    ms_status st = channel_of(s, &ch);
    if (st != MS_OK)
        return ret(st, 0);
    if (!ch->loan_open || used > ch->loan_size)
        return ret(MS_E_INVALID, 0);
    return ret(ms_channel_commit(ch, used), 0);
}

mapshare_status mapshare_channel_abort(mapshare_segment *s)
{
    ms_channel *ch;
    ms_status st = channel_of(s, &ch);
    if (st != MS_OK)
        return ret(st, 0);
    if (!ch->loan_open)
        return ret(MS_E_INVALID, 0);
    return ret(ms_channel_abort(ch), 0);
}

int mapshare_channel_message_kind(const mapshare_segment *s)
{
    return s && s->ch_bound ? (int)s->ch.view_kind : 0;
}

mapshare_status mapshare_channel_close_sending(mapshare_segment *s)
{
    ms_channel *ch;
    ms_status st = channel_of(s, &ch);
    if (st != MS_OK)
        return ret(st, 0);
    return ret(ms_channel_close_sending(ch), 0);
}

mapshare_status mapshare_channel_statistics(mapshare_segment *s, mapshare_channel_stats *out)
{
    ms_channel *ch;
    ms_status st = channel_of(s, &ch);
    if (st != MS_OK)
        return ret(st, 0);
    if (!out)
        return ret(MS_E_INVALID, 0);
    ms_channel_stats cs;
    memset(&cs, 0, sizeof cs);
    ms_channel_statistics(ch, &cs);
    memset(out, 0, sizeof *out);
    out->capacity = cs.capacity;
    out->max_message = cs.max_message;
    out->queued_bytes = cs.queued_bytes;
    out->queued_messages = cs.queued_messages_estimate;
    out->sent_messages = cs.sent_messages;
    out->sent_bytes = cs.sent_bytes;
    out->received_messages = cs.received_messages;
    out->received_bytes = cs.received_bytes;
    out->high_water = cs.high_water;
    out->redelivered = cs.redelivered;
    out->abandoned = cs.abandoned;
    out->sender_deaths = cs.sender_deaths;
    out->senders_alive = cs.senders_alive;
    out->receivers_alive = cs.receivers_alive;
    out->send_waiters = cs.send_waiters;
    out->recv_waiters = cs.recv_waiters;
    out->closed = cs.closed;
    return MAPSHARE_OK;
}

/* ---- waiting on several objects (Python: mapshare.wait) ------------------------------ */

/* What a predicate needs besides the object, per item (csrc/binding/wait.c). */
typedef union {
    ms_change_since change;
    ms_channel_waitarg channel;
} wait_store;

/* One item as the binding's fill() turns it into an ms_waitable: the kind of the handle
 * says what is waited for; *owner gets the handle whose segment the word lives in. */
static ms_status wait_fill(const mapshare_wait_item *it, ms_waitable *w, wait_store *store,
                           mapshare_segment **owner)
{
    mapshare_segment *s = it->object;
    memset(w, 0, sizeof *w);  /* fillers that know only the spec's fields leave mark NULL */
    if (!s)
        return MS_E_INVALID;
    if (s->parent) {  /* placed event or semaphore: the parent's segment and its slot */
        ms_status st = need_header(s->parent);
        if (st != MS_OK)
            return st;
        unsigned slot;
        ms_segment *ws = sync_seg(s, 0, &slot);
        if (s->placed_kind == MS_KIND_EVENT)
            ms_event_waitable(ws, slot, event_of(s), w);
        else
            ms_semaphore_waitable(ws, slot, sem_of(s), w);
        *owner = s->parent;
        return MS_OK;
    }
    ms_status st = need_header(s);
    if (st != MS_OK)
        return st;
    *owner = s;
    switch (s->seg.kind) {
    case MS_KIND_EVENT:
        if (!event_of(s))
            return sync_error(s);
        ms_event_waitable(&s->seg, MS_SLOT_EVENT, event_of(s), w);
        return MS_OK;
    case MS_KIND_SEMAPHORE:
        if (!sem_of(s))
            return sync_error(s);
        ms_semaphore_waitable(&s->seg, MS_SLOT_SEMAPHORE, sem_of(s), w);
        return MS_OK;
    case MS_KIND_CHANNEL: {
        ms_channel *ch = NULL;
        st = channel_of(s, &ch);
        if (st != MS_OK)
            return st;
        if (ch->loan_open || ch->view_open)
            return MS_E_WINDOW_OPEN;  /* the handle is busy: as for its own receive */
        ms_channel_waitable(ch, &store->channel, w);
        return MS_OK;
    }
    case MS_KIND_LOCK:
        return MS_E_INVALID;  /* a lock is acquired, not waited on (Python: TypeError) */
    default:
        /* a segment (of any other kind, as Python's Segment handle): its change count
         * differs from `since` */
        if (!s->seg.hdr_writable)  /* the waiter counts itself in the header */
            return MS_E_PERMISSION;
        ms_change_waitable(&s->seg, &store->change, it->since, w);
        return MS_OK;
    }
}

/* A segment waited on for a change (where `since` matters), not an event, semaphore or
 * channel. */
static int is_change_item(const mapshare_segment *s)
{
    return s && !s->parent && s->seg.kind != MS_KIND_EVENT &&
           s->seg.kind != MS_KIND_SEMAPHORE && s->seg.kind != MS_KIND_CHANNEL;
}

mapshare_status mapshare_wait_any(const mapshare_wait_item *items, size_t n, double timeout,
                                  uint8_t *ready)
{
    if (!items || !ready || n == 0)
        return ret(MS_E_INVALID, 0);
    memset(ready, 0, n);
    for (size_t i = 0; i < n; i++)  /* Python: "objects[i] is listed twice" */
        for (size_t j = 0; j < i; j++)
            if (items[i].object == items[j].object &&
                (items[i].since == items[j].since || !is_change_item(items[i].object)))
                return ret(MS_E_INVALID, 0);
    ms_waitable *w = (ms_waitable *)calloc(n, sizeof *w);
    wait_store *store = (wait_store *)calloc(n, sizeof *store);
    mapshare_segment **owners = (mapshare_segment **)calloc(n, sizeof *owners);
    ms_status st = MS_OK;
    if (!w || !store || !owners) {
        st = MS_E_NO_SPACE;
        goto done;
    }
    ms_wait_opts o;
    memset(&o, 0, sizeof o);
    o.timeout_ns = timeout_ns(timeout);
    for (size_t i = 0; i < n; i++) {
        st = wait_fill(&items[i], &w[i], &store[i], &owners[i]);
        if (st != MS_OK)
            goto done;
        if (items[i].object->spin_ns > o.spin_ns)  /* the longest spin of them (binding) */
            o.spin_ns = items[i].object->spin_ns;
    }
    st = ms_wait_any(w, n, &o, ready);
    for (size_t i = 0; i < n; i++)
        if (owners[i]->seg.faulted)
            st = MS_E_FAULT;
    if (st != MS_OK)
        memset(ready, 0, n);
done:
    free(w);
    free(store);
    free(owners);
    return ret(st, 0);
}
