/* Unit tests of the topic core (csrc/topic.c) in plain C: publish/receive, wrap and
 * padding, lapping with exact missed counts, the start modes, views, loans, block mode,
 * a publisher killed mid-write (after its intent store), and corrupt records and control
 * fields (MS_E_LAYOUT).  Topics live in exact-size heap buffers (fake_topic.h), so
 * AddressSanitizer reports any access outside them; the fork tests use one shared
 * anonymous mapping.  Build and run with tests/c/run.sh. */
#define _GNU_SOURCE
#include "fake_topic.h"
#include "atomics.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures_in_test;
static int passed, failed;

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); failures_in_test++; } } while (0)
#define CHECK_EQ(a, b) do { long long _a = (long long)(a), _b = (long long)(b); if (_a != _b) { fprintf(stderr, "  FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b, _a, _b); failures_in_test++; } } while (0)

static void fill(uint8_t *p, size_t n, uint64_t k)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(k * 13u + i);
}

static int check_fill(const uint8_t *p, size_t n, uint64_t k)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)(k * 13u + i))
            return 0;
    return 1;
}

static ms_status pub(fake_topic *f, const void *p, size_t n, uint64_t *seq)
{
    ms_wait_opts o = nowait_opts();
    o.try_only = 0;
    return ms_topic_publish(&f->t, p, n, MS_REC_KIND_BYTES, &o, seq);
}

static ms_status recv(ms_subscriber *s, fake_buf *b)
{
    ms_wait_opts o = nowait_opts();
    o.try_only = 0;
    return ms_subscriber_receive(s, fake_alloc, b, &o);
}

static void test_topic_publish_receive(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 1024, 0, MS_TOPIC_OVERWRITE, 4, 0) == 0);
    CHECK_EQ(f.t.max_message, 512 - 16);
    ms_subscriber a, b;
    CHECK_EQ(ms_subscriber_open(&a, &f.t, MS_SUB_LIVE, 0), MS_OK);
    CHECK_EQ(ms_subscriber_open(&b, &f.t, MS_SUB_LIVE, 0), MS_OK);
    uint8_t out[1024];
    fake_buf fb = { out, sizeof out, 0 };
    CHECK_EQ(recv(&a, &fb), MS_E_EMPTY);
    uint64_t seq = 99;
    CHECK_EQ(pub(&f, "hello", 5, &seq), MS_OK);
    CHECK_EQ(seq, 0);
    CHECK_EQ(pub(&f, "", 0, &seq), MS_OK);
    CHECK_EQ(seq, 1);
    CHECK_EQ(pub(&f, out, 497, &seq), MS_E_TOO_LARGE);
    for (int k = 0; k < 2; k++) {
        ms_subscriber *s = k ? &b : &a;
        CHECK_EQ(recv(s, &fb), MS_OK);
        CHECK(fb.len == 5 && memcmp(out, "hello", 5) == 0);
        CHECK_EQ(recv(s, &fb), MS_OK);
        CHECK_EQ(fb.len, 0);
        CHECK_EQ(recv(s, &fb), MS_E_EMPTY);
        CHECK_EQ(s->position, 2);
        CHECK_EQ(s->received, 2);
    }
    ms_topic_stats st;
    ms_topic_sub_stats rows[4];
    size_t n = 0;
    CHECK_EQ(ms_topic_statistics(&f.t, &st, rows, 4, &n), MS_OK);
    CHECK_EQ(st.published, 2);
    CHECK_EQ(st.subscribers, 2);
    CHECK_EQ(n, 2);
    CHECK_EQ(rows[0].position, 2);
    ms_subscriber_close(&a);
    ms_subscriber_close(&b);
    CHECK_EQ(ms_topic_statistics(&f.t, &st, rows, 4, &n), MS_OK);
    CHECK_EQ(st.subscribers, 0);
    fake_topic_free(&f);
}

static void test_topic_wrap_and_pad(void)
{
    /* every size 0..max_message through a small ring with a reader that keeps up: records
     * never wrap (padding records, and implicit pads of 8 bytes), content intact */
    fake_topic f;
    CHECK(fake_topic_init(&f, 256, 0, MS_TOPIC_OVERWRITE, 1, 0) == 0);
    ms_subscriber s;
    CHECK_EQ(ms_subscriber_open(&s, &f.t, MS_SUB_LIVE, 0), MS_OK);
    uint8_t in[256], out[256];
    fake_buf fb = { out, sizeof out, 0 };
    int saw_implicit = 0, saw_pad = 0;
    for (uint64_t i = 0; i < 5000; i++) {
        size_t n = (size_t)((i * 7u) % (f.t.max_message + 1));
        fill(in, n, i);
        uint64_t t0 = fake_topic_ctl(&f)->tail, seq;
        CHECK_EQ(pub(&f, in, n, &seq), MS_OK);
        CHECK_EQ(seq, i);
        uint64_t off = t0 % 256;
        if (256 - off < 16 && off != 0)
            saw_implicit = 1;
        else if (off + 16 + ((n + 7) & ~7u) > 256)
            saw_pad = 1;
        CHECK_EQ(recv(&s, &fb), MS_OK);
        CHECK(fb.len == n && check_fill(out, n, i));
        ms_topic *tp = fake_topic_ctl(&f);
        CHECK(tp->head <= tp->tail && tp->tail - tp->head <= 256);
        CHECK(tp->intent >= tp->tail && tp->intent - tp->tail <= 256);
    }
    CHECK(saw_pad);
    CHECK(saw_implicit);
    CHECK_EQ(s.missed, 0);
    ms_subscriber_close(&s);
    fake_topic_free(&f);
}

