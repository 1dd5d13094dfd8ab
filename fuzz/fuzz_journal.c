/* libFuzzer harness (g): a Journal segment file whose bytes were written by someone else
 * (a torn write at power loss, garbage appended, a hostile file).
 *
 * Input: byte 0 picks the segment size (4096 * (1 + (b & 3))) and the mode (b & 0x80);
 * byte 1 the number of records first appended the normal way (b & 31); bytes 2..9 the
 * first index (kept small in append mode so that index arithmetic is exercised both ways).
 *   - append mode (b0 & 0x80): a valid segment is built with ms_j_seg_init + reserve +
 *     commit (payload lengths from the input), then the rest of the input is written over
 *     it at an offset the next two bytes choose (a torn tail, garbage, a bad table entry).
 *   - raw mode: the rest of the input is the whole segment (zero-padded).
 * Then the parsers run on it as recovery and readers do: seg_check, scan from the first
 * record and the zeroing after it (the recovery path), find of every scanned index and of input-chosen indices
 * (the offset table, a hint, the walk from the start), check at input-chosen offsets,
 * and an append at the recovered end (reserve + commit), which must then be found and
 * checked.  Every buffer
 * is an exact-size heap allocation, so ASan reports any access outside the segment.
 *
 * Invariants: every payload a parser returns lies inside the segment; a record written
 * before the first changed byte is still recovered by scan (recovery never drops a record
 * it could keep); the repair zeroes exactly the bytes between the last kept record and
 * the kept records' table and a second scan agrees; find agrees with scan; an append at
 * the recovered end is read back. */
#include "journal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

#define MAXREC 32

