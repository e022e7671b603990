"""Transport checks: encryption with CurveZMQ (JEP 145).

A kernel whose kernelspec declares ``"supported_encryption": ["curve"]`` is started the way
jupyter_client's ``KernelManager(transport_encryption="required")`` starts it: with a key pair
in the connection file. Then clients that lack the key, on every channel, must get nothing: a
kernel that served them would hand every cell and output to anyone who can reach its ports,
which is what the encryption was asked for to prevent.
"""

from __future__ import annotations

from typing import Any

import zmq

from .._client import KernelClient, KernelDied
from .._registry import Context, Fail, Skip, check
from ._helpers import status_ok

#: how long a client without the key listens for anything before calling it nothing
SILENCE = 1.0


def _declares_curve(kernelspec: dict[str, Any]) -> bool:
    # The same reading as jupyter_client's KernelManager._kernel_supports_curve_encryption.
    declared = (kernelspec.get("metadata") or {}).get("supported_encryption")
    if isinstance(declared, str):
        return declared.strip().lower() == "curve"
    if isinstance(declared, list | tuple):
        return "curve" in {str(item).strip().lower() for item in declared}
    return False


#: the intruders: a client without CURVE, and one that expects another server key
INTRUDERS = ("an unencrypted client", "a client with the wrong server key")


def _intruders_hear(kc: KernelClient) -> list[str]:
    """What the intruders received ("who on which channel"), while they sent signed requests
    and pings and the key holder ran a request. Listened to all at once, for ``SILENCE``."""
    sockets: dict[tuple[str, str], zmq.Socket[Any]] = {}
    try:
        for who, serverkey in zip(INTRUDERS, (None, zmq.curve_keypair()[0]), strict=True):
            for channel, kind in (
                ("shell", zmq.DEALER),
                ("control", zmq.DEALER),
                ("iopub", zmq.SUB),
                ("hb", zmq.REQ),
            ):
                sock = kc.ctx.socket(kind)
                sock.linger = 0
                # A send waits for a completed handshake, which must never come: don't block.
                sock.sndtimeo = 0
                if serverkey is not None:
                    public, secret = zmq.curve_keypair()
                    sock.curve_publickey, sock.curve_secretkey = public, secret
                    sock.curve_serverkey = serverkey
                if kind == zmq.SUB:
                    sock.setsockopt(zmq.SUBSCRIBE, b"")
                sock.connect(kc.km._make_url(channel))
                sockets[who, channel] = sock
        for (_, channel), sock in sockets.items():
            # Signed with the right HMAC key: only the transport may stop them. Queued for a
            # connection that never completes, or refused at once (zmq.Again): both fine.
            try:
                if channel in ("shell", "control"):
                    sock.send_multipart(kc.frames("kernel_info_request", {})[1])
                elif channel == "hb":
                    sock.send(b"ping")
            except zmq.Again:
                pass
        # The key holder's request makes IOPub traffic an intruder's SUB would see.
        reply, _ = kc.request("shell", "kernel_info_request", {})
        status_ok(reply, "kernel_info_request from the key holder")
        poller = zmq.Poller()
        for sock in sockets.values():
            poller.register(sock, zmq.POLLIN)
        heard = {sock for sock, _ in poller.poll(int(SILENCE * 1000))}
        return [f"{who} on {channel}" for (who, channel), s in sockets.items() if s in heard]
    finally:
        for sock in sockets.values():
            sock.close(linger=0)


@check(
    "encryption",
    "declared CurveZMQ: started with keys, plain and wrong-key clients get nothing on shell, "
    "control, iopub and heartbeat, and the kernel keeps serving the key holder",
    "JEP 145 (transport encryption); kernelspec metadata.supported_encryption",
)
def encryption(ctx: Context) -> str:
    if not _declares_curve(ctx.kernelspec):
        raise Skip("not supported: the kernelspec does not declare supported_encryption curve")
    if not zmq.has("curve"):
        raise Skip("this pyzmq's libzmq was built without CURVE (libsodium)")
    # A kernel that ignores the keys serves in plain text, and an encrypted client then hears
    # nothing from it: give up after 3 times its usual start-up, not the whole start-up limit.
    typical = ctx.typical_startup()
    startup = ctx.options.startup_timeout
    if typical is not None:
        startup = min(startup, max(5.0, 3 * typical))
    kc = KernelClient(
        ctx.kernel_name,
        timeout=ctx.options.timeout,
        startup_timeout=startup,
        spec_manager=ctx.spec_manager,
        budget=ctx.budget,
        transport_encryption="required",
    )
    ctx.clients.append(kc)  # its messages go to the schema check too
    try:
        try:
            kc.start()
        except KernelDied as exc:
            raise Fail(
                "the kernelspec declares CurveZMQ, but a client with the connection file's "
                f"keys never reached the kernel ({exc}): does it ignore curve_secretkey?"
            ) from None
        assert kc.km.curve_publickey is not None
        heard = _intruders_hear(kc)
        if heard:
            raise Fail(f"received messages: {'; '.join(heard)}")
        for channel in ("shell", "control"):
            reply, _ = kc.request(channel, "kernel_info_request", {})
            status_ok(reply, f"kernel_info_request on {channel} after the intruders")
        if not kc.heartbeat(ctx.options.hb_timeout):
            raise Fail("no encrypted heartbeat echo after the intruders")
        return (
            "started with CurveZMQ keys; unencrypted and wrong-key clients got nothing on "
            "shell, control, iopub or heartbeat; the kernel kept serving"
        )
    finally:
        kc.close()
