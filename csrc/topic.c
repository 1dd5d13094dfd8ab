/* The topic log (see topic.h, layout.h and docs/design/layout.md, "Topic").
 *
 * Untrusted memory: every position, length and seq read from the segment is copied into
 * a local and checked (alignment, distance, bounds, agreement with the others) before
 * use; any inconsistency is MS_E_LAYOUT, never an out-of-bounds access or an unbounded
 * loop.  Every access to shared memory runs under ms_p_guarded_call, so that a
 * truncated object gives MS_E_FAULT instead of SIGBUS.
 *
 * Why a subscriber's copy is never torn: a publisher stores `intent` (the end of what it
 * is about to write) before it overwrites anything, with a release fence between; a
 * subscriber copies, then (after an acquire fence) reloads intent.  Bytes at position p
 * can only have been overwritten by a write of position p + capacity or later, which
 * was preceded by intent > p + capacity: if the subscriber's reload says
 * intent <= pos + capacity, nothing it copied from [pos, tail) was overwritten. */
#include "topic.h"
#include "atomics.h"

#include <string.h>

#define ALIGN8(n) (((uint64_t)(n) + 7u) & ~(uint64_t)7u)
#define HDR MS_TOPIC_REC_HEADER

/* Fences of the seqlock-style protocol: on x86-64 both compile to nothing but forbid the
 * compiler to move memory accesses across them. */
#if defined(_MSC_VER) && !defined(__clang__)
#define fence_release() MemoryBarrier()
#define fence_acquire() MemoryBarrier()
#else
#define fence_release() __atomic_thread_fence(__ATOMIC_RELEASE)
#define fence_acquire() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#endif

/* How often a lapped subscriber re-reads (head, head_seq) while a publisher is changing
 * them before it gives up for now (it then waits as if nothing had come). */
#define HEAD_TRIES 4096

/* A block-mode publisher sleeps at most this long before it checks whether the
 * subscribers holding it back are still alive (a SIGKILLed one releases it within
 * 100 ms: one slice plus the check). */
#define BLOCK_SLICE_NS 20000000LL

/* After this many wake-ups in a row that found nobody although the count said someone
 * sleeps, look for subscribers that died in their sleep (as channel.c does). */
#define REPAIR_AFTER 32u

/* How long subscribing waits for pub_lock (MS_E_TIMEOUT after). */
#define SUBSCRIBE_LOCK_NS 10000000000LL

typedef struct rec_hdr {
    uint32_t length;
    uint32_t flags;
    uint64_t seq;
} rec_hdr;

#if defined(_MSC_VER) && !defined(__clang__)
#define ALWAYS_INLINE __forceinline
#define COLD __declspec(noinline)
#else
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define COLD __attribute__((noinline, cold))
#endif

/* The extra flag bits a topic record may carry besides its kind. */
#define REC_SPECIAL (MS_REC_ORIGIN | MS_REC_LOSS)

/* A record whose flags carry MS_REC_ORIGIN or MS_REC_LOSS, as parsed from the ring. */
typedef struct special_rec {
    uint64_t block;      /* bytes of the origin block (0: none) */
    uint64_t missed;     /* a loss record: the messages it stands for; else 0 */
    ms_topic_origin ob;  /* the origin block's fixed part, if any */
} special_rec;

/* Check a record with flags beyond its kind whose header r was copied from ring offset
 * off (untrusted: every field read once, each checked against the ring): known bits
 * only, the record inside the ring, a well-formed origin block, a loss count in range.
 * 1 if it is one a publisher could have written (*sp filled), else 0.  The bytes read
 * may be torn: the caller validates them (overwritten()) before trusting them. */
static int special_ok(ms_topic_handle *t, const rec_hdr *r, uint64_t off, special_rec *sp)
{
    uint32_t f = r->flags;
    if ((f & ~(MS_REC_KIND_MASK | REC_SPECIAL)) != 0 || (f & REC_SPECIAL) == 0 ||
        r->length > t->max_message || off + HDR + ALIGN8(r->length) > t->cap)
        return 0;
    const uint8_t *body = t->ring + off + HDR;
    sp->block = 0;
    sp->missed = 0;
    if (f & MS_REC_ORIGIN) {
        if (r->length < sizeof sp->ob)
            return 0;
        memcpy(&sp->ob, body, sizeof sp->ob);
        if (sp->ob.host_len == 0 || sp->ob.host_len > MS_TOPIC_HOST_MAX)
            return 0;
        sp->block = sizeof sp->ob + ALIGN8(sp->ob.host_len);
        if (sp->block > r->length)
            return 0;
    }
    if (f & MS_REC_LOSS) {
        uint64_t m;
        if ((f & MS_REC_KIND_MASK) != 0 || r->length != sp->block + 8)
            return 0;
        memcpy(&m, body + sp->block, sizeof m);
        if (m == 0 || m > MS_TOPIC_LOSS_MAX)
            return 0;
        sp->missed = m;
    }
    return 1;
}

uint64_t ms_topic_max_message(uint64_t capacity)
{
    /* a record is at most half the ring: then a record and the padding before it never
     * need more than the whole ring, so a publish drops only complete records */
    if (capacity < MS_TOPIC_CAPACITY_MIN)
        return 0;
    uint64_t m = (capacity / 2 - HDR) & ~(uint64_t)7u;
    return m > 0xFFFFFFF8u ? 0xFFFFFFF8u : m;
}

static uint64_t subs_bytes(uint32_t max_subs)
{
    return (uint64_t)max_subs * MS_TOPIC_SUB_SIZE;  /* a multiple of 64 */
}

uint64_t ms_topic_area_size(uint64_t capacity, uint32_t max_subscribers)
{
    if (capacity < MS_TOPIC_CAPACITY_MIN || capacity % 8 != 0 || max_subscribers == 0 ||
        max_subscribers > MS_TOPIC_SUBS_MAX || capacity > (UINT64_MAX >> 4))
        return 0;
    return subs_bytes(max_subscribers) + capacity;
}

ms_status ms_topic_init(ms_header *h, void *arg, int *err)
{
    ms_topic *tp = (ms_topic *)h->kind_area;
    const ms_topic_params *p = (const ms_topic_params *)arg;
    if (!p)
        return MS_E_INVALID;
    uint64_t need = ms_topic_area_size(p->capacity, p->max_subscribers);
    if (!need || h->size < need ||
        (p->overflow != MS_TOPIC_OVERWRITE && p->overflow != MS_TOPIC_BLOCK) ||
        p->capacity < (uint64_t)p->history * (HDR + 8))
        return MS_E_INVALID;
    memset(tp, 0, sizeof *tp);
    tp->capacity = p->capacity;
    tp->max_message = ms_topic_max_message(p->capacity);
    tp->subs_offset = 0;
    tp->ring_offset = subs_bytes(p->max_subscribers);
    tp->max_subscribers = p->max_subscribers;
    tp->history = p->history;
    tp->overflow = p->overflow;
    return ms_p_lock_init(tp->pub_lock, err);
}

ms_status ms_topic_bind(ms_topic_handle *t, ms_segment *seg)
{
    memset(t, 0, sizeof *t);
    if (seg->kind != MS_KIND_TOPIC || !seg->hdr || !seg->data)
        return MS_E_LAYOUT;
    ms_topic *tp = (ms_topic *)seg->hdr->kind_area;
    uint64_t cap = ms_load_relaxed64(&tp->capacity);
    uint64_t maxm = ms_load_relaxed64(&tp->max_message);
    uint64_t ro = ms_load_relaxed64(&tp->ring_offset);
    uint64_t so = ms_load_relaxed64(&tp->subs_offset);
    uint32_t ns = ms_load_relaxed32(&tp->max_subscribers);
    uint32_t hist = ms_load_relaxed32(&tp->history);
    uint32_t ov = ms_load_relaxed32(&tp->overflow);
    if (!ms_topic_area_size(cap, ns) || maxm != ms_topic_max_message(cap) ||
        (ov != MS_TOPIC_OVERWRITE && ov != MS_TOPIC_BLOCK) || ro % 64 != 0 || so % 64 != 0 ||
        so > seg->size || subs_bytes(ns) > ro - so || ro < so || ro > seg->size ||
        cap > seg->size - ro || ((uintptr_t)seg->data) % 64 != 0)
        return MS_E_LAYOUT;
    t->seg = seg;
    t->tp = tp;
    t->subs = (ms_topic_sub *)(seg->data + so);
    t->ring = seg->data + ro;
    t->cap = cap;
    t->max_message = maxm;
    t->max_subs = ns;
    t->history = hist;
    t->overflow = ov;
    return MS_OK;
}

static int is_sub_pid(uint32_t pid)
{
    return pid != 0 && pid != MS_PID_REAPING && pid != MS_PID_CLAIMING;
}

/* ---- the publisher's lock ------------------------------------------------------------ */

#define MS_LOCK_YIELD_NS 200000LL

/* With pub_lock held: walk the whole records of [h, tail), the first of seq hs, checking
 * each header; *nseq = the seq after the last.  MS_E_LAYOUT if any is inconsistent. */
