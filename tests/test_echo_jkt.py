"""jupyter_kernel_test's conformance suite against the installed ``echo`` kernelspec.

The echo kernel completes and inspects only words it has echoed before, and
jupyter_kernel_test runs its tests in alphabetical order on one kernel (test_completion comes
before any test executes code). So ``setUpClass`` echoes the words the samples rely on first,
which makes every sample valid whatever the test order.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jupyter_kernel_test as jkt
import pytest
from conftest import STARTUP_TIMEOUT
from jupyter_client.manager import KernelManager
from jupyter_client.session import Session
from jupyter_kernel_test.msgspec_v5 import validate_message

from kernelsdk.protocol import PROTOCOL_VERSION

SEED = "hello help"  # executed in setUpClass: these words become completable and inspectable


class EchoKernelTests(jkt.KernelTests):
    kernel_name = "echo"
    language_name = "echo"
    file_extension = ".txt"

    code_hello_world = "hello, world"

    completion_samples: ClassVar[list[dict[str, Any]]] = [
        {"text": "hel", "matches": ["hello", "help"]},
        {"text": "say hello", "matches": ["hello"]},
        {"text": "zzz", "matches": []},
    ]
    complete_code_samples: ClassVar[list[str]] = ["x", "hello, world", "a\\b", ""]
    incomplete_code_samples: ClassVar[list[str]] = ["x \\", "line one\\"]

    code_execute_result: ClassVar[list[dict[str, str]]] = [{"code": "x", "result": "x"}]
    supported_history_operations = ("tail", "range", "search")
    code_history_pattern = "x"

    code_inspect_sample = "hello"

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        reply = cls.kc.execute_interactive(SEED, timeout=STARTUP_TIMEOUT, output_hook=lambda m: 0)
        assert reply["content"]["status"] == "ok"

    # -- additions beyond jupyter_kernel_test's own tests -------------------------------------

    def test_echo_protocol_versions_agree(self) -> None:
        self.flush_channels()
        msg_id = self.kc.kernel_info()
        reply = self.kc.get_shell_msg(timeout=15)
        validate_message(reply, "kernel_info_reply", msg_id)
        assert reply["content"]["protocol_version"] == PROTOCOL_VERSION
        assert reply["header"]["version"] == PROTOCOL_VERSION
        assert self.km.kernel_spec is not None
        assert self.km.kernel_spec.kernel_protocol_version == PROTOCOL_VERSION

    def test_echo_inspect_unknown_word(self) -> None:
        self.flush_channels()
        msg_id = self.kc.inspect("never-echoed-word")
        reply = self.get_non_kernel_info_reply(timeout=15)
        validate_message(reply, "inspect_reply", msg_id)
        assert reply is not None
        assert reply["content"]["status"] == "ok"
        assert reply["content"]["found"] is False

    def test_echo_is_complete_indent(self) -> None:
        self.flush_channels()
        msg_id = self.kc.is_complete("x \\")
        reply = self.get_non_kernel_info_reply(timeout=15)
        validate_message(reply, "is_complete_reply", msg_id)
        assert reply is not None
        assert reply["content"]["status"] == "incomplete"
        assert isinstance(reply["content"].get("indent"), str)


class EchoMsgpackKernelTests(EchoKernelTests):
    """The same suite against ``echo-msgpack`` (``--packer msgpack``), the client packing with
    msgpack too (the protocol has no packer negotiation)."""

    kernel_name = "echo-msgpack"

    @classmethod
    def setUpClass(cls) -> None:
        cls.km = KernelManager(kernel_name=cls.kernel_name, session=Session(packer="msgpack"))
        cls.km.start_kernel()
        cls.kc = cls.km.client()
        cls.kc.start_channels()
        try:
            cls.kc.wait_for_ready(timeout=STARTUP_TIMEOUT)
        except RuntimeError:
            cls.kc.stop_channels()
            cls.km.shutdown_kernel(now=True)
            raise
        assert cls.kc.session.packer == "msgpack"
        reply = cls.kc.execute_interactive(SEED, timeout=STARTUP_TIMEOUT, output_hook=lambda m: 0)
        assert reply["content"]["status"] == "ok"


class EchoIopubWelcomeTests(jkt.IopubWelcomeTests):
    kernel_name = "echo"
    support_iopub_welcome = True


for _cls in (EchoKernelTests, EchoMsgpackKernelTests, EchoIopubWelcomeTests):
    pytest.mark.usefixtures("jupyter_env")(_cls)
