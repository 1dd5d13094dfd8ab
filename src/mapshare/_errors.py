"""The exception hierarchy: one root, leaves that also subclass the builtin a user would
already catch.  Each C status code maps to exactly one class (registered with the
extension at import), and no status maps to the root.

Naming rule (CONTRIBUTING.md, "Exceptions"): a failure ends in ``Error``
(``BrokenChannelError``); a condition met in normal flow carries no suffix
(``ChannelFull``, ``ChannelEmpty``, ``EndOfChannel``, ``WaitTimeout``, ``Lagged``,
``TopicFull``, ``TopicEmpty``)."""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING, Optional

from . import _core

if TYPE_CHECKING:
    from ._sync import Lock

__all__ = [
    "AlreadyHeldError",
    "AttachLimitError",
    "BrokenChannelError",
    "ChannelEmpty",
    "ChannelFull",
    "EndOfChannel",
    "InvalidArgumentError",
    "Lagged",
    "LayoutError",
    "LayoutVersionError",
    "MapshareError",
    "MessageKindError",
    "MessageTooLargeError",
    "NameCollisionError",
    "NoSpaceError",
    "NotOwnerError",
    "Overwritten",
    "OwnerDiedError",
    "PermissionDeniedError",
    "SegmentDestroyedError",
    "SegmentExistsError",
    "SegmentFaultError",
    "SegmentInUseError",
    "SegmentNotFoundError",
    "SemaphoreOverflowError",
    "SubscriberLimitError",
    "SystemCallError",
    "TopicEmpty",
    "TopicFull",
    "UnsupportedError",
    "WaitTimeout",
    "WindowOpenError",
]


class MapshareError(Exception):
    """Root of every exception mapshare raises on purpose."""


class SystemCallError(MapshareError, OSError):
    """An OS call failed for a reason mapshare has no more specific class for;
    ``errno`` (``winerror`` on Windows) and ``strerror`` say which."""


class SegmentNotFoundError(MapshareError, FileNotFoundError):
    """No segment of that name (or no backing file at that path)."""


class SegmentExistsError(MapshareError, FileExistsError):
    """Exclusive creation found the name already taken."""


class NameCollisionError(SegmentExistsError):
    """Two logical names map to the same short OS name; pick another name."""


class PermissionDeniedError(MapshareError, PermissionError):
    """The OS or mapshare's own ownership and mode checks refused access."""


class NoSpaceError(MapshareError, OSError):
    """Storage for the segment could not be reserved (full /dev/shm, disk or quota)."""


class LayoutError(MapshareError):
    """The object is not a valid mapshare segment of the expected kind: wrong magic,
    unknown layout version, sizes beyond the mapping, a corrupt ring, or a header that
    was never finished."""


class LayoutVersionError(LayoutError):
    """The segment was made with another layout version than the one this mapshare
    reads (a newer mapshare, or a C program built against a newer libmapshare): it is
    refused before anything past the header's version field is read.  A LayoutError, so
    ``except LayoutError`` keeps catching it."""


class _Initializing(LayoutError):
    """The header is not published yet (internal: ``open()`` retries, then raises a
    plain LayoutError)."""


class SegmentDestroyedError(MapshareError):
    """The segment was destroyed (its last user left) while we were attaching."""


class SegmentFaultError(MapshareError):
    """The segment's memory vanished under us: another process truncated the object.
    The handle is unusable afterwards; its memory reads as zeros."""


class AttachLimitError(MapshareError):
    """Opening failed because the object's attach table is full: ``limit`` live
    processes are attached already, the most one object allows (4,096 for objects this
    version creates; a process takes one slot however many handles it opens).  Dead
    processes' slots are reclaimed first, so this means that many processes really are
    alive and attached."""

    limit: int
    """The number of processes one object can have attached at once."""

    def __init__(self, message: str = "the attach table is full", limit: int = 0) -> None:
        super().__init__(message)
        self.limit = limit

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.limit))


class WaitTimeout(MapshareError, TimeoutError):
    """A wait with a timeout expired."""


