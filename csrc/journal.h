/* Journal records: the mechanism of mapshare.Journal's segment files (plain C, no Python).
 *
 * A segment file is `size` bytes: a 64-byte header, then records back to back from
 * offset 64 growing up, and an offset table growing down from the end (entry k, the byte
 * offset of the segment's k-th record, is the u32 at size - 4*(k+1)).  A record is a
 * 24-byte header {u32 length, u32 crc32c, u64 index, u32 kind, u32 reserved (0)} then
 * `length` payload bytes, padded to 8 (kind: 0 bytes, 1 pickled object, 2 numpy array,
 * the encodings of Channel).  The checksum covers the length, the index, the kind and the
 * payload, so a record is
 * trusted only if its index is the one expected at that place and its checksum holds.
 * docs/design/journal-format.md describes the format for other languages.
 *
 * Everything read from a mapping is untrusted: each field is read once into a local and
 * bounds-checked against `size`; an inconsistency is MS_E_LAYOUT, never an out-of-bounds
 * access.  All integers are little-endian (the platforms mapshare supports).
 */
#ifndef MS_JOURNAL_H
#define MS_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include "status.h"

#define MS_J_SEG_MAGIC 0x31304745534a534dULL   /* "MSJSEG01" */
#define MS_J_SEG_HDR 64u                        /* segment header bytes */
#define MS_J_REC_HDR 24u                        /* record header bytes */
#define MS_J_MIN_SEGMENT 4096u
#define MS_J_MAX_SEGMENT (1ull << 32)           /* offsets are u32 */
#define MS_J_MAX_INDEX (1ull << 62)             /* indices (and first indices) stay below */

/* Bytes a record of `len` payload bytes takes in the record area (header + padding). */
static inline uint64_t ms_j_record_bytes(uint64_t len)
{
    return MS_J_REC_HDR + ((len + 7u) & ~(uint64_t)7u);
}

/* CRC-32C (Castagnoli), the checksum of every record; `crc` is the running value (0 to
 * start). */
uint32_t ms_crc32c(uint32_t crc, const void *data, size_t n);
/* Tests: use the CPU's crc32 instruction where it has one (use != 0; the default) or the
 * portable tables (0).  Returns 1 if the instruction is in use. */
int ms_crc32c_hw(int use);

/* Write a segment header into `base` (size bytes, zero-filled by the caller). */
ms_status ms_j_seg_init(uint8_t *base, uint64_t size, uint64_t seq, uint64_t first_index);
/* Check a segment header: magic, seq, size recorded == size.  Gives its first index. */
ms_status ms_j_seg_check(const uint8_t *base, uint64_t size, uint64_t seq,
                         uint64_t *first_index);

/* Largest payload a segment of `size` bytes can hold in one record. */
uint64_t ms_j_max_payload(uint64_t size);

/* Reserve room for the record `index` (the segment's (index - first_index)-th) of `len`
 * bytes at byte `off`: MS_E_FULL if it does not fit in this segment (roll), MS_E_TOO_LARGE
 * if it fits in no segment of this size, MS_E_LAYOUT if off/index are out of range.
 * Writes the record header with a zero checksum; *payload is the payload's offset. */
ms_status ms_j_reserve(uint8_t *base, uint64_t size, uint64_t first_index, uint64_t off,
                       uint64_t index, uint64_t len, uint32_t kind, uint64_t *payload);
/* Finish the record reserved at `off`: checksum it, enter it in the offset table.
 * *next is the offset after it. */
ms_status ms_j_commit(uint8_t *base, uint64_t size, uint64_t first_index, uint64_t off,
                      uint64_t index, uint64_t *next);

/* Check the record that should be `index` at byte `off`: header in bounds, index as
 * expected, length in bounds, checksum holds.  *payload, *len: where its data is;
 * *next: the offset after it.  MS_E_LAYOUT if any check fails. */
ms_status ms_j_check(const uint8_t *base, uint64_t size, uint64_t first_index, uint64_t off,
                     uint64_t index, uint64_t *payload, uint64_t *len, uint32_t *kind,
                     uint64_t *next);
/* Find and check record `index`: through the offset table, falling back to `hint`
 * (the offset the caller expects, 0 for none) if the table entry does not hold, then,
 * with `scan`, to following the records from the segment's start (a table entry lost
 * with power loss: O(segment), but only then). */
ms_status ms_j_find(const uint8_t *base, uint64_t size, uint64_t first_index,
                    uint64_t index, uint64_t hint, int scan, uint64_t *off,
                    uint64_t *payload, uint64_t *len, uint32_t *kind);
/* From record `index` at `off`, follow valid records while they hold and stop before
 * `limit` (an index; UINT64_MAX for none).  *end_off, *end_index: the first place that
 * does not hold a valid record (where the next append goes after recovery). */
void ms_j_scan(const uint8_t *base, uint64_t size, uint64_t first_index, uint64_t off,
               uint64_t index, uint64_t limit, uint64_t *end_off, uint64_t *end_index);

/* Rewrite the offset-table entries of the valid records from the segment's start up to
 * `limit` (an index; UINT64_MAX for none) where they differ: the table is an index the
 * records themselves define, so "os" durability flushes only a record's own pages and a
 * recovery after power loss rebuilds the tail segment's entries.  Entries that already
 * hold are not written (clean pages stay clean).  Returns how many were rewritten. */
uint64_t ms_j_retable(uint8_t *base, uint64_t size, uint64_t first_index, uint64_t limit);

/* Zero the non-zero 8-byte words of [start, end) (start 8-aligned, end 4-aligned, end <=
 * size): clean pages stay clean.  Returns how many bytes were non-zero words. */
uint64_t ms_j_zero(uint8_t *base, uint64_t size, uint64_t start, uint64_t end);

#endif
