/* libFuzzer harness (e): a Latest slot whose control lines and buffers were written by
 * someone else.
 *
 * Input: byte 0 picks max_size (8 * (1 + (b & 63))) and whether max_size, buf_offset,
 * buf_stride and buffers are kept valid (b & 0x80: keep, so that the slot binds and the
 * version/seq/length paths are reached); byte 1 the buffer count (2 + (b & 3)); bytes
 * 2..129 overwrite the control lines 0-1 (line 2, the robust write_lock, is left valid);
 * the rest overwrites the buffers (their headers and bytes).  read, peek + check, write,
 * read again, wait (not waiting) and statistics run on it with exact-size heap buffers,
 * so ASan reports any access outside the slot. */
#include "fake_latest.h"

#include <stdio.h>

#define REQUIRE(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

static int allowed(ms_status s)
{
    return s == MS_OK || s == MS_E_LAYOUT || s == MS_E_TOO_LARGE || s == MS_E_TIMEOUT ||
           s == MS_E_INVALID || s == MS_E_OVERWRITTEN;
}

static const char text[64] = "the quick brown fox jumps over the lazy dog, twice....";

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
    if (n < 2)
        return 0;
    uint64_t max = 8 * (1 + (uint64_t)(in[0] & 63));
    int keep = in[0] & 0x80;
    uint32_t nbuf = 2 + (in[1] & 3);
    in += 2;
    n -= 2;
    fake_latest f;
    if (fake_latest_init(&f, max, nbuf, 0) != 0)
        abort();
    ms_latest *lt = fake_latest_ctl(&f);
    ms_latest good = *lt;
    size_t c = n < 128 ? n : 128;
    memcpy(lt, in, c);
    in += c;
    n -= c;
    c = n < f.size ? n : (size_t)f.size;
    memcpy(f.data, in, c);
    uint8_t b0 = c ? in[0] : 0;
    if (keep) {
        lt->max_size = good.max_size;
        lt->buf_offset = good.buf_offset;
        lt->buf_stride = good.buf_stride;
        lt->buffers = good.buffers;
    }
    ms_latest_handle l;
    if (ms_latest_bind(&l, &f.seg) == MS_OK) {
        REQUIRE(l.bufs >= f.data && l.bufs + (uint64_t)l.buffers * l.stride <= f.data + f.size);
        REQUIRE(l.max_size + MS_LATEST_BUF_HEADER <= l.stride);
        uint8_t buf[1024];
        fake_buf fb = { buf, sizeof buf, 0 };
        uint64_t v = 0, v2 = 0;
        uint32_t kind = 0;
        ms_status st = ms_latest_read(&l, fake_alloc, &fb, &v, &kind);
        REQUIRE(allowed(st));
        if (st == MS_OK)
            REQUIRE(fb.len <= l.max_size);
        ms_latest_view view;
        st = ms_latest_peek(&l, &view);
        REQUIRE(allowed(st));
        if (st == MS_OK) {
            REQUIRE(view.ptr >= l.bufs && view.length <= l.max_size &&
                    view.ptr + view.length <= f.data + f.size);
            REQUIRE(view.offset + view.length <= f.size);
            REQUIRE(allowed(ms_latest_check(&l, &view)));
        }
        ms_wait_opts o = nowait_opts();
        o.try_only = 0;
        st = ms_latest_write(&l, text, b0 % 64, MS_REC_KIND_BYTES, &o, &v);
        REQUIRE(allowed(st));
        if (st == MS_OK && b0 % 64 <= l.max_size) {
            /* a writer repairs a corrupt slot: its value is read back */
            st = ms_latest_read(&l, fake_alloc, &fb, &v2, &kind);
            REQUIRE(st == MS_OK && v2 == v && fb.len == b0 % 64u &&
                    memcmp(buf, text, fb.len) == 0);
        }
        REQUIRE(allowed(ms_latest_wait(&l, v, &o, &v2)));
        ms_latest_stats s;
        REQUIRE(allowed(ms_latest_statistics(&l, &s)));
        /* a forged sleeper table (the value bytes again): the repair only ever lowers
         * the waiter count, never below zero, and frees only what it reaped */
        size_t t = c < sizeof lt->sleepers ? c : sizeof lt->sleepers;
        memcpy(lt->sleepers, f.data, t);
        uint32_t before = lt->waiters;
        uint32_t given = ms_latest_reap_sleepers(&l);
        REQUIRE(lt->waiters <= before);
        REQUIRE(given == 0 || lt->waiters == 0 || before - lt->waiters == given);
    }
    fake_latest_free(&f);
    return 0;
}
