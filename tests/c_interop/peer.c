/* The C peer of tests/multiprocess/test_c_interop.py: a program built against the public
 * header include/mapshare.h and the C library only (no Python), one sub-command per role:
 *
 *   segment IN OUT            open segment IN (wait for it), wait for its first change,
 *                             read the u32-length-prefixed bytes at 0; create segment OUT
 *                             (4096 bytes) holding them reversed, notify; wait for the next
 *                             change of IN and expect "ack" there
 *   os-name NAME...           print the OS name of each logical name (mapshare_os_name)
 *   chan-echo IN OUT CAP      create channel OUT (CAP bytes); receive every message of
 *                             channel IN (alternately copied and viewed) until its end of
 *                             stream, send each to OUT prefixed by "C>" (alternately sent
 *                             and loaned), then close OUT for sending
 *   lock-count LOCK SEG N     N times under the named lock LOCK (LOCK "-": SEG's built-in
 *                             lock, Python's seg.lock()): read the u64 at 0 of SEG, yield,
 *                             write it + 1 (an update lost without the lock)
 *   event-pingpong PING PONG N   N times: wait for PING, clear it, set PONG
 *   semaphore SEM N           release N units one at a time; after "go" on stdin (Python
 *                             took them and released N again), acquire N units and
 *                             expect no more
 *   receive-forever NAME      receive one message with no timeout; print it
 *   send-forever NAME N       send one message of N bytes 0xab with no timeout; say sent
 *   hold-loan NAME N          loan N bytes, write half of them, say ready, sleep
 *   hold-view NAME            view the next message (zero-copy receive), print it, say
 *                             ready, sleep without releasing it
 *   hold-lock LOCK SEG        acquire the lock, write half of the pair at 0 of SEG, say
 *                             ready, sleep
 *   traffic NAME N            N times send then receive one message; say so and wait for
 *                             "quit" on stdin before closing the channel
 *   send-after NAME TEXT      send TEXT, then receive without waiting until empty,
 *                             printing each message; print the abandoned count
 *   lock-after LOCK SEG       acquire, expecting the previous holder dead; repair the
 *                             pair at 0 of SEG; release; acquire and release again
 *   stress-send NAME ID COUNT send COUNT stress messages as sender ID (every other one
 *                             written in place through a loan)
 *   stress-receive NAME OUT   receive until the end of stream (every other message through
 *                             a view), writing "sender seq" (or "BAD <len>") per message
 *                             to the file OUT
 *
 * Output: one line per fact on stdout (flushed at once, so a test can wait for "ready");
 * any unexpected status ends the program with exit code 1 and the status's text on
 * stderr.  The stress message format is the one of _c_interop_children.py.
 */
#define _POSIX_C_SOURCE 200809L
#include <mapshare.h>

#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT 60.0 /* seconds: bounds a hang in a test, never a speed assertion */

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* Any status other than `want` ends the program, naming the call and the status. */
static void expect(mapshare_status st, mapshare_status want, const char *what)
{
    if (st != want)
        die("%s: %s (status %d, errno %d; expected %s)", what, mapshare_strerror(st),
            (int)st, mapshare_last_os_error(), mapshare_strerror(want));
}
#define OK(call) expect((call), MAPSHARE_OK, #call)

static mapshare_options waiting(void)
{
    mapshare_options o;
    mapshare_options_init(&o);
    o.wait = WAIT;
    return o;
}

static unsigned long arg_ul(const char *s)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0')
        die("not a number: %s", s);
    return v;
}

static void sleep_forever(void)
{
    for (;;)
        pause();
}

static void print_hex(const char *label, const void *p, size_t n)
{
    const unsigned char *b = p;
    printf("%s ", label);
    for (size_t i = 0; i < n; i++)
        printf("%02x", b[i]);
    putchar('\n');
    fflush(stdout);
}

/* ---- the stress message format (_c_interop_children.py) ---------------------------- */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

/* zlib's CRC-32 (Python: zlib.crc32) */
static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint32_t stress_size(uint32_t sender, uint32_t seq)
{
    uint32_t r = seq * 2654435761u + sender * 40503u;
    if (seq % 97 == 0)
        return 3000 + r % 1000;
    return r % 300;
}

