/* The memory layout of every object mapshare creates.  This file is the specification;
 * docs/design/layout.md mirrors it field by field so that a C, C++ or Rust program can
 * read a segment from that page alone.
 *
 * All integers are little-endian, naturally aligned.  The object starts with the header
 * page (ms_header, MS_HEADER_PAGE bytes: identity, locks, kind area) and the attach table
 * (attach_slots entries of ms_attach at attach_offset, which starts in the second half of
 * the header page and runs on after it); together they are the first header_size bytes.  The user area (a segment's bytes, a channel's ring)
 * starts at data_offset (== header_size == MS_HEADER_SIZE for objects this version
 * creates) and is `size` bytes long (the object itself is rounded up to whole pages).
 * Readers take attach_offset, attach_slots and data_offset from the header, checked
 * against the mapping (a later writer may choose another table size).
 *
 * Publication: the creator writes every field with magic == 0, then stores `magic`
 * with release ordering.  An opener that sees magic == 0 knows the header is still
 * being built (or its creator died half-way) and never parses the rest.
 *
 * Everything in here can be written by any process with write access: readers copy a
 * field once into a local, check it against the real mapping size, and report
 * MS_E_LAYOUT on any inconsistency.
 */
#ifndef MS_LAYOUT_H
#define MS_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#if defined(__cplusplus)
#define MS_STATIC_ASSERT static_assert
#elif defined(_MSC_VER) && !defined(__clang__)
#define MS_STATIC_ASSERT static_assert
#else
#define MS_STATIC_ASSERT _Static_assert
#endif

#define MS_MAGIC            0x0152485350414d00ULL  /* bytes "\0MAPSHR\x01" */
#define MS_MAGIC_RECLAIMED  0x0152485350414dffULL  /* an unfinished header claimed by a
                                                       * reclaimer: never valid, unlinked */
#define MS_LAYOUT_VERSION   2u
#define MS_HEADER_PAGE      4096u   /* sizeof(ms_header) */
#define MS_NAME_MAX         255u
#define MS_ATTACH_SLOTS     4096u   /* processes that can attach at once (created objects) */
#define MS_ATTACH_SLOTS_MAX 65536u  /* the most a reader accepts from a header */
/* The table starts in the second half of the header page (where version 1 had its 120
 * entries), so that its first 128 entries -- all a segment with few attachers uses --
 * share the page every opener touches anyway, and runs on into the pages after it. */
#define MS_ATTACH_OFFSET    2048u
/* header page + attach table, rounded up to a page: where the user area starts (69,632) */
#define MS_HEADER_SIZE      ((MS_ATTACH_OFFSET + MS_ATTACH_SLOTS * 16u + 4095u) / 4096u * 4096u)
#define MS_KIND_AREA_SIZE   1024u

/* kinds */
#define MS_KIND_SEGMENT     1u   /* user bytes */
#define MS_KIND_LOCK        2u   /* a named Lock: user_lock is the lock, no user area */
#define MS_KIND_EVENT       3u   /* a named Event: ms_event in the kind area */
#define MS_KIND_SEMAPHORE   4u   /* a named Semaphore: ms_semaphore in the kind area */
#define MS_KIND_CHANNEL     5u   /* a Channel: ms_ring in the kind area, ring in the user area */
#define MS_KIND_LINK        6u   /* a name pointing at a file-backed segment: path in the user area */
#define MS_KIND_TOPIC       7u   /* a Topic: ms_topic in the kind area, subscriber table + ring
                                  * in the user area */
