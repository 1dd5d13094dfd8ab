"""The ``mapshare`` command: see what is in shared memory, clean it, move messages, and
run the demo.

    mapshare ls [--json]                 list segments
    mapshare info NAME [--json]          one segment: header, peers, lock, channel depth,
                                         a topic's subscribers and their lag
    mapshare create channel NAME --capacity N | topic NAME --capacity N | segment NAME --size N
    mapshare rm NAME [NAME ...]          remove names
    mapshare gc [--dry-run] [--json]     remove 'shared' segments whose users all died
    mapshare send NAME [DATA | -]        send DATA, or each line of stdin, on a channel
    mapshare receive NAME [--count N] [--follow] [--timeout S] [--hex | --json]
    mapshare publish NAME [DATA | -]     publish DATA, or each line of stdin, on a topic
    mapshare subscribe NAME [--start history|live|N] [--count N] [--follow] [--json]
    mapshare journal dump|tail|verify|readers PATH [--json]
                                         a journal's records, its tail, a full check, its
                                         named readers
    mapshare bridge --topic NAME=KEY ... --channel NAME=KEY ... [zenoh options]
                                         connect topics and channels to other hosts over
                                         Eclipse Zenoh (docs/bridge.md)
    mapshare bridge stat [NAME] [--json] a running bridge's statistics
    mapshare demo                        the file-mapping demo: a writer and a reader process

No command prints a traceback: every failure is one line on stderr naming the logical
name, and an exit status from ``EXIT_*`` below (docs/cli.md lists them).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, Optional

from . import _naming
from ._errors import (
    BrokenChannelError,
    ChannelFull,
    EndOfChannel,
    Lagged,
    LayoutError,
    MapshareError,
    MessageTooLargeError,
    SegmentExistsError,
    SegmentNotFoundError,
    TopicEmpty,
    TopicFull,
    WaitTimeout,
)
from ._inspect import SegmentInfo, segment_info, segments
from ._platform import NAMES_OUTLIVE_HANDLES
from ._version import __version__

__all__ = ["main"]

EXIT_OK = 0
"""Success."""
EXIT_ERROR = 1
"""A mapshare error not listed below (the message says which)."""
# How long "mapshare bridge" may take to stop after SIGINT/SIGTERM before it dumps its
# threads' stacks and exits with status 1 (a hang there is a bug, never a wait).
STOP_TIMEOUT = 15.0
EXIT_USAGE = 2
"""Bad arguments, including an invalid name (argparse uses 2 as well)."""
EXIT_NOT_FOUND = 3
"""No object of that name."""
EXIT_PERMISSION = 4
"""The object belongs to another user, or its mode does not let you in."""
EXIT_EXISTS = 5
"""``create``: the name is taken."""
EXIT_INTERRUPTED = 130
"""Ctrl-C."""
EXIT_BROKEN_PIPE = 141
"""The reader of our output went away (``mapshare ls --json | head``): 128 + SIGPIPE,
as a shell reports a tool killed by it; nothing is printed."""


class _UsageError(Exception):
    """A bad argument found after parsing (an invalid name)."""


def _check_name(name: str) -> str:
    """A logical name, or ``_UsageError`` stating the naming rule."""
    try:
        return _naming.validate(name)
    except (TypeError, ValueError):
        raise _UsageError(f"invalid name {name!r}: {_naming.RULE}") from None


def _os_name_of(name: str) -> str:
    """The OS name for a logical name; ``/mapshare.x`` OS names are accepted as they are
    (``mapshare ls`` shows them for objects whose header cannot be read)."""
    if name.startswith("/") and _naming.is_os_name(name[1:]) and "/" not in name[1:]:
        return name
    return _naming.os_name(_check_name(name))


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _alive(v: Optional[bool]) -> str:
    return {True: "alive", False: "dead", None: "unknown"}[v]


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def cmd_ls(args: argparse.Namespace) -> int:
    infos = segments()
    if args.json:
        print(json.dumps([i.as_dict() for i in infos], indent=2))
        return 0
    if not infos:
        print("no mapshare segments")
        return 0
    rows = []
    for i in infos:
        alive = sum(1 for p in i.attached if p.alive)
        dead = sum(1 for p in i.attached if p.alive is False)
        procs = f"{alive} alive" + (f", {dead} dead" if dead else "")
        kind = i.kind
        if i.kind == "latest" and "version" in i.extra:
            # a slot's version and the size of its newest value, at a glance
            kind = f"latest v{i.extra['version']} {_human(i.extra['value_size'])}"
        elif kind == "array" and "dtype" in i.extra:
            # dtype and shape in the KIND column (no new column for one kind): the
            # short type string for plain dtypes, the dtype abbreviated for records
            x = i.extra
            dt = x["descr"].strip("'\"") if not x["descr"].startswith("[") else x["dtype"]
            dt = dt if len(dt) <= 24 else dt[:21] + "..."
            kind = f"array {dt} {tuple(x['shape'])}"
        rows.append([
            i.name, kind, _human(i.size), i.lifetime, i.state,
            f"{i.creator_pid} ({_alive(i.creator_alive)})" if i.creator_pid else "-",
            procs, i.created.strftime("%Y-%m-%d %H:%M:%S") if i.created else "-",
        ])
    _print_table(rows, ["NAME", "KIND", "SIZE", "LIFETIME", "STATE", "CREATOR", "PROCESSES",
                        "CREATED (UTC)"])
    return 0


def _find(name: str) -> SegmentInfo:
    try:
        return segment_info(_os_name_of(name))
    except SegmentNotFoundError:
        raise SegmentNotFoundError(2, f"no segment named {name!r}") from None


def cmd_info(args: argparse.Namespace) -> int:
    info = _find(args.name)
    if args.json:
        print(json.dumps(info.as_dict(), indent=2))
        return 0
    print(f"name:        {info.name}")
    print(f"os name:     {info.os_name}")
    print(f"kind:        {info.kind}")
    print(f"state:       {info.state}" + (f" ({info.error})" if info.error else ""))
    if info.state == "no permission":
        print(f"owner:       uid {info.uid}, mode {oct(info.mode)}")
        return 0
    print(f"size:        {info.size} bytes ({_human(info.size)})")
    print(f"lifetime:    {info.lifetime}")
    print(f"backing:     {info.path or 'shared memory'}")
    print(f"owner:       uid {info.uid}, mode {oct(info.mode)}")
    if info.creator_pid:
        print(f"creator:     pid {info.creator_pid} ({_alive(info.creator_alive)})")
    if info.created:
        print(f"created:     {info.created.isoformat()}")
    print(f"changes:     {info.change_count}")
    if info.lock is not None:
        if info.lock.held:
            print(f"lock:        held by thread {info.lock.holder} "
                  f"({_alive(info.lock.holder_alive)})")
        else:
            print("lock:        free")
    print(f"attached:    {len(info.attached)} process(es)")
    for p in info.attached:
        print(f"  pid {p.pid}: {p.handles} handle(s), {_alive(p.alive)}")
    if info.read_only_openers is None:
        print("read-only:   unknown on this OS (read-only openers are not in the table)")
    else:
        ro = ", ".join(str(pid) for pid in info.read_only_openers) or "none"
        print(f"read-only:   {len(info.read_only_openers)} process(es): {ro}")
    x = info.extra
    if info.kind == "channel":
        print(f"depth:       {x['queued_messages']} message(s), {x['queued_bytes']} of "
              f"{x['capacity']} bytes (high water {x['high_water']})")
        print(f"traffic:     {x['sent_messages']} sent, {x['received_messages']} received, "
              f"{x['redelivered']} redelivered, {x['abandoned']} abandoned")
        print(f"closed:      {x['closed']}")
        print(f"waiters:     {x['send_waiters']} sender(s), {x['receive_waiters']} receiver(s)")
        for role in ("senders", "receivers"):
            peers = ", ".join(f"{p['pid']} ({_alive(p['alive'])})" for p in x[role]) or "none"
            print(f"{role + ':':<13}{peers}")
    elif info.kind == "topic":
        _print_topic(x)
    elif info.kind == "latest":
        if "error" in x:
            print(f"latest:      unreadable ({x['error']})")
        else:
            print(f"version:     {x['version']} ({x['value_size']} bytes of "
                  f"{x['max_size']}, {x['value_kind']})")
            print(f"buffers:     {x['buffers']}, {x['waiters']} waiter(s), "
                  f"{x['writer_deaths']} writer death(s)")
    elif info.kind == "array":
        _print_array(x)
    elif info.kind == "event":
        print(f"event:       {'set' if x['event_set'] else 'clear'}, {x['waiters']} waiter(s)")
    elif info.kind == "semaphore":
        print(f"semaphore:   {x['value']} of {x['maximum']}, {x['waiters']} waiter(s)")
    return 0


def _print_array(x: dict[str, Any]) -> None:
    """The array lines of ``mapshare info`` (x: SegmentInfo.extra of an array)."""
    if "error" in x:
        print(f"array:       unreadable ({x['error']})")
        return
    if not x.get("ready"):
        print("array:       being created (header not published yet)")
        return
    print(f"dtype:       {x['dtype']}")
    print(f"shape:       {tuple(x['shape'])}, order {x['order']}, {x['nbytes']} bytes")
    print(f"version:     {x['version']}")
    if "file" in x:
        print(f"file:        {x['file']} (.npy)")


def _print_topic(x: dict[str, Any]) -> None:
    """The topic lines of ``mapshare info`` (x: SegmentInfo.extra of a topic)."""
    if "error" in x:
        print(f"topic:       unreadable ({x['error']})")
        return
    print(f"capacity:    {x['capacity']} bytes of ring, messages up to {x['max_message']} "
          "bytes")
    print(f"overflow:    {x['overflow']}")
    print(f"history:     {x['history']} message(s) replayed to start='history' "
          f"({x['held']} held now)")
    oldest = "-" if x["held"] == 0 else x["oldest"]
    print(f"published:   {x['published']} message(s), {x['published_bytes']} bytes; "
          f"oldest held: {oldest}")
    print(f"deaths:      {x['publisher_deaths']} publisher(s) (left {x['abandoned']} "
          f"loan(s)), {x['subscriber_deaths']} subscriber(s) reaped")
    if x.get("origin_published") or x.get("loss_records"):
        # only for a topic a bridge feeds (issue 14): the others' output is unchanged
        print(f"bridged:     {x['origin_published']} message(s) with an origin; "
              f"{x['loss_records']} loss record(s) for {x['lost_upstream']} message(s) "
              "lost upstream")
    rows = x["subscribers"]
    print(f"subscribers: {len(rows)}")
    if rows:
        _print_table(
            [[str(r["pid"]), _alive(r["alive"]), str(r["position"]), str(r["lag"]),
              str(r["missed"]), str(r["received"])] for r in rows],
            ["  PID", "ALIVE", "POSITION", "LAG", "MISSED", "RECEIVED"],
        )


def cmd_rm(args: argparse.Namespace) -> int:
    from . import _core

    status = 0
    for name in args.names:
        try:
            osn = _os_name_of(name)
        except _UsageError as exc:
            print(f"mapshare rm: {exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        try:
            if NAMES_OUTLIVE_HANDLES:
                _core.unlink(osn)
            else:  # the name goes with the last handle: mark it destroyed instead
                _rm_windows(osn)
            print(f"removed {name}")
        except SegmentNotFoundError:
            print(f"mapshare rm: no segment named {name!r}", file=sys.stderr)
            status = status or EXIT_NOT_FOUND
        except PermissionError as exc:
            print(f"mapshare rm: {name!r}: no permission ({exc.strerror})", file=sys.stderr)
            status = status or EXIT_PERMISSION
        except LayoutError as exc:  # Windows: a name that is not a mapshare segment
            print(f"mapshare rm: {name!r}: {exc} (Windows removes a name when its last "
                  "handle closes)", file=sys.stderr)
            status = 1
    return status


def _rm_windows(osn: str) -> None:
    """Windows has no unlink: a name vanishes with its last handle.  Mark the segment
    destroyed instead, so that nobody opens it any more (as after unlink on POSIX);
    its name goes when the processes still holding it close it."""
    from . import _core
    from ._errors import SegmentDestroyedError

    try:
        core = _core.open(osn, None, 0, _core.ACCESS_WRITE)
    except SegmentDestroyedError:
        raise SegmentNotFoundError(2, f"no segment {osn!r}") from None
    try:
        core.mark_destroyed()
    finally:
        core.close(detach=False)


def cmd_gc(args: argparse.Namespace) -> int:
    from ._gc import collect

    removed = collect(dry_run=args.dry_run)
    if args.json:
        print(json.dumps([
            {"name": r.name, "os_name": r.os_name, "reason": r.reason} for r in removed
        ], indent=2))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for r in removed:
        print(f"{verb} {r.name} ({r.os_name}): {r.reason}")
    if not removed:
        print("nothing to collect")
    return 0


def _open_channel(args: argparse.Namespace) -> Any:
    from ._channel import Channel

    return Channel.open(_check_name(args.name), allow_foreign=args.allow_foreign)


def _send_one(ch: Any, data: bytes, timeout: Optional[float], sent: int, where: str) -> None:
    """Send, turning a full channel and an oversized message into messages that say
    how far we got and why."""
    try:
        ch.send(data, timeout)
    except MessageTooLargeError:
        raise MessageTooLargeError(
            f"{where}: a message of {len(data)} bytes is larger than channel "
            f"{ch.name!r} can ever hold (max_message {ch.max_message} bytes, capacity "
            f"{ch.capacity}); {sent} message(s) sent before it"
        ) from None
    except (WaitTimeout, ChannelFull):
        raise WaitTimeout(
            f"{where}: channel {ch.name!r} stayed full for {timeout:g} s; "
            f"{sent} message(s) sent, the rest were not"
        ) from None


def cmd_send(args: argparse.Namespace) -> int:
    ch = _open_channel(args)
    try:
        if args.data is not None and args.data != "-":
            _send_one(ch, os.fsencode(args.data), args.timeout, 0, "message")
            return 0
        sent = 0
        with (
            open(args.file, "rb") if args.file is not None else nullcontext(sys.stdin.buffer)
        ) as stream:
            for lineno, line in enumerate(stream, 1):
                where = f"{args.file or 'stdin'} line {lineno}"
                _send_one(ch, line.rstrip(b"\n"), args.timeout, sent, where)
                sent += 1
        if args.close:
            ch.close_sending()
    finally:
        ch.close()
    return 0


def _json_record(msg: bytes) -> dict[str, Any]:
    """{"size", "text"} or, for bytes that are not UTF-8, {"size", "base64"}."""
    try:
        return {"size": len(msg), "text": msg.decode("utf-8")}
    except UnicodeDecodeError:
        return {"size": len(msg), "base64": base64.b64encode(msg).decode("ascii")}


def _emit(out: Any, msg: bytes, fmt: str) -> None:
    if fmt == "hex":
        out.write(msg.hex().encode() + b"\n")
    elif fmt == "json":
        out.write(json.dumps(_json_record(msg)).encode() + b"\n")
    else:
        out.write(msg + b"\n")


def cmd_get(args: argparse.Namespace) -> int:
    """Print a Latest slot's newest value (raw, --hex or --json with its version)."""
    from ._latest import Latest

    # read-only: get needs no more, and a group member of a 0o640 slot may read it
    lt = Latest.open(_check_name(args.name), access="r", allow_foreign=args.allow_foreign)
    try:
        if args.wait_since is not None:
            lt.wait_for_update(args.wait_since, args.timeout)
        data, version = lt.get()
    finally:
        lt.close()
    if args.json:
        obj = _json_record(data)
        obj["version"] = version
        print(json.dumps(obj))
        return 0
    out = sys.stdout.buffer
    _emit(out, data, "hex" if args.hex else "raw")
    out.flush()
    return 0


