"""Tests for the Trio driver over zmq sockets (kernelsdk._trio_zmq) and the heartbeat.

The stress tests would hang if a wakeup were lost; ``trio.fail_after`` turns that hang into
a failure. No assertion depends on how long anything takes.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import trio
import trio.testing
import zmq

from kernelsdk._exceptions import TransportError
from kernelsdk._heartbeat import Heartbeat
from kernelsdk._trio_zmq import TrioSocket

N_MESSAGES = 20_000
HWM = 10  # small, to force EAGAIN and backpressure
DEADLINE = 60  # seconds; only reached if a wakeup is lost

_names = itertools.count()


class _KeepingContext(zmq.Context[Any]):
    """Keeps its sockets alive until the fixture closes them: a test's locals die before its
    fixtures' teardown, and a socket collected unclosed is a ResourceWarning (an error here)."""

    kept: list[zmq.Socket[Any]]

    def socket(self, *args: Any, **kwargs: Any) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = super().socket(*args, **kwargs)
        self.kept.append(sock)
        return sock


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    context = _KeepingContext()
    context.kept = []
    yield context
    context.destroy(linger=0)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # ipc paths must stay under 107 bytes: pytest's tmp_path can be longer than that.
    with tempfile.TemporaryDirectory(prefix="ksdk-", dir="/tmp") as d:
        yield Path(d)


def _bind_endpoint(transport: str, tmp: Path) -> str:
    if transport == "inproc":
        return f"inproc://trio-zmq-test-{next(_names)}"
    if transport == "tcp":
        return "tcp://127.0.0.1:0"
    path = f"{tmp}/s-{next(_names)}"
    assert len(path) < 107
    return f"ipc://{path}"


def _pair(
    ctx: zmq.Context[Any], server_type: int, client_type: int, transport: str, tmp: Path
) -> tuple[zmq.Socket[Any], zmq.Socket[Any]]:
    server, client = ctx.socket(server_type), ctx.socket(client_type)
    for s in (server, client):
        s.linger = 0
        s.sndhwm = HWM
        s.rcvhwm = HWM
    if server_type == zmq.ROUTER:
        # Otherwise a ROUTER silently drops messages to a peer whose queue is full.
        server.setsockopt(zmq.ROUTER_MANDATORY, 1)
    server.bind(_bind_endpoint(transport, tmp))
    client.connect(server.getsockopt_string(zmq.LAST_ENDPOINT))
    return server, client


class WaitStats:
    """Counts the driver's slow-path waits, to show a test really exercised them."""

    def __init__(self) -> None:
        self.waits = 0
        self.backoffs = 0  # retries that slept because EAGAIN came with the flag set


@pytest.fixture
def wait_stats(monkeypatch: pytest.MonkeyPatch) -> WaitStats:
    stats = WaitStats()
    original: Callable[[TrioSocket, int, int], Awaitable[int]] = TrioSocket._wait

    async def counting_wait(self: TrioSocket, flag: int, spins: int) -> int:
        stats.waits += 1
        result = await original(self, flag, spins)
        stats.backoffs += result > 1  # the first such retry only checkpoints
        return result

    monkeypatch.setattr(TrioSocket, "_wait", counting_wait)
    return stats


