/* Windows backend: named file-mapping objects (paging-file or file backed), views,
 * named semaphores for cross-process wait/wake, named mutexes for robust locks, and
 * EXCEPTION_IN_PAGE_ERROR guarding.
 *
 * Only Win32 calls and the Interlocked and MemoryBarrier family are used, so the file
 * compiles with mingw-w64 gcc and with MSVC (no C11 atomics, no VLAs, no GCC builtins
 * outside #ifdef __GNUC__).  Tested under Wine 8 (tools/wine/); see "Checked under Wine
 * only" at the end of this comment for what that does not prove.
 *
 * Names.  osname arrives as "/mapshare.xxx": the leading '/' is dropped and Local\ (or
 * Global\ with MS_OBJ_GLOBAL) is prefixed.  The per-segment synchronization objects are
 * named from the same base plus a suffix that starts with '#' (MS_WIN_SYNC_SEP) and
 * ends with the slot key in hex, e.g. Local\mapshare.xxx#w3 (semaphore of wait slot 3),
 * #w105 (slot MS_SLOT_USER_BASE + 5), #l9 (mutex of lock slot 9), and #c (a 64 KiB
 * section holding the waiter counts).  '#' must therefore never appear in an
 * osname, otherwise a segment could collide with another segment's helper objects
 * (all named kernel objects share one namespace, whatever their type).
 *
 * Lifetime.  Windows removes a name when its last handle closes; there is no unlink.
 *
 * Security.  Objects get an explicit DACL: the current user (token user SID) full
 * access; if `mode` has group/other bits, Everyone gets read (mode & 044) or read/write
 * (mode & 022) as well.  The helper sync objects copy the decision from the segment's
 * own DACL (an Everyone ACE there => Everyone may wait, wake and lock), because
 * ms_p_waitctx_open does not receive the mode.
 *
 * Sizes.  A paging-file section is committed at creation (SEC_COMMIT), so a failure to
 * reserve shows up as MS_E_NO_SPACE from CreateFileMappingW.  A file is extended and
 * its blocks allocated (FileAllocationInfo) before the mapping is made.  The size of a
 * paging-file section opened by name comes from NtQuerySection(SectionBasicInformation)
 * (ntdll, looked up at run time), which returns the size given at creation rounded up to
 * whole pages; if ntdll lacks it, from VirtualQuery on a view of the whole section.
 *
 * Waiting.  WaitOnAddress does not cross processes, so each wait slot key of a segment
 * has a named semaphore, and a named section (#c) holds, per key, the number of threads
 * about to sleep or sleeping.  Waiter: count++ ; if *word != expected -> count--, return ;
 * WaitForSingleObject(sem, timeout) ; count--.  Waker (after the caller changed *word):
 * full barrier ; n = count ; if n: ReleaseSemaphore(sem, all ? n : 1).  The increment
 * and the waker's read are both full barriers (Dekker), so either the waiter sees the new
 * word or the waker sees the waiter; a release that lands before the waiter sleeps stays
 * in the semaphore count.  A token can outlive its waiter (the waiter timed out, or saw
 * the change and never slept): the next wait then returns at once, a spurious wake-up the
 * contract allows.  MS_E_INTERRUPTED is never returned: callers slice long waits.
 *
 * Locks.  Each lock slot has a named mutex; WAIT_ABANDONED (the holder thread or process
 * died) gives MS_E_OWNER_DIED with the mutex held.  Windows mutexes are recursive: a
 * re-acquisition by the holding thread is detected through the shared area (holder
 * pid + thread id) and refused with MS_E_ALREADY_HELD, as on Linux.  The 64-byte shared area
 * records the holder (for ms_p_lock_inspect); the mutex alone decides ownership.  A
 * named mutex vanishes with its last handle, so a holder that dies while nobody else
 * has the mutex open takes it along and the next acquirer creates a fresh one (no
 * WAIT_ABANDONED): the holder still recorded in the shared area then says the owner
 * died (release clears it before ReleaseMutex).
 *
 * Faults.  MSVC: __try/__except around the guarded function.  mingw gcc has no SEH
 * keywords in C, so a vectored exception handler catches EXCEPTION_IN_PAGE_ERROR while
 * the thread has an active guard and resumes execution at the guard's setjmp point by
 * loading the jmp_buf's registers (documented _JUMP_BUFFER layout) into the exception
 * CONTEXT and returning EXCEPTION_CONTINUE_EXECUTION: the same effect as longjmp, done by
 * the OS's NtContinue, without unwinding through the exception dispatcher.
 * Wine reports a vanished page as an access violation, which fault_is_ours() accepts
 * when the page is a committed part of a view that allows the access.
 * Note that Windows refuses to truncate a file below a mapped view
 * (ERROR_USER_MAPPED_FILE), so on Windows the fault comes only from I/O errors of the
 * backing store (network file, removed media).
 *
 * Stat.  uid 0 and mode 0600 always; a file-backed object opened by path also gets
 * dev (volume serial), ino (file index) and mtime.
 *
 * What the Wine tests (tools/wine/run-selftest.sh) cannot prove: that the DACLs are
 * enforced (Wine ignores security descriptors), session isolation and the privilege
 * for Global\, commit limits (MS_E_NO_SPACE), symlink refusal (Wine 8 stubs
 * CreateSymbolicLinkW and follows host symlinks), growing a file-backed section
 * (no NtExtendSection in Wine 8), EXCEPTION_IN_PAGE_ERROR from a real I/O error, and
 * the MSVC build (__try/__except).  These need a run on real Windows.
 */
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0A00
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#include <aclapi.h>
#include <psapi.h>   /* K32GetMappedFileNameW (kernel32 since Windows 7) */
#include <io.h>      /* _get_osfhandle: the UCRT descriptors of a journal's files */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "platform.h"
#include "../atomics.h"

#if defined(_MSC_VER)
#pragma comment(lib, "advapi32.lib")
#endif

#define MS_WIN_SYNC_SEP L'#'
#define MS_WIN_NAME_BUF 1024   /* UTF-8 bytes of an object name we report */

#ifndef ERROR_DISK_QUOTA_EXCEEDED
#define ERROR_DISK_QUOTA_EXCEEDED 1295L   /* missing from some mingw-w64 headers */
#endif

/* ---- small helpers ------------------------------------------------------------------- */

static ms_status win_status(DWORD e, int *err)
{
    if (err) *err = (int)e;
    switch (e) {
    case ERROR_FILE_NOT_FOUND: case ERROR_PATH_NOT_FOUND: case ERROR_BAD_NETPATH:
        return MS_E_NOT_FOUND;
    case ERROR_ALREADY_EXISTS: case ERROR_FILE_EXISTS:
        return MS_E_EXISTS;
    case ERROR_ACCESS_DENIED: case ERROR_PRIVILEGE_NOT_HELD: case ERROR_WRITE_PROTECT:
    case ERROR_CANT_ACCESS_FILE: case ERROR_CANT_RESOLVE_FILENAME: case ERROR_NOT_A_REPARSE_POINT:
        return MS_E_PERMISSION;
    case ERROR_DISK_FULL: case ERROR_HANDLE_DISK_FULL: case ERROR_COMMITMENT_LIMIT:
    case ERROR_COMMITMENT_MINIMUM: case ERROR_NOT_ENOUGH_MEMORY: case ERROR_OUTOFMEMORY:
    case ERROR_NOT_ENOUGH_QUOTA: case ERROR_FILE_TOO_LARGE: case ERROR_DISK_QUOTA_EXCEEDED:
        return MS_E_NO_SPACE;
    case ERROR_INVALID_NAME: case ERROR_INVALID_PARAMETER: case ERROR_FILENAME_EXCED_RANGE:
    case ERROR_BAD_PATHNAME: case ERROR_DIRECTORY:
        return MS_E_INVALID;
    case ERROR_SHARING_VIOLATION: case ERROR_LOCK_VIOLATION: case ERROR_USER_MAPPED_FILE:
        return MS_E_IN_USE;
    default:
        return MS_E_OS;
    }
}

static ms_status last_status(int *err) { return win_status(GetLastError(), err); }

static ms_status set_err(ms_status st, DWORD e, int *err)
{
    if (err) *err = (int)e;
    return st;
}

/* UTF-8 -> UTF-16, with an optional wide prefix.  malloc'ed; NULL on failure. */
static wchar_t *widen(const wchar_t *prefix, const char *s)
{
    size_t plen = prefix ? wcslen(prefix) : 0;
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
    wchar_t *w;
    if (n <= 0)
        return NULL;
    w = (wchar_t *)malloc((plen + (size_t)n + 1) * sizeof(wchar_t));
    if (!w)
        return NULL;
    if (plen)
        memcpy(w, prefix, plen * sizeof(wchar_t));
    if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w + plen, n) <= 0) {
        free(w);
        return NULL;
    }
    return w;
}

/* "Local\name" from "/name"; NULL (with *st set) on a bad name. */
static wchar_t *object_name(const char *osname, unsigned flags, ms_status *st, int *err)
{
    wchar_t *w;
    if (!osname || !*osname) {
        *st = set_err(MS_E_INVALID, ERROR_INVALID_NAME, err);
        return NULL;
    }
    if (*osname == '/')
        osname++;
    /* '\' separates namespaces; '#' is reserved for our helper objects */
    if (!*osname || strchr(osname, '\\') || strchr(osname, '#') || strlen(osname) > 200) {
        *st = set_err(MS_E_INVALID, ERROR_INVALID_NAME, err);
        return NULL;
    }
    w = widen((flags & MS_OBJ_GLOBAL) ? L"Global\\" : L"Local\\", osname);
    if (!w)
        *st = set_err(MS_E_INVALID, ERROR_NO_UNICODE_TRANSLATION, err);
    return w;
}

