/* The channel ring (see channel.h and layout.h).
 *
 * Untrusted memory: head, tail and every record header are read once into locals and
 * checked (alignment, distance, bounds) before use; any inconsistency is MS_E_LAYOUT.
 * Every access to the ring runs under ms_p_guarded_call so that a truncated object
 * gives MS_E_FAULT instead of SIGBUS. */
#include "channel.h"
#include "atomics.h"

#include <string.h>

#define ALIGN8(n) (((uint64_t)(n) + 7u) & ~(uint64_t)7u)

uint64_t ms_channel_max_message(uint64_t capacity)
{
    /* A record may always be placed at offset 0 once a padding record has been
     * skipped, so one message can use the whole ring but for its 8-byte header; and a
     * record's length is a uint32 (rings over 4 GiB would truncate it). */
    uint64_t m = capacity >= MS_REC_HEADER ? capacity - MS_REC_HEADER : 0;
    return m > 0xFFFFFFF8u ? 0xFFFFFFF8u : m;
}

ms_status ms_ring_init(ms_header *h, void *arg, int *err)
{
    ms_ring *r = (ms_ring *)h->kind_area;
    uint64_t cap = h->size;
    (void)arg;
    if (cap < 64 || cap % 8 != 0)
        return MS_E_INVALID;
    memset(r, 0, sizeof *r);
    r->capacity = cap;
    r->max_message = ms_channel_max_message(cap);
    ms_status st = ms_p_lock_init(r->send_lock, err);
    if (st == MS_OK)
        st = ms_p_lock_init(r->recv_lock, err);
    return st;
}

ms_status ms_channel_bind(ms_channel *ch, ms_segment *seg)
{
    memset(ch, 0, sizeof *ch);
    if (seg->kind != MS_KIND_CHANNEL || !seg->hdr || !seg->data)
        return MS_E_LAYOUT;
    ms_ring *r = (ms_ring *)seg->hdr->kind_area;
    uint64_t cap = ms_load_relaxed64(&r->capacity);
    uint64_t maxm = ms_load_relaxed64(&r->max_message);
    if (cap != seg->size || cap < 64 || cap % 8 != 0 || maxm != ms_channel_max_message(cap))
        return MS_E_LAYOUT;
    ch->seg = seg;
    ch->ring = r;
    ch->buf = seg->data;
    ch->cap = cap;
    ch->max_message = maxm;
    ch->send_slot = ch->recv_slot = -1;
    /* deaths found before this handle existed are not its to report */
    ch->seen_deaths = ms_load64(&r->sender_deaths);
    ch->seen_abandoned = ms_load64(&r->abandoned);
    return MS_OK;
}

/* ---- peers -------------------------------------------------------------------------- */

/* An entry's count holds this process's handles in its low 16 bits and, above them
 * (MS_SLEEPER units), how many of its threads sleep on the channel right now.  When a
 * process dies in its sleep, its sleepers are subtracted from the shared waiter count
 * by whoever finds it dead, so that count does not stay up forever (which would cost a
 * futex system call on every later message). */
#define HANDLES(c) ((c) & (MS_SLEEPER - 1u))
#define SLEEPERS(c) ((c) / MS_SLEEPER)

/* Free the entry of process `pid`, found dead: claim it first (pid -> MS_PID_REAPING),
 * so that of several processes finding it dead at once only one frees it, and nobody
 * registers in it half-way; give back its sleepers; count a death if it still held
 * handles (it never closed them) and `r` is given (the senders table).  1 if claimed. */
static int reap_entry(ms_ring *r, ms_attach *e, uint32_t pid, volatile uint32_t *waiters)
{
    if (!ms_cas32(&e->pid, &pid, MS_PID_REAPING))
        return 0;
    uint32_t c = ms_load32(&e->count);
    while (!ms_cas32(&e->count, &c, 0))
        ;
    if (SLEEPERS(c) && waiters) {
        /* never below zero: a scribbled count must not wrap around */
        uint32_t w = ms_load32(waiters);
        uint32_t sub = SLEEPERS(c);
        while (!ms_cas32(waiters, &w, w > sub ? w - sub : 0))
            ;
    }
    if (r && HANDLES(c)) {
        ms_store32(&r->last_dead_sender, pid);
        ms_add64(&r->sender_deaths, 1);
    }
    ms_store32(&e->pid, 0);
    return 1;
}

static int is_peer_pid(uint32_t pid)
{
    return pid != 0 && pid != MS_PID_REAPING;
}

/* Register this process (with its lock held); returns its entry or -1 if full. */
static int register_peer(ms_ring *r, ms_attach *table, volatile uint32_t *waiters)
{
    uint32_t me = ms_p_pid();
    int free_slot = -1;
    for (unsigned i = 0; i < MS_RING_PEERS; i++) {
        uint32_t pid = ms_load_relaxed32(&table[i].pid);
        if (pid == me) {
            ms_add32(&table[i].count, 1);
            return (int)i;
        }
        if (is_peer_pid(pid) &&
            ms_p_process_alive(pid, ms_load_relaxed64(&table[i].start)) == 0 &&
            reap_entry(table == r->senders ? r : NULL, &table[i], pid, waiters))
            pid = 0;
        if (!pid && free_slot < 0)
            free_slot = (int)i;
    }
    if (free_slot >= 0) {
        /* claim the free entry: a reaper or another registrant may be at it too */
        uint32_t zero = 0;
        if (!ms_cas32(&table[free_slot].pid, &zero, MS_PID_REAPING))
            return -1;
        table[free_slot].start = ms_p_process_start(me);
        ms_store32(&table[free_slot].count, 1);
        ms_store32(&table[free_slot].pid, me);
    }
    return free_slot;
}

/* Leave the table.  Safe without the lock against other processes (a reaper only claims
 * entries of dead processes, a registrant only free ones); the lock, when the caller
 * has it, also orders it with this process's other threads registering. */
static void unregister_peer(ms_attach *table, int slot)
{
    if (slot < 0 || slot >= (int)MS_RING_PEERS ||
        ms_load_relaxed32(&table[slot].pid) != ms_p_pid())
        return;
    uint32_t c = ms_add32(&table[slot].count, (uint32_t)-1) - 1;
    if (c == 0)
        ms_store32(&table[slot].pid, 0);  /* no handle left and nobody of ours asleep */
}

/* Free the entries of dead processes (giving back their sleepers, counting dead
 * senders).  `all`: every dead entry; else only those that had sleepers (the repair
 * after wake-ups that found nobody). */