static void test_topic_lapping_exact_missed(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 1024, 0, MS_TOPIC_OVERWRITE, 2, 0) == 0);
    ms_subscriber s;
    CHECK_EQ(ms_subscriber_open(&s, &f.t, MS_SUB_LIVE, 0), MS_OK);
    uint8_t in[64], out[512];
    fake_buf fb = { out, sizeof out, 0 };
    uint64_t total = 0, missed = 0, got = 0, last = UINT64_MAX;
    unsigned seed = 7;
    for (int round = 0; round < 2000; round++) {
        seed = seed * 1103515245u + 12345u;
        unsigned np = (seed >> 16) % 40, nr = (seed >> 8) % 25;
        for (unsigned i = 0; i < np; i++) {
            size_t n = 8 + (size_t)((total * 5) % 48);
            memcpy(in, &total, 8);
            fill(in + 8, n - 8, total);
            uint64_t seq;
            CHECK_EQ(pub(&f, in, n, &seq), MS_OK);
            CHECK_EQ(seq, total);
            total++;
        }
        for (unsigned i = 0; i < nr; i++) {
            ms_status st = recv(&s, &fb);
            if (st == MS_E_EMPTY)
                break;
            if (st == MS_E_LAGGED) {
                CHECK(s.lag_missed > 0);
                CHECK_EQ(s.lag_position, (last == UINT64_MAX ? 0 : last + 1) + s.lag_missed);
                /* the loss is exactly what the publisher dropped: the oldest held now */
                CHECK(s.lag_position <= fake_topic_ctl(&f)->head_seq);
                missed += s.lag_missed;
                last = s.lag_position - 1;
                continue;
            }
            CHECK_EQ(st, MS_OK);
            uint64_t k;
            memcpy(&k, out, 8);
            CHECK_EQ(k, last + 1);
            CHECK(check_fill(out + 8, fb.len - 8, k));
            last = k;
            got++;
        }
    }
    ms_status st;
    while ((st = recv(&s, &fb)) != MS_E_EMPTY) {
        if (st == MS_E_LAGGED)
            missed += s.lag_missed;
        else
            got++;
    }
    CHECK_EQ(got + missed, total);
    CHECK_EQ(s.missed, missed);
    CHECK_EQ(s.received, got);
    CHECK(missed > 0);
    ms_subscriber_close(&s);
    fake_topic_free(&f);
}

static void test_topic_start_modes(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 1024, 3, MS_TOPIC_OVERWRITE, 8, 0) == 0);
    uint8_t out[512];
    fake_buf fb = { out, sizeof out, 0 };
    uint64_t seq;
    for (uint64_t i = 0; i < 100; i++)
        CHECK_EQ(pub(&f, &i, 8, &seq), MS_OK);
    uint64_t hs = fake_topic_ctl(&f)->head_seq;
    CHECK(hs > 10 && hs < 95);
    ms_subscriber h, at, old, future;
    CHECK_EQ(ms_subscriber_open(&h, &f.t, MS_SUB_HISTORY, 0), MS_OK);
    CHECK_EQ(h.position, 97);
    CHECK_EQ(ms_subscriber_open(&at, &f.t, MS_SUB_SEQ, 95), MS_OK);
    CHECK_EQ(at.position, 95);
    CHECK_EQ(ms_subscriber_open(&old, &f.t, MS_SUB_SEQ, 3), MS_OK);
    CHECK_EQ(ms_subscriber_open(&future, &f.t, MS_SUB_SEQ, 102), MS_OK);
    CHECK_EQ(recv(&old, &fb), MS_E_LAGGED);
    CHECK_EQ(old.lag_missed, hs - 3);
    CHECK_EQ(old.lag_position, hs);
    uint64_t k;
    CHECK_EQ(recv(&old, &fb), MS_OK);
    memcpy(&k, out, 8);
    CHECK_EQ(k, hs);
    for (uint64_t i = 100; i < 104; i++)
        CHECK_EQ(pub(&f, &i, 8, &seq), MS_OK);
    for (uint64_t want = 97; want < 104; want++) {
        CHECK_EQ(recv(&h, &fb), MS_OK);
        memcpy(&k, out, 8);
        CHECK_EQ(k, want);
    }
    CHECK_EQ(recv(&h, &fb), MS_E_EMPTY);
    for (uint64_t want = 95; want < 104; want++) {
        CHECK_EQ(recv(&at, &fb), MS_OK);
        memcpy(&k, out, 8);
        CHECK_EQ(k, want);
    }
    for (uint64_t want = 102; want < 104; want++) {
        CHECK_EQ(recv(&future, &fb), MS_OK);
        memcpy(&k, out, 8);
        CHECK_EQ(k, want);
    }
    CHECK_EQ(recv(&future, &fb), MS_E_EMPTY);
    CHECK_EQ(future.missed, 0);
    ms_subscriber_close(&h);
    ms_subscriber_close(&at);
    ms_subscriber_close(&old);
    ms_subscriber_close(&future);
    fake_topic_free(&f);
}

static void test_topic_views_and_loans(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 512, 0, MS_TOPIC_OVERWRITE, 2, 0) == 0);
    ms_subscriber s;
    CHECK_EQ(ms_subscriber_open(&s, &f.t, MS_SUB_LIVE, 0), MS_OK);
    ms_wait_opts o = nowait_opts();
    o.try_only = 0;
    uint8_t *p = NULL;
    CHECK_EQ(ms_topic_loan(&f.t, 32, &p, &o), MS_OK);
    memcpy(p, "loaned", 6);
    uint64_t seq = 9;
    CHECK_EQ(ms_topic_commit(&f.t, 6, &seq), MS_OK);
    CHECK_EQ(seq, 0);
    CHECK_EQ(ms_topic_loan(&f.t, 32, &p, &o), MS_OK);
    memset(p, 'z', 32);
    CHECK_EQ(ms_topic_abort(&f.t), MS_OK);
    const uint8_t *vp;
    size_t vl;
    CHECK_EQ(ms_subscriber_peek(&s, &vp, &vl, &o), MS_OK);
    CHECK(vl == 6 && memcmp(vp, "loaned", 6) == 0);
    CHECK_EQ(ms_subscriber_release(&s), MS_OK);
    CHECK_EQ(ms_subscriber_peek(&s, &vp, &vl, &o), MS_E_EMPTY);
    /* a view overwritten while open: MS_E_LAGGED on release, with the exact count */
    CHECK_EQ(pub(&f, "viewed", 6, &seq), MS_OK);
    CHECK_EQ(seq, 1);
    CHECK_EQ(ms_subscriber_peek(&s, &vp, &vl, &o), MS_OK);
    uint8_t big[200];
    memset(big, 'b', sizeof big);
    for (int i = 0; i < 6; i++)
        CHECK_EQ(pub(&f, big, sizeof big, &seq), MS_OK);
    CHECK_EQ(ms_subscriber_release(&s), MS_E_LAGGED);
    CHECK_EQ(s.lag_missed, fake_topic_ctl(&f)->head_seq - 1);
    CHECK_EQ(s.position, fake_topic_ctl(&f)->head_seq);
    ms_subscriber_close(&s);
    fake_topic_free(&f);
}

