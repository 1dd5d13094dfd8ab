/* Unit tests of the journal record core (csrc/journal.c) in plain C: CRC-32C, records
 * written and found through the offset table, a full segment, a partial (uncommitted)
 * record never valid, every byte of the record area damaged one at a time (the scan stops
 * at the damaged record, never reads outside the segment), random garbage and random
 * lengths (bounded, MS_E_LAYOUT), zeroing after recovery.  Segments live in exact-size
 * heap buffers so that AddressSanitizer reports any access outside them.  Build and run
 * with tests/c/run.sh. */
#include "journal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures_in_test;
static int passed, failed;

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); failures_in_test++; } } while (0)
#define CHECK_EQ(a, b) do { long long _a = (long long)(a), _b = (long long)(b); if (_a != _b) { fprintf(stderr, "  FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b, _a, _b); failures_in_test++; } } while (0)

#define SEG 4096u

static uint8_t *new_seg(uint64_t seq, uint64_t first)
{
    uint8_t *b = calloc(1, SEG);
    if (!b)
        abort();
    if (ms_j_seg_init(b, SEG, seq, first) != MS_OK)
        abort();
    return b;
}

/* Append records first..first+n-1 (payload k bytes of value k for record k); returns the
 * offset after the last one. */
static uint64_t put_n(uint8_t *b, uint64_t first, uint64_t n)
{
    uint64_t off = MS_J_SEG_HDR, payload, next = 0;
    for (uint64_t i = first; i < first + n; i++) {
        uint64_t len = (i * 7) % 90;
        if (ms_j_reserve(b, SEG, first, off, i, len, (uint32_t)(i % 3), &payload) != MS_OK)
            abort();
        memset(b + payload, (int)i, len);
        if (ms_j_commit(b, SEG, first, off, i, &next) != MS_OK)
            abort();
        off = next;
    }
    return off;
}

static void test_crc32c(void)
{
    /* both implementations (the CPU's instruction where there is one, the tables), and
     * they agree on every length and alignment */
    static uint8_t buf[300];
    uint32_t hw[64], sw[64];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (int pass = 0; pass < 2; pass++) {
        ms_crc32c_hw(pass == 0);
        CHECK_EQ(ms_crc32c(0, "123456789", 9), 0xe3069283u);
        CHECK_EQ(ms_crc32c(0, "", 0), 0);
        /* incremental == one shot */
        CHECK_EQ(ms_crc32c(ms_crc32c(0, "12345", 5), "6789", 4), 0xe3069283u);
        for (int k = 0; k < 64; k++)
            (pass == 0 ? hw : sw)[k] = ms_crc32c(0, buf + k % 7, (size_t)(k * 4 + k % 5));
    }
    for (int k = 0; k < 64; k++)
        CHECK_EQ(hw[k], sw[k]);
    ms_crc32c_hw(1);
}

static void test_segment_header(void)
{
    uint8_t *b = new_seg(5, 1000);
    uint64_t first = 0;
    CHECK_EQ(ms_j_seg_check(b, SEG, 5, &first), MS_OK);
    CHECK_EQ(first, 1000);
    CHECK_EQ(ms_j_seg_check(b, SEG, 6, &first), MS_E_LAYOUT);
    CHECK_EQ(ms_j_seg_check(b, SEG + 8, 5, &first), MS_E_LAYOUT);
    CHECK_EQ(ms_j_seg_init(b, 100, 0, 0), MS_E_INVALID);
    b[0] ^= 1;
    CHECK_EQ(ms_j_seg_check(b, SEG, 5, &first), MS_E_LAYOUT);
    b[0] ^= 1;
    /* a first index near the top of the range is damage (the scans never wrap) */
    CHECK_EQ(ms_j_seg_init(b, SEG, 5, UINT64_MAX - 1), MS_OK);
    CHECK_EQ(ms_j_seg_check(b, SEG, 5, &first), MS_E_LAYOUT);
    uint64_t e_off, e_idx;
    ms_j_scan(b, SEG, UINT64_MAX - 1, MS_J_SEG_HDR, UINT64_MAX - 1, UINT64_MAX, &e_off, &e_idx);
    CHECK(e_idx >= UINT64_MAX - 1);
    free(b);
}

