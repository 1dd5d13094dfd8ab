/* Topics: broadcast publish/subscribe over one shared log (layout.h, ms_topic).
 *
 * Publishers are serialised by pub_lock and write each payload once; every subscriber
 * keeps its own position and validates what it copied against the publisher's intent,
 * so a slow subscriber is overwritten (overflow "overwrite": it learns exactly how many
 * messages it lost, MS_E_LAGGED) or holds the publisher back (overflow "block": only
 * while it is alive).  Subscribers never take a lock to read.  See
 * docs/design/layout.md for the protocol written for a second implementation. */
#ifndef MS_TOPIC_H
#define MS_TOPIC_H

#include "sync.h"
#include "channel.h"  /* ms_alloc_fn, ms_get_fn */

/* Subscribe start modes */
#define MS_SUB_LIVE    0   /* from the next message published */
#define MS_SUB_HISTORY 1   /* the newest min(history, held) messages, then live */
#define MS_SUB_SEQ     2   /* from a sequence number */
#define MS_SUB_REGISTER 3  /* internal: a forked child re-registers at its position */

/* The argument of ms_topic_init (through ms_segment_create). */
typedef struct ms_topic_params {
    uint64_t capacity;         /* ring bytes: a multiple of 8, >= MS_TOPIC_CAPACITY_MIN */
    uint32_t history;          /* capacity must be >= history * 24 */
    uint32_t overflow;         /* MS_TOPIC_OVERWRITE or MS_TOPIC_BLOCK */
    uint32_t max_subscribers;  /* 1 .. MS_TOPIC_SUBS_MAX */
} ms_topic_params;

/* The user area a topic of these parameters needs (0 if they are invalid). */
uint64_t ms_topic_area_size(uint64_t capacity, uint32_t max_subscribers);
uint64_t ms_topic_max_message(uint64_t capacity);

typedef struct ms_topic_handle {
    ms_segment *seg;
    ms_topic *tp;
    ms_topic_sub *subs;
    uint8_t *ring;
    uint64_t cap;            /* validated copies of line 0 */
    uint64_t max_message;
    uint32_t max_subs;
    uint32_t history;
    uint32_t overflow;
    int loan_open;           /* this handle holds pub_lock for a loan */
    uint64_t loan_start;     /* position of the loaned record */
    uint64_t loan_size;      /* payload bytes reserved */
    uint64_t loan_seq;
    uint32_t loan_kind;      /* MS_REC_KIND_* the open loan is published with */
    /* block mode: the lowest live subscriber position at the last table scan, valid
     * while no subscriber joined since (tp->subscribes == min_key) */
    uint64_t min_pos;
    uint64_t min_key;
    int min_valid;
    unsigned idle_wakes;     /* consecutive wake-ups that found nobody (see topic.c) */
    volatile int abort_waits;
} ms_topic_handle;

typedef struct ms_subscriber {
    ms_topic_handle *t;      /* the topic it reads (its seg and validated copies) */
    int slot;                /* its entry in the table, -1 when it has none */
    int need_register;       /* forked child: claim a fresh entry on first use */
    int closed;
    uint64_t pos;            /* byte position of the next record */
    uint64_t position;       /* seq of the next message */
    uint64_t skip_until;     /* start=N beyond the newest: messages below N are skipped */
    uint64_t pending_missed; /* start=N older than the oldest held: reported first */
    uint64_t received, missed, lagged;
    uint64_t upstream;       /* of `missed`, messages lost upstream (loss records) */
    uint64_t pending_upstream; /* of pending_missed, lost upstream */
    /* loss records (MS_REC_LOSS) below `position`: their sum of missed and their count,
     * so that a lap over loss records reports the messages they stood for */
    uint64_t lost_below, losses_below;
    /* the open view (peek), if any */
    int view_open;
    uint64_t view_pos;
    uint64_t view_rsize;
    /* record flags of the message last delivered or viewed: its kind
     * ((view_flags & MS_REC_KIND_MASK) >> MS_REC_KIND_SHIFT), and MS_REC_ORIGIN when it
     * came with an origin (then in origin_*, copied out of the ring) */
    uint32_t view_flags;
    uint32_t origin_host_len;
    uint64_t origin_seq;
    uint8_t origin_host[MS_TOPIC_HOST_MAX];
    /* filled when MS_E_LAGGED is returned: lag_missed messages lost in all, lag_upstream
     * of them upstream (loss records), resuming at lag_position */
    uint64_t lag_missed;
    uint64_t lag_upstream;
    uint64_t lag_position;
    volatile int abort_waits;
} ms_subscriber;

ms_status ms_topic_init(ms_header *h, void *arg, int *err);
ms_status ms_topic_bind(ms_topic_handle *t, ms_segment *seg);

/* Publish n bytes of kind `kind` (MS_REC_KIND_*); *seq = its sequence number.
 * Overwrite mode never waits for subscribers (only, briefly, for another publisher);
 * block mode waits (per `o`) while a live subscriber has not read what the message
 * would overwrite: MS_E_FULL when `o` does not wait, MS_E_TIMEOUT when it expired. */
ms_status ms_topic_publish(ms_topic_handle *t, const void *data, size_t n, uint32_t kind,
                           const ms_wait_opts *o, uint64_t *seq);
/* An origin: the host id (1..MS_TOPIC_HOST_MAX bytes) and the sequence number there. */
typedef struct ms_origin {
    const uint8_t *host;
    uint32_t host_len;
    uint64_t seq;
} ms_origin;