static void test_topic_block_mode(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 512, 0, MS_TOPIC_BLOCK, 2, 0) == 0);
    ms_subscriber s;
    CHECK_EQ(ms_subscriber_open(&s, &f.t, MS_SUB_LIVE, 0), MS_OK);
    uint8_t in[48], out[512];
    fake_buf fb = { out, sizeof out, 0 };
    uint64_t seq, n = 0;
    ms_status st;
    while ((st = pub(&f, in, sizeof in, &seq)) == MS_OK)
        n++;
    CHECK_EQ(st, MS_E_FULL);
    CHECK(n >= 7);
    ms_wait_opts o = timeout_opts(20000000);
    CHECK_EQ(ms_topic_publish(&f.t, in, sizeof in, 0, &o, &seq), MS_E_TIMEOUT);
    CHECK_EQ(recv(&s, &fb), MS_OK);
    CHECK_EQ(pub(&f, in, sizeof in, &seq), MS_OK);
    CHECK_EQ(pub(&f, in, sizeof in, &seq), MS_E_FULL);
    uint64_t got = 1;
    while (recv(&s, &fb) == MS_OK)
        got++;
    CHECK_EQ(got, n + 1);
    CHECK_EQ(s.missed, 0);
    /* a closed subscriber never holds the publisher back */
    while (pub(&f, in, sizeof in, &seq) == MS_OK)
        ;
    ms_subscriber_close(&s);
    CHECK_EQ(pub(&f, in, sizeof in, &seq), MS_OK);
    fake_topic_free(&f);
}

static void test_topic_subscriber_limit(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 256, 0, MS_TOPIC_OVERWRITE, 2, 0) == 0);
    ms_subscriber a, b, c;
    CHECK_EQ(ms_subscriber_open(&a, &f.t, MS_SUB_LIVE, 0), MS_OK);
    CHECK_EQ(ms_subscriber_open(&b, &f.t, MS_SUB_LIVE, 0), MS_OK);
    CHECK_EQ(ms_subscriber_open(&c, &f.t, MS_SUB_LIVE, 0), MS_E_SUBSCRIBER_LIMIT);
    /* an entry of a dead process is reaped when the table is full */
    ms_topic_sub *e = &f.t.subs[a.slot];
    e->pid = 0x7ffffff0u;  /* no such process */
    CHECK_EQ(ms_subscriber_open(&c, &f.t, MS_SUB_LIVE, 0), MS_OK);
    CHECK_EQ(fake_topic_ctl(&f)->subscriber_deaths, 1);
    ms_subscriber_close(&b);
    ms_subscriber_close(&c);
    ms_subscriber_close(&a);  /* its entry is someone else's now: left alone */
    fake_topic_free(&f);
}

static void test_topic_corrupt_records(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 512, 0, MS_TOPIC_OVERWRITE, 2, 0) == 0);
    ms_subscriber s;
    CHECK_EQ(ms_subscriber_open(&s, &f.t, MS_SUB_LIVE, 0), MS_OK);
    uint8_t out[512];
    fake_buf fb = { out, sizeof out, 0 };
    uint64_t seq;
    CHECK_EQ(pub(&f, "abcd", 4, &seq), MS_OK);
    uint8_t *ring = fake_topic_ring(&f);
    uint32_t saved[4];
    memcpy(saved, ring, 16);
    uint32_t bad[][4] = {
        { 0xFFFFFFF0u, 0, 0, 0 },          /* length beyond max_message */
        { 4, 0x10000u, 0, 0 },            /* unknown flag bits */
        { 4, 0, 5, 0 },                   /* wrong seq */
        { 400, 0, 0, 0 },                 /* longer than what was published */
        { 512, MS_REC_PAD, 0, 0 },        /* a pad of the wrong length */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(ring, bad[i], 16);
        CHECK_EQ(recv(&s, &fb), MS_E_LAYOUT);
        CHECK_EQ(s.position, 0);
    }
    memcpy(ring, saved, 16);
    CHECK_EQ(recv(&s, &fb), MS_OK);
    /* control fields: a tail that is not a record boundary, behind a subscriber, or
     * miles ahead; an intent below the tail */
    ms_topic *tp = fake_topic_ctl(&f);
    uint64_t tail = tp->tail, intent = tp->intent, head = tp->head;
    tp->tail = 4;
    CHECK_EQ(recv(&s, &fb), MS_E_LAYOUT);
    CHECK_EQ(pub(&f, "x", 1, &seq), MS_E_LAYOUT);
    tp->tail = UINT64_MAX - 7;
    CHECK(recv(&s, &fb) == MS_E_LAYOUT || recv(&s, &fb) == MS_E_EMPTY);
    CHECK_EQ(pub(&f, "x", 1, &seq), MS_E_LAYOUT);
    tp->tail = tail;
    tp->intent = 0;
    CHECK_EQ(pub(&f, "x", 1, &seq), MS_E_LAYOUT);
    tp->intent = intent;
    tp->head = tail + 8;
    CHECK_EQ(pub(&f, "x", 1, &seq), MS_E_LAYOUT);
    ms_subscriber h;
    CHECK_EQ(ms_subscriber_open(&h, &f.t, MS_SUB_HISTORY, 0), MS_E_LAYOUT);
    tp->head = head;
    CHECK_EQ(pub(&f, "y", 1, &seq), MS_OK);
    CHECK_EQ(recv(&s, &fb), MS_OK);
    CHECK(fb.len == 1 && out[0] == 'y');
    /* a corrupt intent can make a subscriber lapped forever: bounded, never a hang */
    tp->intent = tp->tail + 5000;
    ms_status st = recv(&s, &fb);
    CHECK(st == MS_E_LAYOUT || st == MS_E_EMPTY || st == MS_E_LAGGED);
    ms_subscriber_close(&s);
    fake_topic_free(&f);
}

