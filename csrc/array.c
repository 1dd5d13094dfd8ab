/* SharedArray mechanism: the .npy header parser and the array control block
 * (csrc/array.h).  The grammar accepted is the subset of Python literals numpy's
 * np.lib.format writes -- never evaluated, only recognised -- so that a forged header is
 * refused here, before numpy or the mapping ever see it. */
#include "array.h"

#include <stdlib.h>
#include <string.h>

#include "atomics.h"

typedef struct cursor {
    const char *s;     /* the private copy of the header text */
    size_t n;
    size_t i;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n'))
        c->i++;
}

static int eat(cursor *c, char ch)
{
    skip_ws(c);
    if (c->i < c->n && c->s[c->i] == ch) {
        c->i++;
        return 1;
    }
    return 0;
}

static int peek(cursor *c, char ch)
{
    skip_ws(c);
    return c->i < c->n && c->s[c->i] == ch;
}

/* A string literal '...' or "..." of printable ASCII with no backslash (numpy writes
 * field names and type strings without escapes unless they hold quotes or non-ASCII,
 * which mapshare refuses at create).  start and len: the contents. */
static int string_lit(cursor *c, size_t *start, size_t *len)
{
    skip_ws(c);
    if (c->i >= c->n || (c->s[c->i] != '\'' && c->s[c->i] != '"'))
        return 0;
    char q = c->s[c->i++];
    size_t b = c->i;
    while (c->i < c->n && c->s[c->i] != q) {
        unsigned char ch = (unsigned char)c->s[c->i];
        if (ch < 0x20 || ch > 0x7e || ch == '\\')
            return 0;
        c->i++;
    }
    if (c->i >= c->n)
        return 0;
    if (start)
        *start = b;
    if (len)
        *len = c->i - b;
    c->i++;
    return 1;
}

/* A non-negative decimal integer without sign or leading zeros, < 2^63. */
static int int_lit(cursor *c, uint64_t *v)
{
    skip_ws(c);
    size_t b = c->i;
    uint64_t x = 0;
    while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
        if (x > (UINT64_C(0x7fffffffffffffff) - 9) / 10)
            return 0;
        x = x * 10 + (uint64_t)(c->s[c->i] - '0');
        c->i++;
    }
    if (c->i == b || (c->i - b > 1 && c->s[b] == '0'))
        return 0;
    /* 10L (Python 2 longs) and 1.5 are not integers here */
    if (c->i < c->n && (c->s[c->i] == 'L' || c->s[c->i] == '.' || c->s[c->i] == 'e'))
        return 0;
    *v = x;
    return 1;
}

/* A shape tuple: () | (n,) | (n, m, ...) with an optional trailing comma. */
static int shape_tuple(cursor *c, uint64_t *dims, uint32_t *ndim)
{
    uint32_t k = 0;
    if (!eat(c, '('))
        return 0;
    if (eat(c, ')')) {
        *ndim = 0;
        return 1;
    }
    for (;;) {
        uint64_t v;
        if (k >= MS_NPY_NDIM_MAX || !int_lit(c, &v))
            return 0;
        if (dims)
            dims[k] = v;
        k++;
        int comma = eat(c, ',');
        if (eat(c, ')')) {
            /* (n) is an int in Python, not a tuple: one element needs its comma */
            if (k == 1 && !comma)
                return 0;
            break;
        }
        if (!comma)
            return 0;
    }
    *ndim = k;
    return 1;
}

static int descr_value(cursor *c, unsigned depth);

/* (name, descr[, shape]) where name is 'n' or ('title', 'n'). */
static int field(cursor *c, unsigned depth)
{
    if (!eat(c, '('))
        return 0;
    if (peek(c, '(')) {
        eat(c, '(');
        if (!string_lit(c, NULL, NULL) || !eat(c, ',') || !string_lit(c, NULL, NULL) ||
            !eat(c, ')'))
            return 0;
    } else if (!string_lit(c, NULL, NULL)) {
        return 0;
    }
    if (!eat(c, ',') || !descr_value(c, depth + 1))
        return 0;
    if (eat(c, ',')) {
        if (eat(c, ')'))
            return 1;
        uint32_t nd;
        uint64_t dims[MS_NPY_NDIM_MAX];
        if (!shape_tuple(c, dims, &nd))
            return 0;
        eat(c, ',');
    }
    return eat(c, ')');
}

static int descr_value(cursor *c, unsigned depth)
{
    if (depth > MS_NPY_DEPTH_MAX)
        return 0;
    size_t b, n;
    if (string_lit(c, &b, &n))
        return n > 0 && n <= 64;
    if (!eat(c, '['))
        return 0;
    if (eat(c, ']'))
        return 0;  /* a structured dtype has at least one field */
    for (;;) {
        if (!field(c, depth))
            return 0;
        int comma = eat(c, ',');
        if (eat(c, ']'))
            return 1;
        if (!comma)
            return 0;
    }
}

ms_status ms_npy_check_descr(const char *text, size_t len)
{
    cursor c = { text, len, 0 };
    if (!descr_value(&c, 0))
        return MS_E_LAYOUT;
    skip_ws(&c);
    return c.i == c.n ? MS_OK : MS_E_LAYOUT;
}

