/* A channel or header living in ordinary heap memory, sized exactly, so that
 * AddressSanitizer reports any read or write outside it (mappings from mmap are not
 * poisoned, heap blocks are).  Shared by the C tests and the fuzz harnesses. */
#ifndef MS_FAKE_SEGMENT_H
#define MS_FAKE_SEGMENT_H

#include "channel.h"
#include "segment.h"
#include "sync.h"

#include <stdlib.h>
#include <string.h>

/* The UCRT has no aligned_alloc (tools/wine builds these tests for Windows): memory
 * from _aligned_malloc must go back through _aligned_free. */
#ifdef _WIN32
#include <malloc.h>
#define fake_aligned_alloc(align, n) _aligned_malloc((n), (align))
#define fake_aligned_free _aligned_free
#else
#define fake_aligned_alloc aligned_alloc
#define fake_aligned_free free
#endif

typedef struct fake_seg {
    ms_segment seg;
    ms_header *hdr;     /* the 4096-byte header page, page aligned (no attach table) */
    uint8_t *data;      /* exactly `cap` bytes (NULL for cap 0) */
    uint64_t cap;
} fake_seg;

/* A header that ms_segment_validate accepts for an object of `total` bytes. */
static inline void fake_header_fill(ms_header *h, uint32_t kind, uint64_t size, uint64_t total)
{
    memset(h, 0, sizeof *h);
    h->version = MS_LAYOUT_VERSION;
    h->kind = kind;
    h->header_size = MS_HEADER_SIZE;
    h->lifetime = MS_LIFETIME_SHARED;
    h->size = size;
    h->data_offset = MS_HEADER_SIZE;
    h->total_size = total;
    h->attach_offset = MS_ATTACH_OFFSET;
    h->attach_slots = MS_ATTACH_SLOTS;
    h->attach_reserved = MS_ATTACH_SLOTS;
    h->state = MS_STATE_READY;
    h->name_len = 4;
    memcpy(h->name, "fake", 4);
    h->mode = 0600;
    h->magic = MS_MAGIC;
}

/* A channel of `cap` bytes (>= 64, multiple of 8) in heap memory.  0 on success. */
static inline int fake_channel_init(fake_seg *f, uint64_t cap)
{
    int err = 0;
    memset(f, 0, sizeof *f);
    f->cap = cap;
    f->hdr = (ms_header *)fake_aligned_alloc(4096, 4096);
    f->data = (uint8_t *)malloc(cap ? cap : 1);
    if (!f->hdr || !f->data)
        return -1;
    memset(f->data, 0, cap ? cap : 1);
    fake_header_fill(f->hdr, MS_KIND_CHANNEL, cap, MS_HEADER_SIZE + cap);
    f->hdr->magic = 0;
    if (ms_p_lock_init(f->hdr->meta_lock, &err) != MS_OK ||
        ms_p_lock_init(f->hdr->user_lock, &err) != MS_OK)
        return -1;
    if (ms_ring_init(f->hdr, NULL, &err) != MS_OK)
        return -1;
    f->hdr->magic = MS_MAGIC;
    f->seg.obj.handle = MS_NO_HANDLE;
    f->seg.obj.file = MS_NO_HANDLE;
    f->seg.hdr = f->hdr;
    f->seg.hdr_len = 4096;
    f->seg.hdr_writable = 1;
    f->seg.data = f->data;
    f->seg.size = cap;
    f->seg.total = MS_HEADER_SIZE + cap;
    f->seg.kind = MS_KIND_CHANNEL;
    f->seg.lifetime = MS_LIFETIME_SHARED;
    f->seg.access = MS_ACCESS_WRITE;
    return ms_p_waitctx_open(NULL, 0, &f->seg.ctx, &err) == MS_OK ? 0 : -1;
}

static inline void fake_free(fake_seg *f)
{
    if (f->seg.ctx)
        ms_p_waitctx_close(f->seg.ctx);
    fake_aligned_free(f->hdr);
    free(f->data);
    memset(f, 0, sizeof *f);
}

static inline ms_wait_opts nowait_opts(void)
{
    ms_wait_opts o;
    memset(&o, 0, sizeof o);
    o.timeout_ns = 0;
    o.try_only = 1;
    return o;
}

static inline ms_wait_opts timeout_opts(int64_t ns)
{
    ms_wait_opts o;
    memset(&o, 0, sizeof o);
    o.timeout_ns = ns;
    return o;
}

/* ms_channel_receive allocator writing into a caller buffer. */
typedef struct fake_buf { uint8_t *p; size_t cap; size_t len; } fake_buf;
static inline uint8_t *fake_alloc(void *arg, size_t len)
{
    fake_buf *b = (fake_buf *)arg;
    if (len > b->cap)
        return NULL;
    b->len = len;
    return b->p;
}

#endif
