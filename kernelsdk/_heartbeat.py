"""The heartbeat channel: a ROUTER socket that echoes every message back to its sender.

The echo loop is ``zmq.proxy(sock, sock)`` in a daemon thread. The loop runs inside libzmq and
pyzmq calls it without the GIL, so pings are answered while the kernel's Python code is busy,
even inside a long C call that holds the GIL. (An echo loop written in Python would stall
whenever the GIL is held.)

Design choice: the heartbeat socket lives in a *private* zmq.Context, not in the kernel's.

* Stopping is one call: ``Context.term()`` from another thread makes the blocked proxy return
  ContextTerminated; the thread closes its socket and ``term()`` returns. No control socket,
  no inproc name to invent, nothing that can be left half-connected.
* ``term()`` returns only once libzmq has fully reaped the socket, listener included, so the
  port (or ipc file) is free when ``stop()`` returns. Closing a socket of a shared context
  releases the port asynchronously, in libzmq's I/O thread, some time later.
* The heartbeat keeps its own I/O thread, so busy kernel channels do not delay pongs, and
  terminating the kernel's context does not depend on the heartbeat's lifetime.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, final

import zmq

from kernelsdk._exceptions import TransportError

__all__ = ["Heartbeat"]


def _echo(sock: zmq.Socket[Any]) -> None:
    try:
        zmq.proxy(sock, sock)  # returns only by ContextTerminated, raised by stop()
    except zmq.ContextTerminated:
        pass
    finally:
        sock.close(linger=0)  # lets Context.term() in stop() return


@final
class Heartbeat:
    """Echo server for the Jupyter heartbeat channel.

    The heartbeat always owns a private zmq context (see the module docstring). With a
    ``curve_secretkey`` (Z85) its socket is a CurveZMQ server: only clients that know the
    matching public key get pongs.
    """

    def __init__(self, endpoint: str, *, curve_secretkey: str = "") -> None:
        self._requested = endpoint
        self._curve_secretkey = curve_secretkey
        self._context: zmq.Context[Any] | None = None
        self._thread: threading.Thread | None = None
        self._endpoint: str | None = None

    def start(self) -> str:
        """Bind and start echoing; return the bound endpoint (with the real port)."""
        if self._thread is not None:
            raise RuntimeError("heartbeat already started")
        context: zmq.Context[Any] = zmq.Context(io_threads=1)
        sock = context.socket(zmq.ROUTER)
        sock.linger = 0
        if self._curve_secretkey:
            # Before bind: the mechanism applies to the connections a bind accepts later.
            sock.curve_secretkey = self._curve_secretkey.encode("ascii")
            sock.curve_server = True
        try:
            sock.bind(self._requested)
            endpoint = str(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        except zmq.ZMQError as exc:
            sock.close()
            context.term()
            raise TransportError(f"heartbeat cannot bind {self._requested!r}: {exc}") from exc
        thread = threading.Thread(
            target=_echo, args=(sock,), name="kernelsdk-heartbeat", daemon=True
        )
        # The thread inherits our signal mask: with every signal blocked there, SIGINT and
        # friends are delivered to the main thread, where they interrupt the kernel's own
        # blocking calls, instead of landing on the heartbeat and waiting for the main
        # thread's next bytecode. (Starting the thread also hands the socket over with the
        # memory barrier libzmq asks for when a socket changes threads.)
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        self._context, self._thread, self._endpoint = context, thread, endpoint
        return endpoint

    @property
    def endpoint(self) -> str:
        """The bound endpoint, e.g. ``tcp://127.0.0.1:54321``."""
        if self._endpoint is None:
            raise RuntimeError("heartbeat not started")
        return self._endpoint

    @property
    def port(self) -> int:
        """The bound port: tcp's port, or N of a Jupyter-style ``ipc://path-N`` endpoint."""
        endpoint = self.endpoint
        separator = ":" if endpoint.startswith("tcp://") else "-"
        tail = endpoint.rpartition(separator)[2]
        if not tail.isdigit():
            raise ValueError(f"no port in heartbeat endpoint {endpoint!r}")
        return int(tail)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop echoing and release the endpoint. Idempotent."""
        context, thread = self._context, self._thread
        if context is None or thread is None:
            return
        self._context = self._thread = None
        # term() interrupts the proxy (ContextTerminated), waits for the thread to close the
        # socket (it does so in a finally, with linger 0), then reaps it.
        context.term()
        thread.join()

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