static void reap_dead(ms_ring *r, ms_attach *table, volatile uint32_t *waiters, int all)
{
    for (unsigned i = 0; i < MS_RING_PEERS; i++) {
        uint32_t pid = ms_load_relaxed32(&table[i].pid);
        if (is_peer_pid(pid) && (all || SLEEPERS(ms_load32(&table[i].count))) &&
            ms_p_process_alive(pid, ms_load_relaxed64(&table[i].start)) == 0)
            reap_entry(table == r->senders ? r : NULL, &table[i], pid, waiters);
    }
}

static void repair_waiters(ms_ring *r, ms_attach *table, volatile uint32_t *waiters)
{
    reap_dead(r, table, waiters, 0);
}

static uint32_t count_alive(ms_attach *table)
{
    uint32_t n = 0;
    for (unsigned i = 0; i < MS_RING_PEERS; i++) {
        uint32_t pid = ms_load_relaxed32(&table[i].pid);
        if (is_peer_pid(pid) && ms_p_process_alive(pid, ms_load_relaxed64(&table[i].start)) != 0)
            n++;
    }
    return n;
}

/* Called by a receiver that found the channel empty and is about to wait: the broken
 * edge (see channel.h).  Frees dead senders' entries first, so each death is counted once
 * in the ring, then reports the deaths this handle has not reported yet, but only when
 * no sender is left alive to send anything. */
static ms_status check_broken(ms_channel *ch)
{
    ms_ring *r = ch->ring;
    if (ch->broken_held) {
        ch->broken_held = 0;
        return MS_E_BROKEN;
    }
    reap_dead(r, r->senders, &r->send_waiters, 1);
    uint64_t deaths = ms_load64(&r->sender_deaths);
    /* Senders beyond the table are only counted: while any is open, one may be alive
     * (and one that died without closing keeps that count up: receivers then wait,
     * the safe side for a service). */
    if (deaths == ch->seen_deaths || count_alive(r->senders) != 0 ||
        ms_load32(&r->unlisted_senders) != 0)
        return MS_OK;
    uint64_t ab = ms_load_relaxed64(&r->abandoned);
    ch->broken_deaths = deaths - ch->seen_deaths;
    ch->broken_abandoned = ab - ch->seen_abandoned;
    ch->broken_pid = ms_load_relaxed32(&r->last_dead_sender);
    ch->seen_deaths = deaths;
    ch->seen_abandoned = ab;
    return MS_E_BROKEN;
}

static ms_status check_broken_fn(void *arg)
{
    return check_broken((ms_channel *)arg);
}

/* ---- locks -------------------------------------------------------------------------- */

/* How long a contended ring lock is fought for with spins and yields before sleeping. */
#define MS_LOCK_YIELD_NS 200000LL

/* Take a send or receive lock.  Contended, its holder is either about to release it
 * (its critical section is one copy) or was preempted (more senders than cores: 64
 * processes on 2 cores).  So spin only a little, then give the CPU away with a yield
 * rather than burn the time slice the holder needs, and only then sleep in the lock. */
static ms_status ring_lock_contended(ms_channel *ch, unsigned slot, void *area,
                                     const ms_wait_opts *o)
{
    ms_wait_opts now = { 0, 0, NULL, NULL, 1, NULL };
    ms_status st = ms_lock_acquire(ch->seg, slot, area, &now, NULL);
    if (st != MS_E_TIMEOUT)
        return st;
    uint64_t start = ms_p_monotonic_ns();
    int64_t budget = MS_LOCK_YIELD_NS;
    if (o->timeout_ns > 0 && o->timeout_ns < budget)
        budget = o->timeout_ns;
    uint64_t el = 0;
    while ((int64_t)el < budget) {
        for (int i = 0; i < 64; i++)
            ms_cpu_relax();
        st = ms_lock_acquire(ch->seg, slot, area, &now, NULL);
        if (st != MS_E_TIMEOUT)
            return st;
        ms_p_yield();
        st = ms_lock_acquire(ch->seg, slot, area, &now, NULL);
        if (st != MS_E_TIMEOUT)
            return st;
        el = ms_p_monotonic_ns() - start;
    }
    ms_wait_opts w = *o;
    w.spin_ns = 0;
    if (w.timeout_ns > 0)
        w.timeout_ns = w.timeout_ns > (int64_t)el ? w.timeout_ns - (int64_t)el : 1;
    return ms_lock_acquire(ch->seg, slot, area, &w, NULL);
}

static inline ms_status ring_lock(ms_channel *ch, unsigned slot, void *area,
                                  const ms_wait_opts *o)
{
    if (o->timeout_ns == 0)  /* the fast path: one try */
        return ms_lock_acquire(ch->seg, slot, area, o, NULL);
    return ring_lock_contended(ch, slot, area, o);
}

static ms_status lock_send(ms_channel *ch, const ms_wait_opts *o)
{
    ms_status st = ring_lock(ch, MS_SLOT_SEND_LOCK, ch->ring->send_lock, o);
    if (st == MS_E_OWNER_DIED) {
        /* A sender died inside send or holding a loan: its record was never published
         * (the tail moves last), so there is nothing to undo. */
        ms_add64(&ch->ring->abandoned, 1);
        st = MS_OK;
    }
    if (st == MS_OK && !ch->sender_registered) {
        ch->send_slot = register_peer(ch->ring, ch->ring->senders, &ch->ring->send_waiters);
        ch->sender_registered = 1;
        if (ch->send_slot < 0)  /* table full: counted, so that no death is assumed */
            ms_add32(&ch->ring->unlisted_senders, 1);
    }
    return st;
}

static void unlock_send(ms_channel *ch)
{
    ms_lock_release(ch->seg, MS_SLOT_SEND_LOCK, ch->ring->send_lock, NULL);
}

static ms_status lock_recv(ms_channel *ch, const ms_wait_opts *o)
{
    ms_status st = ring_lock(ch, MS_SLOT_RECV_LOCK, ch->ring->recv_lock, o);
    if (st == MS_E_OWNER_DIED) {
        /* A receiver died between finding a message and moving the head (it had one in
         * hand): that message is still at the head and is offered again. */
        if (ms_load_relaxed32(&ch->ring->holding)) {
            ms_store32(&ch->ring->holding, 0);
            ms_add64(&ch->ring->redelivered, 1);
        }
        st = MS_OK;
    }
    if (st == MS_OK && !ch->receiver_registered) {
        ch->recv_slot = register_peer(ch->ring, ch->ring->receivers, &ch->ring->recv_waiters);
        ch->receiver_registered = 1;
        if (ch->recv_slot < 0)
            ms_add32(&ch->ring->unlisted_receivers, 1);
    }
    return st;
}

