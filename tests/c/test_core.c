/* Unit tests of the C core in plain C: the ring, the robust lock, header validation,
 * wait/wake across fork, the SIGBUS guard, header inspection.  Links
 * csrc/{segment,sync,ring,inspect}.c and csrc/platform/linux.c directly; no Python.  Build and run with tests/c/run.sh.
 *
 * Ring tests run on exact-size heap buffers (fake_segment.h), so AddressSanitizer
 * reports any access outside the ring; cross-process tests use real /dev/shm objects
 * named /mapshare.ctest<pid>_<n>, always unlinked. */
#define _GNU_SOURCE
#include "fake_segment.h"
#include "atomics.h"
#include "inspect.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
/* gcc 12's ThreadSanitizer has no interceptor for pthread_mutex_clocklock (which
 * linux.c uses for timed lock waits), so a lock taken through it is invisible to TSan
 * and its unlock is reported as "unlock of an unlocked mutex".  In the TSan build only,
 * this definition interposes it with the intercepted pthread_mutex_timedlock. */
int pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t clk, const struct timespec *abs)
{
    struct timespec now, real;
    clock_gettime(clk, &now);
    clock_gettime(CLOCK_REALTIME, &real);
    long long left = (long long)(abs->tv_sec - now.tv_sec) * 1000000000LL + (abs->tv_nsec - now.tv_nsec);
    if (left < 0)
        left = 0;
    long long ns = real.tv_nsec + left % 1000000000LL;
    real.tv_sec += (time_t)(left / 1000000000LL + ns / 1000000000LL);
    real.tv_nsec = (long)(ns % 1000000000LL);
    return pthread_mutex_timedlock(m, &real);
}
#endif

static int failures_in_test;
static int passed, failed;

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); failures_in_test++; } } while (0)
#define CHECK_EQ(a, b) do { long long _a = (long long)(a), _b = (long long)(b); if (_a != _b) { fprintf(stderr, "  FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b, _a, _b); failures_in_test++; } } while (0)

static char osname_buf[64];
static const char *fresh_osname(void)
{
    static int counter;
    snprintf(osname_buf, sizeof osname_buf, "/mapshare.ctest%d_%d", (int)getpid(), counter++);
    return osname_buf;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int child_status(pid_t pid)
{
    int status = 0;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- ring ------------------------------------------------------------------------ */

static void fill(uint8_t *p, size_t n, unsigned k)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(k * 13u + i);
}

static ms_status recv_into(ms_channel *ch, fake_buf *b)
{
    ms_wait_opts o = nowait_opts();
    return ms_channel_receive(ch, fake_alloc, b, &o);
}

static void test_ring_push_pop(void)
{
    fake_seg f;
    CHECK(fake_channel_init(&f, 256) == 0);
    ms_channel ch;
    CHECK_EQ(ms_channel_bind(&ch, &f.seg), MS_OK);
    CHECK_EQ(ch.max_message, 248);
    ms_wait_opts o = nowait_opts();
    uint8_t out[512];
    fake_buf b = { out, sizeof out, 0 };
    CHECK_EQ(recv_into(&ch, &b), MS_E_EMPTY);
    CHECK_EQ(ms_channel_send(&ch, "hello", 5, &o), MS_OK);
    CHECK_EQ(ms_channel_send(&ch, "", 0, &o), MS_OK);
    CHECK_EQ(ms_channel_send(&ch, "world!!!", 8, &o), MS_OK);
    CHECK_EQ(recv_into(&ch, &b), MS_OK);
    CHECK(b.len == 5 && memcmp(out, "hello", 5) == 0);
    CHECK_EQ(recv_into(&ch, &b), MS_OK);
    CHECK_EQ(b.len, 0);
    CHECK_EQ(recv_into(&ch, &b), MS_OK);
    CHECK(b.len == 8 && memcmp(out, "world!!!", 8) == 0);
    CHECK_EQ(recv_into(&ch, &b), MS_E_EMPTY);
    CHECK_EQ(ms_channel_send(&ch, out, 249, &o), MS_E_TOO_LARGE);
    ms_channel_stats st;
    ms_channel_statistics(&ch, &st);
    CHECK_EQ(st.sent_messages, 3);
    CHECK_EQ(st.received_messages, 3);
    CHECK_EQ(st.queued_bytes, 0);
    ms_channel_detach(&ch);
    fake_free(&f);
}

static void test_ring_wrap_many(void)
{
    /* messages of every size 0..max_message through the smallest ring: wraps, padding
     * records and exact fits; a send that does not fit succeeds after receives */
    fake_seg f;
    CHECK(fake_channel_init(&f, 64) == 0);
    ms_channel ch;
    CHECK_EQ(ms_channel_bind(&ch, &f.seg), MS_OK);
    ms_ring *r = (ms_ring *)f.hdr->kind_area;
    ms_wait_opts o = nowait_opts();
    uint8_t in[64], out[64];
    size_t lens[8];
    fake_buf b = { out, sizeof out, 0 };
    unsigned sent = 0, got = 0;
    for (unsigned round = 0; round < 3000; round++) {
        size_t n = (round * 7u) % 57u;  /* 0..56 == max_message */
        fill(in, n, sent);
        ms_status s;
        int tries = 0;
        while ((s = ms_channel_send(&ch, in, n, &o)) == MS_E_FULL && tries++ < 4) {
            ms_status rs = recv_into(&ch, &b);
            if (rs == MS_OK) {
                CHECK_EQ(b.len, lens[got % 8]);
                uint8_t want[64];
                fill(want, b.len, got);
                CHECK(memcmp(out, want, b.len) == 0);
                got++;
            } else {
                CHECK_EQ(rs, MS_E_EMPTY);   /* only a padding record was left */
                CHECK_EQ(got, sent);
            }
        }
        CHECK_EQ(s, MS_OK);
        lens[sent % 8] = n;
        sent++;
        CHECK(r->tail - r->head <= 64);
        CHECK_EQ(r->tail % 8, 0);
        CHECK(sent - got <= 7);
    }
    while (got < sent) {
        CHECK_EQ(recv_into(&ch, &b), MS_OK);
        got++;
    }
    CHECK_EQ(recv_into(&ch, &b), MS_E_EMPTY);
    ms_channel_detach(&ch);
    fake_free(&f);
}

static void test_ring_fifo_wrap(void)
{
    /* strict FIFO check over many wraps with a model */
    fake_seg f;
    CHECK(fake_channel_init(&f, 128) == 0);
    ms_channel ch;
    CHECK_EQ(ms_channel_bind(&ch, &f.seg), MS_OK);
    ms_wait_opts o = nowait_opts();
    uint8_t in[128], out[128];
    fake_buf b = { out, sizeof out, 0 };
    size_t lens[64];
    unsigned head = 0, tail = 0;
    unsigned seed = 12345;
    for (int i = 0; i < 20000; i++) {
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) & 1) {
            size_t n = (seed >> 8) % 121u;  /* 0..120 == max_message */
            fill(in, n, tail);
            ms_status s = ms_channel_send(&ch, in, n, &o);
            CHECK(s == MS_OK || s == MS_E_FULL);
            if (s == MS_OK)
                lens[tail++ % 64] = n;
        } else {
            ms_status s = recv_into(&ch, &b);
            if (head == tail) {
                CHECK_EQ(s, MS_E_EMPTY);
            } else {
                CHECK_EQ(s, MS_OK);
                CHECK_EQ(b.len, lens[head % 64]);
                fill(in, b.len, head);
                CHECK(memcmp(out, in, b.len) == 0);
                head++;
            }
        }
        CHECK(tail - head <= 16);
    }
    CHECK(tail > 1000);
    ms_channel_detach(&ch);
    fake_free(&f);
}

static void test_ring_padding_record(void)
{
    fake_seg f;
    CHECK(fake_channel_init(&f, 64) == 0);
    ms_channel ch;
    CHECK_EQ(ms_channel_bind(&ch, &f.seg), MS_OK);
    ms_ring *r = (ms_ring *)f.hdr->kind_area;
    ms_wait_opts o = nowait_opts();
    uint8_t in[64], out[64];
    fake_buf b = { out, sizeof out, 0 };
    fill(in, 40, 1);
    CHECK_EQ(ms_channel_send(&ch, in, 40, &o), MS_OK);   /* record 48 bytes at 0 */
    CHECK_EQ(recv_into(&ch, &b), MS_OK);                  /* head = tail = 48 */
    fill(in, 20, 2);
    CHECK_EQ(ms_channel_send(&ch, in, 20, &o), MS_OK);   /* 32 bytes do not fit in 16 */
    uint32_t pad[2];
    memcpy(pad, f.data + 48, 8);
    CHECK_EQ(pad[0], 16);
    CHECK_EQ(pad[1], MS_REC_PAD);
    CHECK_EQ(r->tail, 64 + 32);
    uint32_t rec[2];
    memcpy(rec, f.data, 8);
    CHECK_EQ(rec[0], 20);
    CHECK_EQ(rec[1], 0);
    CHECK_EQ(recv_into(&ch, &b), MS_OK);                  /* skips the pad */
    CHECK(b.len == 20 && memcmp(out, in, 20) == 0);
    CHECK_EQ(r->head, 96);
    ms_channel_detach(&ch);
    fake_free(&f);
}

static void test_ring_exact_fit(void)
{
    fake_seg f;
    CHECK(fake_channel_init(&f, 64) == 0);
    ms_channel ch;
    CHECK_EQ(ms_channel_bind(&ch, &f.seg), MS_OK);
    ms_wait_opts o = nowait_opts();
    uint8_t in[64], out[64];
    fake_buf b = { out, sizeof out, 0 };
    fill(in, 56, 9);
    CHECK_EQ(ms_channel_send(&ch, in, 56, &o), MS_OK);   /* exactly the whole ring */
    CHECK_EQ(ms_channel_send(&ch, in, 0, &o), MS_E_FULL);
    CHECK_EQ(recv_into(&ch, &b), MS_OK);
    CHECK(b.len == 56 && memcmp(out, in, 56) == 0);
    /* two records that exactly fill it */
    CHECK_EQ(ms_channel_send(&ch, in, 24, &o), MS_OK);
    CHECK_EQ(ms_channel_send(&ch, in, 24, &o), MS_OK);
    CHECK_EQ(ms_channel_send(&ch, in, 0, &o), MS_E_FULL);
    CHECK_EQ(recv_into(&ch, &b), MS_OK);
    CHECK_EQ(recv_into(&ch, &b), MS_OK);
    CHECK_EQ(recv_into(&ch, &b), MS_E_EMPTY);
    ms_channel_detach(&ch);
    fake_free(&f);
}

