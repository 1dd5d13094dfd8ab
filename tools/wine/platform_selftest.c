/* Plain-C self-test of csrc/platform/windows.c, across real Windows processes.
 *
 * Built by `python3 tools/wine/build.py --selftest` and run under Wine by
 * tools/wine/run-selftest.sh (it also works on real Windows).  No Python involved.
 *
 *   platform_selftest.exe                 run every test (spawns copies of itself)
 *   platform_selftest.exe fault PATH      the SIGBUS/EXCEPTION_IN_PAGE_ERROR test: create
 *                                         PATH, print READY, wait until someone truncates
 *                                         the file from outside (the Linux side), then read
 *   platform_selftest.exe child-* ...     roles used by the parent
 *
 * Exit status 0 when every check passed.
 */
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0A00
#endif
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/platform.h"
#include "layout.h"
#include "atomics.h"

static int failures, checks;

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        checks++;                                                                     \
        if (!(cond)) {                                                                \
            failures++;                                                               \
            printf("  FAIL %s:%d: %s -- ", __FILE__, __LINE__, #cond);               \
            printf(__VA_ARGS__);                                                      \
            printf("\n");                                                             \
            fflush(stdout);                                                           \
        }                                                                             \
    } while (0)

#define SECTION(name) do { printf("[%s]\n", name); fflush(stdout); } while (0)

static char base_name[64];

static void make_name(char *out, size_t n, const char *tag)
{
    snprintf(out, n, "/mapshare.selftest.%lu.%s", (unsigned long)GetCurrentProcessId(), tag);
}

/* Start a copy of this program with the given arguments; returns the process handle. */
static HANDLE spawn(const char *args, DWORD *pid)
{
    wchar_t exe[MAX_PATH], cmd[1024];
    STARTUPINFOW si;
    PROCESS_INFORMATION pi;
    GetModuleFileNameW(NULL, exe, MAX_PATH);
    _snwprintf(cmd, 1024, L"\"%ls\" %hs", exe, args);
    cmd[1023] = 0;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    si.dwFlags = STARTF_USESTDHANDLES;
    si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
    si.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE);
    si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
    if (!CreateProcessW(exe, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi)) {
        printf("  CreateProcess failed: %lu\n", GetLastError());
        return NULL;
    }
    CloseHandle(pi.hThread);
    if (pid) *pid = pi.dwProcessId;
    return pi.hProcess;
}

static DWORD join(HANDLE h, DWORD ms)
{
    DWORD code = 0xDEAD;
    if (!h) return code;
    if (WaitForSingleObject(h, ms) != WAIT_OBJECT_0) {
        TerminateProcess(h, 99);
        WaitForSingleObject(h, 5000);
        printf("  child timed out\n");
    }
    GetExitCodeProcess(h, &code);
    CloseHandle(h);
    return code;
}

/* Shared control block at the start of a test segment. */
typedef struct ctl {
    volatile uint32_t w0, w1, w2, w3;
    volatile uint32_t ready;
    volatile uint32_t child_tid;
    volatile uint32_t pad[10];
    uint8_t lock_area[MS_LOCK_AREA];
    char text[256];
} ctl;

static ms_status open_map(const char *name, ms_object *o, ctl **c, int *err)
{
    ms_status st = ms_p_object_open(name, NULL, 1, 0, o, err);
    void *p;
    if (st != MS_OK) return st;
    st = ms_p_map(o, 0, 65536, MS_ACCESS_WRITE, &p, err);
    if (st != MS_OK) { ms_p_object_close(o); return st; }
    *c = (ctl *)p;
    return MS_OK;
}

/* proposed contract addition, implemented by windows.c */
typedef int (*ms_list_fn)(const char *osname, void *arg);
ms_status ms_p_object_list(unsigned flags, ms_list_fn fn, void *arg, int *err);

struct list_arg { const char *want; int found, total, helpers; };

static int list_cb(const char *osname, void *arg)
{
    struct list_arg *a = (struct list_arg *)arg;
    a->total++;
    if (strchr(osname, '#'))
        a->helpers++;
    if (strcmp(osname, a->want) == 0)
        a->found++;
    return 0;
}

/* ---- child roles --------------------------------------------------------------------- */

static int child_open(const char *name)
{
    ms_object o;
    ctl *c;
    int err = 0;
    ms_status st = open_map(name, &o, &c, &err);
    if (st != MS_OK) { printf("  child: open %d err %d\n", st, err); return 2; }
    if (strcmp(c->text, "hello from the parent") != 0) return 3;
    if (o.size != 1u << 20) { printf("  child: size %llu\n", (unsigned long long)o.size); return 4; }
    strcpy(c->text, "hello from the child");
    ms_p_unmap(c, 65536);
    ms_p_object_close(&o);
    return 0;
}

static int child_pingpong(const char *name, int rounds)
{
    ms_object o;
    ctl *c;
    ms_waitctx *ctx;
    int err = 0, i;
    if (open_map(name, &o, &c, &err) != MS_OK) return 2;
    if (ms_p_waitctx_open(name, 0, &ctx, &err) != MS_OK) return 3;
    for (i = 1; i <= rounds; i++) {
        while (ms_load32(&c->w0) != (uint32_t)i) {
            ms_status st = ms_p_wait32(ctx, 0, &c->w0, (uint32_t)(i - 1), 5000000000LL);
            if (st == MS_E_TIMEOUT) { printf("  child: timeout at %d\n", i); return 4; }
        }
        ms_store32(&c->w1, (uint32_t)i);
        ms_p_wake32(ctx, MS_SLOT_USER_BASE + 7u, &c->w1, 0);
    }
    ms_p_waitctx_close(ctx);
    ms_p_unmap(c, 65536);
    ms_p_object_close(&o);
    return 0;
}

