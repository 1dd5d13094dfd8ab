/* mapshare.h -- the public C API of mapshare (libmapshare).
 *
 * Named shared memory and memory-mapped files for IPC, with the same objects, names,
 * options and on-memory layout as the Python package `mapshare`: a segment created here
 * is opened there by the same name, and the other way round.  docs/c-api.md is the
 * manual (build, link, every function, errors, threads, fork); docs/design/ is the
 * protocol this library implements.
 *
 * Conventions (every function):
 *   - every name starts with mapshare_ / MAPSHARE_;
 *   - functions that can fail return a mapshare_status; MAPSHARE_OK (0) is success and
 *     mapshare_strerror() gives a status's text; results come back through pointers;
 *   - when a status came from the OS (MAPSHARE_E_OS and a few others),
 *     mapshare_last_os_error() gives the errno of the calling thread's last such failure;
 *   - timeouts are seconds as a double: MAPSHARE_FOREVER (any negative value) waits
 *     without limit, 0 does not wait;
 *   - handles are opaque; every handle is closed with the function named for it.
 *
 * The header is plain C99 and C++ (no C11/C++ features needed); it includes only
 * <stddef.h> and <stdint.h>.
 */
#ifndef MAPSHARE_H
#define MAPSHARE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Exported symbols of the shared library (nothing to define when linking statically on
 * POSIX; on Windows define MAPSHARE_STATIC when linking the static library). */
#if defined(_WIN32) && !defined(MAPSHARE_STATIC)
#  ifdef MAPSHARE_BUILDING
#    define MAPSHARE_API __declspec(dllexport)
#  else
#    define MAPSHARE_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define MAPSHARE_API __attribute__((visibility("default")))
#else
#  define MAPSHARE_API
#endif

/* The on-memory layout version this library reads and writes (the header's `version`
 * field).  A segment carrying any other version is refused with MAPSHARE_E_VERSION. */
#define MAPSHARE_LAYOUT_VERSION 2

/* Version of this API: MAJOR * 10000 + MINOR * 100 + PATCH.  Functions are only ever
 * added; a name, once published, keeps its meaning. */
#define MAPSHARE_API_VERSION 100

/* ---- status codes ------------------------------------------------------------------
 * The values are those of the C core (csrc/status.h) and each one means exactly what
 * the Python exception of the same status means (docs/errors.md).  Gaps are statuses
 * internal to the core that never reach a caller. */
typedef enum mapshare_status {
    MAPSHARE_OK = 0,
    MAPSHARE_E_OS = 1,             /* an OS call failed: mapshare_last_os_error() */
    MAPSHARE_E_NOT_FOUND = 2,      /* no object of that name (or no file at that path) */
    MAPSHARE_E_EXISTS = 3,         /* exclusive creation found the name taken */
    MAPSHARE_E_PERMISSION = 4,     /* access refused: by the OS, or by mapshare's owner and
                                    * mode checks (see allow_foreign) */
    MAPSHARE_E_LAYOUT = 5,         /* not a valid mapshare object of the expected kind:
                                    * wrong magic, wrong kind, corrupt, never finished, or
                                    * two names that share an OS name */
    MAPSHARE_E_TIMEOUT = 6,        /* the timeout passed */
    MAPSHARE_E_OWNER_DIED = 8,     /* the lock IS acquired, but its previous holder died
                                    * holding it: the data it guards may be half-written */
    MAPSHARE_E_FULL = 9,           /* channel full (timeout 0) */
    MAPSHARE_E_EMPTY = 10,         /* channel empty (timeout 0) */
    MAPSHARE_E_CLOSED = 11,        /* end of channel: closed for sending and drained */
    MAPSHARE_E_TOO_LARGE = 12,     /* message larger than the channel can ever hold */
    MAPSHARE_E_NOT_OWNER = 13,     /* release of a lock this thread does not hold */
    MAPSHARE_E_NO_SPACE = 14,      /* storage could not be reserved (full /dev/shm, disk) */
    MAPSHARE_E_IN_USE = 15,        /* another handle is removing the object */
    MAPSHARE_E_DESTROYED = 17,     /* the object was destroyed by its last user meanwhile */
    MAPSHARE_E_BROKEN = 18,        /* a sender died without closing the channel, and no
                                    * sender is left (reported once per death) */
    MAPSHARE_E_FAULT = 19,         /* the memory vanished (object truncated by another
                                    * process) */
    MAPSHARE_E_INVALID = 20,       /* invalid argument (name, size, offset, option...) */
    MAPSHARE_E_VALUE = 21,         /* a semaphore released above its maximum */
    MAPSHARE_E_ATTACH_LIMIT = 22,  /* the attach table is full of live processes */
    MAPSHARE_E_ALREADY_HELD = 23,  /* this thread already holds the lock (not reentrant) */
    MAPSHARE_E_WINDOW_OPEN = 25,   /* a loan or a received view is already open on this
                                    * channel handle: finish it first */
    MAPSHARE_E_VERSION = 29,       /* the segment was made by another (newer) layout
                                    * version than MAPSHARE_LAYOUT_VERSION: upgrade */
    /* C API only (no core status): */
    MAPSHARE_E_BUFFER_TOO_SMALL = 100 /* mapshare_channel_receive: the next message does
                                       * not fit the buffer; it stays queued and *len says
                                       * how large it is */
} mapshare_status;