static void unlock_recv(ms_channel *ch)
{
    ms_lock_release(ch->seg, MS_SLOT_RECV_LOCK, ch->ring->recv_lock, NULL);
}

/* ---- sending ------------------------------------------------------------------------ */

struct space_pred { ms_channel *ch; uint64_t need; };

static int space_pred(void *arg)
{
    struct space_pred *p = (struct space_pred *)arg;
    ms_ring *r = p->ch->ring;
    uint64_t used = ms_load_relaxed64(&r->tail) - ms_load64(&r->head);
    /* a corrupt distance also ends the wait, and so does close_sending(): the locked
     * path reports them (LayoutError, EndOfChannel) */
    return used > p->ch->cap || p->ch->cap - used >= p->need ||
           (ms_load_relaxed32(&r->flags) & MS_RING_CLOSED);
}

/* After this many wake-ups in a row that found nobody although the count said someone
 * sleeps, look for waiters that died in their sleep. */
#define MS_REPAIR_AFTER 32

/* Called after a sequentially consistent store of tail (resp. head). */
static void wake_receivers(ms_channel *ch)
{
    int n = ms_wake_waiters_sc(ch->seg, MS_SLOT_NOT_EMPTY, &ch->ring->not_empty_seq,
                               &ch->ring->recv_waiters);
    if (n == 0 && ++ch->idle_wakes_r >= MS_REPAIR_AFTER) {
        ch->idle_wakes_r = 0;
        repair_waiters(ch->ring, ch->ring->receivers, &ch->ring->recv_waiters);
    } else if (n != 0) {
        ch->idle_wakes_r = 0;
    }
}

static void wake_senders(ms_channel *ch)
{
    ms_ring *r = ch->ring;
    uint32_t w = ms_load_sc32(&r->send_waiters);
    if (w > 1) {
        /* Several senders asleep on a full ring (many producers, one consumer): a wake-up
         * wakes them all, so waking them for every message taken (a few bytes of room)
         * is a herd of processes fighting for one slot, on every message.  Wake them
         * once half the ring is free instead: each then finds room.  (A sender that
         * could have gone earlier is late by at most one sleep slice, and only while
         * the ring is over half full with others waiting too.) */
        uint64_t used = ms_load64(&r->tail) - ms_load_relaxed64(&r->head);
        if (used <= ch->cap && ch->cap - used < ch->cap / 2)
            return;
    }
    int n = w ? ms_wake_waiters_sc(ch->seg, MS_SLOT_NOT_FULL, &r->not_full_seq,
                                   &r->send_waiters) : -2;
    if (n == 0 && ++ch->idle_wakes_s >= MS_REPAIR_AFTER) {
        ch->idle_wakes_s = 0;
        repair_waiters(ch->ring, ch->ring->senders, &ch->ring->send_waiters);
    } else if (n != 0) {
        ch->idle_wakes_s = 0;
    }
}

/* Register as a receiver before sleeping, so that the sleep is marked in our entry. */
static volatile uint32_t *receiver_mark(ms_channel *ch)
{
    if (!ch->receiver_registered) {
        ms_wait_opts o = { 0, 0, NULL, NULL, 1, NULL };
        if (ms_lock_acquire(ch->seg, MS_SLOT_RECV_LOCK, ch->ring->recv_lock, &o, NULL) ==
            MS_OK) {
            ch->recv_slot = register_peer(ch->ring, ch->ring->receivers, &ch->ring->recv_waiters);
            ch->receiver_registered = 1;
            if (ch->recv_slot < 0)
                ms_add32(&ch->ring->unlisted_receivers, 1);
            ms_lock_release(ch->seg, MS_SLOT_RECV_LOCK, ch->ring->recv_lock, NULL);
        }
    }
    return ch->recv_slot >= 0 && ch->receiver_registered
               ? &ch->ring->receivers[ch->recv_slot].count : NULL;
}

static volatile uint32_t *sender_mark(ms_channel *ch)
{
    return ch->send_slot >= 0 && ch->sender_registered
               ? &ch->ring->senders[ch->send_slot].count : NULL;
}

/* With send_lock held, after writing a padding record at position t: if the pad is all
 * the ring holds and no receiver is busy, skip it here, so that an empty channel takes
 * any message up to max_message at once (receivers skip pads, but none may be active)
 * and reports itself empty.  Lock order send -> recv; try only. */
static void skip_lone_pad(ms_channel *ch, uint64_t t, uint64_t pad)
{
    ms_ring *r = ch->ring;
    ms_wait_opts o = { 0, 0, NULL, NULL, 1 };
    ms_status st = ms_lock_acquire(ch->seg, MS_SLOT_RECV_LOCK, r->recv_lock, &o, NULL);
    if (st != MS_OK && st != MS_E_OWNER_DIED)
        return;  /* a receiver is at work: it skips the pad itself */
    if (ms_load64(&r->head) == t) {
        ms_store_sc64(&r->head, t + pad);
        ch->cached_head = t + pad;
    }
    unlock_recv(ch);
}

#define MS_RESTART_MIN 4096u

/* A large ring kept full cycles through memory that is no longer in cache: each record
 * is read long after it was written (7.4 k/s of 1 MiB messages through a 64 MiB ring vs
 * 28 k/s through an 8 MiB one).  So a sender that may wait, of a large record, first
 * waits a little (MS_HOT_WAIT_NS at most) for the queue to fall within MS_HOT_WINDOW
 * bytes: a receiver that keeps up then reads what was just written, and the throughput,
 * which the receiver bounds anyway, is that of a small ring.  A receiver that does not
 * keep up (or none at all) loses nothing: after the wait the whole capacity is used. */
#define MS_HOT_WINDOW (4u << 20)
#define MS_HOT_MIN_RECORD (64u << 10)
#define MS_HOT_WAIT_NS 2000000LL
#define MS_HOT_MISSES 4u


/* With send_lock held: make room for a record of `rsize` bytes at the tail.  Returns
 * MS_OK with *pos set, or MS_E_FULL with *need = free bytes to wait for. */