# -- stress ------------------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["inproc", "tcp", "ipc"])
def test_stress_dealer_router_echo(
    ctx: zmq.Context[Any], short_tmp: Path, wait_stats: WaitStats, transport: str
) -> None:
    """Four tasks, two per socket: each socket is sent on and received on concurrently."""
    router_sock, dealer_sock = _pair(ctx, zmq.ROUTER, zmq.DEALER, transport, short_tmp)

    async def main() -> None:
        router, dealer = TrioSocket(router_sock), TrioSocket(dealer_sock)
        to_echo, echo_queue = trio.open_memory_channel[list[bytes]](HWM)
        echoed: list[int] = []

        async def client_send() -> None:
            for i in range(N_MESSAGES):
                await dealer.send_multipart([b"%d" % i, b"x" * (i % 7)])

        async def server_recv() -> None:
            async with to_echo:
                for _ in range(N_MESSAGES):
                    await to_echo.send(await router.recv_multipart())

        async def server_send() -> None:
            async with echo_queue:
                async for msg in echo_queue:
                    await router.send_multipart(msg)  # [identity, seq, padding]

        async def client_recv() -> None:
            for i in range(N_MESSAGES):
                seq, padding = await dealer.recv_multipart()
                assert (int(seq), padding) == (i, b"x" * (i % 7))
                echoed.append(i)

        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                for task in (client_send, server_recv, server_send, client_recv):
                    nursery.start_soon(task)
        assert echoed == list(range(N_MESSAGES))
        router.close()
        dealer.close()

    trio.run(main)
    assert wait_stats.waits > 0  # backpressure really happened


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["inproc", "tcp"])
def test_stress_many_tasks_share_sockets(
    ctx: zmq.Context[Any], short_tmp: Path, wait_stats: WaitStats, transport: str
) -> None:
    """Three senders on one PUSH, four receivers on one PULL: the ParkingLot path."""
    senders, receivers, per_sender = 3, 4, 4000
    total = senders * per_sender
    pull_sock, push_sock = _pair(ctx, zmq.PULL, zmq.PUSH, transport, short_tmp)

    async def main() -> None:
        push, pull = TrioSocket(push_sock), TrioSocket(pull_sock)
        seen: list[list[tuple[int, int]]] = [[] for _ in range(receivers)]
        count = 0
        all_in = trio.Event()

        async def sender(s: int) -> None:
            for i in range(per_sender):
                await push.send_multipart([b"%d" % s, b"%d" % i])

        async def receiver(r: int) -> None:
            nonlocal count
            while True:
                s, i = await pull.recv_multipart()
                seen[r].append((int(s), int(i)))
                count += 1
                if count == total:
                    all_in.set()

        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                for r in range(receivers):
                    nursery.start_soon(receiver, r)
                for s in range(senders):
                    nursery.start_soon(sender, s)
                await all_in.wait()
                nursery.cancel_scope.cancel()

        everything = sorted(m for msgs in seen for m in msgs)
        assert everything == [(s, i) for s in range(senders) for i in range(per_sender)]
        for msgs in seen:  # one socket, FIFO per sender: every receiver sees them in order
            for s in range(senders):
                mine = [i for (sender_id, i) in msgs if sender_id == s]
                assert mine == sorted(mine)
        push.close()
        pull.close()

    trio.run(main)
    assert wait_stats.waits > 0


@pytest.mark.timeout(120)
def test_stress_router_mandatory_two_peers(ctx: zmq.Context[Any], wait_stats: WaitStats) -> None:
    """ROUTER_MANDATORY with two peers: POLLOUT can be set while the addressed peer is full.

    That is the EAGAIN-with-flag-set path, which must neither spin nor hang. (inproc: its
    queues hold exactly the HWMs, where tcp's kernel buffers would absorb everything.)
    """
    per_peer = 5000
    router_sock = ctx.socket(zmq.ROUTER)
    router_sock.linger = 0
    router_sock.sndhwm = HWM
    router_sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router_sock.bind(f"inproc://trio-zmq-test-{next(_names)}")
    peers = []
    for name in (b"fast", b"slow"):
        s = ctx.socket(zmq.DEALER)
        s.linger = 0
        s.rcvhwm = HWM
        s.routing_id = name
        s.connect(router_sock.getsockopt_string(zmq.LAST_ENDPOINT))
        peers.append(s)

    async def main() -> None:
        router = TrioSocket(router_sock)
        fast, slow = (TrioSocket(s) for s in peers)
        got: dict[bytes, list[int]] = {b"fast": [], b"slow": []}

        async def receive(name: bytes, peer: TrioSocket, nap: float) -> None:
            for _ in range(per_peer):
                [seq] = await peer.recv_multipart()
                got[name].append(int(seq))
                if nap and int(seq) % 500 == 0:
                    await trio.sleep(nap)  # the router fills this peer's queue meanwhile

        async def blast() -> None:
            for i in range(per_peer):
                for name in (b"fast", b"slow"):
                    await router.send_multipart([name, b"%d" % i])

        with trio.fail_after(DEADLINE):
            for p in (fast, slow):  # introduce the peers to the router
                await p.send_multipart([b"hello"])
            for _ in range(2):
                await router.recv_multipart()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive, b"fast", fast, 0.0)
                nursery.start_soon(receive, b"slow", slow, 0.05)
                nursery.start_soon(blast)
        assert got == {b"fast": list(range(per_peer)), b"slow": list(range(per_peer))}
        for s in (router, fast, slow):
            s.close()

    trio.run(main)
    assert wait_stats.backoffs > 0