/* The text of a status ("end of channel: closed for sending and drained"); never NULL,
 * static storage.  Unknown codes give "unknown mapshare status". */
MAPSHARE_API const char *mapshare_strerror(int status);

/* errno (Windows: GetLastError()) of this thread's last failure that came from the OS,
 * 0 if none did.  Meaningful right after a call that returned an error. */
MAPSHARE_API int mapshare_last_os_error(void);

/* ---- options ------------------------------------------------------------------------ */

#define MAPSHARE_FOREVER (-1.0)

/* access (mapshare_options.access, mapshare_segment_map_view) */
#define MAPSHARE_ACCESS_READ  1   /* "r": read-only, the mapping is PROT_READ */
#define MAPSHARE_ACCESS_WRITE 2   /* "rw" (default) */
#define MAPSHARE_ACCESS_COPY  3   /* "copy": copy-on-write, writes stay private */

/* lifetime (mapshare_options.lifetime) */
#define MAPSHARE_LIFETIME_PERSISTENT 1  /* "persistent": exists until unlinked */
#define MAPSHARE_LIFETIME_SHARED     2  /* "shared" (default): removed when the last
                                         * attached process closes it or dies */

/* kinds of object (mapshare_segment_kind, mapshare_options.kind) */
#define MAPSHARE_KIND_ANY       0  /* open: accept any kind (writing may corrupt it) */
#define MAPSHARE_KIND_SEGMENT   1
#define MAPSHARE_KIND_LOCK      2
#define MAPSHARE_KIND_EVENT     3
#define MAPSHARE_KIND_SEMAPHORE 4
#define MAPSHARE_KIND_CHANNEL   5
#define MAPSHARE_KIND_TOPIC     7
#define MAPSHARE_KIND_ARRAY     8
#define MAPSHARE_KIND_LATEST    9

/* Longest logical name, and the size of a buffer that holds any OS name. */
#define MAPSHARE_NAME_MAX    255
#define MAPSHARE_OS_NAME_MAX 64

/* The keywords of Python's factories, one field each; fill with mapshare_options_init()
 * and change what you need.  NULL options mean the defaults.  A field that does not
 * apply to a call is ignored only where Python has no such keyword either (documented
 * per call). */
