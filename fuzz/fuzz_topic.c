/* libFuzzer harness (d): a topic whose control lines, subscriber table and ring were
 * written by someone else.
 *
 * Input: byte 0 picks the capacity (128 + 8 * (b & 63)) and whether capacity,
 * max_message and the offsets are kept valid (b & 0x80: keep, so that the topic binds
 * and the tail/intent/head/record paths are reached); byte 1 the table size (1-4
 * entries) and the overflow mode; bytes 2..257 overwrite the topic's control lines 0-3
 * (line 4, the robust pub_lock, is left valid); then the subscriber table; then the
 * ring bytes.  Subscribing in every start mode, receive, peek + release, peek + unview,
 * receive_batch, publish, loan + commit/abort, publish_batch, publish with an origin,
 * publish_loss, wait_readable and statistics run on it with exact-size heap buffers, so
 * ASan reports any access outside the topic.  The oracle: a forged origin block or loss
 * count (record flags MS_REC_ORIGIN / MS_REC_LOSS) gives MS_E_LAYOUT or a Lagged whose
 * upstream part is within its missed, and an origin a subscriber reports is 1..64 bytes. */
#include "fake_topic.h"

#include <stdio.h>

#define REQUIRE(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

static int allowed(ms_status s)
{
    return s == MS_OK || s == MS_E_LAYOUT || s == MS_E_EMPTY || s == MS_E_FULL ||
           s == MS_E_LAGGED || s == MS_E_SUBSCRIBER_LIMIT || s == MS_E_RETRY_NO_GIL ||
           s == MS_E_TOO_LARGE || s == MS_E_TIMEOUT || s == MS_E_INVALID;
}

static const char text[64] = "the quick brown fox jumps over the lazy dog, twice....";

static int get_msg(void *arg, size_t i, const uint8_t **ptr, size_t *len)
{
    (void)arg;
    *ptr = (const uint8_t *)text;
    *len = (i * 11) % sizeof text;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
    if (n < 2)
        return 0;
    uint64_t cap = 128 + 8 * (uint64_t)(in[0] & 63);
    int keep = in[0] & 0x80;
    uint32_t nsubs = 1 + (in[1] & 3);
    uint32_t overflow = (in[1] & 4) ? MS_TOPIC_BLOCK : MS_TOPIC_OVERWRITE;
    in += 2;
    n -= 2;
    fake_topic f;
    if (fake_topic_init(&f, cap, 2, overflow, nsubs, 0) != 0)
        abort();
    ms_topic *tp = fake_topic_ctl(&f);
    ms_topic good = *tp;
    size_t c = n < 256 ? n : 256;
    memcpy(tp, in, c);
    in += c;
    n -= c;
    uint64_t tbytes = (uint64_t)nsubs * MS_TOPIC_SUB_SIZE;
    c = n < tbytes ? n : (size_t)tbytes;
    memcpy(f.data, in, c);
    in += c;
    n -= c;
    c = n < cap ? n : (size_t)cap;
    memcpy(f.data + tbytes, in, c);
    if (keep) {
        tp->capacity = good.capacity;
        tp->max_message = good.max_message;
        tp->ring_offset = good.ring_offset;
        tp->subs_offset = good.subs_offset;
        tp->max_subscribers = good.max_subscribers;
        tp->overflow = good.overflow;
    }
    ms_topic_handle t;
    if (ms_topic_bind(&t, &f.seg) == MS_OK) {
        uint8_t *ring = f.data + tp->ring_offset;
        REQUIRE(t.cap <= f.size && ring + t.cap <= f.data + f.size);
        ms_wait_opts o = nowait_opts();
        o.try_only = 0;
        uint8_t buf[4096];
        fake_buf fb = { buf, sizeof buf, 0 };
        ms_subscriber subs[3];
        int open[3];
        for (int m = 0; m < 3; m++) {
            ms_status s = ms_subscriber_open(&subs[m], &t, m, c ? in[0] : 0);
            REQUIRE(allowed(s));
            open[m] = s == MS_OK;
        }
        for (int m = 0; m < 3; m++) {
            if (!open[m])
                continue;
            ms_subscriber *s = &subs[m];
            for (int i = 0; i < 6; i++) {
                ms_status st = ms_subscriber_receive(s, fake_alloc, &fb, &o);
                REQUIRE(allowed(st));
                if (st == MS_OK)
                    REQUIRE(fb.len <= t.max_message);
                if (st == MS_OK && (s->view_flags & MS_REC_ORIGIN))
                    REQUIRE(s->origin_host_len >= 1 && s->origin_host_len <= MS_TOPIC_HOST_MAX);
                if (st == MS_E_LAGGED)
                    REQUIRE(s->lag_upstream <= s->lag_missed && s->upstream <= s->missed);
                if (st != MS_OK && st != MS_E_LAGGED)
                    break;
            }
            const uint8_t *p;
            size_t len;
            ms_status st = ms_subscriber_peek(s, &p, &len, &o);
            REQUIRE(allowed(st));
            if (st == MS_OK) {
                REQUIRE(p >= ring && len <= t.max_message && p + len <= ring + t.cap);
                REQUIRE(allowed(m == 1 ? ms_subscriber_unview(s) : ms_subscriber_release(s)));
            }
            size_t count = 0;
            REQUIRE(allowed(ms_subscriber_receive_batch(s, fake_alloc, &fb, 4, &count, &o)));
            REQUIRE(allowed(ms_subscriber_wait_readable(s, &o)));
        }
        uint64_t seq;
        REQUIRE(allowed(ms_topic_publish(&t, text, c ? in[0] % 60 : 5, 0, &o, &seq)));
        uint8_t *lp;
        ms_status st = ms_topic_loan(&t, 40, &lp, &o);
        REQUIRE(allowed(st));
        if (st == MS_OK) {
            REQUIRE(lp >= ring && lp + 40 <= ring + t.cap);
            memset(lp, 0x5A, 40);
            REQUIRE(allowed((c && (in[0] & 1)) ? ms_topic_abort(&t) : ms_topic_commit(&t, 33, &seq)));
        }
        size_t count = 0;
        REQUIRE(allowed(ms_topic_publish_batch(&t, get_msg, NULL, 5, &count, &seq, &o)));
        ms_origin org = { (const uint8_t *)text, 1 + (c ? in[0] % 64 : 3), c ? in[0] : 0 };
        REQUIRE(allowed(ms_topic_publish_origin(&t, text, c ? in[0] % 50 : 7, 0, &org, &o, &seq)));
        REQUIRE(allowed(ms_topic_publish_loss(&t, 1 + (c ? in[0] : 0), (c && (in[0] & 2)) ? &org : NULL,
                                              &o, &seq)));
        for (int m = 0; m < 3; m++) {
            if (!open[m])
                continue;
            REQUIRE(allowed(ms_subscriber_receive(&subs[m], fake_alloc, &fb, &o)));
        }
        ms_topic_stats ts;
        ms_topic_sub_stats rows[4];
        size_t nrows = 0;
        REQUIRE(allowed(ms_topic_statistics(&t, &ts, rows, 4, &nrows)));
        REQUIRE(nrows <= 4);
        for (int m = 0; m < 3; m++)
            if (open[m])
                ms_subscriber_close(&subs[m]);
        ms_topic_detach(&t);
    }
    fake_topic_free(&f);
    return 0;
}