# -- checkpoints and cancellation -----------------------------------------------------------


def test_operations_are_checkpoints(ctx: zmq.Context[Any], short_tmp: Path) -> None:
    pull_sock, push_sock = _pair(ctx, zmq.PULL, zmq.PUSH, "inproc", short_tmp)

    async def main() -> None:
        push, pull = TrioSocket(push_sock), TrioSocket(pull_sock)
        with trio.testing.assert_checkpoints():
            await push.send_multipart([b"a"])  # room in the queue: the fast path
        with trio.testing.assert_checkpoints():
            assert await pull.recv_multipart() == [b"a"]  # message ready: the fast path

    trio.run(main)


def test_cancelled_before_start_consumes_nothing(ctx: zmq.Context[Any], short_tmp: Path) -> None:
    pull_sock, push_sock = _pair(ctx, zmq.PULL, zmq.PUSH, "inproc", short_tmp)

    async def main() -> None:
        push, pull = TrioSocket(push_sock), TrioSocket(pull_sock)
        await push.send_multipart([b"kept"])
        while not cast(int, pull.socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            await trio.sleep(0.001)
        with trio.CancelScope() as scope:
            scope.cancel()
            await pull.recv_multipart()
        assert scope.cancelled_caught
        with trio.fail_after(DEADLINE):
            assert await pull.recv_multipart() == [b"kept"]

    trio.run(main)


@pytest.mark.parametrize("transport", ["inproc", "tcp"])
def test_wait_readable_then_nowait_operations(
    ctx: zmq.Context[Any], short_tmp: Path, transport: str
) -> None:
    """wait_readable wakes for a message without taking it; the nowait calls never wait."""
    pull_sock, push_sock = _pair(ctx, zmq.PULL, zmq.PUSH, transport, short_tmp)

    async def main() -> None:
        push, pull = TrioSocket(push_sock), TrioSocket(pull_sock)
        with pytest.raises(trio.WouldBlock):
            pull.recv_multipart_nowait()
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pull.wait_readable)
                await trio.testing.wait_all_tasks_blocked()
                push.send_multipart_nowait([b"one"])
                push.send_multipart_nowait([b"two"])
            await pull.wait_readable()  # still readable: waiting took nothing
            assert pull.recv_multipart_nowait() == [b"one"]
            await pull.wait_readable()
            assert pull.recv_multipart_nowait() == [b"two"]
        with pytest.raises(trio.WouldBlock):
            pull.recv_multipart_nowait()

    trio.run(main)


@pytest.mark.parametrize("transport", ["inproc", "tcp"])
def test_cancelled_recv_leaves_socket_usable(
    ctx: zmq.Context[Any], short_tmp: Path, transport: str
) -> None:
    pull_sock, push_sock = _pair(ctx, zmq.PULL, zmq.PUSH, transport, short_tmp)

    async def main() -> None:
        push, pull = TrioSocket(push_sock), TrioSocket(pull_sock)
        with trio.fail_after(DEADLINE):
            for round_ in range(3):
                async with trio.open_nursery() as nursery:
                    scope = trio.CancelScope()

                    async def doomed(scope: trio.CancelScope = scope) -> None:
                        with scope:
                            await pull.recv_multipart()

                    nursery.start_soon(doomed)
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()
                assert scope.cancelled_caught
                await push.send_multipart([b"after %d" % round_])
                assert await pull.recv_multipart() == [b"after %d" % round_]

    trio.run(main)