static ms_status reserve_locked(ms_channel *ch, uint64_t rsize, uint64_t *pos, uint64_t *need)
{
    ms_ring *r = ch->ring;
    uint64_t cap = ch->cap;
    for (;;) {
        uint64_t t = ms_load_relaxed64(&r->tail);
        uint64_t h = ch->cached_head;
        uint64_t used = t - h;
        uint64_t off = t % cap;
        uint64_t want = off + rsize > cap ? cap - off : rsize;
        if (used > cap || cap - used < want) {
            /* the hint says no room: look at the real head */
            h = ms_load64(&r->head);
            ch->cached_head = h;
            used = t - h;
        }
        if (used > cap || (t & 7u) != 0)
            return MS_E_LAYOUT;
        /* An empty ring past its first half: restart at offset 0, whose memory is still
         * in cache, rather than march on through a large ring's cold memory (one
         * padding record; checked for large records only, where the copy dominates).
         * In a large ring's hot window (see hot_window_wait) the ring need not be empty:
         * the queue sits in [off - used, off), so a record fits at 0 as soon as
         * used + rsize <= off -- the sender then never waits for the receiver to drain
         * (which would stop the two copies overlapping once per window). */
        int restart = 0;
        int hot = cap > 2 * (uint64_t)MS_HOT_WINDOW && off >= MS_HOT_WINDOW;
        if (rsize >= MS_RESTART_MIN && (off >= cap / 2 || hot) && off + rsize <= cap) {
            if (used != 0) {
                h = ms_load64(&r->head);
                ch->cached_head = h;
                used = t - h;
            }
            restart = used == 0 ||
                      (hot && !ch->hot_skip && rsize >= MS_HOT_MIN_RECORD &&
                       rsize <= MS_HOT_WINDOW && used <= off && used + rsize <= off);
        }
        if (off + rsize > cap || restart) {
            /* Not enough room before the end: fill it with a padding record, which
             * receivers skip, and start again at offset 0. */
            uint64_t pad = cap - off;
            if (cap - used < pad) {
                *need = pad;
                return MS_E_FULL;
            }
            uint32_t hdr[2] = { (uint32_t)pad, MS_REC_PAD };
            memcpy(ch->buf + off, hdr, sizeof hdr);
            ms_store_sc64(&r->tail, t + pad);
            /* once per lap: if the pad is all there is, drop it now rather than leave
             * an empty-looking channel holding bytes */
            skip_lone_pad(ch, t, pad);
            wake_receivers(ch);
            continue;
        }
        if (cap - used < rsize) {
            *need = rsize;
            return MS_E_FULL;
        }
        *pos = t;
        return MS_OK;
    }
}

static void publish_locked(ms_channel *ch, uint64_t pos, uint64_t payload, uint32_t kind)
{
    ms_ring *r = ch->ring;
    uint64_t rsize = MS_REC_HEADER + ALIGN8(payload);
    uint32_t hdr[2] = { (uint32_t)payload, (kind << MS_REC_KIND_SHIFT) & MS_REC_KIND_MASK };
    memcpy(ch->buf + pos % ch->cap, hdr, sizeof hdr);
    ms_store_sc64(&r->tail, pos + rsize);
    r->sent_messages++;
    r->sent_bytes += payload;
    /* Exact high-water mark without reading the receivers' head on every message (a
     * cache miss): the cached head is a lower bound, so the depth it gives is an upper
     * bound; only when that bound beats the mark is the real head read. */
    uint64_t hw = r->high_water;
    uint64_t used = pos + rsize - ch->cached_head;
    if (used > hw) {
        ch->cached_head = ms_load64(&r->head);
        used = pos + rsize - ch->cached_head;
        if (used <= ch->cap && used > hw)
            r->high_water = used;
    }
}

struct send_args {
    ms_channel *ch;
    const void *data;
    size_t n;
    const ms_wait_opts *o;
    uint8_t **loan_ptr;   /* non-NULL: reserve only, keep the lock */
};

static ms_status check_not_closed(ms_channel *ch)
{
    return (ms_load32(&ch->ring->flags) & MS_RING_CLOSED) ? MS_E_CLOSED : MS_OK;
}

static void hot_window_wait(ms_channel *ch, uint64_t rsize, const ms_wait_opts *o)
{
    if (ch->cap <= 2 * (uint64_t)MS_HOT_WINDOW || rsize < MS_HOT_MIN_RECORD ||
        rsize > MS_HOT_WINDOW)
        return;
    uint64_t t = ms_load_relaxed64(&ch->ring->tail);
    int past = t % ch->cap >= MS_HOT_WINDOW;
    if (!past) {
        ch->hot_skip = 0;  /* back in the window: try again on this lap */
        ch->hot_misses = 0;
    }
    if (ch->hot_skip)
        return;
    uint64_t used = t - ms_load64(&ch->ring->head);
    /* Wait until the queue and this record fit in the window: inside it, the record
     * follows the queue; past it, the record restarts at 0 (reserve_locked), below the
     * queue, without waiting for the ring to drain. */
    uint64_t limit = MS_HOT_WINDOW - rsize;
    if (used > ch->cap || used <= limit)
        return;
    struct space_pred sp = { ch, ch->cap - limit };
    ms_wait_opts wo = *o;
    if (wo.timeout_ns < 0 || wo.timeout_ns > MS_HOT_WAIT_NS)
        wo.timeout_ns = MS_HOT_WAIT_NS;
    wo.mark = sender_mark(ch);
    /* A receiver that did not keep up several times in a row (one late wake-up on a
     * busy machine is not that): stop waiting for it until the next lap, and use the
     * whole ring, as a burst needs. */
    if (ms_wait_for(ch->seg, MS_SLOT_NOT_FULL, &ch->ring->not_full_seq,
                    &ch->ring->send_waiters, space_pred, &sp, &wo) == MS_OK)
        ch->hot_misses = 0;
    else if (++ch->hot_misses >= MS_HOT_MISSES)
        ch->hot_skip = 1;
}

