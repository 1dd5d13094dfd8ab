/* Unit tests of the array core (csrc/array.c) in plain C: the .npy header parser on
 * headers numpy writes, on forged ones (every field: magic, version, header length,
 * keys, descr, fortran_order, shape, ndim, overflow), on every truncation of a valid
 * header, and the control block (ready, version).  Headers live in exact-size heap
 * buffers, so AddressSanitizer reports any read outside them.  Build and run with
 * tests/c/run.sh. */
#include "array.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures_in_test;
static int passed, failed;

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); failures_in_test++; } } while (0)
#define CHECK_EQ(a, b) do { long long _a = (long long)(a), _b = (long long)(b); if (_a != _b) { fprintf(stderr, "  FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b, _a, _b); failures_in_test++; } } while (0)

/* A v1.0 .npy header around `text` in an exact-size heap buffer (+ extra bytes). */
static uint8_t *npy(const char *text, size_t extra, size_t *len)
{
    size_t t = strlen(text);
    *len = 10 + t + extra;
    uint8_t *b = (uint8_t *)malloc(*len);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (uint8_t)(t & 0xff);
    b[9] = (uint8_t)(t >> 8);
    memcpy(b + 10, text, t);
    memset(b + 10 + t, 0, extra);
    return b;
}

static ms_status parse_text(const char *text, ms_npy_info *info)
{
    size_t len;
    uint8_t *b = npy(text, 0, &len);
    ms_status st = ms_npy_parse(b, len, info);
    free(b);
    return st;
}

static void test_array_parses_numpy_headers(void)
{
    ms_npy_info info;
    const char *t1 = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }          \n";
    CHECK_EQ(parse_text(t1, &info), MS_OK);
    CHECK_EQ(info.ndim, 2);
    CHECK_EQ(info.shape[0], 3);
    CHECK_EQ(info.shape[1], 4);
    CHECK_EQ(info.count, 12);
    CHECK_EQ(info.fortran_order, 0);
    CHECK_EQ(info.data_offset, 10 + strlen(t1));
    CHECK_EQ(info.descr_len, 5);
    const char *t2 = "{'shape': (), 'fortran_order': True, 'descr': [('a', '<i4'), "
                     "(('t', 'b'), [('c', '>M8[ms]')], (2, 3)), ('', '|V4')]}";
    CHECK_EQ(parse_text(t2, &info), MS_OK);
    CHECK_EQ(info.ndim, 0);
    CHECK_EQ(info.count, 1);
    CHECK_EQ(info.fortran_order, 1);
    CHECK_EQ(ms_npy_check_descr(t2 + info.descr_offset - 10, info.descr_len), MS_OK);
    CHECK_EQ(parse_text("{\"descr\": \"|b1\", \"fortran_order\": False, \"shape\": (0, 7)}",
                        &info), MS_OK);
    CHECK_EQ(info.count, 0);
}

static void test_array_refuses_forged_headers(void)
{
    static const char *bad[] = {
        "",
        "{",
        "{}",
        "{'descr': '<f8', 'fortran_order': False}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'x': 1}",
        "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (2,)}",
        "{'descr': os.system('x'), 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': 0, 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (-2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (02,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2L,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1.5,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (9223372036854775808,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}",
        "{'descr': '<\\x66', 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '', 'fortran_order': False, 'shape': (2,)}",
        "{'descr': [], 'fortran_order': False, 'shape': (2,)}",
        "{'descr': [('a')], 'fortran_order': False, 'shape': (2,)}",
        "{'descr': [('a', '<i4', 3)], 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)} x",
        "{'descr': '<f8' 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f8\n', 'fortran_order': False, 'shape': (2,)}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms_npy_info info;
        ms_status st = parse_text(bad[i], &info);
        if (st != MS_E_LAYOUT)
            fprintf(stderr, "  accepted: %s\n", bad[i]);
        CHECK_EQ(st, MS_E_LAYOUT);
    }
}

