"""The one exception hierarchy of kernelsdk.

::

    KernelSDKError
    ├── ProtocolError
    │   ├── LocalProtocolError    our side tried to send something the protocol forbids
    │   └── RemoteProtocolError   a client sent something malformed (bad signature, framing, JSON)
    ├── TransportError            the socket layer failed (bind, send, receive)
    ├── ConfigError (ValueError)  a connection file, kernelspec or option is unusable
    ├── KernelNotFoundError (ConfigError)  no kernel of that name is installed
    ├── StdinNotAllowedError      ``ctx.input()`` called for a request with ``allow_stdin=False``
    └── ExecutionError            the user's code failed: becomes an ``error`` reply

    KeyboardInterrupt
    └── InputInterrupted          a pending ``ctx.input``/``input_from_thread`` was cut off: its
                                  execution was interrupted, ended, or the kernel shuts down

Remote garbage never escapes as an exception: the protocol core turns a
:class:`RemoteProtocolError` into an :class:`~kernelsdk.protocol.InvalidMessage` event at the
receive boundary, which the runtime logs and drops.
"""

from __future__ import annotations


class KernelSDKError(Exception):
    """Base class of every error kernelsdk raises."""


class ProtocolError(KernelSDKError):
    """A message broke the Jupyter messaging protocol."""


class LocalProtocolError(ProtocolError):
    """This kernel tried to send something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """A peer sent a malformed, unsigned, tampered or replayed message."""


class TransportError(KernelSDKError):
    """The transport (ZeroMQ sockets) failed."""


class ConfigError(KernelSDKError, ValueError):
    """A connection file, kernelspec or option cannot be used."""


class KernelNotFoundError(ConfigError):
    """No kernel with that name is installed (through the ``kernelsdk.kernels`` entry points)."""


class StdinNotAllowedError(KernelSDKError):
    """The frontend did not allow stdin for this request (``allow_stdin`` was false)."""


class InputInterrupted(KeyboardInterrupt):
    """The input a worker thread waits for (``ctx.input_from_thread``) will never come.

    Raised at once when the execution that asked is interrupted or has ended, or when the
    kernel shuts down; the ``input_request`` is dropped, and a late ``input_reply`` to it is
    ignored. A ``KeyboardInterrupt``, as Ctrl-C at Python's ``input()`` is, so that an
    interpreter's ``except Exception`` does not swallow it. (In a Trio task, ``await
    ctx.input()`` of an interrupted execution raises :class:`trio.Cancelled` instead.)
    """


class ExecutionError(KernelSDKError):
    """Raise from a ``do_*`` hook to report an error in the user's code.

    The kernel turns it into an ``error`` output and an error reply with exactly these
    fields, e.g. ``ExecutionError("LuaError", "attempt to call a nil value", [traceback...])``.
    Any other exception a hook raises is reported the same way, with the Python exception's
    type, message and traceback.
    """

    def __init__(self, ename: str, evalue: str, traceback: list[str] | None = None) -> None:
        super().__init__(f"{ename}: {evalue}")
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback if traceback is not None else [f"{ename}: {evalue}"]