static ms_status send_fn(void *arg)
{
    struct send_args *a = (struct send_args *)arg;
    ms_channel *ch = a->ch;
    uint64_t rsize = MS_REC_HEADER + ALIGN8(a->n);
    ms_wait_opts lock_opts = *a->o;
    uint64_t start = 0;  /* read the clock only if we have to wait */
    if (a->o->try_only)
        lock_opts.timeout_ns = 0;
    else if (a->o->timeout_ns == 0)
        lock_opts.timeout_ns = MS_LOCK_NOWAIT_NS;
    else
        hot_window_wait(ch, rsize, a->o);
    for (;;) {
        ms_status st = lock_send(ch, &lock_opts);
        if (st == MS_E_TIMEOUT && a->o->try_only)
            return MS_E_RETRY_NO_GIL;
        if (st == MS_E_TIMEOUT && a->o->timeout_ns == 0)
            return MS_E_FULL;
        if (st != MS_OK)
            return st;
        if ((st = check_not_closed(ch)) != MS_OK) {
            unlock_send(ch);
            return st;
        }
        uint64_t pos, need;
        st = reserve_locked(ch, rsize, &pos, &need);
        if (st == MS_OK) {
            if (a->loan_ptr) {
                ch->loan_open = 1;
                ch->loan_kind = MS_REC_KIND_BYTES;
                ch->loan_pos = pos;
                ch->loan_size = a->n;
                *a->loan_ptr = ch->buf + pos % ch->cap + MS_REC_HEADER;
                return MS_OK;  /* send_lock stays held until commit or abort */
            }
            memcpy(ch->buf + pos % ch->cap + MS_REC_HEADER, a->data, a->n);
            publish_locked(ch, pos, a->n, MS_REC_KIND_BYTES);
            unlock_send(ch);
            wake_receivers(ch);
            return MS_OK;
        }
        unlock_send(ch);
        if (st != MS_E_FULL)
            return st;
        /* Wait, unlocked, for the receivers to free `need` bytes. */
        ms_wait_opts wo = *a->o;
        if (wo.timeout_ns > 0) {
            if (!start)
                start = ms_p_monotonic_ns();
            uint64_t el = ms_p_monotonic_ns() - start;
            if (el >= (uint64_t)a->o->timeout_ns)
                return MS_E_TIMEOUT;
            wo.timeout_ns = a->o->timeout_ns - (int64_t)el;
            lock_opts.timeout_ns = wo.timeout_ns;
        }
        struct space_pred sp = { ch, need };
        wo.mark = sender_mark(ch);
        st = ms_wait_for(ch->seg, MS_SLOT_NOT_FULL, &ch->ring->not_full_seq,
                         &ch->ring->send_waiters, space_pred, &sp, &wo);
        if (st == MS_E_TIMEOUT)
            return a->o->timeout_ns == 0 ? MS_E_FULL : MS_E_TIMEOUT;
        if (st != MS_OK)
            return st;
    }
}

ms_status ms_channel_send(ms_channel *ch, const void *data, size_t n, const ms_wait_opts *o)
{
    if (n > ch->max_message)
        return MS_E_TOO_LARGE;
    struct send_args a = { ch, data, n, o, NULL };
    ms_status st = ms_p_guarded_call(send_fn, &a);
    if (st == MS_E_FAULT)
        ms_segment_fault(ch->seg);
    return st;
}

ms_status ms_channel_loan(ms_channel *ch, size_t n, uint8_t **ptr, const ms_wait_opts *o)
{
    if (n > ch->max_message)
        return MS_E_TOO_LARGE;
    struct send_args a = { ch, NULL, n, o, ptr };
    ms_status st = ms_p_guarded_call(send_fn, &a);
    if (st == MS_E_FAULT)
        ms_segment_fault(ch->seg);
    return st;
}

static ms_status commit_fn(void *arg)
{
    ms_channel *ch = (ms_channel *)arg;
    publish_locked(ch, ch->loan_pos, ch->loan_size, ch->loan_kind);
    return MS_OK;
}

ms_status ms_channel_commit(ms_channel *ch, size_t used)
{
    if (!ch->loan_open)
        return MS_E_INVALID;
    if (used > ch->loan_size)
        return MS_E_INVALID;
    ch->loan_size = used;
    ms_status st = ms_p_guarded_call(commit_fn, ch);
    ch->loan_open = 0;
    if (st == MS_E_FAULT) {
        ms_segment_fault(ch->seg);
        return st;
    }
    unlock_send(ch);
    wake_receivers(ch);
    return st;
}

ms_status ms_channel_abort(ms_channel *ch)
{
    if (!ch->loan_open)
        return MS_E_INVALID;
    ch->loan_open = 0;
    if (!ch->seg->faulted)
        unlock_send(ch);
    return MS_OK;
}

/* ---- receiving ---------------------------------------------------------------------- */

struct avail_pred { ms_channel *ch; };

static int avail_pred(void *arg)
{
    ms_ring *r = ((struct avail_pred *)arg)->ch->ring;
    return ms_load64(&r->tail) != ms_load_relaxed64(&r->head) ||
           (ms_load_relaxed32(&r->flags) & MS_RING_CLOSED);
}

/* With recv_lock held: find the next message, skipping padding records.  MS_E_EMPTY if
 * there is none. */
static ms_status next_locked(ms_channel *ch, uint64_t *pos, uint32_t *len, uint32_t *kind)
{
    ms_ring *r = ch->ring;
    uint64_t cap = ch->cap;
    for (;;) {
        uint64_t h = ms_load_relaxed64(&r->head);
        uint64_t t = ch->cached_tail;
        if (t == h || t - h > cap) {
            /* the hint says empty (or another receiver went past it): look again */
            t = ms_load64(&r->tail);
            ch->cached_tail = t;
            if (t == h)
                return MS_E_EMPTY;
        }
        uint64_t avail = t - h;
        if (avail > cap || (h & 7u) != 0)
            return MS_E_LAYOUT;
        uint64_t off = h % cap;
        uint32_t hdr[2];
        memcpy(hdr, ch->buf + off, sizeof hdr);
        if (hdr[1] & MS_REC_PAD) {
            uint64_t pad = cap - off;
            if (hdr[0] != pad || pad > avail)
                return MS_E_LAYOUT;
            ms_store_sc64(&r->head, h + pad);
            wake_senders(ch);
            continue;
        }
        uint64_t rsize = MS_REC_HEADER + ALIGN8(hdr[0]);
        if ((hdr[1] & ~MS_REC_KIND_MASK) != 0 || hdr[0] > ch->max_message || rsize > avail ||
            off + rsize > cap)
            return MS_E_LAYOUT;
        *pos = h;
        *len = hdr[0];
        *kind = hdr[1] >> MS_REC_KIND_SHIFT;
        return MS_OK;
    }
}

static void consume_locked(ms_channel *ch, uint64_t pos, uint32_t len)
{
    ms_ring *r = ch->ring;
    ms_store_sc64(&r->head, pos + MS_REC_HEADER + ALIGN8(len));
    r->holding = 0;
    r->received_messages++;
    r->received_bytes += len;
}

struct recv_args {
    ms_channel *ch;
    const ms_wait_opts *o;
    ms_alloc_fn alloc;      /* NULL: peek (keep the lock, fill ptr/len) */
    void *alloc_arg;
    const uint8_t **ptr;
    size_t *len;
};