static void test_ring_max_message_on_an_empty_ring_at_any_offset(void)
{
    /* an empty ring whose head is not at offset 0 takes a max_message message at once,
     * without a receiver having to skip the padding record first */
    for (unsigned start = 0; start < 8; start++) {
        fake_seg f;
        CHECK(fake_channel_init(&f, 64) == 0);
        ms_channel ch;
        CHECK_EQ(ms_channel_bind(&ch, &f.seg), MS_OK);
        ms_wait_opts o = nowait_opts();
        uint8_t in[64], out[64];
        fake_buf b = { out, sizeof out, 0 };
        if (start) {
            CHECK_EQ(ms_channel_send(&ch, in, 8 * start - 8, &o), MS_OK);  /* head ends at 8*start */
            CHECK_EQ(recv_into(&ch, &b), MS_OK);
        }
        fill(in, 56, start);
        CHECK_EQ(ms_channel_send(&ch, in, 56, &o), MS_OK);
        CHECK_EQ(recv_into(&ch, &b), MS_OK);
        CHECK(b.len == 56 && memcmp(out, in, 56) == 0);
        ms_channel_detach(&ch);
        fake_free(&f);
    }
}

static void test_ring_loan_view(void)
{
    fake_seg f;
    CHECK(fake_channel_init(&f, 128) == 0);
    ms_channel ch;
    CHECK_EQ(ms_channel_bind(&ch, &f.seg), MS_OK);
    ms_wait_opts o = nowait_opts();
    uint8_t *lp;
    CHECK_EQ(ms_channel_loan(&ch, 32, &lp, &o), MS_OK);
    CHECK(lp >= f.data && lp + 32 <= f.data + 128);
    memcpy(lp, "loaned bytes", 12);
    CHECK_EQ(ms_channel_send(&ch, "x", 1, &o), MS_E_ALREADY_HELD);  /* this handle holds the loan */
    CHECK_EQ(ms_channel_commit(&ch, 12), MS_OK);
    CHECK_EQ(ms_channel_commit(&ch, 12), MS_E_INVALID);
    CHECK_EQ(ms_channel_loan(&ch, 8, &lp, &o), MS_OK);
    CHECK_EQ(ms_channel_abort(&ch), MS_OK);                  /* nothing published */
    const uint8_t *p;
    size_t len;
    CHECK_EQ(ms_channel_peek(&ch, &p, &len, &o), MS_OK);
    CHECK(len == 12 && memcmp(p, "loaned bytes", 12) == 0);
    CHECK_EQ(ms_channel_unconsume(&ch), MS_OK);              /* stays queued */
    CHECK_EQ(ms_channel_peek(&ch, &p, &len, &o), MS_OK);
    CHECK_EQ(len, 12);
    CHECK_EQ(ms_channel_consume(&ch), MS_OK);
    CHECK_EQ(ms_channel_peek(&ch, &p, &len, &o), MS_E_EMPTY);
    CHECK_EQ(ms_channel_close_sending(&ch), MS_OK);
    CHECK_EQ(ms_channel_peek(&ch, &p, &len, &o), MS_E_CLOSED);
    CHECK_EQ(ms_channel_send(&ch, "x", 1, &o), MS_E_CLOSED);
    ms_channel_detach(&ch);
    fake_free(&f);
}

/* Corrupt one thing; every entry point must answer MS_E_LAYOUT, never touch memory
 * outside the ring (ASan), and leave the locks free. */
static void expect_layout_everywhere(fake_seg *f, ms_channel *ch, int send_too)
{
    ms_wait_opts o = nowait_opts();
    uint8_t out[256];
    fake_buf b = { out, sizeof out, 0 };
    const uint8_t *p;
    size_t len;
    CHECK_EQ(recv_into(ch, &b), MS_E_LAYOUT);
    CHECK_EQ(ms_channel_peek(ch, &p, &len, &o), MS_E_LAYOUT);
    if (send_too) {
        uint8_t *lp;
        CHECK_EQ(ms_channel_send(ch, "abc", 3, &o), MS_E_LAYOUT);
        CHECK_EQ(ms_channel_loan(ch, 8, &lp, &o), MS_E_LAYOUT);
    }
    ms_ring *r = (ms_ring *)f->hdr->kind_area;
    int held, dead;
    uint32_t holder;
    ms_p_lock_inspect(r->recv_lock, &held, &holder, &dead);
    CHECK_EQ(held, 0);
    ms_p_lock_inspect(r->send_lock, &held, &holder, &dead);
    CHECK_EQ(held, 0);
    ms_channel_stats st;
    ms_channel_statistics(ch, &st);
    CHECK(st.queued_bytes <= st.capacity);
}

static void test_ring_corruption(void)
{
    for (int variant = 0; variant < 9; variant++) {
        fake_seg f;
        CHECK(fake_channel_init(&f, 128) == 0);
        ms_channel ch;
        CHECK_EQ(ms_channel_bind(&ch, &f.seg), MS_OK);
        ms_wait_opts o = nowait_opts();
        CHECK_EQ(ms_channel_send(&ch, "0123456789", 10, &o), MS_OK);  /* 24 bytes at 0 */
        ms_ring *r = (ms_ring *)f.hdr->kind_area;
        uint32_t *rec = (uint32_t *)f.data;
        int send_too = 0;
        switch (variant) {
        case 0: r->head = 3; break;                                   /* unaligned head */
        case 1: r->tail = r->head + 129; send_too = 1; break;         /* tail too far */
        case 2: r->head = r->tail + 8; break;  /* head past tail (a sender may not look at the head: it keeps a lower-bound hint; see below) */
        case 3: rec[0] = 1000; break;                                 /* length > max */
        case 4: rec[0] = 120; break;                                  /* past the tail */
        case 5: rec[1] = 0x80; break;                                 /* unknown flags */
        case 6: rec[1] = MS_REC_PAD; rec[0] = 8; break;               /* pad, wrong size */
        case 7: rec[1] = MS_REC_PAD; rec[0] = 128; break;             /* pad beyond tail */
        case 8: r->tail = UINT64_MAX - 7; r->head = UINT64_MAX - 200; send_too = 1; break;
        }
        int before = failures_in_test;
        expect_layout_everywhere(&f, &ch, send_too);
        if (!send_too) {
            /* a send may succeed (it writes at the tail, inside the ring) or refuse */
            ms_status s = ms_channel_send(&ch, "abc", 3, &o);
            CHECK(s == MS_OK || s == MS_E_LAYOUT || s == MS_E_FULL);
            uint8_t out[256];
            fake_buf b = { out, sizeof out, 0 };
            CHECK(recv_into(&ch, &b) != MS_OK || b.len <= ch.max_message);
        }
        if (failures_in_test != before)
            fprintf(stderr, "  (corruption variant %d)\n", variant);
        ms_channel_detach(&ch);
        fake_free(&f);
    }
}

static void test_ring_scribble_while_viewed(void)
{
    /* a writer enlarges the record's length while the receiver holds a view: consume
     * re-validates and reports MS_E_LAYOUT instead of moving the head past the ring */
    fake_seg f;
    CHECK(fake_channel_init(&f, 64) == 0);
    ms_channel ch;
    CHECK_EQ(ms_channel_bind(&ch, &f.seg), MS_OK);
    ms_wait_opts o = nowait_opts();
    CHECK_EQ(ms_channel_send(&ch, "abcdefgh", 8, &o), MS_OK);
    const uint8_t *p;
    size_t len;
    CHECK_EQ(ms_channel_peek(&ch, &p, &len, &o), MS_OK);
    ((uint32_t *)f.data)[0] = 4000;
    CHECK_EQ(ms_channel_consume(&ch), MS_E_LAYOUT);
    int held, dead;
    uint32_t holder;
    ms_p_lock_inspect(((ms_ring *)f.hdr->kind_area)->recv_lock, &held, &holder, &dead);
    CHECK_EQ(held, 0);
    ms_channel_detach(&ch);
    fake_free(&f);
}

static void test_ring_bind_rejects(void)
{
    fake_seg f;
    CHECK(fake_channel_init(&f, 128) == 0);
    ms_channel ch;
    ms_ring *r = (ms_ring *)f.hdr->kind_area;
    r->capacity = 256;
    CHECK_EQ(ms_channel_bind(&ch, &f.seg), MS_E_LAYOUT);   /* larger than the mapping */
    r->capacity = 128;
    r->max_message = 128;
    CHECK_EQ(ms_channel_bind(&ch, &f.seg), MS_E_LAYOUT);
    r->max_message = 120;
    f.seg.kind = MS_KIND_SEGMENT;
    CHECK_EQ(ms_channel_bind(&ch, &f.seg), MS_E_LAYOUT);
    f.seg.kind = MS_KIND_CHANNEL;
    CHECK_EQ(ms_channel_bind(&ch, &f.seg), MS_OK);
    fake_free(&f);
}

/* threads: one sender, one receiver, blocking, over a tiny ring (also the TSan test) */
struct spsc { ms_channel *ch; unsigned n; int bad; };

static void *spsc_sender(void *arg)
{
    struct spsc *a = (struct spsc *)arg;
    ms_wait_opts o = timeout_opts(20000000000LL);
    uint8_t buf[48];
    for (unsigned i = 0; i < a->n; i++) {
        size_t n = 4 + i % 40;
        fill(buf, n, i);
        memcpy(buf, &i, 4);
        if (ms_channel_send(a->ch, buf, n, &o) != MS_OK)
            a->bad++;
    }
    return NULL;
}

static void test_ring_threads(void)
{
    fake_seg f;
    CHECK(fake_channel_init(&f, 96) == 0);
    ms_channel tx, rx;
    CHECK_EQ(ms_channel_bind(&tx, &f.seg), MS_OK);
    CHECK_EQ(ms_channel_bind(&rx, &f.seg), MS_OK);
    struct spsc a = { &tx, 20000, 0 };
    pthread_t t;
    pthread_create(&t, NULL, spsc_sender, &a);
    ms_wait_opts o = timeout_opts(20000000000LL);
    uint8_t out[128], want[48];
    fake_buf b = { out, sizeof out, 0 };
    for (unsigned i = 0; i < a.n; i++) {
        ms_status s = ms_channel_receive(&rx, fake_alloc, &b, &o);
        if (s != MS_OK) {
            CHECK_EQ(s, MS_OK);
            break;
        }
        size_t n = 4 + i % 40;
        fill(want, n, i);
        memcpy(want, &i, 4);
        if (b.len != n || memcmp(out, want, n) != 0) {
            CHECK(!"message out of order or torn");
            break;
        }
    }
    pthread_join(t, NULL);
    CHECK_EQ(a.bad, 0);
    ms_channel_detach(&tx);
    ms_channel_detach(&rx);
    fake_free(&f);
}

/* ---- header validation ------------------------------------------------------------ */