/* Take the lock, tell the parent, then die holding it (killed, or exiting). */
static int child_lock(const char *name, int exit_holding)
{
    ms_object o;
    ctl *c;
    ms_waitctx *ctx;
    int err = 0;
    ms_status st;
    if (open_map(name, &o, &c, &err) != MS_OK) return 2;
    if (ms_p_waitctx_open(name, 0, &ctx, &err) != MS_OK) return 3;
    st = ms_p_lock_acquire(ctx, MS_SLOT_USER_LOCK, c->lock_area, 5000000000LL, &err);
    if (st != MS_OK) { printf("  child: lock %d\n", st); return 4; }
    ms_store32(&c->child_tid, GetCurrentThreadId());
    ms_store32(&c->ready, 1);
    ms_p_wake32(ctx, 3, &c->ready, 1);
    if (exit_holding)
        ExitProcess(0);   /* never releases: the mutex is abandoned */
    Sleep(60000);         /* the parent kills us */
    return 5;
}

/* Increment a shared counter under the lock, `rounds` times. */
static int child_stress(const char *name, int rounds)
{
    ms_object o;
    ctl *c;
    ms_waitctx *ctx;
    int err = 0, i;
    if (open_map(name, &o, &c, &err) != MS_OK) return 2;
    if (ms_p_waitctx_open(name, 0, &ctx, &err) != MS_OK) return 3;
    for (i = 0; i < rounds; i++) {
        uint32_t v;
        ms_status st = ms_p_lock_acquire(ctx, MS_SLOT_USER_LOCK, c->lock_area, 10000000000LL, &err);
        if (st != MS_OK) { printf("  stress: acquire %d\n", st); return 4; }
        v = c->w3;            /* plain read-modify-write: only the lock protects it */
        if ((i & 63) == 0) SwitchToThread();
        c->w3 = v + 1;
        if (ms_p_lock_release(ctx, MS_SLOT_USER_LOCK, c->lock_area, &err) != MS_OK) return 5;
    }
    ms_p_waitctx_close(ctx);
    ms_p_unmap(c, 65536);
    ms_p_object_close(&o);
    return 0;
}

/* ---- guard helpers ------------------------------------------------------------------- */

static ms_status raise_in_page(void *arg)
{
    (void)arg;
    RaiseException(EXCEPTION_IN_PAGE_ERROR, 0, 0, NULL);
    return MS_OK;
}

static ms_status return_value(void *arg) { return *(ms_status *)arg; }

static ms_status nested(void *arg)
{
    ms_status inner = ms_p_guarded_call(raise_in_page, NULL);
    *(ms_status *)arg = inner;
    return MS_E_CLOSED;   /* proves we came back here after the inner fault */
}

