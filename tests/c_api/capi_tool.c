/* A command-line driver of the public C API (include/mapshare.h), for the tests in
 * test_c_api.py: each command does one thing a C program would do and prints what it
 * got, so that a test can set a C peer against Python processes.
 *
 *   capi_tool [options] COMMAND ARGS...
 *
 * Output: "ok ..." lines, or "err CODE TEXT" (mapshare_strerror) and exit status 1.
 * Options (before the command) fill mapshare_options: --path P, --mode OCTAL,
 * --persistent, --access r|rw|copy, --kind any|segment|lock|..., --allow-foreign,
 * --wait SECONDS (negative: forever), --init-timeout SECONDS.
 *
 * Commands:
 *   osname NAME...          the OS name of each name, one a line
 *   create NAME SIZE TEXT   create, write TEXT at 0; print "ok"; then hold it open until
 *                           stdin closes (so a test can look at it while it lives)
 *   open NAME N             open; print "ok SIZE KIND" and then the first N bytes
 *   write NAME TEXT         open, write TEXT at 0, notify, close
 *   unlink NAME             mapshare_unlink
 *   send NAME [--close] MSG...  open a channel, send each MSG (then close for sending)
 *   recv NAME               receive until the end of the stream: "msg TEXT" lines, then
 *                           "end CODE"
 *   lock-hold NAME          acquire the segment's (or named lock's) lock, print "held",
 *                           then sleep: the test SIGKILLs it
 *   lock NAME               acquire (timeout 5 s), print "ok CODE", release
 *   event-wait NAME / event-set NAME
 *   in-event NAME OFFSET create0|create1|open|set|clear|wait   an event placed in segment
 *                           NAME (create_in/open_in, then the call); prints "ok IS_SET"
 *   in-sem NAME OFFSET create VALUE MAX|open|acquire|release   the same for a semaphore;
 *                           prints "ok VALUE"
 *   sem-acquire NAME / sem-release NAME
 *   wait-any TIMEOUT SPEC...  mapshare_wait_any on objects opened from SPECs (see there);
 *                           prints "ok" and the indexes of the ready ones
 *   selftest NAME           the calls a single process can check by itself (channel
 *                           loan/view/statistics/end, views, fork, semaphore overflow,
 *                           timeouts, bounds), on objects named NAME.*; prints "ok" or
 *                           "FAIL line: what" lines
 */
#include "mapshare.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int fail(int st)
{
    printf("err %d %s\n", st, mapshare_strerror(st));
    fflush(stdout);
    return 1;
}

static int failures;
#define EXPECT(cond) do { if (!(cond)) { printf("FAIL %d: %s\n", __LINE__, #cond); failures++; } } while (0)