static ms_status count_locked(ms_topic_handle *t, uint64_t h, uint64_t hs, uint64_t tail,
                              uint64_t *nseq, uint64_t *lost, uint64_t *losses)
{
    uint64_t cap = t->cap;
    *lost = 0;
    *losses = 0;
    while (h < tail) {
        uint64_t o = h % cap;
        if (cap - o < HDR) {
            h += cap - o;
            continue;
        }
        rec_hdr r;
        memcpy(&r, t->ring + o, sizeof r);
        uint64_t size = r.flags == MS_REC_PAD ? r.length : HDR + ALIGN8(r.length);
        special_rec sp;
        if (r.flags != MS_REC_PAD && (r.flags & ~MS_REC_KIND_MASK) != 0) {
            if (!special_ok(t, &r, o, &sp))
                return MS_E_LAYOUT;
            if (sp.missed) {
                *lost += sp.missed;
                (*losses)++;
            }
        }
        if (r.seq != hs || size < HDR || size > tail - h || o + size > cap ||
            (r.flags == MS_REC_PAD && (r.length != cap - o || o == 0)) ||
            (r.flags != MS_REC_PAD && r.length > t->max_message))
            return MS_E_LAYOUT;
        h += size;
        if (r.flags != MS_REC_PAD)
            hs++;
    }
    if (h != tail)
        return MS_E_LAYOUT;
    *nseq = hs;
    return MS_OK;
}

/* Repair after a publisher died holding pub_lock.  It exposed nothing (tail moves last);
 * intent stays where it is -- it may already have overwritten bytes below it, and
 * lowering intent would let a subscriber there validate a torn copy.  What it may have
 * left half done is redone: a head update (head_seq is recomputed from the record at
 * head), and a commit that stored next_seq but died before tail (next_seq is recounted
 * from the records in [head, tail): a record numbered past a gap would otherwise make
 * every later walk over it fail). */
static ms_status repair_locked(ms_topic_handle *t)
{
    ms_topic *tp = t->tp;
    if (ms_load_relaxed32(&tp->subscribing)) {
        /* the dead holder was subscribing: only the entry it was claiming is left over
         * (claims happen under this lock only, so every CLAIMING entry is its) */
        for (uint32_t i = 0; i < t->max_subs; i++) {
            uint32_t c = MS_PID_CLAIMING;
            ms_cas32(&t->subs[i].pid, &c, 0);
        }
        ms_store32(&tp->subscribing, 0);
        ms_add64(&tp->subscriber_deaths, 1);
        return MS_OK;
    }
    ms_add64(&tp->publisher_deaths, 1);
    ms_add64(&tp->abandoned, 1);
    uint64_t g = ms_load_relaxed64(&tp->head_gen);
    uint64_t tail = ms_load_relaxed64(&tp->tail);
    uint64_t h = ms_load_relaxed64(&tp->head);
    uint64_t hs = ms_load_relaxed64(&tp->head_seq);
    uint64_t nseq = ms_load_relaxed64(&tp->next_seq);
    uint64_t cap = t->cap;
    int ok = h <= tail && tail - h <= cap && h % 8 == 0 && tail % 8 == 0;
    if (ok && (g & 1u)) {
        /* died between head_seq and head: take the seq from the record at head */
        hs = nseq;
        if (h < tail) {
            uint64_t off = h % cap;
            if (cap - off < HDR) {
                /* an implicit pad: the record after it is at the next lap's offset 0 */
                h += cap - off;
                off = 0;
            }
            if (h < tail) {
                rec_hdr r;
                memcpy(&r, t->ring + off, sizeof r);
                hs = r.seq;
            }
        }
    }
    uint64_t counted = 0, lost = 0, losses = 0;
    if (ok && count_locked(t, h, hs, tail, &counted, &lost, &losses) == MS_OK &&
        (counted == nseq || counted + 1 == nseq)) {
        if (counted != nseq)
            ms_store64(&tp->next_seq, counted);
        if (!(g & 1u)) {
            /* the loss totals follow from what head stands for and the records held (a
             * loss record's commit may have stored them and died before tail) */
            ms_store64(&tp->lost, ms_load_relaxed64(&tp->head_lost) + lost);
            ms_store64(&tp->losses, ms_load_relaxed64(&tp->head_losses) + losses);
            return MS_OK;
        }
        /* died moving head: what head stands for follows from the totals */
        lost = ms_load_relaxed64(&tp->lost) - lost;
        losses = ms_load_relaxed64(&tp->losses) - losses;
    } else {
        /* unrecoverable: hold nothing (subscribers validate by intent, not head) */
        h = tail;
        hs = nseq;
        lost = ms_load_relaxed64(&tp->lost);
        losses = ms_load_relaxed64(&tp->losses);
    }
    if (!(g & 1u)) {
        ms_store64(&tp->head_gen, ++g);
        fence_release();
    }
    ms_store64(&tp->head_seq, hs);
    ms_store64(&tp->head_lost, lost);
    ms_store64(&tp->head_losses, losses);
    ms_store64(&tp->head, h);
    ms_store64(&tp->head_gen, g + 1);
    return MS_OK;
}

static ms_status pub_lock_contended(ms_topic_handle *t, const ms_wait_opts *o)
{
    ms_wait_opts now = { 0, 0, NULL, NULL, 1, NULL };
    ms_status st = ms_lock_acquire(t->seg, MS_SLOT_PUB_LOCK, t->tp->pub_lock, &now, NULL);
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
        st = ms_lock_acquire(t->seg, MS_SLOT_PUB_LOCK, t->tp->pub_lock, &now, NULL);
        if (st != MS_E_TIMEOUT)
            return st;
        ms_p_yield();
        el = ms_p_monotonic_ns() - start;
    }
    ms_wait_opts w = *o;
    w.spin_ns = 0;
    if (w.timeout_ns > 0)
        w.timeout_ns = w.timeout_ns > (int64_t)el ? w.timeout_ns - (int64_t)el : 1;
    return ms_lock_acquire(t->seg, MS_SLOT_PUB_LOCK, t->tp->pub_lock, &w, NULL);
}

/* Take pub_lock; o->timeout_ns 0 tries once. */
static ALWAYS_INLINE ms_status pub_lock(ms_topic_handle *t, const ms_wait_opts *o)
{
    ms_status st = o->timeout_ns == 0
                       ? ms_lock_acquire(t->seg, MS_SLOT_PUB_LOCK, t->tp->pub_lock, o, NULL)
                       : pub_lock_contended(t, o);
    if (st == MS_E_OWNER_DIED)
        st = repair_locked(t);
    return st;
}

static void pub_unlock(ms_topic_handle *t)
{
    ms_lock_release(t->seg, MS_SLOT_PUB_LOCK, t->tp->pub_lock, NULL);
}

/* ---- subscriber table ---------------------------------------------------------------- */

/* Free the entry of a subscriber found dead (claim it first, so that of several finders
 * only one frees it), giving back the threads it had asleep on data_seq.  1 if freed. */
static int reap_sub(ms_topic_handle *t, ms_topic_sub *e, uint32_t pid)
{
    if (!ms_cas32(&e->pid, &pid, MS_PID_REAPING))
        return 0;
    uint32_t c = ms_xchg32(&e->state, 0);
    uint32_t sleepers = c / MS_SLEEPER;
    if (sleepers) {
        uint32_t w = ms_load32(&t->tp->sub_waiters);
        while (!ms_cas32(&t->tp->sub_waiters, &w, w > sleepers ? w - sleepers : 0))
            ;
    }
    ms_add64(&t->tp->subscriber_deaths, 1);
    ms_store32(&e->pid, 0);
    return 1;
}

static int sub_dead(ms_topic_sub *e, uint32_t pid)
{
    return ms_p_process_alive(pid, ms_load_relaxed64(&e->start)) == 0;
}

/* Reap dead entries: all of them, or only those with sleepers (the waiter repair). */
static void reap_dead_subs(ms_topic_handle *t, int only_sleepers)
{
    for (uint32_t i = 0; i < t->max_subs; i++) {
        ms_topic_sub *e = &t->subs[i];
        uint32_t pid = ms_load_relaxed32(&e->pid);
        if (is_sub_pid(pid) && (!only_sleepers || ms_load_relaxed32(&e->state) >= MS_SLEEPER) &&
            sub_dead(e, pid))
            reap_sub(t, e, pid);
    }
}

/* ---- publishing ---------------------------------------------------------------------- */


/* Block mode, with pub_lock held: 1 if a live subscriber (by its entry; liveness is
 * checked only while waiting) still has to read something below `low`. */
static int blocked_below(ms_topic_handle *t, uint64_t low)
{
    ms_topic *tp = t->tp;
    uint64_t key = ms_load_relaxed64(&tp->subscribes);
    if (t->min_valid && t->min_key == key && t->min_pos >= low)
        return 0;  /* nobody joined since the last scan, and positions only grow */
    uint64_t min = UINT64_MAX;
    for (uint32_t i = 0; i < t->max_subs; i++) {
        ms_topic_sub *e = &t->subs[i];
        uint32_t pid = ms_load32(&e->pid);
        if (!is_sub_pid(pid))
            continue;
        uint64_t p = ms_load64(&e->pos);
        if (p < min)
            min = p;
    }
    t->min_pos = min;
    t->min_key = key;
    t->min_valid = 1;
    return min < low;
}