static ms_status recv_fn(void *arg)
{
    struct recv_args *a = (struct recv_args *)arg;
    ms_channel *ch = a->ch;
    uint64_t start = 0;  /* read the clock only if we have to wait */
    ms_wait_opts wo = *a->o;
    int spun = 0;
    for (;;) {
        struct avail_pred ap = { ch };
        ms_status st;
        if (!avail_pred(&ap)) {
            if (wo.timeout_ns == 0) {
                if (ch->broken_held) {  /* found by a wait: report it now */
                    ch->broken_held = 0;
                    return MS_E_BROKEN;
                }
                return MS_E_EMPTY;
            }
            if (!start)
                start = ms_p_monotonic_ns();
            /* Spin first: the liveness check below costs system calls, and the next
             * message is usually microseconds away. */
            if (!spun) {
                spun = 1;
                int64_t budget = wo.spin_ns;
                if (wo.timeout_ns > 0 && wo.timeout_ns < budget)
                    budget = wo.timeout_ns;
                if (budget > 0 && ms_spin_until(avail_pred, &ap, budget))
                    continue;
                wo.spin_ns = 0;
            }
            /* Before sleeping, and again every slice while asleep (the last sender may
             * die while we wait): a channel whose every sender died will never fill. */
            if ((st = check_broken(ch)) != MS_OK)
                return st;
            ms_wait_opts so = wo;
            if (so.timeout_ns < 0 || so.timeout_ns > MS_SLICE_NS)
                so.timeout_ns = MS_SLICE_NS;
            so.mark = receiver_mark(ch);
            st = ms_wait_for(ch->seg, MS_SLOT_NOT_EMPTY, &ch->ring->not_empty_seq,
                             &ch->ring->recv_waiters, avail_pred, &ap, &so);
            if (st == MS_E_TIMEOUT) {
                if (a->o->timeout_ns > 0) {
                    uint64_t el = ms_p_monotonic_ns() - start;
                    if (el >= (uint64_t)a->o->timeout_ns)
                        return MS_E_TIMEOUT;
                    wo.timeout_ns = a->o->timeout_ns - (int64_t)el;
                }
                continue;
            }
            if (st != MS_OK)
                return st;
        }
        ms_wait_opts lo = wo;
        if (a->o->try_only)
            lo.timeout_ns = 0;
        else if (a->o->timeout_ns == 0)
            lo.timeout_ns = MS_LOCK_NOWAIT_NS;
        st = lock_recv(ch, &lo);
        if (st == MS_E_TIMEOUT && a->o->try_only)
            return MS_E_RETRY_NO_GIL;
        if (st == MS_E_TIMEOUT && a->o->timeout_ns == 0)
            return MS_E_EMPTY;
        if (st != MS_OK)
            return st;
        uint64_t pos;
        uint32_t len, kind;
        st = next_locked(ch, &pos, &len, &kind);
        if (st == MS_OK) {
            const uint8_t *src = ch->buf + pos % ch->cap + MS_REC_HEADER;
            ch->ring->holding = 1;  /* our own cache line: no cost to senders */
            if (!a->alloc) {
                ch->view_open = 1;
                ch->view_kind = kind;
                ch->view_next = pos;
                *a->ptr = src;
                *a->len = len;
                return MS_OK;  /* recv_lock stays held until consume */
            }
            uint8_t *dst = a->alloc(a->alloc_arg, len);
            if (!dst) {
                ch->ring->holding = 0;
                unlock_recv(ch);
                return MS_E_INVALID;
            }
            memcpy(dst, src, len);
            consume_locked(ch, pos, len);
            unlock_recv(ch);
            wake_senders(ch);
            return MS_OK;
        }
        unlock_recv(ch);
        if (st == MS_E_EMPTY && (ms_load32(&ch->ring->flags) & MS_RING_CLOSED)) {
            /* closed: drained only if still empty after the flag was seen */
            if (ms_load64(&ch->ring->tail) == ms_load_relaxed64(&ch->ring->head))
                return MS_E_CLOSED;
            continue;
        }
        if (st != MS_E_EMPTY)
            return st;
        /* Another receiver took it: wait again with what is left of the timeout. */
        if (a->o->timeout_ns > 0) {
            if (!start)
                start = ms_p_monotonic_ns();
            uint64_t el = ms_p_monotonic_ns() - start;
            if (el >= (uint64_t)a->o->timeout_ns)
                return MS_E_TIMEOUT;
            wo.timeout_ns = a->o->timeout_ns - (int64_t)el;
        }
    }
}

static ms_status run_recv(struct recv_args *a)
{
    ms_status st = ms_p_guarded_call(recv_fn, a);
    if (st == MS_E_FAULT)
        ms_segment_fault(a->ch->seg);
    return st;
}

ms_status ms_channel_receive(ms_channel *ch, ms_alloc_fn alloc, void *arg,
                             const ms_wait_opts *o)
{
    struct recv_args a = { ch, o, alloc, arg, NULL, NULL };
    return run_recv(&a);
}

ms_status ms_channel_peek(ms_channel *ch, const uint8_t **ptr, size_t *len,
                          const ms_wait_opts *o)
{
    struct recv_args a = { ch, o, NULL, NULL, ptr, len };
    return run_recv(&a);
}

static ms_status consume_fn(void *arg)
{
    ms_channel *ch = (ms_channel *)arg;
    uint64_t pos = ch->view_next;
    uint32_t len;
    memcpy(&len, ch->buf + pos % ch->cap, sizeof len);
    /* re-validate: the record could have been scribbled on while viewed */
    if (len > ch->max_message || pos % ch->cap + MS_REC_HEADER + ALIGN8(len) > ch->cap) {
        ch->ring->holding = 0;
        return MS_E_LAYOUT;
    }
    consume_locked(ch, pos, len);
    return MS_OK;
}

ms_status ms_channel_consume(ms_channel *ch)
{
    if (!ch->view_open)
        return MS_E_INVALID;
    ch->view_open = 0;
    ms_status st = ms_p_guarded_call(consume_fn, ch);
    if (st == MS_E_FAULT) {
        ms_segment_fault(ch->seg);
        return st;
    }
    unlock_recv(ch);
    if (st == MS_OK)
        wake_senders(ch);
    return st;
}

ms_status ms_channel_unconsume(ms_channel *ch)
{
    if (!ch->view_open)
        return MS_E_INVALID;
    ch->view_open = 0;
    if (!ch->seg->faulted) {
        ch->ring->holding = 0;
        unlock_recv(ch);
    }
    return MS_OK;
}

