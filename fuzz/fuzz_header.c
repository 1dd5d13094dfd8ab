/* libFuzzer harness (a): header validation.
 *
 * Input: 8 bytes little-endian "size of the object as fstat reports it", then the
 * first bytes of the object: the header page and, after it, the attach table (zero-
 * padded).  Runs ms_segment_validate on the header page alone, as an opener does; if the
 * header says the header area (data_offset) is longer, maps -- allocates -- exactly that
 * much and validates again, as ms_segment_open does.  Checks that an accepted header is
 * self-consistent (the attach table inside the header area), then exercises the code
 * that trusts a validated header: channel binding + a receive/send on the fuzzed ring
 * control, the attach table (attach/detach/reap over fuzzed pids and fuzzed end/hint
 * hints), lock inspection, and the parser of unattached headers (inspect.c).
 *
 * The robust mutexes themselves (meta_lock, user_lock, send_lock, recv_lock) are
 * re-initialised before use: what glibc does with a scribbled-over pthread_mutex_t is
 * glibc's own parsing (see docs/security.md, residual risks); the robust-list pointers
 * that linux.c validates before unlocking are exercised by fuzz_interleave and the C
 * tests. */
#define _GNU_SOURCE
#include "fake_segment.h"
#include "inspect.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define REQUIRE(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
    if (n < 8)
        return 0;
    uint64_t objsize;
    memcpy(&objsize, in, 8);
    in += 8;
    n -= 8;
    /* at most one more validated header area than real objects have: 2 MiB */
    if (n > 2u * MS_ATTACH_SLOTS_MAX * sizeof(ms_attach))
        return 0;
    ms_header *h = (ms_header *)aligned_alloc(64, MS_HEADER_PAGE);
    memset(h, 0, MS_HEADER_PAGE);
    memcpy(h, in, n < MS_HEADER_PAGE ? n : MS_HEADER_PAGE);

    /* inspection without attaching (inspect.c) parses the raw bytes, whatever their
     * length: the input buffer is exactly n bytes, so ASan sees any read past it */
    ms_header_info info;
    if (ms_inspect_parse(in, n, &info) == MS_OK) {
        REQUIRE(info.name_len <= MS_INSPECT_NAME_FIELD);
        REQUIRE(info.name[info.name_len] == '\0');
        REQUIRE(info.version == MS_LAYOUT_VERSION);
    }

    /* inspection reads the raw lock words (segments listing) */
    int held, dead;
    uint32_t holder;
    ms_p_lock_inspect(h->meta_lock, &held, &holder, &dead);
    ms_p_lock_inspect(h->user_lock, &held, &holder, &dead);

    ms_segment seg;
    memset(&seg, 0, sizeof seg);
    seg.obj.handle = MS_NO_HANDLE;
    static int objfd = -1;
    if (objfd < 0)
        objfd = memfd_create("fuzz_header", MFD_CLOEXEC);
    seg.obj.handle = objfd;
    seg.hdr = h;
    seg.hdr_len = MS_HEADER_PAGE;
    seg.hdr_writable = 1;
    int err = 0;
    ms_p_waitctx_open(NULL, 0, &seg.ctx, &err);
    ms_object_stat st;
    memset(&st, 0, sizeof st);
    st.size = objsize;
    ms_status s = ms_segment_validate(&seg, &st);
    /* MS_E_VERSION: a published header of another layout version (refused before any
     * other field is read) */
    REQUIRE(s == MS_OK || s == MS_E_LAYOUT || s == MS_E_INITIALIZING || s == MS_E_VERSION);
    if (s == MS_OK && seg.data_offset != seg.hdr_len) {
        /* the header area is longer than the page: exactly that much, as open maps it */
        size_t len = (size_t)seg.data_offset;
        ms_header *big = (ms_header *)aligned_alloc(64, (len + 63) / 64 * 64);
        memset(big, 0, len);
        memcpy(big, in, n < len ? n : len);
        free(h);
        h = big;
        seg.hdr = h;
        seg.hdr_len = len;
        s = ms_segment_validate(&seg, &st);
        REQUIRE(s == MS_OK && seg.data_offset == seg.hdr_len);
    }
    if (s == MS_E_INITIALIZING)
        REQUIRE(h->magic == 0);
    if (s == MS_OK) {
        REQUIRE(h->magic == MS_MAGIC);
        REQUIRE(seg.kind >= 1 && seg.kind <= MS_KIND_MAX);
        REQUIRE(seg.total >= seg.data_offset && seg.total <= objsize);
        REQUIRE(seg.size <= seg.total - seg.data_offset);
        REQUIRE(seg.slots >= 1 && seg.slots <= MS_ATTACH_SLOTS_MAX);
        REQUIRE((uint8_t *)seg.table >= (uint8_t *)h->attach_head &&
                (uint8_t *)(seg.table + seg.slots) <= (uint8_t *)h + seg.hdr_len);
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
        /* the attach table: fuzzed pids, starts and hints; registered, detached,
         * reaped.  The opener lock needs a descriptor: an empty memfd stands in for the
         * object (the lock is on the description, the header is our heap copy). */
        ms_p_lock_init(h->meta_lock, &err);
        int last = 0, removed = 0, empty = 0;
        s = ms_segment_attach(&seg, &err);
        REQUIRE(s == MS_OK || s == MS_E_ATTACH_LIMIT || s == MS_E_DESTROYED ||
                s == MS_E_LAYOUT || s == MS_E_OS || s == MS_E_INVALID);
        if (s == MS_OK) {
            REQUIRE(seg.in_table && seg.slot < seg.slots && seg.table[seg.slot].pid == ms_p_pid());
            REQUIRE(h->attach_end <= seg.slots && h->attach_hint <= h->attach_end &&
                    seg.slot < h->attach_end);
            ms_segment_detach(&seg, &last, &err);
        }
        ms_segment_reap(&seg, &removed, &empty, &err);
        REQUIRE(removed >= 0 && (uint32_t)removed <= seg.slots);
        ms_p_object_unshare(&seg.obj);
        ms_change_notify(&seg);
        (void)ms_change_count(&seg);
    }
    free(h);
    return 0;
}
