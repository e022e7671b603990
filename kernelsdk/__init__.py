"""kernelsdk: write Jupyter kernels for new languages as a small async subclass.

The public API is exactly what this module re-exports; everything in ``_modules`` is private.
"""

from ._comm import Comm as Comm
from ._comm import CommManager as CommManager
from ._connection import ConnectionInfo as ConnectionInfo
from ._context import ExecuteContext as ExecuteContext
from ._events import Channel as Channel
from ._events import InputReply as InputReply
from ._events import InvalidMessage as InvalidMessage
from ._events import Outgoing as Outgoing
from ._events import Request as Request
from ._events import Subscription as Subscription
from ._exceptions import ConfigError as ConfigError
from ._exceptions import ExecutionError as ExecutionError
from ._exceptions import InputInterrupted as InputInterrupted
from ._exceptions import KernelNotFoundError as KernelNotFoundError
from ._exceptions import KernelSDKError as KernelSDKError
from ._exceptions import LocalProtocolError as LocalProtocolError
from ._exceptions import ProtocolError as ProtocolError
from ._exceptions import RemoteProtocolError as RemoteProtocolError
from ._exceptions import StdinNotAllowedError as StdinNotAllowedError
from ._exceptions import TransportError as TransportError
from ._history import InMemoryHistory as InMemoryHistory
from ._kernel import BaseKernel as BaseKernel
from ._kernel import Completions as Completions
from ._kernel import IsComplete as IsComplete
from ._kernelspec import KernelSpec as KernelSpec
from ._message import Header as Header
from ._message import Message as Message
from ._native import NativeOutput as NativeOutput
from ._native import NativeRunner as NativeRunner
from ._packers import JSON as JSON
from ._packers import MSGPACK as MSGPACK
from ._packers import Packer as Packer
from ._packers import get_packer as get_packer
from ._protocol import ExecutePlan as ExecutePlan
from ._protocol import KernelProtocol as KernelProtocol
from ._registration import Registration as Registration
from ._runtime import open_kernel as open_kernel
from ._runtime import run_kernel as run_kernel
from ._server import KernelServer as KernelServer
from ._session import DELIMITER as DELIMITER
from ._session import Session as Session
from ._version import PROTOCOL_VERSION as PROTOCOL_VERSION
from ._version import __version__ as __version__

__all__ = [
    "DELIMITER",
    "JSON",
    "MSGPACK",
    "PROTOCOL_VERSION",
    "BaseKernel",
    "Channel",
    "Comm",
    "CommManager",
    "Completions",
    "ConfigError",
    "ConnectionInfo",
    "ExecuteContext",
    "ExecutePlan",
    "ExecutionError",
    "Header",
    "InMemoryHistory",
    "InputInterrupted",
    "InputReply",
    "InvalidMessage",
    "IsComplete",
    "KernelNotFoundError",
    "KernelProtocol",
    "KernelSDKError",
    "KernelServer",
    "KernelSpec",
    "LocalProtocolError",
    "Message",
    "NativeOutput",
    "NativeRunner",
    "Outgoing",
    "Packer",
    "ProtocolError",
    "Registration",
    "RemoteProtocolError",
    "Request",
    "Session",
    "StdinNotAllowedError",
    "Subscription",
    "TransportError",
    "__version__",
    "get_packer",
    "open_kernel",
    "run_kernel",
]