@pytest.mark.parametrize("cancel_first", [True, False], ids=["watcher", "parked"])
def test_cancelling_one_waiter_does_not_strand_another(
    ctx: zmq.Context[Any], short_tmp: Path, cancel_first: bool
) -> None:
    """The first waiter watches the fd, the second is parked; cancel either one."""
    pull_sock, push_sock = _pair(ctx, zmq.PULL, zmq.PUSH, "tcp", short_tmp)

    async def main() -> None:
        push, pull = TrioSocket(push_sock), TrioSocket(pull_sock)
        scopes = [trio.CancelScope(), trio.CancelScope()]
        results: list[list[bytes] | None] = [None, None]

        async def waiter(k: int) -> None:
            with scopes[k]:
                results[k] = await pull.recv_multipart()

        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter, 0)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(waiter, 1)
                await trio.testing.wait_all_tasks_blocked()
                doomed, survivor = (0, 1) if cancel_first else (1, 0)
                scopes[doomed].cancel()
                await trio.testing.wait_all_tasks_blocked()
                await push.send_multipart([b"one"])
        assert scopes[doomed].cancelled_caught
        assert results[doomed] is None
        assert results[survivor] == [b"one"]

    trio.run(main)


# -- close and errors ------------------------------------------------------------------------


def test_close_wakes_every_waiter(ctx: zmq.Context[Any], short_tmp: Path) -> None:
    pull_sock, _push_sock = _pair(ctx, zmq.PULL, zmq.PUSH, "tcp", short_tmp)

    async def main() -> None:
        pull = TrioSocket(pull_sock)
        errors: list[BaseException] = []

        async def waiter() -> None:
            try:
                await pull.recv_multipart()
            except (trio.ClosedResourceError, TransportError) as exc:
                errors.append(exc)

        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                for _ in range(3):  # one watcher, two parked
                    nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                pull.close()
        assert len(errors) == 3
        assert all(isinstance(e, trio.ClosedResourceError) for e in errors)
        with pytest.raises(trio.ClosedResourceError):
            await pull.recv_multipart()
        with pytest.raises(trio.ClosedResourceError):
            await pull.send_multipart([b"x"])

    trio.run(main)


def test_close_outside_trio_run(ctx: zmq.Context[Any]) -> None:
    sock = TrioSocket(ctx.socket(zmq.DEALER))
    sock.close(linger=0)
    sock.close()  # idempotent
    assert sock.closed and sock.socket.closed


def test_zmq_errors_become_transport_errors(ctx: zmq.Context[Any], short_tmp: Path) -> None:
    rep_sock, req_sock = _pair(ctx, zmq.REP, zmq.REQ, "inproc", short_tmp)

    async def main() -> None:
        req = TrioSocket(req_sock)
        await req.send_multipart([b"ping"])
        with pytest.raises(TransportError):  # REQ must receive before it sends again (EFSM)
            await req.send_multipart([b"ping again"])
        rep_sock.close()

    trio.run(main)


# -- heartbeat ----------------------------------------------------------------------------


