"""Several "hosts" on one Linux machine, for tests and benchmarks of the Zenoh bridge.

Each host is a network namespace ``msh-<id>-N`` with one interface, ``eth0``, address
``10.<x>.<y>.N/24``, plugged into a Linux bridge device ``br0`` that lives in a namespace
of its own (``msh-<id>-sw``, the "switch"), so nothing is created in the machine's own
network namespace and deleting the namespaces deletes every veth and the bridge with them.

Each host also has a private /dev/shm: a holder process (``sleep infinity``) runs in the
host's network namespace inside a new mount namespace (``unshare -m --propagation
private``) with a fresh tmpfs mounted on /dev/shm; every process started on the host joins
that mount and network namespace (``nsenter -t HOLDER -m -n``), so processes of one host
share /dev/shm and processes of two hosts do not (a mapshare object created on host 1 is
not visible on host 2: ``Hosts.check_private_shm``).  The tmpfs disappears with the last
process in that mount namespace; nothing is mounted in the machine's own mount namespace.

A link is cut by setting the switch side of the host's veth down (the host sees its
carrier go: packets it sends are dropped, TCP retransmits in vain, as with a pulled
cable) and restored by setting it up.  ``tc netem loss 100%`` would be the gentler cut,
but this machine's kernel has no sch_netem module (``tc qdisc add ... netem`` fails with
"Specified qdisc kind is unknown"), so it is not used.

Only the standard library is used: benchmarks/bridge.py imports this file too.
Needs root, ``ip`` (iproute2), ``unshare`` and ``nsenter`` (util-linux); ``unavailable()``
says why they are not usable, for a skip reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, Optional

PREFIX = "msh-"
_SH_MOUNT = "mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec \"$@\""


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


_probe_result: Optional[str] = None


def unavailable() -> Optional[str]:
    """None when hosts can be made here; else the reason (for ``pytest.skip``).  The
    probe creates and deletes one namespace, once per process."""
    global _probe_result
    if _probe_result is not None:
        return _probe_result or None
    reason = ""
    if not sys.platform.startswith("linux"):
        reason = "network namespaces are Linux only"
    elif os.geteuid() != 0:
        reason = "creating network namespaces needs root"
    else:
        missing = [t for t in ("ip", "unshare", "nsenter", "sleep") if shutil.which(t) is None]
        if missing:
            reason = f"missing tool(s) {', '.join(missing)} (apt-get install iproute2 util-linux)"
    if not reason:
        probe = f"{PREFIX}probe{os.getpid()}"
        r = _run("ip", "netns", "add", probe, check=False)
        if r.returncode != 0:
            reason = f"'ip netns add' failed: {r.stderr.strip() or r.returncode}"
        else:
            r = _run("ip", "netns", "exec", probe, "unshare", "-m", "--propagation", "private",
                     "sh", "-c", _SH_MOUNT, "sh", "true", check=False)
            _run("ip", "netns", "del", probe, check=False)
            if r.returncode != 0:
                reason = ("a private tmpfs on /dev/shm in a mount namespace failed: "
                          f"{r.stderr.strip() or r.returncode}")
    _probe_result = reason
    return reason or None


class Host:
    """One host: its namespace, address, interface names and /dev/shm holder."""

    def __init__(self, hosts: Hosts, index: int) -> None:
        self.hosts = hosts
        self.index = index
        self.netns = f"{PREFIX}{hosts.id}-{index}"
        self.address = f"{hosts.subnet}.{index}"
        self.port = f"p{index}"  # the switch side of this host's veth (in the switch ns)
        self.holder: Optional[subprocess.Popen[bytes]] = None

    def __repr__(self) -> str:
        return f"<Host {self.index} {self.netns} {self.address}>"

    def endpoint(self, port: int, proto: str = "tcp") -> str:
        """A zenoh endpoint on this host's address: ``tcp/10.x.y.N:port``."""
        return f"{proto}/{self.address}:{port}"

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs on this host (its network namespace and its
        private /dev/shm), in the current working directory."""
        assert self.holder is not None, "host not started"
        return ["nsenter", "-t", str(self.holder.pid), "-m", "-n", f"--wd={os.getcwd()}",
                "--", *argv]

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` on this host (``subprocess.Popen`` keywords pass through); the
        process is killed at teardown if it is still running.  The process *is* the
        returned Popen's pid (nsenter execs it), so ``.kill()`` reaches it."""
        p = subprocess.Popen(self.command(argv), **kw)
        self.hosts._procs.append(p)
        return p

    def run(self, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on this host to completion; its output as text."""
        return subprocess.run(self.command(argv), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def shm(self) -> list[str]:
        """The entries of this host's /dev/shm."""
        r = self.run(["ls", "-A", "/dev/shm"])
        if r.returncode != 0:
            raise RuntimeError(f"ls /dev/shm on {self}: {r.stderr}")
        return r.stdout.split()

    def cut(self) -> None:
        """Cut this host's link (its switch port goes down; its packets are dropped)."""
        _run("ip", "-n", self.hosts.switch, "link", "set", self.port, "down")

    def restore(self) -> None:
        """Restore the link cut by ``cut``."""
        _run("ip", "-n", self.hosts.switch, "link", "set", self.port, "up")


class Hosts:
    """``n`` hosts joined by a switch; ``close()`` (or the context manager) deletes
    everything: processes started on them, the holders (so the tmpfs mounts), the
    namespaces (so the veths and the bridge).  Safe to call after a partial setup."""

    def __init__(self, n: int = 3) -> None:
        if not 1 <= n <= 9:
            raise ValueError("1 to 9 hosts")
        rnd = os.urandom(3)
        # unique per process and random, so concurrent sessions never share a name
        self.id = f"{os.getpid() % 0x10000:04x}{rnd[0]:02x}"
        self.subnet = f"10.{rnd[1] % 200 + 20}.{rnd[2]}"
        self.switch = f"{PREFIX}{self.id}-sw"
        self.hosts = [Host(self, i + 1) for i in range(n)]
        self._procs: list[subprocess.Popen[Any]] = []
        self._netns: list[str] = []
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def __getitem__(self, i: int) -> Host:
        return self.hosts[i]

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add_netns(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self._netns.append(name)

    def _setup(self) -> None:
        sw = self.switch
        self._add_netns(sw)
        _run("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", sw, "link", "set", "br0", "up")
        for h in self.hosts:
            self._add_netns(h.netns)
            # both ends are created inside namespaces: no name in the machine's own one
            _run("ip", "-n", sw, "link", "add", h.port, "type", "veth",
                 "peer", "name", "eth0", "netns", h.netns)
            _run("ip", "-n", sw, "link", "set", h.port, "master", "br0")
            _run("ip", "-n", sw, "link", "set", h.port, "up")
            _run("ip", "-n", h.netns, "addr", "add", f"{h.address}/24", "dev", "eth0")
            _run("ip", "-n", h.netns, "link", "set", "eth0", "up")
            _run("ip", "-n", h.netns, "link", "set", "lo", "up")
            h.holder = subprocess.Popen(
                ["ip", "netns", "exec", h.netns, "unshare", "-m", "--propagation", "private",
                 "sh", "-c", _SH_MOUNT, "sh", "sleep", "infinity"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for h in self.hosts:
            self._wait_holder(h)

    @staticmethod
    def _wait_holder(h: Host) -> None:
        """Wait until the holder has mounted its tmpfs and exec'd sleep."""
        assert h.holder is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if h.holder.poll() is not None:
                err = h.holder.stderr.read().decode() if h.holder.stderr else ""
                raise RuntimeError(f"holder of {h} exited {h.holder.returncode}: {err}")
            try:
                with open(f"/proc/{h.holder.pid}/comm") as f:
                    if f.read().strip() == "sleep":
                        return
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"holder of {h} did not start")

    def check_private_shm(self) -> None:
        """Raise AssertionError unless an object created on host 1 is visible on host 1
        only (each host has its own /dev/shm, distinct from this machine's)."""
        probe = f"mapshare.netns-probe-{self.id}"
        first = self.hosts[0]
        r = first.run(["sh", "-c", f": > /dev/shm/{probe}"])
        assert r.returncode == 0, r.stderr
        assert probe in first.shm(), f"{probe} not visible on {first}"
        for h in self.hosts[1:]:
            assert probe not in h.shm(), f"{probe} created on {first} is visible on {h}"
        assert not os.path.exists(f"/dev/shm/{probe}"), "host 1's /dev/shm is the machine's"
        first.run(["rm", "-f", f"/dev/shm/{probe}"])

    def close(self) -> None:
        """Kill every process started here, then the holders, then delete the
        namespaces.  Errors are collected and raised at the end, after all the steps."""
        errors: list[str] = []
        for p in self._procs:
            _kill(p)
        self._procs.clear()
        for h in self.hosts:
            if h.holder is not None:
                _kill(h.holder)
                h.holder = None
        for ns in reversed(self._netns):
            # anything still inside (a grandchild a test started) is ours: end it first
            r = _run("ip", "netns", "pids", ns, check=False)
            for pid in r.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            r = _run("ip", "netns", "del", ns, check=False)
            if r.returncode != 0:
                errors.append(f"ip netns del {ns}: {r.stderr.strip()}")
        self._netns.clear()
        if errors:
            raise RuntimeError("; ".join(errors))


def _kill(p: subprocess.Popen[Any]) -> None:
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.kill()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        pass
    for f in (p.stdin, p.stdout, p.stderr):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()


def leftover_namespaces(hosts_id: str) -> list[str]:
    """Network namespaces of ``hosts_id`` still present (for a teardown check)."""
    r = _run("ip", "netns", "list", check=False)
    return [line.split()[0] for line in r.stdout.splitlines()
            if line.startswith(f"{PREFIX}{hosts_id}-")]

