/* Waiting and the synchronization objects built on it. */
#include "sync.h"
#include "atomics.h"

#include <stdlib.h>
#include <string.h>

static int64_t remaining_ns(uint64_t deadline, int64_t timeout_ns)
{
    if (timeout_ns < 0)
        return -1;
    uint64_t now = ms_p_monotonic_ns();
    return now >= deadline ? 0 : (int64_t)(deadline - now);
}

/* Spin: a peer on another core usually answers within a microsecond or two, far sooner
 * than a futex wake-up (tens of microseconds on a VM).  Every few microseconds the spin
 * yields the CPU, so that a peer waiting to run on this same CPU (processes not pinned,
 * or more processes than cores) is not kept off it for the whole budget. */
#define MS_SPIN_YIELD_NS 4000

int ms_spin_until(ms_pred_fn pred, void *arg, int64_t spin_ns)
{
    if (pred(arg))
        return 1;
    uint64_t now = ms_p_monotonic_ns();
    uint64_t end = now + (uint64_t)spin_ns;
    uint64_t next_yield = now + MS_SPIN_YIELD_NS;
    do {
        for (int i = 0; i < 16; i++) {
            ms_cpu_relax();
            if (pred(arg))
                return 1;
        }
        now = ms_p_monotonic_ns();
        if (now >= next_yield) {
            ms_p_yield();
            next_yield = now + MS_SPIN_YIELD_NS;
        }
    } while (now < end);
    return 0;
}

ms_status ms_wait_for(ms_segment *seg, unsigned slot, volatile uint32_t *word,
                      volatile uint32_t *waiters, ms_pred_fn pred, void *parg,
                      const ms_wait_opts *o)
{
    if (pred(parg))
        return MS_OK;
    if (o->timeout_ns == 0)
        return MS_E_TIMEOUT;
    uint64_t start = ms_p_monotonic_ns();
    uint64_t deadline = o->timeout_ns > 0 ? start + (uint64_t)o->timeout_ns : UINT64_MAX;

    if (o->spin_ns > 0) {
        int64_t budget = o->spin_ns;
        if (o->timeout_ns > 0 && o->timeout_ns < budget)
            budget = o->timeout_ns;
        if (ms_spin_until(pred, parg, budget))
            return MS_OK;
    }

    for (;;) {
        /* the mark goes up after, and down before, the shared count: whoever repairs
         * the count after our death never subtracts more than we added (dying between
         * the two leaves the count one too high, the safe side; one too low would let
         * a live sleeper's decrement wrap the count around) */
        ms_add32(waiters, 1);
        if (o->mark)
            ms_add32(o->mark, MS_SLEEPER);
        uint32_t seen = ms_load32(word);
        if (pred(parg)) {
            if (o->mark)
                ms_add32(o->mark, (uint32_t)-MS_SLEEPER);
            ms_add32(waiters, (uint32_t)-1);
            return MS_OK;
        }
        int64_t left = remaining_ns(deadline, o->timeout_ns);
        if (left == 0) {
            if (o->mark)
                ms_add32(o->mark, (uint32_t)-MS_SLEEPER);
            ms_add32(waiters, (uint32_t)-1);
            return MS_E_TIMEOUT;
        }
        int64_t slice = (left < 0 || left > MS_SLICE_NS) ? MS_SLICE_NS : left;
        ms_status st = ms_p_wait32(seg->ctx, slot, word, seen, slice);
        if (o->mark)
            ms_add32(o->mark, (uint32_t)-MS_SLEEPER);
        ms_add32(waiters, (uint32_t)-1);
        if (seg->faulted)
            return MS_E_FAULT;  /* the object shrank under us; its memory reads as zeros */
        if (pred(parg))
            return MS_OK;
        if (st == MS_E_INTERRUPTED || st == MS_E_TIMEOUT) {
            if (o->interrupted && o->interrupted(o->arg))
                return MS_E_INTERRUPTED;
        } else if (st != MS_OK) {
            return st;
        }
    }
}

/* ---- waiting on several objects ----------------------------------------------------- */

/* Polling, where the system cannot sleep on several words at once (or for more words
 * than it can): sleep on the first word -- a change there wakes at once -- in naps
 * growing from MS_POLL_MIN_NS to MS_POLL_MAX_NS, and look at every word between naps.
 * A change to any other word is seen at most MS_POLL_MAX_NS late; an idle waiter makes
 * at most 1000 system calls a second. */
#define MS_POLL_MIN_NS 50000LL
#define MS_POLL_MAX_NS 1000000LL

static volatile int force_polling;

int ms_wait_any_polling(int force)
{
    if (force >= 0)
        force_polling = force ? 1 : 0;
    return force_polling;
}