typedef struct mapshare_options {
    const char *path;      /* create: back it by a new file at this path (created
                            * exclusively, never through a symlink); open: open the
                            * segment by the path of its backing file.  NULL: shm */
    unsigned mode;         /* create: permission bits, default 0600; must include 0600 */
    int lifetime;          /* create: MAPSHARE_LIFETIME_*, default SHARED */
    int access;            /* open: MAPSHARE_ACCESS_*, default WRITE (segments only) */
    int kind;              /* mapshare_segment_open: the kind insisted on, default
                            * MAPSHARE_KIND_SEGMENT; MAPSHARE_KIND_ANY accepts any */
    int allow_foreign;     /* open: accept an object owned by another user or writable
                            * by everyone (refused by default: MAPSHARE_E_PERMISSION) */
    int follow_symlinks;   /* open with path: allow the last component to be a symlink */
    int global_namespace;  /* Windows Global\ names; ignored elsewhere (as in Python) */
    double wait;           /* open: seconds to wait for the name to appear; default 0
                            * (don't), MAPSHARE_FOREVER: no limit */
    double init_timeout;   /* open: seconds to wait for a creator still writing the
                            * header, default 2.0 (then MAPSHARE_E_LAYOUT) */
    double spin;           /* seconds a blocked wait busy-waits before sleeping;
                            * negative (default): the library's default */
} mapshare_options;

/* Fill `o` with the defaults above (the same as Python's). */
MAPSHARE_API void mapshare_options_init(mapshare_options *o);

/* ---- names -------------------------------------------------------------------------- */

/* 1 if `name` is a valid logical name (1 to 255 characters from A-Z a-z 0-9 . _ -, not
 * starting with '.' or '-'), else 0. */
MAPSHARE_API int mapshare_name_valid(const char *name);

/* The OS name of a logical name, exactly as Python's mapshare computes it:
 * "/mapshare.<name>" up to 20 characters, else "/mapshare.<first 7>~<12 hex digits of
 * BLAKE2b-48(name)>".  buf must hold MAPSHARE_OS_NAME_MAX bytes.
 * MAPSHARE_E_INVALID for an invalid name or a short buffer. */
MAPSHARE_API mapshare_status mapshare_os_name(const char *name, char *buf, size_t buflen);

/* ---- segments ------------------------------------------------------------------------
 * One handle type for every kind: a named lock, event, semaphore or channel is a
 * segment of that kind.  A handle belongs to the process that opened it. */
typedef struct mapshare_segment mapshare_segment;

/* Create a new segment of `size` bytes, exclusively (MAPSHARE_E_EXISTS if the name is
 * taken by a live object; a 'shared' one abandoned by processes that all died is
 * reclaimed and created anew, as Python does).  Options: path, mode, lifetime,
 * global_namespace, spin.  Storage is reserved now (MAPSHARE_E_NO_SPACE). */
MAPSHARE_API mapshare_status mapshare_segment_create(const char *name, uint64_t size,
                                                     const mapshare_options *o,
                                                     mapshare_segment **out);

/* Open an existing segment by name (or by options->path when name is NULL; with both,
 * the file must hold that name).  Options: path, access, kind, allow_foreign,
 * follow_symlinks, global_namespace, wait, init_timeout, spin.
 * MAPSHARE_E_NOT_FOUND (after `wait`), MAPSHARE_E_LAYOUT (wrong kind, never finished,
 * name collision), MAPSHARE_E_VERSION, MAPSHARE_E_PERMISSION (foreign owner). */
MAPSHARE_API mapshare_status mapshare_segment_open(const char *name,
                                                   const mapshare_options *o,
                                                   mapshare_segment **out);

/* Open `name` if it exists, else create it; safe when many processes race.
 * MAPSHARE_E_LAYOUT if the existing one differs in size or kind. */
MAPSHARE_API mapshare_status mapshare_segment_open_or_create(const char *name,
                                                             uint64_t size,
                                                             const mapshare_options *o,
                                                             mapshare_segment **out);

/* Detach and free the handle (NULL is ignored).  A 'shared' object whose last user
 * this was is destroyed and its name removed.  Mappings made with
 * mapshare_segment_map_view stay valid until released.  Returns MAPSHARE_E_WINDOW_OPEN
 * (and closes nothing) while a channel loan or view is open on it.  Closing does not
 * release a lock this thread holds (Python refuses to close then): release it first,
 * or other processes wait until this one exits and then get MAPSHARE_E_OWNER_DIED. */