class OwnerDiedError(MapshareError):
    """The previous holder of a lock died while holding it.

    Raised by ``Lock.acquire()`` **with the lock held by the caller**: repair the
    state the lock protects, then call ``release()`` (or keep using it and release
    later).  ``lock`` is the Lock concerned (None if the error did not come from a
    ``Lock``).
    """

    lock: Optional[Lock] = None


class NotOwnerError(MapshareError, RuntimeError):
    """``release()`` of a lock that the calling thread does not hold."""


class AlreadyHeldError(MapshareError, RuntimeError):
    """``acquire()`` of a lock that the calling thread already holds: mapshare locks are
    not reentrant (acquiring again would deadlock)."""


class SegmentInUseError(MapshareError, OSError):
    """The object is in use by another handle: opening waited (5 s) for a last user
    that was removing it, or the OS refused because another process has the file in use
    (Windows sharing violations)."""


class InvalidArgumentError(MapshareError, ValueError):
    """The C core refused an argument: a name the OS cannot use, an offset or size
    outside the object, a commit of more than was loaned, a semaphore whose value is
    above its maximum."""


class SemaphoreOverflowError(MapshareError, ValueError):
    """``Semaphore.release()`` would raise the value above the semaphore's maximum
    (like ``threading.BoundedSemaphore``); nothing was released."""


class WindowOpenError(MapshareError, RuntimeError):
    """This thread already has a loan (or a received view) open on this channel handle:
    finish it (leave its ``with`` block, ``send`` it or release it) before sending,
    receiving or opening another.  Other threads and other handles are not affected."""


class ChannelFull(MapshareError, queue.Full):
    """A non-blocking send found the channel full."""


class ChannelEmpty(MapshareError, queue.Empty):
    """A non-blocking receive found the channel empty."""


class EndOfChannel(MapshareError):
    """The channel was closed for sending and everything queued has been received."""


class BrokenChannelError(MapshareError):
    """A sender died without closing the channel (SIGKILL, ``os._exit``, a fatal signal),
    the channel is empty and no sender is left alive: raised once per handle for the
    deaths it has not reported yet, after which receiving waits normally again (a new
    sender may come).  A sender that exits normally is never a dead sender.

    Attributes: ``pid`` (the sender most recently found dead), ``dead_senders`` (how
    many died since this handle last reported it), ``abandoned`` (sends or loans they
    left unfinished in that time: never delivered)."""

    pid: int = 0
    dead_senders: int = 0
    abandoned: int = 0


class MessageKindError(MapshareError, TypeError):
    """The next message is of another kind than the call expects (bytes, an object from
    ``send_object`` or an array from ``send_array``); it was left queued.  ``kind`` is
    the kind found; ``receive_any()`` takes any kind."""

    kind: str = ""


class MessageTooLargeError(MapshareError, ValueError):
    """The message can never fit in this channel; it was not sent."""


class TopicFull(MapshareError, queue.Full):
    """A non-blocking publish to a topic with ``overflow="block"`` found no room: a live
    subscriber has not yet read what the message would overwrite.  Nothing was
    published."""


class TopicEmpty(MapshareError, queue.Empty):
    """A non-blocking receive found no new message for this subscriber."""


