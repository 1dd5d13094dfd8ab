/* libFuzzer harness (b): receiving from (and sending into) a corrupted ring.
 *
 * Input: byte 0 picks the capacity (64 + 8 * (b & 63)) and whether capacity and
 * max_message are kept valid (b & 0x80: keep, so that the channel binds and the
 * head/tail/record paths are reached); bytes 1..256 overwrite the ring control lines
 * 0-3 (capacity, max_message, tail, counters, head, flags, abandoned); then 512 bytes of
 * peer tables; then the ring bytes.  The two robust locks (lines 4-5) are left valid.
 * Every receive path (next_locked via receive, peek + consume, peek + unconsume) and
 * the send/loan paths run on it with exact-size heap buffers, so ASan reports any
 * access outside the ring. */
#include "fake_segment.h"

#include <stdio.h>

#define REQUIRE(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

static int allowed(ms_status s)
{
    return s == MS_OK || s == MS_E_LAYOUT || s == MS_E_EMPTY || s == MS_E_CLOSED ||
           s == MS_E_FULL || s == MS_E_ALREADY_HELD || s == MS_E_RETRY_NO_GIL ||
           s == MS_E_TOO_LARGE || s == MS_E_TIMEOUT;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
    if (n < 1)
        return 0;
    uint64_t cap = 64 + 8 * (uint64_t)(in[0] & 63);
    int keep = in[0] & 0x80;
    in++; n--;
    fake_seg f;
    if (fake_channel_init(&f, cap) != 0)
        abort();
    ms_ring *r = (ms_ring *)f.hdr->kind_area;
    size_t c = n < 256 ? n : 256;
    memcpy(r, in, c);
    in += c; n -= c;
    c = n < sizeof r->senders + sizeof r->receivers ? n : sizeof r->senders + sizeof r->receivers;
    memcpy(r->senders, in, c);
    in += c; n -= c;
    c = n < cap ? n : cap;
    memcpy(f.data, in, c);
    if (keep) {
        r->capacity = cap;
        r->max_message = ms_channel_max_message(cap);
    }
    ms_channel ch;
    if (ms_channel_bind(&ch, &f.seg) == MS_OK) {
        REQUIRE(ch.cap == cap);
        ms_wait_opts o = nowait_opts();
        uint8_t buf[4096];
        fake_buf fb = { buf, sizeof buf, 0 };
        const uint8_t *p;
        size_t len;
        ms_status s;
        for (int i = 0; i < 3; i++) {
            s = ms_channel_peek(&ch, &p, &len, &o);
            REQUIRE(allowed(s));
            if (s != MS_OK)
                break;
            REQUIRE(p >= f.data && len <= ch.max_message && p + len <= f.data + cap);
            if (i == 0)
                REQUIRE(ms_channel_unconsume(&ch) == MS_OK);
            else
                REQUIRE(allowed(ms_channel_consume(&ch)));
        }
        for (int i = 0; i < 8; i++) {
            s = ms_channel_receive(&ch, fake_alloc, &fb, &o);
            REQUIRE(allowed(s));
            if (s != MS_OK)
                break;
            REQUIRE(fb.len <= ch.max_message);
        }
        static const char msg[64] = "the quick brown fox jumps over the lazy dog..";
        s = ms_channel_send(&ch, msg, n ? (size_t)(in[0] % 48) : 5, &o);
        REQUIRE(allowed(s));
        uint8_t *lp;
        s = ms_channel_loan(&ch, 24, &lp, &o);
        REQUIRE(allowed(s));
        if (s == MS_OK) {
            REQUIRE(lp >= f.data && lp + 24 <= f.data + cap);
            memset(lp, 0x5A, 24);
            REQUIRE(allowed(ms_channel_commit(&ch, 20)));
        }
        s = ms_channel_receive(&ch, fake_alloc, &fb, &o);
        REQUIRE(allowed(s));
        REQUIRE(allowed(ms_channel_wait_readable(&ch, &o)));
        REQUIRE(allowed(ms_channel_wait_writable(&ch, 8, &o)));
        ms_channel_stats cs;
        ms_channel_statistics(&ch, &cs);
        REQUIRE(cs.queued_bytes <= cap);
        ms_channel_detach(&ch);
    }
    fake_free(&f);
    return 0;
}
