/* Inspection: read the identity fields of an object's header without opening it as a
 * segment (no validation of the whole header, no attach, no opener count), for objects
 * that ms_segment_open refuses -- one marked DESTROYED whose name was left behind -- and
 * for tools that list what is in shared memory.  The offsets live in layout.h only;
 * callers (the Python policy, the CLI) get named fields. */
#ifndef MS_INSPECT_H
#define MS_INSPECT_H

#include "layout.h"
#include "platform/platform.h"

/* The bytes of the header this module reads: everything before meta_lock (identity,
 * sizes, creator, state and the name). */
#define MS_INSPECT_LEN ((size_t)offsetof(ms_header, meta_lock))
#define MS_INSPECT_NAME_FIELD (sizeof(((ms_header *)0)->name))

/* The identity fields of a header, copied out of shared memory.  Every value is what
 * the header said (untrusted: a caller checks kind and lifetime against the known
 * codes before using them), except name_len, clamped to the name field, and name,
 * always NUL-terminated. */
typedef struct ms_header_info {
    uint64_t magic;
    uint32_t version;
    uint32_t kind;
    uint32_t header_size;
    uint32_t lifetime;
    uint64_t size;
    uint64_t data_offset;
    uint64_t total_size;
    uint32_t creator_pid;
    uint32_t creator_uid;
    uint64_t creator_start;
    uint64_t created_ns;
    uint32_t state;
    uint32_t flags;
    uint32_t mode;
    uint32_t name_len;                 /* <= MS_INSPECT_NAME_FIELD */
    char name[MS_INSPECT_NAME_FIELD + 1];
} ms_header_info;

/* Parse `len` bytes holding the start of a header (a private copy: the caller never
 * passes shared memory another process could change while this reads it).
 * MS_E_LAYOUT: fewer than MS_INSPECT_LEN bytes, a magic that is not mapshare's, or
 * another layout version (whose offsets this build does not know).
 * MS_E_INITIALIZING: the creator has not published the header (magic 0). */
ms_status ms_inspect_parse(const void *bytes, size_t len, ms_header_info *out);

/* Open the object `osname` (or the backing file `path`) read-only, copy the start of
 * its header and parse it (ms_inspect_parse).  The object is never attached and nothing
 * in it is written.  MS_E_NOT_FOUND, MS_E_PERMISSION: as ms_p_object_open; MS_E_LAYOUT
 * also for an object shorter than MS_INSPECT_LEN; MS_E_FAULT if it shrank while being
 * read. */
ms_status ms_inspect_peek(const char *osname, const char *path, unsigned flags,
                          ms_header_info *out, int *err);

#endif