struct progress_pred { ms_topic_handle *t; uint64_t low; };

static int progress_pred(void *arg)
{
    struct progress_pred *p = (struct progress_pred *)arg;
    ms_topic_handle *t = p->t;
    if (t->abort_waits)
        return 1;
    for (uint32_t i = 0; i < t->max_subs; i++) {
        ms_topic_sub *e = &t->subs[i];
        uint32_t pid = ms_load32(&e->pid);
        if (is_sub_pid(pid) && ms_load64(&e->pos) < p->low)
            return 0;
    }
    return 1;
}

/* Reap the dead among the subscribers holding the publisher back. */
static void reap_blockers(ms_topic_handle *t, uint64_t low)
{
    for (uint32_t i = 0; i < t->max_subs; i++) {
        ms_topic_sub *e = &t->subs[i];
        uint32_t pid = ms_load32(&e->pid);
        if (is_sub_pid(pid) && ms_load64(&e->pos) < low && sub_dead(e, pid))
            reap_sub(t, e, pid);
    }
    t->min_valid = 0;
}

/* With pub_lock held: place a record of rsize bytes at the tail.  Drops (advances head
 * past) every record it will overwrite, stores intent, writes the padding record if one
 * is needed.  MS_OK: *start, *seq set, the caller writes the record and calls
 * publish_locked.  MS_E_FULL (block mode): *low = the position every live subscriber must
 * reach first; nothing was changed. */
static ms_status reserve_slow(ms_topic_handle *t, uint64_t rsize, uint64_t *start,
                              uint64_t *seq, uint64_t *low_out);

/* One body, two copies: reserve_fast (slow 0: a leaf function, exactly the walk it
 * always was) and reserve_slow (slow 1: also sums the loss records it drops into what
 * head stands for). */
static ALWAYS_INLINE ms_status reserve_impl(ms_topic_handle *t, uint64_t rsize,
                                            uint64_t *start, uint64_t *seq, uint64_t *low_out,
                                            const int slow)
{
    ms_topic *tp = t->tp;
    uint64_t cap = t->cap;
    uint64_t tail = ms_load_relaxed64(&tp->tail);
    uint64_t nseq = ms_load_relaxed64(&tp->next_seq);
    uint64_t intent = ms_load_relaxed64(&tp->intent);
    uint64_t h = ms_load_relaxed64(&tp->head);
    uint64_t hs = ms_load_relaxed64(&tp->head_seq);
    if (tail % 8 || h % 8 || h > tail || tail - h > cap || intent < tail ||
        intent - tail > cap || hs > nseq || tail > (UINT64_MAX >> 2))
        return MS_E_LAYOUT;
    uint64_t off = tail % cap;
    uint64_t pad = 0;
    if (cap - off < HDR || off + rsize > cap)
        pad = cap - off;
    uint64_t s = tail + pad;
    uint64_t end = s + rsize;
    uint64_t low = end > cap ? end - cap : 0;
    if (low > tail)
        return MS_E_LAYOUT;  /* rsize <= cap / 2 makes this impossible */
    if (t->overflow == MS_TOPIC_BLOCK && h < low && blocked_below(t, low)) {
        *low_out = low;
        return MS_E_FULL;
    }
    if (h < low) {
        /* drop the records the new one overwrites (each fully written: below tail) */
        uint64_t nh = h, nhs = hs, dlost = 0, dlosses = 0;
        while (nh < low) {
            uint64_t o = nh % cap;
            if (cap - o < HDR) {
                nh += cap - o;
                continue;
            }
            rec_hdr r;
            memcpy(&r, t->ring + o, sizeof r);
            uint64_t size;
            if (r.flags == MS_REC_PAD) {
                if (r.length != cap - o || o == 0 || r.seq != nhs)
                    return MS_E_LAYOUT;
                size = r.length;
            } else {
                size = HDR + ALIGN8(r.length);
                if ((r.flags & ~MS_REC_KIND_MASK) != 0) {
                    if (!slow)  /* nothing was changed yet: start over off the fast path */
                        return reserve_slow(t, rsize, start, seq, low_out);
                    special_rec sp;
                    if (!special_ok(t, &r, o, &sp) || r.seq != nhs)
                        return MS_E_LAYOUT;
                    if (sp.missed) {
                        dlost += sp.missed;
                        dlosses++;
                    }
                } else if (r.length > t->max_message || o + size > cap || r.seq != nhs) {
                    return MS_E_LAYOUT;
                }
                nhs++;
            }
            nh += size;
            if (nh > tail)
                return MS_E_LAYOUT;
        }
        uint64_t g = ms_load_relaxed64(&tp->head_gen);
        ms_store64(&tp->head_gen, g + 1);
        fence_release();
        ms_store64(&tp->head_seq, nhs);
        if (slow && dlosses) {
            ms_store64(&tp->head_lost, ms_load_relaxed64(&tp->head_lost) + dlost);
            ms_store64(&tp->head_losses, ms_load_relaxed64(&tp->head_losses) + dlosses);
        }
        ms_store64(&tp->head, nh);
        ms_store64(&tp->head_gen, g + 2);
    }
    if (end > intent) {
        ms_store64(&tp->intent, end);
        /* the overwrite below must not become visible before the new intent */
        fence_release();
    }
    if (pad >= HDR) {
        rec_hdr r = { (uint32_t)pad, MS_REC_PAD, nseq };
        memcpy(t->ring + off, &r, sizeof r);
    }
    *start = s;
    *seq = nseq;
    return MS_OK;
}

static ms_status reserve_fast(ms_topic_handle *t, uint64_t rsize, uint64_t *start,
                              uint64_t *seq, uint64_t *low_out)
{
    return reserve_impl(t, rsize, start, seq, low_out, 0);
}

static COLD ms_status reserve_slow(ms_topic_handle *t, uint64_t rsize, uint64_t *start,
                                   uint64_t *seq, uint64_t *low_out)
{
    return reserve_impl(t, rsize, start, seq, low_out, 1);
}

static ALWAYS_INLINE ms_status reserve_locked(ms_topic_handle *t, uint64_t rsize,
                                              uint64_t *start, uint64_t *seq,
                                              uint64_t *low_out)
{
    return reserve_fast(t, rsize, start, seq, low_out);
}

/* With pub_lock held, after the payload was written at start + 16: write the header
 * and publish (tail moves last: a publisher killed before it exposes nothing). */
static void publish_locked(ms_topic_handle *t, uint64_t start, uint64_t len, uint32_t kind,
                           uint64_t seq)
{
    ms_topic *tp = t->tp;
    rec_hdr r = { (uint32_t)len, (kind << MS_REC_KIND_SHIFT) & MS_REC_KIND_MASK, seq };
    memcpy(t->ring + start % t->cap, &r, sizeof r);
    ms_store64(&tp->next_seq, seq + 1);
    tp->published_bytes += len;
    ms_store_sc64(&tp->tail, start + HDR + ALIGN8(len));
}

/* After a sequentially consistent store of tail. */
static void wake_subscribers(ms_topic_handle *t)
{
    int n = ms_wake_waiters_sc(t->seg, MS_SLOT_DATA, &t->tp->data_seq, &t->tp->sub_waiters);
    if (n == 0 && ++t->idle_wakes >= REPAIR_AFTER) {
        t->idle_wakes = 0;
        reap_dead_subs(t, 1);
    } else if (n != 0) {
        t->idle_wakes = 0;
    }
}

struct pub_args {
    ms_topic_handle *t;
    const void *data;
    size_t n;
    uint32_t kind;
    const ms_wait_opts *o;
    uint8_t **loan_ptr;   /* non-NULL: reserve only, keep the lock */
    uint64_t *seq;
};

/* A special record's arguments (publish_special_fn): the plain ones, then */
struct special_args {
    struct pub_args a;
    const ms_origin *origin;  /* or NULL */
    uint64_t missed;          /* a loss record: the messages it stands for (> 0); else 0 */
};

/* Bytes of the body of a special record: the origin block, then the payload (a loss
 * record: the uint64 count). */
static uint64_t special_body(const struct special_args *a)
{
    uint64_t b = a->origin ? sizeof(ms_topic_origin) + ALIGN8(a->origin->host_len) : 0;
    return b + (a->missed ? 8 : a->a.n);
}

/* publish_locked for a special record (an origin, or a loss record): write its body and
 * header, count it, publish it (tail last, as always). */