static ms_status validate(ms_header *h, uint64_t objsize)
{
    ms_segment seg;
    memset(&seg, 0, sizeof seg);
    seg.hdr = h;
    seg.hdr_len = MS_HEADER_PAGE;  /* validation reads the header page alone */
    ms_object_stat st;
    memset(&st, 0, sizeof st);
    st.size = objsize;
    return ms_segment_validate(&seg, &st);
}

static void test_header_validation(void)
{
    ms_header *h = (ms_header *)aligned_alloc(4096, 4096);
    const uint64_t obj = MS_HEADER_SIZE + 4096;
#define CASE(mut, expect) do { fake_header_fill(h, MS_KIND_SEGMENT, 100, obj); mut; CHECK_EQ(validate(h, obj), expect); } while (0)
    CASE((void)0, MS_OK);
    CASE(h->magic = 0, MS_E_INITIALIZING);
    CASE(h->magic = MS_MAGIC ^ 1, MS_E_LAYOUT);
    CASE(h->magic = 0x00414d5053485201ULL, MS_E_LAYOUT);   /* byte-swapped */
    CASE(h->version = 0, MS_E_LAYOUT);
    CASE(h->version = 1, MS_E_VERSION);                    /* the table inside the page */
    CASE(h->version = 3, MS_E_VERSION);                    /* a future layout */
    CASE(h->kind = 0, MS_E_LAYOUT);
    CASE(h->kind = MS_KIND_MAX + 1, MS_E_LAYOUT);
    CASE(h->header_size = 2048, MS_E_LAYOUT);
    CASE(h->data_offset = 0, MS_E_LAYOUT);
    CASE(h->data_offset = 8192, MS_E_LAYOUT);              /* != header_size */
    CASE((h->data_offset = h->header_size = 4096), MS_E_LAYOUT);  /* no room for the table */
    CASE((h->data_offset = h->header_size = 2048 + 16, h->attach_slots = 1), MS_E_LAYOUT);
                                                            /* header area under a page */
    CASE((h->data_offset = h->header_size = 1u << 30, h->total_size = 1u << 30),
         MS_E_LAYOUT);                                      /* absurd header area */
    CASE(h->attach_slots = 0, MS_E_LAYOUT);
    CASE(h->attach_slots = MS_ATTACH_SLOTS + 128, MS_OK);   /* fills the header area */
    CASE(h->attach_slots = MS_ATTACH_SLOTS + 129, MS_E_LAYOUT);  /* past data_offset */
    CASE(h->attach_slots = 0xFFFFFFFFu, MS_E_LAYOUT);
    CASE(h->attach_slots = 16, MS_OK);                     /* a smaller table is fine */
    CASE(h->attach_offset = 1024, MS_E_LAYOUT);            /* over the kind area */
    CASE(h->attach_offset = 2048 + 8, MS_E_LAYOUT);        /* misaligned */
    CASE(h->attach_offset = 4096, MS_OK);                  /* after the page, just fits */
    CASE(h->attach_offset = 4096 + 16, MS_E_LAYOUT);       /* runs past data_offset */
    CASE(h->attach_offset = UINT64_MAX - 15, MS_E_LAYOUT); /* would wrap */
    CASE((h->attach_offset = 8192, h->attach_slots = 16), MS_OK);
    CASE((h->attach_end = 0xFFFFFFFFu, h->attach_hint = 0xFFFFFFFFu), MS_OK);  /* hints */
    CASE(h->lifetime = 0, MS_E_LAYOUT);
    CASE(h->lifetime = 3, MS_E_LAYOUT);
    CASE(h->name_len = 257, MS_E_LAYOUT);
    CASE(h->name_len = 0xFFFFFFFFu, MS_E_LAYOUT);
    CASE(h->total_size = obj + 4096, MS_E_LAYOUT);         /* beyond the object */
    CASE(h->total_size = 100, MS_E_LAYOUT);                /* before the data offset */
    CASE(h->size = 4097, MS_E_LAYOUT);                     /* beyond total - offset */
    CASE(h->size = UINT64_MAX, MS_E_LAYOUT);
    CASE((h->size = UINT64_MAX - 4000, h->total_size = UINT64_MAX), MS_E_LAYOUT);
    CASE(h->size = 4096, MS_OK);                           /* exactly fills it */
    /* a header that is fine but the object shrank below total_size */
    fake_header_fill(h, MS_KIND_SEGMENT, 100, obj);
    CHECK_EQ(validate(h, MS_HEADER_SIZE), MS_E_LAYOUT);
#undef CASE
    free(h);
}