class Lagged(MapshareError):
    """This subscriber was overwritten (``overflow="overwrite"``): the publisher went a
    whole ring ahead of it, and ``missed`` messages it had not read are gone.  Raised
    exactly once per loss, by the receive that found it; the subscriber then continues
    with the oldest message still held, whose sequence number is ``position``.
    Nothing is lost silently: for every subscriber, messages received plus the sum of
    every ``missed`` equals the messages published since it started (a loss record,
    ``Topic.publish_loss(k)``, counts as the ``k`` messages it stands for).

    Messages lost upstream (a bridge found a gap in another host's sequence numbers and
    published a loss record) are reported the same way, ``upstream`` of them; a local
    lap and the loss records it runs into are one ``Lagged``.

    A view (``receive_view``) that was overwritten while it was open raises it when its
    block ends: what the view showed may have been changed under it."""

    missed: int
    """How many messages this subscriber lost (when no loss record is among them, their
    sequence numbers are ``position - missed`` up to ``position - 1``)."""

    position: int
    """The sequence number of the next message it will receive."""

    upstream: int
    """Of ``missed``, how many were lost upstream, before they reached this topic (on
    the network or in another host: loss records a bridge published); the rest were
    overwritten here.  0 for a local lap alone."""

    def __init__(self, missed: int = 0, position: int = 0, upstream: int = 0) -> None:
        if upstream == 0:
            what = "the subscriber was overwritten"
        elif upstream == missed:
            what = "messages were lost upstream"
        else:
            what = f"the subscriber was overwritten and {upstream} were lost upstream"
        super().__init__(
            f"{what}: {missed} message(s) lost; it resumes at sequence number {position}"
        )
        self.missed = missed
        self.position = position
        self.upstream = upstream

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.missed, self.position, self.upstream))


class Overwritten(MapshareError):
    """The value a ``Latest.view()`` showed was replaced while the view was open: what
    the block read may mix two values.  Raised when the block ends; read it again (or
    use ``get()``, which copies and never returns a mixed value)."""


class SubscriberLimitError(MapshareError):
    """``subscribe()`` found the topic's subscriber table full: ``max_subscribers``
    subscribers of live processes are open (entries of dead processes are reclaimed
    first).  Close subscribers, or create the topic with a larger ``max_subscribers``."""


class UnsupportedError(MapshareError, NotImplementedError):
    """This OS cannot provide what was asked for (e.g. a ``persistent`` segment in
    Windows' paging file, whose name would vanish with its last handle)."""


#: Statuses that never reach a user: the binding raises the signal handler's exception
#: for E_INTERRUPTED and retries the call without the GIL for E_RETRY_NO_GIL;
#: E_INITIALIZING maps to the private ``_Initializing``, which ``Segment.open`` catches
#: (it retries, then raises LayoutError).
_INTERNAL_STATUSES = frozenset({_core.E_INTERRUPTED, _core.E_RETRY_NO_GIL, _core.E_INITIALIZING})

#: status -> class.  Every user-visible status has its own class; none is the root.
_STATUS_CLASSES: dict[int, type[BaseException]] = {
    _core.E_OS: SystemCallError,
    _core.E_NOT_FOUND: SegmentNotFoundError,
    _core.E_EXISTS: SegmentExistsError,
    _core.E_PERMISSION: PermissionDeniedError,
    _core.E_LAYOUT: LayoutError,
    _core.E_TIMEOUT: WaitTimeout,
    _core.E_OWNER_DIED: OwnerDiedError,
    _core.E_FULL: ChannelFull,
    _core.E_EMPTY: ChannelEmpty,
    _core.E_CLOSED: EndOfChannel,
    _core.E_TOO_LARGE: MessageTooLargeError,
    _core.E_NOT_OWNER: NotOwnerError,
    _core.E_NO_SPACE: NoSpaceError,
    _core.E_IN_USE: SegmentInUseError,
    _core.E_INITIALIZING: _Initializing,
    _core.E_DESTROYED: SegmentDestroyedError,
    _core.E_BROKEN: BrokenChannelError,
    _core.E_FAULT: SegmentFaultError,
    _core.E_INVALID: InvalidArgumentError,
    _core.E_VALUE: SemaphoreOverflowError,
    _core.E_ATTACH_LIMIT: AttachLimitError,
    _core.E_ALREADY_HELD: AlreadyHeldError,
    _core.E_WINDOW_OPEN: WindowOpenError,
    _core.E_LAGGED: Lagged,
    _core.E_SUBSCRIBER_LIMIT: SubscriberLimitError,
    _core.E_OVERWRITTEN: Overwritten,
    _core.E_VERSION: LayoutVersionError,
}

_core.set_errors(_STATUS_CLASSES)
# A full or empty topic is the topic's own condition, raised by the topic binding for
# E_FULL / E_EMPTY (whose classes are the channel's).
_core._set_topic_errors(TopicFull, TopicEmpty)