static void publish_special_locked(ms_topic_handle *t, uint64_t start,
                                   const struct special_args *a, uint64_t seq)
{
    ms_topic *tp = t->tp;
    uint8_t *rec = t->ring + start % t->cap;
    uint8_t *body = rec + HDR;
    uint64_t block = 0;
    uint32_t flags = (a->a.kind << MS_REC_KIND_SHIFT) & MS_REC_KIND_MASK;
    if (a->origin) {
        uint32_t hl = a->origin->host_len;
        ms_topic_origin ob = { a->origin->seq, hl, 0 };
        memcpy(body, &ob, sizeof ob);
        memcpy(body + sizeof ob, a->origin->host, hl);
        memset(body + sizeof ob + hl, 0, (size_t)(ALIGN8(hl) - hl));
        block = sizeof ob + ALIGN8(hl);
        flags |= MS_REC_ORIGIN;
    }
    uint64_t len;
    if (a->missed) {
        memcpy(body + block, &a->missed, sizeof a->missed);
        flags = (flags & ~MS_REC_KIND_MASK) | MS_REC_LOSS;
        len = block + 8;
    } else {
        memcpy(body + block, a->a.data, a->a.n);
        len = block + a->a.n;
    }
    rec_hdr r = { (uint32_t)len, flags, seq };
    memcpy(rec, &r, sizeof r);
    ms_store64(&tp->next_seq, seq + 1);
    if (a->missed) {
        /* before tail, like next_seq: repair_locked recounts both from the records */
        ms_store64(&tp->lost, ms_load_relaxed64(&tp->lost) + a->missed);
        ms_store64(&tp->losses, ms_load_relaxed64(&tp->losses) + 1);
    } else {
        tp->published_bytes += a->a.n;
        tp->origin_published += 1;
    }
    ms_store_sc64(&tp->tail, start + HDR + ALIGN8(len));
}

/* Block mode, unlocked: wait until every live subscriber reached `low`, checking the
 * blockers' liveness every slice.  Returns MS_OK (look again), MS_E_TIMEOUT, or what
 * the wait returned. */
static ms_status wait_progress(ms_topic_handle *t, uint64_t low, const ms_wait_opts *o,
                               uint64_t *start)
{
    ms_wait_opts wo = *o;
    if (wo.timeout_ns > 0) {
        if (!*start)
            *start = ms_p_monotonic_ns();
        uint64_t el = ms_p_monotonic_ns() - *start;
        if (el >= (uint64_t)o->timeout_ns)
            return MS_E_TIMEOUT;
        wo.timeout_ns = o->timeout_ns - (int64_t)el;
    }
    if (wo.timeout_ns < 0 || wo.timeout_ns > BLOCK_SLICE_NS)
        wo.timeout_ns = BLOCK_SLICE_NS;
    wo.mark = NULL;
    struct progress_pred pp = { t, low };
    ms_status st = ms_wait_for(t->seg, MS_SLOT_PROGRESS, &t->tp->progress,
                               &t->tp->pub_waiters, progress_pred, &pp, &wo);
    if (st == MS_E_TIMEOUT) {
        reap_blockers(t, low);
        if (o->timeout_ns > 0 && ms_p_monotonic_ns() - *start >= (uint64_t)o->timeout_ns &&
            !progress_pred(&pp))
            return MS_E_TIMEOUT;
        /* a slice is the one place Ctrl-C is seen while blocked (ms_wait_for returned
         * at the end of its only slice) */
        if (wo.interrupted && wo.interrupted(wo.arg))
            return MS_E_INTERRUPTED;
        return MS_OK;
    }
    t->min_valid = 0;
    if (st == MS_OK && t->abort_waits)
        return MS_E_TIMEOUT;
    return st;
}

/* One body for both publishes, specialised at compile time: the plain one (special 0)
 * stays exactly what it was; special records (an origin, a loss) go through the other. */
static ALWAYS_INLINE ms_status publish_impl(struct pub_args *a, const int special)
{
    ms_topic_handle *t = a->t;
    uint64_t rsize = HDR + ALIGN8(special ? special_body((struct special_args *)a) : a->n);
    ms_wait_opts lo = *a->o;
    uint64_t start = 0;
    if (a->o->try_only)
        lo.timeout_ns = 0;
    else if (a->o->timeout_ns == 0)
        lo.timeout_ns = MS_LOCK_NOWAIT_NS;
    for (;;) {
        ms_status st = pub_lock(t, &lo);
        if (st == MS_E_TIMEOUT && a->o->try_only)
            return MS_E_RETRY_NO_GIL;
        if (st == MS_E_TIMEOUT && a->o->timeout_ns == 0)
            return MS_E_FULL;
        if (st != MS_OK)
            return st;
        uint64_t s, seq, low = 0;
        st = reserve_locked(t, rsize, &s, &seq, &low);
        if (st == MS_OK) {
            if (a->loan_ptr) {
                t->loan_open = 1;
                t->loan_kind = a->kind;
                t->loan_start = s;
                t->loan_size = a->n;
                t->loan_seq = seq;
                *a->loan_ptr = t->ring + s % t->cap + HDR;
                return MS_OK;  /* pub_lock stays held until commit or abort */
            }
            if (special) {
                publish_special_locked(t, s, (struct special_args *)a, seq);
            } else {
                memcpy(t->ring + s % t->cap + HDR, a->data, a->n);
                publish_locked(t, s, a->n, a->kind, seq);
            }
            pub_unlock(t);
            wake_subscribers(t);
            if (a->seq)
                *a->seq = seq;
            return MS_OK;
        }
        pub_unlock(t);
        if (st != MS_E_FULL)
            return st;
        if (a->o->timeout_ns == 0)
            return MS_E_FULL;
        st = wait_progress(t, low, a->o, &start);
        if (st != MS_OK)
            return st;
    }
}

static ms_status publish_fn(void *arg)
{
    return publish_impl((struct pub_args *)arg, 0);
}

static ms_status publish_special_fn(void *arg)
{
    return publish_impl((struct pub_args *)arg, 1);
}

static ms_status run_pub(struct pub_args *a, ms_status (*fn)(void *))
{
    ms_status st = ms_p_guarded_call(fn, a);
    if (st == MS_E_FAULT)
        ms_segment_fault(a->t->seg);
    return st;
}

ms_status ms_topic_publish(ms_topic_handle *t, const void *data, size_t n, uint32_t kind,
                           const ms_wait_opts *o, uint64_t *seq)
{
    if (n > t->max_message)
        return MS_E_TOO_LARGE;
    struct pub_args a = { t, data, n, kind, o, NULL, seq };
    return run_pub(&a, publish_fn);
}

static int origin_ok(const ms_origin *origin)
{
    return origin->host && origin->host_len >= 1 && origin->host_len <= MS_TOPIC_HOST_MAX;
}

ms_status ms_topic_publish_origin(ms_topic_handle *t, const void *data, size_t n,
                                  uint32_t kind, const ms_origin *origin,
                                  const ms_wait_opts *o, uint64_t *seq)
{
    if (!origin)
        return ms_topic_publish(t, data, n, kind, o, seq);
    if (!origin_ok(origin) || kind > 255)
        return MS_E_INVALID;
    if (n > t->max_message)
        return MS_E_TOO_LARGE;
    struct special_args a = { { t, data, n, kind, o, NULL, seq }, origin, 0 };
    if (special_body(&a) > t->max_message)
        return MS_E_TOO_LARGE;
    return run_pub(&a.a, publish_special_fn);
}

ms_status ms_topic_publish_loss(ms_topic_handle *t, uint64_t missed, const ms_origin *origin,
                                const ms_wait_opts *o, uint64_t *seq)
{
    if (missed == 0 || missed > MS_TOPIC_LOSS_MAX || (origin && !origin_ok(origin)))
        return MS_E_INVALID;
    struct special_args a = { { t, NULL, 0, MS_REC_KIND_BYTES, o, NULL, seq }, origin, missed };
    if (special_body(&a) > t->max_message)
        return MS_E_TOO_LARGE;
    return run_pub(&a.a, publish_special_fn);
}

ms_status ms_topic_loan(ms_topic_handle *t, size_t n, uint8_t **ptr, const ms_wait_opts *o)
{
    if (n > t->max_message)
        return MS_E_TOO_LARGE;
    struct pub_args a = { t, NULL, n, MS_REC_KIND_BYTES, o, ptr, NULL };
    return run_pub(&a, publish_fn);
}

static ms_status commit_fn(void *arg)
{
    ms_topic_handle *t = (ms_topic_handle *)arg;
    publish_locked(t, t->loan_start, t->loan_size, t->loan_kind, t->loan_seq);
    return MS_OK;
}

ms_status ms_topic_commit(ms_topic_handle *t, size_t used, uint64_t *seq)
{
    if (!t->loan_open || used > t->loan_size)
        return MS_E_INVALID;
    t->loan_size = used;
    t->loan_open = 0;
    ms_status st = ms_p_guarded_call(commit_fn, t);
    if (st == MS_E_FAULT) {
        ms_segment_fault(t->seg);
        return st;
    }
    pub_unlock(t);
    wake_subscribers(t);
    if (seq)
        *seq = t->loan_seq;
    return MS_OK;
}

ms_status ms_topic_abort(ms_topic_handle *t)
{
    if (!t->loan_open)
        return MS_E_INVALID;
    t->loan_open = 0;
    /* nothing was published: the reserved bytes (and the records dropped for them) are
     * simply the next publish's to use; intent stays, which is always safe */
    if (!t->seg->faulted)
        pub_unlock(t);
    return MS_OK;
}