static int key_is(cursor *c, size_t b, size_t n, const char *k)
{
    return n == strlen(k) && memcmp(c->s + b, k, n) == 0;
}

static ms_status parse_dict(cursor *c, uint64_t start, ms_npy_info *out);

ms_status ms_npy_parse(const uint8_t *buf, uint64_t len, ms_npy_info *out)
{
    static const uint8_t magic[6] = { 0x93, 'N', 'U', 'M', 'P', 'Y' };
    memset(out, 0, sizeof *out);
    if (len < 10 || memcmp(buf, magic, 6) != 0)
        return MS_E_LAYOUT;
    uint8_t major = buf[6], minor = buf[7];
    uint64_t hlen, start;
    if (major == 1 && minor == 0) {
        hlen = (uint64_t)buf[8] | ((uint64_t)buf[9] << 8);
        start = 10;
    } else if ((major == 2 || major == 3) && minor == 0) {
        if (len < 12)
            return MS_E_LAYOUT;
        hlen = (uint64_t)buf[8] | ((uint64_t)buf[9] << 8) | ((uint64_t)buf[10] << 16) |
               ((uint64_t)buf[11] << 24);
        start = 12;
    } else {
        return MS_E_LAYOUT;
    }
    if (hlen == 0 || hlen > MS_NPY_HEADER_MAX || start + hlen > len)
        return MS_E_LAYOUT;
    out->major = major;
    out->data_offset = start + hlen;
    /* One private copy: a peer rewriting the bytes while we parse cannot make two
     * readings of one byte disagree. */
    char *copy = (char *)malloc((size_t)hlen);
    if (!copy)
        return MS_E_LAYOUT;
    memcpy(copy, buf + start, (size_t)hlen);
    cursor c = { copy, (size_t)hlen, 0 };
    ms_status st = parse_dict(&c, start, out);
    free(copy);
    if (st != MS_OK)
        return st;
    uint64_t count = 1;
    for (uint32_t k = 0; k < out->ndim; k++) {
        uint64_t d = out->shape[k];
        if (d != 0 && count > UINT64_C(0x7fffffffffffffff) / d)
            return MS_E_LAYOUT;
        count *= d;
    }
    out->count = count;
    if (out->data_offset > len)
        return MS_E_LAYOUT;
    return MS_OK;
}

static ms_status parse_dict(cursor *cp, uint64_t start, ms_npy_info *out)
{
    cursor c = *cp;
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0;
    if (!eat(&c, '{'))
        return MS_E_LAYOUT;
    for (;;) {
        if (eat(&c, '}'))
            break;
        size_t kb, kn;
        if (!string_lit(&c, &kb, &kn) || !eat(&c, ':'))
            return MS_E_LAYOUT;
        if (key_is(&c, kb, kn, "descr")) {
            if (seen_descr++)
                return MS_E_LAYOUT;
            skip_ws(&c);
            size_t db = c.i;
            if (!descr_value(&c, 0))
                return MS_E_LAYOUT;
            out->descr_offset = start + db;
            out->descr_len = c.i - db;
        } else if (key_is(&c, kb, kn, "fortran_order")) {
            if (seen_fortran++)
                return MS_E_LAYOUT;
            skip_ws(&c);
            if (c.n - c.i >= 4 && memcmp(c.s + c.i, "True", 4) == 0) {
                out->fortran_order = 1;
                c.i += 4;
            } else if (c.n - c.i >= 5 && memcmp(c.s + c.i, "False", 5) == 0) {
                c.i += 5;
            } else {
                return MS_E_LAYOUT;
            }
        } else if (key_is(&c, kb, kn, "shape")) {
            if (seen_shape++)
                return MS_E_LAYOUT;
            if (!shape_tuple(&c, out->shape, &out->ndim))
                return MS_E_LAYOUT;
        } else {
            return MS_E_LAYOUT;   /* numpy itself refuses any other key */
        }
        int comma = eat(&c, ',');
        if (eat(&c, '}'))
            break;
        if (!comma)
            return MS_E_LAYOUT;
    }
    if (!(seen_descr && seen_fortran && seen_shape))
        return MS_E_LAYOUT;
    /* padding: spaces, then the newline numpy ends the header with */
    skip_ws(&c);
    return c.i == c.n ? MS_OK : MS_E_LAYOUT;
}

void ms_array_init_area(ms_array *a)
{
    memset(a, 0, sizeof *a);
    a->npy_offset = 0;
    ms_store32(&a->tag, MS_ARRAY_TAG);
}

int ms_array_ready(const ms_array *a, int *bad)
{
    *bad = ms_load32(&a->tag) != MS_ARRAY_TAG;
    return ms_load32(&a->ready) == 1;
}

void ms_array_set_ready(ms_array *a)
{
    ms_store32(&a->ready, 1);
}

uint64_t ms_array_version(const ms_array *a)
{
    return ms_load64(&a->version);
}

uint64_t ms_array_bump(ms_array *a)
{
    return ms_add64(&a->version, 1) + 1;
}

ms_status ms_array_kind_init(ms_header *hdr, void *arg, int *err)
{
    (void)arg;
    (void)err;
    ms_array_init_area((ms_array *)(void *)hdr->kind_area);
    return MS_OK;
}
