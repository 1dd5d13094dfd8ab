/* Inspection of headers without attaching (see inspect.h). */
#include "inspect.h"

#include <string.h>

ms_status ms_inspect_parse(const void *bytes, size_t len, ms_header_info *out)
{
    /* One private copy of the prefix; each field is read from it once. */
    unsigned char buf[MS_INSPECT_LEN];
    memset(out, 0, sizeof *out);
    if (bytes == NULL || len < MS_INSPECT_LEN)
        return MS_E_LAYOUT;
    memcpy(buf, bytes, MS_INSPECT_LEN);
#define FIELD(f) memcpy(&out->f, buf + offsetof(ms_header, f), sizeof out->f)
    FIELD(magic);
    if (out->magic == 0)
        return MS_E_INITIALIZING;
    if (out->magic != MS_MAGIC)
        return MS_E_LAYOUT;
    FIELD(version);
    if (out->version != MS_LAYOUT_VERSION)
        return MS_E_LAYOUT;
    FIELD(kind);
    FIELD(header_size);
    FIELD(lifetime);
    FIELD(size);
    FIELD(data_offset);
    FIELD(total_size);
    FIELD(creator_pid);
    FIELD(creator_uid);
    FIELD(creator_start);
    FIELD(created_ns);
    FIELD(state);
    FIELD(flags);
    FIELD(mode);
    FIELD(name_len);
#undef FIELD
    if (out->name_len > MS_INSPECT_NAME_FIELD)
        out->name_len = MS_INSPECT_NAME_FIELD;
    memcpy(out->name, buf + offsetof(ms_header, name), out->name_len);
    out->name[out->name_len] = '\0';
    return MS_OK;
}

ms_status ms_inspect_peek(const char *osname, const char *path, unsigned flags,
                          ms_header_info *out, int *err)
{
    ms_object obj;
    ms_object_stat st;
    void *map = NULL;
    unsigned char copy[MS_INSPECT_LEN];
    ms_status s;

    memset(out, 0, sizeof *out);
    s = ms_p_object_open(osname, path, 0, flags, &obj, err);
    if (s != MS_OK)
        return s;
    s = ms_p_object_stat(&obj, &st, err);
    if (s == MS_OK && st.size < MS_INSPECT_LEN)
        s = MS_E_LAYOUT;
    if (s == MS_OK)
        s = ms_p_map(&obj, 0, MS_INSPECT_LEN, MS_ACCESS_READ, &map, err);
    if (s == MS_OK) {
        /* the object can be truncated under us: a SIGBUS becomes MS_E_FAULT */
        s = ms_p_guarded_copy(copy, map, sizeof copy);
        ms_p_unmap(map, MS_INSPECT_LEN);
    }
    ms_p_object_close(&obj);
    if (s != MS_OK)
        return s;
    return ms_inspect_parse(copy, sizeof copy, out);
}