def _ping(endpoint: str, count: int) -> list[bytes]:
    """Ping from a fresh REQ socket; a missing pong fails (zmq.Again) instead of hanging."""
    context: zmq.Context[Any] = zmq.Context()
    req = context.socket(zmq.REQ)
    req.linger = 0
    req.rcvtimeo = DEADLINE * 1000
    req.connect(endpoint)
    try:
        pongs = []
        for i in range(count):
            req.send(b"ping %d" % i)
            pongs.append(req.recv())
        return pongs
    finally:
        req.close()
        context.term()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_heartbeat_echoes_and_releases_endpoint(short_tmp: Path, transport: str) -> None:
    requested = "tcp://127.0.0.1:0" if transport == "tcp" else f"ipc://{short_tmp}/hb-5"
    hb = Heartbeat(requested)
    endpoint = hb.start()
    assert hb.running
    if transport == "tcp":
        assert endpoint.startswith("tcp://127.0.0.1:")
        assert hb.port == int(endpoint.rsplit(":", 1)[1]) > 0
    else:
        assert endpoint == requested
        assert hb.port == 5
    assert _ping(endpoint, 500) == [b"ping %d" % i for i in range(500)]
    hb.stop()
    assert not hb.running
    hb.stop()  # idempotent

    # The endpoint is free again as soon as stop() returned.
    context: zmq.Context[Any] = zmq.Context()
    try:
        sock = context.socket(zmq.ROUTER)
        sock.linger = 0
        sock.bind(endpoint)
        sock.close()
    finally:
        context.term()
    again = Heartbeat(endpoint)
    assert again.start() == endpoint
    assert _ping(endpoint, 10) == [b"ping %d" % i for i in range(10)]
    again.stop()


@pytest.mark.timeout(60)
def test_heartbeat_stop_right_after_start_and_without_start() -> None:
    Heartbeat("tcp://127.0.0.1:0").stop()
    for _ in range(20):
        hb = Heartbeat("tcp://127.0.0.1:0")
        hb.start()
        hb.stop()
    with Heartbeat("tcp://127.0.0.1:0") as hb:
        assert _ping(hb.endpoint, 1) == [b"ping 0"]
    assert not hb.running


def test_heartbeat_bind_failure_is_transport_error(ctx: zmq.Context[Any]) -> None:
    with Heartbeat("tcp://127.0.0.1:0") as hb, pytest.raises(TransportError):
        Heartbeat(hb.endpoint).start()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_heartbeat_thread_blocks_signals() -> None:
    """SIGINT must reach the main thread, not wait on the heartbeat thread."""
    with Heartbeat("tcp://127.0.0.1:0") as hb:
        thread = next(t for t in threading.enumerate() if t.name == "kernelsdk-heartbeat")
        status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
        [mask] = [line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")]
        assert int(mask, 16) & (1 << (signal.SIGINT - 1))
        assert hb.running


@pytest.mark.timeout(60)
@pytest.mark.parametrize("busy", ["sleep", "python-loop"])
def test_heartbeat_echoes_while_main_thread_busy(busy: str) -> None:
    with Heartbeat("tcp://127.0.0.1:0") as hb:
        pongs: list[bytes] = []
        failure: list[BaseException] = []

        def pinger() -> None:
            try:
                pongs.extend(_ping(hb.endpoint, 300))
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=pinger)
        thread.start()
        spins = 0
        while thread.is_alive():  # keep the main thread busy until the pinger is done
            if busy == "sleep":
                time.sleep(0.001)
            else:
                for _ in range(10_000):  # holds the GIL between eval-loop switches
                    spins += 1
        thread.join()
        assert not failure
        assert pongs == [b"ping %d" % i for i in range(300)]


_CHILD_PINGER = r"""
import select, sys, time, zmq
ctx = zmq.Context()
req = ctx.socket(zmq.REQ)
req.linger = 0
req.rcvtimeo = 60_000
req.connect(sys.argv[1])
stamps = []
print("ready", flush=True)
while not select.select([sys.stdin], [], [], 0)[0]:
    req.send(b"ping")
    if req.recv() != b"ping":
        print("bad pong", flush=True)
        sys.exit(1)
    stamps.append(time.monotonic())
start, end = map(float, sys.stdin.readline().split())
print(sum(start < t < end for t in stamps), len(stamps), flush=True)
"""