static void test_topic_bind_validates(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 512, 0, MS_TOPIC_OVERWRITE, 2, 0) == 0);
    ms_topic *tp = fake_topic_ctl(&f);
    ms_topic_handle t;
    struct { uint64_t *field; uint64_t value; } bad64[] = {
        { &tp->capacity, 520 }, { &tp->capacity, 1u << 30 }, { &tp->max_message, 1000 },
        { &tp->ring_offset, 64 }, { &tp->ring_offset, 1u << 20 }, { &tp->subs_offset, 8 },
    };
    for (size_t i = 0; i < sizeof bad64 / sizeof bad64[0]; i++) {
        uint64_t saved = *bad64[i].field;
        *bad64[i].field = bad64[i].value;
        CHECK_EQ(ms_topic_bind(&t, &f.seg), MS_E_LAYOUT);
        *bad64[i].field = saved;
    }
    uint32_t saved = tp->max_subscribers;
    tp->max_subscribers = 3;
    CHECK_EQ(ms_topic_bind(&t, &f.seg), MS_E_LAYOUT);
    tp->max_subscribers = saved;
    tp->overflow = 7;
    CHECK_EQ(ms_topic_bind(&t, &f.seg), MS_E_LAYOUT);
    tp->overflow = MS_TOPIC_BLOCK;
    CHECK_EQ(ms_topic_bind(&t, &f.seg), MS_OK);
    fake_topic_free(&f);
}

/* A publisher dies (fork + _exit, holding pub_lock) after storing its intent and
 * overwriting part of the ring with a half-written record: nothing is exposed, a
 * subscriber whose record it overwrote is lapped (not torn), and the next publisher
 * takes the lock with OWNER_DIED and goes on. */
static void test_topic_publisher_killed_mid_write(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 512, 0, MS_TOPIC_OVERWRITE, 2, 1) == 0);
    ms_subscriber s;
    CHECK_EQ(ms_subscriber_open(&s, &f.t, MS_SUB_LIVE, 0), MS_OK);
    uint8_t in[100], out[512];
    fake_buf fb = { out, sizeof out, 0 };
    uint64_t seq;
    for (uint64_t i = 0; i < 4; i++) {
        fill(in, sizeof in, i);
        CHECK_EQ(pub(&f, in, sizeof in, &seq), MS_OK);
    }
    /* the ring is full: the next record overwrites message 0, which s has not read */
    uint64_t tail = fake_topic_ctl(&f)->tail;
    pid_t pid = fork();
    if (pid == 0) {
        ms_wait_opts o = timeout_opts(1000000000LL);
        uint8_t *p = NULL;
        if (ms_topic_loan(&f.t, 200, &p, &o) != MS_OK)
            _exit(3);
        memset(p, 0xEE, 100);  /* half of it, then die holding the lock */
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ms_topic *tp = fake_topic_ctl(&f);
    CHECK_EQ(tp->tail, tail);       /* nothing exposed */
    CHECK_EQ(tp->next_seq, 4);
    CHECK(tp->intent > tail);       /* it had announced the overwrite */
    /* s was at message 0, whose bytes the dead publisher may have overwritten */
    CHECK_EQ(recv(&s, &fb), MS_E_LAGGED);
    CHECK_EQ(s.lag_missed, tp->head_seq);
    uint64_t got = 0;
    ms_status st;
    while ((st = recv(&s, &fb)) == MS_OK) {
        CHECK(check_fill(out, fb.len, s.position - 1));
        got++;
    }
    CHECK_EQ(st, MS_E_EMPTY);
    CHECK_EQ(got + s.missed, 4);
    /* the next publisher repairs and goes on */
    fill(in, sizeof in, 4);
    CHECK_EQ(pub(&f, in, sizeof in, &seq), MS_OK);
    CHECK_EQ(seq, 4);
    CHECK_EQ(tp->publisher_deaths, 1);
    CHECK_EQ(recv(&s, &fb), MS_OK);
    CHECK(fb.len == sizeof in && check_fill(out, fb.len, 4));
    CHECK_EQ(s.received + s.missed, 5);
    ms_subscriber_close(&s);
    fake_topic_free(&f);
}

/* A publisher dies inside its commit after storing next_seq but before tail (the
 * window the SIGKILL test in tests/multiprocess/test_topic_crash.py found): the next
 * holder recounts next_seq from the ring, so the messages after it are numbered without
 * a gap and every later walk over them -- dropping them when the ring laps, a history
 * subscribe -- succeeds. */
static void test_topic_publisher_killed_in_commit(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 512, 2, MS_TOPIC_OVERWRITE, 2, 1) == 0);
    ms_subscriber s;
    CHECK_EQ(ms_subscriber_open(&s, &f.t, MS_SUB_LIVE, 0), MS_OK);
    uint8_t in[100], out[512];
    fake_buf fb = { out, sizeof out, 0 };
    uint64_t seq;
    for (uint64_t i = 0; i < 3; i++) {
        fill(in, sizeof in, i);
        CHECK_EQ(pub(&f, in, sizeof in, &seq), MS_OK);
    }
    ms_topic *tp = fake_topic_ctl(&f);
    uint64_t tail = tp->tail;
    pid_t pid = fork();
    if (pid == 0) {
        ms_wait_opts o = timeout_opts(1000000000LL);
        uint8_t *p = NULL;
        if (ms_topic_loan(&f.t, 100, &p, &o) != MS_OK)
            _exit(3);
        fill(p, 100, 3);
        /* the first half of the commit: the record's header, then next_seq */
        struct { uint32_t length, flags; uint64_t seq; } r = { 100, 0, 3 };
        memcpy(p - sizeof r, &r, sizeof r);
        tp->next_seq = 4;
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ(tp->tail, tail);  /* nothing exposed */
    /* enough messages to lap the ring several times */
    for (uint64_t i = 3; i < 23; i++) {
        fill(in, sizeof in, i);
        CHECK_EQ(pub(&f, in, sizeof in, &seq), MS_OK);
        CHECK_EQ(seq, i);
    }
    CHECK_EQ(tp->publisher_deaths, 1);
    CHECK_EQ(tp->next_seq, 23);
    ms_subscriber h;
    CHECK_EQ(ms_subscriber_open(&h, &f.t, MS_SUB_HISTORY, 0), MS_OK);
    CHECK_EQ(recv(&h, &fb), MS_OK);
    CHECK(fb.len == sizeof in && check_fill(out, fb.len, 21));
    CHECK_EQ(recv(&h, &fb), MS_OK);
    CHECK(fb.len == sizeof in && check_fill(out, fb.len, 22));
    CHECK_EQ(recv(&h, &fb), MS_E_EMPTY);
    ms_status st;
    uint64_t got = 0;
    while ((st = recv(&s, &fb)) == MS_OK || st == MS_E_LAGGED) {
        if (st == MS_OK) {
            CHECK(check_fill(out, fb.len, s.position - 1));
            got++;
        }
    }
    CHECK_EQ(st, MS_E_EMPTY);
    CHECK_EQ(got + s.missed, 23);
    ms_subscriber_close(&h);
    ms_subscriber_close(&s);
    fake_topic_free(&f);
}