static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static void check_payload(uint64_t size, uint64_t payload, uint64_t len)
{
    REQUIRE(payload >= MS_J_SEG_HDR + MS_J_REC_HDR);
    REQUIRE(payload <= size && len <= size - payload);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n)
{
    static int crc_checked;
    if (!crc_checked) {
        /* the CRC-32C check value of the standard test vector */
        REQUIRE(ms_crc32c(0, "123456789", 9) == 0xE3069283u);
        crc_checked = 1;
    }
    if (n < 10)
        return 0;
    uint64_t size = 4096u * (1u + (in[0] & 3u));
    int append_mode = in[0] & 0x80;
    unsigned nrec = in[1] & 31u;
    uint64_t first = rd64(in + 2);
    in += 10;
    n -= 10;
    /* indices below MS_J_MAX_INDEX (2**62): ms_j_seg_check refuses a segment header whose
     * first index is above it (checked below), so the parsers are never asked about an
     * index near UINT64_MAX, where index + k would wrap */
    first &= append_mode ? 0xffffu : MS_J_MAX_INDEX - 1;

    uint8_t *seg = calloc(1, size);
    uint8_t *orig = malloc(size);
    if (!seg || !orig)
        abort();
    uint64_t offs[MAXREC], ends[MAXREC];
    unsigned built = 0;
    uint64_t end_off = MS_J_SEG_HDR;
    if (append_mode) {
        REQUIRE(ms_j_seg_init(seg, size, 7, first) == MS_OK);
        for (unsigned k = 0; k < nrec; k++) {
            uint64_t len = n ? (uint64_t)in[k % n] * 3u : 0, payload, next;
            ms_status st = ms_j_reserve(seg, size, first, end_off, first + k, len, k % 3, &payload);
            REQUIRE(st == MS_OK || st == MS_E_FULL);
            if (st != MS_OK)
                break;
            check_payload(size, payload, len);
            for (uint64_t b = 0; b < len; b++)
                seg[payload + b] = (uint8_t)(b * 31u + k);
            REQUIRE(ms_j_commit(seg, size, first, end_off, first + k, &next) == MS_OK);
            REQUIRE(next == end_off + ms_j_record_bytes(len));
            offs[built] = end_off;
            ends[built++] = next;
            end_off = next;
        }
        memcpy(orig, seg, size);
        if (n >= 2) {
            /* overwrite from an input-chosen offset with the rest of the input */
            uint64_t at = ((uint64_t)in[0] << 8 | in[1]) % size;
            size_t c = n - 2 < size - at ? n - 2 : (size_t)(size - at);
            memcpy(seg + at, in + 2, c);
        }
    } else {
        memcpy(seg, in, n < size ? n : (size_t)size);
        memcpy(orig, seg, size);
    }

    uint64_t fi;
    ms_status st = ms_j_seg_check(seg, size, 7, &fi);
    REQUIRE(st == MS_OK || st == MS_E_LAYOUT);
    if (st == MS_OK)
        REQUIRE(fi == rd64(seg + 16) && fi <= MS_J_MAX_INDEX);

    /* recovery: follow valid records from the first one */
    uint64_t scan_off, scan_index;
    ms_j_scan(seg, size, first, MS_J_SEG_HDR, first, UINT64_MAX, &scan_off, &scan_index);
    REQUIRE(scan_off >= MS_J_SEG_HDR && scan_off <= size && scan_off % 8 == 0);
    REQUIRE(scan_index >= first);
    if (append_mode) {
        uint64_t diff = 0;
        while (diff < size && seg[diff] == orig[diff])
            diff++;
        /* nothing changed before `diff`: the records wholly before it survive */
        unsigned keep = 0;
        while (keep < built && ends[keep] <= diff)
            keep++;
        REQUIRE(scan_index - first >= keep);
    }
    /* a limit stops the scan there */
    uint64_t lim_off, lim_index;
    ms_j_scan(seg, size, first, MS_J_SEG_HDR, first, first + 1, &lim_off, &lim_index);
    REQUIRE(lim_index <= first + 1 && lim_index <= scan_index);

    /* every scanned record is found (the table may be damaged: the scan's offset is the
     * hint a reader holds), and what find returns is inside the segment */
    uint64_t off = MS_J_SEG_HDR;
    for (uint64_t i = first; i < scan_index && i - first < 4096; i++) {
        uint64_t o, payload, len, next;
        uint32_t kind;
        REQUIRE(ms_j_find(seg, size, first, i, off, 0, &o, &payload, &len, &kind) == MS_OK);
        check_payload(size, payload, len);
        /* without a hint, the walk from the segment's start finds it too */
        REQUIRE(ms_j_find(seg, size, first, i, 0, 1, &o, &payload, &len, &kind) == MS_OK);
        check_payload(size, payload, len);
        REQUIRE(ms_j_check(seg, size, first, off, i, &payload, &len, &kind, &next) == MS_OK);
        REQUIRE(next == off + ms_j_record_bytes(len) && next <= size);
        off = next;
    }
    REQUIRE(off == scan_off);

    /* the repair recovery does: zero from where the scan stopped up to the offset table of
     * the records kept; the kept records and their table entries are untouched, and a
     * second scan stops at the same place */
    uint64_t kept = scan_index - first;
    if (kept <= (size - scan_off) / 4) {
        uint64_t region_end = size - 4 * kept;
        memcpy(orig, seg, size);
        ms_j_zero(seg, size, scan_off, region_end);
        for (uint64_t b = scan_off; b < region_end; b++)
            REQUIRE(seg[b] == 0);
        REQUIRE(memcmp(seg, orig, scan_off) == 0);
        REQUIRE(memcmp(seg + region_end, orig + region_end, size - region_end) == 0);
        uint64_t again_off, again_index;
        ms_j_scan(seg, size, first, MS_J_SEG_HDR, first, UINT64_MAX, &again_off, &again_index);
        REQUIRE(again_off == scan_off && again_index == scan_index);
        /* the table rebuild power-loss recovery does: writes only slots of kept records,
         * after which every kept record is found through the table alone */
        memcpy(orig, seg, size);
        ms_j_retable(seg, size, first, UINT64_MAX);
        REQUIRE(memcmp(seg, orig, region_end) == 0);
        for (uint64_t i = first; i < scan_index && i < first + 64; i++) {
            uint64_t o, p, l;
            uint32_t kd;
            REQUIRE(ms_j_find(seg, size, first, i, 0, 0, &o, &p, &l, &kd) == MS_OK);
        }
    }

    /* arbitrary indices and offsets: any answer, but never out of bounds */
    for (size_t k = 0; k + 4 <= n && k < 64; k += 4) {
        uint64_t i = first + (in[k] | (uint64_t)in[k + 1] << 8) - 8;
        uint64_t at = (in[k + 2] | (uint64_t)in[k + 3] << 8) * 8u;
        uint64_t o, payload, len, next;
        uint32_t kind;
        st = ms_j_find(seg, size, first, i, at, in[k] & 1, &o, &payload, &len, &kind);
        REQUIRE(st == MS_OK || st == MS_E_LAYOUT);
        if (st == MS_OK)
            check_payload(size, payload, len);
        st = ms_j_check(seg, size, first, at, i, &payload, &len, &kind, &next);
        REQUIRE(st == MS_OK || st == MS_E_LAYOUT);
        if (st == MS_OK) {
            check_payload(size, payload, len);
            REQUIRE(next <= size);
        }
    }

    /* the next append goes where recovery stopped; it is read back whole */
    if (scan_index - first < 100000) {
        uint64_t len = n ? in[n - 1] : 5, payload, next, o, p2, l2;
        uint32_t k2;
        st = ms_j_reserve(seg, size, first, scan_off, scan_index, len, 2, &payload);
        REQUIRE(st == MS_OK || st == MS_E_FULL || st == MS_E_LAYOUT);
        if (st == MS_OK) {
            check_payload(size, payload, len);
            memset(seg + payload, 0xA5, len);
            REQUIRE(ms_j_commit(seg, size, first, scan_off, scan_index, &next) == MS_OK);
            REQUIRE(ms_j_find(seg, size, first, scan_index, 0, 0, &o, &p2, &l2, &k2) == MS_OK);
            REQUIRE(o == scan_off && p2 == payload && l2 == len && k2 == 2);
            uint64_t e_off, e_index;
            ms_j_scan(seg, size, first, scan_off, scan_index, UINT64_MAX, &e_off, &e_index);
            REQUIRE(e_index >= scan_index + 1);
        }
    }
    free(seg);
    free(orig);
    return 0;
}