def cmd_receive(args: argparse.Namespace) -> int:
    ch = _open_channel(args)
    out = sys.stdout.buffer
    fmt = "hex" if args.hex else "json" if args.json else "raw"
    n = 0
    try:
        while args.follow or n < args.count:
            try:
                msg = ch.receive(args.timeout)
            except (EndOfChannel, BrokenChannelError) as exc:
                if isinstance(exc, BrokenChannelError):
                    print(f"mapshare receive: {exc} (pid {exc.pid})", file=sys.stderr)
                    if args.follow:
                        continue  # an edge: keep following the senders to come
                    return 1
                break
            except WaitTimeout:
                break
            _emit(out, msg, fmt)
            out.flush()
            n += 1
    finally:
        ch.close()
    return 0


def _open_topic(args: argparse.Namespace) -> Any:
    from ._topic import Topic

    name = _check_name(args.name)
    if getattr(args, "create", None) is not None:
        # persistent like `mapshare create`: this command detaches as it exits, and a
        # 'shared' topic would vanish with it, history and all
        return Topic.open_or_create(
            name, args.create, history=args.history, overflow=args.overflow,
            lifetime="persistent", mode=args.mode, allow_foreign=args.allow_foreign,
        )
    return Topic.open(name, allow_foreign=args.allow_foreign)