/* The fault test proper: PATH is truncated by the Linux side while we hold a view. */
static int fault_mode(const char *path)
{
    ms_object o;
    int err = 0;
    void *p;
    char buf[4096];
    ms_status st;
    LARGE_INTEGER sz;
    DWORD t0;
    char name[64];
    make_name(name, sizeof name, "fault");
    st = ms_p_object_create(name, path, 1u << 20, 0600, 0, &o, &err);
    if (st != MS_OK) { printf("fault: create %d err %d\n", st, err); return 2; }
    if (ms_p_map(&o, 0, 1u << 20, MS_ACCESS_WRITE, &p, &err) != MS_OK) return 3;
    memset(p, 0x5a, 1u << 20);
    ms_p_flush(&o, p, 1u << 20, 0, &err);
    printf("READY\n");
    fflush(stdout);
    t0 = GetTickCount();
    for (;;) {
        if (GetFileSizeEx((HANDLE)o.file, &sz) && sz.QuadPart == 0) break;
        if (GetTickCount() - t0 > 20000) { printf("fault: nobody truncated the file\n"); return 4; }
        Sleep(20);
    }
    st = ms_p_guarded_copy(buf, (char *)p + 512 * 1024, sizeof buf);
    printf("fault: guarded_copy after truncation -> %d (want %d = MS_E_FAULT)\n", st, MS_E_FAULT);
    if (st == MS_E_FAULT) {
        ms_p_quarantine(p, 1u << 20);
        st = ms_p_guarded_copy(buf, (char *)p + 512 * 1024, sizeof buf);
        printf("fault: after quarantine -> %d, byte %d\n", st, buf[0]);
        if (st != MS_OK || buf[0] != 0) return 6;
    }
    ms_p_unmap(p, 1u << 20);
    ms_p_object_close(&o);
    return st == MS_OK ? 0 : 5;
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_basics(void)
{
    uint64_t t0, t1, rt, self;
    SECTION("basics");
    CHECK(ms_p_page_size() == 4096, "page %zu", ms_p_page_size());
    CHECK(ms_p_granularity() == 65536, "granularity %zu", ms_p_granularity());
    CHECK(ms_p_pid() == GetCurrentProcessId(), "pid");
    CHECK(ms_p_uid() == 0, "uid");
    self = ms_p_process_start(ms_p_pid());
    CHECK(self != 0, "start of self");
    CHECK(ms_p_process_alive(ms_p_pid(), self) == 1, "self alive");
    CHECK(ms_p_process_alive(ms_p_pid(), self + 1) == 0, "self with another start is dead");
    CHECK(ms_p_process_alive(0x7ffffff0u, 0) == 0, "bogus pid");
    CHECK(ms_p_process_start(0x7ffffff0u) == 0, "bogus pid start");
    t0 = ms_p_monotonic_ns();
    Sleep(20);
    t1 = ms_p_monotonic_ns();
    CHECK(t1 - t0 >= 15000000u && t1 - t0 < 2000000000u, "monotonic delta %llu", (unsigned long long)(t1 - t0));
    rt = ms_p_realtime_ns();
    CHECK(rt > 1700000000ULL * 1000000000ULL && rt < 4102444800ULL * 1000000000ULL, "realtime %llu", (unsigned long long)rt);
}

static void test_named(void)
{
    char name[64];
    ms_object a, b;
    ms_object_stat st;
    int err = 0;
    ms_status s;
    ctl *c;
    void *p;
    DWORD code;
    SECTION("named mapping, two processes");
    make_name(name, sizeof name, "named");
    s = ms_p_object_create(name, NULL, 1u << 20, 0600, 0, &a, &err);
    CHECK(s == MS_OK, "create %d err %d", s, err);
    CHECK(a.size == 1u << 20 && a.writable == 1, "size/writable");
    s = ms_p_object_create(name, NULL, 1u << 20, 0600, 0, &b, &err);
    CHECK(s == MS_E_EXISTS && err == ERROR_ALREADY_EXISTS, "second create %d err %d", s, err);
    s = ms_p_object_open(name, NULL, 1, 0, &b, &err);
    CHECK(s == MS_OK && b.size == 1u << 20, "open %d size %llu", s, (unsigned long long)b.size);
    s = ms_p_object_stat(&b, &st, &err);
    CHECK(s == MS_OK && st.size == 1u << 20 && st.mode == 0600 && st.uid == 0, "stat %d", s);
    ms_p_object_close(&b);
    s = ms_p_map(&a, 0, 65536, MS_ACCESS_WRITE, &p, &err);
    CHECK(s == MS_OK, "map %d", s);
    if (s != MS_OK) return;
    c = (ctl *)p;
    strcpy(c->text, "hello from the parent");
    {
        char args[128];
        snprintf(args, sizeof args, "child-open %s", name);
        code = join(spawn(args, NULL), 20000);
    }
    CHECK(code == 0, "child exit %lu", code);
    CHECK(strcmp(c->text, "hello from the child") == 0, "child's reply '%s'", c->text);
    s = ms_p_map(&a, 12345, 100, MS_ACCESS_READ, &p, &err);
    CHECK(s == MS_E_INVALID, "unaligned offset %d", s);
    s = ms_p_map(&a, 1u << 20, 65536, MS_ACCESS_READ, &p, &err);
    CHECK(s == MS_E_INVALID, "view past the end %d err %d", s, err);
    ms_p_unmap(c, 65536);
    {
        struct list_arg la;
        la.want = name; la.found = 0; la.total = 0; la.helpers = 0;
        s = ms_p_object_list(0, list_cb, &la, &err);
        CHECK(s == MS_OK && la.found == 1, "listing finds %s: status %d err %d, found %d of %d", name, s, err, la.found, la.total);
    }
    CHECK(ms_p_object_unlink(name, 0, &err) == MS_OK, "unlink is a no-op");
    ms_p_object_close(&a);
    s = ms_p_object_open(name, NULL, 1, 0, &b, &err);
    CHECK(s == MS_E_NOT_FOUND && err == ERROR_FILE_NOT_FOUND, "gone with its last handle: %d err %d", s, err);

    s = ms_p_object_create("/bad\\name", NULL, 4096, 0600, 0, &a, &err);
    CHECK(s == MS_E_INVALID, "backslash %d", s);
    s = ms_p_object_create("/bad#name", NULL, 4096, 0600, 0, &a, &err);
    CHECK(s == MS_E_INVALID, "hash %d", s);
    s = ms_p_object_create(name, NULL, 0, 0600, 0, &a, &err);
    CHECK(s == MS_E_INVALID, "size 0 %d", s);
    {
        /* a name held by another object type counts as taken */
        HANDLE sem;
        wchar_t wname[80];
        swprintf(wname, 80, L"Local\\mapshare.selftest.%lu.sem", (unsigned long)GetCurrentProcessId());
        sem = CreateSemaphoreW(NULL, 0, 1, wname);
        make_name(name, sizeof name, "sem");
        s = ms_p_object_create(name, NULL, 4096, 0600, 0, &a, &err);
        CHECK(s == MS_E_EXISTS, "name of a semaphore: create %d err %d", s, err);
        s = ms_p_object_open(name, NULL, 1, 0, &a, &err);
        CHECK(s == MS_E_NOT_FOUND, "name of a semaphore: open %d err %d", s, err);
        CloseHandle(sem);
    }
    /* wider modes build a DACL with Everyone, and the helper objects follow it */
    make_name(name, sizeof name, "wide");
    s = ms_p_object_create(name, NULL, 65536, 0666, 0, &a, &err);
    CHECK(s == MS_OK, "mode 0666 %d err %d", s, err);
    if (s == MS_OK) {
        ms_waitctx *ctx;
        s = ms_p_waitctx_open(name, 0, &ctx, &err);
        CHECK(s == MS_OK, "waitctx %d", s);
        ms_p_waitctx_close(ctx);
        ms_p_object_close(&a);
    }
    make_name(name, sizeof name, "global");
    s = ms_p_object_create(name, NULL, 65536, 0600, MS_OBJ_GLOBAL, &a, &err);
    printf("  Global\\ create: status %d (real Windows needs SeCreateGlobalPrivilege)\n", s);
    if (s == MS_OK) {
        ms_object g;
        CHECK(ms_p_object_open(name, NULL, 0, 0, &g, &err) == MS_E_NOT_FOUND, "Local\\ does not see Global\\ objects");
        s = ms_p_object_open(name, NULL, 0, MS_OBJ_GLOBAL, &g, &err);
        CHECK(s == MS_OK, "Global open %d", s);
        if (s == MS_OK) ms_p_object_close(&g);
        ms_p_object_close(&a);
    }
}

static void test_cow(void)
{
    char name[64];
    ms_object a, r;
    int err = 0;
    ms_status s;
    char *w, *cp, *ro;
    SECTION("copy-on-write and read-only views");
    make_name(name, sizeof name, "cow");
    s = ms_p_object_create(name, NULL, 1u << 17, 0600, 0, &a, &err);
    CHECK(s == MS_OK, "create %d", s);
    if (s != MS_OK) return;
    CHECK(ms_p_map(&a, 0, 1u << 17, MS_ACCESS_WRITE, (void **)&w, &err) == MS_OK, "map write");
    memset(w, 'A', 1u << 17);
    CHECK(ms_p_map(&a, 0, 1u << 17, MS_ACCESS_COPY, (void **)&cp, &err) == MS_OK, "map copy");
    CHECK(ms_p_object_open(name, NULL, 0, 0, &r, &err) == MS_OK && r.writable == 0, "open read-only");
    CHECK(ms_p_map(&r, 0, 65536, MS_ACCESS_READ, (void **)&ro, &err) == MS_OK, "map read");
    s = ms_p_map(&r, 0, 65536, MS_ACCESS_WRITE, (void **)&w, &err);
    CHECK(s == MS_E_PERMISSION, "write view of a read-only handle %d", s);
    CHECK(cp[100] == 'A' && ro[100] == 'A', "views agree");
    cp[100] = 'C';
    CHECK(w[100] == 'A' && ro[100] == 'A' && cp[100] == 'C', "COW write stays private");
    w[70000] = 'W';
    CHECK(cp[70000] == 'W', "untouched COW page still shows the shared data");
    w[101] = 'X';
    CHECK(cp[101] == 'A', "copied page no longer follows the shared data");
    ms_p_unmap(ro, 65536);
    ms_p_unmap(cp, 1u << 17);
    ms_p_unmap(w, 1u << 17);
    ms_p_object_close(&r);
    ms_p_object_close(&a);
}

static void test_big(void)
{
    char name[64];
    ms_object a, b;
    ms_object_stat st;
    int err = 0;
    ms_status s;
    const uint64_t size = 5ULL << 30, off = (4ULL << 30) + 65536;
    char *p, *q;
    SECTION("section over 4 GiB");
    make_name(name, sizeof name, "big");
    s = ms_p_object_create(name, NULL, size, 0600, 0, &a, &err);
    CHECK(s == MS_OK, "create 5 GiB: %d err %d", s, err);
    if (s != MS_OK) return;
    CHECK(ms_p_map(&a, off, 65536, MS_ACCESS_WRITE, (void **)&p, &err) == MS_OK, "map at 4 GiB + 64 KiB");
    strcpy(p, "beyond 4 GiB");
    CHECK(ms_p_object_open(name, NULL, 0, 0, &b, &err) == MS_OK, "open");
    CHECK(b.size == size, "opened size %llu", (unsigned long long)b.size);
    CHECK(ms_p_object_stat(&b, &st, &err) == MS_OK && st.size == size, "stat size");
    CHECK(ms_p_map(&b, off, 65536, MS_ACCESS_READ, (void **)&q, &err) == MS_OK, "map 2");
    CHECK(strcmp(q, "beyond 4 GiB") == 0, "data");
    ms_p_unmap(q, 65536);
    ms_p_unmap(p, 65536);
    ms_p_object_close(&b);
    ms_p_object_close(&a);
}

static void test_file(void)
{
    char name[64], path[MAX_PATH], link[MAX_PATH];
    wchar_t wpath[MAX_PATH], wlink[MAX_PATH], tmp[MAX_PATH];
    ms_object a, b;
    ms_object_stat st;
    int err = 0;
    ms_status s;
    char *p;
    SECTION("file-backed objects");
    GetTempPathW(MAX_PATH, tmp);
    swprintf(wpath, MAX_PATH, L"%lsmapshare-selftest-%lu.bin", tmp, (unsigned long)GetCurrentProcessId());
    swprintf(wlink, MAX_PATH, L"%lsmapshare-selftest-%lu.lnk", tmp, (unsigned long)GetCurrentProcessId());
    WideCharToMultiByte(CP_UTF8, 0, wpath, -1, path, MAX_PATH, NULL, NULL);
    WideCharToMultiByte(CP_UTF8, 0, wlink, -1, link, MAX_PATH, NULL, NULL);
    DeleteFileW(wpath);
    make_name(name, sizeof name, "file");
    s = ms_p_object_create(name, path, 196608, 0600, 0, &a, &err);
    CHECK(s == MS_OK, "create %s: %d err %d", path, s, err);
    if (s != MS_OK) return;
    CHECK(ms_p_map(&a, 65536, 65536, MS_ACCESS_WRITE, (void **)&p, &err) == MS_OK, "map");
    strcpy(p, "persisted");
    CHECK(ms_p_flush(&a, p, 65536, 1, &err) == MS_OK, "durable flush %d", err);
    ms_p_unmap(p, 65536);
    CHECK(ms_p_object_stat(&a, &st, &err) == MS_OK && st.size == 196608 && st.ino != 0 && st.mtime_ns > 0,
          "stat size %llu", (unsigned long long)st.size);
    s = ms_p_object_create(name, path, 65536, 0600, 0, &b, &err);
    CHECK(s == MS_E_EXISTS, "exclusive create of an existing file %d", s);
    CHECK(GetFileAttributesW(wpath) != INVALID_FILE_ATTRIBUTES, "the existing file was not removed by the failed create");
    /* grow before publication */
    s = ms_p_object_truncate(&a, 262144, &err);
    if (s == MS_E_OS && err == ERROR_PROC_NOT_FOUND) {
        printf("  SKIP grow of a file-backed section: ntdll has no NtExtendSection (Wine 8)\n");
    } else {
        CHECK(s == MS_OK && a.size == 262144, "truncate (grow) %d err %d", s, err);
        s = ms_p_map(&a, 196608, 65536, MS_ACCESS_WRITE, (void **)&p, &err);
        CHECK(s == MS_OK, "map the grown part %d err %d", s, err);
        if (s == MS_OK) { p[0] = 1; ms_p_unmap(p, 65536); }
    }
    /* the same object by name: no file handle, durable flush finds the file itself */
    s = ms_p_object_open(name, NULL, 1, 0, &b, &err);
    CHECK(s == MS_OK && b.file == MS_NO_HANDLE && b.size >= 196608, "open file-backed by name %d", s);
    if (s == MS_OK) {
        CHECK(ms_p_map(&b, 0, 65536, MS_ACCESS_WRITE, (void **)&p, &err) == MS_OK, "map");
        p[0] = 'N';
        s = ms_p_flush(&b, p, 65536, 1, &err);
        CHECK(s == MS_OK, "durable flush without a file handle: %d err %d", s, err);
        ms_p_unmap(p, 65536);
        ms_p_object_close(&b);
    }
    ms_p_object_close(&a);

    s = ms_p_object_open(NULL, path, 0, 0, &b, &err);
    CHECK(s == MS_OK && b.size >= 196608, "reopen by path %d size %llu", s, (unsigned long long)b.size);
    if (s == MS_OK) {
        CHECK(ms_p_map(&b, 65536, 65536, MS_ACCESS_READ, (void **)&p, &err) == MS_OK, "map");
        CHECK(strcmp(p, "persisted") == 0, "data survived");
        ms_p_unmap(p, 65536);
        CHECK(ms_p_map(&b, 65536, 65536, MS_ACCESS_COPY, (void **)&p, &err) == MS_OK, "COW view of a read-only file");
        p[0] = 'X';
        ms_p_unmap(p, 65536);
        ms_p_object_close(&b);
    }
    s = ms_p_object_open(NULL, path, 1, 0, &b, &err);
    CHECK(s == MS_OK && b.writable, "reopen writable %d", s);
    if (s == MS_OK) {
        CHECK(ms_p_map(&b, 65536, 65536, MS_ACCESS_READ, (void **)&p, &err) == MS_OK, "map");
        CHECK(p[0] == 'p', "COW write did not reach the file");
        ms_p_unmap(p, 65536);
        ms_p_object_close(&b);
    }
    /* symlinks: refused unless MS_OBJ_FOLLOW_SYMLINKS */
    DeleteFileW(wlink);
    /* Wine 8's CreateSymbolicLinkW is a stub that returns TRUE and creates nothing */
    if (CreateSymbolicLinkW(wlink, wpath, 0) && GetFileAttributesW(wlink) != INVALID_FILE_ATTRIBUTES) {
        s = ms_p_object_open(NULL, link, 1, 0, &b, &err);
        CHECK(s == MS_E_PERMISSION, "open through a symlink refused: %d err %d", s, err);
        if (s == MS_OK) ms_p_object_close(&b);
        s = ms_p_object_open(NULL, link, 1, MS_OBJ_FOLLOW_SYMLINKS, &b, &err);
        CHECK(s == MS_OK, "open through a symlink with FOLLOW: %d err %d", s, err);
        if (s == MS_OK) ms_p_object_close(&b);
        s = ms_p_object_create(name, link, 65536, 0600, 0, &b, &err);
        CHECK(s == MS_E_EXISTS, "create over a symlink %d", s);
        DeleteFileW(wlink);
    } else {
        printf("  SKIP symlink checks: CreateSymbolicLinkW failed (%lu)\n", GetLastError());
    }
    {
        /* A host (Unix) symlink made by run-selftest.sh, if any: see what Wine shows. */
        const char *ul = getenv("MAPSHARE_SELFTEST_UNIX_LINK");
        if (ul && *ul) {
            s = ms_p_object_open(NULL, ul, 0, 0, &b, &err);
            printf("  host symlink %s, no FOLLOW: status %d err %d (%s)\n", ul, s, err,
                   s == MS_E_PERMISSION ? "refused" : "Wine follows host symlinks transparently");
            if (s == MS_OK) ms_p_object_close(&b);
        }
    }
    {
        /* a file whose size is not a page multiple: a view to the end of its last page */
        HANDLE f = CreateFileW(wpath, GENERIC_READ | GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, 0, NULL);
        DWORD wr = 0;
        char odd[5019];
        memset(odd, 'o', sizeof odd);
        WriteFile(f, odd, (DWORD)sizeof odd, &wr, NULL);
        CloseHandle(f);
        s = ms_p_object_open(NULL, path, 1, 0, &b, &err);
        CHECK(s == MS_OK && b.size == 5019, "odd-sized file %d size %llu", s, (unsigned long long)b.size);
        if (s == MS_OK) {
            s = ms_p_map(&b, 0, 8192, MS_ACCESS_WRITE, (void **)&p, &err);
            CHECK(s == MS_OK, "view to the end of the last page: %d err %d", s, err);
            if (s == MS_OK) {
                CHECK(p[5018] == 'o' && p[5019] == 0 && p[8191] == 0, "tail of the last page reads zero");
                ms_p_unmap(p, 8192);
            }
            s = ms_p_map(&b, 0, 8193, MS_ACCESS_READ, (void **)&p, &err);
            CHECK(s == MS_E_INVALID, "a view past the last page is refused: %d", s);
            ms_p_object_close(&b);
        }
    }
    s = ms_p_object_open(NULL, "Z:\\nonexistent\\dir\\x.bin", 0, 0, &b, &err);
    CHECK(s == MS_E_NOT_FOUND, "missing path %d err %d", s, err);
    CHECK(DeleteFileW(wpath), "delete %lu", GetLastError());
}

struct waiter_arg { ms_waitctx *ctx; ctl *c; volatile LONG *done; };

static DWORD WINAPI waiter_thread(LPVOID p)
{
    struct waiter_arg *a = (struct waiter_arg *)p;
    while (ms_load32(&a->c->w2) == 0)
        ms_p_wait32(a->ctx, 2, &a->c->w2, 0, 10000000000LL);
    InterlockedIncrement(a->done);
    return 0;
}

static DWORD WINAPI release_other_thread(LPVOID p)
{
    struct waiter_arg *a = (struct waiter_arg *)p;
    int err = 0;
    return (DWORD)ms_p_lock_release(a->ctx, MS_SLOT_USER_LOCK, a->c->lock_area, &err);
}

static void test_wait(void)
{
    char name[64], args[128];
    ms_object a;
    ms_waitctx *ctx;
    ctl *c;
    int err = 0, i, rounds = 2000;
    ms_status s;
    uint64_t t0, t1;
    DWORD code;
    HANDLE th[4];
    volatile LONG done = 0;
    struct waiter_arg wa;
    SECTION("wait/wake");
    make_name(name, sizeof name, "wait");
    s = ms_p_object_create(name, NULL, 65536, 0600, 0, &a, &err);
    CHECK(s == MS_OK, "create");
    if (s != MS_OK) return;
    CHECK(ms_p_map(&a, 0, 65536, MS_ACCESS_WRITE, (void **)&c, &err) == MS_OK, "map");
    CHECK(ms_p_waitctx_open(name, 0, &ctx, &err) == MS_OK, "waitctx");

    CHECK(ms_p_wait32(ctx, 0, &c->w0, 1, 1000000) == MS_OK, "value differs: returns at once");
    t0 = ms_p_monotonic_ns();
    s = ms_p_wait32(ctx, 0, &c->w0, 0, 50000000);
    t1 = ms_p_monotonic_ns();
    CHECK(s == MS_E_TIMEOUT && t1 - t0 >= 45000000u, "timeout %d after %llu ns", s, (unsigned long long)(t1 - t0));
    s = ms_p_wait32(ctx, 0, &c->w0, 0, 0);
    CHECK(s == MS_E_TIMEOUT, "zero timeout %d", s);
    s = ms_p_wait32(ctx, MS_SLOT_USER_BASE + 123456u, &c->w0, 0, 10000000);
    CHECK(s == MS_E_TIMEOUT, "a user-area slot key %d", s);
    s = ms_p_wait32(ctx, 0xFFFFFFFFu, &c->w0, 0, 10000000);
    CHECK(s == MS_E_TIMEOUT, "slot 0xFFFFFFFF (overflow counter) %d", s);
    ms_p_wake32(ctx, 0, &c->w0, 1);   /* nobody waits: no token left behind */
    s = ms_p_wait32(ctx, 0, &c->w0, 0, 30000000);
    CHECK(s == MS_E_TIMEOUT, "a wake with no waiter leaves no token: %d", s);

    /* wake-all, threads of this process */
    wa.ctx = ctx; wa.c = c; wa.done = &done;
    for (i = 0; i < 4; i++)
        th[i] = CreateThread(NULL, 0, waiter_thread, &wa, 0, NULL);
    Sleep(100);
    CHECK(done == 0, "waiters sleep");
    ms_store32(&c->w2, 1);
    ms_p_wake32(ctx, 2, &c->w2, 1);
    WaitForMultipleObjects(4, th, TRUE, 5000);
    CHECK(done == 4, "wake-all woke %ld of 4", done);
    for (i = 0; i < 4; i++) CloseHandle(th[i]);

    /* ping-pong with another process */
    snprintf(args, sizeof args, "child-pingpong %s %d", name, rounds);
    {
        HANDLE h = spawn(args, NULL);
        t0 = ms_p_monotonic_ns();
        for (i = 1; i <= rounds; i++) {
            ms_store32(&c->w0, (uint32_t)i);
            ms_p_wake32(ctx, 0, &c->w0, 0);
            while (ms_load32(&c->w1) != (uint32_t)i) {
                s = ms_p_wait32(ctx, MS_SLOT_USER_BASE + 7u, &c->w1, (uint32_t)(i - 1), 5000000000LL);
                if (s == MS_E_TIMEOUT) break;
            }
            if (s == MS_E_TIMEOUT) break;
        }
        t1 = ms_p_monotonic_ns();
        code = join(h, 30000);
    }
    CHECK(i == rounds + 1 && code == 0, "ping-pong reached %d, child exit %lu", i - 1, code);
    printf("  cross-process ping-pong: %d rounds, %.1f us per round trip (includes child start)\n",
           rounds, (double)(t1 - t0) / rounds / 1000.0);
    {
        /* the #c helper section of this segment exists now: the listing hides it */
        struct list_arg la;
        la.want = name; la.found = 0; la.total = 0; la.helpers = 0;
        CHECK(ms_p_object_list(0, list_cb, &la, &err) == MS_OK && la.found == 1 && la.helpers == 0,
              "listing: found %d, helpers %d", la.found, la.helpers);
    }
    ms_p_waitctx_close(ctx);
    ms_p_unmap(c, 65536);
    ms_p_object_close(&a);
}

static void test_lock(void)
{
    char name[64], args[128];
    ms_object a;
    ms_waitctx *ctx, *ctx2;
    ctl *c;
    int err = 0, held, dead, mode;
    uint32_t holder;
    ms_status s;
    HANDLE h, t;
    DWORD pid, code;
    struct waiter_arg wa;
    SECTION("robust lock");
    make_name(name, sizeof name, "lock");
    s = ms_p_object_create(name, NULL, 65536, 0600, 0, &a, &err);
    CHECK(s == MS_OK, "create");
    if (s != MS_OK) return;
    CHECK(ms_p_map(&a, 0, 65536, MS_ACCESS_WRITE, (void **)&c, &err) == MS_OK, "map");
    CHECK(ms_p_waitctx_open(name, 0, &ctx, &err) == MS_OK, "waitctx");
    CHECK(ms_p_waitctx_open(name, 0, &ctx2, &err) == MS_OK, "second waitctx (another handle)");
    CHECK(ms_p_lock_init(c->lock_area, &err) == MS_OK, "init");
    ms_p_lock_inspect(c->lock_area, &held, &holder, &dead);
    CHECK(!held && !holder && !dead, "free");
    CHECK(ms_p_lock_acquire(ctx, MS_SLOT_USER_LOCK, c->lock_area, -1, &err) == MS_OK, "acquire");
    ms_p_lock_inspect(c->lock_area, &held, &holder, &dead);
    CHECK(held && holder == GetCurrentThreadId() && !dead, "held by me");
    s = ms_p_lock_acquire(ctx, MS_SLOT_USER_LOCK, c->lock_area, 0, &err);
    CHECK(s == MS_E_ALREADY_HELD, "relock by the holder refused: %d", s);
    s = ms_p_lock_acquire(ctx2, MS_SLOT_USER_LOCK, c->lock_area, 0, &err);
    CHECK(s == MS_E_ALREADY_HELD, "relock through another handle refused: %d", s);
    wa.ctx = ctx; wa.c = c; wa.done = NULL;
    t = CreateThread(NULL, 0, release_other_thread, &wa, 0, NULL);
    WaitForSingleObject(t, 5000);
    GetExitCodeThread(t, &code);
    CloseHandle(t);
    CHECK(code == MS_E_NOT_OWNER, "release by another thread: %lu", code);
    ms_p_lock_inspect(c->lock_area, &held, &holder, &dead);
    CHECK(held && holder == GetCurrentThreadId(), "still held by me after the failed release");
    CHECK(ms_p_lock_release(ctx2, MS_SLOT_USER_LOCK, c->lock_area, &err) == MS_OK, "release through the other handle");
    s = ms_p_lock_release(ctx, MS_SLOT_USER_LOCK, c->lock_area, &err);
    CHECK(s == MS_E_NOT_OWNER, "second release %d", s);
    ms_p_lock_inspect(c->lock_area, &held, &holder, &dead);
    CHECK(!held, "free again");

    for (mode = 0; mode < 2; mode++) {
        const char *how = mode ? "exits holding it" : "is killed holding it";
        ms_store32(&c->ready, 0);
        snprintf(args, sizeof args, "child-lock %s %d", name, mode);
        h = spawn(args, &pid);
        while (ms_load32(&c->ready) == 0)
            if (ms_p_wait32(ctx, 3, &c->ready, 0, 10000000000LL) == MS_E_TIMEOUT) break;
        if (mode == 0) {
            s = ms_p_lock_acquire(ctx, MS_SLOT_USER_LOCK, c->lock_area, 100000000, &err);
            CHECK(s == MS_E_TIMEOUT, "held by the child: %d", s);
            ms_p_lock_inspect(c->lock_area, &held, &holder, &dead);
            CHECK(held && holder == ms_load32(&c->child_tid) && !dead, "inspect: held %d holder %u dead %d", held, holder, dead);
            TerminateProcess(h, 9);
        }
        WaitForSingleObject(h, 10000);
        CloseHandle(h);
        ms_p_lock_inspect(c->lock_area, &held, &holder, &dead);
        CHECK(held && dead, "child %s: inspect held %d dead %d", how, held, dead);
        s = ms_p_lock_acquire(ctx, MS_SLOT_USER_LOCK, c->lock_area, 5000000000LL, &err);
        CHECK(s == MS_E_OWNER_DIED, "child %s: acquire -> %d (want OWNER_DIED)", how, s);
        ms_p_lock_inspect(c->lock_area, &held, &holder, &dead);
        CHECK(held && holder == GetCurrentThreadId() && !dead, "now held by me");
        CHECK(ms_p_lock_release(ctx, MS_SLOT_USER_LOCK, c->lock_area, &err) == MS_OK, "release");
        CHECK(ms_p_lock_acquire(ctx, MS_SLOT_USER_LOCK, c->lock_area, 0, &err) == MS_OK, "consistent again");
        CHECK(ms_p_lock_release(ctx, MS_SLOT_USER_LOCK, c->lock_area, &err) == MS_OK, "release");
    }
    (void)pid;
    {
        /* mutual exclusion across three processes */
        HANDLE hs[3];
        DWORD codes[3];
        int k, rounds = 3000;
        uint64_t t0 = ms_p_monotonic_ns(), t1;
        c->w3 = 0;
        snprintf(args, sizeof args, "child-stress %s %d", name, rounds);
        for (k = 0; k < 3; k++) hs[k] = spawn(args, NULL);
        for (k = 0; k < 3; k++) codes[k] = join(hs[k], 60000);
        t1 = ms_p_monotonic_ns();
        CHECK(codes[0] == 0 && codes[1] == 0 && codes[2] == 0, "stress children %lu %lu %lu", codes[0], codes[1], codes[2]);
        CHECK(c->w3 == (uint32_t)(3 * rounds), "counter %u, want %d", c->w3, 3 * rounds);
        printf("  3 processes x %d lock/unlock: %.0f ms\n", rounds, (double)(t1 - t0) / 1e6);
    }
    {
        /* a context without a name (object opened by path only) refuses to wait/lock */
        ms_waitctx *anon;
        CHECK(ms_p_waitctx_open("", 0, &anon, &err) == MS_OK, "nameless waitctx");
        CHECK(ms_p_wait32(anon, 0, &c->w0, c->w0, 0) == MS_E_INVALID, "nameless wait refused");
        CHECK(ms_p_lock_acquire(anon, 9, c->lock_area, 0, &err) == MS_E_INVALID, "nameless lock refused");
        ms_p_wake32(anon, 0, &c->w0, 1);
        ms_p_waitctx_close(anon);
    }
    ms_p_waitctx_close(ctx2);
    ms_p_waitctx_close(ctx);
    ms_p_unmap(c, 65536);
    ms_p_object_close(&a);
}

static void test_guard(void)
{
    ms_status v = MS_E_FULL, inner = MS_OK, s;
    char name[64];
    ms_object a;
    int err = 0;
    char *p, buf[16];
    SECTION("guarded calls and quarantine");
    CHECK(ms_p_guarded_call(return_value, &v) == MS_E_FULL, "status passes through");
    CHECK(ms_p_guarded_call(raise_in_page, NULL) == MS_E_FAULT, "EXCEPTION_IN_PAGE_ERROR -> MS_E_FAULT");
    s = ms_p_guarded_call(nested, &inner);
    CHECK(s == MS_E_CLOSED && inner == MS_E_FAULT, "nested: inner guard wins (%d, %d)", s, inner);
    CHECK(ms_p_guarded_call(raise_in_page, NULL) == MS_E_FAULT, "again after nesting");
    CHECK(ms_p_guarded_copy(buf, "0123456789", 11) == MS_OK && strcmp(buf, "0123456789") == 0, "copy");
    make_name(name, sizeof name, "quar");
    s = ms_p_object_create(name, NULL, 131072, 0600, 0, &a, &err);
    CHECK(s == MS_OK, "create");
    if (s != MS_OK) return;
    CHECK(ms_p_map(&a, 0, 131072, MS_ACCESS_WRITE, (void **)&p, &err) == MS_OK, "map");
    memset(p, 7, 131072);
    ms_p_quarantine(p + 4096, 131072 - 4096);
    CHECK(p[0] == 0 && p[100000] == 0, "quarantined memory reads zero");
    p[5] = 1;
    CHECK(p[5] == 1, "and is writable");
    ms_p_unmap(p, 131072);
    {
        MEMORY_BASIC_INFORMATION mbi;
        VirtualQuery(p, &mbi, sizeof mbi);
        CHECK(mbi.State == MEM_FREE, "unmap of a quarantined range frees it (state %lx)", mbi.State);
    }
    ms_p_object_close(&a);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "child-open") == 0) return child_open(argv[2]);
    if (argc >= 4 && strcmp(argv[1], "child-pingpong") == 0) return child_pingpong(argv[2], atoi(argv[3]));
    if (argc >= 4 && strcmp(argv[1], "child-lock") == 0) return child_lock(argv[2], atoi(argv[3]));
    if (argc >= 4 && strcmp(argv[1], "child-stress") == 0) return child_stress(argv[2], atoi(argv[3]));
    if (argc >= 3 && strcmp(argv[1], "fault") == 0) return fault_mode(argv[2]);
    setvbuf(stdout, NULL, _IONBF, 0);
    make_name(base_name, sizeof base_name, "");
    printf("platform_selftest pid %lu\n", GetCurrentProcessId());
    test_basics();
    test_named();
    test_cow();
    test_big();
    test_file();
    test_wait();
    test_lock();
    test_guard();
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