static void test_open_invalid_objects(void)
{
    /* real /dev/shm objects that are not valid segments */
    const char *osn = fresh_osname();
    char osname[64];
    snprintf(osname, sizeof osname, "%s", osn);
    int fd = shm_open(osname, O_RDWR | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    ms_segment seg;
    int err = 0;
    /* size 0: shm_open done, ftruncate not yet */
    CHECK_EQ(ms_segment_open(&seg, osname, NULL, 0, MS_ACCESS_WRITE, 0, 0, &err), MS_E_INITIALIZING);
    CHECK(ftruncate(fd, 100) == 0);
    CHECK_EQ(ms_segment_open(&seg, osname, NULL, 0, MS_ACCESS_WRITE, 0, 0, &err), MS_E_LAYOUT);
    const uint64_t obj = MS_HEADER_SIZE + 4096;
    CHECK(ftruncate(fd, (off_t)obj) == 0);   /* zero header: magic 0 */
    CHECK_EQ(ms_segment_open(&seg, osname, NULL, 0, MS_ACCESS_WRITE, 0, 0, &err), MS_E_INITIALIZING);
    ms_header h;
    fake_header_fill(&h, MS_KIND_SEGMENT, 4096, obj);
    h.version = 7;
    CHECK(pwrite(fd, &h, sizeof h, 0) == (ssize_t)sizeof h);
    CHECK_EQ(ms_segment_open(&seg, osname, NULL, 0, MS_ACCESS_WRITE, 0, 0, &err), MS_E_VERSION);
    fake_header_fill(&h, MS_KIND_SEGMENT, 4096, obj);
    CHECK(pwrite(fd, &h, sizeof h, 0) == (ssize_t)sizeof h);
    CHECK_EQ(ms_segment_open(&seg, osname, NULL, 0, MS_ACCESS_WRITE, 0, 0, &err), MS_OK);
    CHECK_EQ(seg.size, 4096);
    ms_segment_close(&seg);
    CHECK_EQ(ms_segment_open(&seg, osname, NULL, MS_KIND_CHANNEL, MS_ACCESS_WRITE, 0, 0, &err), MS_E_LAYOUT);
    fake_header_fill(&h, MS_KIND_SEGMENT, 4096, obj);
    h.total_size = 1 << 20;                                  /* claims more than exists */
    CHECK(pwrite(fd, &h, sizeof h, 0) == (ssize_t)sizeof h);
    CHECK_EQ(ms_segment_open(&seg, osname, NULL, 0, MS_ACCESS_WRITE, 0, 0, &err), MS_E_LAYOUT);
    close(fd);
    CHECK_EQ(ms_p_object_unlink(osname, 0, &err), MS_OK);
    CHECK_EQ(ms_segment_open(&seg, osname, NULL, 0, MS_ACCESS_WRITE, 0, 0, &err), MS_E_NOT_FOUND);
}

/* ---- attach table and opener lock ------------------------------------------------------ */

static int open_attach_in_child(const char *osname)
{
    /* a fresh process attaches: its exit code is the status */
    pid_t pid = fork();
    if (pid == 0) {
        ms_segment s;
        int e = 0;
        ms_status st = ms_segment_open(&s, osname, NULL, 0, MS_ACCESS_WRITE, 0, 0, &e);
        if (st == MS_OK)
            st = ms_segment_attach(&s, &e);
        _exit((int)st);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_attach_table(void)
{
    char osname[64];
    snprintf(osname, sizeof osname, "%s", fresh_osname());
    ms_segment a, b, c, insp;
    int err = 0, last = 0, removed = 0, empty = 0;
    CHECK_EQ(ms_segment_create(&a, osname, NULL, "ctest", MS_KIND_SEGMENT, 64, 0600,
                               MS_LIFETIME_SHARED, 0, NULL, NULL, &err), MS_OK);
    ms_header *h = a.hdr;
    CHECK_EQ(h->attach_offset, MS_ATTACH_OFFSET);
    CHECK_EQ(h->attach_slots, MS_ATTACH_SLOTS);
    CHECK_EQ(h->data_offset, MS_HEADER_SIZE);
    CHECK_EQ(h->attach_end, 1);
    CHECK_EQ(h->attach_hint, 1);
    CHECK_EQ(h->attach_reserved, 128);  /* the entries in the header page */
    /* a second handle of this process shares its entry */
    CHECK_EQ(ms_segment_open(&b, osname, NULL, 0, MS_ACCESS_WRITE, 0, 0, &err), MS_OK);
    CHECK_EQ(b.slots, MS_ATTACH_SLOTS);
    CHECK_EQ(ms_segment_attach(&b, &err), MS_OK);
    CHECK_EQ(a.table[0].count, 2);
    CHECK_EQ(h->attach_end, 1);
    /* fill every other slot with a live process */
    pid_t sleeper = fork();
    if (sleeper == 0) {
        pause();
        _exit(0);
    }
    uint64_t start = ms_p_process_start((uint32_t)sleeper);
    for (uint32_t i = 1; i < MS_ATTACH_SLOTS; i++) {
        a.table[i].start = start;
        a.table[i].count = 1;
        a.table[i].pid = (uint32_t)sleeper;
    }
    h->attach_end = MS_ATTACH_SLOTS;
    h->attach_hint = MS_ATTACH_SLOTS;
    h->attach_reserved = MS_ATTACH_SLOTS;  /* as if attachers had reached every page */
    CHECK_EQ(open_attach_in_child(osname), MS_E_ATTACH_LIMIT);
    CHECK_EQ(a.table[0].count, 2);  /* the refused attach changed nothing */
    /* the sleeper dies: the next attacher reaps every slot it held and takes one */
    kill(sleeper, SIGKILL);
    waitpid(sleeper, NULL, 0);
    CHECK_EQ(open_attach_in_child(osname), MS_OK);
    /* the sweep rebuilt the hints: we in slot 0, the child (which exited without
     * detaching, so now dead) in slot 1 */
    CHECK_EQ(h->attach_end, 2);
    CHECK_EQ(h->attach_hint, 2);
    /* garbage hints are rebuilt, the entry found again */
    h->attach_end = 0;
    h->attach_hint = 0;
    CHECK_EQ(ms_segment_open(&c, osname, NULL, 0, MS_ACCESS_WRITE, 0, 0, &err), MS_OK);
    CHECK_EQ(ms_segment_attach(&c, &err), MS_OK);
    CHECK_EQ(c.slot, 0);
    CHECK_EQ(a.table[0].count, 3);
    /* an inspector's reap: this process is attached, so not empty */
    CHECK_EQ(ms_segment_open(&insp, osname, NULL, 0, MS_ACCESS_WRITE, 0, 0, &err), MS_OK);
    CHECK_EQ(ms_segment_reap(&insp, &removed, &empty, &err), MS_OK);
    CHECK_EQ(empty, 0);
    ms_segment_close(&insp);
    /* detach down to the last: the entry is freed, the end hint shrinks */
    CHECK_EQ(ms_segment_detach(&c, &last, &err), MS_OK);
    CHECK_EQ(last, 0);
    ms_segment_close(&c);
    CHECK_EQ(ms_segment_detach(&b, &last, &err), MS_OK);
    CHECK_EQ(last, 0);
    ms_segment_close(&b);
    CHECK_EQ(ms_segment_detach(&a, &last, &err), MS_OK);
    CHECK_EQ(last, 1);             /* the dead child's entry does not count */
    CHECK_EQ(h->attach_end, 0);    /* ... and was reaped on the way */
    CHECK_EQ(h->state, MS_STATE_DESTROYED);
    ms_segment_close(&a);
    ms_p_object_unlink(osname, 0, NULL);
}

/* A child that takes the segment's meta lock, says so with a byte on a pipe, and holds
 * it for hold_ms (or, if hold_ms < 0, until a byte arrives on `release`), then releases
 * it and exits.  With `ready_fd`, returns at once and leaves the pipe's read end there;
 * without, waits until the child holds the lock. */
static pid_t hold_meta_lock(const char *osname, int hold_ms, int release, int *ready_fd)
{
    int ready[2];
    if (pipe(ready) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        ms_segment s;
        int e = 0;
        char c = 1;
        close(ready[0]);
        if (ms_segment_open(&s, osname, NULL, 0, MS_ACCESS_WRITE, 0, 0, &e) != MS_OK ||
            ms_p_lock_acquire(s.ctx, MS_SLOT_META_LOCK, s.hdr->meta_lock, -1, &e) != MS_OK)
            _exit(1);
        if (write(ready[1], &c, 1) != 1)
            _exit(1);
        if (hold_ms >= 0) {
            struct timespec ts = { hold_ms / 1000, (long)(hold_ms % 1000) * 1000000L };
            nanosleep(&ts, NULL);
        } else if (read(release, &c, 1) != 1) {
            _exit(1);
        }
        ms_p_lock_release(s.ctx, MS_SLOT_META_LOCK, s.hdr->meta_lock, NULL);
        _exit(0);
    }
    close(ready[1]);
    if (ready_fd) {
        *ready_fd = ready[0];
        return pid;
    }
    char c;
    if (read(ready[0], &c, 1) != 1)
        pid = -1;
    close(ready[0]);
    return pid;
}

static void test_meta_lock_stuck_holder_vs_a_queue(void)
{
    /* One live process holding the meta lock for a whole 5 s slice is stuck: attach
     * reports MS_E_TIMEOUT rather than wait for ever.  But a lock that changes hands
     * (thousands of attachers queued on an overloaded machine) is waited for: here two
     * holders keep it 4 s each, 8 s in all, and the attach waits them out. */
    char osname[64];
    snprintf(osname, sizeof osname, "%s", fresh_osname());
    ms_segment a;
    int err = 0, last = 0, status = 0;
    CHECK_EQ(ms_segment_create(&a, osname, NULL, "ctest", MS_KIND_SEGMENT, 64, 0600,
                               MS_LIFETIME_SHARED, 0, NULL, NULL, &err), MS_OK);
    int release[2];
    CHECK_EQ(pipe(release), 0);
    pid_t stuck = hold_meta_lock(osname, -1, release[0], NULL);
    CHECK(stuck > 0);
    CHECK_EQ(open_attach_in_child(osname), MS_E_TIMEOUT);
    char c = 1;
    CHECK_EQ(write(release[1], &c, 1), 1);
    waitpid(stuck, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(release[0]);
    close(release[1]);
    /* the queue: a first holder; a second one queued behind it (futex waiters wake in
     * order), then our attacher behind both */
    pid_t first = hold_meta_lock(osname, 4000, -1, NULL);
    CHECK(first > 0);
    int second_ready = -1;
    pid_t second = hold_meta_lock(osname, 4000, -1, &second_ready);
    CHECK(second > 0);
    struct timespec queued = { 0, 300 * 1000000L };
    nanosleep(&queued, NULL);
    pid_t waiter = fork();
    if (waiter == 0) {
        ms_segment s;
        int e = 0;
        ms_status st = ms_segment_open(&s, osname, NULL, 0, MS_ACCESS_WRITE, 0, 0, &e);
        if (st == MS_OK)
            st = ms_segment_attach(&s, &e);
        _exit((int)st);
    }
    waitpid(waiter, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), MS_OK);
    waitpid(first, NULL, 0);
    waitpid(second, NULL, 0);
    close(second_ready);
    CHECK_EQ(ms_segment_detach(&a, &last, &err), MS_OK);
    ms_segment_close(&a);
    ms_p_object_unlink(osname, 0, NULL);
}

static void test_meta_lock_dead_holder_the_kernel_never_marked(void)
{
    /* A lock word naming a dead thread without FUTEX_OWNER_DIED (the kernel could not walk
     * the holder's robust list, or a writer forged it): pthread never hands it over, so
     * the slices would wait for ever.  The same holder for a whole slice, dead or alive,
     * is stuck: attach reports MS_E_TIMEOUT (after two slices) instead of hanging. */
    char osname[64];
    snprintf(osname, sizeof osname, "%s", fresh_osname());
    ms_segment a;
    int err = 0, last = 0, status = 0;
    CHECK_EQ(ms_segment_create(&a, osname, NULL, "ctest", MS_KIND_SEGMENT, 64, 0600,
                               MS_LIFETIME_SHARED, 0, NULL, NULL, &err), MS_OK);
    pid_t gone = fork();
    if (gone == 0)
        _exit(0);
    waitpid(gone, &status, 0);
    uint32_t *word = (uint32_t *)a.hdr->meta_lock;  /* glibc: __lock, then __count, __owner */
    __atomic_store_n(&word[2], (uint32_t)gone, __ATOMIC_RELAXED);
    __atomic_store_n(&word[0], (uint32_t)gone, __ATOMIC_RELEASE);
    CHECK_EQ(open_attach_in_child(osname), MS_E_TIMEOUT);
    __atomic_store_n(&word[2], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&word[0], 0, __ATOMIC_RELEASE);
    CHECK_EQ(ms_segment_detach(&a, &last, &err), MS_OK);
    ms_segment_close(&a);
    ms_p_object_unlink(osname, 0, NULL);
}

static void test_opener_lock(void)
{
    /* a handle that cannot register in the table (read-only) still counts */
    char osname[64];
    snprintf(osname, sizeof osname, "%s", fresh_osname());
    ms_segment a, r, insp;
    int err = 0, last = 0, removed = 0, empty = 0;
    CHECK_EQ(ms_segment_create(&a, osname, NULL, "ctest", MS_KIND_SEGMENT, 64, 0600,
                               MS_LIFETIME_SHARED, 0, NULL, NULL, &err), MS_OK);
    CHECK_EQ(ms_segment_open(&r, osname, NULL, 0, MS_ACCESS_READ, 0, 0, &err), MS_OK);
    r.hdr_writable = 0;  /* as for a group member whose header mapping is read-only */
    CHECK_EQ(ms_segment_attach(&r, &err), MS_OK);
    CHECK(r.attached && !r.in_table);
    CHECK_EQ(a.hdr->attach_end, 1);
    /* the creator leaves: not the last user */
    CHECK_EQ(ms_segment_detach(&a, &last, &err), MS_OK);
    CHECK_EQ(last, 0);
    CHECK_EQ(a.hdr->state, MS_STATE_READY);
    ms_segment_close(&a);
    /* gc's check agrees: somebody has it open */
    CHECK_EQ(ms_segment_open(&insp, osname, NULL, 0, MS_ACCESS_WRITE, 0, 0, &err), MS_OK);
    CHECK_EQ(ms_segment_reap(&insp, &removed, &empty, &err), MS_OK);
    CHECK_EQ(empty, 0);
    ms_segment_close(&insp);
    /* the reader is the last: it says so (it cannot mark the state itself) */
    CHECK_EQ(ms_segment_detach(&r, &last, &err), MS_OK);
    CHECK_EQ(last, 1);
    ms_segment_close(&r);
    /* and now gc finds it empty, and holds it while removing the name */
    CHECK_EQ(ms_segment_open(&insp, osname, NULL, 0, MS_ACCESS_WRITE, 0, 0, &err), MS_OK);
    CHECK_EQ(ms_segment_reap(&insp, &removed, &empty, &err), MS_OK);
    CHECK_EQ(empty, 1);
    CHECK_EQ(insp.hdr->state, MS_STATE_DESTROYED);
    ms_segment_close(&insp);
    ms_p_object_unlink(osname, 0, NULL);
}

/* A handle removing an object holds it exclusively: an opener is told MS_E_IN_USE (the
 * one status of that meaning; segment.c retries it for a while), never a lock status. */
static void test_opener_sees_in_use_while_removed(void)
{
    const char *osn = fresh_osname();
    ms_object remover, opener;
    int err = 0;
    CHECK_EQ(ms_p_object_create(osn, NULL, 4096, 0600, 0, &remover, &err), MS_OK);
    CHECK_EQ(ms_p_object_open(osn, NULL, 1, 0, &opener, &err), MS_OK);
    CHECK_EQ(ms_p_object_others(&remover), 0);  /* nobody counts: held exclusively now */
    CHECK_EQ(ms_p_object_share(&opener, &err), MS_E_IN_USE);
    ms_p_object_close(&remover);
    CHECK_EQ(ms_p_object_share(&opener, &err), MS_OK);  /* the remover is gone */
    ms_p_object_unshare(&opener);
    ms_p_object_close(&opener);
    ms_p_object_unlink(osn, 0, NULL);
}

/* ---- robust lock ------------------------------------------------------------------ */

static int create_seg(ms_segment *seg, uint32_t kind, uint64_t size, ms_kind_init_fn init,
                      void *arg, char *osname_out)
{
    int err = 0;
    const char *osn = fresh_osname();
    strcpy(osname_out, osn);
    ms_status s = ms_segment_create(seg, osname_out, NULL, "ctest", kind, size, 0600,
                                    MS_LIFETIME_PERSISTENT, 0, init, arg, &err);
    if (s != MS_OK)
        fprintf(stderr, "  create %s: status %d errno %d\n", osname_out, (int)s, err);
    return s == MS_OK ? 0 : -1;
}

static void destroy_seg(ms_segment *seg, const char *osname)
{
    ms_segment_close(seg);
    ms_p_object_unlink(osname, 0, NULL);
}

static void test_lock_owner_died(void)
{
    ms_segment seg;
    char osn[64];
    if (create_seg(&seg, MS_KIND_LOCK, 0, NULL, NULL, osn) != 0) {
        CHECK(0);
        return;
    }
    void *area = seg.hdr->user_lock;
    int err = 0;
    pid_t pid = fork();
    if (pid == 0) {
        int e;
        if (ms_p_lock_acquire(seg.ctx, MS_SLOT_USER_LOCK, area, -1, &e) != MS_OK)
            _exit(3);
        _exit(0);  /* die holding it */
    }
    CHECK_EQ(child_status(pid), 0);
    CHECK_EQ(ms_p_lock_acquire(seg.ctx, MS_SLOT_USER_LOCK, area, 1000000000LL, &err), MS_E_OWNER_DIED);
    /* we hold it now: relocking from the same thread is refused, not a deadlock */
    CHECK_EQ(ms_p_lock_acquire(seg.ctx, MS_SLOT_USER_LOCK, area, 0, &err), MS_E_ALREADY_HELD);
    CHECK_EQ(ms_p_lock_release(seg.ctx, MS_SLOT_USER_LOCK, area, &err), MS_OK);
    CHECK_EQ(ms_p_lock_acquire(seg.ctx, MS_SLOT_USER_LOCK, area, 0, &err), MS_OK);
    CHECK_EQ(ms_p_lock_release(seg.ctx, MS_SLOT_USER_LOCK, area, &err), MS_OK);

    /* SIGKILL while holding it, while the parent is blocked in acquire */
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    pid = fork();
    if (pid == 0) {
        int e;
        ms_status s = ms_p_lock_acquire(seg.ctx, MS_SLOT_USER_LOCK, area, -1, &e);
        char c = s == MS_OK ? 'y' : 'n';
        if (write(pipefd[1], &c, 1) != 1)
            _exit(4);
        pause();
        _exit(0);
    }
    char c = 0;
    CHECK(read(pipefd[0], &c, 1) == 1 && c == 'y');
    CHECK_EQ(ms_p_lock_acquire(seg.ctx, MS_SLOT_USER_LOCK, area, 0, &err), MS_E_TIMEOUT);
    kill(pid, SIGKILL);
    CHECK_EQ(ms_p_lock_acquire(seg.ctx, MS_SLOT_USER_LOCK, area, 10000000000LL, &err), MS_E_OWNER_DIED);
    CHECK_EQ(ms_p_lock_release(seg.ctx, MS_SLOT_USER_LOCK, area, &err), MS_OK);
    child_status(pid);
    close(pipefd[0]);
    close(pipefd[1]);
    destroy_seg(&seg, osn);
}

static void test_lock_not_owner(void)
{
    ms_segment seg;
    char osn[64];
    if (create_seg(&seg, MS_KIND_LOCK, 0, NULL, NULL, osn) != 0) {
        CHECK(0);
        return;
    }
    void *area = seg.hdr->user_lock;
    int err = 0;
    CHECK_EQ(ms_p_lock_release(seg.ctx, MS_SLOT_USER_LOCK, area, &err), MS_E_NOT_OWNER);
    /* held by a live child: still not ours to release */
    int go[2], done[2];
    CHECK(pipe(go) == 0 && pipe(done) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        int e;
        char c = ms_p_lock_acquire(seg.ctx, MS_SLOT_USER_LOCK, area, -1, &e) == MS_OK ? 'y' : 'n';
        if (write(go[1], &c, 1) != 1 || read(done[0], &c, 1) != 1)
            _exit(4);
        _exit(ms_p_lock_release(seg.ctx, MS_SLOT_USER_LOCK, area, &e) == MS_OK ? 0 : 5);
    }
    char c = 0;
    CHECK(read(go[0], &c, 1) == 1 && c == 'y');
    CHECK_EQ(ms_p_lock_release(seg.ctx, MS_SLOT_USER_LOCK, area, &err), MS_E_NOT_OWNER);
    int held, dead;
    uint32_t holder;
    ms_p_lock_inspect(area, &held, &holder, &dead);
    CHECK_EQ(held, 1);
    CHECK_EQ(dead, 0);
    CHECK(write(done[1], "x", 1) == 1);
    CHECK_EQ(child_status(pid), 0);
    CHECK_EQ(ms_p_lock_acquire(seg.ctx, MS_SLOT_USER_LOCK, area, 0, &err), MS_OK);
    CHECK_EQ(ms_p_lock_release(seg.ctx, MS_SLOT_USER_LOCK, area, &err), MS_OK);
    close(go[0]); close(go[1]); close(done[0]); close(done[1]);
    destroy_seg(&seg, osn);
}

static void test_lock_corrupt_list_pointers(void)
{
    /* a writer aims the robust-list pointers inside a held mutex at our memory: the
     * release refuses (MS_E_LAYOUT) instead of letting glibc write through them.
     * Runs in a child so that a failure cannot damage this process's robust list. */
    ms_segment seg;
    char osn[64];
    if (create_seg(&seg, MS_KIND_LOCK, 0, NULL, NULL, osn) != 0) {
        CHECK(0);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        void *area = seg.hdr->user_lock;
        int e;
        static uint64_t victim[4] = { 0x1111, 0x2222, 0x3333, 0x4444 };
        if (ms_p_lock_acquire(seg.ctx, MS_SLOT_USER_LOCK, area, -1, &e) != MS_OK)
            _exit(2);
        uint8_t saved[16];
        memcpy(saved, (uint8_t *)area + 24, 16);
        uintptr_t evil = (uintptr_t)&victim[1];
        memcpy((uint8_t *)area + 24, &evil, 8);            /* __prev */
        if (ms_p_lock_release(seg.ctx, MS_SLOT_USER_LOCK, area, &e) != MS_E_LAYOUT)
            _exit(3);
        memcpy((uint8_t *)area + 24, saved, 16);
        memcpy((uint8_t *)area + 32, &evil, 8);            /* __next */
        if (ms_p_lock_release(seg.ctx, MS_SLOT_USER_LOCK, area, &e) != MS_E_LAYOUT)
            _exit(4);
        if (victim[0] != 0x1111 || victim[1] != 0x2222 || victim[2] != 0x3333)
            _exit(5);
        memcpy((uint8_t *)area + 24, saved, 16);           /* repaired: releases */
        if (ms_p_lock_release(seg.ctx, MS_SLOT_USER_LOCK, area, &e) != MS_OK)
            _exit(6);
        _exit(0);
    }
    CHECK_EQ(child_status(pid), 0);
    destroy_seg(&seg, osn);
}

static void test_lock_forged_kind_refused(void)
{
    /* a writer turns the mutex into a robust priority-inheritance one with a made-up
     * owner: glibc would abort() the peer on an assertion; linux.c refuses instead */
    ms_segment seg;
    char osn[64];
    if (create_seg(&seg, MS_KIND_LOCK, 0, NULL, NULL, osn) != 0) {
        CHECK(0);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        pthread_mutex_t *m = (pthread_mutex_t *)seg.hdr->user_lock;
        int e, good = m->__data.__kind;
        m->__data.__kind = 16 | 32 | 128;        /* ROBUST | PRIO_INHERIT | PSHARED */
        m->__data.__lock = 0x3ffffff0;            /* an owner tid that does not exist */
        if (ms_p_lock_acquire(seg.ctx, MS_SLOT_USER_LOCK, m, 100000000LL, &e) != MS_E_LAYOUT)
            _exit(2);
        if (ms_p_lock_acquire(seg.ctx, MS_SLOT_USER_LOCK, m, 0, &e) != MS_E_LAYOUT)
            _exit(3);
        m->__data.__kind = good;
        m->__data.__lock = 0;
        if (ms_p_lock_acquire(seg.ctx, MS_SLOT_USER_LOCK, m, 0, &e) != MS_OK)
            _exit(4);
        m->__data.__kind = 1;                     /* recursive: refused at release too */
        if (ms_p_lock_release(seg.ctx, MS_SLOT_USER_LOCK, m, &e) != MS_E_LAYOUT)
            _exit(5);
        m->__data.__kind = good;
        if (ms_p_lock_release(seg.ctx, MS_SLOT_USER_LOCK, m, &e) != MS_OK)
            _exit(6);
        _exit(0);
    }
    CHECK_EQ(child_status(pid), 0);
    destroy_seg(&seg, osn);
}

/* ---- wait / wake across fork ------------------------------------------------------- */

static void test_event_across_fork(void)
{
    ms_segment seg;
    char osn[64];
    uint32_t initial = 0;
    if (create_seg(&seg, MS_KIND_EVENT, 0, ms_event_init, &initial, osn) != 0) {
        CHECK(0);
        return;
    }
    ms_event *e = (ms_event *)seg.hdr->kind_area;
    ms_wait_opts o = timeout_opts(50000000LL);
    CHECK_EQ(ms_event_wait(&seg, MS_SLOT_EVENT, e, &o), MS_E_TIMEOUT);
    pid_t pid = fork();
    if (pid == 0) {
        ms_wait_opts w = timeout_opts(20000000000LL);   /* sleeps on the futex */
        ms_status s = ms_event_wait(&seg, MS_SLOT_EVENT, e, &w);
        _exit(s == MS_OK ? 0 : 10 + (int)s);
    }
    /* let the child go to sleep (waiters != 0), then set */
    for (int i = 0; i < 2000 && ms_load32(&e->waiters) == 0; i++)
        sleep_ms(1);
    CHECK(ms_load32(&e->waiters) != 0);
    ms_event_set(&seg, MS_SLOT_EVENT, e);
    CHECK_EQ(child_status(pid), 0);
    CHECK(ms_event_is_set(e));
    destroy_seg(&seg, osn);
}

static void test_change_and_semaphore_across_fork(void)
{
    ms_segment seg;
    char osn[64];
    uint32_t v[2] = { 0, 5 };
    if (create_seg(&seg, MS_KIND_SEMAPHORE, 0, ms_semaphore_init, v, osn) != 0) {
        CHECK(0);
        return;
    }
    ms_semaphore *s = (ms_semaphore *)seg.hdr->kind_area;
    uint32_t since = ms_change_count(&seg);
    pid_t pid = fork();
    if (pid == 0) {
        ms_wait_opts w = timeout_opts(20000000000LL);
        uint32_t now;
        if (ms_change_wait(&seg, since, &w, &now) != MS_OK || now == since)
            _exit(2);
        if (ms_semaphore_acquire(&seg, MS_SLOT_SEMAPHORE, s, &w) != MS_OK)
            _exit(3);
        if (ms_semaphore_acquire(&seg, MS_SLOT_SEMAPHORE, s, &w) != MS_OK)
            _exit(4);
        _exit(0);
    }
    sleep_ms(20);
    ms_change_notify(&seg);
    sleep_ms(20);
    CHECK_EQ(ms_semaphore_release(&seg, MS_SLOT_SEMAPHORE, s, 1), MS_OK);
    sleep_ms(20);
    CHECK_EQ(ms_semaphore_release(&seg, MS_SLOT_SEMAPHORE, s, 1), MS_OK);
    CHECK_EQ(child_status(pid), 0);
    CHECK_EQ(ms_load32(&s->value), 0);
    CHECK_EQ(ms_semaphore_release(&seg, MS_SLOT_SEMAPHORE, s, 6), MS_E_VALUE);
    destroy_seg(&seg, osn);
}

/* ---- waiting on several objects (ms_wait_any) ------------------------------------- */

struct waker {
    int what;             /* 0 set event k, 1 release the semaphore, 2 notify, 3 send */
    int k;
    int delay_ms;
    ms_segment *plain;    /* events at offsets 64*k of its user area */
    ms_segment *sem_seg;
    ms_channel *ch;
};

static ms_event *plain_event(ms_segment *plain, int k)
{
    return (ms_event *)(plain->data + 64 * k);
}

static unsigned plain_slot(int k)
{
    return MS_SLOT_USER_BASE + (unsigned)(64 * k) / 8;
}

static void *wake_later(void *arg)
{
    struct waker *w = (struct waker *)arg;
    sleep_ms(w->delay_ms);
    switch (w->what) {
    case 0:
        ms_event_set(w->plain, plain_slot(w->k), plain_event(w->plain, w->k));
        break;
    case 1:
        ms_semaphore_release(w->sem_seg, MS_SLOT_SEMAPHORE,
                             (ms_semaphore *)w->sem_seg->hdr->kind_area, 1);
        break;
    case 2:
        ms_change_notify(w->plain);
        break;
    case 3: {
        ms_wait_opts o = timeout_opts(1000000000LL);
        ms_channel_send(w->ch, "hi", 2, &o);
        break;
    }
    }
    return NULL;
}

#define N_EVENTS 10

/* items 0..9: events in a plain segment; 10: a semaphore; 11: the plain segment's change
 * counter; 12: a channel.  Each kind, set from another thread while the waiter sleeps,
 * wakes it and is the one reported; in both modes (futex_waitv and polling). */
static void test_wait_any_threads(void)
{
    ms_segment plain, semseg;
    char osn_plain[64], osn_sem[64];
    uint32_t v[2] = { 0, 5 };
    fake_seg fc;
    if (create_seg(&plain, MS_KIND_SEGMENT, 4096, NULL, NULL, osn_plain) != 0) {
        CHECK(0);
        return;
    }
    if (create_seg(&semseg, MS_KIND_SEMAPHORE, 0, ms_semaphore_init, v, osn_sem) != 0) {
        CHECK(0);
        destroy_seg(&plain, osn_plain);
        return;
    }
    CHECK_EQ(fake_channel_init(&fc, 256), 0);
    ms_channel ch;
    CHECK_EQ(ms_channel_bind(&ch, &fc.seg), MS_OK);
    for (int k = 0; k < N_EVENTS; k++)
        ms_event_init_at(plain_event(&plain, k), 0);
    ms_semaphore *sem = (ms_semaphore *)semseg.hdr->kind_area;

    for (int mode = 0; mode < 2; mode++) {
        ms_wait_any_polling(mode);
        for (int what = 0; what < 4; what++) {
            ms_waitable items[N_EVENTS + 3];
            uint8_t ready[N_EVENTS + 3];
            ms_change_since cs;
            ms_channel_waitarg ca;
            memset(items, 0, sizeof items);
            for (int k = 0; k < N_EVENTS; k++)
                ms_event_waitable(&plain, plain_slot(k), plain_event(&plain, k), &items[k]);
            ms_semaphore_waitable(&semseg, MS_SLOT_SEMAPHORE, sem, &items[N_EVENTS]);
            ms_change_waitable(&plain, &cs, ms_change_count(&plain), &items[N_EVENTS + 1]);
            ms_channel_waitable(&ch, &ca, &items[N_EVENTS + 2]);

            /* nothing ready: a timeout, and every count back where it was */
            ms_wait_opts o = timeout_opts(30000000LL);
            memset(ready, 7, sizeof ready);
            CHECK_EQ(ms_wait_any(items, N_EVENTS + 3, &o, ready), MS_E_TIMEOUT);
            for (int i = 0; i < N_EVENTS + 3; i++) {
                CHECK_EQ(ready[i], 0);
                CHECK_EQ(ms_load32(items[i].waiters), 0);
            }

            /* the last event (what 0) or another kind, from another thread */
            struct waker wk = { what, N_EVENTS - 1, 30, &plain, &semseg, &ch };
            pthread_t t;
            pthread_create(&t, NULL, wake_later, &wk);
            o = timeout_opts(20000000000LL);
            CHECK_EQ(ms_wait_any(items, N_EVENTS + 3, &o, ready), MS_OK);
            pthread_join(t, NULL);
            int want = what == 0 ? N_EVENTS - 1 : N_EVENTS + what - 1;
            for (int i = 0; i < N_EVENTS + 3; i++) {
                CHECK_EQ(ready[i], i == want);
                CHECK_EQ(ms_load32(items[i].waiters), 0);
            }
            /* ready now: an immediate answer, without waiting */
            o = timeout_opts(0);
            CHECK_EQ(ms_wait_any(items, N_EVENTS + 3, &o, ready), MS_OK);
            CHECK_EQ(ready[want], 1);
            /* undo it */
            if (what == 0)
                ms_event_clear(plain_event(&plain, N_EVENTS - 1));
            if (what == 1)
                CHECK_EQ(ms_semaphore_acquire(&semseg, MS_SLOT_SEMAPHORE, sem, &o), MS_OK);
            if (what == 3) {
                uint8_t out[16];
                fake_buf b = { out, sizeof out, 0 };
                CHECK_EQ(recv_into(&ch, &b), MS_OK);
            }
        }
        /* several ready at once: all reported */
        ms_waitable items[3];
        uint8_t ready[3];
        memset(items, 0, sizeof items);
        for (int k = 0; k < 3; k++)
            ms_event_waitable(&plain, plain_slot(k), plain_event(&plain, k), &items[k]);
        ms_event_set(&plain, plain_slot(0), plain_event(&plain, 0));
        ms_event_set(&plain, plain_slot(2), plain_event(&plain, 2));
        ms_wait_opts o = timeout_opts(-1);
        CHECK_EQ(ms_wait_any(items, 3, &o, ready), MS_OK);
        CHECK_EQ(ready[0], 1);
        CHECK_EQ(ready[1], 0);
        CHECK_EQ(ready[2], 1);
        ms_event_clear(plain_event(&plain, 0));
        ms_event_clear(plain_event(&plain, 2));
    }
    ms_wait_any_polling(0);
    /* no items: refused, not a wait on nothing */
    {
        ms_wait_opts o = timeout_opts(0);
        uint8_t r;
        CHECK_EQ(ms_wait_any(NULL, 0, &o, &r), MS_E_INVALID);
    }
    ms_channel_detach(&ch);
    fake_free(&fc);
    destroy_seg(&semseg, osn_sem);
    destroy_seg(&plain, osn_plain);
}

/* A waiter in another process, on an event and the change counter of one segment:
 * the counter moved by the parent wakes it. */
static void test_wait_any_across_fork(void)
{
    ms_segment seg;
    char osn[64];
    uint32_t initial = 0;
    if (create_seg(&seg, MS_KIND_EVENT, 0, ms_event_init, &initial, osn) != 0) {
        CHECK(0);
        return;
    }
    ms_event *e = (ms_event *)seg.hdr->kind_area;
    uint32_t since = ms_change_count(&seg);
    pid_t pid = fork();
    if (pid == 0) {
        ms_waitable items[2];
        uint8_t ready[2];
        ms_change_since cs;
        memset(items, 0, sizeof items);
        ms_event_waitable(&seg, MS_SLOT_EVENT, e, &items[0]);
        ms_change_waitable(&seg, &cs, since, &items[1]);
        ms_wait_opts w = timeout_opts(20000000000LL);
        ms_status s = ms_wait_any(items, 2, &w, ready);
        _exit(s != MS_OK ? 10 + (int)s : (ready[0] == 0 && ready[1] == 1) ? 0 : 3);
    }
    for (int i = 0; i < 2000 && ms_load32(&seg.hdr->change_waiters) == 0; i++)
        sleep_ms(1);
    CHECK(ms_load32(&seg.hdr->change_waiters) != 0);
    CHECK(ms_load32(&e->waiters) != 0);
    ms_change_notify(&seg);
    CHECK_EQ(child_status(pid), 0);
    destroy_seg(&seg, osn);
}

static void test_channel_across_fork(void)
{
    ms_segment seg;
    char osn[64];
    if (create_seg(&seg, MS_KIND_CHANNEL, 256, ms_ring_init, NULL, osn) != 0) {
        CHECK(0);
        return;
    }
    ms_channel ch;
    CHECK_EQ(ms_channel_bind(&ch, &seg), MS_OK);
    const unsigned N = 5000;
    pid_t pid = fork();
    if (pid == 0) {
        ms_channel tx;
        if (ms_channel_bind(&tx, &seg) != MS_OK)
            _exit(2);
        ms_wait_opts w = timeout_opts(20000000000LL);
        uint8_t buf[100];
        for (unsigned i = 0; i < N; i++) {
            size_t n = 4 + i % 90;
            fill(buf, n, i);
            memcpy(buf, &i, 4);
            if (ms_channel_send(&tx, buf, n, &w) != MS_OK)
                _exit(3);
        }
        ms_channel_close_sending(&tx);
        ms_channel_detach(&tx);
        _exit(0);
    }
    ms_wait_opts w = timeout_opts(20000000000LL);
    uint8_t out[256], want[100];
    fake_buf b = { out, sizeof out, 0 };
    unsigned got = 0;
    for (;;) {
        ms_status s = ms_channel_receive(&ch, fake_alloc, &b, &w);
        if (s == MS_E_CLOSED)
            break;
        if (s != MS_OK) {
            CHECK_EQ(s, MS_OK);
            break;
        }
        size_t n = 4 + got % 90;
        fill(want, n, got);
        memcpy(want, &got, 4);
        if (b.len != n || memcmp(out, want, n) != 0) {
            CHECK(!"message out of order or torn");
            break;
        }
        got++;
    }
    CHECK_EQ(got, N);
    CHECK_EQ(child_status(pid), 0);
    ms_channel_detach(&ch);
    destroy_seg(&seg, osn);
}

static void test_receiver_killed_in_view(void)
{
    /* a receiver SIGKILLed while holding a view: the message is redelivered */
    ms_segment seg;
    char osn[64];
    if (create_seg(&seg, MS_KIND_CHANNEL, 256, ms_ring_init, NULL, osn) != 0) {
        CHECK(0);
        return;
    }
    ms_channel ch;
    CHECK_EQ(ms_channel_bind(&ch, &seg), MS_OK);
    ms_wait_opts o = nowait_opts();
    CHECK_EQ(ms_channel_send(&ch, "keep me", 7, &o), MS_OK);
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        ms_channel rx;
        const uint8_t *ptr;
        size_t len;
        ms_wait_opts w = timeout_opts(5000000000LL);
        if (ms_channel_bind(&rx, &seg) != MS_OK || ms_channel_peek(&rx, &ptr, &len, &w) != MS_OK)
            _exit(2);
        if (write(p[1], "v", 1) != 1)
            _exit(3);
        pause();
        _exit(0);
    }
    char c;
    CHECK(read(p[0], &c, 1) == 1);
    kill(pid, SIGKILL);
    child_status(pid);
    uint8_t out[64];
    fake_buf b = { out, sizeof out, 0 };
    ms_wait_opts w = timeout_opts(10000000000LL);
    CHECK_EQ(ms_channel_receive(&ch, fake_alloc, &b, &w), MS_OK);
    CHECK(b.len == 7 && memcmp(out, "keep me", 7) == 0);
    ms_channel_stats st;
    ms_channel_statistics(&ch, &st);
    CHECK_EQ(st.redelivered, 1);
    CHECK_EQ(st.queued_bytes, 0);
    close(p[0]); close(p[1]);
    ms_channel_detach(&ch);
    destroy_seg(&seg, osn);
}

static void test_sender_killed_is_an_edge(void)
{
    /* A sender that detaches is not a dead sender; one SIGKILLed while registered is
     * reported once (MS_E_BROKEN with its pid) when the channel is empty and no sender is
     * left, then receiving waits normally (MS_E_TIMEOUT). */
    ms_segment seg;
    char osn[64];
    if (create_seg(&seg, MS_KIND_CHANNEL, 256, ms_ring_init, NULL, osn) != 0) {
        CHECK(0);
        return;
    }
    ms_channel ch;
    CHECK_EQ(ms_channel_bind(&ch, &seg), MS_OK);
    uint8_t out[64];
    fake_buf b = { out, sizeof out, 0 };
    ms_wait_opts w = timeout_opts(200000000LL);
    /* a sender that detaches cleanly */
    pid_t pid = fork();
    if (pid == 0) {
        ms_channel tx;
        ms_wait_opts o = nowait_opts();
        if (ms_channel_bind(&tx, &seg) != MS_OK || ms_channel_send(&tx, "a", 1, &o) != MS_OK)
            _exit(2);
        ms_channel_detach(&tx);
        _exit(0);
    }
    CHECK_EQ(child_status(pid), 0);
    CHECK_EQ(ms_channel_receive(&ch, fake_alloc, &b, &w), MS_OK);
    CHECK_EQ(ms_channel_receive(&ch, fake_alloc, &b, &w), MS_E_TIMEOUT);
    /* a sender killed while registered, with a message of kind object queued */
    int p[2];
    CHECK(pipe(p) == 0);
    pid = fork();
    if (pid == 0) {
        ms_channel tx;
        ms_wait_opts o = nowait_opts();
        uint8_t *lp;
        if (ms_channel_bind(&tx, &seg) != MS_OK || ms_channel_loan(&tx, 2, &lp, &o) != MS_OK)
            _exit(2);
        memcpy(lp, "ob", 2);
        tx.loan_kind = MS_REC_KIND_OBJECT;
        if (ms_channel_commit(&tx, 2) != MS_OK || write(p[1], "s", 1) != 1)
            _exit(3);
        pause();
        _exit(0);
    }
    char c;
    CHECK(read(p[0], &c, 1) == 1);
    kill(pid, SIGKILL);
    child_status(pid);
    const uint8_t *ptr;
    size_t len;
    CHECK_EQ(ms_channel_peek(&ch, &ptr, &len, &w), MS_OK);  /* queued messages first */
    CHECK(len == 2 && memcmp(ptr, "ob", 2) == 0);
    CHECK_EQ(ch.view_kind, MS_REC_KIND_OBJECT);
    CHECK_EQ(ms_channel_consume(&ch), MS_OK);
    CHECK_EQ(ms_channel_receive(&ch, fake_alloc, &b, &w), MS_E_BROKEN);
    CHECK_EQ(ch.broken_pid, (uint32_t)pid);
    CHECK_EQ(ch.broken_deaths, 1);
    CHECK_EQ(ms_channel_receive(&ch, fake_alloc, &b, &w), MS_E_TIMEOUT);
    CHECK_EQ(ms_channel_wait_readable(&ch, &w), MS_E_TIMEOUT);
    /* another handle bound after the death was found has nothing to report */
    ms_channel other;
    CHECK_EQ(ms_channel_bind(&other, &seg), MS_OK);
    CHECK_EQ(ms_channel_receive(&other, fake_alloc, &b, &w), MS_E_TIMEOUT);
    ms_channel_stats st;
    ms_channel_statistics(&ch, &st);
    CHECK_EQ(st.sender_deaths, 1);
    CHECK_EQ(st.senders_alive, 0);
    close(p[0]); close(p[1]);
    ms_channel_detach(&other);
    ms_channel_detach(&ch);
    destroy_seg(&seg, osn);
}

static void test_ring_restarts_at_zero_when_empty(void)
{
    /* Large records find an empty ring past its first half: the next one starts at
     * offset 0 (memory still in cache) instead of marching on. */
    ms_segment seg;
    char osn[64];
    if (create_seg(&seg, MS_KIND_CHANNEL, 64 * 1024, ms_ring_init, NULL, osn) != 0) {
        CHECK(0);
        return;
    }
    ms_channel ch;
    CHECK_EQ(ms_channel_bind(&ch, &seg), MS_OK);
    static uint8_t msg[8192], out[8192];
    fake_buf b = { out, sizeof out, 0 };
    ms_wait_opts o = nowait_opts();
    uint64_t max_off = 0;
    for (unsigned i = 0; i < 100; i++) {
        fill(msg, sizeof msg, i);
        CHECK_EQ(ms_channel_send(&ch, msg, sizeof msg, &o), MS_OK);
        uint64_t off = (ms_load64(&ch.ring->tail) - 8 - sizeof msg) % ch.cap;
        if (off > max_off)
            max_off = off;
        CHECK_EQ(ms_channel_receive(&ch, fake_alloc, &b, &o), MS_OK);
        CHECK(b.len == sizeof msg && memcmp(out, msg, sizeof msg) == 0);
    }
    CHECK(max_off < ch.cap / 2 + sizeof msg + 8);
    ms_channel_detach(&ch);
    destroy_seg(&seg, osn);
}

/* ---- SIGBUS guard ------------------------------------------------------------------ */

static void test_sigbus_guard(void)
{
    ms_segment seg;
    char osn[64];
    if (create_seg(&seg, MS_KIND_SEGMENT, 3 * 4096, NULL, NULL, osn) != 0) {
        CHECK(0);
        return;
    }
    memset(seg.data, 7, 3 * 4096);
    uint8_t out[64];
    CHECK_EQ(ms_p_guarded_copy(out, seg.data + 8192, 64), MS_OK);
    CHECK_EQ(out[0], 7);
    /* a peer truncates the object under us */
    int fd = shm_open(osn, O_RDWR, 0);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, 4096) == 0);
    close(fd);
    CHECK_EQ(ms_p_guarded_copy(out, seg.data + 8192, 64), MS_E_FAULT);
    CHECK_EQ(ms_p_guarded_copy(seg.data, out, 64), MS_E_FAULT);
    ms_segment_fault(&seg);
    /* quarantined: reads zeros, never faults again */
    CHECK_EQ(ms_p_guarded_copy(out, seg.data + 8192, 64), MS_OK);
    CHECK_EQ(out[0], 0);
    CHECK_EQ(seg.hdr->magic, 0);
    /* the guard nests and is reusable */
    CHECK_EQ(ms_p_guarded_copy(out, seg.data, 16), MS_OK);
    destroy_seg(&seg, osn);
}