static void stress_fill(unsigned char *p, uint32_t sender, uint32_t seq, uint32_t n)
{
    uint32_t base = sender * 131u + seq * 7u;
    for (uint32_t i = 0; i < n; i++)
        p[i] = (unsigned char)(base + i);
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* 1 and (sender, seq) for a well-formed stress message, else 0. */
static int stress_check(const unsigned char *m, size_t len, uint32_t *sender, uint32_t *seq)
{
    static unsigned char want[4096];
    if (len < 16)
        return 0;
    uint32_t s = get_u32(m), q = get_u32(m + 4), n = get_u32(m + 8), crc = get_u32(m + 12);
    if (n != len - 16 || n != stress_size(s, q) || n > sizeof want)
        return 0;
    if (crc32_of(m + 16, n) != crc)
        return 0;
    stress_fill(want, s, q, n);
    if (memcmp(want, m + 16, n) != 0)
        return 0;
    *sender = s;
    *seq = q;
    return 1;
}

/* ---- roles --------------------------------------------------------------------------- */

static int cmd_segment(const char *in_name, const char *out_name)
{
    mapshare_options o = waiting();
    mapshare_segment *in, *out;
    unsigned char buf[8192], rev[8192];
    uint32_t n, seen;

    OK(mapshare_segment_open(in_name, &o, &in));
    OK(mapshare_segment_wait_for_change(in, 0, WAIT, &seen));
    OK(mapshare_segment_read(in, 0, &n, 4));
    if (n > sizeof buf)
        die("length %u at 0 of %s", n, in_name);
    OK(mapshare_segment_read(in, 4, buf, n));
    say("read %u", n);
    for (uint32_t i = 0; i < n; i++)
        rev[i] = buf[n - 1 - i];

    OK(mapshare_segment_create(out_name, 4096, NULL, &out));
    if (mapshare_segment_size(out) != 4096 || mapshare_segment_data(out) == NULL)
        die("created segment: size %llu", (unsigned long long)mapshare_segment_size(out));
    /* through the pointer, the way a C program uses shared memory */
    memcpy((unsigned char *)mapshare_segment_data(out) + 4, rev, n);
    memcpy(mapshare_segment_data(out), &n, 4);
    OK(mapshare_segment_notify(out));

    /* the answer: the change counter moves past what we saw, then "ack" is there */
    OK(mapshare_segment_wait_for_change(in, seen, WAIT, NULL));
    OK(mapshare_segment_read(in, 0, &n, 4));
    if (n != 3 || memcmp((unsigned char *)mapshare_segment_data(in) + 4, "ack", 3) != 0)
        die("no ack in %s (length %u)", in_name, n);
    say("acked");
    OK(mapshare_segment_close(out));
    OK(mapshare_segment_close(in));
    return 0;
}

static int cmd_os_name(int n, char **names)
{
    char buf[MAPSHARE_OS_NAME_MAX];
    for (int i = 0; i < n; i++) {
        OK(mapshare_os_name(names[i], buf, sizeof buf));
        say("%s", buf);
    }
    return 0;
}

static int cmd_chan_echo(const char *in_name, const char *out_name, unsigned long cap)
{
    mapshare_options o = waiting();
    mapshare_segment *in, *out;
    static unsigned char buf[1 << 20];
    unsigned long count = 0;

    OK(mapshare_channel_create(out_name, cap, NULL, &out));
    OK(mapshare_channel_open(in_name, &o, &in));
    for (;; count++) {
        const unsigned char *msg;
        size_t len;
        mapshare_status st;
        if (count % 2 == 0) {
            st = mapshare_channel_receive(in, buf + 2, sizeof buf - 2, &len, WAIT);
            msg = buf + 2;
        } else {
            const void *p;
            st = mapshare_channel_view(in, &p, &len, WAIT);
            if (st == MAPSHARE_OK) {
                if (len > sizeof buf - 2)
                    die("message of %zu bytes", len);
                memcpy(buf + 2, p, len);
                OK(mapshare_channel_view_release(in, 1));
            }
            msg = buf + 2;
        }
        if (st == MAPSHARE_E_CLOSED)
            break;
        expect(st, MAPSHARE_OK, "receive from IN");
        if (mapshare_channel_message_kind(in) != 0)
            die("message %lu: kind %d", count, mapshare_channel_message_kind(in));
        if (count % 3 == 0) {
            void *p;
            OK(mapshare_channel_loan(out, len + 2 + 100, &p, WAIT));
            memcpy(p, "C>", 2);
            memcpy((unsigned char *)p + 2, msg, len);
            OK(mapshare_channel_commit(out, len + 2)); /* less than the loan */
        } else {
            buf[0] = 'C';
            buf[1] = '>';
            OK(mapshare_channel_send(out, buf, len + 2, WAIT));
        }
    }
    OK(mapshare_channel_close_sending(out));
    say("echoed %lu", count);
    OK(mapshare_segment_close(in));
    OK(mapshare_segment_close(out));
    return 0;
}

static int cmd_lock_count(const char *lock_name, const char *seg_name, unsigned long n)
{
    mapshare_options o = waiting();
    mapshare_segment *lock, *seg;
    int builtin = strcmp(lock_name, "-") == 0;
    OK(mapshare_segment_open(seg_name, &o, &seg));
    if (builtin)
        lock = seg;
    else
        OK(mapshare_lock_open(lock_name, &o, &lock));
    volatile uint64_t *counter = mapshare_segment_data(seg);
    for (unsigned long i = 0; i < n; i++) {
        OK(mapshare_lock_acquire(lock, WAIT));
        uint64_t v = *counter;
        sched_yield(); /* widen the window a missing lock would let another writer in */
        *counter = v + 1;
        OK(mapshare_lock_release(lock));
    }
    say("counted %lu", n);
    if (!builtin)
        OK(mapshare_segment_close(lock));
    OK(mapshare_segment_close(seg));
    return 0;
}

static int cmd_event_pingpong(const char *ping_name, const char *pong_name, unsigned long n)
{
    mapshare_options o = waiting();
    mapshare_segment *ping, *pong;
    OK(mapshare_event_open(ping_name, &o, &ping));
    OK(mapshare_event_open(pong_name, &o, &pong));
    for (unsigned long i = 0; i < n; i++) {
        OK(mapshare_event_wait(ping, WAIT));
        if (mapshare_event_is_set(ping) != 1)
            die("round %lu: ping woke us but is not set", i);
        OK(mapshare_event_clear(ping));
        OK(mapshare_event_set(pong));
    }
    say("rounds %lu", n);
    OK(mapshare_segment_close(ping));
    OK(mapshare_segment_close(pong));
    return 0;
}

static int cmd_semaphore(const char *name, unsigned long n)
{
    mapshare_options o = waiting();
    mapshare_segment *sem;
    char line[64];
    OK(mapshare_semaphore_open(name, &o, &sem));
    for (unsigned long i = 0; i < n; i++)
        OK(mapshare_semaphore_release(sem, 1));
    say("released %lu", n);
    /* Python takes them all, then releases n again and says "go" */
    if (!fgets(line, sizeof line, stdin) || strcmp(line, "go\n") != 0)
        die("expected go on stdin");
    for (unsigned long i = 0; i < n; i++)
        OK(mapshare_semaphore_acquire(sem, WAIT));
    expect(mapshare_semaphore_acquire(sem, 0), MAPSHARE_E_TIMEOUT, "one unit too many");
    say("acquired %lu value %u", n, mapshare_semaphore_value(sem));
    OK(mapshare_segment_close(sem));
    return 0;
}

static int cmd_receive_forever(const char *name)
{
    mapshare_options o = waiting();
    mapshare_segment *ch;
    static unsigned char buf[1 << 16];
    size_t len;
    OK(mapshare_channel_open(name, &o, &ch));
    OK(mapshare_channel_receive(ch, buf, sizeof buf, &len, MAPSHARE_FOREVER));
    print_hex("got", buf, len);
    OK(mapshare_segment_close(ch));
    return 0;
}

static int cmd_send_forever(const char *name, unsigned long n)
{
    mapshare_options o = waiting();
    mapshare_segment *ch;
    static unsigned char buf[1 << 16];
    if (n > sizeof buf)
        die("at most %zu bytes", sizeof buf);
    memset(buf, 0xab, n);
    OK(mapshare_channel_open(name, &o, &ch));
    OK(mapshare_channel_send(ch, buf, n, MAPSHARE_FOREVER));
    say("sent %lu", n);
    OK(mapshare_segment_close(ch));
    return 0;
}

static int cmd_hold_loan(const char *name, unsigned long n)
{
    mapshare_options o = waiting();
    mapshare_segment *ch;
    void *p;
    OK(mapshare_channel_open(name, &o, &ch));
    OK(mapshare_channel_loan(ch, n, &p, WAIT));
    memset(p, 0xee, n / 2);
    say("ready");
    sleep_forever();
    return 1;
}

static int cmd_hold_view(const char *name)
{
    mapshare_options o = waiting();
    mapshare_segment *ch;
    const void *p;
    size_t len;
    OK(mapshare_channel_open(name, &o, &ch));
    OK(mapshare_channel_view(ch, &p, &len, WAIT));
    print_hex("viewing", p, len);
    say("ready");
    sleep_forever();
    return 1;
}

static int cmd_hold_lock(const char *lock_name, const char *seg_name)
{
    mapshare_options o = waiting();
    mapshare_segment *lock, *seg;
    OK(mapshare_lock_open(lock_name, &o, &lock));
    OK(mapshare_segment_open(seg_name, &o, &seg));
    OK(mapshare_lock_acquire(lock, WAIT));
    ((volatile uint64_t *)mapshare_segment_data(seg))[0] = 1; /* half of the pair */
    say("ready");
    sleep_forever();
    return 1;
}

static int cmd_traffic(const char *name, unsigned long n)
{
    mapshare_options o = waiting();
    mapshare_segment *ch;
    unsigned char buf[64];
    char line[64];
    size_t len;
    OK(mapshare_channel_open(name, &o, &ch));
    for (unsigned long i = 0; i < n; i++) {
        int k = snprintf((char *)buf, sizeof buf, "t%lu", i);
        OK(mapshare_channel_send(ch, buf, (size_t)k, WAIT));
        OK(mapshare_channel_receive(ch, buf, sizeof buf, &len, WAIT));
        if (len != (size_t)k || buf[0] != 't')
            die("traffic message %lu came back as %zu bytes", i, len);
    }
    /* no statistics call (it would repair the counts itself) and no close yet: the test
     * looks at the stored waiter counts that the traffic alone left */
    say("traffic %lu", n);
    if (!fgets(line, sizeof line, stdin) || strcmp(line, "quit\n") != 0)
        die("expected quit on stdin");
    OK(mapshare_segment_close(ch));
    return 0;
}

static int cmd_send_after(const char *name, const char *text)
{
    mapshare_options o = waiting();
    mapshare_segment *ch;
    mapshare_channel_stats st;
    static unsigned char buf[1 << 16];
    size_t len;
    mapshare_status s;
    OK(mapshare_channel_open(name, &o, &ch));
    OK(mapshare_channel_send(ch, text, strlen(text), WAIT));
    while ((s = mapshare_channel_receive(ch, buf, sizeof buf, &len, 0)) == MAPSHARE_OK)
        print_hex("got", buf, len);
    expect(s, MAPSHARE_E_EMPTY, "receive until empty");
    OK(mapshare_channel_statistics(ch, &st));
    say("abandoned %llu queued %llu", (unsigned long long)st.abandoned,
        (unsigned long long)st.queued_messages);
    OK(mapshare_segment_close(ch));
    return 0;
}

static int cmd_lock_after(const char *lock_name, const char *seg_name)
{
    mapshare_options o = waiting();
    mapshare_segment *lock, *seg;
    OK(mapshare_lock_open(lock_name, &o, &lock));
    OK(mapshare_segment_open(seg_name, &o, &seg));
    volatile uint64_t *pair = mapshare_segment_data(seg);
    expect(mapshare_lock_acquire(lock, WAIT), MAPSHARE_E_OWNER_DIED, "acquire after a death");
    say("owner died; pair %llu %llu", (unsigned long long)pair[0],
        (unsigned long long)pair[1]);
    pair[1] = pair[0]; /* repair what the dead holder left half-written */
    OK(mapshare_lock_release(lock));
    OK(mapshare_lock_acquire(lock, WAIT)); /* an ordinary lock again */
    say("acquired; pair %llu %llu", (unsigned long long)pair[0],
        (unsigned long long)pair[1]);
    OK(mapshare_lock_release(lock));
    OK(mapshare_segment_close(seg));
    OK(mapshare_segment_close(lock));
    return 0;
}

static int cmd_stress_send(const char *name, unsigned long sender, unsigned long count)
{
    mapshare_options o = waiting();
    mapshare_segment *ch;
    static unsigned char buf[16 + 4096];
    OK(mapshare_channel_open(name, &o, &ch));
    for (uint32_t seq = 0; seq < count; seq++) {
        uint32_t n = stress_size((uint32_t)sender, seq);
        unsigned char *m = buf;
        void *p = NULL;
        if (seq % 2) { /* every other one written in place, through a loan */
            OK(mapshare_channel_loan(ch, 16 + n, &p, WAIT));
            m = p;
        }
        stress_fill(m + 16, (uint32_t)sender, seq, n);
        put_u32(m, (uint32_t)sender);
        put_u32(m + 4, seq);
        put_u32(m + 8, n);
        put_u32(m + 12, crc32_of(m + 16, n));
        if (p)
            OK(mapshare_channel_commit(ch, 16 + n));
        else
            OK(mapshare_channel_send(ch, m, 16 + n, WAIT));
    }
    say("sent %lu", count);
    OK(mapshare_segment_close(ch));
    return 0;
}

static int cmd_stress_receive(const char *name, const char *out_path)
{
    mapshare_options o = waiting();
    mapshare_segment *ch;
    static unsigned char buf[1 << 16];
    unsigned long count = 0;
    FILE *out = fopen(out_path, "w");
    if (!out)
        die("cannot write %s", out_path);
    OK(mapshare_channel_open(name, &o, &ch));
    for (;; count++) {
        const void *p;
        size_t len;
        uint32_t sender, seq;
        mapshare_status st;
        if (count % 2) {
            st = mapshare_channel_view(ch, &p, &len, WAIT);
        } else {
            st = mapshare_channel_receive(ch, buf, sizeof buf, &len, WAIT);
            p = buf;
        }
        if (st == MAPSHARE_E_CLOSED)
            break;
        expect(st, MAPSHARE_OK, "stress receive");
        if (stress_check(p, len, &sender, &seq))
            fprintf(out, "%u %u\n", sender, seq);
        else
            fprintf(out, "BAD %zu\n", len);
        if (count % 2)
            OK(mapshare_channel_view_release(ch, 1));
    }
    if (fclose(out) != 0)
        die("cannot write %s", out_path);
    say("received %lu", count);
    OK(mapshare_segment_close(ch));
    return 0;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "";
    crc_init();
#define IS(c, nargs) (strcmp(cmd, c) == 0 && argc == 2 + (nargs))
    if (IS("segment", 2)) return cmd_segment(argv[2], argv[3]);
    if (strcmp(cmd, "os-name") == 0) return cmd_os_name(argc - 2, argv + 2);
    if (IS("chan-echo", 3)) return cmd_chan_echo(argv[2], argv[3], arg_ul(argv[4]));
    if (IS("lock-count", 3)) return cmd_lock_count(argv[2], argv[3], arg_ul(argv[4]));
    if (IS("event-pingpong", 3))
        return cmd_event_pingpong(argv[2], argv[3], arg_ul(argv[4]));
    if (IS("semaphore", 2)) return cmd_semaphore(argv[2], arg_ul(argv[3]));
    if (IS("receive-forever", 1)) return cmd_receive_forever(argv[2]);
    if (IS("send-forever", 2)) return cmd_send_forever(argv[2], arg_ul(argv[3]));
    if (IS("hold-loan", 2)) return cmd_hold_loan(argv[2], arg_ul(argv[3]));
    if (IS("hold-view", 1)) return cmd_hold_view(argv[2]);
    if (IS("hold-lock", 2)) return cmd_hold_lock(argv[2], argv[3]);
    if (IS("traffic", 2)) return cmd_traffic(argv[2], arg_ul(argv[3]));
    if (IS("send-after", 2)) return cmd_send_after(argv[2], argv[3]);
    if (IS("lock-after", 2)) return cmd_lock_after(argv[2], argv[3]);
    if (IS("stress-send", 3))
        return cmd_stress_send(argv[2], arg_ul(argv[3]), arg_ul(argv[4]));
    if (IS("stress-receive", 2)) return cmd_stress_receive(argv[2], argv[3]);
    die("usage: peer COMMAND ARGS... (see the comment at the top of peer.c); got %s", cmd);
    return 2;
}
