/* libFuzzer harness (a): header validation.
 *
 * Input: 8 bytes little-endian "size of the object as fstat reports it", then up to
 * 4096 bytes of header (zero-padded).  Runs ms_segment_validate on it, checks that an
 * accepted header is self-consistent, and then exercises the code that trusts a
 * validated header: channel binding + a receive/send on the fuzzed ring control, the
 * attach table (attach/detach/reap over fuzzed pids), and lock inspection.
 *
 * The robust mutexes themselves (meta_lock, user_lock, send_lock, recv_lock) are
 * re-initialised before use: what glibc does with a scribbled-over pthread_mutex_t is
 * glibc's own parsing (see docs/security.md, residual risks); the robust-list pointers
 * that linux.c validates before unlocking are exercised by fuzz_interleave and the C
 * tests. */
#include "fake_segment.h"

#include <stdio.h>

#define REQUIRE(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
    if (n < 8)
        return 0;
    uint64_t objsize;
    memcpy(&objsize, in, 8);
    in += 8;
    n -= 8;
    ms_header *h = (ms_header *)aligned_alloc(4096, 4096);
    memset(h, 0, 4096);
    memcpy(h, in, n < 4096 ? n : 4096);

    /* inspection reads the raw lock words (segments listing) */
    int held, dead;
    uint32_t holder;
    ms_p_lock_inspect(h->meta_lock, &held, &holder, &dead);
    ms_p_lock_inspect(h->user_lock, &held, &holder, &dead);

    ms_segment seg;
    memset(&seg, 0, sizeof seg);
    seg.obj.handle = MS_NO_HANDLE;
    seg.hdr = h;
    seg.hdr_len = 4096;
    seg.hdr_writable = 1;
    int err = 0;
    ms_p_waitctx_open(NULL, 0, &seg.ctx, &err);
    ms_object_stat st;
    memset(&st, 0, sizeof st);
    st.size = objsize;
    ms_status s = ms_segment_validate(&seg, &st);
    REQUIRE(s == MS_OK || s == MS_E_LAYOUT || s == MS_E_INITIALIZING);
    if (s == MS_E_INITIALIZING)
        REQUIRE(h->magic == 0);
    if (s == MS_OK) {
        REQUIRE(h->magic == MS_MAGIC);
        REQUIRE(seg.kind >= 1 && seg.kind <= MS_KIND_MAX);
        REQUIRE(seg.total >= MS_HEADER_SIZE && seg.total <= objsize);
        REQUIRE(seg.size <= seg.total - MS_HEADER_SIZE);
        REQUIRE(seg.lifetime == MS_LIFETIME_SHARED || seg.lifetime == MS_LIFETIME_PERSISTENT);

        /* a validated channel header: bind and operate on the fuzzed ring control */
        if (seg.kind == MS_KIND_CHANNEL && seg.size <= (1u << 16)) {
            uint8_t *data = (uint8_t *)malloc(seg.size ? seg.size : 1);
            memset(data, 0xA5, seg.size ? seg.size : 1);
            seg.data = seg.size ? data : NULL;
            ms_channel ch;
            ms_ring *r = (ms_ring *)h->kind_area;
            ms_p_lock_init(r->send_lock, &err);
            ms_p_lock_init(r->recv_lock, &err);
            if (ms_channel_bind(&ch, &seg) == MS_OK) {
                REQUIRE(ch.cap == seg.size && ch.cap >= 64 && ch.cap % 8 == 0);
                ms_wait_opts o = nowait_opts();
                uint8_t buf[1 << 16];
                fake_buf fb = { buf, sizeof buf, 0 };
                for (int i = 0; i < 4; i++) {
                    s = ms_channel_receive(&ch, fake_alloc, &fb, &o);
                    if (s == MS_OK)
                        REQUIRE(fb.len <= ch.max_message);
                    else
                        break;
                }
                const uint8_t *p;
                size_t len;
                if (ms_channel_peek(&ch, &p, &len, &o) == MS_OK) {
                    REQUIRE(p >= data && p + len <= data + seg.size);
                    ms_channel_consume(&ch);
                }
                s = ms_channel_send(&ch, "0123456789abcdef", 16, &o);
                ms_channel_stats cs;
                ms_channel_statistics(&ch, &cs);
                REQUIRE(cs.queued_bytes <= cs.capacity);
                ms_channel_detach(&ch);
            }
            free(data);
            seg.data = NULL;
        }
        /* the attach table: fuzzed pids and starts, reaped and registered */
        ms_p_lock_init(h->meta_lock, &err);
        int last = 0, removed = 0, empty = 0;
        if (ms_segment_attach(&seg, &err) == MS_OK)
            ms_segment_detach(&seg, &last, &err);
        ms_segment_reap(&seg, &removed, &empty, &err);
        REQUIRE(removed >= 0 && removed <= (int)MS_ATTACH_SLOTS);
        ms_change_notify(&seg);
        (void)ms_change_count(&seg);
    }
    free(h);
    return 0;
}