MAPSHARE_API mapshare_status mapshare_segment_close(mapshare_segment *seg);

/* Remove the segment's name now (any lifetime): new opens fail; handles already open
 * keep working.  The handle stays open (close it as usual). */
MAPSHARE_API mapshare_status mapshare_segment_unlink(mapshare_segment *seg);

/* Remove the name `name` (of a persistent object, typically) without opening it.
 * Options: path (a file-backed segment's file is data: only its name is removed),
 * global_namespace.  MAPSHARE_E_NOT_FOUND if there is no such name. */
MAPSHARE_API mapshare_status mapshare_unlink(const char *name, const mapshare_options *o);

/* The user area: `mapshare_segment_size` bytes (NULL when the size is 0 or for kinds
 * without one).  Read-only memory for access READ: writing it faults. */
MAPSHARE_API void *mapshare_segment_data(mapshare_segment *seg);
MAPSHARE_API uint64_t mapshare_segment_size(const mapshare_segment *seg);
MAPSHARE_API int mapshare_segment_kind(const mapshare_segment *seg);
MAPSHARE_API int mapshare_segment_lifetime(const mapshare_segment *seg);
MAPSHARE_API int mapshare_segment_access(const mapshare_segment *seg);
MAPSHARE_API const char *mapshare_segment_name(const mapshare_segment *seg);
MAPSHARE_API const char *mapshare_segment_os_name(const mapshare_segment *seg);
/* The backing file's absolute path, NULL for shared memory. */
MAPSHARE_API const char *mapshare_segment_path(const mapshare_segment *seg);

/* Copy in or out of the user area with bounds checks; MAPSHARE_E_FAULT instead of a
 * crash if the memory vanished (the object was truncated by another process). */
MAPSHARE_API mapshare_status mapshare_segment_read(mapshare_segment *seg, uint64_t offset,
                                                   void *dst, size_t n);
MAPSHARE_API mapshare_status mapshare_segment_write(mapshare_segment *seg, uint64_t offset,
                                                    const void *src, size_t n);

/* Write modified pages of a file-backed segment back to its file; durable != 0 also
 * waits for stable storage (fsync).  Shared memory: MAPSHARE_OK. */
MAPSHARE_API mapshare_status mapshare_segment_flush(mapshare_segment *seg, int durable);

/* In a forked child, before using a handle the parent opened: count it for the child
 * (else the child's use does not keep a 'shared' segment alive).  See docs/c-api.md. */
MAPSHARE_API mapshare_status mapshare_segment_after_fork(mapshare_segment *seg);

/* ---- views: a separate mapping of any range (MapViewOfFile) ---------------------------- */
typedef struct mapshare_view mapshare_view;

/* Map `length` bytes at `offset` of the user area (any offset: alignment is handled
 * inside).  access: 0 = the handle's, or MAPSHARE_ACCESS_READ / _COPY (narrowing; WRITE
 * on a read-only handle is MAPSHARE_E_PERMISSION).  The view outlives its segment
 * handle: release it with mapshare_view_release. */
MAPSHARE_API mapshare_status mapshare_segment_map_view(mapshare_segment *seg,
                                                       uint64_t offset, uint64_t length,
                                                       int access, mapshare_view **out);
MAPSHARE_API void *mapshare_view_data(mapshare_view *v);
MAPSHARE_API uint64_t mapshare_view_size(const mapshare_view *v);
MAPSHARE_API void mapshare_view_release(mapshare_view *v);

/* ---- change notification -------------------------------------------------------------- */

/* Bump the change counter and wake every process waiting for a change. */
MAPSHARE_API mapshare_status mapshare_segment_notify(mapshare_segment *seg);
/* The change counter (32 bits, wraps). */
MAPSHARE_API uint32_t mapshare_segment_change_count(mapshare_segment *seg);
/* Wait until the counter differs from `since`; *now (may be NULL) gets its value.
 * Read the counter before the data, then wait with it: no notify is lost. */