/* A subscriber that dies inside subscribe (holding pub_lock, its entry half claimed):
 * the next holder frees the entry -- none leaks -- and counts a subscriber death, not a
 * publisher death. */
static void test_topic_subscriber_killed_in_subscribe(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 512, 0, MS_TOPIC_OVERWRITE, 2, 1) == 0);
    ms_topic *tp = fake_topic_ctl(&f);
    pid_t pid = fork();
    if (pid == 0) {
        int err;
        if (ms_p_lock_acquire(f.seg.ctx, MS_SLOT_PUB_LOCK, tp->pub_lock, -1, &err) != MS_OK)
            _exit(3);
        tp->subscribing = 1;              /* what ms_subscriber_open does first, */
        f.t.subs[1].pid = MS_PID_CLAIMING;  /* then the claim of an entry; then dies */
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ms_subscriber a, b;
    CHECK_EQ(ms_subscriber_open(&a, &f.t, MS_SUB_LIVE, 0), MS_OK);
    CHECK_EQ(ms_subscriber_open(&b, &f.t, MS_SUB_LIVE, 0), MS_OK);  /* no entry leaked */
    CHECK_EQ(tp->subscriber_deaths, 1);
    CHECK_EQ(tp->publisher_deaths, 0);
    CHECK_EQ(tp->subscribing, 0);
    uint64_t seq;
    CHECK_EQ(pub(&f, "x", 1, &seq), MS_OK);
    ms_subscriber_close(&a);
    ms_subscriber_close(&b);
    fake_topic_free(&f);
}

/* Block mode: a subscriber process killed while the publisher waits for it releases the
 * publisher within a slice (its entry is reaped). */
static void test_topic_block_dead_subscriber(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 512, 0, MS_TOPIC_BLOCK, 2, 1) == 0);
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        ms_subscriber s;
        if (ms_subscriber_open(&s, &f.t, MS_SUB_LIVE, 0) != MS_OK)
            _exit(3);
        char c = 'y';
        if (write(fds[1], &c, 1) != 1)
            _exit(4);
        pause();
        _exit(0);
    }
    char c;
    CHECK(read(fds[0], &c, 1) == 1);
    uint8_t in[48];
    uint64_t seq;
    while (pub(&f, in, sizeof in, &seq) == MS_OK)
        ;
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    ms_wait_opts o = timeout_opts(2000000000LL);
    uint64_t t0 = ms_p_monotonic_ns();
    CHECK_EQ(ms_topic_publish(&f.t, in, sizeof in, 0, &o, &seq), MS_OK);
    CHECK(ms_p_monotonic_ns() - t0 < 1000000000ULL);  /* bounds a hang only */
    CHECK_EQ(fake_topic_ctl(&f)->subscriber_deaths, 1);
    close(fds[0]);
    close(fds[1]);
    fake_topic_free(&f);
}

/* A publisher thread overwriting all the time and a subscriber thread checking every
 * payload: nothing torn ever reaches it, and received + missed == published. */
struct race { fake_topic *f; volatile int stop; uint64_t published; };