#define MS_HI(v) ((DWORD)((uint64_t)(v) >> 32))
#define MS_LO(v) ((DWORD)((uint64_t)(v) & 0xFFFFFFFFu))

/* ---- security attributes ------------------------------------------------------------ */

/* Everything one SECURITY_ATTRIBUTES needs, in one block on the caller's stack. */
typedef struct ms_sa {
    SECURITY_ATTRIBUTES sa;
    SECURITY_DESCRIPTOR sd;
    union { TOKEN_USER tu; BYTE raw[sizeof(TOKEN_USER) + SECURITY_MAX_SID_SIZE]; } user;
    union { SID sid; BYTE raw[SECURITY_MAX_SID_SIZE]; } world;
    union { ACL acl; BYTE raw[sizeof(ACL) + 2 * (sizeof(ACCESS_ALLOWED_ACE) + SECURITY_MAX_SID_SIZE)]; } dacl;
} ms_sa;

static int current_user_sid(ms_sa *s)
{
    HANDLE tok;
    DWORD len = 0;
    BOOL ok;
    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok))
        return 0;
    ok = GetTokenInformation(tok, TokenUser, s->user.raw, (DWORD)sizeof s->user.raw, &len);
    CloseHandle(tok);
    return ok ? 1 : 0;
}

/* mode: POSIX-style bits.  0600-like => current user only; any group/other bit adds
 * Everyone: read (GENERIC_READ) or, with a write bit, read/write.  `sync` adds the
 * SYNCHRONIZE right, which waiting on a semaphore or mutex needs.  Generic rights are
 * mapped to each object type's specific rights by the kernel at creation. */
static ms_status make_sa(ms_sa *s, unsigned mode, int sync, int *err)
{
    DWORD extra = sync ? SYNCHRONIZE : 0;
    memset(s, 0, sizeof *s);
    if (!current_user_sid(s))
        return last_status(err);
    if (!InitializeAcl(&s->dacl.acl, (DWORD)sizeof s->dacl.raw, ACL_REVISION))
        return last_status(err);
    if (!AddAccessAllowedAce(&s->dacl.acl, ACL_REVISION, GENERIC_ALL | extra, s->user.tu.User.Sid))
        return last_status(err);
    if (mode & 0066) {
        DWORD sidlen = (DWORD)sizeof s->world.raw;
        DWORD mask = GENERIC_READ | extra;
        if (mode & 0022)
            mask |= GENERIC_WRITE;
        if (!CreateWellKnownSid(WinWorldSid, NULL, &s->world.sid, &sidlen))
            return last_status(err);
        if (!AddAccessAllowedAce(&s->dacl.acl, ACL_REVISION, mask, &s->world.sid))
            return last_status(err);
    }
    if (!InitializeSecurityDescriptor(&s->sd, SECURITY_DESCRIPTOR_REVISION))
        return last_status(err);
    if (!SetSecurityDescriptorDacl(&s->sd, TRUE, &s->dacl.acl, FALSE))
        return last_status(err);
    /* Protected: a file must not pick up inheritable ACEs of its directory. */
    SetSecurityDescriptorControl(&s->sd, SE_DACL_PROTECTED, SE_DACL_PROTECTED);
    s->sa.nLength = (DWORD)sizeof s->sa;
    s->sa.lpSecurityDescriptor = &s->sd;
    s->sa.bInheritHandle = FALSE;
    return MS_OK;
}

/* The mode equivalent of an existing object's DACL: 0600, 0644 or 0666 depending on
 * the ACE that grants Everyone (if any).  0600 when it cannot be read. */
static unsigned mode_of_object(HANDLE h)
{
    PACL dacl = NULL;
    PSECURITY_DESCRIPTOR sd = NULL;
    unsigned mode = 0600;
    BYTE world_raw[SECURITY_MAX_SID_SIZE];
    DWORD wlen = (DWORD)sizeof world_raw;
    ACL_SIZE_INFORMATION info;
    DWORD i;
    if (GetSecurityInfo(h, SE_KERNEL_OBJECT, DACL_SECURITY_INFORMATION, NULL, NULL, &dacl,
                        NULL, &sd) != ERROR_SUCCESS)
        return mode;
    if (!dacl) {
        mode = 0666;  /* a NULL DACL grants everyone everything */
    } else if (CreateWellKnownSid(WinWorldSid, NULL, (PSID)world_raw, &wlen) &&
               GetAclInformation(dacl, &info, (DWORD)sizeof info, AclSizeInformation)) {
        for (i = 0; i < info.AceCount; i++) {
            ACCESS_ALLOWED_ACE *ace;
            if (!GetAce(dacl, i, (LPVOID *)&ace) || ace->Header.AceType != ACCESS_ALLOWED_ACE_TYPE)
                continue;
            if (!EqualSid((PSID)&ace->SidStart, (PSID)world_raw))
                continue;
            if (ace->Mask & (SECTION_MAP_WRITE | GENERIC_WRITE | GENERIC_ALL))
                mode |= 0066;
            else if (ace->Mask & (SECTION_MAP_READ | GENERIC_READ))
                mode |= 0044;
        }
    }
    if (sd)
        LocalFree(sd);
    return mode;
}

/* ---- ntdll (looked up at run time) ------------------------------------------------ */

typedef struct ms_section_basic_information {
    PVOID BaseAddress;
    ULONG AllocationAttributes;
    LARGE_INTEGER MaximumSize;
} ms_section_basic_information;
typedef LONG (WINAPI *ms_NtQuerySection_fn)(HANDLE, int, PVOID, SIZE_T, PSIZE_T);
typedef LONG (WINAPI *ms_NtExtendSection_fn)(HANDLE, PLARGE_INTEGER);
typedef ULONG (WINAPI *ms_RtlNtStatusToDosError_fn)(LONG);

static FARPROC ntdll_proc(const char *name)
{
    HMODULE nt = GetModuleHandleW(L"ntdll.dll");
    return nt ? GetProcAddress(nt, name) : NULL;
}

static DWORD nt_to_win32(LONG status)
{
    ms_RtlNtStatusToDosError_fn f;
    *(FARPROC *)&f = ntdll_proc("RtlNtStatusToDosError");
    return f ? (DWORD)f(status) : ERROR_GEN_FAILURE;
}

/* Size of a section: NtQuerySection, else the region size of a whole view. */
static ms_status section_size(HANDLE h, uint64_t *size, int *err)
{
    ms_NtQuerySection_fn q;
    *(FARPROC *)&q = ntdll_proc("NtQuerySection");
    if (q) {
        ms_section_basic_information info;
        SIZE_T got = 0;
        LONG rc = q(h, 0 /* SectionBasicInformation */, &info, sizeof info, &got);
        if (rc >= 0) {
            *size = (uint64_t)info.MaximumSize.QuadPart;
            return MS_OK;
        }
    }
    {
        MEMORY_BASIC_INFORMATION mbi;
        void *p = MapViewOfFile(h, FILE_MAP_READ, 0, 0, 0);
        if (!p)
            return last_status(err);
        if (!VirtualQuery(p, &mbi, sizeof mbi)) {
            ms_status st = last_status(err);
            UnmapViewOfFile(p);
            return st;
        }
        *size = (uint64_t)mbi.RegionSize;
        UnmapViewOfFile(p);
        return MS_OK;
    }
}

/* ---- objects --------------------------------------------------------------------- */

static void init_object(ms_object *out, int writable)
{
    out->handle = MS_NO_HANDLE;
    out->file = MS_NO_HANDLE;
    out->size = 0;
    out->writable = writable;
}

/* Extend a new file to `size` and allocate its blocks, so that a full disk fails here. */
static ms_status extend_file(HANDLE f, uint64_t size, int *err)
{
    FILE_ALLOCATION_INFO alloc;
    FILE_END_OF_FILE_INFO eof;
    alloc.AllocationSize.QuadPart = (LONGLONG)size;
    if (!SetFileInformationByHandle(f, FileAllocationInfo, &alloc, sizeof alloc)) {
        DWORD e = GetLastError();
        /* not every filesystem supports it; a full disk is still an error */
        if (win_status(e, NULL) == MS_E_NO_SPACE)
            return win_status(e, err);
    }
    eof.EndOfFile.QuadPart = (LONGLONG)size;
    if (!SetFileInformationByHandle(f, FileEndOfFileInfo, &eof, sizeof eof))
        return last_status(err);
    return MS_OK;
}

