/* The C half of examples/c: a C program and a Python program (python_side.py) talking
 * both ways through mapshare, built against <mapshare.h> and libmapshare only.
 *
 *   1. segment: Python writes a greeting into segment NAME and notifies; we wait for the
 *      change, read it, write our answer further on and notify back.
 *   2. channels: Python sends jobs on channel NAME-to-c and closes it for sending; we
 *      receive until the end of the stream and answer each job on channel NAME-to-py
 *      (which we create), then close that one for sending.
 *   3. lock: both programs add 1 to a counter in the segment 10,000 times under the
 *      segment's built-in lock (Python: seg.lock()); no update is lost.
 *
 * Build and run: see README.md (make -C examples/c, then python examples/run.py c).
 */
#include <mapshare.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The segment's fields, shared with python_side.py */
#define GREETING 0     /* Python's greeting: a NUL-terminated string */
#define ANSWER 1024    /* ours */
#define COUNTER 2048   /* uint64 counter, under the segment's lock */
#define ROUNDS 10000

/* Print what failed and why, and exit: a status is never ignored. */
static void check(mapshare_status st, const char *what)
{
    if (st != MAPSHARE_OK && st != MAPSHARE_E_OWNER_DIED) {
        fprintf(stderr, "c_side: %s: %s\n", what, mapshare_strerror(st));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "example-c";
    char to_c[MAPSHARE_NAME_MAX + 1], to_py[MAPSHARE_NAME_MAX + 1];
    mapshare_options wait;
    mapshare_segment *seg, *jobs, *answers;
    uint32_t seen;

    snprintf(to_c, sizeof to_c, "%s-to-c", name);
    snprintf(to_py, sizeof to_py, "%s-to-py", name);
    mapshare_options_init(&wait);
    wait.wait = 30.0; /* the Python side may not have created them yet */

    /* 1. segment, both ways */
    check(mapshare_segment_open(name, &wait, &seg), "open the segment");
    check(mapshare_segment_wait_for_change(seg, 0, 30.0, &seen), "wait for the greeting");
    char *data = mapshare_segment_data(seg);
    printf("c_side: read \"%s\"\n", data + GREETING);
    snprintf(data + ANSWER, 1024, "hello from C, who read %zu bytes",
             strlen(data + GREETING));
    check(mapshare_segment_notify(seg), "notify");

    /* 2. a channel each way: jobs in, answers out.  Python opens NAME-to-py before it
     * sends a job, so our close at the end never removes it under Python's feet. */
    check(mapshare_channel_create(to_py, 1 << 16, NULL, &answers), "create NAME-to-py");
    check(mapshare_channel_open(to_c, &wait, &jobs), "open NAME-to-c");
    for (;;) {
        char job[256], answer[300];
        size_t len;
        mapshare_status st = mapshare_channel_receive(jobs, job, sizeof job - 1, &len, 30.0);
        if (st == MAPSHARE_E_CLOSED)
            break; /* Python closed it for sending and we took everything */
        check(st, "receive a job");
        job[len] = '\0';
        int n = snprintf(answer, sizeof answer, "done: %s", job);
        check(mapshare_channel_send(answers, answer, (size_t)n, 30.0), "send an answer");
    }
    check(mapshare_channel_close_sending(answers), "close NAME-to-py");
    printf("c_side: answered every job\n");

    /* 3. the lock, shared with Python: MAPSHARE_E_OWNER_DIED also means "acquired" */
    volatile uint64_t *counter = (volatile uint64_t *)(data + COUNTER);
    for (int i = 0; i < ROUNDS; i++) {
        check(mapshare_lock_acquire(seg, 30.0), "acquire the lock");
        *counter = *counter + 1;
        check(mapshare_lock_release(seg), "release the lock");
    }
    check(mapshare_segment_notify(seg), "notify");  /* tells Python we are done counting */
    printf("c_side: added %d under the lock\n", ROUNDS);

    /* the 'shared' objects disappear when their last user closes them */
    check(mapshare_segment_close(jobs), "close");
    check(mapshare_segment_close(answers), "close");
    check(mapshare_segment_close(seg), "close");
    return 0;
}