def _publish_one(t: Any, data: bytes, args: argparse.Namespace, sent: int,
                 where: str) -> None:
    """Publish, turning a full (block-mode) topic and an oversized message into messages
    that say how far we got and why; with --json, print the sequence number."""
    try:
        seq = t.publish(data, args.timeout)
    except MessageTooLargeError:
        raise MessageTooLargeError(
            f"{where}: a message of {len(data)} bytes is larger than topic {t.name!r} can "
            f"ever hold (max_message {t.max_message} bytes, capacity {t.capacity}); "
            f"{sent} message(s) published before it"
        ) from None
    except (WaitTimeout, TopicFull):
        raise WaitTimeout(
            f"{where}: topic {t.name!r} (overflow='block') had a subscriber that did "
            f"not read for {args.timeout:g} s; {sent} message(s) published, the rest "
            "were not"
        ) from None
    if args.json:
        print(json.dumps({"seq": seq, "size": len(data)}), flush=True)


def cmd_publish(args: argparse.Namespace) -> int:
    t = _open_topic(args)
    try:
        if args.data is not None and args.data != "-":
            _publish_one(t, os.fsencode(args.data), args, 0, "message")
            return 0
        sent = 0
        with (
            open(args.file, "rb") if args.file is not None else nullcontext(sys.stdin.buffer)
        ) as stream:
            for lineno, line in enumerate(stream, 1):
                where = f"{args.file or 'stdin'} line {lineno}"
                _publish_one(t, line.rstrip(b"\n"), args, sent, where)
                sent += 1
    finally:
        t.close()
    return 0