/* ---- batches ------------------------------------------------------------------------ */

struct batch_recv_args {
    ms_channel *ch;
    ms_alloc_fn alloc;
    void *arg;
    size_t max;
    size_t *count;
};

static ms_status batch_recv_fn(void *arg)
{
    struct batch_recv_args *a = (struct batch_recv_args *)arg;
    ms_channel *ch = a->ch;
    ms_wait_opts lo = { MS_LOCK_NOWAIT_NS, 0, NULL, NULL, 0 };
    ms_status st = lock_recv(ch, &lo);
    if (st == MS_E_TIMEOUT)
        return MS_E_EMPTY;
    if (st != MS_OK)
        return st;
    while (*a->count < a->max) {
        uint64_t pos;
        uint32_t len, kind;
        st = next_locked(ch, &pos, &len, &kind);
        if (st != MS_OK)
            break;
        uint8_t *dst = a->alloc(a->arg, len);
        if (!dst) {
            st = MS_E_INVALID;
            break;
        }
        ms_ring *r = ch->ring;
        r->holding = 1;
        memcpy(dst, ch->buf + pos % ch->cap + MS_REC_HEADER, len);
        /* move the head once per message (a crash mid-batch loses nothing), but wake
         * senders only once, below */
        ms_store64(&r->head, pos + MS_REC_HEADER + ALIGN8(len));
        r->holding = 0;
        r->received_messages++;
        r->received_bytes += len;
        (*a->count)++;
    }
    unlock_recv(ch);
    if (*a->count) {
        ms_fence();
        wake_senders(ch);
    }
    if (st == MS_E_EMPTY && *a->count)
        st = MS_OK;
    return st;
}

ms_status ms_channel_receive_batch(ms_channel *ch, ms_alloc_fn alloc, void *arg, size_t max,
                                   size_t *count, const ms_wait_opts *o)
{
    *count = 0;
    if (max == 0)
        return MS_OK;
    /* the first message with the full waiting semantics of receive() */
    ms_status st = ms_channel_receive(ch, alloc, arg, o);
    if (st != MS_OK)
        return st;
    *count = 1;
    if (max == 1)
        return MS_OK;
    struct batch_recv_args a = { ch, alloc, arg, max, count };
    st = ms_p_guarded_call(batch_recv_fn, &a);
    if (st == MS_E_FAULT)
        ms_segment_fault(ch->seg);
    /* what did not come at once is simply not part of this batch */
    if (st == MS_E_EMPTY || st == MS_E_CLOSED)
        st = MS_OK;
    return st;
}

struct batch_send_args {
    ms_channel *ch;
    ms_get_fn get;
    void *arg;
    size_t n;
    size_t *count;
};

/* Send what fits now, under one lock; MS_E_FULL when the next one does not fit. */
static ms_status batch_send_fn(void *arg)
{
    struct batch_send_args *a = (struct batch_send_args *)arg;
    ms_channel *ch = a->ch;
    ms_wait_opts lo = { MS_LOCK_NOWAIT_NS, 0, NULL, NULL, 0 };
    ms_status st = lock_send(ch, &lo);
    if (st == MS_E_TIMEOUT)
        return MS_E_FULL;
    if (st != MS_OK)
        return st;
    if ((st = check_not_closed(ch)) != MS_OK) {
        unlock_send(ch);
        return st;
    }
    size_t sent = 0;
    while (*a->count < a->n) {
        const uint8_t *p;
        size_t len;
        if (a->get(a->arg, *a->count, &p, &len) != 0) {
            st = MS_E_INVALID;
            break;
        }
        if (len > ch->max_message) {
            st = MS_E_TOO_LARGE;
            break;
        }
        uint64_t pos, need;
        st = reserve_locked(ch, MS_REC_HEADER + ALIGN8(len), &pos, &need);
        if (st != MS_OK)
            break;
        memcpy(ch->buf + pos % ch->cap + MS_REC_HEADER, p, len);
        publish_locked(ch, pos, len, MS_REC_KIND_BYTES);
        (*a->count)++;
        sent++;
    }
    unlock_send(ch);
    if (sent)
        wake_receivers(ch);
    return st;
}

ms_status ms_channel_send_batch(ms_channel *ch, ms_get_fn get, void *arg, size_t n,
                                size_t *count, const ms_wait_opts *o)
{
    *count = 0;
    for (;;) {
        struct batch_send_args a = { ch, get, arg, n, count };
        ms_status st = ms_p_guarded_call(batch_send_fn, &a);
        if (st == MS_E_FAULT)
            ms_segment_fault(ch->seg);
        if (st == MS_OK || *count >= n)
            return MS_OK;
        if (st != MS_E_FULL)
            return st;
        /* full: send the next one with the full waiting semantics of send() */
        const uint8_t *p;
        size_t len;
        if (get(arg, *count, &p, &len) != 0)
            return MS_E_INVALID;
        st = ms_channel_send(ch, p, len, o);
        if (st != MS_OK)
            return st;
        (*count)++;
    }
}

static int avail_or_abort(void *arg)
{
    return ((struct avail_pred *)arg)->ch->abort_waits || avail_pred(arg);
}

static int space_or_abort(void *arg)
{
    return ((struct space_pred *)arg)->ch->abort_waits || space_pred(arg);
}

ms_status ms_channel_wait_readable(ms_channel *ch, const ms_wait_opts *o)
{
    struct avail_pred ap = { ch };
    if (ch->abort_waits)
        return MS_OK;
    if (!avail_pred(&ap) && o->timeout_ns != 0) {
        ms_status st = ms_p_guarded_call(check_broken_fn, ch);
        if (st != MS_OK)
            return st;
    }
    ms_wait_opts wo = *o;
    wo.mark = receiver_mark(ch);
    return ms_wait_for(ch->seg, MS_SLOT_NOT_EMPTY, &ch->ring->not_empty_seq,
                       &ch->ring->recv_waiters, avail_or_abort, &ap, &wo);
}

ms_status ms_channel_wait_writable(ms_channel *ch, size_t n, const ms_wait_opts *o)
{
    if (n > ch->max_message)
        return MS_E_TOO_LARGE;
    if (ch->abort_waits)
        return MS_OK;
    struct space_pred sp = { ch, MS_REC_HEADER + ALIGN8(n) };
    ms_wait_opts wo = *o;
    wo.mark = sender_mark(ch);
    return ms_wait_for(ch->seg, MS_SLOT_NOT_FULL, &ch->ring->not_full_seq,
                       &ch->ring->send_waiters, space_or_abort, &sp, &wo);
}

