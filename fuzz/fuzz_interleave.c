/* libFuzzer harness (c): a header and ring changed by "another process" while a peer
 * operates on them.
 *
 * Starts from a valid, empty channel and interprets the input as a program: send,
 * receive, peek/consume, loan/commit/abort, statistics, close, and "foreign writes" --
 * 1 to 8 bytes stored at any offset of the ring control (except the two robust lock
 * areas), of the ring bytes or of the header -- some of them issued while a view or a
 * loan is open, i.e. exactly between the validation and the use of a record.
 *
 * Oracle: while no foreign write has happened, every received message must equal the
 * next one sent (a FIFO model); after one, every call must still return a status from
 * the documented set and never touch memory outside the exact-size heap ring (ASan). */
#include "fake_segment.h"

#include <stdio.h>

#define REQUIRE(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

#define MODEL_MAX 512

static int allowed(ms_status s)
{
    return s == MS_OK || s == MS_E_LAYOUT || s == MS_E_EMPTY || s == MS_E_CLOSED ||
           s == MS_E_FULL || s == MS_E_ALREADY_HELD || s == MS_E_RETRY_NO_GIL ||
           s == MS_E_TOO_LARGE || s == MS_E_TIMEOUT || s == MS_E_INVALID;
}

typedef struct prog { const uint8_t *p; size_t n; } prog;
static int next(prog *g)
{
    if (!g->n)
        return -1;
    g->n--;
    return *g->p++;
}

/* payload of message k, length len */
static void fill(uint8_t *dst, size_t len, uint32_t k)
{
    for (size_t i = 0; i < len; i++)
        dst[i] = (uint8_t)(k * 31u + i * 7u + (len & 0xff));
}

