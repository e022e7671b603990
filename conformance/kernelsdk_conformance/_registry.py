"""The check registry and what a check works with.

* ``check``: the decorator that registers a check in ``CHECKS`` (the built-in ones live in the
  ``checks`` package; ``_runner.load_checks`` imports it).
* ``Skip`` / ``Fail``: how a check says it does not apply, or that the kernel broke a rule.
* ``Options``: timeouts, budgets and the fuzz budget of a run.
* ``Context``: what a check gets: the profile, the options, and kernels to talk to.

Nothing here imports the checks or the runner.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager

from ._client import Budget, KernelClient, KernelDied, KernelExitedAtStartup
from .profiles import Profile


class Skip(Exception):
    """The check does not apply (the kernel or profile does not claim the feature)."""


class Fail(Exception):
    """The kernel broke a rule; the message says which and where (with the spec reference)."""


@dataclass
class Options:
    #: seconds to wait for any one reply or idle before calling it a hang
    timeout: float = 15.0
    startup_timeout: float = 60.0
    #: how many random malformed messages the robustness check sends
    fuzz_budget: int = 50
    #: their seed (None: a new one each run; the check's message says which)
    fuzz_seed: int | None = None
    #: a heartbeat echo slower than this counts as lost (jupyter_client's time_to_dead is 1 s;
    #: the default leaves room for loaded CI machines)
    hb_timeout: float = 3.0
    #: grace between shutdown_reply and process exit (jupyter_client's shutdown_wait_time)
    shutdown_grace: float = 5.0
    #: let the kernel's own stdout/stderr through (default: discarded)
    kernel_output: bool = False
    #: seconds one check may take (kernel start-up not counted); past it, the check fails
    #: with what it was waiting for. The robustness check gets 0.1 s more per fuzzed message.
    check_budget: float = 60.0
    #: seconds a kernel may outlive its killed parent (ipykernel: about 1 s)
    parent_death_grace: float = 10.0
    #: jupyter_client's CurveZMQ policy (JEP 145) for the clients of the checks: "disabled",
    #: "auto" (keys when the kernelspec declares support) or "required"
    transport_encryption: str = "disabled"

    def budget_for(self, check_name: str) -> float:
        """The time budget of one check."""
        extra = 0.1 * max(0, self.fuzz_budget) if check_name == "robustness" else 0.0
        return self.check_budget + extra


CheckFn = Callable[["Context"], str]


@dataclass
class CheckInfo:
    name: str
    fn: CheckFn
    summary: str
    spec: str


CHECKS: dict[str, CheckInfo] = {}


def check(name: str, summary: str, spec: str = "") -> Callable[[CheckFn], CheckFn]:
    """Register a check: a function of a :class:`Context` returning a pass message, raising
    :class:`Skip` or :class:`Fail`."""

    def register(fn: CheckFn) -> CheckFn:
        CHECKS[name] = CheckInfo(name, fn, summary, spec)
        return fn

    return register


class Context:
    """What a check gets: the profile, the options, and kernels to talk to."""

    def __init__(
        self,
        kernel_name: str,
        profile: Profile,
        options: Options,
        spec_manager: KernelSpecManager | None = None,
    ) -> None:
        self.kernel_name = kernel_name
        self.profile = profile
        self.options = options
        self.spec_manager = spec_manager or KernelSpecManager()
        self._shared: KernelClient | None = None
        self.clients: list[KernelClient] = []
        self.kernel_info: dict[str, Any] | None = None
        self._start_error: str | None = None
        #: the running check's time budget, shared by all its clients
        self.budget = Budget()
        #: what busy/idle the kernel does not publish (None: not known yet), found at the
        #: first start and given to later clients so that they do not wait for it again
        self.no_status: dict[str, str] | None = None
        #: seconds the first start took until the kernel answered (None: not started yet)
        self.startup_seconds: float | None = None

    @property
    def kernelspec(self) -> dict[str, Any]:
        spec = self.spec_manager.get_kernel_spec(self.kernel_name)
        d: dict[str, Any] = spec.to_dict()
        return d

    @property
    def interrupt_mode(self) -> str:
        return str(self.kernelspec.get("interrupt_mode") or "signal")

    def new_client(self) -> KernelClient:
        for attempt in (1, 2):
            client = KernelClient(
                self.kernel_name,
                timeout=self.options.timeout,
                startup_timeout=self.options.startup_timeout,
                spec_manager=self.spec_manager,
                kernel_output=self.options.kernel_output,
                budget=self.budget,
                no_status=self.no_status,
                transport_encryption=self.options.transport_encryption,
            )
            self.clients.append(client)
            try:
                started = time.monotonic()
                client.start()
                if self.startup_seconds is None:
                    self.startup_seconds = time.monotonic() - started
                if self.no_status is None:
                    self.no_status = dict(client.no_status)
                return client
            except KernelExitedAtStartup:
                client.close()
                # jupyter_client picks "free" ports by binding and releasing them; another
                # process can take one before the kernel binds it (the race JEP 66 removes),
                # and the kernel exits. A second launch gets new ports; twice is the kernel.
                if attempt == 2:
                    raise
            except BaseException:
                client.close()  # a kernel that started but never answered must not linger
                raise
        raise AssertionError("unreachable")

    def kernel(self) -> KernelClient:
        """The shared kernel, (re)started if it is not running."""
        if self._start_error is not None:
            raise KernelDied(f"the kernel could not be started: {self._start_error}")
        if self._shared is not None and not self._shared.alive():
            self._shared.close()
            self._shared = None
        if self._shared is None:
            try:
                self._shared = self.new_client()
            except KernelDied as exc:
                self._start_error = str(exc)  # fail the other checks fast, not one by one
                raise
        return self._shared

    @contextlib.contextmanager
    def fresh(self) -> Iterator[KernelClient]:
        """A kernel of its own, for checks that kill or restart it."""
        client = self.new_client()
        try:
            yield client
        finally:
            client.close()

    def typical_startup(self) -> float | None:
        """Seconds this kernel takes to start and answer (starting the shared kernel if none
        was started yet); None if it cannot be started the usual way."""
        if self.startup_seconds is None:
            with contextlib.suppress(KernelDied):
                self.kernel()
        return self.startup_seconds

    def info(self) -> dict[str, Any]:
        """The kernel_info_reply content (asked once)."""
        if self.kernel_info is None:
            kc = self.kernel()
            reply, _ = kc.request("shell", "kernel_info_request", {})
            self.kernel_info = reply.content if isinstance(reply.content, dict) else {}
        return self.kernel_info

    def sample(self, name: str, **fields: Any) -> str:
        code = self.profile.code(name, **fields)
        if code is None:
            raise Skip(f"not supported by the profile ({name} is not set)")
        return code

    def discard_shared(self) -> None:
        """Forget the shared kernel (after a failure), so the next check gets a clean one."""
        if self._shared is not None:
            with contextlib.suppress(Exception):
                self._shared.close_sockets()
                if self._shared.alive():
                    self._shared.km.shutdown_kernel(now=True)
            self._shared = None
            self.kernel_info = None

    def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.close()