static void *race_publisher(void *arg)
{
    struct race *r = (struct race *)arg;
    uint8_t in[120];
    while (!r->stop) {
        size_t n = 8 + (size_t)(r->published % 112);
        memcpy(in, &r->published, 8);
        fill(in + 8, n - 8, r->published);
        uint64_t seq;
        if (pub(r->f, in, n, &seq) == MS_OK)
            __atomic_store_n(&r->published, r->published + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void test_topic_concurrent_no_torn_reads(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 1024, 0, MS_TOPIC_OVERWRITE, 2, 0) == 0);
    ms_subscriber s;
    CHECK_EQ(ms_subscriber_open(&s, &f.t, MS_SUB_LIVE, 0), MS_OK);
    struct race r = { &f, 0, 0 };
    pthread_t th;
    CHECK(pthread_create(&th, NULL, race_publisher, &r) == 0);
    uint8_t out[512];
    fake_buf fb = { out, sizeof out, 0 };
    uint64_t got = 0, torn = 0, lags = 0;
    ms_wait_opts o = timeout_opts(1000000000LL);
    while (got < 200000) {
        ms_status st = ms_subscriber_receive(&s, fake_alloc, &fb, &o);
        if (st == MS_E_LAGGED) {
            lags++;
            continue;
        }
        if (st != MS_OK) {
            CHECK_EQ(st, MS_OK);
            break;
        }
        uint64_t k;
        memcpy(&k, out, 8);
        if (k != s.position - 1 || fb.len != 8 + k % 112 || !check_fill(out + 8, fb.len - 8, k))
            torn++;
        got++;
    }
    r.stop = 1;
    pthread_join(th, NULL);
    CHECK_EQ(torn, 0);
    while (recv(&s, &fb) != MS_E_EMPTY)
        ;
    CHECK_EQ(s.received + s.missed, r.published);
    fprintf(stderr, "  (%llu received, %llu lost in %llu lags)\n", (unsigned long long)s.received,
            (unsigned long long)s.missed, (unsigned long long)lags);
    ms_subscriber_close(&s);
    fake_topic_free(&f);
}

struct test { const char *name; void (*fn)(void); };

/* ---- origins and loss records (issue 14) ---------------------------------------------- */

static ms_status pub_origin(fake_topic *f, const void *p, size_t n, const char *host,
                            uint64_t oseq, uint64_t *seq)
{
    ms_wait_opts o = nowait_opts();
    o.try_only = 0;
    ms_origin org = { (const uint8_t *)host, (uint32_t)strlen(host), oseq };
    return ms_topic_publish_origin(&f->t, p, n, MS_REC_KIND_BYTES, &org, &o, seq);
}

static ms_status pub_loss(fake_topic *f, uint64_t missed, const char *host, uint64_t *seq)
{
    ms_wait_opts o = nowait_opts();
    o.try_only = 0;
    ms_origin org = { (const uint8_t *)host, host ? (uint32_t)strlen(host) : 0, 42 };
    return ms_topic_publish_loss(&f->t, missed, host ? &org : NULL, &o, seq);
}

static void test_topic_origin_and_loss_records(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 1024, 8, MS_TOPIC_OVERWRITE, 4, 0) == 0);
    ms_subscriber s;
    CHECK_EQ(ms_subscriber_open(&s, &f.t, MS_SUB_LIVE, 0), MS_OK);
    uint8_t out[1024];
    fake_buf fb = { out, sizeof out, 0 };
    uint64_t seq;
    CHECK_EQ(pub(&f, "plain", 5, &seq), MS_OK);
    CHECK_EQ(pub_origin(&f, "remote", 6, "host-a", 77, &seq), MS_OK);
    CHECK_EQ(seq, 1);
    CHECK_EQ(pub_loss(&f, 5, "host-a", &seq), MS_OK);
    CHECK_EQ(seq, 2);
    CHECK_EQ(pub_loss(&f, 3, NULL, &seq), MS_OK);  /* adjacent: one Lagged of 8 */
    CHECK_EQ(pub_origin(&f, "", 0, "h", 0, &seq), MS_OK);
    CHECK_EQ(pub(&f, "last", 4, &seq), MS_OK);
    CHECK_EQ(seq, 5);
    /* bad arguments */
    char big[80];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK_EQ(pub_origin(&f, "x", 1, big, 0, &seq), MS_E_INVALID);
    CHECK_EQ(pub_origin(&f, "x", 1, "", 0, &seq), MS_E_INVALID);
    CHECK_EQ(pub_loss(&f, 0, NULL, &seq), MS_E_INVALID);
    CHECK_EQ(pub_loss(&f, MS_TOPIC_LOSS_MAX + 1, NULL, &seq), MS_E_INVALID);
    CHECK_EQ(pub_origin(&f, out, f.t.max_message - 16, "abc", 0, &seq), MS_E_TOO_LARGE);
    CHECK_EQ(pub_origin(&f, out, f.t.max_message - 24, "abc", 0, &seq), MS_OK);  /* exactly fits */

    CHECK_EQ(recv(&s, &fb), MS_OK);
    CHECK(fb.len == 5 && memcmp(out, "plain", 5) == 0);
    CHECK(!(s.view_flags & MS_REC_ORIGIN));
    CHECK_EQ(recv(&s, &fb), MS_OK);
    CHECK(fb.len == 6 && memcmp(out, "remote", 6) == 0);
    CHECK(s.view_flags & MS_REC_ORIGIN);
    CHECK(s.origin_host_len == 6 && memcmp(s.origin_host, "host-a", 6) == 0);
    CHECK_EQ(s.origin_seq, 77);
    CHECK_EQ(recv(&s, &fb), MS_E_LAGGED);
    CHECK_EQ(s.lag_missed, 8);
    CHECK_EQ(s.lag_upstream, 8);
    CHECK_EQ(s.lag_position, 4);
    /* a Lagged leaves the last origin as it was */
    CHECK(s.view_flags & MS_REC_ORIGIN);
    const uint8_t *p;
    size_t len;
    ms_wait_opts o = nowait_opts();
    o.try_only = 0;
    CHECK_EQ(ms_subscriber_peek(&s, &p, &len, &o), MS_OK);
    CHECK_EQ(len, 0);
    CHECK(s.origin_host_len == 1 && s.origin_host[0] == 'h' && s.origin_seq == 0);
    CHECK_EQ(ms_subscriber_release(&s), MS_OK);
    CHECK_EQ(recv(&s, &fb), MS_OK);
    CHECK(fb.len == 4 && !(s.view_flags & MS_REC_ORIGIN));
    CHECK_EQ(recv(&s, &fb), MS_OK);
    CHECK_EQ(fb.len, f.t.max_message - 24);
    CHECK(s.origin_host_len == 3);
    CHECK_EQ(recv(&s, &fb), MS_E_EMPTY);
    /* received + missed == the messages the records stand for */
    CHECK_EQ(s.received, 5);
    CHECK_EQ(s.missed, 8);
    CHECK_EQ(s.upstream, 8);
    ms_topic_stats st;
    ms_topic_sub_stats rows[4];
    size_t nrows;
    CHECK_EQ(ms_topic_statistics(&f.t, &st, rows, 4, &nrows), MS_OK);
    CHECK_EQ(st.published, 7);
    CHECK_EQ(st.origin_published, 3);
    CHECK_EQ(st.losses, 2);
    CHECK_EQ(st.lost, 8);
    /* history replays origins and loss records like live ones */
    ms_subscriber h;
    CHECK_EQ(ms_subscriber_open(&h, &f.t, MS_SUB_HISTORY, 0), MS_OK);
    CHECK_EQ(recv(&h, &fb), MS_OK);
    CHECK_EQ(recv(&h, &fb), MS_OK);
    CHECK(h.origin_seq == 77);
    CHECK_EQ(recv(&h, &fb), MS_E_LAGGED);
    CHECK_EQ(h.lag_missed, 8);
    /* start at the second loss record: only its 3 */
    ms_subscriber q;
    CHECK_EQ(ms_subscriber_open(&q, &f.t, MS_SUB_SEQ, 3), MS_OK);
    CHECK_EQ(recv(&q, &fb), MS_E_LAGGED);
    CHECK_EQ(q.lag_missed, 3);
    CHECK_EQ(q.lag_upstream, 3);
    CHECK_EQ(q.losses_below, 2);
    CHECK_EQ(q.lost_below, 8);
    ms_subscriber_close(&q);
    ms_subscriber_close(&h);
    ms_subscriber_close(&s);
    fake_topic_free(&f);
}