/* ---- runner ------------------------------------------------------------------------- */

struct test { const char *name; void (*fn)(void); int threads; };

/* ---- reclaiming abandoned names ------------------------------------------------------ */

static int name_exists(const char *osname)
{
    ms_object o;
    if (ms_p_object_open(osname, NULL, 0, 0, &o, NULL) != MS_OK)
        return 0;
    ms_p_object_close(&o);
    return 1;
}

static void test_segment_reclaim(void)
{
    int err = 0, result = -1;
    char osn[64];
    strcpy(osn, fresh_osname());
    /* absent */
    CHECK_EQ(ms_segment_reclaim(osn, 0, 0, &result, &err), MS_OK);
    CHECK_EQ(result, MS_RECLAIM_ABSENT);

    /* a 'shared' object whose only attached process died: removed */
    pid_t pid = fork();
    if (pid == 0) {
        ms_segment s;
        int e;
        _exit(ms_segment_create(&s, osn, NULL, "ctest", MS_KIND_SEGMENT, 64, 0600,
                                MS_LIFETIME_SHARED, 0, NULL, NULL, &e) == MS_OK ? 0 : 3);
    }
    CHECK_EQ(child_status(pid), 0);
    CHECK(name_exists(osn));
    CHECK_EQ(ms_segment_reclaim(osn, 0, 0, &result, &err), MS_OK);
    CHECK_EQ(result, MS_RECLAIM_REMOVED);
    CHECK(!name_exists(osn));

    /* a live user (us): kept, and still usable */
    ms_segment seg;
    CHECK_EQ(ms_segment_create(&seg, osn, NULL, "ctest", MS_KIND_SEGMENT, 64, 0600,
                               MS_LIFETIME_SHARED, 0, NULL, NULL, &err), MS_OK);
    CHECK_EQ(ms_segment_reclaim(osn, 0, 0, &result, &err), MS_OK);
    CHECK_EQ(result, MS_RECLAIM_KEPT);
    CHECK(name_exists(osn));
    CHECK_EQ(ms_load32(&seg.hdr->state), MS_STATE_READY);
    /* marked destroyed: removed even with us attached (nobody can open it) */
    CHECK_EQ(ms_segment_mark_destroyed(&seg, &err), MS_OK);
    CHECK_EQ(ms_segment_reclaim(osn, 0, 0, &result, &err), MS_OK);
    CHECK_EQ(result, MS_RECLAIM_REMOVED);
    CHECK(!name_exists(osn));
    /* the name now names a new object: our remove_name must leave it alone */
    ms_segment fresh;
    CHECK_EQ(ms_segment_create(&fresh, osn, NULL, "ctest", MS_KIND_SEGMENT, 64, 0600,
                               MS_LIFETIME_SHARED, 0, NULL, NULL, &err), MS_OK);
    int removed = -1;
    CHECK_EQ(ms_segment_remove_name(&seg, osn, 0, &removed, &err), MS_OK);
    CHECK_EQ(removed, 0);
    CHECK(name_exists(osn));
    ms_segment_close(&seg);
    CHECK_EQ(ms_segment_remove_name(&fresh, osn, 0, &removed, &err), MS_OK);
    CHECK_EQ(removed, 1);
    ms_segment_close(&fresh);

    /* persistent with a dead creator: data, kept */
    pid = fork();
    if (pid == 0) {
        ms_segment s;
        int e;
        _exit(ms_segment_create(&s, osn, NULL, "ctest", MS_KIND_SEGMENT, 64, 0600,
                                MS_LIFETIME_PERSISTENT, 0, NULL, NULL, &e) == MS_OK ? 0 : 3);
    }
    CHECK_EQ(child_status(pid), 0);
    CHECK_EQ(ms_segment_reclaim(osn, 0, 0, &result, &err), MS_OK);
    CHECK_EQ(result, MS_RECLAIM_KEPT);
    CHECK(name_exists(osn));
    ms_p_object_unlink(osn, 0, NULL);

    /* an unfinished header (magic 0) whose creator died: claimed and removed once */
    pid = fork();
    if (pid == 0) {
        ms_segment s;
        int e;
        if (ms_segment_create(&s, osn, NULL, "ctest", MS_KIND_SEGMENT, 64, 0600,
                              MS_LIFETIME_SHARED, 0, NULL, NULL, &e) != MS_OK)
            _exit(3);
        ms_store64(&s.hdr->magic, 0);  /* as if it died before publishing */
        _exit(0);
    }
    CHECK_EQ(child_status(pid), 0);
    CHECK_EQ(ms_segment_reclaim(osn, 0, 0, &result, &err), MS_OK);
    CHECK_EQ(result, MS_RECLAIM_REMOVED);
    CHECK(!name_exists(osn));

    /* an empty object (no header yet): only by age, i.e. unfinished_ok */
    ms_object o;
    CHECK_EQ(ms_p_object_create(osn, NULL, 0, 0600, 0, &o, &err), MS_OK);
    CHECK_EQ(ms_segment_reclaim(osn, 0, 0, &result, &err), MS_OK);
    CHECK_EQ(result, MS_RECLAIM_UNFINISHED);
    CHECK_EQ(ms_segment_reclaim(osn, 0, 1, &result, &err), MS_OK);
    CHECK_EQ(result, MS_RECLAIM_REMOVED);
    ms_p_object_close(&o);
    CHECK(!name_exists(osn));
}