#define MS_KIND_ARRAY       8u   /* a SharedArray: ms_array in the kind area, a .npy image
                                  * (or, file-backed, a .npy file's path) in the user area */
#define MS_KIND_LATEST      9u   /* a Latest: ms_latest in the kind area, its buffers in the
                                  * user area */
#define MS_KIND_MAX         9u

/* states */
#define MS_STATE_READY      1u
#define MS_STATE_DESTROYED  2u   /* the last user left and removed the name */

/* lifetimes */
#define MS_LIFETIME_PERSISTENT 1u   /* exists until unlink() */
#define MS_LIFETIME_SHARED     2u   /* removed when the last attached process detaches or dies */

/* flags */
#define MS_FLAG_FILE_BACKED 0x1u

/* wait slots (see ms_p_wait32): one per futex word of a segment.  Windows names a slot's
 * semaphore <object name>#w<slot in lowercase hex> and a lock slot's mutex #l<slot>
 * (docs/design/protocol.md, "Windows helper objects"). */
#define MS_SLOT_CHANGE      0u
#define MS_SLOT_EVENT       1u
#define MS_SLOT_SEMAPHORE   2u
#define MS_SLOT_NOT_EMPTY   3u
#define MS_SLOT_NOT_FULL    4u
#define MS_SLOT_DATA        5u   /* topic: data_seq (subscribers wait for a message) */
#define MS_SLOT_PROGRESS    6u   /* topic: progress (a block-mode publisher waits for room) */
#define MS_SLOT_VERSION     7u   /* latest: update_seq (readers wait for a newer version);
                                  * arrays wait on MS_SLOT_CHANGE */
/* lock slots (Windows named mutexes, #l8 ... #ld) */
#define MS_SLOT_META_LOCK   8u
#define MS_SLOT_USER_LOCK   9u
#define MS_SLOT_SEND_LOCK   10u
#define MS_SLOT_RECV_LOCK   11u
#define MS_SLOT_PUB_LOCK    12u
#define MS_SLOT_WRITE_LOCK  13u  /* latest: write_lock */
/* events and semaphores placed in the user area (Event.create_in): base + offset / 8 */
#define MS_SLOT_USER_BASE   0x100u

/* One attached process.  The attach table is attach_slots of these at attach_offset;
 * attach_end and attach_hint in the header keep attach and detach O(attached) rather
 * than O(slots) -- they are hints, rebuilt from the slots whenever they disagree.
 * attach_reserved says how many leading entries have storage: the creator reserves the
 * header page only (its 128 entries), attachers reserve the table page by page as they
 * reach it, and nobody reads past it (reading a hole would allocate it, or on a full
 * filesystem raise SIGBUS). */
typedef struct ms_attach {
    uint32_t pid;          /* 0: free slot */
    uint32_t count;        /* attach table: handles this process holds.  Channel peer
                            * tables (ms_ring.senders/receivers) reuse this entry with
                            * another meaning: handles in bits 0-15, threads asleep on
                            * the channel in bits 16-31 (MS_SLEEPER units) */
    uint64_t start;        /* ms_p_process_start(pid) when it attached */
} ms_attach;

/* Event: `state` is the futex word (0 clear, 1 set).  `tag` is MS_EVENT_TAG once
 * initialised (written after the other fields), so that opening an event where none was
 * created (Event.open_in on zeroed or foreign bytes) is refused rather than "working". */
#define MS_EVENT_TAG        0x5645534du   /* bytes "MSEV" */
#define MS_SEMAPHORE_TAG    0x4d53534du   /* bytes "MSSM" */
typedef struct ms_event {
    uint32_t state;
    uint32_t waiters;
    uint32_t reserved;
    uint32_t tag;              /* MS_EVENT_TAG: the last word, as in ms_semaphore */
} ms_event;

/* Semaphore: `value` is the futex word; `tag` as for events. */
typedef struct ms_semaphore {
    uint32_t value;
    uint32_t waiters;
    uint32_t maximum;
    uint32_t tag;              /* MS_SEMAPHORE_TAG */
} ms_semaphore;

/* Channel ring control.  head/tail are byte positions that only grow (mod 2^64);
 * position p lives at ring offset p % capacity.  A record is an 8-byte header
 * (uint32 length, uint32 flags) followed by the payload padded to 8 bytes; a record never
 * wraps: when it would not fit before the end, a PAD record (flags & MS_REC_PAD) fills
 * the rest and the record starts at offset 0.  A message's flags carry its kind in bits
 * 8-15 (MS_REC_KIND_*: how the payload is to be decoded; 0 = plain bytes); every other
 * bit of a message's flags is 0.
 * A sender may also pad to the end before a record of 4 KiB or more when it finds the
 * ring empty past its first half (in a ring over 8 MiB: past its first 4 MiB, and there
 * also when the queue and the record fit below the current offset), so that the ring
 * restarts at offset 0, whose memory is still in cache.
 * The tail is only moved by a sender holding send_lock; the head only by whoever holds
 * recv_lock: a receiver, or a sender (holding send_lock, then recv_lock taken by a try)
 * that skips a padding record it just wrote when that pad is all the ring holds -- else
 * a record longer than the room before the end could not be placed in an empty ring
 * with no receiver running.  Both are stored (release, or stronger) after the record
 * is complete, so a sender killed mid-write never exposes a partial record.
 * docs/design/protocol.md, "Channels", has every step. */
#define MS_REC_HEADER   8u
#define MS_REC_PAD      0x1u
#define MS_REC_KIND_SHIFT 8u
#define MS_REC_KIND_MASK  0xFF00u
#define MS_REC_KIND_BYTES  0u    /* send(), send_many(), loan() */
#define MS_REC_KIND_OBJECT 1u    /* send_object(): a pickle with out-of-band buffers */
#define MS_REC_KIND_ARRAY  2u    /* send_array(): dtype, shape, order, data */
#define MS_RING_CLOSED  0x1u     /* close_sending() was called */
#define MS_RING_PEERS   16u
#define MS_PID_REAPING  0xFFFFFFFFu

typedef struct ms_ring {
    /* line 0: immutable after creation */
    uint64_t capacity;         /* ring bytes, multiple of 8, == header.size */
    uint64_t max_message;      /* largest payload that can ever fit */
    uint8_t  pad0[48];
    /* line 1: written by senders */
    uint64_t tail;
    uint32_t not_empty_seq;    /* futex word receivers sleep on */
    uint32_t recv_waiters;
    uint64_t sent_messages;
    uint64_t sent_bytes;       /* payload bytes (record headers and padding not counted) */
    uint64_t high_water;       /* most ring bytes ever queued (tail - head: headers and
                                * padding included) */
    uint8_t  pad1[24];
    /* line 2: written by receivers */
    uint64_t head;
    uint32_t not_full_seq;     /* futex word senders sleep on */
    uint32_t send_waiters;
    uint64_t received_messages;
    uint64_t received_bytes;   /* payload bytes */
    uint64_t redelivered;      /* messages re-offered after a receiver died holding them */
    uint32_t holding;          /* 1 while a receiver has a message in hand (copy or view) */
    uint32_t reserved2;
    uint8_t  pad2[16];
    /* line 3: rarely written */
    uint32_t flags;            /* MS_RING_CLOSED */
    uint32_t last_dead_sender; /* pid of the sender most recently found dead (0: none) */
    uint64_t abandoned;        /* send_lock found OWNER_DIED: sends or loans a dead sender
                                * left unfinished (never visible) */
    uint64_t sender_deaths;    /* senders found dead while registered (never closed) */
    uint32_t unlisted_senders; /* handles sending while the senders table was full */
    uint32_t unlisted_receivers;
    uint8_t  pad3[32];
    /* lines 4-5: the two robust locks */
    uint8_t  send_lock[64];
    uint8_t  recv_lock[64];
    /* processes that have sent / received (pid 0: free; MS_PID_REAPING: an entry being
     * claimed, or that of a dead process being freed), for statistics, to tell receivers
     * that a sender died without closing (a broken channel), and to give back the
     * sleepers of a process killed asleep.  count: the process's registered handles in
     * bits 0-15 (a handle registers at its first send / receive, under that side's lock)
     * plus MS_SLEEPER per thread asleep on the channel, added after the waiter count is
     * raised and removed before it is lowered (a repairer never subtracts more than was
     * added).  A process that closes its handles, or
     * exits normally, leaves the table; only one that died without its exit path stays
     * behind, and whoever finds it dead frees it (pid -> MS_PID_REAPING by CAS, count ->
     * 0, its sleepers subtracted from the waiter count, pid = 0) and, if it still held
     * handles, counts it in sender_deaths. */
    ms_attach senders[MS_RING_PEERS];
    ms_attach receivers[MS_RING_PEERS];
} ms_ring;

/* Topic: one shared log of messages that every subscriber reads at its own position
 * (docs/design/layout.md, "Topic", has the publication protocol in full).
 *
 * The user area holds the subscriber table (max_subscribers entries of ms_topic_sub at
 * subs_offset) and then the ring (capacity bytes at ring_offset, 64-byte aligned).
 * Positions (tail, intent, head, a subscriber's pos) are byte positions that only grow;
 * position p lives at ring offset p % capacity.  A record is a 16-byte header
 * {u32 length, u32 flags, u64 seq} followed by the payload padded to 8 bytes; a record
 * never wraps.  When a record does not fit before the end of the ring, a PAD record
 * (flags == MS_REC_PAD, length == the bytes to the end, seq == the next message's seq)
 * fills the rest; when fewer than 16 bytes are left there is no header at all (an
 * implicit pad) and the next record starts at offset 0.  A message's flags carry its
 * kind in bits 8-15 (MS_REC_KIND_*, as for channels) and two more bits (every other bit
 * is 0; a reader older than these bits takes a record with either for corrupt):
 *   MS_REC_ORIGIN: the record's body starts with an origin block (ms_topic_origin: the
 *     originating host's id and the message's sequence number in that host's topic,
 *     written by a bridge that brings the message in from another host); `length`
 *     counts the block too, the payload follows it.
 *   MS_REC_LOSS: a loss record: not a message but `missed` (>= 1, <=
 *     MS_TOPIC_LOSS_MAX) messages lost upstream (on the network, in another host); its
 *     body is [origin block, if MS_REC_ORIGIN] + uint64 missed, its kind is 0.  It takes
 *     one sequence number like a message; a subscriber that reaches it gets Lagged.
 * A record (header + payload) is at most capacity / 2 bytes, so a publish never drops a
 * record that is not yet complete: head <= tail always.
 *
 * Publication: under pub_lock, a publisher advances head/head_seq past every record the
 * new one will overwrite (inside a head_gen seqlock), stores intent = max(intent, end),
 * then writes, then stores next_seq and tail.  A reader that copied a record at pos
 * validates it by reloading intent: the copy is good iff pos + capacity >= intent. */
#define MS_TOPIC_REC_HEADER  16u
#define MS_TOPIC_OVERWRITE   1u    /* overflow: the publisher never waits */
#define MS_TOPIC_BLOCK       2u    /* overflow: the publisher waits for live subscribers */
#define MS_TOPIC_SUB_SIZE    64u   /* bytes of one subscriber-table entry */
#define MS_TOPIC_SUBS_MAX    65536u
#define MS_TOPIC_CAPACITY_MIN 128u
#define MS_REC_ORIGIN        0x2u  /* topic record flag: an origin block precedes the payload */
#define MS_REC_LOSS          0x4u  /* topic record flag: a loss record (see above) */
#define MS_TOPIC_HOST_MAX    64u   /* bytes of an origin's host id (UTF-8, 1..64) */
#define MS_TOPIC_LOSS_MAX    ((1ull << 48) - 1)  /* largest `missed` of one loss record */

/* The origin block of an MS_REC_ORIGIN record, at the start of its body: 16 bytes, then
 * host_len bytes of host id padded to 8 (so 24..80 bytes in all). */
typedef struct ms_topic_origin {
    uint64_t seq;              /*  0 the message's sequence number at its origin */
    uint32_t host_len;         /*  8 bytes of host id that follow, 1..MS_TOPIC_HOST_MAX */
    uint32_t reserved;         /* 12 0 */
    /* 16: host id (UTF-8, not NUL-terminated), zero-padded to a multiple of 8 */
} ms_topic_origin;

typedef struct ms_topic {
    /* line 0: immutable after creation */
    uint64_t capacity;         /*   0 ring bytes, multiple of 8, >= MS_TOPIC_CAPACITY_MIN */
    uint64_t max_message;      /*   8 largest payload: capacity / 2 - 16, rounded down to 8 */
    uint64_t ring_offset;      /*  16 of the ring in the user area, multiple of 64 */
    uint64_t subs_offset;      /*  24 of the subscriber table in the user area, multiple of 64 */
    uint32_t max_subscribers;  /*  32 entries in the subscriber table */
    uint32_t history;          /*  36 messages start="history" replays (at most) */
    uint32_t overflow;         /*  40 MS_TOPIC_OVERWRITE or MS_TOPIC_BLOCK */
    uint32_t reserved0;        /*  44 */
    uint8_t  pad0[16];
    /* line 1: written by the publisher holding pub_lock */
    uint64_t tail;             /*  64 end of the last published record */
    uint64_t next_seq;         /*  72 seq of the next message == messages published */
    uint64_t intent;           /*  80 bytes below intent - capacity may be overwritten */
    uint64_t head;             /*  88 oldest record still held (<= tail) */
    uint64_t head_seq;         /*  96 its seq (the next message's if head == tail) */
    uint64_t head_gen;         /* 104 seqlock of (head, head_seq): odd while they change */
    uint32_t data_seq;         /* 112 futex word subscribers sleep on */
    uint32_t sub_waiters;      /* 116 subscribers' threads asleep on data_seq */
    uint8_t  pad1[8];
    /* line 2: written by subscribers */
    uint32_t progress;         /* 128 futex word a block-mode publisher sleeps on */
    uint32_t pub_waiters;      /* 132 publishers asleep on progress */
    /* loss records (MS_REC_LOSS): written under pub_lock, rarely (only when a loss
     * record is published or dropped), so they share the subscribers' line */
    uint64_t lost;             /* 136 sum of `missed` over every loss record published */
    uint64_t losses;           /* 144 loss records published */
    uint64_t head_lost;        /* 152 sum of `missed` over the loss records below head_seq */
    uint64_t head_losses;      /* 160 loss records below head_seq (both in the head_gen
                                * seqlock with head and head_seq) */
    uint8_t  pad2[24];
    /* line 3: counters */
    uint64_t published_bytes;  /* 192 payload bytes published */
    uint64_t publisher_deaths; /* 200 pub_lock found OWNER_DIED */
    uint64_t abandoned;        /* 208 loans or publishes a dead publisher left unfinished */
    uint64_t subscriber_deaths;/* 216 entries of dead subscribers reaped */
    uint64_t subscribes;       /* 224 entries ever claimed (a block-mode publisher's cache key) */
    uint32_t subscribing;      /* 232 1 while pub_lock is held to subscribe, not to publish */
    uint32_t reserved3;        /* 236 */
    uint64_t origin_published; /* 240 messages published with an origin (MS_REC_ORIGIN) */
    uint8_t  pad3[8];
    /* line 4: the publishers' robust lock (Windows: MS_SLOT_PUB_LOCK) */
    uint8_t  pub_lock[64];     /* 256 */
} ms_topic;

/* SharedArray control (kind area of an MS_KIND_ARRAY object).  The user area holds a
 * complete .npy image (magic, header padded so the data starts 64-byte aligned, data) at
 * npy_offset; a file-backed array's user area instead holds MS_ARRAY_FILE_TAG + the
 * file's absolute path + one NUL + the file's st_dev and st_ino (uint64 LE each; an
 * opener refuses a file at that path with another identity), and the .npy image is the
 * file itself from offset 0.  The
 * creator writes the image, then stores ready = 1 (release): an opener that sees 0 waits
 * (init_timeout) and never parses a half-built header.  publish() adds 1 to version and
 * increments the header's change_seq (waking MS_SLOT_CHANGE waiters). */
#define MS_ARRAY_TAG        0x5941534du   /* bytes "MSAY" */
#define MS_ARRAY_FILE_TAG   "npy-file:"   /* user area of a file-backed array's control */
typedef struct ms_array {
    uint32_t tag;              /*  0 MS_ARRAY_TAG, written at init */
    uint32_t ready;            /*  4 0 while the creator writes the image, then 1 */
    uint64_t version;          /*  8 publish() count, from 0 */
    uint64_t npy_offset;       /* 16 where the .npy image starts in the user area (0) */
    uint8_t  reserved[40];     /* 24 */
} ms_array;

MS_STATIC_ASSERT(sizeof(ms_array) == 64, "array control is one line");
MS_STATIC_ASSERT(offsetof(ms_array, version) == 8, "array version offset");

/* A subscriber-table entry being filled in by a subscribe (under pub_lock): whoever takes
 * pub_lock with OWNER_DIED frees such an entry (its claimant died half-way). */
#define MS_PID_CLAIMING 0xFFFFFFFEu

/* One subscriber (pid 0: free; MS_PID_CLAIMING: being claimed; MS_PID_REAPING: being
 * freed by whoever found its owner dead).  Written only by
 * the process that owns it, with plain stores on its own cache line, except when a
 * process that found its owner dead frees it. */
typedef struct ms_topic_sub {
    uint32_t pid;              /*  0 */
    uint32_t state;            /*  4 sleeping threads x MS_SLEEPER (0x10000) */
    uint64_t start;            /*  8 ms_p_process_start(pid) */
    uint64_t position;         /* 16 seq of the next message it will read */
    uint64_t pos;              /* 24 byte position of that record (block mode respects it) */
    uint64_t received;         /* 32 messages delivered */
    uint64_t missed;           /* 40 messages lost to overwriting (sum of Lagged.missed) */
    uint64_t lagged;           /* 48 Lagged events */
    uint64_t upstream;         /* 56 of missed, messages lost upstream (loss records) */
} ms_topic_sub;

MS_STATIC_ASSERT(sizeof(ms_topic) == 320, "topic control size");
MS_STATIC_ASSERT(sizeof(ms_topic) <= MS_KIND_AREA_SIZE, "topic fits the kind area");
MS_STATIC_ASSERT(offsetof(ms_topic, tail) == 64, "topic publisher line");
MS_STATIC_ASSERT(offsetof(ms_topic, data_seq) == 112, "topic data word");
MS_STATIC_ASSERT(offsetof(ms_topic, progress) == 128, "topic subscriber line");
MS_STATIC_ASSERT(offsetof(ms_topic, published_bytes) == 192, "topic counters line");
MS_STATIC_ASSERT(offsetof(ms_topic, subscribing) == 232, "topic subscribing flag");
MS_STATIC_ASSERT(offsetof(ms_topic, lost) == 136, "topic loss totals");
MS_STATIC_ASSERT(offsetof(ms_topic, head_losses) == 160, "topic loss records below head");
MS_STATIC_ASSERT(offsetof(ms_topic, origin_published) == 240, "topic origin counter");
MS_STATIC_ASSERT(sizeof(ms_topic_origin) == 16, "origin block header");
MS_STATIC_ASSERT(offsetof(ms_topic, pub_lock) == 256, "topic lock line");
MS_STATIC_ASSERT(sizeof(ms_topic_sub) == MS_TOPIC_SUB_SIZE, "subscriber entry is one line");

/* Latest: the newest value of something, read without locks and never torn (a seqlock
 * over `buffers` buffers; docs/design/layout.md, "Latest", has the protocol in full).
 *
 * The user area holds `buffers` buffers of buf_stride bytes each, from buf_offset: a
 * 64-byte ms_latest_buf header, then max_size bytes of value (rounded up to 64).  The
 * value of version v lives in buffer v % buffers, whose seq is 2v once complete (odd
 * while a writer fills it).  Version 0 is the empty value buffer 0 holds at creation;
 * every set publishes the next version (dense from 0, never going backwards).
 *
 * Writing (holding write_lock, a robust lock: never the sequence word): v = version;
 * b = buffer (v + 1) % buffers; store b.seq = 2(v+1) + 1 (release), release fence, write
 * length, kind and the bytes, store b.seq = 2(v+1) (release), then version = v + 1
 * (sequentially consistent), release the lock, and wake readers only if `waiters` != 0.
 * A writer killed before its version store exposed nothing: the next one takes the lock
 * with OWNER_DIED and simply writes the same buffer again.
 * Reading (no store to shared memory): v = version (acquire); s = b.seq (acquire) of
 * buffer v % buffers; s must be 2v (else the version has moved: retry); copy length and
 * bytes; acquire fence; the copy is good iff b.seq still equals s. */
#define MS_LATEST_BUF_HEADER 64u
#define MS_LATEST_BUFFERS    3u     /* what create() uses; a reader accepts 2..16 */
#define MS_LATEST_BUFFERS_MAX 16u
#define MS_LATEST_SIZE_MAX   (1ULL << 40)

/* A sleeper-table entry (pid 0: free; MS_PID_CLAIMING: being claimed; MS_PID_REAPING:
 * being freed by a process that found its owner dead). */
typedef struct ms_latest_sleeper {
    uint32_t pid;              /*   0 the sleeping thread's process */
    uint32_t count;            /*   4 MS_SLEEPER (0x10000) while it is counted in waiters */
    uint64_t start;            /*   8 that process's start time (as in the attach table) */
} ms_latest_sleeper;

#define MS_LATEST_SLEEPERS 48u

typedef struct ms_latest {
    /* line 0: immutable after creation */
    uint64_t max_size;         /*   0 largest value, bytes */
    uint64_t buf_offset;       /*   8 of buffer 0 in the user area, multiple of 64 */
    uint64_t buf_stride;       /*  16 64 + max_size rounded up to 64 */
    uint32_t buffers;          /*  24 number of buffers (2..16; 3 when mapshare creates) */
    uint32_t reserved0;        /*  28 */
    uint8_t  pad0[32];
    /* line 1: written by the writer holding write_lock */
    uint64_t version;          /*  64 the newest complete value's version */
    uint32_t update_seq;       /*  72 futex word readers sleep on (bumped when waiters) */
    uint32_t waiters;          /*  76 readers' threads asleep on update_seq */
    uint64_t writer_deaths;    /*  80 write_lock found OWNER_DIED */
    uint8_t  pad1[40];
    /* line 2: the writers' robust lock (Windows: MS_SLOT_WRITE_LOCK) */
    uint8_t  write_lock[64];   /* 128 */
    /* 192: the sleeper table: one entry per thread asleep in wait_for_update now, so
     * that a sleeper killed in its sleep can be given back from `waiters` by the writer
     * that finds it dead (latest.c, reap_sleepers) */
    ms_latest_sleeper sleepers[MS_LATEST_SLEEPERS];
    uint8_t  reserved1[64];    /* 960 */
} ms_latest;

/* One buffer's header; the value's bytes follow at +64. */
typedef struct ms_latest_buf {
    uint64_t seq;              /*   0 2 x the version it holds; odd while being written */
    uint64_t length;           /*   8 bytes of value (<= max_size) */
    uint32_t kind;             /*  16 MS_REC_KIND_*: how the bytes are to be decoded */
    uint32_t reserved;         /*  20 */
    uint8_t  pad[40];
} ms_latest_buf;

MS_STATIC_ASSERT(sizeof(ms_latest_sleeper) == 16, "latest sleeper entry");
MS_STATIC_ASSERT(offsetof(ms_latest, sleepers) == 192, "latest sleeper table");
MS_STATIC_ASSERT(sizeof(ms_latest) == 1024, "latest control size");
MS_STATIC_ASSERT(sizeof(ms_latest) <= MS_KIND_AREA_SIZE, "latest fits the kind area");
MS_STATIC_ASSERT(offsetof(ms_latest, version) == 64, "latest writer line");
MS_STATIC_ASSERT(offsetof(ms_latest, update_seq) == 72, "latest futex word");
MS_STATIC_ASSERT(offsetof(ms_latest, write_lock) == 128, "latest lock line");
MS_STATIC_ASSERT(sizeof(ms_latest_buf) == MS_LATEST_BUF_HEADER, "latest buffer header");

typedef struct ms_header {
    /* identity: written once by the creator, before magic */
    uint64_t magic;            /*   0 MS_MAGIC, stored last */
    uint32_t version;          /*   8 MS_LAYOUT_VERSION */
    uint32_t kind;             /*  12 MS_KIND_* */
    uint32_t header_size;      /*  16 MS_HEADER_SIZE */
    uint32_t lifetime;         /*  20 MS_LIFETIME_* */
    uint64_t size;             /*  24 user area size in bytes, exactly as asked */
    uint64_t data_offset;      /*  32 where the user area starts */
    uint64_t total_size;       /*  40 object size: data_offset + size rounded to pages */
    uint32_t creator_pid;      /*  48 */
    uint32_t creator_uid;      /*  52 */
    uint64_t creator_start;    /*  56 ms_p_process_start(creator_pid) */
    uint64_t created_ns;       /*  64 wall clock, ns since the epoch */
    uint32_t state;            /*  72 MS_STATE_* */
    uint32_t flags;            /*  76 MS_FLAG_* */
    uint32_t name_len;         /*  80 bytes used in name[] */
    uint32_t mode;             /*  84 permission bits asked for */
    uint64_t attach_offset;    /*  88 where the attach table starts (>= 2048, after kind_area) */
    uint32_t attach_slots;     /*  96 entries in the attach table */
    uint32_t attach_end;       /* 100 hint: every slot at or after it is free */
    uint32_t attach_hint;      /* 104 hint: no free slot before it */
    uint32_t attach_reserved;  /* 108 entries [0, it) have storage; the rest may be holes */
    uint8_t  reserved0[16];    /* 112 */
    char     name[256];        /* 128 the logical name, not NUL-terminated if 256 long */
    uint8_t  meta_lock[64];    /* 384 protects state and the attach table */
    uint8_t  user_lock[64];    /* 448 seg.lock() and named Lock */
    uint32_t change_seq;       /* 512 futex word: seg.notify() increments it */
    uint32_t change_waiters;   /* 516 */
    uint8_t  reserved1[504];   /* 520 */
    uint8_t  kind_area[MS_KIND_AREA_SIZE];          /* 1024 ms_event, ms_semaphore, ms_ring,
                                                     * ms_topic, ms_array, ms_latest */
    uint8_t  attach_head[2048];                     /* 2048 the first 128 entries of the attach
                                                     * table (at attach_offset == 2048) */
} ms_header;

MS_STATIC_ASSERT(sizeof(ms_attach) == 16, "attach slot size");
MS_STATIC_ASSERT(sizeof(ms_event) == 16, "event size");
MS_STATIC_ASSERT(sizeof(ms_semaphore) == 16, "semaphore size");
MS_STATIC_ASSERT(offsetof(ms_event, tag) == 12 && offsetof(ms_semaphore, tag) == 12,
                 "tags are the last word (binding/segment.c sync_area)");
MS_STATIC_ASSERT(sizeof(ms_ring) == 384 + 2 * MS_RING_PEERS * 16, "ring control size");
MS_STATIC_ASSERT(sizeof(ms_ring) <= MS_KIND_AREA_SIZE, "ring fits the kind area");
MS_STATIC_ASSERT(offsetof(ms_ring, tail) == 64, "tail on its own line");
MS_STATIC_ASSERT(offsetof(ms_ring, head) == 128, "head on its own line");
MS_STATIC_ASSERT(offsetof(ms_ring, sender_deaths) == 208, "sender deaths offset");
MS_STATIC_ASSERT(offsetof(ms_ring, send_lock) == 256, "send lock line");
MS_STATIC_ASSERT(offsetof(ms_header, name) == 128, "name offset");
MS_STATIC_ASSERT(offsetof(ms_header, meta_lock) == 384, "meta lock offset");
MS_STATIC_ASSERT(offsetof(ms_header, user_lock) == 448, "user lock offset");
MS_STATIC_ASSERT(offsetof(ms_header, change_seq) == 512, "change counter offset");
MS_STATIC_ASSERT(offsetof(ms_header, kind_area) == 1024, "kind area offset");
MS_STATIC_ASSERT(offsetof(ms_header, attach_offset) == 88, "attach table fields");
MS_STATIC_ASSERT(offsetof(ms_header, attach_hint) == 104, "attach hint offset");
MS_STATIC_ASSERT(offsetof(ms_header, attach_reserved) == 108, "attach reserved offset");
MS_STATIC_ASSERT(sizeof(ms_header) == MS_HEADER_PAGE, "header is one 4 KiB page");
MS_STATIC_ASSERT(MS_HEADER_SIZE % 4096 == 0, "the user area starts on a page");
MS_STATIC_ASSERT(offsetof(ms_header, attach_head) == MS_ATTACH_OFFSET, "table in the page");

#endif