/* Lapped over loss records: the Lagged counts the messages they stood for, exactly. */
static void test_topic_lap_over_loss_records(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 1024, 0, MS_TOPIC_OVERWRITE, 2, 0) == 0);
    ms_subscriber s;
    CHECK_EQ(ms_subscriber_open(&s, &f.t, MS_SUB_LIVE, 0), MS_OK);
    uint8_t in[64], out[512];
    fake_buf fb = { out, sizeof out, 0 };
    uint64_t standing = 0, upstream = 0, missed = 0, got = 0, up_seen = 0, nseq = 0;
    unsigned seed = 11;
    for (int round = 0; round < 3000; round++) {
        seed = seed * 1103515245u + 12345u;
        unsigned np = (seed >> 16) % 40, nr = (seed >> 8) % 25;
        for (unsigned i = 0; i < np; i++) {
            uint64_t seq;
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 20) % 9 == 0) {
                uint64_t m = 1 + (seed >> 8) % 1000;
                CHECK_EQ(pub_loss(&f, m, (seed & 1) ? "up" : NULL, &seq), MS_OK);
                standing += m;
                upstream += m;
            } else {
                size_t n = 8 + (size_t)((nseq * 5) % 48);
                memcpy(in, &nseq, 8);
                CHECK_EQ((seed & 2) ? pub_origin(&f, in, n, "far-host", nseq, &seq)
                                    : pub(&f, in, n, &seq), MS_OK);
                standing++;
            }
            CHECK_EQ(seq, nseq);
            nseq++;
        }
        for (unsigned i = 0; i < nr; i++) {
            ms_status st = recv(&s, &fb);
            if (st == MS_E_EMPTY)
                break;
            if (st == MS_E_LAGGED) {
                CHECK(s.lag_missed > 0 && s.lag_upstream <= s.lag_missed);
                missed += s.lag_missed;
                up_seen += s.lag_upstream;
                continue;
            }
            CHECK_EQ(st, MS_OK);
            uint64_t k;
            memcpy(&k, out, 8);
            CHECK_EQ(k, s.position - 1);
            if (s.view_flags & MS_REC_ORIGIN)
                CHECK(s.origin_seq == k && s.origin_host_len == 8);
            got++;
        }
    }
    ms_status st;
    while ((st = recv(&s, &fb)) != MS_E_EMPTY) {
        CHECK(st == MS_OK || st == MS_E_LAGGED);
        if (st == MS_E_LAGGED) {
            missed += s.lag_missed;
            up_seen += s.lag_upstream;
        } else {
            got++;
        }
    }
    CHECK_EQ(got + missed, standing);
    CHECK_EQ(up_seen, upstream);
    CHECK_EQ(s.upstream, upstream);
    CHECK_EQ(s.missed, missed);
    CHECK(missed > upstream);  /* it was lapped, too */
    /* the totals the topic keeps agree */
    ms_topic *tp = fake_topic_ctl(&f);
    CHECK_EQ(tp->lost, upstream);
    CHECK(tp->head_lost <= tp->lost && tp->head_losses <= tp->losses);
    ms_subscriber_close(&s);
    fake_topic_free(&f);
}

/* Forged origin blocks and loss counts: MS_E_LAYOUT (or a clean Lagged), never a read
 * outside the ring. */
static void test_topic_corrupt_origin_and_loss(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 512, 4, MS_TOPIC_OVERWRITE, 2, 0) == 0);
    uint8_t out[512];
    fake_buf fb = { out, sizeof out, 0 };
    uint64_t seq;
    CHECK_EQ(pub_origin(&f, "abcdefgh", 8, "host", 9, &seq), MS_OK);
    uint8_t *ring = fake_topic_ring(&f);
    uint8_t saved[64];
    memcpy(saved, ring, sizeof saved);
    struct { uint32_t length, flags; uint64_t seq; uint64_t oseq; uint32_t hl, res; uint64_t tail; } bad[] = {
        { 32, MS_REC_ORIGIN, 0, 9, 0, 0, 0 },                 /* empty host */
        { 32, MS_REC_ORIGIN, 0, 9, 65, 0, 0 },                /* host too long */
        { 32, MS_REC_ORIGIN, 0, 9, 24, 0, 0 },                /* block longer than the record */
        { 8, MS_REC_ORIGIN, 0, 9, 4, 0, 0 },                  /* record shorter than a block */
        { 32, MS_REC_LOSS, 0, 0, 0, 0, 0 },                   /* loss record of 0 */
        { 8, MS_REC_LOSS, 0, 0, 0, 0, 0 },                    /* (same, its own length) */
        { 8, MS_REC_LOSS | (1u << MS_REC_KIND_SHIFT), 0, 3, 0, 0, 0 },  /* a loss with a kind */
        { 8, MS_REC_LOSS, 0, MS_TOPIC_LOSS_MAX + 1, 0, 0, 0 }, /* beyond the limit */
        { 16, MS_REC_LOSS, 0, 3, 0, 0, 0 },                   /* wrong length for a loss */
        { 32, MS_REC_ORIGIN | 0x100000u, 0, 9, 4, 0, 0 },     /* unknown bit with origin */
        { 0xFFFFFFF0u, MS_REC_ORIGIN, 0, 9, 4, 0, 0 },        /* beyond max_message */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms_subscriber s;
        memcpy(ring, saved, sizeof saved);
        CHECK_EQ(ms_subscriber_open(&s, &f.t, MS_SUB_SEQ, 0), MS_OK);
        memcpy(ring, &bad[i], sizeof bad[i]);
        CHECK_EQ(recv(&s, &fb), MS_E_LAYOUT);
        CHECK_EQ(s.position, 0);
        const uint8_t *p;
        size_t len;
        ms_wait_opts o = nowait_opts();
        o.try_only = 0;
        CHECK_EQ(ms_subscriber_peek(&s, &p, &len, &o), MS_E_LAYOUT);
        ms_subscriber h;
        CHECK_EQ(ms_subscriber_open(&h, &f.t, MS_SUB_HISTORY, 0), MS_E_LAYOUT);
        ms_subscriber_close(&s);
    }
    /* the publisher's drop walk over a forged record: MS_E_LAYOUT, nothing changed */
    ms_topic *tp = fake_topic_ctl(&f);
    memcpy(ring, &bad[4], sizeof bad[4]);
    uint64_t tail = tp->tail;
    ms_status st = MS_OK;
    for (int i = 0; i < 40 && st == MS_OK; i++)
        st = pub(&f, out, 40, &seq);
    CHECK_EQ(st, MS_E_LAYOUT);
    CHECK(tp->tail > tail);
    memcpy(ring, saved, sizeof saved);
    /* forged loss totals: a lapped subscriber gets MS_E_LAYOUT or a clean Lagged */
    fake_topic_free(&f);
    CHECK(fake_topic_init(&f, 512, 0, MS_TOPIC_OVERWRITE, 2, 0) == 0);
    tp = fake_topic_ctl(&f);
    ms_subscriber s;
    CHECK_EQ(ms_subscriber_open(&s, &f.t, MS_SUB_LIVE, 0), MS_OK);
    for (int i = 0; i < 30; i++)
        CHECK_EQ(pub(&f, out, 40, &seq), MS_OK);
    tp->head_losses = 1000;  /* more loss records than sequence numbers lost */
    CHECK_EQ(recv(&s, &fb), MS_E_LAYOUT);
    tp->head_losses = 0;
    tp->head_lost = 5;       /* messages lost upstream with no loss record */
    CHECK_EQ(recv(&s, &fb), MS_E_LAYOUT);
    tp->head_lost = 0;
    CHECK_EQ(recv(&s, &fb), MS_E_LAGGED);
    CHECK_EQ(s.lag_upstream, 0);
    ms_subscriber_close(&s);
    fake_topic_free(&f);
}