struct batch_args {
    ms_topic_handle *t;
    ms_get_fn get;
    void *arg;
    size_t n;
    size_t *count;
    uint64_t *last_seq;
    uint64_t low;
};

/* Publish what can go now under one lock; MS_E_FULL (block mode) when the next one must
 * wait, with a->low set. */
static ms_status batch_fn(void *arg)
{
    struct batch_args *a = (struct batch_args *)arg;
    ms_topic_handle *t = a->t;
    ms_wait_opts lo = { MS_LOCK_NOWAIT_NS, 0, NULL, NULL, 0, NULL };
    ms_status st = pub_lock(t, &lo);
    if (st == MS_E_TIMEOUT)
        return MS_E_RETRY_NO_GIL;
    if (st != MS_OK)
        return st;
    size_t done = 0;
    while (*a->count < a->n) {
        const uint8_t *p;
        size_t len;
        if (a->get(a->arg, *a->count, &p, &len) != 0) {
            st = MS_E_INVALID;
            break;
        }
        if (len > t->max_message) {
            st = MS_E_TOO_LARGE;
            break;
        }
        uint64_t s, seq;
        st = reserve_locked(t, HDR + ALIGN8(len), &s, &seq, &a->low);
        if (st != MS_OK)
            break;
        memcpy(t->ring + s % t->cap + HDR, p, len);
        publish_locked(t, s, len, MS_REC_KIND_BYTES, seq);
        *a->last_seq = seq;
        (*a->count)++;
        done++;
    }
    pub_unlock(t);
    if (done)
        wake_subscribers(t);
    return st;
}

ms_status ms_topic_publish_batch(ms_topic_handle *t, ms_get_fn get, void *arg, size_t n,
                                 size_t *count, uint64_t *last_seq, const ms_wait_opts *o)
{
    *count = 0;
    uint64_t start = 0;
    while (*count < n) {
        struct batch_args a = { t, get, arg, n, count, last_seq, 0 };
        ms_status st = ms_p_guarded_call(batch_fn, &a);
        if (st == MS_E_FAULT)
            ms_segment_fault(t->seg);
        if (st == MS_OK)
            return MS_OK;
        if (st == MS_E_RETRY_NO_GIL) {
            /* the lock is busy: take it with the caller's full waiting */
            const uint8_t *p;
            size_t len;
            if (get(arg, *count, &p, &len) != 0)
                return MS_E_INVALID;
            uint64_t seq;
            st = ms_topic_publish(t, p, len, MS_REC_KIND_BYTES, o, &seq);
            if (st != MS_OK)
                return st;
            *last_seq = seq;
            (*count)++;
            continue;
        }
        if (st != MS_E_FULL)
            return st;
        if (o->timeout_ns == 0)
            return MS_E_FULL;
        st = wait_progress(t, a.low, o, &start);
        if (st != MS_OK)
            return st;
    }
    return MS_OK;
}

void ms_topic_abort_waits(ms_topic_handle *t)
{
    t->abort_waits = 1;
    if (t->seg->faulted)
        return;
    ms_fence();
    ms_add32(&t->tp->progress, 1);
    ms_p_wake32(t->seg->ctx, MS_SLOT_PROGRESS, &t->tp->progress, 1);
}

void ms_topic_detach(ms_topic_handle *t)
{
    if (t->seg->faulted)
        return;
    if (t->loan_open)
        ms_topic_abort(t);
}

/* ---- subscribing --------------------------------------------------------------------- */

/* With pub_lock held: from (h, hs), walk whole records until the one of seq `target`
 * (or tail).  *pos is its position; *lost and *losses (given for h) become those below
 * it. */
static ms_status walk_locked(ms_topic_handle *t, uint64_t h, uint64_t hs, uint64_t tail,
                             uint64_t target, uint64_t *pos, uint64_t *seq, uint64_t *lost,
                             uint64_t *losses)
{
    uint64_t cap = t->cap;
    while (hs < target && h < tail) {
        uint64_t o = h % cap;
        if (cap - o < HDR) {
            h += cap - o;
            continue;
        }
        rec_hdr r;
        memcpy(&r, t->ring + o, sizeof r);
        if (r.flags == MS_REC_PAD) {
            if (r.length != cap - o || o == 0 || r.length > tail - h || r.seq != hs)
                return MS_E_LAYOUT;
            h += r.length;
            continue;
        }
        uint64_t size = HDR + ALIGN8(r.length);
        if ((r.flags & ~MS_REC_KIND_MASK) != 0) {
            special_rec sp;
            if (!special_ok(t, &r, o, &sp))
                return MS_E_LAYOUT;
            if (sp.missed) {
                *lost += sp.missed;
                (*losses)++;
            }
        }
        if (r.length > t->max_message || o + size > cap || r.seq != hs || size > tail - h)
            return MS_E_LAYOUT;
        h += size;
        hs++;
    }
    if (hs != target)
        return MS_E_LAYOUT;
    *pos = h;
    *seq = hs;
    /* the rest of the log must hold exactly the messages up to next_seq (a subscribe is
     * rare: checking what it will read costs one walk of the ring at most) */
    uint64_t counted = 0, rest_lost = 0, rest_losses = 0;
    ms_status st = count_locked(t, h, hs, tail, &counted, &rest_lost, &rest_losses);
    if (st != MS_OK)
        return st;
    return counted == ms_load_relaxed64(&t->tp->next_seq) ? MS_OK : MS_E_LAYOUT;
}

struct open_args { ms_subscriber *s; int mode; uint64_t seq; };

static int claim_entry(ms_topic_handle *t)
{
    for (uint32_t i = 0; i < t->max_subs; i++) {
        uint32_t zero = 0;
        if (ms_load_relaxed32(&t->subs[i].pid) == 0 &&
            ms_cas32(&t->subs[i].pid, &zero, MS_PID_CLAIMING))
            return (int)i;
    }
    return -1;
}

/* With pub_lock held: claim an entry at the start position and publish it. */
static ms_status register_locked(ms_subscriber *s, int mode, uint64_t want)
{
    ms_topic_handle *t = s->t;
    ms_topic *tp = t->tp;
    uint64_t cap = t->cap;
    uint64_t tail = ms_load_relaxed64(&tp->tail);
    uint64_t nseq = ms_load_relaxed64(&tp->next_seq);
    uint64_t h = ms_load_relaxed64(&tp->head);
    uint64_t hs = ms_load_relaxed64(&tp->head_seq);
    if (tail % 8 || h % 8 || h > tail || tail - h > cap || hs > nseq)
        return MS_E_LAYOUT;
    uint64_t pos = tail, position = nseq;
    /* loss records below the start: all of them (live), or those below head and then
     * those walked over */
    uint64_t lost = ms_load_relaxed64(&tp->lost), losses = ms_load_relaxed64(&tp->losses);
    uint64_t hlost = ms_load_relaxed64(&tp->head_lost);
    uint64_t hlosses = ms_load_relaxed64(&tp->head_losses);
    ms_status st = MS_OK;
    s->skip_until = 0;
    s->pending_missed = 0;
    s->pending_upstream = 0;
    if (mode == MS_SUB_HISTORY) {
        uint64_t held = nseq - hs;
        uint64_t k = held < t->history ? held : t->history;
        lost = hlost;
        losses = hlosses;
        st = walk_locked(t, h, hs, tail, nseq - k, &pos, &position, &lost, &losses);
    } else if (mode == MS_SUB_SEQ) {
        if (want >= nseq) {
            s->skip_until = want;
        } else if (want >= hs) {
            lost = hlost;
            losses = hlosses;
            st = walk_locked(t, h, hs, tail, want, &pos, &position, &lost, &losses);
        } else {
            /* counted now, reported by the first receive (in sequence numbers: what the
             * loss records among them stood for is gone with them) */
            pos = h;
            position = hs;
            lost = hlost;
            losses = hlosses;
            s->pending_missed = hs - want;
            s->missed += hs - want;
            s->lagged++;
        }
    } else if (mode == MS_SUB_REGISTER) {
        pos = s->pos;
        position = s->position;
        lost = s->lost_below;
        losses = s->losses_below;
    }
    if (st != MS_OK)
        return st;
    int slot = claim_entry(t);
    if (slot < 0) {
        reap_dead_subs(t, 0);
        slot = claim_entry(t);
    }
    if (slot < 0)
        return MS_E_SUBSCRIBER_LIMIT;
    ms_topic_sub *e = &t->subs[slot];
    uint32_t me = ms_p_pid();
    e->start = ms_p_process_start(me);
    e->state = 0;
    e->position = position;
    e->pos = pos;
    e->received = s->received;
    e->missed = s->missed;
    e->lagged = s->lagged;
    e->upstream = s->upstream;
    ms_add64(&tp->subscribes, 1);
    ms_store32(&e->pid, me);
    s->slot = slot;
    s->pos = pos;
    s->position = position;
    s->lost_below = lost;
    s->losses_below = losses;
    s->need_register = 0;
    return MS_OK;
}

