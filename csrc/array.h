/* SharedArray mechanism: the array control block (ms_array, in the kind area) and the
 * parser/validator of the .npy header that describes the array (docs/design/layout.md,
 * "Array"; docs/design/wire-formats.md, ".npy header").  Plain C, no Python: the parser
 * is what fuzz/fuzz_array.c and tests/c/test_array.c exercise.
 *
 * The header comes from shared memory or a file another process may have forged, so the
 * parser takes a private copy (the caller's buffer is read once, byte by byte, never
 * re-read), accepts only a strict grammar (no escapes, bounded nesting, bounded
 * lengths), and reports every inconsistency as MS_E_LAYOUT. */
#ifndef MS_ARRAY_H
#define MS_ARRAY_H

#include <stddef.h>
#include <stdint.h>

#include "layout.h"
#include "status.h"

#define MS_NPY_NDIM_MAX     64u      /* numpy's NPY_MAXDIMS (2.x) */
#define MS_NPY_HEADER_MAX   65536u   /* the longest header text accepted */
#define MS_NPY_DEPTH_MAX    32u      /* nesting of structured dtypes */
#define MS_NPY_ALIGN        64u      /* data offset alignment numpy writes */

typedef struct ms_npy_info {
    uint32_t major;                  /* .npy format version 1, 2 or 3 */
    uint32_t fortran_order;          /* 0 or 1 */
    uint32_t ndim;
    uint64_t shape[MS_NPY_NDIM_MAX];
    uint64_t count;                  /* product of shape (checked for overflow) */
    uint64_t data_offset;            /* bytes from the start of the .npy image */
    uint64_t descr_offset;           /* the descr value's text: offset from the image start */
    uint64_t descr_len;              /*   and length (validated against the grammar) */
} ms_npy_info;

/* Parse the .npy image header at buf[0, len): magic, version, header length, and the
 * header dict {'descr': D, 'fortran_order': B, 'shape': T} (keys in any order, each once;
 * trailing spaces and one newline allowed).  D is a type string or a list of fields
 * (name or (title, name), D, optional shape tuple), nested to MS_NPY_DEPTH_MAX.  Checks
 * data_offset <= len; the caller checks data_offset + count * itemsize <= len once it
 * knows the itemsize (only numpy knows the type strings).  MS_OK or MS_E_LAYOUT. */
ms_status ms_npy_parse(const uint8_t *buf, uint64_t len, ms_npy_info *out);

/* Validate only a descr value's text (the grammar above). */
ms_status ms_npy_check_descr(const char *text, size_t len);

/* The control block of an array object. */
void ms_array_init_area(ms_array *a);
/* 1 if the creator finished writing the header and the data (ready), else 0; MS_E_LAYOUT
 * through *bad if the tag is wrong. */
int ms_array_ready(const ms_array *a, int *bad);
void ms_array_set_ready(ms_array *a);
uint64_t ms_array_version(const ms_array *a);
/* Bump the version (returns the new one); the caller then wakes waiters (change counter). */
uint64_t ms_array_bump(ms_array *a);
/* The ms_kind_init_fn of MS_KIND_ARRAY (tag written, ready == 0, version == 0). */
ms_status ms_array_kind_init(ms_header *hdr, void *arg, int *err);

#endif