static ms_status poll_many(const ms_wait_word *w, size_t n, int64_t timeout_ns,
                           int64_t *nap)
{
    uint64_t start = ms_p_monotonic_ns();
    for (;;) {
        for (size_t i = 0; i < n; i++)
            if (ms_load32(w[i].word) != w[i].expected)
                return MS_OK;
        int64_t left = timeout_ns;
        if (timeout_ns >= 0) {
            uint64_t el = ms_p_monotonic_ns() - start;
            if (el >= (uint64_t)timeout_ns)
                return MS_E_TIMEOUT;
            left = timeout_ns - (int64_t)el;
        }
        int64_t step = (left < 0 || left > *nap) ? *nap : left;
        ms_status st = ms_p_wait32(w[0].ctx, w[0].slot, w[0].word, w[0].expected, step);
        if (*nap < MS_POLL_MAX_NS)
            *nap *= 2;
        if (st == MS_E_INTERRUPTED || (st != MS_OK && st != MS_E_TIMEOUT))
            return st;
    }
}

struct any_pred { ms_waitable *items; size_t n; uint8_t *ready; };

/* Every item's predicate, each one's answer in ready[]; 1 if any is ready. */
static int any_ready(void *arg)
{
    struct any_pred *a = (struct any_pred *)arg;
    int any = 0;
    for (size_t i = 0; i < a->n; i++) {
        int r = a->items[i].ready(a->items[i].arg) ? 1 : 0;
        a->ready[i] = (uint8_t)r;
        any |= r;
    }
    return any;
}

static void count_out(ms_waitable *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (items[i].mark)  /* before the count, as in ms_wait_for */
            ms_add32(items[i].mark, (uint32_t)-MS_SLEEPER);
        ms_add32(items[i].waiters, (uint32_t)-1);
    }
}

#define MS_WAIT_ANY_STACK 16

ms_status ms_wait_any(ms_waitable *items, size_t n, const ms_wait_opts *o, uint8_t *ready)
{
    struct any_pred ap = { items, n, ready };
    if (n == 0)
        return MS_E_INVALID;
    if (any_ready(&ap))
        return MS_OK;
    if (o->timeout_ns == 0)
        return MS_E_TIMEOUT;
    uint64_t start = ms_p_monotonic_ns();
    uint64_t deadline = o->timeout_ns > 0 ? start + (uint64_t)o->timeout_ns : UINT64_MAX;

    if (o->spin_ns > 0) {
        int64_t budget = o->spin_ns;
        if (o->timeout_ns > 0 && o->timeout_ns < budget)
            budget = o->timeout_ns;
        if (ms_spin_until(any_ready, &ap, budget))
            return MS_OK;
    }

    ms_wait_word local[MS_WAIT_ANY_STACK];
    ms_wait_word *ww = local;
    if (n > MS_WAIT_ANY_STACK) {
        ww = (ms_wait_word *)malloc(n * sizeof *ww);
        if (!ww)
            return MS_E_NO_SPACE;
    }
    for (size_t i = 0; i < n; i++) {
        ww[i].ctx = items[i].seg->ctx;
        ww[i].slot = items[i].slot;
        ww[i].word = items[i].word;
    }
    int native = !force_polling && n <= ms_p_wait_many_max();
    int64_t nap = MS_POLL_MIN_NS;
    ms_status result;
    for (;;) {
        /* As ms_wait_for, for every item: count in, then read the word, then look: a
         * waker that changes an object after our look changes its word after our read
         * and sees our count, so it wakes us (no lost wake-up). */
        for (size_t i = 0; i < n; i++) {
            ms_add32(items[i].waiters, 1);
            if (items[i].mark)  /* after the count, as in ms_wait_for */
                ms_add32(items[i].mark, MS_SLEEPER);
        }
        for (size_t i = 0; i < n; i++)
            ww[i].expected = ms_load32(items[i].word);
        if (any_ready(&ap)) {
            count_out(items, n);
            result = MS_OK;
            break;
        }
        int64_t left = remaining_ns(deadline, o->timeout_ns);
        if (left == 0) {
            count_out(items, n);
            result = MS_E_TIMEOUT;
            break;
        }
        int64_t slice = (left < 0 || left > MS_SLICE_NS) ? MS_SLICE_NS : left;
        ms_status st = native ? ms_p_wait32_many(ww, n, slice)
                              : poll_many(ww, n, slice, &nap);
        count_out(items, n);
        int faulted = 0;
        for (size_t i = 0; i < n; i++)
            faulted |= items[i].seg->faulted;
        if (faulted) {
            result = MS_E_FAULT;  /* an object shrank under us; its memory reads as zeros */
            break;
        }
        if (any_ready(&ap)) {
            result = MS_OK;
            break;
        }
        if (st == MS_E_INTERRUPTED || st == MS_E_TIMEOUT) {
            if (o->interrupted && o->interrupted(o->arg)) {
                result = MS_E_INTERRUPTED;
                break;
            }
        } else if (st != MS_OK) {
            result = st;
            break;
        }
    }
    if (ww != local)
        free(ww);
    return result;
}