static ms_status open_fn(void *arg)
{
    struct open_args *a = (struct open_args *)arg;
    ms_topic_handle *t = a->s->t;
    /* pub_lock is held briefly by publishers, and for as long as a loan is open: a
     * subscribe does not wait for a loan left open forever */
    ms_wait_opts lo = { SUBSCRIBE_LOCK_NS, 0, NULL, NULL, 0, NULL };
    ms_status st = pub_lock(t, &lo);
    if (st != MS_OK)
        return st;
    /* a subscriber that dies holding the lock is not a dead publisher (repair_locked) */
    ms_store32(&t->tp->subscribing, 1);
    st = register_locked(a->s, a->mode, a->seq);
    ms_store32(&t->tp->subscribing, 0);
    pub_unlock(t);
    return st;
}

static ms_status do_register(ms_subscriber *s, int mode, uint64_t seq)
{
    struct open_args a = { s, mode, seq };
    ms_status st = ms_p_guarded_call(open_fn, &a);
    if (st == MS_E_FAULT)
        ms_segment_fault(s->t->seg);
    return st;
}

ms_status ms_subscriber_open(ms_subscriber *s, ms_topic_handle *t, int mode, uint64_t seq)
{
    memset(s, 0, sizeof *s);
    s->t = t;
    s->slot = -1;
    if (mode < MS_SUB_LIVE || mode > MS_SUB_SEQ)
        return MS_E_INVALID;
    ms_status st = do_register(s, mode, seq);
    if (st != MS_OK)
        s->closed = 1;
    return st;
}

static inline ms_topic_sub *my_entry(ms_subscriber *s)
{
    return s->slot >= 0 ? &s->t->subs[s->slot] : NULL;
}

/* Our entry says where we are: plain stores on our own line.  In block mode a publisher
 * may sleep until we move: the store of pos and the check of its waiter count must not
 * be reordered (a sequentially consistent store, then the load). */
static void publish_progress(ms_subscriber *s)
{
    ms_topic_sub *e = my_entry(s);
    if (!e)
        return;
    ms_topic_handle *t = s->t;
    ms_store64(&e->position, s->position);
    ms_store64(&e->received, s->received);
    if (t->overflow == MS_TOPIC_BLOCK) {
        ms_store_sc64(&e->pos, s->pos);
        if (ms_load_relaxed32(&t->tp->pub_waiters) != 0) {
            ms_add32(&t->tp->progress, 1);
            ms_p_wake32(t->seg->ctx, MS_SLOT_PROGRESS, &t->tp->progress, 1);
        }
    } else {
        ms_store64(&e->pos, s->pos);
    }
}

/* 1 if the record at pos may have been overwritten since it was read; *intent is the
 * value that says so (the bound the oldest record still held must respect). */
static inline int overwritten(ms_subscriber *s, uint64_t pos, uint64_t *intent)
{
    fence_acquire();
    *intent = ms_load64(&s->t->tp->intent);
    return *intent > pos + s->t->cap;
}

/* Status of the lag path when a publisher is in the middle of moving head (or died
 * there): nothing can be said yet; the caller waits as if empty. */
#define LAG_STALLED MS_E_EMPTY

static void absorb_losses(ms_subscriber *s);

/* Overwritten: jump to the oldest record still held, counting what was lost (and the
 * loss records that follow at once: one Lagged).  MS_OK when nothing was lost after all
 * (only padding was overwritten): read on. */
static ms_status lag(ms_subscriber *s, uint64_t bound)
{
    ms_topic *tp = s->t->tp;
    uint64_t cap = s->t->cap;
    for (unsigned i = 0; i < HEAD_TRIES; i++) {
        uint64_t g1 = ms_load64(&tp->head_gen);
        if (g1 & 1u) {
            if (i % 64 == 63)
                ms_p_yield();
            else
                ms_cpu_relax();
            continue;
        }
        uint64_t h = ms_load_relaxed64(&tp->head);
        uint64_t hs = ms_load_relaxed64(&tp->head_seq);
        uint64_t hl = ms_load_relaxed64(&tp->head_lost);
        uint64_t hn = ms_load_relaxed64(&tp->head_losses);
        fence_acquire();
        if (ms_load_relaxed64(&tp->head_gen) != g1)
            continue;
        uint64_t tail = ms_load64(&tp->tail);
        /* the oldest record held lies past what was overwritten (bound - cap): a head
         * that does not is no head a publisher wrote (and would loop forever) */
        if (h % 8 || h > tail || h <= s->pos || hs < s->position || h + cap < bound)
            return MS_E_LAYOUT;
        if (tail - h > cap)
            continue;  /* lapped again since head was read (a fast publisher): re-read */
        uint64_t from = s->position > s->skip_until ? s->position : s->skip_until;
        uint64_t m = hs > from ? hs - from : 0;
        uint64_t up = 0;
        if (from == s->position) {
            /* of the m sequence numbers lost, dn were loss records standing for `up`
             * messages lost upstream: the subscriber lost m - dn + up messages */
            uint64_t dn = hn - s->losses_below;
            up = hl - s->lost_below;
            if (hn < s->losses_below || hl < s->lost_below || dn > m || up < dn ||
                (dn ? up / dn > MS_TOPIC_LOSS_MAX : up != 0))
                return MS_E_LAYOUT;
            m = m - dn + up;
        }
        s->lost_below = hl;
        s->losses_below = hn;
        s->pos = h;
        s->position = hs;
        if (m == 0) {
            publish_progress(s);
            return MS_OK;
        }
        s->missed += m;
        s->upstream += up;
        s->lagged++;
        s->lag_missed = m;
        s->lag_upstream = up;
        s->lag_position = hs;
        ms_topic_sub *e = my_entry(s);
        if (e) {
            ms_store64(&e->missed, s->missed);
            ms_store64(&e->lagged, s->lagged);
            ms_store64(&e->upstream, s->upstream);
        }
        publish_progress(s);
        absorb_losses(s);
        return MS_E_LAGGED;
    }
    return LAG_STALLED;
}

struct read_args {
    ms_subscriber *s;
    ms_alloc_fn alloc;      /* NULL: peek */
    void *alloc_arg;
    const uint8_t **ptr;
    size_t *len;
    int try_only;           /* the GIL-held fast path: big copies go without it */
};

#define FAST_COPY_MAX 65536u

/* Count a loss record of `missed` messages at p (rsize bytes) as read: the subscriber
 * moves past it and reports it as Lagged (added to lag_* when `merge`). */
static void consume_loss(ms_subscriber *s, uint64_t p, uint64_t rsize, uint64_t missed,
                         int merge)
{
    s->pos = p + rsize;
    s->position++;
    s->lost_below += missed;
    s->losses_below++;
    s->missed += missed;
    s->upstream += missed;
    if (merge) {
        s->lag_missed += missed;
        s->lag_upstream += missed;
    } else {
        s->lagged++;
        s->lag_missed = missed;
        s->lag_upstream = missed;
    }
    s->lag_position = s->position;
    ms_topic_sub *e = my_entry(s);
    if (e) {
        ms_store64(&e->missed, s->missed);
        ms_store64(&e->lagged, s->lagged);
        ms_store64(&e->upstream, s->upstream);
    }
    publish_progress(s);
}

/* After a Lagged: loss records that follow at once are part of the same loss (a lap
 * that ends at a loss record, or several in a row): report them in the same Lagged.
 * Stops at anything else, or anything not certainly intact. */
static void absorb_losses(ms_subscriber *s)
{
    ms_topic_handle *t = s->t;
    uint64_t cap = t->cap;
    for (int i = 0; i < 64; i++) {
        uint64_t tail = ms_load64(&t->tp->tail);
        uint64_t p = s->pos;
        if (p >= tail || tail - p > cap || s->position < s->skip_until)
            return;
        uint64_t off = p % cap;
        if (cap - off < HDR)
            return;
        rec_hdr r;
        memcpy(&r, t->ring + off, sizeof r);
        special_rec sp;
        uint64_t intent;
        if (!(r.flags & MS_REC_LOSS) || !special_ok(t, &r, off, &sp) ||
            r.seq != s->position || HDR + ALIGN8(r.length) > tail - p ||
            overwritten(s, p, &intent))
            return;
        consume_loss(s, p, HDR + ALIGN8(r.length), sp.missed, 1);
    }
}

static ms_status read_special(struct read_args *a, const rec_hdr *r, uint64_t p,
                              uint64_t tail, int *next);