static void test_array_limits(void)
{
    char buf[4096];
    ms_npy_info info;
    /* 64 dimensions pass, 65 do not */
    for (int nd = 64; nd <= 65; nd++) {
        int o = snprintf(buf, sizeof buf, "{'descr': '<f8', 'fortran_order': False, 'shape': (");
        for (int k = 0; k < nd; k++)
            o += snprintf(buf + o, sizeof buf - (size_t)o, "1, ");
        snprintf(buf + o, sizeof buf - (size_t)o, ")}");
        CHECK_EQ(parse_text(buf, &info), nd == 64 ? MS_OK : MS_E_LAYOUT);
    }
    /* nesting: 32 levels pass, 33 do not */
    for (int depth = 32; depth <= 33; depth++) {
        int o = snprintf(buf, sizeof buf, "{'descr': ");
        for (int k = 0; k < depth; k++)
            o += snprintf(buf + o, sizeof buf - (size_t)o, "[('a', ");
        o += snprintf(buf + o, sizeof buf - (size_t)o, "'<i4'");
        for (int k = 0; k < depth; k++)
            o += snprintf(buf + o, sizeof buf - (size_t)o, ")]");
        snprintf(buf + o, sizeof buf - (size_t)o, ", 'fortran_order': False, 'shape': ()}");
        CHECK_EQ(parse_text(buf, &info), depth == 32 ? MS_OK : MS_E_LAYOUT);
    }
}

static void test_array_preamble_and_truncation(void)
{
    const char *t = "{'descr': [('x', '<f4', (2,))], 'fortran_order': False, 'shape': (5,), }\n";
    size_t len;
    uint8_t *good = npy(t, 0, &len);
    ms_npy_info info;
    CHECK_EQ(ms_npy_parse(good, len, &info), MS_OK);
    /* every truncation: refused, never a read past the end (ASan) */
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = (uint8_t *)malloc(n ? n : 1);
        memcpy(cut, good, n);
        CHECK_EQ(ms_npy_parse(cut, n, &info), MS_E_LAYOUT);
        free(cut);
    }
    /* magic, version, length */
    uint8_t *b = (uint8_t *)malloc(len);
    struct { size_t off; uint8_t v; } edits[] = {
        { 0, 0x94 }, { 5, 'Z' }, { 6, 4 }, { 6, 0 }, { 7, 1 }, { 8, 0xff }, { 9, 0xff },
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        memcpy(b, good, len);
        b[edits[i].off] = edits[i].v;
        CHECK_EQ(ms_npy_parse(b, len, &info), MS_E_LAYOUT);
    }
    /* header length 0 */
    memcpy(b, good, len);
    b[8] = b[9] = 0;
    CHECK_EQ(ms_npy_parse(b, len, &info), MS_E_LAYOUT);
    free(b);
    free(good);
    /* version 2.0: a 4-byte length */
    size_t t2 = strlen(t);
    uint8_t *v2 = (uint8_t *)malloc(12 + t2);
    memcpy(v2, "\x93NUMPY\x02\x00", 8);
    v2[8] = (uint8_t)t2; v2[9] = 0; v2[10] = 0; v2[11] = 0;
    memcpy(v2 + 12, t, t2);
    CHECK_EQ(ms_npy_parse(v2, 12 + t2, &info), MS_OK);
    CHECK_EQ(info.data_offset, 12 + t2);
    v2[11] = 0x80;  /* 2 GiB header */
    CHECK_EQ(ms_npy_parse(v2, 12 + t2, &info), MS_E_LAYOUT);
    free(v2);
}

static void test_array_control_block(void)
{
    ms_header *h = (ms_header *)calloc(1, sizeof *h);
    int bad = -1;
    ms_array *a = (ms_array *)(void *)h->kind_area;
    CHECK_EQ(ms_array_ready(a, &bad), 0);
    CHECK_EQ(bad, 1);  /* no tag: not an array */
    int err = 0;
    CHECK_EQ(ms_array_kind_init(h, NULL, &err), MS_OK);
    CHECK_EQ(ms_array_ready(a, &bad), 0);
    CHECK_EQ(bad, 0);
    CHECK_EQ(ms_array_version(a), 0);
    ms_array_set_ready(a);
    CHECK_EQ(ms_array_ready(a, &bad), 1);
    CHECK_EQ(ms_array_bump(a), 1);
    CHECK_EQ(ms_array_bump(a), 2);
    CHECK_EQ(ms_array_version(a), 2);
    free(h);
}

struct test { const char *name; void (*fn)(void); };

static const struct test tests[] = {
    { "array_parses_numpy_headers", test_array_parses_numpy_headers },
    { "array_refuses_forged_headers", test_array_refuses_forged_headers },
    { "array_limits", test_array_limits },
    { "array_preamble_and_truncation", test_array_preamble_and_truncation },
    { "array_control_block", test_array_control_block },
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