def _parse_start(text: str) -> Any:
    """--start: 'live', 'history' or a sequence number."""
    if text in ("live", "history"):
        return text
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(
        f"expected 'live', 'history' or a sequence number, not {text!r}")


def cmd_subscribe(args: argparse.Namespace) -> int:
    t = _open_topic(args)
    out = sys.stdout.buffer
    fmt = "hex" if args.hex else "json" if args.json else "raw"
    # neither --count nor --follow: one message from 'live'; from 'history' or a
    # sequence number, what is held now (then stop instead of waiting)
    drain = args.count is None and not args.follow and args.start != "live"
    count = 1 if args.count is None else args.count
    n = 0
    try:
        with t.subscribe(start=args.start) as sub:
            while args.follow or drain or n < count:
                try:
                    msg = sub.receive_nowait() if drain else sub.receive(args.timeout)
                except Lagged as exc:
                    # loss is reported, never silent; what follows is the oldest held
                    print(f"mapshare subscribe: lagged: missed {exc.missed} message(s), "
                          f"resuming at {exc.position}", file=sys.stderr, flush=True)
                    continue
                except (WaitTimeout, TopicEmpty):
                    break
                if fmt == "json":
                    rec = _json_record(msg)
                    rec = {"seq": sub.position - 1, **rec}
                    out.write(json.dumps(rec).encode() + b"\n")
                else:
                    _emit(out, msg, fmt)
                out.flush()
                n += 1
    finally:
        t.close()
    return 0


def _parse_mode(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"mode must be octal digits like 660, not {text!r}"
        ) from None


