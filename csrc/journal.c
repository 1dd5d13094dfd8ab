/* Journal records (see journal.h): checksum, reserve/commit, check, find, scan. */
#include "journal.h"

#include <string.h>

/* ---- CRC-32C ------------------------------------------------------------------------- */

static uint32_t crc_table[8][256];
static volatile int crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
    crc_ready = 1;   /* idempotent: a racing thread computes the same table */
}

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define MS_CRC_HW 1
/* SSE4.2's crc32 instruction computes CRC-32C (the same polynomial): 8 bytes per
 * instruction instead of eight table lookups, the largest single cost of a small record's
 * append and of checking it on read.  Chosen at run time (every x86-64 since 2008 has it;
 * the tables remain for the rest). */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p,
                                                          size_t n)
{
    uint64_t c = ~crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}

static volatile int crc_hw_state;   /* 0 unknown, 1 yes, -1 no */
#endif

int ms_crc32c_hw(int use)
{
#ifdef MS_CRC_HW
    if (use == 0)
        crc_hw_state = -1;
    else {
        __builtin_cpu_init();
        crc_hw_state = __builtin_cpu_supports("sse4.2") ? 1 : -1;
    }
    return crc_hw_state > 0;
#else
    (void)use;
    return 0;
#endif
}

uint32_t ms_crc32c(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = (const uint8_t *)data;
#ifdef MS_CRC_HW
    if (crc_hw_state == 0) {
        __builtin_cpu_init();
        crc_hw_state = __builtin_cpu_supports("sse4.2") ? 1 : -1;   /* idempotent */
    }
    if (crc_hw_state > 0)
        return crc_hw(crc, p, n);
#endif
    if (!crc_ready)
        crc_init();
    crc = ~crc;
    /* slicing-by-8: eight table lookups per 8 bytes */
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        uint32_t lo = (uint32_t)v ^ crc, hi = (uint32_t)(v >> 32);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
              crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
              crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

/* ---- little helpers ------------------------------------------------------------------ */

static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* The checksum of a record: its length and index, then its payload.  Never 0 for a real
 * record (0 marks "reserved, not committed"); a checksum that comes out 0 is stored as 1. */
static uint32_t record_crc(uint32_t len, uint64_t index, uint32_t kind,
                           const uint8_t *payload)
{
    uint8_t h[16];
    memcpy(h, &len, 4);
    memcpy(h + 4, &index, 8);
    memcpy(h + 12, &kind, 4);
    uint32_t c = ms_crc32c(ms_crc32c(0, h, 16), payload, len);
    return c ? c : 1;
}

static int sane_size(uint64_t size)
{
    return size >= MS_J_MIN_SEGMENT && size <= MS_J_MAX_SEGMENT && size % 8 == 0;
}

/* Where the offset table entry of the segment's k-th record lives; 0 if nowhere. */
static uint64_t table_slot(uint64_t size, uint64_t k)
{
    if (k >= (size - MS_J_SEG_HDR) / (MS_J_REC_HDR + 4))
        return 0;
    return size - 4 * (k + 1);
}

/* ---- segments ------------------------------------------------------------------------ */

ms_status ms_j_seg_init(uint8_t *base, uint64_t size, uint64_t seq, uint64_t first_index)
{
    if (!base || !sane_size(size))
        return MS_E_INVALID;
    memset(base, 0, MS_J_SEG_HDR);
    wr64(base + 8, seq);
    wr64(base + 16, first_index);
    wr64(base + 24, size);
    wr64(base, MS_J_SEG_MAGIC);
    return MS_OK;
}

ms_status ms_j_seg_check(const uint8_t *base, uint64_t size, uint64_t seq,
                         uint64_t *first_index)
{
    if (!base || !sane_size(size))
        return MS_E_INVALID;
    uint64_t first = rd64(base + 16);
    /* indices stay below 2**62: a first index above that is damage, and the scans'
     * index arithmetic then never comes near wrapping */
    if (rd64(base) != MS_J_SEG_MAGIC || rd64(base + 8) != seq || rd64(base + 24) != size ||
        first > MS_J_MAX_INDEX)
        return MS_E_LAYOUT;
    *first_index = first;
    return MS_OK;
}

uint64_t ms_j_max_payload(uint64_t size)
{
    if (!sane_size(size))
        return 0;
    return (size - MS_J_SEG_HDR - 4 - MS_J_REC_HDR) & ~(uint64_t)7u;
}

/* ---- records ------------------------------------------------------------------------- */

ms_status ms_j_reserve(uint8_t *base, uint64_t size, uint64_t first_index, uint64_t off,
                       uint64_t index, uint64_t len, uint32_t kind, uint64_t *payload)
{
    if (!base || !sane_size(size))
        return MS_E_INVALID;
    if (len > ms_j_max_payload(size))
        return MS_E_TOO_LARGE;
    if (index < first_index || off < MS_J_SEG_HDR || off % 8 || off >= size)
        return MS_E_LAYOUT;
    uint64_t slot = table_slot(size, index - first_index);
    if (!slot)
        return MS_E_FULL;
    uint64_t need = ms_j_record_bytes(len);
    if (need > slot || off > slot - need)
        return MS_E_FULL;
    uint8_t *r = base + off;
    wr32(r, (uint32_t)len);
    wr32(r + 4, 0);
    wr64(r + 8, index);
    wr32(r + 16, kind);
    wr32(r + 20, 0);
    /* the padding is part of the record: zero it so the file's bytes are deterministic */
    if (need - MS_J_REC_HDR > len)
        memset(r + MS_J_REC_HDR + len, 0, need - MS_J_REC_HDR - len);
    *payload = off + MS_J_REC_HDR;
    return MS_OK;
}

ms_status ms_j_commit(uint8_t *base, uint64_t size, uint64_t first_index, uint64_t off,
                      uint64_t index, uint64_t *next)
{
    if (!base || !sane_size(size))
        return MS_E_INVALID;
    if (index < first_index || off < MS_J_SEG_HDR || off % 8 || off > size - MS_J_REC_HDR)
        return MS_E_LAYOUT;
    uint8_t *r = base + off;
    uint32_t len = rd32(r);
    uint64_t slot = table_slot(size, index - first_index);
    uint64_t need = ms_j_record_bytes(len);
    if (!slot || rd64(r + 8) != index || need > slot || off > slot - need)
        return MS_E_LAYOUT;
    uint32_t crc = record_crc(len, index, rd32(r + 16), r + MS_J_REC_HDR);
    wr32(base + slot, (uint32_t)off);
    wr32(r + 4, crc);
    *next = off + need;
    return MS_OK;
}

ms_status ms_j_check(const uint8_t *base, uint64_t size, uint64_t first_index, uint64_t off,
                     uint64_t index, uint64_t *payload, uint64_t *len, uint32_t *kind,
                     uint64_t *next)
{
    if (!base || !sane_size(size))
        return MS_E_INVALID;
    if (index < first_index || off < MS_J_SEG_HDR || off % 8 || off > size - MS_J_REC_HDR)
        return MS_E_LAYOUT;
    const uint8_t *r = base + off;
    uint32_t n = rd32(r);
    uint32_t crc = rd32(r + 4);
    uint64_t idx = rd64(r + 8);
    uint32_t k = rd32(r + 16);
    uint64_t slot = table_slot(size, index - first_index);
    uint64_t need = ms_j_record_bytes(n);
    if (idx != index || crc == 0 || rd32(r + 20) != 0 || !slot || need > slot ||
        off > slot - need)
        return MS_E_LAYOUT;
    /* the padding is part of the record (zeroed by reserve): garbage there is damage */
    for (uint64_t p = MS_J_REC_HDR + n; p < need; p++)
        if (r[p])
            return MS_E_LAYOUT;
    if (record_crc(n, idx, k, r + MS_J_REC_HDR) != crc)
        return MS_E_LAYOUT;
    *payload = off + MS_J_REC_HDR;
    *len = n;
    *kind = k;
    *next = off + need;
    return MS_OK;
}

ms_status ms_j_find(const uint8_t *base, uint64_t size, uint64_t first_index,
                    uint64_t index, uint64_t hint, int scan, uint64_t *off,
                    uint64_t *payload, uint64_t *len, uint32_t *kind)
{
    uint64_t next;
    if (!base || !sane_size(size))
        return MS_E_INVALID;
    if (index < first_index)
        return MS_E_LAYOUT;
    uint64_t slot = table_slot(size, index - first_index);
    if (slot) {
        uint64_t o = rd32(base + slot);
        if (ms_j_check(base, size, first_index, o, index, payload, len, kind, &next) == MS_OK) {
            *off = o;
            return MS_OK;
        }
    }
    if (hint && ms_j_check(base, size, first_index, hint, index, payload, len, kind, &next) == MS_OK) {
        *off = hint;
        return MS_OK;
    }
    if (scan) {
        uint64_t o = MS_J_SEG_HDR, i = first_index;
        while (i < index &&
               ms_j_check(base, size, first_index, o, i, payload, len, kind, &next) == MS_OK) {
            o = next;
            i++;
        }
        if (i == index &&
            ms_j_check(base, size, first_index, o, index, payload, len, kind, &next) == MS_OK) {
            *off = o;
            return MS_OK;
        }
    }
    return MS_E_LAYOUT;
}

void ms_j_scan(const uint8_t *base, uint64_t size, uint64_t first_index, uint64_t off,
               uint64_t index, uint64_t limit, uint64_t *end_off, uint64_t *end_index)
{
    uint64_t payload, len, next;
    uint32_t kind;
    if (limit > MS_J_MAX_INDEX)
        limit = MS_J_MAX_INDEX;
    while (index < limit &&
           ms_j_check(base, size, first_index, off, index, &payload, &len, &kind, &next) ==
               MS_OK) {
        off = next;
        index++;
    }
    *end_off = off;
    *end_index = index;
}

uint64_t ms_j_retable(uint8_t *base, uint64_t size, uint64_t first_index, uint64_t limit)
{
    uint64_t payload, len, next, n = 0, off = MS_J_SEG_HDR, index = first_index;
    uint32_t kind;
    if (!base || !sane_size(size) || first_index > MS_J_MAX_INDEX)
        return 0;
    if (limit > MS_J_MAX_INDEX)
        limit = MS_J_MAX_INDEX;
    while (index < limit &&
           ms_j_check(base, size, first_index, off, index, &payload, &len, &kind, &next) ==
               MS_OK) {
        /* ms_j_check held: the slot exists and lies above the record */
        uint64_t slot = table_slot(size, index - first_index);
        if (rd32(base + slot) != (uint32_t)off) {
            wr32(base + slot, (uint32_t)off);
            n++;
        }
        off = next;
        index++;
    }
    return n;
}

uint64_t ms_j_zero(uint8_t *base, uint64_t size, uint64_t start, uint64_t end)
{
    uint64_t n = 0;
    if (!base || start % 8 || end % 4 || end > size || start >= end)
        return 0;
    uint64_t o = start;
    for (; o + 8 <= end; o += 8) {
        uint64_t v;
        memcpy(&v, base + o, 8);
        if (v) {
            memset(base + o, 0, 8);
            n += 8;
        }
    }
    if (o < end && rd32(base + o)) {   /* end on a 4-byte offset-table boundary */
        memset(base + o, 0, 4);
        n += 4;
    }
    return n;
}