static uint8_t *ring_base;
static int foreign_write(fake_seg *f, prog *g)
{
    int where = next(g), a = next(g), b = next(g), w = next(g);
    if (where < 0 || a < 0 || b < 0 || w < 0)
        return 0;
    size_t width = (size_t)(w & 7) + 1;
    uint8_t val[8];
    for (size_t i = 0; i < 8; i++)
        val[i] = (uint8_t)(next(g) & 0xff);
    uint8_t *base;
    size_t limit;
    size_t off = ((size_t)a << 8) | (size_t)b;
    switch (where % 3) {
    case 0: /* ring control, not the locks at 256..383 */
        base = f->hdr->kind_area;
        limit = sizeof(ms_ring);
        off %= limit;
        if (off < 384 && off + width > 256)
            return 0;
        break;
    case 1: /* ring bytes */
        base = ring_base;
        limit = (size_t)f->cap;
        off %= limit;
        break;
    default: /* header outside the locks and the kind area */
        base = (uint8_t *)f->hdr;
        limit = 384;
        off %= limit;
        break;
    }
    if (off + width > limit)
        width = limit - off;
    memcpy(base + off, val, width);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
    if (n < 1)
        return 0;
    prog g = { in, n };
    uint64_t cap = 64 + 8 * (uint64_t)(next(&g) & 63);
    fake_seg f;
    if (fake_channel_init(&f, cap) != 0)
        abort();
    ring_base = f.data;
    ms_channel ch;
    REQUIRE(ms_channel_bind(&ch, &f.seg) == MS_OK);
    ms_wait_opts o = nowait_opts();
    uint32_t model_len[MODEL_MAX];
    uint32_t model_id[MODEL_MAX];
    uint32_t model_kind[MODEL_MAX];  /* the record kind each message was sent with */
    unsigned mhead = 0, mtail = 0;
    uint32_t counter = 0;
    int tainted = 0, closed = 0;
    uint8_t src[1024], dst[1024];
    fake_buf fb = { dst, sizeof dst, 0 };
    int op;
    while ((op = next(&g)) >= 0) {
        ms_status s;
        const uint8_t *p;
        size_t len;
        uint8_t *lp;
        switch (op % 10) {
        case 0: case 1: { /* send */
            int l = next(&g);
            size_t sz = l < 0 ? 1 : (size_t)l % (cap + 8);
            if (sz > sizeof src)
                sz = sizeof src;
            fill(src, sz, counter);
            s = ms_channel_send(&ch, src, sz, &o);
            REQUIRE(allowed(s));
            if (!tainted && sz > ch.max_message)
                REQUIRE(s == MS_E_TOO_LARGE);
            if (!tainted && closed)
                REQUIRE(s == MS_E_CLOSED || s == MS_E_TOO_LARGE);
            if (s == MS_OK && mtail - mhead < MODEL_MAX) {
                model_len[mtail % MODEL_MAX] = (uint32_t)sz;
                model_id[mtail % MODEL_MAX] = counter;
                model_kind[mtail % MODEL_MAX] = MS_REC_KIND_BYTES;
                mtail++;
            } else if (s == MS_OK) {
                tainted = 1;
            }
            counter++;
            break;
        }
        case 2: case 3: /* receive */
            s = ms_channel_receive(&ch, fake_alloc, &fb, &o);
            REQUIRE(allowed(s));
            if (!tainted) {
                if (mhead == mtail) {
                    REQUIRE(s == MS_E_EMPTY || s == MS_E_CLOSED);
                } else {
                    REQUIRE(s == MS_OK);
                    uint32_t el = model_len[mhead % MODEL_MAX], id = model_id[mhead % MODEL_MAX];
                    fill(src, el, id);
                    REQUIRE(fb.len == el && memcmp(dst, src, el) == 0);
                    mhead++;
                }
            }
            break;
        case 4: { /* peek, maybe a foreign write while the view is open, consume/unconsume */
            int mode = next(&g);
            s = ms_channel_peek(&ch, &p, &len, &o);
            REQUIRE(allowed(s));
            if (s != MS_OK)
                break;
            REQUIRE(p >= f.data && p + len <= f.data + cap && len <= ch.max_message);
            if (!tainted) {
                REQUIRE(mhead != mtail);
                uint32_t el = model_len[mhead % MODEL_MAX], id = model_id[mhead % MODEL_MAX];
                fill(src, el, id);
                REQUIRE(len == el && memcmp(p, src, el) == 0);
                REQUIRE(ch.view_kind == model_kind[mhead % MODEL_MAX]);
            }
            if (mode >= 0 && (mode & 1))
                tainted |= foreign_write(&f, &g);
            if (mode >= 0 && (mode & 2)) {
                REQUIRE(ms_channel_unconsume(&ch) == MS_OK);
            } else {
                s = ms_channel_consume(&ch);
                REQUIRE(allowed(s));
                if (!tainted) {
                    REQUIRE(s == MS_OK);
                    mhead++;
                }
            }
            break;
        }
        case 5: { /* loan, maybe a foreign write, commit or abort */
            int l = next(&g), mode = next(&g);
            size_t sz = l < 0 ? 0 : (size_t)l % (cap + 8);
            s = ms_channel_loan(&ch, sz, &lp, &o);
            REQUIRE(allowed(s));
            if (s != MS_OK)
                break;
            REQUIRE(lp >= f.data && lp + sz <= f.data + cap);
            fill(lp, sz, counter);
            if (mode >= 0 && (mode & 1))
                tainted |= foreign_write(&f, &g);
            if (mode >= 0 && (mode & 2)) {
                REQUIRE(ms_channel_abort(&ch) == MS_OK);
            } else {
                size_t used = mode >= 0 ? sz * (size_t)((mode >> 2) & 3) / 3 : sz;
                uint32_t kind = mode >= 0 ? (uint32_t)(mode >> 4) & 0xFFu : MS_REC_KIND_BYTES;
                fill(lp, used, counter);
                ch.loan_kind = kind;
                s = ms_channel_commit(&ch, used);
                REQUIRE(allowed(s));
                if (s == MS_OK && mtail - mhead < MODEL_MAX) {
                    model_len[mtail % MODEL_MAX] = (uint32_t)used;
                    model_id[mtail % MODEL_MAX] = counter;
                    model_kind[mtail % MODEL_MAX] = kind;
                    mtail++;
                } else if (s == MS_OK) {
                    tainted = 1;
                }
            }
            counter++;
            break;
        }
        case 6: case 7: /* a foreign write between operations */
            tainted |= foreign_write(&f, &g);
            break;
        case 8: {
            ms_channel_stats cs;
            ms_channel_statistics(&ch, &cs);
            REQUIRE(cs.queued_bytes <= cap);
            if (!tainted)
                REQUIRE(cs.sent_messages - cs.received_messages == mtail - mhead);
            REQUIRE(allowed(ms_channel_wait_readable(&ch, &o)));
            REQUIRE(allowed(ms_channel_wait_writable(&ch, 8, &o)));
            break;
        }
        case 9:
            if (next(&g) == 0x42) {
                REQUIRE(ms_channel_close_sending(&ch) == MS_OK);
                closed = 1;
            }
            break;
        }
    }
    if (!tainted) {
        /* drain: everything sent arrives, in order, and the ring ends empty */
        while (mhead != mtail) {
            REQUIRE(ms_channel_receive(&ch, fake_alloc, &fb, &o) == MS_OK);
            uint32_t el = model_len[mhead % MODEL_MAX], id = model_id[mhead % MODEL_MAX];
            fill(src, el, id);
            REQUIRE(fb.len == el && memcmp(dst, src, el) == 0);
            mhead++;
        }
        ms_status s = ms_channel_receive(&ch, fake_alloc, &fb, &o);
        REQUIRE(s == (closed ? MS_E_CLOSED : MS_E_EMPTY));
        ms_channel_stats cs;
        ms_channel_statistics(&ch, &cs);
        REQUIRE(cs.queued_bytes == 0);
        if (!closed) {
            /* capacity is not leaked: a max_message send fits the empty ring at once,
             * whatever its offset (the sender skips its own padding record when no
             * receiver is busy: skip_lone_pad).  Regression: corpus/interleave/seed-0
             * failed here before that fix (the send said MS_E_FULL until a receiver
             * ran). */
            size_t big = ch.max_message > sizeof src ? sizeof src : ch.max_message;
            REQUIRE(ms_channel_send(&ch, src, big, &o) == MS_OK);
        }
    }
    ms_channel_detach(&ch);
    fake_free(&f);
    return 0;
}
