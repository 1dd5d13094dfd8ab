/* A topic living in ordinary heap memory (or, for the fork tests, in one shared anonymous
 * mapping), sized exactly: the header page, then the user area (subscriber table + ring)
 * and nothing else, so that AddressSanitizer reports any access outside it.  Shared by the
 * C tests and the fuzz harness. */
#ifndef MS_FAKE_TOPIC_H
#define MS_FAKE_TOPIC_H

#include "fake_segment.h"
#include "topic.h"

#include <sys/mman.h>

typedef struct fake_topic {
    ms_segment seg;
    ms_header *hdr;
    uint8_t *data;      /* the user area: exactly `size` bytes */
    uint64_t size;
    void *shared;       /* the one MAP_SHARED mapping (shared == 1), else NULL */
    size_t shared_len;
    ms_topic_handle t;
} fake_topic;

/* 0 on success; `shared`: header and data in one MAP_SHARED mapping (survives fork). */
static inline int fake_topic_init(fake_topic *f, uint64_t cap, uint32_t history,
                                  uint32_t overflow, uint32_t max_subs, int shared)
{
    int err = 0;
    memset(f, 0, sizeof *f);
    f->size = ms_topic_area_size(cap, max_subs);
    if (!f->size)
        return -1;
    if (shared) {
        f->shared_len = 4096 + (size_t)f->size;
        f->shared = mmap(NULL, f->shared_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                         -1, 0);
        if (f->shared == MAP_FAILED)
            return -1;
        f->hdr = (ms_header *)f->shared;
        f->data = (uint8_t *)f->shared + 4096;
    } else {
        f->hdr = (ms_header *)aligned_alloc(4096, 4096);
        f->data = (uint8_t *)aligned_alloc(64, (size_t)(f->size + 63) / 64 * 64);
        if (!f->hdr || !f->data)
            return -1;
        memset(f->data, 0, (size_t)f->size);
    }
    fake_header_fill(f->hdr, MS_KIND_TOPIC, f->size, MS_HEADER_SIZE + f->size);
    f->hdr->magic = 0;
    ms_topic_params p = { cap, history, overflow, max_subs };
    if (ms_p_lock_init(f->hdr->meta_lock, &err) != MS_OK ||
        ms_topic_init(f->hdr, &p, &err) != MS_OK)
        return -1;
    f->hdr->magic = MS_MAGIC;
    f->seg.obj.handle = MS_NO_HANDLE;
    f->seg.obj.file = MS_NO_HANDLE;
    f->seg.hdr = f->hdr;
    f->seg.hdr_len = 4096;
    f->seg.hdr_writable = 1;
    f->seg.data = f->data;
    f->seg.size = f->size;
    f->seg.total = MS_HEADER_SIZE + f->size;
    f->seg.kind = MS_KIND_TOPIC;
    f->seg.lifetime = MS_LIFETIME_SHARED;
    f->seg.access = MS_ACCESS_WRITE;
    if (ms_p_waitctx_open(NULL, 0, &f->seg.ctx, &err) != MS_OK)
        return -1;
    return ms_topic_bind(&f->t, &f->seg) == MS_OK ? 0 : -1;
}

static inline void fake_topic_free(fake_topic *f)
{
    if (f->seg.ctx)
        ms_p_waitctx_close(f->seg.ctx);
    if (f->shared) {
        munmap(f->shared, f->shared_len);
    } else {
        free(f->hdr);
        free(f->data);
    }
    memset(f, 0, sizeof *f);
}

static inline ms_topic *fake_topic_ctl(fake_topic *f)
{
    return (ms_topic *)f->hdr->kind_area;
}

static inline uint8_t *fake_topic_ring(fake_topic *f)
{
    return f->data + fake_topic_ctl(f)->ring_offset;
}

#endif