/* ---- inspection (inspect.c) --------------------------------------------------------- */

static void test_inspect_parse(void)
{
    /* a header copy another process may have scribbled anything into */
    ms_header *h = (ms_header *)aligned_alloc(4096, 4096);
    ms_header_info info;
    const uint64_t obj = MS_HEADER_SIZE + 4096;
    fake_header_fill(h, MS_KIND_CHANNEL, 100, obj);
    h->creator_pid = 4242;
    h->created_ns = 1234567890123456789ULL;
    h->state = MS_STATE_DESTROYED;
    memcpy(h->name, "abc", 3);
    h->name_len = 3;
    CHECK_EQ(ms_inspect_parse(h, MS_INSPECT_LEN, &info), MS_OK);
    CHECK_EQ(info.kind, MS_KIND_CHANNEL);
    CHECK_EQ(info.size, 100);
    CHECK_EQ(info.creator_pid, 4242);
    CHECK(info.created_ns == 1234567890123456789ULL);
    CHECK_EQ(info.state, MS_STATE_DESTROYED);
    CHECK_EQ(info.name_len, 3);
    CHECK(strcmp(info.name, "abc") == 0);
    /* a name length past the field is clamped, and the name still ends with NUL */
    memset(h->name, 'x', sizeof h->name);
    h->name_len = 0xFFFFFFFFu;
    CHECK_EQ(ms_inspect_parse(h, MS_INSPECT_LEN, &info), MS_OK);
    CHECK_EQ(info.name_len, sizeof h->name);
    CHECK_EQ(strlen(info.name), sizeof h->name);
    /* too short, unpublished, foreign, another layout version */
    CHECK_EQ(ms_inspect_parse(h, MS_INSPECT_LEN - 1, &info), MS_E_LAYOUT);
    CHECK_EQ(ms_inspect_parse(NULL, 0, &info), MS_E_LAYOUT);
    h->magic = 0;
    CHECK_EQ(ms_inspect_parse(h, MS_INSPECT_LEN, &info), MS_E_INITIALIZING);
    h->magic = MS_MAGIC_RECLAIMED;
    CHECK_EQ(ms_inspect_parse(h, MS_INSPECT_LEN, &info), MS_E_LAYOUT);
    h->magic = MS_MAGIC;
    h->version = MS_LAYOUT_VERSION + 1;
    CHECK_EQ(ms_inspect_parse(h, MS_INSPECT_LEN, &info), MS_E_LAYOUT);
    /* the parser reads exactly MS_INSPECT_LEN bytes: an exact-size heap copy (ASan) */
    unsigned char *exact = malloc(MS_INSPECT_LEN);
    fake_header_fill(h, MS_KIND_SEGMENT, 100, obj);
    memcpy(exact, h, MS_INSPECT_LEN);
    CHECK_EQ(ms_inspect_parse(exact, MS_INSPECT_LEN, &info), MS_OK);
    free(exact);
    free(h);
}