MAPSHARE_API mapshare_status mapshare_segment_wait_for_change(mapshare_segment *seg,
                                                              uint32_t since,
                                                              double timeout,
                                                              uint32_t *now);

/* ---- robust locks ------------------------------------------------------------------------
 * Every segment has a built-in lock (Python: Segment.lock()); a named lock is a segment
 * of kind LOCK (mapshare_lock_create / _open).  Not reentrant; owned by a thread.
 * MAPSHARE_E_OWNER_DIED means ACQUIRED: the previous holder died holding it. */
MAPSHARE_API mapshare_status mapshare_lock_create(const char *name,
                                                  const mapshare_options *o,
                                                  mapshare_segment **out);
MAPSHARE_API mapshare_status mapshare_lock_open(const char *name, const mapshare_options *o,
                                                mapshare_segment **out);
/* Open the named lock, or create it (Python: Lock.open_or_create); the same for the
 * other named kinds below.  Options as for create and open. */
MAPSHARE_API mapshare_status mapshare_lock_open_or_create(const char *name,
                                                          const mapshare_options *o,
                                                          mapshare_segment **out);
MAPSHARE_API mapshare_status mapshare_lock_acquire(mapshare_segment *seg, double timeout);
MAPSHARE_API mapshare_status mapshare_lock_release(mapshare_segment *seg);

/* ---- events ---------------------------------------------------------------------------------
 * Events, semaphores, waits for a change, lock calls and channels need a writable header
 * (a waiter counts itself there): on an object this process may only read they return
 * MAPSHARE_E_PERMISSION, as in Python. */
MAPSHARE_API mapshare_status mapshare_event_create(const char *name, int initially_set,
                                                   const mapshare_options *o,
                                                   mapshare_segment **out);
MAPSHARE_API mapshare_status mapshare_event_open(const char *name, const mapshare_options *o,
                                                 mapshare_segment **out);
MAPSHARE_API mapshare_status mapshare_event_open_or_create(const char *name,
                                                           int initially_set,
                                                           const mapshare_options *o,
                                                           mapshare_segment **out);
MAPSHARE_API mapshare_status mapshare_event_set(mapshare_segment *ev);
MAPSHARE_API mapshare_status mapshare_event_clear(mapshare_segment *ev);
/* 1 if set, 0 if not, negative (-MAPSHARE_E_LAYOUT) if ev is not an event or its
 * header is read-only. */
MAPSHARE_API int mapshare_event_is_set(mapshare_segment *ev);
MAPSHARE_API mapshare_status mapshare_event_wait(mapshare_segment *ev, double timeout);

/* An event placed in 16 bytes of a plain segment's user area at `offset` (a multiple of
 * 8), as Python's Event.create_in / Event.open_in: the same memory format, so Python and
 * C share it.  The returned handle works with every mapshare_event_* call and is closed
 * with mapshare_segment_close (which frees only the handle).  It borrows `seg`: once
 * `seg` is closed, the event's calls return MAPSHARE_E_INVALID (close it too).
 * MAPSHARE_E_INVALID: seg is not a plain segment (Python's TypeError), or the offset is
 * not a multiple of 8 or its 16 bytes are not inside the user area (ValueError); MAPSHARE_E_PERMISSION: seg is not opened for writing ("rw");
 * open_in: MAPSHARE_E_LAYOUT when no event was created there.  create_in overwrites
 * whatever is at the offset. */
MAPSHARE_API mapshare_status mapshare_event_create_in(mapshare_segment *seg, uint64_t offset,
                                                      int initially_set,
                                                      mapshare_segment **out);
MAPSHARE_API mapshare_status mapshare_event_open_in(mapshare_segment *seg, uint64_t offset,
                                                    mapshare_segment **out);

/* ---- semaphores ---------------------------------------------------------------------------- */
MAPSHARE_API mapshare_status mapshare_semaphore_create(const char *name, uint32_t value,
                                                       uint32_t maximum,
                                                       const mapshare_options *o,
                                                       mapshare_segment **out);
