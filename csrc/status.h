/* Status codes returned by every C-core function.
 *
 * The C core never raises and never includes Python.h: it returns one of these, and
 * the binding (csrc/binding/) maps each code to exactly one Python exception class
 * (src/mapshare/_errors.py).  One code, one meaning: a condition with two causes a caller
 * must tell apart gets two codes.  When a code comes from the OS, the OS error number is
 * returned through an `int *err` argument.
 *
 * Internal codes never reach a user: MS_E_INTERRUPTED (the binding raises the signal
 * handler's exception instead), MS_E_RETRY_NO_GIL (the binding retries the call with the
 * GIL released) and MS_E_INITIALIZING (Segment.open retries, then raises LayoutError).
 */
#ifndef MS_STATUS_H
#define MS_STATUS_H

typedef enum ms_status {
    MS_OK = 0,
    MS_E_OS = 1,           /* an OS call failed; *err holds errno / GetLastError() */
    MS_E_NOT_FOUND = 2,    /* no object of that name */
    MS_E_EXISTS = 3,       /* exclusive creation found the name taken */
    MS_E_PERMISSION = 4,   /* access refused (mode, owner, read-only mapping) */
    MS_E_LAYOUT = 5,       /* header or ring state invalid, foreign or corrupt */
    MS_E_TIMEOUT = 6,      /* the deadline passed */
    MS_E_INTERRUPTED = 7,  /* internal: a signal arrived; the caller checks and maybe retries */
    MS_E_OWNER_DIED = 8,   /* the lock was acquired, but its previous holder died */
    MS_E_FULL = 9,         /* channel full (non-blocking) */
    MS_E_EMPTY = 10,       /* channel empty (non-blocking) */
    MS_E_CLOSED = 11,      /* end of channel: closed for sending and drained */
    MS_E_TOO_LARGE = 12,   /* message larger than the channel can ever hold */
    MS_E_NOT_OWNER = 13,   /* release of a lock this thread does not hold */
    MS_E_NO_SPACE = 14,    /* storage could not be reserved (ENOSPC, quota) */
    MS_E_IN_USE = 15,      /* another handle holds the object exclusively (a last user is
                            * removing it) for longer than an opener waits, or the OS
                            * refuses because another process has the file in use */
    MS_E_INITIALIZING = 16,/* internal: header not yet published by its creator */
    MS_E_DESTROYED = 17,   /* segment was being destroyed while we attached */
    MS_E_BROKEN = 18,      /* a sender died without closing; none is left (an edge) */
    MS_E_FAULT = 19,       /* the backing object shrank under us (SIGBUS caught) */
    MS_E_INVALID = 20,     /* invalid argument */
    MS_E_VALUE = 21,       /* a semaphore released above its maximum */
    MS_E_ATTACH_LIMIT = 22,/* the attach table is full of live processes */
    MS_E_ALREADY_HELD = 23,/* this thread already holds the lock (locks are not reentrant) */
    MS_E_RETRY_NO_GIL = 24,/* internal: a non-blocking fast path (ms_wait_opts.try_only)
                            * found a lock taken or a copy too big to make while holding
                            * the caller's own lock (the GIL); retry the call without it */
    MS_E_WINDOW_OPEN = 25, /* this thread already has a loan (or a received view) open on
                            * this channel handle: finish it first */
    MS_E_LAGGED = 26,      /* a topic subscriber was overwritten (lapped): the messages it
                            * lost are counted in ms_subscriber.lag_missed, and it resumes
                            * at lag_position, the oldest message still held */
    MS_E_SUBSCRIBER_LIMIT = 27,/* the topic's subscriber table is full of live subscribers */
    MS_E_OVERWRITTEN = 28, /* a Latest view's value was replaced while it was in use */
    MS_E_VERSION = 29      /* a published header of another layout version than
                            * MS_LAYOUT_VERSION (made by a newer mapshare): refused, never
                            * parsed past the version field */
} ms_status;

/* One more than the largest code: the size of a table indexed by status. */
#define MS_STATUS_COUNT 30

#endif