def _parse_size(text: str) -> int:
    """A byte count: digits with an optional K, M or G (powers of 1024)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    mult = units.get(t[-1:], 1)
    digits = t[:-1] if t[-1:] in units else t
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"expected a byte count like 4096 or 1M, not {text!r}")
    return int(digits) * mult


def cmd_create(args: argparse.Namespace) -> int:
    from ._channel import Channel
    from ._segment import Segment

    name = _check_name(args.name)
    obj: Any
    if args.kind == "channel":
        obj = Channel.create(name, args.capacity, mode=args.mode, lifetime=args.lifetime)
        seg = obj.segment
    elif args.kind == "topic":
        from ._topic import Topic

        obj = Topic.create(name, args.capacity, history=args.history, overflow=args.overflow,
                           mode=args.mode, lifetime=args.lifetime)
        seg = obj.segment
    else:
        obj = seg = Segment.create(name, args.size, mode=args.mode, lifetime=args.lifetime)
    info = seg.info()
    obj.close()
    if args.json:
        print(json.dumps(info.as_dict(), indent=2))
    else:
        print(f"created {args.kind} {name} ({_human(info.size)}, {info.lifetime}, mode "
              f"{oct(info.mode)})")
    return 0


# ---- mapshare journal: a journal directory, by path --------------------------------------


def _open_journal(args: argparse.Namespace) -> Any:
    """The journal at ``args.path``, read-only: inspecting needs only read permission and
    never changes the files (no recovery, no reader registration)."""
    from ._journal import Journal

    path = args.path
    if not os.path.exists(path):
        raise SegmentNotFoundError(2, f"no journal at {path!r}")
    return Journal.open(path, access="r")


def _journal_record(index: int, data: bytes) -> dict[str, Any]:
    return {"index": index, **_json_record(data)}


def _emit_record(out: Any, index: int, data: bytes, fmt: str) -> None:
    if fmt == "json":
        out.write(json.dumps(_journal_record(index, data)).encode() + b"\n")
    elif fmt == "hex":
        out.write(f"{index}\t".encode() + data.hex().encode() + b"\n")
    else:
        _emit(out, data, "raw")


def _fmt_of(args: argparse.Namespace) -> str:
    return "hex" if args.hex else "json" if args.json else "raw"


def cmd_journal_dump(args: argparse.Namespace) -> int:
    """Print records ``--start`` .. ``--end`` (default: every record), one per line."""
    j = _open_journal(args)
    out = sys.stdout.buffer
    fmt = _fmt_of(args)
    try:
        st = j.stats()
        first, last = st.first, st.last
        start = first if args.start is None else max(first, args.start)
        end = last if args.end is None else min(last, args.end)
        if args.count is not None:
            end = min(end, start + args.count - 1)
        i = start
        while i <= end:
            try:
                data = j[i]
            except LayoutError as exc:
                out.flush()  # what was printed stays; the error names the record
                raise LayoutError(f"record {i}: {exc} (mapshare journal verify checks "
                                  "them all)") from None
            except IndexError:
                # removed meanwhile by an appender's truncate_before: go on from the
                # first record still held
                i = max(i + 1, j.first)
                continue
            _emit_record(out, i, data, fmt)
            i += 1
        out.flush()
    finally:
        j.close()
    return 0


def cmd_journal_tail(args: argparse.Namespace) -> int:
    """The newest ``-n`` records; ``--follow``: then every record appended, as it comes."""
    j = _open_journal(args)
    out = sys.stdout.buffer
    fmt = _fmt_of(args)
    try:
        st = j.stats()
        first, last = st.first, st.last
        start = max(first, last + 1 - args.n) if args.n else last + 1
        r = j.reader(start=start)
        # without --follow: the records there were when the command started, then stop
        while args.follow or r.position <= last:
            try:
                i, view = r.next(timeout=args.timeout if args.follow else 0)
            except WaitTimeout:
                break
            except IndexError:  # removed meanwhile by truncate_before: skip to what is held
                r.seek(max(r.position + 1, j.first))
                continue
            _emit_record(out, i, bytes(view), fmt)
            out.flush()
    finally:
        j.close()
    return 0


def cmd_journal_verify(args: argparse.Namespace) -> int:
    """Read and check every record; status 1 (and what is wrong) if any fails its check."""
    j = _open_journal(args)
    problems: list[dict[str, Any]] = []
    try:
        st = j.stats()
        first, last = st.first, st.last
        checked = 0
        for i in range(first, last + 1):
            try:
                j[i]
            except IndexError:
                continue  # removed meanwhile by truncate_before: nothing to check
            except LayoutError as exc:
                problems.append({"index": i, "error": str(exc)})
                if len(problems) >= 100:  # enough to say what is wrong
                    break
            checked += 1
    finally:
        j.close()
    report = {"path": os.path.abspath(args.path), "ok": not problems, "first": first,
              "last": last, "durable": st.durable, "records_checked": checked,
              "files": st.files, "bytes": st.bytes, "segment_size": st.segment_size,
              "durability": st.durability, "problems": problems}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        n = last - first + 1
        print(f"{args.path}: {n} record(s), {first}..{last}, {st.files} segment "
              f"file(s), {_human(st.bytes)}: "
              + ("ok" if not problems else f"{len(problems)} bad record(s)"))
        for p in problems:
            print(f"  record {p['index']}: {p['error']}")
    return EXIT_OK if not problems else EXIT_ERROR


def cmd_journal_readers(args: argparse.Namespace) -> int:
    """The named readers: each one's committed position and lag in records."""
    j = _open_journal(args)
    try:
        readers = j.readers()
    finally:
        j.close()
    if args.json:
        print(json.dumps([{"name": r.name, "position": r.position, "lag": r.lag}
                          for r in readers], indent=2))
        return 0
    if not readers:
        print("no named readers")
        return 0
    _print_table([[r.name, str(r.position), str(r.lag)] for r in readers],
                 ["NAME", "POSITION", "LAG"])
    return 0


def _journal_index(text: str) -> int:
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"expected a record index (0, 1, ...), not {text!r}")