int ms_wake_waiters(ms_segment *seg, unsigned slot, volatile uint32_t *word,
                    volatile uint32_t *waiters)
{
    /* The caller's store that made the predicate true must be visible before we read
     * the waiter count: pairs with the increment-then-check in ms_wait_for. */
    ms_fence();
    if (ms_load_relaxed32(waiters) != 0) {
        ms_add32(word, 1);
        return ms_p_wake32(seg->ctx, slot, word, 1);
    }
    return -2;
}

int ms_wake_waiters_sc(ms_segment *seg, unsigned slot, volatile uint32_t *word,
                       volatile uint32_t *waiters)
{
    if (ms_load_sc32(waiters) != 0) {
        ms_add32(word, 1);
        return ms_p_wake32(seg->ctx, slot, word, 1);
    }
    return -2;
}

/* ---- locks -------------------------------------------------------------------------- */

ms_status ms_lock_acquire(ms_segment *seg, unsigned slot, void *area, const ms_wait_opts *o,
                          int *err)
{
    ms_status st = ms_p_lock_acquire(seg->ctx, slot, area, 0, err);
    if (st != MS_E_TIMEOUT || o->timeout_ns == 0)
        return st;
    uint64_t start = ms_p_monotonic_ns();
    uint64_t deadline = o->timeout_ns > 0 ? start + (uint64_t)o->timeout_ns : UINT64_MAX;
    if (o->spin_ns > 0) {
        uint64_t spin_end = start + (uint64_t)o->spin_ns;
        if (spin_end > deadline)
            spin_end = deadline;
        do {
            for (int i = 0; i < 64; i++)
                ms_cpu_relax();
            st = ms_p_lock_acquire(seg->ctx, slot, area, 0, err);
            if (st != MS_E_TIMEOUT)
                return st;
        } while (ms_p_monotonic_ns() < spin_end);
    }
    /* Sleep in slices: a pthread mutex wait is not interrupted by signals, so Ctrl-C
     * is honoured between slices. */
    for (;;) {
        int64_t left = remaining_ns(deadline, o->timeout_ns);
        if (left == 0)
            return MS_E_TIMEOUT;
        int64_t slice = (left < 0 || left > MS_SLICE_NS) ? MS_SLICE_NS : left;
        st = ms_p_lock_acquire(seg->ctx, slot, area, slice, err);
        if (st != MS_E_TIMEOUT)
            return st;
        if (seg->faulted)
            return MS_E_FAULT;
        if (o->interrupted && o->interrupted(o->arg))
            return MS_E_INTERRUPTED;
    }
}

ms_status ms_lock_release(ms_segment *seg, unsigned slot, void *area, int *err)
{
    return ms_p_lock_release(seg->ctx, slot, area, err);
}

/* ---- change notification ------------------------------------------------------------ */

uint32_t ms_change_count(ms_segment *seg)
{
    return ms_load32(&seg->hdr->change_seq);
}

void ms_change_notify(ms_segment *seg)
{
    ms_header *h = seg->hdr;
    ms_add32(&h->change_seq, 1);
    if (ms_load_sc32(&h->change_waiters) != 0)
        ms_p_wake32(seg->ctx, MS_SLOT_CHANGE, &h->change_seq, 1);
}


static int change_moved(void *arg)
{
    ms_change_since *c = (ms_change_since *)arg;
    return ms_load32(&c->h->change_seq) != c->since;
}

void ms_change_waitable(ms_segment *seg, ms_change_since *c, uint32_t since, ms_waitable *w)
{
    c->h = seg->hdr;
    c->since = since;
    w->seg = seg;
    w->slot = MS_SLOT_CHANGE;
    w->word = &seg->hdr->change_seq;
    w->waiters = &seg->hdr->change_waiters;
    w->ready = change_moved;
    w->arg = c;
    w->mark = NULL;
}

ms_status ms_change_wait(ms_segment *seg, uint32_t since, const ms_wait_opts *o,
                         uint32_t *now)
{
    ms_change_since c = { seg->hdr, since };
    /* change_seq is both the predicate and the futex word: notify changes it before
     * waking, so a notify between our check and our sleep is never lost. */
    ms_status st = ms_wait_for(seg, MS_SLOT_CHANGE, &seg->hdr->change_seq,
                               &seg->hdr->change_waiters, change_moved, &c, o);
    *now = ms_load32(&seg->hdr->change_seq);
    return st;
}