MAPSHARE_API mapshare_status mapshare_semaphore_open(const char *name,
                                                     const mapshare_options *o,
                                                     mapshare_segment **out);
MAPSHARE_API mapshare_status mapshare_semaphore_open_or_create(const char *name,
                                                               uint32_t value,
                                                               uint32_t maximum,
                                                               const mapshare_options *o,
                                                               mapshare_segment **out);
MAPSHARE_API mapshare_status mapshare_semaphore_acquire(mapshare_segment *sem,
                                                        double timeout);
/* MAPSHARE_E_VALUE (nothing released) if it would exceed the maximum. */
MAPSHARE_API mapshare_status mapshare_semaphore_release(mapshare_segment *sem, uint32_t n);
MAPSHARE_API uint32_t mapshare_semaphore_value(mapshare_segment *sem);
/* A semaphore placed in 16 bytes of a plain segment (Semaphore.create_in / open_in),
 * with the checks, statuses and handle rules of mapshare_event_create_in; create_in also
 * gives MAPSHARE_E_INVALID unless 1 <= maximum and value <= maximum. */
MAPSHARE_API mapshare_status mapshare_semaphore_create_in(mapshare_segment *seg,
                                                          uint64_t offset, uint32_t value,
                                                          uint32_t maximum,
                                                          mapshare_segment **out);
MAPSHARE_API mapshare_status mapshare_semaphore_open_in(mapshare_segment *seg,
                                                        uint64_t offset,
                                                        mapshare_segment **out);

/* ---- channels ------------------------------------------------------------------------------
 * A bounded many-to-many queue of variable-size messages (kind CHANNEL).  A message sent
 * here is received in Python as bytes, and Python's bytes messages arrive here as they
 * were sent.  Messages Python sent with another encoding (send_obj, numpy) carry a kind
 * in their record; mapshare_channel_message_kind() tells it. */
MAPSHARE_API mapshare_status mapshare_channel_create(const char *name, uint64_t capacity,
                                                     const mapshare_options *o,
                                                     mapshare_segment **out);
MAPSHARE_API mapshare_status mapshare_channel_open(const char *name,
                                                   const mapshare_options *o,
                                                   mapshare_segment **out);
/* MAPSHARE_E_LAYOUT if it exists with another capacity (after rounding up to 8). */
MAPSHARE_API mapshare_status mapshare_channel_open_or_create(const char *name,
                                                             uint64_t capacity,
                                                             const mapshare_options *o,
                                                             mapshare_segment **out);
/* MAPSHARE_E_FULL (timeout 0) / _TIMEOUT, MAPSHARE_E_TOO_LARGE, MAPSHARE_E_CLOSED after
 * mapshare_channel_close_sending. */
MAPSHARE_API mapshare_status mapshare_channel_send(mapshare_segment *ch, const void *data,
                                                   size_t n, double timeout);
/* Copy the next message into buf; *len = its size.  MAPSHARE_E_EMPTY (timeout 0) /
 * _TIMEOUT, MAPSHARE_E_CLOSED at the end of the stream, MAPSHARE_E_BROKEN (once) when
 * senders died without closing, MAPSHARE_E_BUFFER_TOO_SMALL (message left queued). */
MAPSHARE_API mapshare_status mapshare_channel_receive(mapshare_segment *ch, void *buf,
                                                      size_t cap, size_t *len,
                                                      double timeout);
/* Zero-copy send: reserve n bytes at *ptr, write them, then commit `used` (<= n) bytes
 * or abort.  One loan at a time per handle (MAPSHARE_E_WINDOW_OPEN). */
MAPSHARE_API mapshare_status mapshare_channel_loan(mapshare_segment *ch, size_t n,
                                                   void **ptr, double timeout);
MAPSHARE_API mapshare_status mapshare_channel_commit(mapshare_segment *ch, size_t used);
MAPSHARE_API mapshare_status mapshare_channel_abort(mapshare_segment *ch);
/* Zero-copy receive: *ptr and *len point at the next message inside the ring until
 * mapshare_channel_view_release(ch, consume): consume != 0 removes it, 0 leaves it
 * queued.  Statuses as for receive. */