static void test_inspect_peek(void)
{
    /* real /dev/shm objects: a destroyed segment's identity, and objects that are not */
    char osname[64];
    snprintf(osname, sizeof osname, "%s", fresh_osname());
    ms_header_info info;
    int err = 0;
    CHECK_EQ(ms_inspect_peek(osname, NULL, 0, &info, &err), MS_E_NOT_FOUND);
    ms_segment seg;
    CHECK_EQ(ms_segment_create(&seg, osname, NULL, "peeked", MS_KIND_SEGMENT, 777, 0600,
                               MS_LIFETIME_SHARED, 0, NULL, NULL, &err), MS_OK);
    CHECK_EQ(ms_segment_mark_destroyed(&seg, &err), MS_OK);
    CHECK_EQ(ms_inspect_peek(osname, NULL, 0, &info, &err), MS_OK);
    CHECK_EQ(info.kind, MS_KIND_SEGMENT);
    CHECK_EQ(info.size, 777);
    CHECK_EQ(info.lifetime, MS_LIFETIME_SHARED);
    CHECK_EQ(info.state, MS_STATE_DESTROYED);
    CHECK_EQ(info.creator_pid, getpid());
    CHECK(strcmp(info.name, "peeked") == 0);
    ms_segment_close(&seg);
    CHECK_EQ(ms_p_object_unlink(osname, 0, &err), MS_OK);

    int fd = shm_open(osname, O_RDWR | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    CHECK_EQ(ms_inspect_peek(osname, NULL, 0, &info, &err), MS_E_LAYOUT);   /* empty */
    CHECK(ftruncate(fd, (off_t)MS_INSPECT_LEN - 1) == 0);
    CHECK_EQ(ms_inspect_peek(osname, NULL, 0, &info, &err), MS_E_LAYOUT);   /* short */
    CHECK(ftruncate(fd, 4096) == 0);
    CHECK_EQ(ms_inspect_peek(osname, NULL, 0, &info, &err), MS_E_INITIALIZING);
    CHECK(pwrite(fd, "garbage!", 8, 0) == 8);
    CHECK_EQ(ms_inspect_peek(osname, NULL, 0, &info, &err), MS_E_LAYOUT);   /* foreign */
    close(fd);
    CHECK_EQ(ms_p_object_unlink(osname, 0, &err), MS_OK);
}

static const struct test tests[] = {
    { "ring_push_pop", test_ring_push_pop, 0 },
    { "ring_wrap_many", test_ring_wrap_many, 0 },
    { "ring_fifo_wrap", test_ring_fifo_wrap, 0 },
    { "ring_padding_record", test_ring_padding_record, 0 },
    { "ring_exact_fit", test_ring_exact_fit, 0 },
    { "ring_max_message_any_offset", test_ring_max_message_on_an_empty_ring_at_any_offset, 0 },
    { "ring_loan_view", test_ring_loan_view, 0 },
    { "ring_corruption", test_ring_corruption, 0 },
    { "ring_scribble_while_viewed", test_ring_scribble_while_viewed, 0 },
    { "ring_bind_rejects", test_ring_bind_rejects, 0 },
    { "ring_threads", test_ring_threads, 1 },
    { "header_validation", test_header_validation, 0 },
    { "open_invalid_objects", test_open_invalid_objects, 0 },
    { "segment_reclaim", test_segment_reclaim, 0 },
    { "attach_table", test_attach_table, 0 },
    { "meta_lock_stuck_holder_vs_a_queue", test_meta_lock_stuck_holder_vs_a_queue, 0 },
    { "meta_lock_dead_holder_the_kernel_never_marked",
      test_meta_lock_dead_holder_the_kernel_never_marked, 0 },
    { "opener_lock", test_opener_lock, 0 },
    { "opener_sees_in_use_while_removed", test_opener_sees_in_use_while_removed, 0 },
    { "lock_owner_died", test_lock_owner_died, 0 },
    { "lock_not_owner", test_lock_not_owner, 0 },
    { "lock_corrupt_list_pointers", test_lock_corrupt_list_pointers, 0 },
    { "lock_forged_kind_refused", test_lock_forged_kind_refused, 0 },
    { "event_across_fork", test_event_across_fork, 0 },
    { "change_and_semaphore_across_fork", test_change_and_semaphore_across_fork, 0 },
    { "wait_any_threads", test_wait_any_threads, 1 },
    { "wait_any_across_fork", test_wait_any_across_fork, 0 },
    { "channel_across_fork", test_channel_across_fork, 0 },
    { "receiver_killed_in_view", test_receiver_killed_in_view, 0 },
    { "sender_killed_is_an_edge", test_sender_killed_is_an_edge, 0 },
    { "ring_restarts_at_zero_when_empty", test_ring_restarts_at_zero_when_empty, 0 },
    { "sigbus_guard", test_sigbus_guard, 0 },
    { "inspect_parse", test_inspect_parse, 0 },
    { "inspect_peek", test_inspect_peek, 0 },
};

int main(int argc, char **argv)
{
    /* usage: test_core [substring ...]  (no argument: every test; "-x name": skip) */
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