/* ---- event -------------------------------------------------------------------------- */

void ms_event_init_at(ms_event *e, uint32_t state)
{
    e->waiters = 0;
    e->reserved = 0;
    ms_store32(&e->state, state ? 1 : 0);
    ms_store32(&e->tag, MS_EVENT_TAG);
}

ms_status ms_event_init(ms_header *h, void *arg, int *err)
{
    (void)err;
    ms_event_init_at((ms_event *)h->kind_area, arg ? *(uint32_t *)arg : 0);
    return MS_OK;
}

void ms_event_set(ms_segment *seg, unsigned slot, ms_event *e)
{
    if (ms_xchg32(&e->state, 1) == 0 && ms_load_sc32(&e->waiters) != 0)
        ms_p_wake32(seg->ctx, slot, &e->state, 1);
}

void ms_event_clear(ms_event *e) { ms_store32(&e->state, 0); }

int ms_event_is_set(ms_event *e) { return ms_load32(&e->state) != 0; }

static int event_pred(void *arg) { return ms_load32(&((ms_event *)arg)->state) != 0; }

void ms_event_waitable(ms_segment *seg, unsigned slot, ms_event *e, ms_waitable *w)
{
    w->seg = seg;
    w->slot = slot;
    w->word = &e->state;
    w->waiters = &e->waiters;
    w->ready = event_pred;
    w->arg = e;
    w->mark = NULL;
}

ms_status ms_event_wait(ms_segment *seg, unsigned slot, ms_event *e, const ms_wait_opts *o)
{
    /* state is both predicate and futex word: set() changes it before waking */
    return ms_wait_for(seg, slot, &e->state, &e->waiters, event_pred, e, o);
}

/* ---- semaphore ---------------------------------------------------------------------- */

ms_status ms_semaphore_init_at(ms_semaphore *s, uint32_t value, uint32_t maximum)
{
    if (value > maximum || maximum == 0)
        return MS_E_INVALID;
    s->maximum = maximum;
    s->waiters = 0;
    ms_store32(&s->value, value);
    ms_store32(&s->tag, MS_SEMAPHORE_TAG);
    return MS_OK;
}

ms_status ms_semaphore_init(ms_header *h, void *arg, int *err)
{
    (void)err;
    uint32_t *v = (uint32_t *)arg;
    return ms_semaphore_init_at((ms_semaphore *)h->kind_area, v[0], v[1]);
}

static int sem_try(ms_semaphore *s)
{
    uint32_t v = ms_load32(&s->value);
    while (v > 0) {
        if (ms_cas32(&s->value, &v, v - 1))
            return 1;
    }
    return 0;
}

static int sem_pred(void *arg) { return sem_try((ms_semaphore *)arg); }

ms_status ms_semaphore_acquire(ms_segment *seg, unsigned slot, ms_semaphore *s,
                               const ms_wait_opts *o)
{
    /* the predicate takes a unit when it succeeds */
    return ms_wait_for(seg, slot, &s->value, &s->waiters, sem_pred, s, o);
}

static int sem_available(void *arg) { return ms_load32(&((ms_semaphore *)arg)->value) > 0; }

void ms_semaphore_waitable(ms_segment *seg, unsigned slot, ms_semaphore *s, ms_waitable *w)
{
    w->seg = seg;
    w->slot = slot;
    w->word = &s->value;
    w->waiters = &s->waiters;
    w->ready = sem_available;  /* never the taking predicate: a wait reports, never takes */
    w->arg = s;
    w->mark = NULL;
}

ms_status ms_semaphore_wait_available(ms_segment *seg, unsigned slot, ms_semaphore *s,
                                      const ms_wait_opts *o)
{
    return ms_wait_for(seg, slot, &s->value, &s->waiters, sem_available, s, o);
}

ms_status ms_semaphore_release(ms_segment *seg, unsigned slot, ms_semaphore *s, uint32_t n)
{
    uint32_t max = ms_load_relaxed32(&s->maximum);
    uint32_t v = ms_load32(&s->value);
    do {
        if (n > max || v > max - n)
            return MS_E_VALUE;
    } while (!ms_cas32(&s->value, &v, v + n));
    /* wake all: with timeouts, waking one can be lost on a waiter that is leaving */
    if (ms_load_sc32(&s->waiters) != 0)
        ms_p_wake32(seg->ctx, slot, &s->value, 1);
    return MS_OK;
}