def _journal_parser(sub: Any) -> None:
    s = sub.add_parser("journal", help="inspect a journal (a directory of segment files)")
    jsub = s.add_subparsers(dest="journal_command", required=True)

    def fmt_options(c: argparse.ArgumentParser) -> None:
        fmt = c.add_mutually_exclusive_group()
        fmt.add_argument("--hex", action="store_true",
                         help="print each record as its index, a tab, and its bytes in hex")
        fmt.add_argument("--json", action="store_true",
                         help='one JSON object per record: {"index", "size", "text"} or, '
                         'for bytes that are not UTF-8, {"index", "size", "base64"}')

    c = jsub.add_parser("dump", help="print a journal's records, one per line")
    c.add_argument("path")
    c.add_argument("--start", type=_journal_index, default=None,
                   help="first index to print (default: the first one held)")
    c.add_argument("--end", type=_journal_index, default=None,
                   help="last index to print (default: the last one)")
    c.add_argument("--count", type=_journal_index, default=None, help="at most this many")
    fmt_options(c)
    c.set_defaults(func=cmd_journal_dump)

    c = jsub.add_parser("tail", help="print the newest records; --follow: then new ones")
    c.add_argument("path")
    c.add_argument("-n", type=_journal_index, default=10,
                   help="how many of the newest records to print first (default 10)")
    c.add_argument("--follow", "-f", action="store_true",
                   help="then print every record appended, until interrupted")
    c.add_argument("--timeout", type=float, default=None,
                   help="with --follow: stop after this many seconds without a record")
    fmt_options(c)
    c.set_defaults(func=cmd_journal_tail)

    c = jsub.add_parser("verify", help="check every record's checksum and index")
    c.add_argument("path")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_journal_verify)

    c = jsub.add_parser("readers", help="list the named readers, their positions and lag")
    c.add_argument("path")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_journal_readers)


def cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run

    return run(verbose=not args.quiet)


def _mapping(text: str) -> tuple[str, str]:
    """``NAME=KEY`` of ``--topic`` / ``--channel``."""
    name, sep, key = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=KEY, not {text!r}")
    try:
        _naming.validate(name)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"invalid name {name!r}: {_naming.RULE}") from None
    return name, key


def cmd_bridge(args: argparse.Namespace) -> int:
    """Run a bridge until SIGINT or SIGTERM, or print a bridge's statistics."""
    from . import bridge

    if args.action is not None:
        if args.action != "stat":
            raise _UsageError(f"unknown action {args.action!r} (only 'stat')")
        name = args.stats_name or args.stat_name or f"bridge.{bridge.default_host_id()}"
        stats = bridge.read_statistics(_check_name(name))
        if args.json:
            print(json.dumps(stats.to_json()))
        else:
            _print_bridge_stats(stats)
        return EXIT_OK
    if args.stat_name is not None:
        raise _UsageError(f"unexpected argument {args.stat_name!r}")
    if not args.topic and not args.channel:
        raise _UsageError("give at least one --topic NAME=KEY or --channel NAME=KEY")
    import faulthandler
    import signal
    import threading

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    b = bridge.Bridge(
        dict(args.topic), dict(args.channel), config=args.config, mode=args.mode,
        listen=args.listen, connect=args.connect,
        multicast_scouting=False if args.no_multicast_scouting else None,
        host_id=args.host_id, stats_name=args.stats_name,
        stats_interval=args.stats_interval, ack_timeout=args.ack_timeout,
        close_timeout=args.close_timeout,
    )
    out_lock = threading.Lock()

    def line(obj: dict[str, Any]) -> None:
        # one whole line at a time, whichever thread prints
        text = json.dumps(obj) + "\n"
        with out_lock:
            sys.stdout.write(text)
            sys.stdout.flush()

    zenoh = bridge._zenoh()
    try:
        b.start()
    except zenoh.ZError as exc:  # a bad configuration, an endpoint in use, ...
        print(f"mapshare bridge: zenoh: {_zenoh_message(exc)}", file=sys.stderr)
        return EXIT_ERROR
    with b:
        if args.json:
            line({"event": "started", "host": b.host_id, "pid": os.getpid(),
                  "stats_name": b.stats_name})
            # only from now on: the "started" line comes first
            b._on_stats = lambda stats: line({"event": "stats", **stats.to_json()})
        else:
            print(f"mapshare bridge: host {b.host_id}, statistics in {b.stats_name!r}",
                  file=sys.stderr)
        while not stop.wait(0.2):
            if b.wait(0):
                break
        # Stopping closes the zenoh session and joins the bridge's threads.  Should that
        # ever hang, end anyway: print every thread's stack and exit 1 (a C watchdog,
        # which works even if the hang holds the GIL).
        faulthandler.dump_traceback_later(STOP_TIMEOUT, exit=True)
    status = EXIT_OK
    if b.error is not None:
        print(f"mapshare bridge: stopped: {_message(b.error)}", file=sys.stderr)
        status = EXIT_ERROR
    with bridge._exit_lock:
        closing = bool(bridge._closing)
    if closing:
        # zenoh still closes the session (a peer that does not read holds its TCP close
        # for seconds): everything of this host is closed already, so end now.  Python's
        # finalization must not run meanwhile -- it would end the closing thread
        # mid-call when zenoh returns (the process aborts) -- nor wait for it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    faulthandler.cancel_dump_traceback_later()
    return status


def _zenoh_message(exc: BaseException) -> str:
    """A zenoh error in one line, without the Rust source locations it carries."""
    import re

    text = re.sub(r" at \S+\.rs:\d+\.?", "", str(exc))
    return " ".join(text.split())


def _print_bridge_stats(stats: Any) -> None:
    state = "running" if stats.running else "stopped"
    print(f"host {stats.host} (pid {stats.pid}, {state}), zenoh id {stats.zid}, "
          f"{len(stats.peers)} peer(s), remote hosts: {', '.join(stats.remote_hosts) or '-'}")
    rows = [["topic", t.name, t.key, str(t.messages_out), str(t.messages_in), str(t.lost),
             str(t.duplicates), str(t.dropped)] for t in stats.topics]
    rows += [["channel", c.name, c.key, str(c.messages_out), str(c.messages_in),
              str(c.unacknowledged), "-", str(c.lost)] for c in stats.channels]
    _print_table(rows, ["KIND", "NAME", "KEY", "OUT", "IN", "LOST/UNACKED", "DUPS",
                        "DROPPED/LOST"])


