"""mapshare: inter-process communication over named shared memory and memory-mapped files.

The Windows file-mapping model (CreateFileMapping / OpenFileMapping / MapViewOfFile) for
Python on every OS -- named segments, backing files, views, access modes, permissions and
explicit lifetimes -- plus robust locks, events, semaphores, change notification,
message channels and broadcast topics.

    >>> import mapshare
    >>> with mapshare.Segment.create("example", 4096) as seg:
    ...     seg.write(b"hello")
    ...     with mapshare.Segment.open("example") as other:
    ...         other.read(5)
    5
    b'hello'
"""

from ._array import SharedArray as SharedArray
from ._capi import get_include as get_include
from ._capi import get_sources as get_sources
from ._channel import Channel as Channel
from ._channel import ChannelStatistics as ChannelStatistics
from ._core import Window as Window
from ._errors import AlreadyHeldError as AlreadyHeldError
from ._errors import AttachLimitError as AttachLimitError
from ._errors import BrokenChannelError as BrokenChannelError
from ._errors import ChannelEmpty as ChannelEmpty
from ._errors import ChannelFull as ChannelFull
from ._errors import EndOfChannel as EndOfChannel
from ._errors import InvalidArgumentError as InvalidArgumentError
from ._errors import Lagged as Lagged
from ._errors import LayoutError as LayoutError
from ._errors import LayoutVersionError as LayoutVersionError
from ._errors import MapshareError as MapshareError
from ._errors import MessageKindError as MessageKindError
from ._errors import MessageTooLargeError as MessageTooLargeError
from ._errors import NameCollisionError as NameCollisionError
from ._errors import NoSpaceError as NoSpaceError
from ._errors import NotOwnerError as NotOwnerError
from ._errors import Overwritten as Overwritten
from ._errors import OwnerDiedError as OwnerDiedError
from ._errors import PermissionDeniedError as PermissionDeniedError
from ._errors import SegmentDestroyedError as SegmentDestroyedError
from ._errors import SegmentExistsError as SegmentExistsError
from ._errors import SegmentFaultError as SegmentFaultError
from ._errors import SegmentInUseError as SegmentInUseError
from ._errors import SegmentNotFoundError as SegmentNotFoundError
from ._errors import SemaphoreOverflowError as SemaphoreOverflowError
from ._errors import SubscriberLimitError as SubscriberLimitError
from ._errors import SystemCallError as SystemCallError
from ._errors import TopicEmpty as TopicEmpty
from ._errors import TopicFull as TopicFull
from ._errors import UnsupportedError as UnsupportedError
from ._errors import WaitTimeout as WaitTimeout
from ._errors import WindowOpenError as WindowOpenError
from ._gc import Reclaimed as Reclaimed
from ._gc import collect as collect
from ._inspect import LockState as LockState
from ._inspect import ProcessInfo as ProcessInfo
from ._inspect import SegmentInfo as SegmentInfo
from ._inspect import segments as segments
from ._journal import Journal as Journal
from ._journal import JournalReader as JournalReader
from ._journal import JournalStatistics as JournalStatistics
from ._journal import ReaderPosition as ReaderPosition
from ._journal import Recovery as Recovery
from ._latest import Latest as Latest
from ._latest import LatestStatistics as LatestStatistics
from ._segment import Segment as Segment
from ._sync import Event as Event
from ._sync import Lock as Lock
from ._sync import Semaphore as Semaphore
from ._topic import Origin as Origin
from ._topic import Subscriber as Subscriber
from ._topic import SubscriberStatistics as SubscriberStatistics
from ._topic import Topic as Topic
from ._topic import TopicStatistics as TopicStatistics
from ._version import __version__ as __version__
from ._wait import wait as wait
from ._wait import wait_async as wait_async
from .bridge import Bridge as Bridge
from .bridge import BridgeStatistics as BridgeStatistics
from .bridge import ChannelMappingStatistics as ChannelMappingStatistics
from .bridge import RemoteHostStatistics as RemoteHostStatistics
from .bridge import TopicMappingStatistics as TopicMappingStatistics

__all__ = [
    "AlreadyHeldError",
    "AttachLimitError",
    "Bridge",
    "BridgeStatistics",
    "BrokenChannelError",
    "Channel",
    "ChannelEmpty",
    "ChannelFull",
    "ChannelMappingStatistics",
    "ChannelStatistics",
    "EndOfChannel",
    "Event",
    "InvalidArgumentError",
    "Journal",
    "JournalReader",
    "JournalStatistics",
    "Lagged",
    "Latest",
    "LatestStatistics",
    "LayoutError",
    "LayoutVersionError",
    "Lock",
    "LockState",
    "MapshareError",
    "MessageKindError",
    "MessageTooLargeError",
    "NameCollisionError",
    "NoSpaceError",
    "NotOwnerError",
    "Origin",
    "Overwritten",
    "OwnerDiedError",
    "PermissionDeniedError",
    "ProcessInfo",
    "ReaderPosition",
    "Reclaimed",
    "Recovery",
    "RemoteHostStatistics",
    "Segment",
    "SegmentDestroyedError",
    "SegmentExistsError",
    "SegmentFaultError",
    "SegmentInUseError",
    "SegmentInfo",
    "SegmentNotFoundError",
    "Semaphore",
    "SemaphoreOverflowError",
    "SharedArray",
    "Subscriber",
    "SubscriberLimitError",
    "SubscriberStatistics",
    "SystemCallError",
    "Topic",
    "TopicEmpty",
    "TopicFull",
    "TopicMappingStatistics",
    "TopicStatistics",
    "UnsupportedError",
    "WaitTimeout",
    "Window",
    "WindowOpenError",
    "collect",
    "get_include",
    "get_sources",
    "segments",
    "wait",
    "wait_async",
]