static int channel_ready(void *arg)
{
    ms_channel_waitarg *a = (ms_channel_waitarg *)arg;
    ms_channel *ch = a->ch;
    struct avail_pred ap = { ch };
    if (ch->abort_waits || ch->broken_held || avail_pred(&ap))
        return 1;
    uint64_t now = ms_p_monotonic_ns();
    if (now < a->next_check)
        return 0;
    a->next_check = now + MS_SLICE_NS / 2;
    ms_status st = ms_p_guarded_call(check_broken_fn, ch);
    if (st == MS_E_BROKEN) {
        ch->broken_held = 1;
        return 1;
    }
    if (st == MS_E_FAULT)
        ms_segment_fault(ch->seg);  /* the wait reports it */
    return st != MS_OK;
}

void ms_channel_waitable(ms_channel *ch, ms_channel_waitarg *a, ms_waitable *w)
{
    a->ch = ch;
    a->next_check = 0;
    w->seg = ch->seg;
    w->slot = MS_SLOT_NOT_EMPTY;
    w->word = &ch->ring->not_empty_seq;
    w->waiters = &ch->ring->recv_waiters;
    w->ready = channel_ready;
    w->arg = a;
    w->mark = receiver_mark(ch);
}

/* ---- control ------------------------------------------------------------------------ */

ms_status ms_channel_close_sending(ms_channel *ch)
{
    if (ch->seg->faulted)
        return MS_E_FAULT;
    uint32_t expected = ms_load32(&ch->ring->flags);
    while (!ms_cas32(&ch->ring->flags, &expected, expected | MS_RING_CLOSED))
        ;
    /* wake every receiver so that each one sees the end */
    ms_fence();
    ms_add32(&ch->ring->not_empty_seq, 1);
    ms_p_wake32(ch->seg->ctx, MS_SLOT_NOT_EMPTY, &ch->ring->not_empty_seq, 1);
    ms_add32(&ch->ring->not_full_seq, 1);
    ms_p_wake32(ch->seg->ctx, MS_SLOT_NOT_FULL, &ch->ring->not_full_seq, 1);
    return MS_OK;
}

static void unlist(volatile uint32_t *count)
{
    uint32_t c = ms_load32(count);
    while (c && !ms_cas32(count, &c, c - 1))
        ;
}

static ms_status unregister_fn(void *arg)
{
    ms_channel *ch = (ms_channel *)arg;
    /* Under the side's lock if it comes soon, so that another thread of this process
     * registering at the same instant cannot have its entry freed under it; without it
     * if not (a close never blocks for long, and a normal exit is never taken for a
     * crash). */
    ms_wait_opts o = { 10000000LL, 0, NULL, NULL, 0, NULL };
    if (ch->sender_registered) {
        int locked = lock_send(ch, &o) == MS_OK;
        if (ch->send_slot < 0)
            unlist(&ch->ring->unlisted_senders);
        else
            unregister_peer(ch->ring->senders, ch->send_slot);
        if (locked)
            unlock_send(ch);
    }
    if (ch->receiver_registered) {
        int locked = lock_recv(ch, &o) == MS_OK;
        if (ch->recv_slot < 0)
            unlist(&ch->ring->unlisted_receivers);
        else
            unregister_peer(ch->ring->receivers, ch->recv_slot);
        if (locked)
            unlock_recv(ch);
    }
    return MS_OK;
}

void ms_channel_abort_waits(ms_channel *ch)
{
    ch->abort_waits = 1;
    if (ch->seg->faulted)
        return;
    /* a spurious wake-up for the other processes' sleepers: they look and sleep again */
    ms_fence();
    ms_add32(&ch->ring->not_empty_seq, 1);
    ms_p_wake32(ch->seg->ctx, MS_SLOT_NOT_EMPTY, &ch->ring->not_empty_seq, 1);
    ms_add32(&ch->ring->not_full_seq, 1);
    ms_p_wake32(ch->seg->ctx, MS_SLOT_NOT_FULL, &ch->ring->not_full_seq, 1);
}

void ms_channel_detach(ms_channel *ch)
{
    if (ch->seg->faulted)
        return;
    if (ch->loan_open)
        ms_channel_abort(ch);
    if (ch->view_open)
        ms_channel_unconsume(ch);
    /* Leaving the peer tables waits at most briefly for the locks (see unregister_fn):
     * a close never blocks, and a normal exit is never mistaken for a dead sender. */
    ms_p_guarded_call(unregister_fn, ch);
    ch->sender_registered = 0;
    ch->receiver_registered = 0;
}

void ms_channel_statistics(ms_channel *ch, ms_channel_stats *s)
{
    ms_ring *r = ch->ring;
    memset(s, 0, sizeof *s);
    /* report live sleepers only: give back those of processes that died asleep */
    repair_waiters(r, r->senders, &r->send_waiters);
    repair_waiters(r, r->receivers, &r->recv_waiters);
    uint64_t h = ms_load64(&r->head), t = ms_load64(&r->tail);
    s->capacity = ch->cap;
    s->max_message = ch->max_message;
    s->queued_bytes = (t - h) <= ch->cap ? t - h : 0;
    s->sent_messages = ms_load_relaxed64(&r->sent_messages);
    s->sent_bytes = ms_load_relaxed64(&r->sent_bytes);
    s->received_messages = ms_load_relaxed64(&r->received_messages);
    s->received_bytes = ms_load_relaxed64(&r->received_bytes);
    s->queued_messages_estimate = s->sent_messages >= s->received_messages
                                      ? s->sent_messages - s->received_messages : 0;
    s->high_water = ms_load_relaxed64(&r->high_water);
    s->redelivered = ms_load_relaxed64(&r->redelivered);
    s->abandoned = ms_load_relaxed64(&r->abandoned);
    s->sender_deaths = ms_load_relaxed64(&r->sender_deaths);
    s->senders_alive = count_alive(r->senders) + ms_load_relaxed32(&r->unlisted_senders);
    s->receivers_alive = count_alive(r->receivers) + ms_load_relaxed32(&r->unlisted_receivers);
    s->send_waiters = ms_load_relaxed32(&r->send_waiters);
    s->recv_waiters = ms_load_relaxed32(&r->recv_waiters);
    s->closed = (ms_load_relaxed32(&r->flags) & MS_RING_CLOSED) != 0;
}