ms_status ms_p_object_create(const char *osname, const char *path, uint64_t size,
                             unsigned mode, unsigned flags, ms_object *out, int *err)
{
    ms_status st = MS_OK;
    ms_sa sa;
    wchar_t *wname, *wpath = NULL;
    HANDLE file = INVALID_HANDLE_VALUE, map = NULL;
    DWORD e;

    init_object(out, 1);
    if (size == 0 || size > (uint64_t)INT64_MAX)
        return set_err(MS_E_INVALID, ERROR_INVALID_PARAMETER, err);
    wname = object_name(osname, flags, &st, err);
    if (!wname)
        return st;
    if ((st = make_sa(&sa, mode, 0, err)) != MS_OK)
        goto done;

    if (!path) {
        map = CreateFileMappingW(INVALID_HANDLE_VALUE, &sa.sa, PAGE_READWRITE | SEC_COMMIT,
                                 MS_HI(size), MS_LO(size), wname);
        e = GetLastError();
        if (!map) {
            /* a name held by an object of another type also means "taken" */
            st = win_status(e == ERROR_INVALID_HANDLE ? ERROR_ALREADY_EXISTS : e, err);
            goto done;
        }
        if (e == ERROR_ALREADY_EXISTS) {
            CloseHandle(map);   /* we opened someone else's object: let go of it */
            map = NULL;
            st = win_status(e, err);
            goto done;
        }
        out->handle = (ms_handle_t)map;
        out->size = size;
        goto done;
    }

    wpath = widen(NULL, path);
    if (!wpath) {
        st = set_err(MS_E_INVALID, ERROR_NO_UNICODE_TRANSLATION, err);
        goto done;
    }
    /* CREATE_NEW fails on any existing name, a symlink included (dangling or not), so
     * MS_OBJ_FOLLOW_SYMLINKS changes nothing here (as O_EXCL on POSIX). */
    file = CreateFileW(wpath, GENERIC_READ | GENERIC_WRITE,
                       FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, &sa.sa,
                       CREATE_NEW, FILE_ATTRIBUTE_NORMAL | FILE_FLAG_OPEN_REPARSE_POINT, NULL);
    if (file == INVALID_HANDLE_VALUE) {
        st = last_status(err);
        goto done;
    }
    if ((st = extend_file(file, size, err)) != MS_OK)
        goto fail_file;
    map = CreateFileMappingW(file, &sa.sa, PAGE_READWRITE, 0, 0, wname);
    e = GetLastError();
    if (!map) {
        st = win_status(e == ERROR_INVALID_HANDLE ? ERROR_ALREADY_EXISTS : e, err);
        goto fail_file;
    }
    if (e == ERROR_ALREADY_EXISTS) {
        CloseHandle(map);
        map = NULL;
        st = win_status(e, err);
        goto fail_file;
    }
    out->handle = (ms_handle_t)map;
    out->file = (ms_handle_t)file;
    out->size = size;
    goto done;

fail_file:
    /* nothing is left behind: the half-made file goes */
    CloseHandle(file);
    DeleteFileW(wpath);
done:
    free(wname);
    free(wpath);
    return st;
}

static ms_status open_path(const char *path, int writable, unsigned flags, ms_object *out,
                           int *err)
{
    wchar_t *wpath = widen(NULL, path);
    HANDLE file;
    BY_HANDLE_FILE_INFORMATION info;
    LARGE_INTEGER sz;
    DWORD fl = FILE_ATTRIBUTE_NORMAL;
    ms_status st;
    if (!wpath)
        return set_err(MS_E_INVALID, ERROR_NO_UNICODE_TRANSLATION, err);
    if (!(flags & MS_OBJ_FOLLOW_SYMLINKS))
        fl |= FILE_FLAG_OPEN_REPARSE_POINT;   /* open the link itself, then refuse it */
    file = CreateFileW(wpath, GENERIC_READ | (writable ? GENERIC_WRITE : 0),
                       FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                       OPEN_EXISTING, fl, NULL);
    free(wpath);
    if (file == INVALID_HANDLE_VALUE)
        return last_status(err);
    if (!GetFileInformationByHandle(file, &info)) {
        st = last_status(err);
        CloseHandle(file);
        return st;
    }
    if ((info.dwFileAttributes & (FILE_ATTRIBUTE_DIRECTORY | FILE_ATTRIBUTE_REPARSE_POINT)) ||
        GetFileType(file) != FILE_TYPE_DISK) {
        CloseHandle(file);
        return set_err(MS_E_PERMISSION, ERROR_CANT_ACCESS_FILE, err);
    }
    if (!GetFileSizeEx(file, &sz)) {
        st = last_status(err);
        CloseHandle(file);
        return st;
    }
    out->file = (ms_handle_t)file;
    out->size = (uint64_t)sz.QuadPart;
    /* An empty file cannot be mapped (ERROR_FILE_INVALID): leave handle unset; the
     * caller sees size 0 and stops there, and ms_p_map reports MS_E_INVALID. */
    if (sz.QuadPart > 0) {
        HANDLE map = CreateFileMappingW(file, NULL, writable ? PAGE_READWRITE : PAGE_READONLY,
                                        0, 0, NULL);
        if (!map) {
            st = last_status(err);
            CloseHandle(file);
            out->file = MS_NO_HANDLE;
            return st;
        }
        out->handle = (ms_handle_t)map;
    }
    return MS_OK;
}

ms_status ms_p_object_open(const char *osname, const char *path, int writable,
                           unsigned flags, ms_object *out, int *err)
{
    ms_status st = MS_OK;
    wchar_t *wname;
    HANDLE map;
    init_object(out, writable);
    if (path)
        return open_path(path, writable, flags, out, err);
    wname = object_name(osname, flags, &st, err);
    if (!wname)
        return st;
    /* SECTION_QUERY (== FILE_MAP_COPY) lets NtQuerySection read the size */
    map = OpenFileMappingW(FILE_MAP_READ | SECTION_QUERY | (writable ? FILE_MAP_WRITE : 0),
                           FALSE, wname);
    free(wname);
    if (!map) {
        DWORD e = GetLastError();
        /* the name belongs to an object of another type: not a segment */
        return win_status(e == ERROR_INVALID_HANDLE ? ERROR_FILE_NOT_FOUND : e, err);
    }
    if ((st = section_size(map, &out->size, err)) != MS_OK) {
        CloseHandle(map);
        return st;
    }
    out->handle = (ms_handle_t)map;
    return MS_OK;
}

void ms_p_object_close(ms_object *obj)
{
    if (obj->handle != MS_NO_HANDLE && obj->handle != 0)
        CloseHandle((HANDLE)obj->handle);
    if (obj->file != MS_NO_HANDLE && obj->file != 0)
        CloseHandle((HANDLE)obj->file);
    obj->handle = MS_NO_HANDLE;
    obj->file = MS_NO_HANDLE;
}

ms_status ms_p_object_unlink(const char *osname, unsigned flags, int *err)
{
    /* Windows names vanish with their last handle; nothing to remove. */
    (void)osname; (void)flags; (void)err;
    return MS_OK;
}

