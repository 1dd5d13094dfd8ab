/* A Latest slot living in ordinary heap memory (or, for the fork tests, in one shared
 * anonymous mapping), sized exactly: the header page, then the user area (the buffers)
 * and nothing else, so that AddressSanitizer reports any access outside it.  Shared by
 * the C tests and the fuzz harness. */
#ifndef MS_FAKE_LATEST_H
#define MS_FAKE_LATEST_H

#include "fake_segment.h"
#include "latest.h"

#ifdef _WIN32
#include <stdio.h>
#include <windows.h>
#else
#include <sys/mman.h>
#endif

typedef struct fake_latest {
    ms_segment seg;
    ms_header *hdr;
    uint8_t *data;      /* the user area: exactly `size` bytes */
    uint64_t size;
    void *shared;
    size_t shared_len;
    ms_latest_handle l;
} fake_latest;

/* 0 on success, with the slot bound; `shared`: one MAP_SHARED mapping (survives fork). */
static inline int fake_latest_init(fake_latest *f, uint64_t max_size, uint32_t buffers,
                                   int shared)
{
    int err = 0;
    memset(f, 0, sizeof *f);
    f->size = ms_latest_area_size(max_size, buffers);
    if (!f->size)
        return -1;
    if (shared) {
#ifdef _WIN32
        return -1;  /* the fork tests only */
#else
        f->shared_len = 4096 + (size_t)f->size;
        f->shared = mmap(NULL, f->shared_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                         -1, 0);
        if (f->shared == MAP_FAILED)
            return -1;
        f->hdr = (ms_header *)f->shared;
        f->data = (uint8_t *)f->shared + 4096;
#endif
    } else {
        f->hdr = (ms_header *)fake_aligned_alloc(4096, 4096);
        f->data = (uint8_t *)fake_aligned_alloc(64, (size_t)f->size);
        if (!f->hdr || !f->data)
            return -1;
        memset(f->data, 0, (size_t)f->size);
    }
    fake_header_fill(f->hdr, MS_KIND_LATEST, f->size, MS_HEADER_SIZE + f->size);
    f->hdr->magic = 0;
    ms_latest_params p = { max_size, buffers };
    if (ms_p_lock_init(f->hdr->meta_lock, &err) != MS_OK ||
        ms_latest_init(f->hdr, &p, &err) != MS_OK)
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
    f->seg.kind = MS_KIND_LATEST;
    f->seg.lifetime = MS_LIFETIME_SHARED;
    f->seg.access = MS_ACCESS_WRITE;
#ifdef _WIN32
    /* Windows derives a slot's lock and wake-up objects (named mutexes and semaphores)
     * from the segment's name: without one, its context refuses to lock (MS_E_INVALID). */
    static unsigned fake_latest_count;
    char osname[64];
    snprintf(osname, sizeof osname, "/mapshare-ctest-latest-%lu-%u",
             (unsigned long)GetCurrentProcessId(), ++fake_latest_count);
    if (ms_p_waitctx_open(osname, 0, &f->seg.ctx, &err) != MS_OK)
        return -1;
#else
    if (ms_p_waitctx_open(NULL, 0, &f->seg.ctx, &err) != MS_OK)
        return -1;
#endif
    return ms_latest_bind(&f->l, &f->seg) == MS_OK ? 0 : -1;
}

static inline void fake_latest_free(fake_latest *f)
{
    if (f->seg.ctx)
        ms_p_waitctx_close(f->seg.ctx);
    if (f->shared) {
#ifndef _WIN32
        munmap(f->shared, f->shared_len);
#endif
    } else {
        fake_aligned_free(f->hdr);
        fake_aligned_free(f->data);
    }
    memset(f, 0, sizeof *f);
}

static inline ms_latest *fake_latest_ctl(fake_latest *f)
{
    return (ms_latest *)f->hdr->kind_area;
}

static inline ms_latest_buf *fake_latest_buf(fake_latest *f, uint32_t i)
{
    ms_latest *lt = fake_latest_ctl(f);
    return (ms_latest_buf *)(f->data + lt->buf_offset + i * lt->buf_stride);
}

#endif
