"""The ``mapshare`` command: see what is in shared memory, clean it, move messages, and
run the demo.

    mapshare ls [--json]                 list segments
    mapshare info NAME [--json]          one segment: header, peers, lock, channel depth
    mapshare rm NAME [NAME ...]          remove names
    mapshare gc [--dry-run] [--json]     remove 'shared' segments whose users all died
    mapshare send NAME [DATA | -]        send DATA, or each line of stdin, on a channel
    mapshare receive NAME [--count N] [--follow] [--timeout S]
    mapshare demo                        the file-mapping demo: a writer and a reader process
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, Optional

from . import _naming
from ._errors import (
    ChannelBroken,
    EndOfChannel,
    LayoutError,
    MapshareError,
    SegmentNotFoundError,
    WaitTimeout,
)
from ._segment import SegmentInfo, segment_info, segments

__all__ = ["main"]


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
        rows.append([
            i.name, i.kind, _human(i.size), i.lifetime, i.state,
            f"{i.creator_pid} ({_alive(i.creator_alive)})" if i.creator_pid else "-",
            procs, i.created.strftime("%Y-%m-%d %H:%M:%S") if i.created else "-",
        ])
    _print_table(rows, ["NAME", "KIND", "SIZE", "LIFETIME", "STATE", "CREATOR", "PROCESSES",
                        "CREATED (UTC)"])
    return 0


def _find(name: str) -> SegmentInfo:
    try:
        osn = _naming.os_name(name)
    except ValueError:
        osn = name if name.startswith("/") else "/" + name
    return segment_info(osn)


def cmd_info(args: argparse.Namespace) -> int:
    info = _find(args.name)
    if args.json:
        print(json.dumps(info.as_dict(), indent=2))
        return 0
    print(f"name:        {info.name}")
    print(f"os name:     {info.os_name}")
    print(f"kind:        {info.kind}")
    print(f"state:       {info.state}" + (f" ({info.error})" if info.error else ""))
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
    elif info.kind == "event":
        print(f"event:       {'set' if x['event_set'] else 'clear'}, {x['waiters']} waiter(s)")
    elif info.kind == "semaphore":
        print(f"semaphore:   {x['value']} of {x['maximum']}, {x['waiters']} waiter(s)")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from . import _core

    status = 0
    for name in args.names:
        try:
            osn = _naming.os_name(name)
        except ValueError:
            osn = name if name.startswith("/") else "/" + name
        try:
            if _core.PLATFORM == "windows":
                _rm_windows(osn)
            else:
                _core.unlink(osn)
            print(f"removed {name}")
        except SegmentNotFoundError:
            print(f"mapshare rm: no segment named {name!r}", file=sys.stderr)
            status = 1
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


def cmd_send(args: argparse.Namespace) -> int:
    from ._channel import Channel

    ch = Channel.open(args.name)
    try:
        if args.data is not None and args.data != "-":
            ch.send(args.data.encode(), args.timeout)
            return 0
        with (
            open(args.file, "rb") if args.file is not None else nullcontext(sys.stdin.buffer)
        ) as stream:
            for line in stream:
                ch.send(line.rstrip(b"\n"), args.timeout)
        if args.close:
            ch.close_sending()
    finally:
        ch.close()
    return 0


def cmd_receive(args: argparse.Namespace) -> int:
    from ._channel import Channel

    ch = Channel.open(args.name)
    out = sys.stdout.buffer
    n = 0
    try:
        while args.follow or n < args.count:
            try:
                msg = ch.receive(args.timeout)
            except (EndOfChannel, ChannelBroken) as exc:
                if isinstance(exc, ChannelBroken):
                    print(f"mapshare receive: {exc} (pid {exc.pid})", file=sys.stderr)
                    if args.follow:
                        continue  # an edge: keep following the senders to come
                    return 1
                break
            except WaitTimeout:
                break
            out.write(msg + b"\n")
            out.flush()
            n += 1
    finally:
        ch.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run

    return run(verbose=not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mapshare`` command."""
    p = argparse.ArgumentParser(
        prog="mapshare",
        description="Named shared memory and memory-mapped files: inspect, clean, demo.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ls", help="list mapshare segments")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_ls)

    s = sub.add_parser("info", help="show one segment: header, processes, lock, channel")
    s.add_argument("name")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_info)

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
    s.set_defaults(func=cmd_send)

    s = sub.add_parser("receive", help="receive messages from a channel, one per line")
    s.add_argument("name")
    s.add_argument("--count", type=int, default=1, help="messages to receive (default 1)")
    s.add_argument("--follow", action="store_true", help="keep receiving until the end")
    s.add_argument("--timeout", type=float, default=None,
                   help="stop after this many seconds without a message")
    s.set_defaults(func=cmd_receive)

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
        if args.command == "send" and args.data is None and len(extra) == 1:
            args.data = extra[0]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args))
    except MapshareError as exc:
        print(f"mapshare {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