static void test_records_found(void)
{
    uint8_t *b = new_seg(0, 10);
    uint64_t end = put_n(b, 10, 40);
    for (uint64_t i = 10; i < 50; i++) {
        uint64_t off, payload, len;
        uint32_t kind;
        CHECK_EQ(ms_j_find(b, SEG, 10, i, 0, 0, &off, &payload, &len, &kind), MS_OK);
        CHECK_EQ(len, (i * 7) % 90);
        CHECK_EQ(kind, i % 3);
        for (uint64_t k = 0; k < len; k++)
            CHECK_EQ(b[payload + k], (uint8_t)i);
    }
    uint64_t off, payload, len, e_off, e_idx;
    uint32_t kind;
    CHECK_EQ(ms_j_find(b, SEG, 10, 50, 0, 1, &off, &payload, &len, &kind), MS_E_LAYOUT);
    CHECK_EQ(ms_j_find(b, SEG, 10, 9, 0, 1, &off, &payload, &len, &kind), MS_E_LAYOUT);
    ms_j_scan(b, SEG, 10, MS_J_SEG_HDR, 10, UINT64_MAX, &e_off, &e_idx);
    CHECK_EQ(e_off, end);
    CHECK_EQ(e_idx, 50);
    /* a lost offset-table entry: found by the scan fallback only */
    memset(b + SEG - 4 * 21, 0, 4);
    CHECK_EQ(ms_j_find(b, SEG, 10, 30, 0, 0, &off, &payload, &len, &kind), MS_E_LAYOUT);
    CHECK_EQ(ms_j_find(b, SEG, 10, 30, 0, 1, &off, &payload, &len, &kind), MS_OK);
    /* retable rebuilds it (and only it) from the records; a limit stops it early */
    memset(b + SEG - 4 * 31, 0xEE, 4);
    CHECK_EQ(ms_j_retable(b, SEG, 10, 35), 1);
    CHECK_EQ(ms_j_find(b, SEG, 10, 30, 0, 0, &off, &payload, &len, &kind), MS_OK);
    CHECK_EQ(ms_j_find(b, SEG, 10, 40, 0, 0, &off, &payload, &len, &kind), MS_E_LAYOUT);
    CHECK_EQ(ms_j_retable(b, SEG, 10, UINT64_MAX), 1);
    CHECK_EQ(ms_j_retable(b, SEG, 10, UINT64_MAX), 0);
    CHECK_EQ(ms_j_find(b, SEG, 10, 40, 0, 0, &off, &payload, &len, &kind), MS_OK);
    free(b);
}

static void test_full_and_too_large(void)
{
    uint8_t *b = new_seg(0, 0);
    uint64_t off = MS_J_SEG_HDR, payload, next, i = 0;
    ms_status st;
    CHECK_EQ(ms_j_reserve(b, SEG, 0, off, 0, ms_j_max_payload(SEG) + 1, 0, &payload),
             MS_E_TOO_LARGE);
    while ((st = ms_j_reserve(b, SEG, 0, off, i, 100, 0, &payload)) == MS_OK) {
        CHECK_EQ(ms_j_commit(b, SEG, 0, off, i, &next), MS_OK);
        off = next;
        i++;
    }
    CHECK_EQ(st, MS_E_FULL);
    CHECK(i > 20);
    /* records never overlap the offset table */
    CHECK(off <= SEG - 4 * i);
    /* the largest payload fits in an empty segment */
    uint8_t *c = new_seg(1, 0);
    CHECK_EQ(ms_j_reserve(c, SEG, 0, MS_J_SEG_HDR, 0, ms_j_max_payload(SEG), 0, &payload), MS_OK);
    CHECK_EQ(ms_j_commit(c, SEG, 0, MS_J_SEG_HDR, 0, &next), MS_OK);
    CHECK(next <= SEG - 4);
    free(b);
    free(c);
}