/* One attempt, no waiting: MS_OK (delivered or viewed), MS_E_EMPTY, MS_E_LAGGED. */
static ms_status read_fn(void *arg)
{
    struct read_args *a = (struct read_args *)arg;
    ms_subscriber *s = a->s;
    ms_topic_handle *t = s->t;
    uint64_t cap = t->cap;
    if (s->pending_missed) {
        s->lag_missed = s->pending_missed;
        s->lag_upstream = s->pending_upstream;
        s->lag_position = s->position;
        s->pending_missed = 0;
        s->pending_upstream = 0;
        absorb_losses(s);
        return MS_E_LAGGED;
    }
    /* each pass moves past one record of [pos, tail) or returns: bounded by the ring */
    for (unsigned guard = 0;; guard++) {
        uint64_t tail = ms_load64(&t->tp->tail);
        uint64_t p = s->pos;
        if (tail == p)
            return MS_E_EMPTY;
        if (p > tail || guard > cap / 8 + 2)
            return MS_E_LAYOUT;
        uint64_t intent;
        if (tail - p > cap) {
            ms_status st = lag(s, tail);
            if (st == MS_OK)
                continue;
            return st;
        }
        uint64_t off = p % cap;
        if (cap - off < HDR) {
            s->pos = p + (cap - off);
            continue;
        }
        rec_hdr r;
        memcpy(&r, t->ring + off, sizeof r);
        if (r.flags == MS_REC_PAD) {
            if (overwritten(s, p, &intent)) {
                ms_status st = lag(s, intent);
                if (st == MS_OK)
                    continue;
                return st;
            }
            if (r.length != cap - off || off == 0 || r.length > tail - p ||
                r.seq != s->position)
                return MS_E_LAYOUT;
            s->pos = p + r.length;
            continue;
        }
        uint64_t rsize = HDR + ALIGN8(r.length);
        if ((r.flags & ~MS_REC_KIND_MASK) != 0 || r.length > t->max_message ||
            off + rsize > cap || rsize > tail - p || r.seq != s->position) {
            if ((r.flags & ~MS_REC_KIND_MASK) != 0) {
                /* an origin or a loss record: off the fast path */
                int next = 0;
                ms_status st = read_special(a, &r, p, tail, &next);
                if (next)
                    continue;
                return st;
            }
            if (overwritten(s, p, &intent)) {
                ms_status st = lag(s, intent);
                if (st == MS_OK)
                    continue;
                return st;
            }
            return MS_E_LAYOUT;
        }
        if (r.seq < s->skip_until) {
            /* start=N beyond the newest when subscribing: not missed, not delivered */
            s->pos = p + rsize;
            s->position++;
            publish_progress(s);
            continue;
        }
        const uint8_t *src = t->ring + off + HDR;
        if (!a->alloc) {
            if (overwritten(s, p, &intent)) {
                ms_status st = lag(s, intent);
                if (st == MS_OK)
                    continue;
                return st;
            }
            s->view_open = 1;
            s->view_pos = p;
            s->view_rsize = rsize;
            s->view_flags = r.flags;
            *a->ptr = src;
            *a->len = r.length;
            return MS_OK;
        }
        if (a->try_only && r.length > FAST_COPY_MAX)
            return MS_E_RETRY_NO_GIL;
        uint8_t *dst = a->alloc(a->alloc_arg, r.length);
        if (!dst)
            return MS_E_INVALID;
        memcpy(dst, src, r.length);
        if (overwritten(s, p, &intent)) {
            /* torn or stale: what dst holds is not a message (the caller drops it) */
            ms_status st = lag(s, intent);
            return st == MS_OK ? MS_E_RETRY_NO_GIL : st;
        }
        s->view_flags = r.flags;
        s->pos = p + rsize;
        s->position++;
        s->received++;
        publish_progress(s);
        return MS_OK;
    }
}

/* A record with MS_REC_ORIGIN or MS_REC_LOSS at p (header r, copied): read_one's steps
 * for it.  *next = 1: it was passed over (read_one goes on with the next record). */
static ms_status read_special(struct read_args *a, const rec_hdr *r, uint64_t p,
                              uint64_t tail, int *next)
{
    ms_subscriber *s = a->s;
    ms_topic_handle *t = s->t;
    uint64_t off = p % t->cap;
    uint64_t rsize = HDR + ALIGN8(r->length);
    uint64_t intent;
    special_rec sp;
    int ok = special_ok(t, r, off, &sp) && rsize <= tail - p && r->seq == s->position;
    if (overwritten(s, p, &intent)) {
        /* torn or stale (whether it looked well-formed or not) */
        ms_status st = lag(s, intent);
        *next = st == MS_OK;
        return st;
    }
    if (!ok)
        return MS_E_LAYOUT;
    /* what sp holds was read before the check above: intact */
    if (r->seq < s->skip_until) {
        /* start=N beyond the newest when subscribing: not missed, not delivered */
        s->pos = p + rsize;
        s->position++;
        if (sp.missed) {
            s->lost_below += sp.missed;
            s->losses_below++;
        }
        publish_progress(s);
        *next = 1;
        return MS_OK;
    }
    if (sp.missed) {
        consume_loss(s, p, rsize, sp.missed, 0);
        absorb_losses(s);
        return MS_E_LAGGED;
    }
    const uint8_t *src = t->ring + off + HDR + sp.block;
    uint64_t len = r->length - sp.block;
    uint32_t hl = sp.ob.host_len;  /* 1..MS_TOPIC_HOST_MAX: checked */
    if (!a->alloc) {
        memcpy(s->origin_host, t->ring + off + HDR + sizeof sp.ob, hl);
        if (overwritten(s, p, &intent)) {
            ms_status st = lag(s, intent);
            *next = st == MS_OK;
            return st;
        }
        s->origin_seq = sp.ob.seq;
        s->origin_host_len = hl;
        s->view_open = 1;
        s->view_pos = p;
        s->view_rsize = rsize;
        s->view_flags = r->flags;
        *a->ptr = src;
        *a->len = (size_t)len;
        return MS_OK;
    }
    if (a->try_only && len > FAST_COPY_MAX)
        return MS_E_RETRY_NO_GIL;
    uint8_t *dst = a->alloc(a->alloc_arg, (size_t)len);
    if (!dst)
        return MS_E_INVALID;
    memcpy(dst, src, (size_t)len);
    memcpy(s->origin_host, t->ring + off + HDR + sizeof sp.ob, hl);
    if (overwritten(s, p, &intent)) {
        ms_status st = lag(s, intent);
        return st == MS_OK ? MS_E_RETRY_NO_GIL : st;
    }
    s->origin_seq = sp.ob.seq;
    s->origin_host_len = hl;
    s->view_flags = r->flags;
    s->pos = p + rsize;
    s->position++;
    s->received++;
    publish_progress(s);
    return MS_OK;
}

static ms_status prepare(ms_subscriber *s)
{
    if (s->closed)
        return MS_E_INVALID;
    if (s->need_register)
        return do_register(s, MS_SUB_REGISTER, 0);
    return MS_OK;
}

static ms_status read_once(struct read_args *a)
{
    ms_status st = ms_p_guarded_call(read_fn, a);
    if (st == MS_E_FAULT)
        ms_segment_fault(a->s->t->seg);
    return st;
}

static int data_pred(void *arg)
{
    ms_subscriber *s = (ms_subscriber *)arg;
    return s->abort_waits || s->pending_missed ||
           ms_load64(&s->t->tp->tail) != s->pos;
}

int ms_subscriber_ready(void *arg)
{
    return data_pred(arg);
}

/* Sleep until the tail moves past `seen` (or the deadline): the wait shared by receive
 * and wait_readable. */
struct moved_pred { ms_subscriber *s; uint64_t seen; };

static int moved_pred(void *arg)
{
    struct moved_pred *m = (struct moved_pred *)arg;
    return m->s->abort_waits || ms_load64(&m->s->t->tp->tail) != m->seen;
}

static ms_status wait_data(ms_subscriber *s, uint64_t seen, const ms_wait_opts *o,
                           int64_t left)
{
    ms_wait_opts wo = *o;
    wo.timeout_ns = left;
    ms_topic_sub *e = my_entry(s);
    wo.mark = e ? &e->state : NULL;
    struct moved_pred mp = { s, seen };
    return ms_wait_for(s->t->seg, MS_SLOT_DATA, &s->t->tp->data_seq, &s->t->tp->sub_waiters,
                       moved_pred, &mp, &wo);
}

static ms_status read_waiting(struct read_args *a, const ms_wait_opts *o)
{
    ms_subscriber *s = a->s;
    ms_status st = prepare(s);
    if (st != MS_OK)
        return st;
    if (s->view_open)
        return MS_E_WINDOW_OPEN;
    a->try_only = o->try_only;
    uint64_t start = 0;
    for (;;) {
        uint64_t seen = s->pos;
        st = read_once(a);
        if (st == MS_E_RETRY_NO_GIL && !a->try_only)
            continue;  /* lapped while copying nothing lost yet: read again */
        if (st != MS_E_EMPTY)
            return st;
        if (o->timeout_ns == 0)
            return MS_E_EMPTY;
        if (s->abort_waits)
            return MS_E_TIMEOUT;
        int64_t left = o->timeout_ns;
        if (left > 0) {
            if (!start)
                start = ms_p_monotonic_ns();
            uint64_t el = ms_p_monotonic_ns() - start;
            if (el >= (uint64_t)o->timeout_ns)
                return MS_E_TIMEOUT;
            left = o->timeout_ns - (int64_t)el;
        }
        /* a stalled lag path (a publisher moving head) leaves tail != pos: wait for the
         * tail to move instead, or spin a slice at most */
        uint64_t tail = ms_load64(&s->t->tp->tail);
        if (tail != seen) {
            seen = tail;
            if (left < 0 || left > 1000000)
                left = 1000000;
        }
        st = wait_data(s, seen, o, left);
        if (st != MS_OK && st != MS_E_TIMEOUT)
            return st;
    }
}