static int64_t filetime_to_unix_ns(FILETIME ft)
{
    uint64_t t = ((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
    /* 100 ns ticks since 1601-01-01 -> ns since 1970-01-01 */
    return ((int64_t)t - 116444736000000000LL) * 100;
}

/* ---- listing (ms_p_object_list, see platform.h) --------------------------------------
 *
 * Windows has no /dev/shm to list, so `mapshare ls`/`gc` and segments() need the OS to
 * enumerate names: the Section objects of the session's BaseNamedObjects directory
 * (\Sessions\<n>\BaseNamedObjects for Local\, \BaseNamedObjects for Global\ and for
 * session 0), read with NtQueryDirectoryObject; helper objects ('#') are skipped. */
static void join2(wchar_t *dst, const wchar_t *a, const wchar_t *b);

typedef struct ms_ustr { USHORT Length, MaximumLength; PWSTR Buffer; } ms_ustr;
typedef struct ms_objattr {
    ULONG Length; HANDLE RootDirectory; ms_ustr *ObjectName; ULONG Attributes;
    PVOID SecurityDescriptor; PVOID SecurityQualityOfService;
} ms_objattr;
typedef struct ms_dirinfo { ms_ustr Name; ms_ustr TypeName; } ms_dirinfo;
typedef LONG (WINAPI *ms_NtOpenDirectoryObject_fn)(PHANDLE, ACCESS_MASK, ms_objattr *);
typedef LONG (WINAPI *ms_NtQueryDirectoryObject_fn)(HANDLE, PVOID, ULONG, BOOLEAN, BOOLEAN,
                                                    PULONG, PULONG);

ms_status ms_p_object_list(unsigned flags, ms_list_fn fn, void *arg, int *err)
{
    ms_NtOpenDirectoryObject_fn nt_open;
    ms_NtQueryDirectoryObject_fn nt_query;
    wchar_t path[64];
    ms_ustr us;
    ms_objattr oa;
    HANDLE dir;
    DWORD session = 0;
    ULONG ctx = 0, got = 0;
    LONG rc;
    ms_status st = MS_OK;
    int restart = 1, stop = 0;
    union { ms_dirinfo first[2]; BYTE raw[4096]; } buf;
    *(FARPROC *)&nt_open = ntdll_proc("NtOpenDirectoryObject");
    *(FARPROC *)&nt_query = ntdll_proc("NtQueryDirectoryObject");
    if (!nt_open || !nt_query)
        return set_err(MS_E_OS, ERROR_PROC_NOT_FOUND, err);
    ProcessIdToSessionId(GetCurrentProcessId(), &session);
    if ((flags & MS_OBJ_GLOBAL) || session == 0) {
        join2(path, L"\\BaseNamedObjects", L"");
    } else {
        wchar_t num[12], *q = num + 11;
        *q = 0;
        do { *--q = (wchar_t)(L'0' + session % 10); session /= 10; } while (session);
        join2(path, L"\\Sessions\\", q);
        join2(path + wcslen(path), L"\\BaseNamedObjects", L"");
    }
    us.Buffer = path;
    us.Length = (USHORT)(wcslen(path) * sizeof(wchar_t));
    us.MaximumLength = (USHORT)(us.Length + sizeof(wchar_t));
    memset(&oa, 0, sizeof oa);
    oa.Length = sizeof oa;
    oa.ObjectName = &us;
    oa.Attributes = 0x40; /* OBJ_CASE_INSENSITIVE */
    rc = nt_open(&dir, 0x0001 /* DIRECTORY_QUERY */, &oa);
    if (rc < 0)
        return win_status(nt_to_win32(rc), err);
    while (!stop) {
        ms_dirinfo *e;
        /* one entry per call: Wine 8 implements only ReturnSingleEntry = TRUE */
        rc = nt_query(dir, &buf, sizeof buf, TRUE, (BOOLEAN)restart, &ctx, &got);
        restart = 0;
        if (rc < 0 || rc == (LONG)0x8000001AL /* STATUS_NO_MORE_ENTRIES */) {
            if (rc < 0 && rc != (LONG)0x8000001AL)
                st = win_status(nt_to_win32(rc), err);
            break;
        }
        e = &buf.first[0];
        if (e->Name.Buffer) {
            char name[MS_WIN_NAME_BUF];
            int n;
            if (e->TypeName.Length != 7 * sizeof(wchar_t) ||
                wcsncmp(e->TypeName.Buffer, L"Section", 7) != 0)
                continue;
            if (e->Name.Length < 9 * sizeof(wchar_t) || wcsncmp(e->Name.Buffer, L"mapshare.", 9) != 0)
                continue;
            for (n = 0; n < (int)(e->Name.Length / sizeof(wchar_t)); n++)
                if (e->Name.Buffer[n] == MS_WIN_SYNC_SEP)
                    break;
            if (n < (int)(e->Name.Length / sizeof(wchar_t)))
                continue;   /* one of our helper objects */
            name[0] = '/';
            n = WideCharToMultiByte(CP_UTF8, 0, e->Name.Buffer, (int)(e->Name.Length / sizeof(wchar_t)),
                                    name + 1, (int)sizeof name - 2, NULL, NULL);
            if (n <= 0)
                continue;
            name[n + 1] = 0;
            stop = fn(name, arg);
        }
    }
    CloseHandle(dir);
    return st;
}

/* ---- openers: a Windows name lives as long as any handle, whatever its access ---- */

ms_status ms_p_object_share(ms_object *obj, int *err)
{
    (void)obj; (void)err;
    return MS_OK;
}

void ms_p_object_unshare(ms_object *obj) { (void)obj; }

int ms_p_object_others(ms_object *obj)
{
    (void)obj;
    return 0;
}

ms_status ms_p_object_after_fork(ms_object *obj, int *err)
{
    (void)obj; (void)err;
    return MS_OK;
}

ms_status ms_p_object_reserve(const ms_object *obj, uint64_t offset, uint64_t length,
                              int *err)
{
    (void)obj; (void)offset; (void)length; (void)err;
    return MS_OK;
}

ms_status ms_p_remap(const ms_object *obj, void *addr, uint64_t offset, size_t length,
                     int access, int *err)
{
    (void)obj; (void)addr; (void)offset; (void)length; (void)access; (void)err;
    return MS_OK;
}

ms_status ms_p_object_openers(const ms_object *obj, uint32_t *pids, unsigned max,
                              unsigned *n, int *err)
{
    (void)obj; (void)pids; (void)max; (void)err;
    *n = 0;
    return MS_E_INVALID;
}

ms_status ms_p_object_stat(const ms_object *obj, ms_object_stat *st, int *err)
{
    memset(st, 0, sizeof *st);
    st->uid = 0;
    st->mode = 0600;
    if (obj->file != MS_NO_HANDLE) {
        BY_HANDLE_FILE_INFORMATION info;
        if (!GetFileInformationByHandle((HANDLE)obj->file, &info))
            return last_status(err);
        st->size = ((uint64_t)info.nFileSizeHigh << 32) | info.nFileSizeLow;
        st->dev = info.dwVolumeSerialNumber;
        st->ino = ((uint64_t)info.nFileIndexHigh << 32) | info.nFileIndexLow;
        st->mtime_ns = filetime_to_unix_ns(info.ftLastWriteTime);
        return MS_OK;
    }
    if (obj->handle == MS_NO_HANDLE)
        return set_err(MS_E_INVALID, ERROR_INVALID_HANDLE, err);
    return section_size((HANDLE)obj->handle, &st->size, err);
}

ms_status ms_p_object_truncate(ms_object *obj, uint64_t size, int *err)
{
    if (size <= obj->size)
        return MS_OK;   /* only growth is asked for; a section cannot shrink */
    if (obj->file == MS_NO_HANDLE) {
        /* A paging-file section has a fixed size. */
        return set_err(MS_E_INVALID, ERROR_NOT_SUPPORTED, err);
    }
    {
        ms_status st = extend_file((HANDLE)obj->file, size, err);
        if (st != MS_OK)
            return st;
    }
    if (obj->handle != MS_NO_HANDLE) {
        ms_NtExtendSection_fn ext;
        LARGE_INTEGER li;
        LONG rc;
        *(FARPROC *)&ext = ntdll_proc("NtExtendSection");
        if (!ext)
            return set_err(MS_E_OS, ERROR_PROC_NOT_FOUND, err);
        li.QuadPart = (LONGLONG)size;
        rc = ext((HANDLE)obj->handle, &li);
        if (rc < 0)
            return win_status(nt_to_win32(rc), err);
    }
    obj->size = size;
    return MS_OK;
}

/* ---- mappings -------------------------------------------------------------------- */

ms_status ms_p_map(const ms_object *obj, uint64_t offset, size_t length, int access,
                   void **addr, int *err)
{
    DWORD acc;
    void *p;
    switch (access) {
    case MS_ACCESS_READ:  acc = FILE_MAP_READ; break;
    case MS_ACCESS_WRITE: acc = FILE_MAP_WRITE; break;  /* read/write */
    case MS_ACCESS_COPY:  acc = FILE_MAP_COPY; break;
    default: return set_err(MS_E_INVALID, ERROR_INVALID_PARAMETER, err);
    }
    if (length == 0 || obj->handle == MS_NO_HANDLE || offset % ms_p_granularity() != 0)
        return set_err(MS_E_INVALID, ERROR_INVALID_PARAMETER, err);
    if (access == MS_ACCESS_WRITE && !obj->writable)
        return set_err(MS_E_PERMISSION, ERROR_ACCESS_DENIED, err);
    /* POSIX maps a whole last page past the end of a file (only pages wholly beyond it
     * fault); Windows refuses a view longer than the section, but maps the section's
     * last page whole.  So a request that ends inside the last page is shortened to the
     * section's end: the caller gets the same pages, and ms_p_unmap frees the view by
     * its base whatever the length. */
    if (obj->size && offset < obj->size && length > obj->size - offset) {
        uint64_t page = ms_p_page_size();
        uint64_t last = (obj->size + page - 1) / page * page;
        if (length <= last - offset)
            length = (size_t)(obj->size - offset);
    }
    p = MapViewOfFile((HANDLE)obj->handle, acc, MS_HI(offset), MS_LO(offset), length);
    if (!p) {
        DWORD e = GetLastError();
        /* Windows says ERROR_ACCESS_DENIED for a view past the end of the section */
        if ((e == ERROR_ACCESS_DENIED || e == ERROR_INVALID_PARAMETER) && obj->size &&
            (offset > obj->size || length > obj->size - offset))
            return set_err(MS_E_INVALID, e, err);
        return win_status(e, err);
    }
    *addr = p;
    return MS_OK;
}

void ms_p_unmap(void *addr, size_t length)
{
    MEMORY_BASIC_INFORMATION mbi;
    (void)length;
    if (!addr)
        return;
    if (!VirtualQuery(addr, &mbi, sizeof mbi))
        return;
    if (mbi.Type == MEM_MAPPED)
        UnmapViewOfFile(mbi.AllocationBase);
    else if (mbi.Type == MEM_PRIVATE && mbi.AllocationBase)
        VirtualFree(mbi.AllocationBase, 0, MEM_RELEASE);  /* quarantined (see below) */
}

/* dst = a + b (dst is large enough: checked by the caller) */
static void join2(wchar_t *dst, const wchar_t *a, const wchar_t *b)
{
    size_t la = wcslen(a), lb = wcslen(b);
    memcpy(dst, a, la * sizeof(wchar_t));
    memcpy(dst + la, b, (lb + 1) * sizeof(wchar_t));
}

/* FlushFileBuffers on the file behind a view when we hold no handle to it (a file-backed
 * segment opened by name): the file is found through its NT device path. */
static ms_status flush_file_of_view(void *addr, int *err)
{
    wchar_t dev[MAX_PATH + 32];
    wchar_t full[MAX_PATH + 64];
    HANDLE f;
    DWORD n = K32GetMappedFileNameW(GetCurrentProcess(), addr, dev, MAX_PATH + 32);
    if (n == 0) {
        DWORD e = GetLastError();
        /* a paging-file section has no file: nothing can be made durable, as on tmpfs */
        if (e == ERROR_FILE_INVALID || e == ERROR_UNEXP_NET_ERR || e == ERROR_INVALID_PARAMETER)
            return MS_OK;
        return win_status(e, err);
    }
    if (n >= MAX_PATH + 32)
        return set_err(MS_E_OS, ERROR_INSUFFICIENT_BUFFER, err);
    if (wcsncmp(dev, L"\\??\\", 4) == 0) {
        /* Wine answers with an object-manager DOS path, \??\C:\... */
        join2(full, L"\\\\?\\", dev + 4);
    } else {
        /* Windows answers with a device path, \Device\HarddiskVolume1\... */
        join2(full, L"\\\\?\\GLOBALROOT", dev);
    }
    f = CreateFileW(full, GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                    NULL, OPEN_EXISTING, 0, NULL);
    if (f == INVALID_HANDLE_VALUE)
        return last_status(err);
    if (!FlushFileBuffers(f)) {
        ms_status st = last_status(err);
        CloseHandle(f);
        return st;
    }
    CloseHandle(f);
    return MS_OK;
}

ms_status ms_p_flush(const ms_object *obj, void *addr, size_t length, int durable, int *err)
{
    if (addr && length && !FlushViewOfFile(addr, length))
        return last_status(err);
    if (!durable || !obj)
        return MS_OK;
    if (obj->file != MS_NO_HANDLE) {
        if (!FlushFileBuffers((HANDLE)obj->file)) {
            DWORD e = GetLastError();
            /* FlushFileBuffers needs GENERIC_WRITE: a read-only handle wrote nothing */
            if (e != ERROR_ACCESS_DENIED || obj->writable)
                return win_status(e, err);
        }
        return MS_OK;
    }
    if (addr && obj->writable)
        return flush_file_of_view(addr, err);
    return MS_OK;
}

static SYSTEM_INFO *sysinfo(void)
{
    static SYSTEM_INFO si;
    static volatile LONG done;
    if (!done) {
        SYSTEM_INFO tmp;
        GetSystemInfo(&tmp);
        si = tmp;
        MemoryBarrier();
        done = 1;
    }
    return &si;
}

size_t ms_p_page_size(void) { return (size_t)sysinfo()->dwPageSize; }
size_t ms_p_granularity(void) { return (size_t)sysinfo()->dwAllocationGranularity; }

const char *ms_p_name(void) { return "windows"; }

int ms_p_err_is_winerror(void) { return 1; }

/* ---- processes and clocks ---------------------------------------------------------- */

uint32_t ms_p_pid(void) { return (uint32_t)GetCurrentProcessId(); }
uint32_t ms_p_uid(void) { return 0; }

static uint64_t creation_time(HANDLE h)
{
    FILETIME c, x, k, u;
    uint64_t t;
    if (!GetProcessTimes(h, &c, &x, &k, &u))
        return 0;
    t = ((uint64_t)c.dwHighDateTime << 32) | c.dwLowDateTime;
    return t ? t : 1;
}

uint64_t ms_p_process_start(uint32_t pid)
{
    HANDLE h;
    uint64_t t;
    if (pid == 0)
        return 0;
    if (pid == GetCurrentProcessId())
        return creation_time(GetCurrentProcess());
    h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
    if (!h)
        return 0;
    t = creation_time(h);
    CloseHandle(h);
    return t;
}

int ms_p_process_alive(uint32_t pid, uint64_t start)
{
    HANDLE h;
    int alive;
    uint64_t now;
    if (pid == 0)
        return 0;
    if (pid == GetCurrentProcessId())
        return start == 0 || start == creation_time(GetCurrentProcess()) ? 1 : 0;
    h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | SYNCHRONIZE, FALSE, pid);
    if (!h)
        h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
    if (!h) {
        DWORD e = GetLastError();
        /* ERROR_INVALID_PARAMETER: no process has that id */
        return e == ERROR_INVALID_PARAMETER ? 0 : -1;
    }
    {
        /* A process object outlives its process while handles to it exist. */
        DWORD code = 0;
        DWORD w = WaitForSingleObject(h, 0);
        if (w == WAIT_OBJECT_0)
            alive = 0;
        else if (w == WAIT_TIMEOUT)
            alive = 1;
        else  /* no SYNCHRONIZE right: the exit code is the next best thing */
            alive = GetExitCodeProcess(h, &code) ? (code == STILL_ACTIVE ? 1 : 0) : -1;
    }
    if (alive == 1 && start) {
        now = creation_time(h);
        if (now == 0)
            alive = -1;
        else if (now != start)
            alive = 0;   /* the pid now names another process */
    }
    CloseHandle(h);
    return alive;
}

uint64_t ms_p_monotonic_ns(void)
{
    static LARGE_INTEGER freq;
    LARGE_INTEGER c;
    uint64_t f, v;
    if (freq.QuadPart == 0)
        QueryPerformanceFrequency(&freq);   /* fixed at boot; a racing double init is harmless */
    QueryPerformanceCounter(&c);
    f = (uint64_t)freq.QuadPart;
    v = (uint64_t)c.QuadPart;
    return v / f * 1000000000ULL + v % f * 1000000000ULL / f;
}

/* Faults outside a guarded call are not intercepted on Windows (an access violation
 * from a Python buffer would need a process-wide vectored handler that resumes Python
 * code); guarded calls are protected as on Linux. */
void ms_p_map_watch(void *addr, size_t length, volatile int *flag)
{
    (void)addr; (void)length; (void)flag;
}

void ms_p_map_unwatch(void *addr) { (void)addr; }

void ms_p_yield(void) { SwitchToThread(); }

uint64_t ms_p_realtime_ns(void)
{
    FILETIME ft;
    GetSystemTimePreciseAsFileTime(&ft);
    return (uint64_t)filetime_to_unix_ns(ft);
}

/* ---- plain files (platform.h) --------------------------------------------------------- */

static HANDLE fd_handle(int fd, int *err)
{
    HANDLE h = (HANDLE)_get_osfhandle(fd);
    if (h == INVALID_HANDLE_VALUE && err)
        *err = ERROR_INVALID_HANDLE;
    return h;
}

/* Write zeros over [from, to) of the file: where FileAllocationInfo is not supported
 * (Wine 8 answers ERROR_CALL_NOT_IMPLEMENTED and its SetEndOfFile makes a sparse file;
 * some file systems), blocks exist only once written.  Only for the journal's files,
 * whose size the caller chose (a segment of a few MiB, the 8 KiB meta file): a multi-GiB
 * file-backed segment is never filled this way. */
static ms_status zero_fill(HANDLE f, uint64_t from, uint64_t to, int *err)
{
    static char zeros[65536];   /* never written: .bss, not in the DLL file */
    while (from < to) {
        OVERLAPPED ov;
        DWORD n = (DWORD)(to - from < sizeof zeros ? to - from : sizeof zeros), done = 0;
        memset(&ov, 0, sizeof ov);
        ov.Offset = MS_LO(from);
        ov.OffsetHigh = MS_HI(from);
        if (!WriteFile(f, zeros, n, &done, &ov))
            return last_status(err);
        if (done == 0)
            return set_err(MS_E_NO_SPACE, ERROR_DISK_FULL, err);
        from += done;
    }
    return MS_OK;
}

ms_status ms_p_file_allocate(int fd, uint64_t size, int *err)
{
    FILE_ALLOCATION_INFO alloc;
    LARGE_INTEGER cur;
    HANDLE f = fd_handle(fd, err);
    if (f == INVALID_HANDLE_VALUE)
        return MS_E_INVALID;
    alloc.AllocationSize.QuadPart = (LONGLONG)size;
    if (!SetFileInformationByHandle(f, FileAllocationInfo, &alloc, sizeof alloc)) {
        DWORD e = GetLastError();
        ms_status st;
        if (win_status(e, NULL) == MS_E_NO_SPACE)
            return win_status(e, err);
        if (!GetFileSizeEx(f, &cur))
            return last_status(err);
        if ((uint64_t)cur.QuadPart < size &&
            (st = zero_fill(f, (uint64_t)cur.QuadPart, size, err)) != MS_OK)
            return st;
    }
    /* the end of file (SetEndOfFile): a no-op after a zero fill; shortens a longer file */
    return extend_file(f, size, err);
}

ms_status ms_p_file_lock(int fd, int exclusive, int *err)
{
    OVERLAPPED ov;
    HANDLE f = fd_handle(fd, err);
    if (f == INVALID_HANDLE_VALUE)
        return MS_E_INVALID;
    memset(&ov, 0, sizeof ov);   /* the range starts at offset 0 */
    if (exclusive ? LockFileEx(f, LOCKFILE_EXCLUSIVE_LOCK, 0, MAXDWORD, MAXDWORD, &ov)
                  : UnlockFileEx(f, 0, MAXDWORD, MAXDWORD, &ov))
        return MS_OK;
    return last_status(err);
}

ms_status ms_p_path_restrict(const char *path, unsigned mode, int *err)
{
    ms_sa sa;
    ms_status st;
    DWORD e;
    wchar_t *wpath = widen(NULL, path);
    if (!wpath)
        return set_err(MS_E_INVALID, ERROR_NO_UNICODE_TRANSLATION, err);
    if ((st = make_sa(&sa, mode, 0, err)) == MS_OK) {
        /* protected: the directory's inheritable ACEs no longer widen it */
        e = SetNamedSecurityInfoW(wpath, SE_FILE_OBJECT,
                                  DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                                  NULL, NULL, &sa.dacl.acl, NULL);
        if (e != ERROR_SUCCESS)
            st = win_status(e, err);
    }
    free(wpath);
    return st;
}

/* ---- waiting and waking ------------------------------------------------------------ */

/* The #c helper section: a shared open-addressing table from slot key to the number of
 * threads about to sleep or sleeping on that key.  Keys are stored as slot + 1 (0 =
 * empty) and never removed; the last entry is a shared overflow counter for a full
 * table (or slot 0xFFFFFFFF), where unrelated keys only cost spurious wake-ups.  Peers
 * can scribble here like anywhere in shared memory: the worst outcome is a spurious or a
 * missed wake-up, never a bad memory access (indices are computed locally). */
#define MS_COUNT_ENTRIES 8192u
#define MS_COUNTS_SIZE (MS_COUNT_ENTRIES * 8u)
#define MS_FAST_SLOTS 16u

typedef struct ms_count_entry {
    volatile LONG key;
    volatile LONG count;
} ms_count_entry;

/* Handles of one slot key (slots >= MS_FAST_SLOTS live in a list). */
typedef struct ms_slot_entry {
    unsigned slot;
    HANDLE volatile sem;
    HANDLE volatile mtx;
    volatile LONG *volatile count;
} ms_slot_entry;

struct ms_waitctx {
    wchar_t *base;                       /* "Local\mapshare.xxx" */
    unsigned mode;                       /* security of the helper objects */
    HANDLE counts_map;
    ms_count_entry *volatile counts;     /* view of the #c section, lazily */
    ms_slot_entry fast[MS_FAST_SLOTS];   /* the header's slots: no lock needed */
    SRWLOCK lock;                        /* protects more/nmore/cap */
    ms_slot_entry **more;
    size_t nmore, cap;
};

ms_status ms_p_waitctx_open(const char *osname, unsigned flags, ms_waitctx **out, int *err)
{
    ms_status st = MS_OK;
    ms_waitctx *ctx;
    HANDLE seg;
    unsigned i;
    wchar_t *base = NULL;
    /* An object opened by path alone (osname ""), e.g. to peek at a file's header, has
     * no name to derive the helper objects from: its context refuses to wait or lock
     * (MS_E_INVALID) instead of silently working for this process only. */
    if (osname && *osname && !(base = object_name(osname, flags, &st, err)))
        return st;
    ctx = (ms_waitctx *)calloc(1, sizeof *ctx);
    if (!ctx) {
        free(base);
        return set_err(MS_E_NO_SPACE, ERROR_NOT_ENOUGH_MEMORY, err);
    }
    ctx->base = base;
    ctx->mode = 0600;
    InitializeSRWLock(&ctx->lock);
    for (i = 0; i < MS_FAST_SLOTS; i++)
        ctx->fast[i].slot = i;
    /* Give the helper objects the segment's audience (see the top of the file). */
    seg = base ? OpenFileMappingW(READ_CONTROL, FALSE, base) : NULL;
    if (seg) {
        ctx->mode = mode_of_object(seg);
        CloseHandle(seg);
    }
    *out = ctx;
    return MS_OK;
}

static void close_entry(ms_slot_entry *e)
{
    if (e->sem) CloseHandle(e->sem);
    if (e->mtx) CloseHandle(e->mtx);
}

void ms_p_waitctx_close(ms_waitctx *ctx)
{
    size_t i;
    if (!ctx)
        return;
    for (i = 0; i < MS_FAST_SLOTS; i++)
        close_entry(&ctx->fast[i]);
    for (i = 0; i < ctx->nmore; i++) {
        close_entry(ctx->more[i]);
        free(ctx->more[i]);
    }
    free(ctx->more);
    if (ctx->counts) UnmapViewOfFile((LPCVOID)ctx->counts);
    if (ctx->counts_map) CloseHandle(ctx->counts_map);
    free(ctx->base);
    free(ctx);
}

/* The local entry of a slot key, created on first use; NULL only without memory. */
static ms_slot_entry *slot_entry(ms_waitctx *ctx, unsigned slot)
{
    ms_slot_entry *e = NULL;
    size_t i;
    if (slot < MS_FAST_SLOTS)
        return &ctx->fast[slot];
    AcquireSRWLockShared(&ctx->lock);
    for (i = 0; i < ctx->nmore; i++)
        if (ctx->more[i]->slot == slot) {
            e = ctx->more[i];
            break;
        }
    ReleaseSRWLockShared(&ctx->lock);
    if (e)
        return e;
    AcquireSRWLockExclusive(&ctx->lock);
    for (i = 0; i < ctx->nmore; i++)
        if (ctx->more[i]->slot == slot) {
            e = ctx->more[i];
            break;
        }
    if (!e && ctx->nmore == ctx->cap) {
        size_t cap = ctx->cap ? ctx->cap * 2 : 8;
        ms_slot_entry **more = (ms_slot_entry **)realloc(ctx->more, cap * sizeof *more);
        if (more) {
            ctx->more = more;
            ctx->cap = cap;
        }
    }
    if (!e && ctx->nmore < ctx->cap) {
        e = (ms_slot_entry *)calloc(1, sizeof *e);
        if (e) {
            e->slot = slot;
            ctx->more[ctx->nmore++] = e;
        }
    }
    ReleaseSRWLockExclusive(&ctx->lock);
    return e;
}

/* base + "#" + kind + slot in hex */
static wchar_t *helper_name(const ms_waitctx *ctx, wchar_t kind, int with_slot, unsigned slot)
{
    size_t n;
    wchar_t *w, *p;
    int shift, started = 0;
    if (!ctx->base)
        return NULL;
    n = wcslen(ctx->base);
    if (!(w = (wchar_t *)malloc((n + 16) * sizeof(wchar_t))))
        return NULL;
    memcpy(w, ctx->base, n * sizeof(wchar_t));
    p = w + n;
    *p++ = MS_WIN_SYNC_SEP;
    *p++ = kind;
    if (with_slot) {
        for (shift = 28; shift >= 0; shift -= 4) {
            unsigned d = (slot >> shift) & 0xFu;
            if (d || started || shift == 0) {
                *p++ = (wchar_t)(d < 10 ? L'0' + d : L'a' + d - 10);
                started = 1;
            }
        }
    }
    *p = 0;
    return w;
}

/* Publish a lazily created handle; the loser of a race closes its own. */
static HANDLE publish(HANDLE volatile *where, HANDLE h)
{
    HANDLE prev = (HANDLE)InterlockedCompareExchangePointer((PVOID volatile *)where, h, NULL);
    if (prev) {
        CloseHandle(h);
        return prev;
    }
    return h;
}

static HANDLE get_sem(ms_waitctx *ctx, ms_slot_entry *e, int *err)
{
    HANDLE h = e->sem;
    ms_sa sa;
    wchar_t *name;
    if (h)
        return h;
    if (make_sa(&sa, ctx->mode, 1, err) != MS_OK)
        return NULL;
    if (!(name = helper_name(ctx, L'w', 1, e->slot)))
        return NULL;
    h = CreateSemaphoreExW(&sa.sa, 0, MAXLONG, name, 0, SYNCHRONIZE | SEMAPHORE_MODIFY_STATE);
    if (!h && err) *err = (int)GetLastError();
    free(name);
    return h ? publish(&e->sem, h) : NULL;
}

static HANDLE get_mutex(ms_waitctx *ctx, ms_slot_entry *e, int *err)
{
    HANDLE h = e->mtx;
    ms_sa sa;
    wchar_t *name;
    if (h)
        return h;
    if (make_sa(&sa, ctx->mode, 1, err) != MS_OK)
        return NULL;
    if (!(name = helper_name(ctx, L'l', 1, e->slot)))
        return NULL;
    h = CreateMutexExW(&sa.sa, name, 0, SYNCHRONIZE | MUTEX_MODIFY_STATE);
    if (!h && err) *err = (int)GetLastError();
    free(name);
    return h ? publish(&e->mtx, h) : NULL;
}

static ms_count_entry *get_counts(ms_waitctx *ctx, int *err)
{
    ms_count_entry *c = ctx->counts;
    HANDLE map;
    void *view;
    ms_sa sa;
    wchar_t *name;
    if (c)
        return c;
    if (make_sa(&sa, ctx->mode, 0, err) != MS_OK)
        return NULL;
    if (!(name = helper_name(ctx, L'c', 0, 0)))
        return NULL;
    map = CreateFileMappingW(INVALID_HANDLE_VALUE, &sa.sa, PAGE_READWRITE | SEC_COMMIT, 0,
                             MS_COUNTS_SIZE, name);
    if (!map && err) *err = (int)GetLastError();
    free(name);
    if (!map)
        return NULL;
    view = MapViewOfFile(map, FILE_MAP_WRITE, 0, 0, MS_COUNTS_SIZE);
    if (!view) {
        if (err) *err = (int)GetLastError();
        CloseHandle(map);
        return NULL;
    }
    if (InterlockedCompareExchangePointer((PVOID volatile *)&ctx->counts, view, NULL) != NULL) {
        UnmapViewOfFile(view);
        CloseHandle(map);
        return ctx->counts;
    }
    ctx->counts_map = map;   /* only the winner stores it; closed in waitctx_close */
    return (ms_count_entry *)view;
}

/* The shared waiter counter of a slot key (claimed in the table on first use). */
static volatile LONG *get_count(ms_waitctx *ctx, ms_slot_entry *e, int *err)
{
    volatile LONG *cnt = e->count;
    ms_count_entry *tab;
    LONG key;
    unsigned h, i;
    if (cnt)
        return cnt;
    if (!(tab = get_counts(ctx, err)))
        return NULL;
    cnt = &tab[MS_COUNT_ENTRIES - 1].count;   /* overflow */
    key = (LONG)(e->slot + 1u);
    if (key != 0) {
        h = (e->slot * 2654435761u) >> 19;    /* 13 bits */
        for (i = 0; i < MS_COUNT_ENTRIES - 1; i++) {
            ms_count_entry *c = &tab[(h + i) % (MS_COUNT_ENTRIES - 1)];
            LONG k = InterlockedCompareExchange(&c->key, key, 0);
            if (k == 0 || k == key) {
                cnt = &c->count;
                break;
            }
        }
    }
    InterlockedCompareExchangePointer((PVOID volatile *)&e->count, (PVOID)cnt, NULL);
    return cnt;
}

/* ns -> ms for WaitForSingleObject, rounding up; *clamped when the wait is shortened. */
static DWORD timeout_ms(int64_t timeout_ns, int *clamped)
{
    uint64_t ms;
    *clamped = 0;
    if (timeout_ns < 0)
        return INFINITE;
    ms = ((uint64_t)timeout_ns + 999999u) / 1000000u;
    if (ms >= (uint64_t)INFINITE) {
        *clamped = 1;
        return INFINITE - 1;
    }
    return (DWORD)ms;
}

ms_status ms_p_wait32(ms_waitctx *ctx, unsigned slot, volatile uint32_t *word,
                      uint32_t expected, int64_t timeout_ns)
{
    int e = 0, clamped;
    ms_slot_entry *ent;
    HANDLE sem;
    volatile LONG *cnt;
    DWORD ms, r;
    if (!ctx || !ctx->base)
        return MS_E_INVALID;
    if (ms_load32(word) != expected)
        return MS_OK;
    if (!(ent = slot_entry(ctx, slot)))
        return MS_E_NO_SPACE;
    sem = get_sem(ctx, ent, &e);
    cnt = get_count(ctx, ent, &e);
    if (!sem || !cnt)
        return MS_E_OS;
    InterlockedIncrement(cnt);              /* full barrier */
    if (ms_load32(word) != expected) {
        InterlockedDecrement(cnt);
        return MS_OK;
    }
    ms = timeout_ms(timeout_ns, &clamped);
    r = WaitForSingleObject(sem, ms);
    InterlockedDecrement(cnt);
    switch (r) {
    case WAIT_OBJECT_0: return MS_OK;
    case WAIT_TIMEOUT: return clamped ? MS_OK : MS_E_TIMEOUT;
    default: return MS_E_OS;
    }
}

int ms_p_wake32(ms_waitctx *ctx, unsigned slot, volatile uint32_t *word, int all)
{
    ms_slot_entry *ent;
    volatile LONG *cnt;
    HANDLE sem;
    LONG n;
    (void)word;
    if (!ctx || !ctx->base || !(ent = slot_entry(ctx, slot)))
        return -1;
    MemoryBarrier();   /* order the caller's store to *word before reading the count */
    if (!(cnt = get_count(ctx, ent, NULL)))
        return -1;
    n = InterlockedCompareExchange(cnt, 0, 0);
    if (n <= 0)
        return 0;    /* nobody sleeps on this slot: woke nobody.  (The count section goes
                      * with its last handle, so a sleeper killed while nobody else had it
                      * open takes its count along: callers then learn here that the
                      * sleepers their own counts name are gone.) */
    if (n > 65536)
        n = 65536;   /* a scribbled count must not exhaust the semaphore's range */
    if ((sem = get_sem(ctx, ent, NULL)) == NULL)
        return -1;
    {
        LONG prev = 0;
        if (!ReleaseSemaphore(sem, all ? n : 1, &prev)) {
            ReleaseSemaphore(sem, 1, NULL);  /* near MAXLONG tokens: at least one more */
            return -1;
        }
        /* A release does not say whom it woke, but tokens left over from an earlier one
         * mean that nobody took them: the count names sleepers that are not there (a
         * waiter killed in its sleep never decrements it).  Say "woke nobody" then, so
         * that callers repair the count (channel.c looks for dead sleepers after several);
         * a token left by a waiter that timed out only costs such a check. */
        return prev > 0 ? 0 : -1;
    }
}

size_t ms_p_wait_many_max(void) { return MAXIMUM_WAIT_OBJECTS; }

/* As ms_p_wait32 for several words: count in on each distinct slot's semaphore, look at
 * every word, then sleep on all the semaphores at once.  Words of one context and slot
 * share a semaphore, which WaitForMultipleObjects may hold only once.  A token taken
 * from one semaphore leaves the others' tokens (released for us too) behind: spurious
 * wake-ups for later waits, which the contract allows. */
ms_status ms_p_wait32_many(const ms_wait_word *w, size_t n, int64_t timeout_ns)
{
    HANDLE sems[MAXIMUM_WAIT_OBJECTS];
    volatile LONG *cnts[MAXIMUM_WAIT_OBJECTS];
    size_t i, j, k = 0;
    int e = 0, clamped;
    DWORD ms, r;
    ms_status st = MS_OK;
    if (n == 0 || n > MAXIMUM_WAIT_OBJECTS)
        return MS_E_INVALID;
    for (i = 0; i < n; i++) {
        ms_slot_entry *ent;
        HANDLE sem;
        volatile LONG *cnt;
        if (!w[i].ctx || !w[i].ctx->base)
            return MS_E_INVALID;
        if (ms_load32(w[i].word) != w[i].expected)
            return MS_OK;
        if (!(ent = slot_entry(w[i].ctx, w[i].slot)))
            return MS_E_NO_SPACE;
        sem = get_sem(w[i].ctx, ent, &e);
        cnt = get_count(w[i].ctx, ent, &e);
        if (!sem || !cnt)
            return MS_E_OS;
        for (j = 0; j < k; j++)
            if (sems[j] == sem)
                break;
        if (j == k) {
            sems[k] = sem;
            cnts[k] = cnt;
            k++;
        }
    }
    for (j = 0; j < k; j++)
        InterlockedIncrement(cnts[j]);      /* full barriers */
    for (i = 0; i < n; i++)
        if (ms_load32(w[i].word) != w[i].expected)
            goto out;
    ms = timeout_ms(timeout_ns, &clamped);
    r = WaitForMultipleObjects((DWORD)k, sems, FALSE, ms);
    if (r < WAIT_OBJECT_0 + k)
        st = MS_OK;
    else if (r == WAIT_TIMEOUT)
        st = clamped ? MS_OK : MS_E_TIMEOUT;
    else
        st = MS_E_OS;
out:
    for (j = 0; j < k; j++)
        InterlockedDecrement(cnts[j]);
    return st;
}

/* ---- robust lock ------------------------------------------------------------------- */

/* What the 64-byte shared area holds on Windows (the holder, see "Locks" above). */
typedef struct ms_win_lock {
    volatile LONG held;      /* 1 while a thread holds the mutex */
    volatile LONG pid;       /* holder process id */
    volatile LONG tid;       /* holder thread id */
    volatile LONG reserved;
    volatile LONG64 start;   /* holder process creation time (ms_p_process_start) */
} ms_win_lock;

static uint64_t self_start(void)
{
    static volatile LONG64 cached;
    if (!cached)
        cached = (LONG64)creation_time(GetCurrentProcess());
    return (uint64_t)cached;
}

static void record_holder(ms_win_lock *l)
{
    InterlockedExchange(&l->pid, (LONG)GetCurrentProcessId());
    InterlockedExchange(&l->tid, (LONG)GetCurrentThreadId());
    InterlockedExchange64(&l->start, (LONG64)self_start());
    InterlockedExchange(&l->held, 1);
}

static int held_by_me(ms_win_lock *l)
{
    return InterlockedCompareExchange(&l->held, 0, 0) == 1 &&
           (DWORD)InterlockedCompareExchange(&l->pid, 0, 0) == GetCurrentProcessId() &&
           (DWORD)InterlockedCompareExchange(&l->tid, 0, 0) == GetCurrentThreadId();
}

ms_status ms_p_lock_init(void *area, int *err)
{
    (void)err;
    memset(area, 0, MS_LOCK_AREA);
    MemoryBarrier();
    return MS_OK;
}

ms_status ms_p_lock_acquire(ms_waitctx *ctx, unsigned slot, void *area, int64_t timeout_ns,
                            int *err)
{
    ms_win_lock *l = (ms_win_lock *)area;
    int e = 0, clamped;
    HANDLE m;
    DWORD r, ms;
    ms_slot_entry *ent;
    if (!ctx || !ctx->base)
        return set_err(MS_E_INVALID, ERROR_INVALID_PARAMETER, err);
    if (!(ent = slot_entry(ctx, slot)))
        return set_err(MS_E_NO_SPACE, ERROR_NOT_ENOUGH_MEMORY, err);
    m = get_mutex(ctx, ent, &e);
    if (!m)
        return win_status((DWORD)e, err);
    ms = timeout_ms(timeout_ns, &clamped);
    for (;;) {
        r = WaitForSingleObject(m, ms);
        if (r != WAIT_TIMEOUT || !clamped)
            break;
    }
    switch (r) {
    case WAIT_OBJECT_0:
        if (held_by_me(l)) {
            /* Windows mutexes are recursive; the Linux lock is not: refuse, like EDEADLK */
            ReleaseMutex(m);
            return set_err(MS_E_ALREADY_HELD, ERROR_POSSIBLE_DEADLOCK, err);
        }
        if (InterlockedCompareExchange(&l->held, 0, 0) != 0) {
            /* The shared area still names a holder although we own the mutex: that
             * holder never released (release clears it before ReleaseMutex), so it died
             * holding the lock.  Windows reports WAIT_ABANDONED only while the mutex
             * object lives on; when the dead holder had the last handle to it, the
             * object went with it and we just created a fresh one. */
            record_holder(l);
            return MS_E_OWNER_DIED;
        }
        record_holder(l);
        return MS_OK;
    case WAIT_ABANDONED:
        record_holder(l);
        return MS_E_OWNER_DIED;
    case WAIT_TIMEOUT:
        return MS_E_TIMEOUT;
    default:
        return last_status(err);
    }
}

ms_status ms_p_lock_release(ms_waitctx *ctx, unsigned slot, void *area, int *err)
{
    ms_win_lock *l = (ms_win_lock *)area;
    HANDLE m;
    ms_slot_entry *ent;
    if (!ctx || !ctx->base)
        return set_err(MS_E_INVALID, ERROR_INVALID_PARAMETER, err);
    if (!(ent = slot_entry(ctx, slot)))
        return set_err(MS_E_NO_SPACE, ERROR_NOT_ENOUGH_MEMORY, err);
    m = ent->mtx;
    if (!m)   /* never acquired through this segment handle: cannot be ours... */
        m = get_mutex(ctx, ent, err);   /* ...unless through another handle of it */
    if (!m)
        return set_err(MS_E_NOT_OWNER, ERROR_NOT_OWNER, err);
    if (held_by_me(l)) {
        InterlockedExchange(&l->held, 0);
        InterlockedExchange(&l->tid, 0);
        InterlockedExchange(&l->pid, 0);
        InterlockedExchange64(&l->start, 0);
    }
    if (!ReleaseMutex(m)) {
        DWORD e = GetLastError();
        if (e == ERROR_NOT_OWNER)
            return set_err(MS_E_NOT_OWNER, e, err);
        return win_status(e, err);
    }
    return MS_OK;
}

void ms_p_lock_inspect(void *area, int *held, uint32_t *holder, int *dead)
{
    ms_win_lock *l = (ms_win_lock *)area;
    uint32_t pid = (uint32_t)InterlockedCompareExchange(&l->pid, 0, 0);
    uint64_t start = (uint64_t)InterlockedCompareExchange64(&l->start, 0, 0);
    *held = InterlockedCompareExchange(&l->held, 0, 0) != 0;
    *holder = *held ? (uint32_t)InterlockedCompareExchange(&l->tid, 0, 0) : 0;
    *dead = *held && pid && ms_p_process_alive(pid, start) == 0;
}

/* ---- faults ------------------------------------------------------------------------ */

/* Is this exception "the mapping's storage went away"?  EXCEPTION_IN_PAGE_ERROR is what
 * Windows raises.  Wine raises EXCEPTION_ACCESS_VIOLATION instead (it turns the host's
 * SIGBUS into a page fault), so an access violation also counts when it hit a committed
 * page of a mapped view whose protection allows that very access: such an access can
 * only fail because the backing store vanished.  A write to a read-only view, a guard
 * page or an unmapped address is a bug and is left alone. */
static int fault_is_ours(const EXCEPTION_RECORD *rec)
{
    MEMORY_BASIC_INFORMATION mbi;
    DWORD prot;
    if (rec->ExceptionCode == EXCEPTION_IN_PAGE_ERROR)
        return 1;
    if (rec->ExceptionCode != EXCEPTION_ACCESS_VIOLATION || rec->NumberParameters < 2)
        return 0;
    if (!VirtualQuery((LPCVOID)rec->ExceptionInformation[1], &mbi, sizeof mbi))
        return 0;
    if (mbi.Type != MEM_MAPPED || mbi.State != MEM_COMMIT)
        return 0;
    prot = mbi.Protect & 0xFF;
    if (mbi.Protect & (PAGE_GUARD | PAGE_NOACCESS))
        return 0;
    switch (rec->ExceptionInformation[0]) {
    case 0:   /* read */
        return prot == PAGE_READONLY || prot == PAGE_READWRITE || prot == PAGE_WRITECOPY ||
               prot == PAGE_EXECUTE_READ || prot == PAGE_EXECUTE_READWRITE ||
               prot == PAGE_EXECUTE_WRITECOPY;
    case 1:   /* write */
        return prot == PAGE_READWRITE || prot == PAGE_WRITECOPY ||
               prot == PAGE_EXECUTE_READWRITE || prot == PAGE_EXECUTE_WRITECOPY;
    default:  /* execute (DEP) */
        return 0;
    }
}

#if defined(_MSC_VER)

ms_status ms_p_guarded_call(ms_guarded_fn fn, void *arg)
{
    __try {
        return fn(arg);
    } __except (fault_is_ours(GetExceptionInformation()->ExceptionRecord)
                    ? EXCEPTION_EXECUTE_HANDLER : EXCEPTION_CONTINUE_SEARCH) {
        return MS_E_FAULT;
    }
}

#elif defined(__GNUC__) && defined(__x86_64__)

static DWORD guard_tls = TLS_OUT_OF_INDEXES;
static INIT_ONCE guard_once = INIT_ONCE_STATIC_INIT;

static LONG CALLBACK guard_handler(PEXCEPTION_POINTERS ep)
{
    DWORD saved;
    jmp_buf *jb;
    _JUMP_BUFFER *b;
    CONTEXT *c;
    if (guard_tls == TLS_OUT_OF_INDEXES)
        return EXCEPTION_CONTINUE_SEARCH;
    saved = GetLastError();   /* TlsGetValue clears it */
    jb = (jmp_buf *)TlsGetValue(guard_tls);
    SetLastError(saved);
    if (!jb || !fault_is_ours(ep->ExceptionRecord))
        return EXCEPTION_CONTINUE_SEARCH;
    /* Resume as if setjmp(*jb) returned 1 (what longjmp would do). */
    b = (_JUMP_BUFFER *)jb;
    c = ep->ContextRecord;
    c->Rbx = b->Rbx; c->Rsp = b->Rsp; c->Rbp = b->Rbp; c->Rsi = b->Rsi; c->Rdi = b->Rdi;
    c->R12 = b->R12; c->R13 = b->R13; c->R14 = b->R14; c->R15 = b->R15;
    c->Rip = b->Rip;
    c->Rax = 1;
    c->MxCsr = b->MxCsr;
    memcpy(&c->Xmm6, &b->Xmm6, 16); memcpy(&c->Xmm7, &b->Xmm7, 16);
    memcpy(&c->Xmm8, &b->Xmm8, 16); memcpy(&c->Xmm9, &b->Xmm9, 16);
    memcpy(&c->Xmm10, &b->Xmm10, 16); memcpy(&c->Xmm11, &b->Xmm11, 16);
    memcpy(&c->Xmm12, &b->Xmm12, 16); memcpy(&c->Xmm13, &b->Xmm13, 16);
    memcpy(&c->Xmm14, &b->Xmm14, 16); memcpy(&c->Xmm15, &b->Xmm15, 16);
    return EXCEPTION_CONTINUE_EXECUTION;
}

static BOOL CALLBACK guard_init(PINIT_ONCE once, PVOID param, PVOID *context)
{
    (void)once; (void)param; (void)context;
    guard_tls = TlsAlloc();
    if (guard_tls == TLS_OUT_OF_INDEXES)
        return FALSE;
    /* first in the chain: ahead of Python's faulthandler, which would print a report */
    if (!AddVectoredExceptionHandler(1, guard_handler)) {
        TlsFree(guard_tls);
        guard_tls = TLS_OUT_OF_INDEXES;
        return FALSE;
    }
    return TRUE;
}

ms_status ms_p_guarded_call(ms_guarded_fn fn, void *arg)
{
    jmp_buf jb;
    void *volatile outer;
    volatile ms_status st;
    if (!InitOnceExecuteOnce(&guard_once, guard_init, NULL, NULL))
        return fn(arg);   /* cannot guard: run unguarded rather than not at all */
    outer = TlsGetValue(guard_tls);
    if (setjmp(jb) != 0) {
        TlsSetValue(guard_tls, outer);
        return MS_E_FAULT;
    }
    TlsSetValue(guard_tls, &jb);
    st = fn(arg);
    TlsSetValue(guard_tls, outer);
    return st;
}

#else
/* No SEH and no known jmp_buf layout: run unguarded (a fault then ends the process). */
ms_status ms_p_guarded_call(ms_guarded_fn fn, void *arg)
{
    return fn(arg);
}
#endif

struct copy_args { void *dst; const void *src; size_t n; };

static ms_status copy_fn(void *arg)
{
    struct copy_args *a = (struct copy_args *)arg;
    memcpy(a->dst, a->src, a->n);
    return MS_OK;
}

ms_status ms_p_guarded_copy(void *dst, const void *src, size_t n)
{
    struct copy_args a;
    a.dst = dst;
    a.src = src;
    a.n = n;
    return ms_p_guarded_call(copy_fn, &a);
}

void ms_p_quarantine(void *addr, size_t length)
{
    /* Replace the view with private zeroed memory at the same address, so that stale
     * pointers stay valid memory.  Not atomic (Windows 10's placeholders could make it
     * so, but Wine 8 lacks MapViewOfFile3): another thread could take the range in
     * between, in which case the range is simply left unmapped. */
    MEMORY_BASIC_INFORMATION mbi;
    char *base;
    size_t span;
    if (!addr || !length || !VirtualQuery(addr, &mbi, sizeof mbi) || mbi.Type != MEM_MAPPED)
        return;
    base = (char *)mbi.AllocationBase;
    span = length + (size_t)((char *)addr - base);
    if (!UnmapViewOfFile(base))
        return;
    VirtualAlloc(base, span, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
}