MAPSHARE_API mapshare_status mapshare_channel_view(mapshare_segment *ch, const void **ptr,
                                                   size_t *len, double timeout);
MAPSHARE_API mapshare_status mapshare_channel_view_release(mapshare_segment *ch,
                                                           int consume);
/* The kind of the message last viewed or received on this handle (0: plain bytes). */
MAPSHARE_API int mapshare_channel_message_kind(const mapshare_segment *ch);
/* Close for sending (end of stream): receivers drain what is queued, then get
 * MAPSHARE_E_CLOSED; senders get MAPSHARE_E_CLOSED. */
MAPSHARE_API mapshare_status mapshare_channel_close_sending(mapshare_segment *ch);

/* Statistics: units are bytes and messages, counted since creation. */
typedef struct mapshare_channel_stats {
    uint64_t capacity;          /* ring bytes */
    uint64_t max_message;       /* largest message that can ever be sent */
    uint64_t queued_bytes;      /* ring bytes in use (records: 8-byte header + padding) */
    uint64_t queued_messages;   /* estimate */
    uint64_t sent_messages, sent_bytes, received_messages, received_bytes;
    uint64_t high_water;        /* most ring bytes ever in use */
    uint64_t redelivered;       /* messages re-offered after a receiver died holding one */
    uint64_t abandoned;         /* loans left uncommitted by senders that died */
    uint64_t sender_deaths;     /* senders found dead without having closed */
    uint32_t senders_alive, receivers_alive;
    uint32_t send_waiters, recv_waiters;  /* threads asleep now */
    int closed;                 /* 1 after close_sending */
} mapshare_channel_stats;
MAPSHARE_API mapshare_status mapshare_channel_statistics(mapshare_segment *ch,
                                                         mapshare_channel_stats *st);

/* ---- waiting on several objects (Python: mapshare.wait) ------------------------------ */

/* One object of mapshare_wait_any, ready when:
 *   - an event (named or placed) is set;
 *   - a semaphore (named or placed) has a unit (it is not taken);
 *   - a channel has a message to receive on this handle, or is closed and drained
 *     (the next receive gives MAPSHARE_E_CLOSED), or its senders died (the next receive,
 *     even with timeout 0, gives MAPSHARE_E_BROKEN once);
 *   - any other segment: its change count differs from `since` (pass
 *     mapshare_segment_change_count(seg), read before the data, to wait for a change
 *     after that; `since` is ignored for the kinds above).
 * A named lock cannot be waited on (MAPSHARE_E_INVALID): it is acquired. */
typedef struct mapshare_wait_item {
    mapshare_segment *object;
    uint32_t since;
} mapshare_wait_item;

/* Wait until at least one of the n items is ready, or `timeout` passes.  ready[] (n
 * bytes) gets 1 for each ready item, 0 for the others.  MAPSHARE_OK: at least one is
 * ready -- a snapshot: another process may take the message or the unit first, so follow
 * with non-blocking calls (timeout 0) and wait again if they find nothing.
 * MAPSHARE_E_TIMEOUT: none was (ready[] all 0).  MAPSHARE_E_INVALID: n == 0, a NULL item
 * or ready, a lock, or an object listed twice (a segment twice with the same since);
 * MAPSHARE_E_PERMISSION: an object whose header this process may only read (as for its
 * own waits), or a channel not opened "rw"; MAPSHARE_E_WINDOW_OPEN: a channel handle with
 * a loan or view open; MAPSHARE_E_FAULT: an object's memory vanished.  The same as
 * Python's mapshare.wait, on the same objects: one sleep on every object's word at once
 * (futex_waitv where the kernel has it, else polling). */
MAPSHARE_API mapshare_status mapshare_wait_any(const mapshare_wait_item *items, size_t n,
                                               double timeout, uint8_t *ready);

#ifdef __cplusplus
}
#endif

#endif /* MAPSHARE_H */