ms_status ms_subscriber_receive(ms_subscriber *s, ms_alloc_fn alloc, void *arg,
                                const ms_wait_opts *o)
{
    struct read_args a = { s, alloc, arg, NULL, NULL, 0 };
    return read_waiting(&a, o);
}

ms_status ms_subscriber_receive_batch(ms_subscriber *s, ms_alloc_fn alloc, void *arg,
                                      size_t max, size_t *count, const ms_wait_opts *o)
{
    *count = 0;
    if (max == 0)
        return MS_OK;
    ms_status st = ms_subscriber_receive(s, alloc, arg, o);
    if (st != MS_OK)
        return st;
    *count = 1;
    struct read_args a = { s, alloc, arg, NULL, NULL, 0 };
    while (*count < max) {
        st = read_once(&a);
        if (st == MS_E_LAGGED) {
            /* keep it for the next call: this one has delivered messages */
            s->pending_missed = s->lag_missed;
            s->pending_upstream = s->lag_upstream;
            break;
        }
        if (st != MS_OK)
            break;
        (*count)++;
    }
    return st == MS_E_EMPTY || st == MS_E_LAGGED || st == MS_OK ? MS_OK : st;
}

ms_status ms_subscriber_peek(ms_subscriber *s, const uint8_t **ptr, size_t *len,
                             const ms_wait_opts *o)
{
    struct read_args a = { s, NULL, NULL, ptr, len, 0 };
    return read_waiting(&a, o);
}

static ms_status release_fn(void *arg)
{
    ms_subscriber *s = (ms_subscriber *)arg;
    uint64_t intent;
    if (overwritten(s, s->view_pos, &intent)) {
        ms_status st = lag(s, intent);
        /* nothing lost means only padding was overwritten: impossible for a viewed
         * message, whose own bytes are what was checked */
        if (st == LAG_STALLED) {
            /* the view was overwritten, but how much was lost cannot be read yet (a
             * publisher is moving head, or died doing so): say so now with 0, and let
             * the next receive count the loss -- the totals stay exact */
            s->lag_missed = 0;
            s->lag_upstream = 0;
            s->lag_position = s->position;
            return MS_E_LAGGED;
        }
        return st == MS_OK ? MS_E_LAYOUT : st;
    }
    s->pos = s->view_pos + s->view_rsize;
    s->position++;
    s->received++;
    publish_progress(s);
    return MS_OK;
}

ms_status ms_subscriber_release(ms_subscriber *s)
{
    if (!s->view_open)
        return MS_E_INVALID;
    s->view_open = 0;
    ms_status st = ms_p_guarded_call(release_fn, s);
    if (st == MS_E_FAULT)
        ms_segment_fault(s->t->seg);
    return st;
}

ms_status ms_subscriber_unview(ms_subscriber *s)
{
    if (!s->view_open)
        return MS_E_INVALID;
    s->view_open = 0;
    return MS_OK;
}

ms_status ms_subscriber_wait_readable(ms_subscriber *s, const ms_wait_opts *o)
{
    ms_status st = prepare(s);
    if (st != MS_OK)
        return st;
    if (data_pred(s))
        return MS_OK;
    ms_wait_opts wo = *o;
    ms_topic_sub *e = my_entry(s);
    wo.mark = e ? &e->state : NULL;
    return ms_wait_for(s->t->seg, MS_SLOT_DATA, &s->t->tp->data_seq, &s->t->tp->sub_waiters,
                       data_pred, s, &wo);
}

ms_status ms_subscriber_waitable(ms_subscriber *s, ms_waitable *w)
{
    ms_status st = prepare(s);
    if (st != MS_OK)
        return st;
    ms_topic_sub *e = my_entry(s);
    w->seg = s->t->seg;
    w->slot = MS_SLOT_DATA;
    w->word = &s->t->tp->data_seq;
    w->waiters = &s->t->tp->sub_waiters;
    w->ready = ms_subscriber_ready;
    w->arg = s;
    w->mark = e ? &e->state : NULL;
    return MS_OK;
}

void ms_subscriber_abort_waits(ms_subscriber *s)
{
    s->abort_waits = 1;
    if (s->t->seg->faulted)
        return;
    ms_fence();
    ms_add32(&s->t->tp->data_seq, 1);
    ms_p_wake32(s->t->seg->ctx, MS_SLOT_DATA, &s->t->tp->data_seq, 1);
}

void ms_subscriber_after_fork(ms_subscriber *s)
{
    s->slot = -1;
    s->view_open = 0;
    if (!s->closed)
        s->need_register = 1;
}

static ms_status close_fn(void *arg)
{
    ms_subscriber *s = (ms_subscriber *)arg;
    ms_topic_sub *e = my_entry(s);
    uint32_t me = ms_p_pid();
    if (e && ms_load_relaxed32(&e->pid) == me) {
        ms_topic *tp = s->t->tp;
        ms_store_sc64(&e->pos, UINT64_MAX);  /* never holds a publisher back again */
        ms_store32(&e->pid, 0);
        ms_fence();
        if (ms_load_relaxed32(&tp->pub_waiters) != 0) {
            ms_add32(&tp->progress, 1);
            ms_p_wake32(s->t->seg->ctx, MS_SLOT_PROGRESS, &tp->progress, 1);
        }
    }
    return MS_OK;
}

void ms_subscriber_close(ms_subscriber *s)
{
    if (s->closed)
        return;
    s->closed = 1;
    s->view_open = 0;
    if (!s->t->seg->faulted && s->slot >= 0)
        ms_p_guarded_call(close_fn, s);
    s->slot = -1;
}

/* ---- statistics ---------------------------------------------------------------------- */

struct stats_args {
    ms_topic_handle *t;
    ms_topic_stats *st;
    ms_topic_sub_stats *rows;
    size_t max_rows;
    size_t *nrows;
};

static ms_status stats_fn(void *arg)
{
    struct stats_args *a = (struct stats_args *)arg;
    ms_topic_handle *t = a->t;
    ms_topic *tp = t->tp;
    ms_topic_stats *s = a->st;
    memset(s, 0, sizeof *s);
    s->capacity = t->cap;
    s->max_message = t->max_message;
    s->history = t->history;
    s->overflow = t->overflow;
    s->max_subscribers = t->max_subs;
    uint64_t g, h, hs, tail, nseq;
    unsigned tries = 0;
    do {
        g = ms_load64(&tp->head_gen);
        h = ms_load_relaxed64(&tp->head);
        hs = ms_load_relaxed64(&tp->head_seq);
        fence_acquire();
    } while ((g & 1u || ms_load_relaxed64(&tp->head_gen) != g) && ++tries < HEAD_TRIES);
    tail = ms_load64(&tp->tail);
    nseq = ms_load64(&tp->next_seq);
    s->published = nseq;
    s->head_seq = hs <= nseq ? hs : nseq;
    s->held = nseq - s->head_seq;
    s->held_bytes = tail >= h && tail - h <= t->cap ? tail - h : 0;
    s->published_bytes = ms_load_relaxed64(&tp->published_bytes);
    s->publisher_deaths = ms_load_relaxed64(&tp->publisher_deaths);
    s->abandoned = ms_load_relaxed64(&tp->abandoned);
    s->subscriber_deaths = ms_load_relaxed64(&tp->subscriber_deaths);
    s->origin_published = ms_load_relaxed64(&tp->origin_published);
    s->losses = ms_load_relaxed64(&tp->losses);
    s->lost = ms_load_relaxed64(&tp->lost);
    s->sub_waiters = ms_load_relaxed32(&tp->sub_waiters);
    s->pub_waiters = ms_load_relaxed32(&tp->pub_waiters);
    size_t n = 0;
    for (uint32_t i = 0; i < t->max_subs; i++) {
        ms_topic_sub *e = &t->subs[i];
        uint32_t pid = ms_load32(&e->pid);
        if (!is_sub_pid(pid))
            continue;
        s->subscribers++;
        if (n < a->max_rows) {
            ms_topic_sub_stats *r = &a->rows[n++];
            r->pid = pid;
            r->alive = ms_p_process_alive(pid, ms_load_relaxed64(&e->start));
            r->position = ms_load_relaxed64(&e->position);
            r->received = ms_load_relaxed64(&e->received);
            r->missed = ms_load_relaxed64(&e->missed);
            r->lagged = ms_load_relaxed64(&e->lagged);
            r->upstream = ms_load_relaxed64(&e->upstream);
        }
    }
    *a->nrows = n;
    return MS_OK;
}

ms_status ms_topic_statistics(ms_topic_handle *t, ms_topic_stats *st, ms_topic_sub_stats *rows,
                              size_t max_rows, size_t *nrows)
{
    struct stats_args a = { t, st, rows, max_rows, nrows };
    *nrows = 0;
    ms_status r = ms_p_guarded_call(stats_fn, &a);
    if (r == MS_E_FAULT)
        ms_segment_fault(t->seg);
    return r;
}