/* A publisher killed in the commit of a loss record (totals stored, tail not): the
 * repair recounts the loss totals from the records held; nothing was published. */
static void test_topic_publisher_killed_in_loss_commit(void)
{
    fake_topic f;
    CHECK(fake_topic_init(&f, 512, 2, MS_TOPIC_OVERWRITE, 2, 1) == 0);
    ms_subscriber s;
    CHECK_EQ(ms_subscriber_open(&s, &f.t, MS_SUB_LIVE, 0), MS_OK);
    uint8_t in[100], out[512];
    fake_buf fb = { out, sizeof out, 0 };
    uint64_t seq;
    CHECK_EQ(pub(&f, in, sizeof in, &seq), MS_OK);
    CHECK_EQ(pub_loss(&f, 4, NULL, &seq), MS_OK);  /* a real one: 4 lost upstream */
    ms_topic *tp = fake_topic_ctl(&f);
    uint64_t tail = tp->tail;
    pid_t pid = fork();
    if (pid == 0) {
        ms_wait_opts o = timeout_opts(1000000000LL);
        uint8_t *p = NULL;
        if (ms_topic_loan(&f.t, 8, &p, &o) != MS_OK)
            _exit(3);
        uint64_t m = 7;
        memcpy(p, &m, 8);
        struct { uint32_t length, flags; uint64_t seq; } r = { 8, MS_REC_LOSS, 2 };
        memcpy(p - sizeof r, &r, sizeof r);
        tp->next_seq = 3;
        tp->lost += 7;
        tp->losses += 1;
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ(tp->tail, tail);
    for (uint64_t i = 2; i < 20; i++) {
        CHECK_EQ(pub(&f, in, sizeof in, &seq), MS_OK);
        CHECK_EQ(seq, i);
    }
    CHECK_EQ(tp->publisher_deaths, 1);
    CHECK_EQ(tp->lost, 4);
    CHECK_EQ(tp->losses, 1);
    CHECK_EQ(tp->head_lost, 4);  /* the real one was dropped since */
    ms_status st;
    uint64_t got = 0;
    while ((st = recv(&s, &fb)) == MS_OK || st == MS_E_LAGGED)
        got += st == MS_OK;
    CHECK_EQ(st, MS_E_EMPTY);
    CHECK_EQ(got + s.missed, 19 + 4);  /* 19 messages, 1 loss record of 4 */
    CHECK_EQ(s.upstream, 4);
    ms_subscriber_close(&s);
    fake_topic_free(&f);
}

static const struct test tests[] = {
    { "topic_publish_receive", test_topic_publish_receive },
    { "topic_wrap_and_pad", test_topic_wrap_and_pad },
    { "topic_lapping_exact_missed", test_topic_lapping_exact_missed },
    { "topic_start_modes", test_topic_start_modes },
    { "topic_views_and_loans", test_topic_views_and_loans },
    { "topic_block_mode", test_topic_block_mode },
    { "topic_subscriber_limit", test_topic_subscriber_limit },
    { "topic_corrupt_records", test_topic_corrupt_records },
    { "topic_bind_validates", test_topic_bind_validates },
    { "topic_publisher_killed_mid_write", test_topic_publisher_killed_mid_write },
    { "topic_subscriber_killed_in_subscribe", test_topic_subscriber_killed_in_subscribe },
    { "topic_publisher_killed_in_commit", test_topic_publisher_killed_in_commit },
    { "topic_block_dead_subscriber", test_topic_block_dead_subscriber },
    { "topic_concurrent_no_torn_reads", test_topic_concurrent_no_torn_reads },
    { "topic_origin_and_loss_records", test_topic_origin_and_loss_records },
    { "topic_lap_over_loss_records", test_topic_lap_over_loss_records },
    { "topic_corrupt_origin_and_loss", test_topic_corrupt_origin_and_loss },
    { "topic_publisher_killed_in_loss_commit", test_topic_publisher_killed_in_loss_commit },
};

int main(int argc, char **argv)
{
    const char *skip = getenv("MS_CTEST_SKIP");
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int run = argc < 2;
        for (int a = 1; a < argc; a++)
            if (strstr(tests[i].name, argv[a]))
                run = 1;
        if (skip && strstr(skip, tests[i].name))
            run = 0;
        if (!run)
            continue;
        failures_in_test = 0;
        tests[i].fn();
        if (failures_in_test) {
            failed++;
            printf("FAIL %s\n", tests[i].name);
        } else {
            passed++;
            printf("ok   %s\n", tests[i].name);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
