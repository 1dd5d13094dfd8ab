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
 *   sem-acquire NAME / sem-release NAME
 */
#include "mapshare.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(int st)
{
    printf("err %d %s\n", st, mapshare_strerror(st));
    fflush(stdout);
    return 1;
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
        char line[64];
        while (fgets(line, sizeof line, stdin)) {
        }
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
        int close_it = 0;
        for (int k = 1; k < rest; k++) {
            if (strcmp(args[k], "--close") == 0) { close_it = 1; continue; }
            if ((st = mapshare_channel_send(s, args[k], strlen(args[k]), 10.0)))
                return fail(st);
        }
        if (close_it && (st = mapshare_channel_close_sending(s)))
            return fail(st);
        printf("ok\n");
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
    fprintf(stderr, "unknown command %s\n", cmd);
    return 2;
}