static void test_uncommitted_never_valid(void)
{
    uint8_t *b = new_seg(0, 0);
    uint64_t end = put_n(b, 0, 5), payload, e_off, e_idx;
    CHECK_EQ(ms_j_reserve(b, SEG, 0, end, 5, 30, 0, &payload), MS_OK);
    memset(b + payload, 0xab, 30);   /* copied, never committed (appender killed) */
    ms_j_scan(b, SEG, 0, MS_J_SEG_HDR, 0, UINT64_MAX, &e_off, &e_idx);
    CHECK_EQ(e_idx, 5);
    CHECK_EQ(e_off, end);
    /* recovery zeroes it; the next append goes there and is valid */
    CHECK(ms_j_zero(b, SEG, e_off, SEG - 4 * 5) > 0);
    CHECK_EQ(ms_j_zero(b, SEG, e_off, SEG - 4 * 5), 0);  /* idempotent, writes nothing */
    CHECK_EQ(put_n(b, 0, 6) > end, 1);
    free(b);
}

/* Flip each byte of the record area in turn: the scan keeps exactly the records before
 * the damaged one. */
static void test_every_byte_damaged(void)
{
    uint8_t *b = new_seg(0, 0);
    uint64_t offs[21];
    uint64_t end = put_n(b, 0, 20);
    uint64_t e_off, e_idx, p, l, n;
    uint32_t k;
    offs[0] = MS_J_SEG_HDR;
    for (int i = 0; i < 20; i++) {
        CHECK_EQ(ms_j_check(b, SEG, 0, offs[i], (uint64_t)i, &p, &l, &k, &n), MS_OK);
        offs[i + 1] = n;
    }
    CHECK_EQ(offs[20], end);
    for (uint64_t at = MS_J_SEG_HDR; at < end; at++) {
        b[at] ^= 0x5a;
        ms_j_scan(b, SEG, 0, MS_J_SEG_HDR, 0, UINT64_MAX, &e_off, &e_idx);
        int hit = 0;
        while (offs[hit + 1] <= at)
            hit++;
        CHECK_EQ(e_idx, hit);
        CHECK_EQ(e_off, offs[hit]);
        b[at] ^= 0x5a;
    }
    free(b);
}

static uint64_t rnd_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

/* Garbage anywhere (lengths, offsets, table entries): every call stays in bounds. */
static void test_garbage_bounded(void)
{
    for (int round = 0; round < 2000; round++) {
        uint8_t *b = new_seg(0, 0);
        put_n(b, 0, rnd() % 30);
        int hits = 1 + (int)(rnd() % 20);
        for (int h = 0; h < hits; h++)
            b[rnd() % SEG] = (uint8_t)rnd();
        if (rnd() % 2) {  /* a huge length or a table entry pointing anywhere */
            uint32_t v = (uint32_t)rnd();
            memcpy(b + MS_J_SEG_HDR + 8 * (rnd() % 100), &v, 4);
            memcpy(b + SEG - 4 * (1 + rnd() % 40), &v, 4);
        }
        uint64_t e_off, e_idx, off, p, l;
        uint32_t k;
        ms_j_scan(b, SEG, 0, MS_J_SEG_HDR, 0, UINT64_MAX, &e_off, &e_idx);
        CHECK(e_off <= SEG);
        for (uint64_t i = 0; i < 40; i++)
            (void)ms_j_find(b, SEG, 0, i, rnd() % (SEG + 64), (int)(rnd() % 2), &off, &p, &l, &k);
        (void)ms_j_check(b, SEG, 0, (rnd() % SEG) & ~7ull, rnd() % 50, &p, &l, &k, &off);
        free(b);
    }
}

static const struct { const char *name; void (*fn)(void); } tests[] = {
    {"journal_crc32c", test_crc32c},
    {"journal_segment_header", test_segment_header},
    {"journal_records_found", test_records_found},
    {"journal_full_and_too_large", test_full_and_too_large},
    {"journal_uncommitted_never_valid", test_uncommitted_never_valid},
    {"journal_every_byte_damaged", test_every_byte_damaged},
    {"journal_garbage_bounded", test_garbage_bounded},
};

int main(int argc, char **argv)
{
    const char *skip = getenv("MS_CTEST_SKIP");
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int run = argc < 2;
        for (int a = 1; a < argc; a++)
            if (strstr(tests[i].name, argv[a]))
                run = 1;
        if (skip && strstr(skip, tests[i].name))
            run = 0;
        if (!run)
            continue;
        failures_in_test = 0;
        tests[i].fn();
        if (failures_in_test) {
            failed++;
            printf("FAIL %s\n", tests[i].name);
        } else {
            passed++;
            printf("ok   %s\n", tests[i].name);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