@pytest.mark.timeout(60)
def test_heartbeat_echoes_during_gil_holding_c_call() -> None:
    """A pinger in another process gets pongs while this process sits in one long C call."""
    with Heartbeat("tcp://127.0.0.1:0") as hb:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD_PINGER, hb.endpoint],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdin is not None and child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(0.2)  # let the pinger get going (not a correctness condition)
            start = time.monotonic()
            sum(range(60_000_000))  # one C call that never releases the GIL
            end = time.monotonic()
            # Count pongs in the middle half of the call only: a thread that needs the GIL
            # can still slip one pong in as the call begins or ends.
            quarter = (end - start) / 4
            child.stdin.write(f"{start + quarter} {end - quarter}\n")
            child.stdin.flush()
            during, total = map(int, child.stdout.readline().split())
        finally:
            child.stdin.close()
            child.wait(DEADLINE)
            child.stdout.close()
        assert child.returncode == 0
        assert during > 0, f"no pong during the GIL-holding call ({total} in all)"


@pytest.mark.parametrize("transport", ["inproc", "tcp"])
@pytest.mark.parametrize("sends", ["await", "batch"])
def test_send_that_eats_the_receivers_edge_wakes_it(
    ctx: zmq.Context[Any], short_tmp: Path, transport: str, sends: str
) -> None:
    """A successful send processes libzmq's pending commands, including the "message
    arrived" signal a receiving task is waiting for on the fd. The sender must wake it; a
    batch of sends that defers the check (``wake=False``) wakes it in ``wake_waiters``."""
    router, dealer_sock = _pair(ctx, zmq.ROUTER, zmq.DEALER, transport, short_tmp)
    router.rcvtimeo = DEADLINE * 1000

    async def main() -> None:
        dealer = TrioSocket(dealer_sock)
        await dealer.send_multipart([b"hello"])
        identity, _ = router.recv_multipart()  # plain blocking zmq: no Trio involved
        got: list[list[bytes]] = []

        async def receive() -> None:
            got.append(await dealer.recv_multipart())

        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                await trio.testing.wait_all_tasks_blocked()  # receive() waits on the fd
                router.send_multipart([identity, b"for the receiver"])
                # Without yielding to Trio: let the message arrive and libzmq's command
                # throttle (about 1 ms) expire, so the next send processes the commands.
                time.sleep(0.05)
                if sends == "await":
                    await dealer.send_multipart([b"eats the edge"])
                else:
                    for part in (b"eats", b"the", b"edge"):
                        dealer.send_multipart_nowait([part], wake=False)
                    dealer.wake_waiters()
        assert got == [[b"for the receiver"]]
        dealer.close()

    trio.run(main)


def test_waiter_that_eats_the_edge_wakes_the_watcher(ctx: zmq.Context[Any]) -> None:
    """A sender that finds the queue full reads EVENTS before parking; that read processes
    the "message arrived" signal the watching receiver waits for. It must wake it."""
    name = f"inproc://trio-zmq-test-{next(_names)}"
    router, dealer_sock = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    for s in (router, dealer_sock):
        s.linger = 0
        s.sndhwm = s.rcvhwm = HWM
    dealer_sock.routing_id = b"D"
    router.bind(name)
    dealer_sock.connect(name)
    with pytest.raises(zmq.Again):  # fill the dealer's outgoing queue (the router never reads)
        for _ in range(10 * HWM):
            dealer_sock.send(b"filler", zmq.NOBLOCK)

    async def main() -> None:
        dealer = TrioSocket(dealer_sock)
        got: list[list[bytes]] = []

        async def receive() -> None:
            got.append(await dealer.recv_multipart())

        async def check_then_drain() -> None:
            await trio.testing.wait_all_tasks_blocked()  # the sender below is parked
            assert got == [[b"for the receiver"]]  # ... and the receiver was not stranded
            while True:  # make room so the parked sender can finish
                try:
                    router.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break

        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                await trio.testing.wait_all_tasks_blocked()  # receive() waits on the fd
                nursery.start_soon(check_then_drain)
                router.send_multipart([b"D", b"for the receiver"])  # inproc: signals at once
                await dealer.send_multipart([b"queue full: reads EVENTS, then parks"])
        dealer.close()

    trio.run(main)