static int selftest(const char *base)
{
    char name[300];
    mapshare_segment *ch = NULL, *ch2 = NULL, *seg = NULL, *ro = NULL, *sem = NULL, *ev = NULL;
    mapshare_options o;
    mapshare_options_init(&o);
    /* channel: loan, commit, too small a buffer, view, window open, statistics, end */
    snprintf(name, sizeof name, "%s.ch", base);
    EXPECT(mapshare_channel_create(name, 100, NULL, &ch) == MAPSHARE_OK);
    if (!ch)
        return 1;
    EXPECT(mapshare_channel_open_or_create(name, 104, NULL, &ch2) == MAPSHARE_OK);
    mapshare_segment_close(ch2);
    EXPECT(mapshare_channel_open_or_create(name, 200, NULL, &ch2) == MAPSHARE_E_LAYOUT);
    void *p = NULL;
    EXPECT(mapshare_channel_loan(ch, 32, &p, 1.0) == MAPSHARE_OK);
    EXPECT(mapshare_channel_send(ch, "x", 1, 0) == MAPSHARE_E_WINDOW_OPEN);
    memcpy(p, "loaned", 6);
    EXPECT(mapshare_channel_commit(ch, 6) == MAPSHARE_OK);
    EXPECT(mapshare_channel_send(ch, "second", 6, 0) == MAPSHARE_OK);
    EXPECT(mapshare_channel_send(ch, "x", 100000, 0) == MAPSHARE_E_TOO_LARGE);
    char buf[64];
    size_t n = 0;
    EXPECT(mapshare_channel_receive(ch, buf, 3, &n, 0) == MAPSHARE_E_BUFFER_TOO_SMALL);
    EXPECT(n == 6);
    const void *vp = NULL;
    EXPECT(mapshare_channel_view(ch, &vp, &n, 0) == MAPSHARE_OK);
    EXPECT(n == 6 && memcmp(vp, "loaned", 6) == 0);
    EXPECT(mapshare_channel_message_kind(ch) == 0);
    EXPECT(mapshare_segment_close(ch) == MAPSHARE_E_WINDOW_OPEN);
    EXPECT(mapshare_channel_view_release(ch, 1) == MAPSHARE_OK);
    EXPECT(mapshare_channel_receive(ch, buf, sizeof buf, &n, 0) == MAPSHARE_OK);
    EXPECT(n == 6 && memcmp(buf, "second", 6) == 0);
    EXPECT(mapshare_channel_receive(ch, buf, sizeof buf, &n, 0) == MAPSHARE_E_EMPTY);
    EXPECT(mapshare_channel_receive(ch, buf, sizeof buf, &n, 0.02) == MAPSHARE_E_TIMEOUT);
    mapshare_channel_stats st;
    EXPECT(mapshare_channel_statistics(ch, &st) == MAPSHARE_OK);
    EXPECT(st.capacity == 104 && st.sent_messages == 2 && st.received_messages == 2);
    EXPECT(st.sent_bytes == 12 && st.queued_bytes == 0 && !st.closed);
    EXPECT(mapshare_channel_close_sending(ch) == MAPSHARE_OK);
    EXPECT(mapshare_channel_receive(ch, buf, sizeof buf, &n, 1.0) == MAPSHARE_E_CLOSED);
    EXPECT(mapshare_channel_send(ch, "x", 1, 0) == MAPSHARE_E_CLOSED);
    EXPECT(mapshare_segment_close(ch) == MAPSHARE_OK);
    /* segment: views, read-only handles, bounds, change waits */
    snprintf(name, sizeof name, "%s.seg", base);
    EXPECT(mapshare_segment_create(name, 10000, NULL, &seg) == MAPSHARE_OK);
    if (!seg)
        return 1;
    EXPECT(mapshare_segment_create(name, 10000, NULL, &ro) == MAPSHARE_E_EXISTS && !ro);
    memcpy((char *)mapshare_segment_data(seg) + 5000, "viewed", 6);
    mapshare_view *v = NULL;
    EXPECT(mapshare_segment_map_view(seg, 4999, 100, MAPSHARE_ACCESS_READ, &v) == MAPSHARE_OK);
    EXPECT(v && mapshare_view_size(v) == 100 &&
           memcmp((char *)mapshare_view_data(v) + 1, "viewed", 6) == 0);
    mapshare_view_release(v);
    EXPECT(mapshare_segment_map_view(seg, 9990, 11, 0, &v) == MAPSHARE_E_INVALID && !v);
    EXPECT(mapshare_segment_read(seg, 9990, buf, 11) == MAPSHARE_E_INVALID);
    o.access = MAPSHARE_ACCESS_READ;
    EXPECT(mapshare_segment_open(name, &o, &ro) == MAPSHARE_OK);
    EXPECT(mapshare_segment_access(ro) == MAPSHARE_ACCESS_READ);
    EXPECT(mapshare_segment_map_view(ro, 0, 10, MAPSHARE_ACCESS_WRITE, &v) ==
           MAPSHARE_E_PERMISSION);
    EXPECT(mapshare_segment_write(ro, 0, "x", 1) == MAPSHARE_E_PERMISSION);
    EXPECT(mapshare_segment_read(ro, 5000, buf, 6) == MAPSHARE_OK && memcmp(buf, "viewed", 6) == 0);
    uint32_t c = mapshare_segment_change_count(seg), now = 0;
    EXPECT(mapshare_segment_wait_for_change(ro, c, 0.02, &now) == MAPSHARE_E_TIMEOUT);
    EXPECT(mapshare_segment_notify(seg) == MAPSHARE_OK);
    EXPECT(mapshare_segment_wait_for_change(ro, c, 1.0, &now) == MAPSHARE_OK && now == c + 1);
    EXPECT(mapshare_lock_acquire(seg, 0) == MAPSHARE_OK);
    EXPECT(mapshare_lock_acquire(seg, 0) == MAPSHARE_E_ALREADY_HELD);
    EXPECT(mapshare_lock_release(seg) == MAPSHARE_OK);
    EXPECT(mapshare_lock_release(seg) == MAPSHARE_E_NOT_OWNER);
    /* fork: the child counts itself (after_fork), uses the handle, closes it; the
     * segment lives on for the parent */
    pid_t pid = fork();
    if (pid == 0) {
        int bad = mapshare_segment_after_fork(seg) != MAPSHARE_OK ||
                  mapshare_segment_write(seg, 0, "child", 5) != MAPSHARE_OK ||
                  mapshare_segment_notify(seg) != MAPSHARE_OK ||
                  mapshare_segment_close(seg) != MAPSHARE_OK;
        _exit(bad);
    }
    int wst = 0;
    EXPECT(pid > 0 && waitpid(pid, &wst, 0) == pid && WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    EXPECT(mapshare_segment_read(seg, 0, buf, 5) == MAPSHARE_OK && memcmp(buf, "child", 5) == 0);
    EXPECT(mapshare_segment_close(ro) == MAPSHARE_OK);
    EXPECT(mapshare_segment_close(seg) == MAPSHARE_OK);
    EXPECT(mapshare_segment_open(name, NULL, &seg) == MAPSHARE_E_NOT_FOUND && !seg);
    /* semaphores and events */
    snprintf(name, sizeof name, "%s.sem", base);
    EXPECT(mapshare_semaphore_create(name, 2, 1, NULL, &sem) == MAPSHARE_E_INVALID);
    EXPECT(mapshare_semaphore_open_or_create(name, 1, 1, NULL, &sem) == MAPSHARE_OK);
    EXPECT(mapshare_semaphore_release(sem, 1) == MAPSHARE_E_VALUE);
    EXPECT(mapshare_semaphore_acquire(sem, 0) == MAPSHARE_OK);
    EXPECT(mapshare_semaphore_acquire(sem, 0.02) == MAPSHARE_E_TIMEOUT);
    EXPECT(mapshare_event_set(sem) == MAPSHARE_E_LAYOUT);
    mapshare_segment_close(sem);
    snprintf(name, sizeof name, "%s.ev", base);
    EXPECT(mapshare_event_open_or_create(name, 1, NULL, &ev) == MAPSHARE_OK);
    EXPECT(mapshare_event_is_set(ev) == 1);
    EXPECT(mapshare_event_clear(ev) == MAPSHARE_OK && mapshare_event_is_set(ev) == 0);
    EXPECT(mapshare_event_wait(ev, 0.02) == MAPSHARE_E_TIMEOUT);
    mapshare_segment *lk = NULL;
    EXPECT(mapshare_lock_open_or_create(name, NULL, &lk) == MAPSHARE_E_LAYOUT && !lk);
    mapshare_segment_close(lk);
    mapshare_segment_close(ev);
    /* events and semaphores placed in a plain segment (create_in / open_in) */
    snprintf(name, sizeof name, "%s.in", base);
    EXPECT(mapshare_segment_create(name, 64, NULL, &seg) == MAPSHARE_OK);
    mapshare_segment *pe = NULL, *pe2 = NULL, *ps = NULL;
    EXPECT(mapshare_event_create_in(seg, 4, 0, &pe) == MAPSHARE_E_INVALID && !pe);
    EXPECT(mapshare_event_create_in(seg, 56, 0, &pe) == MAPSHARE_E_INVALID && !pe);
    EXPECT(mapshare_event_create_in(seg, UINT64_MAX - 7, 0, &pe) == MAPSHARE_E_INVALID);
    EXPECT(mapshare_event_open_in(seg, 0, &pe) == MAPSHARE_E_LAYOUT && !pe);
    EXPECT(mapshare_event_create_in(seg, 48, 1, &pe) == MAPSHARE_OK);
    EXPECT(mapshare_event_open_in(seg, 48, &pe2) == MAPSHARE_OK);
    EXPECT(mapshare_event_is_set(pe2) == 1);
    EXPECT(mapshare_event_clear(pe2) == MAPSHARE_OK && mapshare_event_is_set(pe) == 0);
    EXPECT(mapshare_event_wait(pe, 0.02) == MAPSHARE_E_TIMEOUT);
    EXPECT(mapshare_semaphore_open_in(seg, 48, &ps) == MAPSHARE_E_LAYOUT);
    EXPECT(mapshare_semaphore_acquire(pe, 0) == MAPSHARE_E_INVALID);  /* not a semaphore */
    EXPECT(mapshare_segment_size(pe) == 0 && mapshare_segment_data(pe) == NULL);
    EXPECT(mapshare_segment_notify(pe) == MAPSHARE_E_INVALID);  /* no header of its own */
    mapshare_segment_close(pe2);
    EXPECT(mapshare_event_create_in(pe, 0, 0, &pe2) == MAPSHARE_E_INVALID && !pe2);
    EXPECT(mapshare_semaphore_create_in(seg, 0, 2, 1, &ps) == MAPSHARE_E_INVALID && !ps);
    EXPECT(mapshare_semaphore_create_in(seg, 0, 1, 2, &ps) == MAPSHARE_OK);
    EXPECT(mapshare_semaphore_release(ps, 1) == MAPSHARE_OK && mapshare_semaphore_value(ps) == 2);
    EXPECT(mapshare_semaphore_release(ps, 1) == MAPSHARE_E_VALUE);
    EXPECT(mapshare_semaphore_acquire(ps, 0) == MAPSHARE_OK);
    EXPECT(mapshare_event_set(ps) == MAPSHARE_E_INVALID);  /* not an event */
    mapshare_segment_close(ps);
    EXPECT(mapshare_event_create_in(NULL, 0, 0, &ps) == MAPSHARE_E_INVALID && !ps);
    /* the segment closed first: its placed event finds no memory, and is closed after */
    EXPECT(mapshare_segment_close(seg) == MAPSHARE_OK);
    EXPECT(mapshare_event_set(pe) == MAPSHARE_E_INVALID);
    EXPECT(mapshare_event_is_set(pe) < 0);
    EXPECT(mapshare_event_wait(pe, 0) == MAPSHARE_E_INVALID);
    EXPECT(mapshare_segment_close(pe) == MAPSHARE_OK);
    /* mapshare_wait_any: misuse, and what a single process sees ready */
    snprintf(name, sizeof name, "%s.wait", base);
    EXPECT(mapshare_segment_create(name, 64, NULL, &seg) == MAPSHARE_OK);
    EXPECT(mapshare_event_create_in(seg, 0, 0, &pe) == MAPSHARE_OK);
    {
        mapshare_wait_item wi[2];
        uint8_t rd[2] = {7, 7};
        memset(wi, 0, sizeof wi);
        wi[0].object = seg;
        wi[0].since = mapshare_segment_change_count(seg);
        wi[1].object = pe;
        EXPECT(mapshare_wait_any(wi, 0, 0, rd) == MAPSHARE_E_INVALID);
        EXPECT(mapshare_wait_any(wi, 2, 0.02, rd) == MAPSHARE_E_TIMEOUT && !rd[0] && !rd[1]);
        EXPECT(mapshare_event_set(pe) == MAPSHARE_OK);
        EXPECT(mapshare_wait_any(wi, 2, 1.0, rd) == MAPSHARE_OK && !rd[0] && rd[1]);
        EXPECT(mapshare_segment_notify(seg) == MAPSHARE_OK);
        EXPECT(mapshare_wait_any(wi, 2, 1.0, rd) == MAPSHARE_OK && rd[0] && rd[1]);
        wi[1].object = seg;  /* the same segment with the same since: listed twice */
        EXPECT(mapshare_wait_any(wi, 2, 0, rd) == MAPSHARE_E_INVALID);
        wi[1].since = wi[0].since + 1;  /* another since: two waits */
        EXPECT(mapshare_wait_any(wi, 2, 0, rd) == MAPSHARE_OK && rd[0] && !rd[1]);
        wi[1].object = NULL;
        EXPECT(mapshare_wait_any(wi, 2, 0, rd) == MAPSHARE_E_INVALID);
        snprintf(name, sizeof name, "%s.waitlock", base);
        EXPECT(mapshare_lock_create(name, NULL, &lk) == MAPSHARE_OK);
        wi[1].object = lk;
        EXPECT(mapshare_wait_any(wi, 2, 0, rd) == MAPSHARE_E_INVALID);
        EXPECT(mapshare_wait_any(NULL, 1, 0, rd) == MAPSHARE_E_INVALID);
        mapshare_segment_close(lk);
    }
    mapshare_segment_close(pe);
    EXPECT(mapshare_segment_close(seg) == MAPSHARE_OK);
    /* statuses have texts */
    EXPECT(strstr(mapshare_strerror(MAPSHARE_E_VERSION), "layout version") != NULL);
    EXPECT(strcmp(mapshare_strerror(12345), "unknown mapshare status") == 0);
    if (failures)
        printf("failed %d\n", failures);
    else
        printf("ok\n");
    return failures != 0;
}

static int kind_code(const char *k)
{
    static const char *names[] = {"any", "segment", "lock", "event", "semaphore", "channel"};
    for (int i = 0; i < 6; i++)
        if (strcmp(k, names[i]) == 0)
            return i;
    return -1;
}

int main(int argc, char **argv)
{
    mapshare_options o;
    mapshare_options_init(&o);
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--path") == 0) o.path = argv[++i];
        else if (strcmp(a, "--mode") == 0) o.mode = (unsigned)strtoul(argv[++i], NULL, 8);
        else if (strcmp(a, "--persistent") == 0) o.lifetime = MAPSHARE_LIFETIME_PERSISTENT;
        else if (strcmp(a, "--access") == 0) {
            const char *v = argv[++i];
            o.access = strcmp(v, "r") == 0 ? MAPSHARE_ACCESS_READ
                     : strcmp(v, "copy") == 0 ? MAPSHARE_ACCESS_COPY : MAPSHARE_ACCESS_WRITE;
        }
        else if (strcmp(a, "--kind") == 0) o.kind = kind_code(argv[++i]);
        else if (strcmp(a, "--allow-foreign") == 0) o.allow_foreign = 1;
        else if (strcmp(a, "--wait") == 0) o.wait = atof(argv[++i]);
        else if (strcmp(a, "--init-timeout") == 0) o.init_timeout = atof(argv[++i]);
        else { fprintf(stderr, "unknown option %s\n", a); return 2; }
    }
    if (i >= argc) { fprintf(stderr, "no command\n"); return 2; }
    const char *cmd = argv[i++];
    int rest = argc - i;
    char **args = argv + i;
    mapshare_segment *s = NULL;
    int st;
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (strcmp(cmd, "selftest") == 0 && argc > i)
        return selftest(argv[i]);
    if (strcmp(cmd, "osname") == 0) {
        for (int k = 0; k < rest; k++) {
            char buf[MAPSHARE_OS_NAME_MAX];
            if ((st = mapshare_os_name(args[k], buf, sizeof buf)) != MAPSHARE_OK)
                return fail(st);
            printf("%s\n", buf);
        }
        return 0;
    }
    if (rest < 1) { fprintf(stderr, "no name\n"); return 2; }
    const char *name = strcmp(args[0], "-") == 0 ? NULL : args[0];

    if (strcmp(cmd, "create") == 0 && rest >= 3) {
        if ((st = mapshare_segment_create(name, strtoull(args[1], NULL, 10), &o, &s)))
            return fail(st);
        if ((st = mapshare_segment_write(s, 0, args[2], strlen(args[2]))))
            return fail(st);
        printf("ok %s\n", mapshare_segment_os_name(s));
        fflush(stdout);
        char line[64];
        while (fgets(line, sizeof line, stdin)) {
        }
        if (rest >= 4 && strcmp(args[3], "--no-close") == 0)
            return 0;  /* a program that just ends: the library's exit path detaches */
        return mapshare_segment_close(s) ? 1 : 0;
    }
    if (strcmp(cmd, "open") == 0 && rest >= 2) {
        if ((st = mapshare_segment_open(name, &o, &s)))
            return fail(st);
        size_t n = (size_t)atol(args[1]);
        if (n > mapshare_segment_size(s))
            n = (size_t)mapshare_segment_size(s);
        char *buf = (char *)calloc(1, n + 1);
        if ((st = mapshare_segment_read(s, 0, buf, n)))
            return fail(st);
        printf("ok %llu %d %s\n", (unsigned long long)mapshare_segment_size(s),
               mapshare_segment_kind(s), mapshare_segment_name(s));
        printf("%s\n", buf);
        free(buf);
        return mapshare_segment_close(s) ? 1 : 0;
    }
    if (strcmp(cmd, "write") == 0 && rest >= 2) {
        if ((st = mapshare_segment_open(name, &o, &s)))
            return fail(st);
        if ((st = mapshare_segment_write(s, 0, args[1], strlen(args[1]))))
            return fail(st);
        if ((st = mapshare_segment_notify(s)))
            return fail(st);
        printf("ok\n");
        return mapshare_segment_close(s) ? 1 : 0;
    }
    if (strcmp(cmd, "unlink") == 0) {
        if ((st = mapshare_unlink(name, &o)))
            return fail(st);
        printf("ok\n");
        return 0;
    }
    if (strcmp(cmd, "send") == 0) {
        if ((st = mapshare_channel_open(name, &o, &s)))
            return fail(st);
        int close_it = 0, no_close = 0;
        for (int k = 1; k < rest; k++) {
            if (strcmp(args[k], "--close") == 0) { close_it = 1; continue; }
            if (strcmp(args[k], "--no-close") == 0) { no_close = 1; continue; }
            if ((st = mapshare_channel_send(s, args[k], strlen(args[k]), 10.0)))
                return fail(st);
        }
        if (close_it && (st = mapshare_channel_close_sending(s)))
            return fail(st);
        printf("ok\n");
        if (no_close)
            return 0;  /* ends without closing: detached by the exit path, not dead */
        return mapshare_segment_close(s) ? 1 : 0;
    }
    if (strcmp(cmd, "recv") == 0) {
        if ((st = mapshare_channel_open(name, &o, &s)))
            return fail(st);
        printf("ok\n");
        char buf[4096];
        size_t n;
        while ((st = mapshare_channel_receive(s, buf, sizeof buf - 1, &n, 10.0)) == 0) {
            buf[n] = 0;
            printf("msg %s\n", buf);
        }
        printf("end %d\n", st);
        return mapshare_segment_close(s) ? 1 : 0;
    }
    if (strcmp(cmd, "lock-hold") == 0 || strcmp(cmd, "lock") == 0) {
        o.kind = MAPSHARE_KIND_ANY;
        if ((st = mapshare_segment_open(name, &o, &s)))
            return fail(st);
        st = mapshare_lock_acquire(s, 5.0);
        if (st != MAPSHARE_OK && st != MAPSHARE_E_OWNER_DIED)
            return fail(st);
        if (cmd[4] == '-') {
            printf("held\n");
            for (;;)
                pause();
        }
        printf("ok %d\n", st);
        if ((st = mapshare_lock_release(s)))
            return fail(st);
        return mapshare_segment_close(s) ? 1 : 0;
    }
    if (strcmp(cmd, "event-wait") == 0 || strcmp(cmd, "event-set") == 0) {
        if ((st = mapshare_event_open(name, &o, &s)))
            return fail(st);
        st = cmd[6] == 'w' ? mapshare_event_wait(s, 10.0) : mapshare_event_set(s);
        if (st)
            return fail(st);
        printf("ok %d\n", mapshare_event_is_set(s));
        return mapshare_segment_close(s) ? 1 : 0;
    }
    if (strcmp(cmd, "sem-acquire") == 0 || strcmp(cmd, "sem-release") == 0) {
        if ((st = mapshare_semaphore_open(name, &o, &s)))
            return fail(st);
        st = cmd[4] == 'a' ? mapshare_semaphore_acquire(s, 10.0)
                           : mapshare_semaphore_release(s, 1);
        if (st)
            return fail(st);
        printf("ok %u\n", mapshare_semaphore_value(s));
        return mapshare_segment_close(s) ? 1 : 0;
    }
    if ((strcmp(cmd, "in-event") == 0 || strcmp(cmd, "in-sem") == 0) && rest >= 3) {
        /* in-event NAME OFFSET create0|create1|open|set|clear|wait
         * in-sem NAME OFFSET create VALUE MAX | open | acquire | release
         * An event or semaphore placed in segment NAME (create_in / open_in). */
        int is_ev = cmd[3] == 'e';
        const char *op = args[2];
        mapshare_segment *x = NULL;
        if ((st = mapshare_segment_open(name, &o, &s)))
            return fail(st);
        uint64_t off = (uint64_t)strtoull(args[1], NULL, 10);
        if (strncmp(op, "create", 6) == 0)
            st = is_ev ? mapshare_event_create_in(s, off, op[6] == '1', &x)
                       : mapshare_semaphore_create_in(
                             s, off, rest >= 5 ? (uint32_t)atol(args[3]) : 1,
                             rest >= 5 ? (uint32_t)atol(args[4]) : 1, &x);
        else
            st = is_ev ? mapshare_event_open_in(s, off, &x) : mapshare_semaphore_open_in(s, off, &x);
        if (st)
            return fail(st);
        if (strcmp(op, "set") == 0)
            st = mapshare_event_set(x);
        else if (strcmp(op, "clear") == 0)
            st = mapshare_event_clear(x);
        else if (strcmp(op, "wait") == 0)
            st = mapshare_event_wait(x, 10.0);
        else if (strcmp(op, "acquire") == 0)
            st = mapshare_semaphore_acquire(x, 10.0);
        else if (strcmp(op, "release") == 0)
            st = mapshare_semaphore_release(x, 1);
        if (st)
            return fail(st);
        if (is_ev)
            printf("ok %d\n", mapshare_event_is_set(x));
        else
            printf("ok %u\n", mapshare_semaphore_value(x));
        mapshare_segment_close(x);
        return mapshare_segment_close(s) ? 1 : 0;
    }
    if (strcmp(cmd, "wait-any") == 0 && rest >= 2) {
        /* wait-any TIMEOUT SPEC...: SPEC is seg:NAME[:SINCE] (default: the count now),
         * ev:NAME, sem:NAME, ch:NAME, lock:NAME, in-ev:NAME:OFFSET, in-sem:NAME:OFFSET.
         * Prints "ok I..." (the ready items), then for each ready channel
         * "ch I STATUS" of a receive with timeout 0. */
        int m = rest - 1;
        mapshare_wait_item *items = (mapshare_wait_item *)calloc((size_t)m, sizeof *items);
        mapshare_segment **hold = (mapshare_segment **)calloc((size_t)m * 2, sizeof *hold);
        uint8_t *ready = (uint8_t *)calloc((size_t)m, 1);
        if (!items || !hold || !ready)
            return 2;
        for (int k = 0; k < m; k++) {
            char spec[400];
            snprintf(spec, sizeof spec, "%s", args[1 + k]);
            char *kind = spec, *nm = strchr(spec, ':'), *extra = NULL;
            if (!nm)
                return 2;
            *nm++ = 0;
            if ((extra = strchr(nm, ':')) != NULL)
                *extra++ = 0;
            mapshare_segment *h = NULL, *x = NULL;
            if (strcmp(kind, "ev") == 0)
                st = mapshare_event_open(nm, &o, &h);
            else if (strcmp(kind, "sem") == 0)
                st = mapshare_semaphore_open(nm, &o, &h);
            else if (strcmp(kind, "ch") == 0)
                st = mapshare_channel_open(nm, &o, &h);
            else if (strcmp(kind, "lock") == 0)
                st = mapshare_lock_open(nm, &o, &h);
            else
                st = mapshare_segment_open(nm, &o, &h);
            if (st)
                return fail(st);
            hold[2 * k] = h;
            items[k].object = h;
            if (strcmp(kind, "seg") == 0)
                items[k].since = extra ? (uint32_t)strtoul(extra, NULL, 10)
                                       : mapshare_segment_change_count(h);
            if (strncmp(kind, "in-", 3) == 0) {
                uint64_t off = extra ? (uint64_t)strtoull(extra, NULL, 10) : 0;
                st = kind[3] == 'e' ? mapshare_event_open_in(h, off, &x)
                                    : mapshare_semaphore_open_in(h, off, &x);
                if (st)
                    return fail(st);
                hold[2 * k + 1] = x;
                items[k].object = x;
            }
        }
        if ((st = mapshare_wait_any(items, (size_t)m, atof(args[0]), ready)))
            return fail(st);
        printf("ok");
        for (int k = 0; k < m; k++)
            if (ready[k])
                printf(" %d", k);
        printf("\n");
        for (int k = 0; k < m; k++) {
            if (ready[k] && mapshare_segment_kind(items[k].object) == MAPSHARE_KIND_CHANNEL) {
                char buf[256];
                size_t len = 0;
                printf("ch %d %d\n", k,
                       mapshare_channel_receive(items[k].object, buf, sizeof buf, &len, 0));
            }
        }
        for (int k = 2 * m - 1; k >= 0; k--)  /* placed handles before their segments */
            mapshare_segment_close(hold[k]);
        free(items);
        free(hold);
        free(ready);
        return 0;
    }
    fprintf(stderr, "unknown command %s\n", cmd);
    return 2;
}