/* publish with an origin block (origin may be NULL: then exactly ms_topic_publish).
 * MS_E_TOO_LARGE when the block and n bytes exceed max_message; MS_E_INVALID for a bad
 * origin. */
ms_status ms_topic_publish_origin(ms_topic_handle *t, const void *data, size_t n,
                                  uint32_t kind, const ms_origin *origin,
                                  const ms_wait_opts *o, uint64_t *seq);
/* Publish a loss record standing for `missed` (1..MS_TOPIC_LOSS_MAX) messages lost
 * upstream, with an origin or none; it takes a sequence number (*seq).  Waits as
 * publish does. */
ms_status ms_topic_publish_loss(ms_topic_handle *t, uint64_t missed, const ms_origin *origin,
                                const ms_wait_opts *o, uint64_t *seq);
/* Zero copy: reserve n payload bytes at *ptr holding pub_lock; commit publishes `used`
 * <= n of them (with kind t->loan_kind) and returns its seq; abort publishes nothing. */
ms_status ms_topic_loan(ms_topic_handle *t, size_t n, uint8_t **ptr, const ms_wait_opts *o);
ms_status ms_topic_commit(ms_topic_handle *t, size_t used, uint64_t *seq);
ms_status ms_topic_abort(ms_topic_handle *t);
/* Publish get(arg, i) for i in [0, n) in order under one lock with one wake-up (waiting
 * as publish does when a message needs room); *count = published, *last_seq = the seq
 * of the last one. */
ms_status ms_topic_publish_batch(ms_topic_handle *t, ms_get_fn get, void *arg, size_t n,
                                 size_t *count, uint64_t *last_seq, const ms_wait_opts *o);
void ms_topic_abort_waits(ms_topic_handle *t);
/* Leave: abort an open loan (nothing else: a topic handle holds no entry). */
void ms_topic_detach(ms_topic_handle *t);

/* Claim an entry (MS_E_SUBSCRIBER_LIMIT when every entry belongs to a live process) and
 * set the start position (MS_SUB_*; seq for MS_SUB_SEQ), under pub_lock. */
ms_status ms_subscriber_open(ms_subscriber *s, ms_topic_handle *t, int mode, uint64_t seq);
/* Copy the next message out (alloc(arg, len) gives the destination, NULL: give up with
 * MS_E_INVALID, the message stays unread), waiting per `o`: MS_E_EMPTY when `o` does not
 * wait, MS_E_TIMEOUT.  MS_E_LAGGED: the subscriber was overwritten; s->lag_missed and
 * s->lag_position say how many it lost and where it resumes (anything alloc gave was
 * not filled with a message; the next call reads from lag_position). */
ms_status ms_subscriber_receive(ms_subscriber *s, ms_alloc_fn alloc, void *arg,
                                const ms_wait_opts *o);
/* Up to max messages: the first with receive's waiting, the rest only if there now.
 * A Lagged met after the first ends the batch without being consumed: the next call
 * reports it. */
ms_status ms_subscriber_receive_batch(ms_subscriber *s, ms_alloc_fn alloc, void *arg,
                                      size_t max, size_t *count, const ms_wait_opts *o);
/* View the next message in the ring (*ptr, *len, flags in s->view_flags) without copying;
 * ms_subscriber_release() finishes it: MS_E_LAGGED (lag_* filled) if the record was
 * overwritten while viewed, else MS_OK (consumed). ms_subscriber_unview leaves it unread. */
ms_status ms_subscriber_peek(ms_subscriber *s, const uint8_t **ptr, size_t *len,
                             const ms_wait_opts *o);
ms_status ms_subscriber_release(ms_subscriber *s);
ms_status ms_subscriber_unview(ms_subscriber *s);
/* Wait, without reading, until a message (or a Lagged) is there. */
ms_status ms_subscriber_wait_readable(ms_subscriber *s, const ms_wait_opts *o);
/* 1 when a receive would not wait */
int ms_subscriber_ready(void *s);
ms_status ms_subscriber_waitable(ms_subscriber *s, ms_waitable *w);
void ms_subscriber_abort_waits(ms_subscriber *s);
/* In a forked child: the entry is the parent's; the next use claims a new one. */
void ms_subscriber_after_fork(ms_subscriber *s);
/* Free the entry (a block-mode publisher waiting on it goes on at once). */
void ms_subscriber_close(ms_subscriber *s);

typedef struct ms_topic_sub_stats {
    uint32_t pid;
    int alive;               /* 1 alive, 0 dead (not reaped yet), -1 cannot tell */
    uint64_t position, received, missed, lagged, upstream;
} ms_topic_sub_stats;

typedef struct ms_topic_stats {
    uint64_t capacity, max_message, published, published_bytes;
    uint64_t head_seq, held, held_bytes;
    uint64_t publisher_deaths, abandoned, subscriber_deaths;
    uint64_t origin_published, losses, lost;
    uint32_t history, overflow, max_subscribers, subscribers;
    uint32_t sub_waiters, pub_waiters;
} ms_topic_stats;

/* Counters, and up to max_rows rows (one per subscriber entry in use) in rows;
 * *nrows = rows filled.  Entries of dead processes are reaped first. */
ms_status ms_topic_statistics(ms_topic_handle *t, ms_topic_stats *st, ms_topic_sub_stats *rows,
                              size_t max_rows, size_t *nrows);

#endif