def _topic_options(c: argparse.ArgumentParser, create_only: bool = False) -> None:
    """--history and --overflow (and, for `publish --create`, --mode)."""
    when = " (with --create)" if create_only else ""
    c.add_argument("--history", type=int, default=0,
                   help=f"messages replayed to late joiners{when} (default 0)")
    c.add_argument("--overflow", choices=["overwrite", "block"], default="overwrite",
                   help="overwrite (default): never wait, slow subscribers are told what "
                   f"they missed; block: wait for the slowest live subscriber{when}")
    if create_only:
        c.add_argument("--mode", type=_parse_mode, default=0o600,
                       help="permission bits in octal, with --create (default 600)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mapshare`` command."""
    p = argparse.ArgumentParser(
        prog="mapshare",
        description="Named shared memory and memory-mapped files: inspect, clean, demo.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ls", help="list mapshare segments")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_ls)

    s = sub.add_parser("info", help="show one segment: header, processes, lock, channel")
    s.add_argument("name")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("create", help="create a channel, a topic or a segment")
    csub = s.add_subparsers(dest="kind", required=True)
    for kind, size_opt, size_help in (
        ("channel", "--capacity", "ring size in bytes (K, M, G suffixes allowed)"),
        ("topic", "--capacity", "ring size in bytes (K, M, G suffixes allowed)"),
        ("segment", "--size", "size in bytes (K, M, G suffixes allowed)"),
    ):
        c = csub.add_parser(kind, help=f"create a {kind}")
        c.add_argument("name")
        c.add_argument(size_opt, type=_parse_size, required=True, help=size_help)
        if kind == "topic":
            _topic_options(c)
        c.add_argument("--mode", type=_parse_mode, default=0o600,
                       help="permission bits in octal (default 600; 660 lets the group in)")
        c.add_argument("--lifetime", choices=["persistent", "shared"], default="persistent",
                       help="persistent (default): stays until `mapshare rm`; shared: "
                       "removed when its last user detaches (this command detaches at once)")
        c.add_argument("--json", action="store_true", help="print the new object's info")
        c.set_defaults(func=cmd_create)

    s = sub.add_parser("rm", help="remove segment names")
    s.add_argument("names", nargs="+")
    s.set_defaults(func=cmd_rm)

    s = sub.add_parser("gc", help="remove 'shared' segments whose processes all died")
    s.add_argument("--dry-run", action="store_true", help="say what would be removed")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_gc)

    s = sub.add_parser("send", help="send a message, or each line of stdin, on a channel")
    s.add_argument("name")
    s.add_argument("data", nargs="?", help="the message; '-' or nothing reads lines of stdin")
    s.add_argument("--file", help="read lines from this file instead of stdin")
    s.add_argument("--close", action="store_true",
                   help="close the channel for sending after the last line")
    s.add_argument("--timeout", type=float, default=None, help="seconds to wait for room")
    s.add_argument("--allow-foreign", action="store_true",
                   help="open a channel owned by another user (e.g. a group's, mode 660)")
    s.set_defaults(func=cmd_send)

    s = sub.add_parser("receive", help="receive messages from a channel, one per line")
    s.add_argument("name")
    s.add_argument("--count", type=int, default=1, help="messages to receive (default 1)")
    s.add_argument("--follow", action="store_true", help="keep receiving until the end")
    s.add_argument("--timeout", type=float, default=None,
                   help="stop after this many seconds without a message")
    fmt = s.add_mutually_exclusive_group()
    fmt.add_argument("--hex", action="store_true", help="print each message in hex")
    fmt.add_argument("--json", action="store_true",
                     help='one JSON object per message: {"size", "text"} or, for bytes that '
                     'are not UTF-8, {"size", "base64"}')
    s.add_argument("--allow-foreign", action="store_true",
                   help="open a channel owned by another user (e.g. a group's, mode 660)")
    s.set_defaults(func=cmd_receive)

    s = sub.add_parser("get", help="print a latest-value slot's newest value")
    s.add_argument("name")
    fmt = s.add_mutually_exclusive_group()
    fmt.add_argument("--hex", action="store_true", help="print the value in hex")
    fmt.add_argument("--json", action="store_true",
                     help='one JSON object: {"size", "text" or "base64", "version"}')
    s.add_argument("--wait-since", type=int, default=None, metavar="VERSION",
                   help="first wait for a version newer than this one")
    s.add_argument("--timeout", type=float, default=None,
                   help="with --wait-since: give up after this many seconds (exit 1)")
    s.add_argument("--allow-foreign", action="store_true",
                   help="open a slot owned by another user (e.g. a group's, mode 660)")
    s.set_defaults(func=cmd_get)

    s = sub.add_parser("publish", help="publish a message, or each line of stdin, on a topic")
    s.add_argument("name")
    s.add_argument("data", nargs="?", help="the message; '-' or nothing reads lines of stdin")
    s.add_argument("--file", help="read lines from this file instead of stdin")
    s.add_argument("--create", type=_parse_size, metavar="CAPACITY",
                   help="create the topic (persistent) with this many bytes of ring if it "
                   "does not exist")
    _topic_options(s, create_only=True)
    s.add_argument("--timeout", type=float, default=None,
                   help="overflow='block': seconds to wait for the slowest subscriber")
    s.add_argument("--json", action="store_true",
                   help='print {"seq", "size"} for each message published')
    s.add_argument("--allow-foreign", action="store_true",
                   help="open a topic owned by another user (e.g. a group's, mode 660)")
    s.set_defaults(func=cmd_publish)

    s = sub.add_parser("subscribe", help="print a topic's messages, one per line")
    s.add_argument("name")
    s.add_argument("--start", type=_parse_start, default="live",
                   help="live (default: from the next message), history (the messages "
                   "the topic holds for late joiners, then live) or a sequence number")
    s.add_argument("--count", type=int, default=None,
                   help="messages to print (default: 1 from live; from history or a "
                   "sequence number, those held now)")
    s.add_argument("--follow", action="store_true", help="keep printing until interrupted")
    s.add_argument("--timeout", type=float, default=None,
                   help="stop after this many seconds without a message")
    fmt = s.add_mutually_exclusive_group()
    fmt.add_argument("--hex", action="store_true", help="print each message in hex")
    fmt.add_argument("--json", action="store_true",
                     help='one JSON object per message: {"seq", "size", "text"} or, for '
                     'bytes that are not UTF-8, {"seq", "size", "base64"}')
    s.add_argument("--allow-foreign", action="store_true",
                   help="open a topic owned by another user (e.g. a group's, mode 660)")
    s.set_defaults(func=cmd_subscribe)

    _journal_parser(sub)
    s = sub.add_parser(
        "bridge", help="connect topics and channels to other hosts over Eclipse Zenoh",
        description="Run a bridge (until SIGINT/SIGTERM), or with 'stat [NAME]' print "
        "a running bridge's statistics.  docs/bridge.md explains the guarantees.")
    s.add_argument("action", nargs="?", choices=["stat"], help=argparse.SUPPRESS)
    s.add_argument("stat_name", nargs="?", metavar="NAME", help=argparse.SUPPRESS)
    s.add_argument("--topic", type=_mapping, action="append", default=[],
                   metavar="NAME=KEY", help="bridge the local topic NAME to the zenoh key KEY")
    s.add_argument("--channel", type=_mapping, action="append", default=[],
                   metavar="NAME=KEY",
                   help="bridge the local channel NAME: each message to one receiver")
    s.add_argument("--mode", choices=["peer", "router", "client"], default=None,
                   help="zenoh mode (default: the config's, else peer)")
    s.add_argument("--listen", action="append", default=[], metavar="ENDPOINT",
                   help="zenoh endpoint to listen on, e.g. tcp/0.0.0.0:7447")
    s.add_argument("--connect", action="append", default=[], metavar="ENDPOINT",
                   help="zenoh endpoint to connect to, e.g. tcp/10.0.0.2:7447")
    s.add_argument("--config", default=None, metavar="FILE",
                   help="zenoh configuration file (JSON5); the flags above override it")
    s.add_argument("--no-multicast-scouting", action="store_true",
                   help="do not discover peers by multicast (use --connect)")
    s.add_argument("--host-id", default=None, metavar="ID",
                   help="this host's id (default: host name and the /dev/shm device)")
    s.add_argument("--stats-name", default=None, metavar="NAME",
                   help="the latest-value slot for statistics (default bridge.<host-id>)")
    s.add_argument("--stats-interval", type=float, default=1.0, metavar="S",
                   help="seconds between statistics (default 1)")
    s.add_argument("--ack-timeout", type=float, default=2.0, metavar="S",
                   help="seconds a channel hand-over waits for the receiving host's "
                   "acknowledgement before it counts as unacknowledged (default 2)")
    s.add_argument("--close-timeout", type=float, default=2.0, metavar="S",
                   help="seconds stopping waits for zenoh to close the session before the "
                   "bridge exits anyway (default 2; a peer that does not read holds the "
                   "close)")
    s.add_argument("--json", action="store_true",
                   help="print JSON lines: a 'started' event, then statistics every interval "
                   "(with stat: the statistics as JSON)")
    s.set_defaults(func=cmd_bridge)

    s = sub.add_parser("demo", help="writer and reader processes meet by name")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args: Any
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse cannot fill an optional positional after an option
        # ("mapshare send NAME --close -"): take one leftover as the data
        if args.command in ("send", "publish") and args.data is None and len(extra) == 1:
            args.data = extra[0]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return _run(args)
    except BrokenPipeError:
        # the reader went away: say nothing more, and keep Python's own flush at exit
        # from printing "Exception ignored ... BrokenPipeError"
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE


def _run(args: Any) -> int:
    cmd = f"mapshare {args.command}"
    if args.command == "journal":
        cmd += f" {args.journal_command}"
    try:
        status = int(args.func(args))
        sys.stdout.flush()  # a broken pipe surfaces here, inside the handler of main
        return status
    except BrokenPipeError:
        raise
    except _UsageError as exc:
        print(f"{cmd}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SegmentNotFoundError as exc:
        print(f"{cmd}: {_message(exc)}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except PermissionError as exc:  # PermissionDeniedError, and the OS's own
        print(f"{cmd}: no permission: {_message(exc)}", file=sys.stderr)
        return EXIT_PERMISSION
    except SegmentExistsError as exc:
        print(f"{cmd}: {_message(exc)}", file=sys.stderr)
        return EXIT_EXISTS
    except (MapshareError, OSError, ValueError) as exc:
        print(f"{cmd}: {_message(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _message(exc: BaseException) -> str:
    """An exception as one line: OSErrors without their '[Errno 2]' prefix."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename is not None:
            text += f": {exc.filename!r}"
        return text
    return str(exc) or type(exc).__name__
