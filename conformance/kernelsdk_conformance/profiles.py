"""Per-kernel samples, in jupyter_kernel_test's attribute style.

A profile tells the suite how to make *your* language do things: print, fail, sleep, spin the
CPU, read input, display. Leave an attribute ``None`` (or empty) when the language cannot do
it: every check that needs it then reports "skip: not supported by the profile", never a
failure. Attributes shared with jupyter_kernel_test (``kernel_name``, ``language_name``,
``file_extension``, ``code_hello_world``, ``code_stderr``, ``code_generate_error``,
``completion_samples``, ``complete_code_samples``, ``incomplete_code_samples``,
``invalid_code_samples``, ``code_display_data``, ``code_clear_output``) mean the same thing, so
porting a JKT test class is copy-paste.

Templates take ``str.format`` fields: ``{seconds}``, ``{prompt}``, ``{display_id}``,
``{text}``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class Profile:
    """Samples for one kernel. Subclass and set the attributes your kernel supports."""

    #: the kernelspec name
    kernel_name: ClassVar[str] = ""
    #: expected ``language_info.name`` and ``file_extension`` (empty: not checked)
    language_name: ClassVar[str] = ""
    file_extension: ClassVar[str] = ""

    #: code whose stdout contains "hello, world"
    code_hello_world: ClassVar[str | None] = None
    #: code that writes something to stderr
    code_stderr: ClassVar[str | None] = None
    #: code that fails (execute_reply status "error" and an ``error`` on IOPub)
    code_generate_error: ClassVar[str | None] = None
    #: code that blocks for ``{seconds}`` seconds (interruptible, ideally)
    code_sleep: ClassVar[str | None] = None
    #: code that keeps the CPU busy for about ``{seconds}`` seconds (the heartbeat check asks
    #: for twice its echo limit, 6 s by default); ideally holding whatever the kernel's
    #: threads share (Python: the GIL), as a long call into native code does
    code_spin: ClassVar[str | None] = None
    #: code that reads one line with prompt ``{prompt}`` and prints it (leave ``{prompt}`` out
    #: if the language reads without a prompt: the prompt is then not compared; it is compared
    #: without surrounding whitespace)
    code_input: ClassVar[str | None] = None
    #: code that reads a password (input_request.password true) and prints it
    code_password: ClassVar[str | None] = None
    #: code that displays ``{text}`` (text/plain) with display id ``{display_id}``. For a
    #: language whose display call picks the id itself, leave ``{display_id}`` out: the id is
    #: then read from the display_data's ``transient.display_id``, and the same sample must
    #: also update that display (display-then-update), unless ``code_update_display`` is set
    code_display_id: ClassVar[str | None] = None
    #: code that updates display ``{display_id}`` to ``{text}`` (update_display_data); with
    #: a kernel-picked id, ``{display_id}`` is the id the kernel picked
    code_update_display: ClassVar[str | None] = None
    #: code that publishes clear_output
    code_clear_output: ClassVar[str | None] = None
    #: [{"code": ..., "mime": ...}]: code that publishes display_data with that mime type
    code_display_data: ClassVar[list[dict[str, str]]] = []
    #: {expression: text/plain expected} for user_expressions (empty: not supported)
    user_expressions: ClassVar[dict[str, str]] = {}
    #: [{"text": ..., "matches": [...]?}] for complete_request (cursor at the end)
    completion_samples: ClassVar[list[dict[str, Any]]] = []
    complete_code_samples: ClassVar[list[str]] = []
    incomplete_code_samples: ClassVar[list[str]] = []
    invalid_code_samples: ClassVar[list[str]] = []
    #: a comm target the kernel has registered (after ``code_comm_setup``, if given) whose
    #: comms answer every comm_msg with at least one comm_msg
    comm_target: ClassVar[str | None] = None
    code_comm_setup: ClassVar[str | None] = None
    #: a cell of at least two lines whose second line runs (a debugger's breakpoint goes
    #: there; lines count from 1)
    code_debug: ClassVar[str | None] = None
    #: seconds a sleep/spin sample runs in the checks that need a busy kernel
    busy_seconds: ClassVar[float] = 3.0

    def code(self, name: str, **fields: Any) -> str | None:
        """The sample ``name`` with its template fields filled in, or None."""
        template = getattr(self, name, None)
        if template is None:
            return None
        return str(template).format(**fields) if fields else str(template)


class EchoProfile(Profile):
    """kernelsdk's echo kernel: every cell is printed back and is the cell's result."""

    kernel_name = "echo"
    language_name = "echo"
    file_extension = ".txt"
    code_hello_world = "hello, world"
    completion_samples = [{"text": "hello, world he", "matches": ["hello"]}]
    complete_code_samples = ["hello"]
    incomplete_code_samples = ["hello \\"]


class Python3Profile(Profile):
    """ipykernel (kernelspec ``python3``)."""

    kernel_name = "python3"
    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('oops', file=sys.stderr)"
    code_generate_error = "raise ValueError('conformance')"
    code_debug = "a = 1\nb = a + 1\n"
    code_sleep = "import time; time.sleep({seconds})"
    # The loop keeps the GIL throughout (no thread asks for it within the raised switch
    # interval), as a long C call does: a heartbeat that needs the GIL stalls meanwhile.
    code_spin = (
        "import sys, time\n_s = sys.getswitchinterval()\nsys.setswitchinterval({seconds} + 1)\n"
        "try:\n    _t = time.monotonic() + {seconds}\n    while time.monotonic() < _t:\n"
        "        pass\nfinally:\n    sys.setswitchinterval(_s)"
    )
    code_input = "print('got:' + input({prompt!r}))"
    code_password = "import getpass; print('got:' + getpass.getpass('Password: '))"
    code_display_id = (
        "from IPython.display import display\ndisplay({text!r}, display_id={display_id!r})"
    )
    code_update_display = (
        "from IPython.display import update_display\n"
        "update_display({text!r}, display_id={display_id!r})"
    )
    code_clear_output = "from IPython.display import clear_output; clear_output()"
    code_display_data = [
        {
            "code": "from IPython.display import HTML, display; display(HTML('<b>x</b>'))",
            "mime": "text/html",
        }
    ]
    user_expressions = {"1 + 1": "2"}
    completion_samples = [{"text": "zi", "matches": ["zip"]}]
    complete_code_samples = ["1", "print('hello, world')"]
    incomplete_code_samples = ["for i in range(3):"]
    invalid_code_samples = ["1 = )"]
    comm_target: ClassVar[str | None] = "kernelsdk_conformance"
    code_comm_setup: ClassVar[str | None] = (
        "import comm as _comm\n"
        "def _conformance_target(c, msg):\n"
        "    c.on_msg(lambda m: c.send({'echo': m['content']['data']}))\n"
        "_comm.get_comm_manager().register_target("
        "'kernelsdk_conformance', _conformance_target)"
    )


class XPythonProfile(Python3Profile):
    """xeus-python (kernelspec ``xpython``)."""

    kernel_name = "xpython"
    code_comm_setup: ClassVar[str | None] = None
    comm_target: ClassVar[str | None] = None


class LuaProfile(Profile):
    """kernelsdk's Lua kernel (kernels/lua; kernelspecs ``lua54``, ``lua52``...)."""

    kernel_name = "lua54"
    language_name = "lua"
    file_extension = ".lua"
    code_hello_world = "print('hello, world')"
    code_stderr = "io.stderr:write('oops\\n')"
    code_generate_error = "error('conformance')"
    code_debug = "local a = 1\nlocal b = a + 1\n"
    # Plain Lua has no sleep: a CPU loop (the kernel interrupts any Lua loop).
    code_sleep = "local t = os.clock() + {seconds}\nwhile os.clock() < t do end"
    code_spin = "local t = os.clock() + {seconds}\nwhile os.clock() < t do end"
    code_input = "print(io.read())"
    code_display_id = "display.text({text!r}, {{display_id = {display_id!r}}})"
    code_update_display = "display.update({display_id!r}, {{['text/plain'] = {text!r}}})"
    code_clear_output = "display.clear_output()"
    code_display_data = [{"code": "display.html('<b>x</b>')", "mime": "text/html"}]
    completion_samples = [{"text": "string.fo", "matches": ["format"]}]
    complete_code_samples = ["x = 1"]
    incomplete_code_samples = ["function f()"]
    comm_target = "kernelsdk_conformance"
    code_comm_setup = (
        "jupyter.register_target('kernelsdk_conformance', function(c, data)\n"
        "  c:on_msg(function(c2, d) c2:send({echo = d}) end)\n"
        "end)"
    )


class IPyMiniProfile(Python3Profile):
    """ipymini (kernmini's Python kernel; kernelspec ``py``, installed with the package)."""

    kernel_name = "py"


class AsyncKernelProfile(Python3Profile):
    """async-kernel (kernelspec ``async``, installed with the package)."""

    kernel_name = "async"


class BashProfile(Profile):
    """bash_kernel (kernelspec ``bash``). It runs bash behind a pty, so stderr arrives as
    stdout (no ``code_stderr``), and it does not read stdin (no ``code_input``)."""

    kernel_name = "bash"
    language_name = "bash"
    file_extension = ".sh"
    code_hello_world = "echo 'hello, world'"
    code_generate_error = "false"  # a non-zero exit status is the cell's error
    code_sleep = "sleep {seconds}"
    # A CPU loop in bash, ended by timeout(1) (whose status 124 is not the cell's error).
    code_spin = "timeout {seconds} bash -c 'while :; do :; done' || true"
    code_display_id = "echo {text} | displayHTML {display_id}"
    code_update_display = "echo {text} | displayHTML {display_id}"
    code_display_data = [{"code": "echo '<b>x</b>' | displayHTML", "mime": "text/html"}]
    completion_samples = [{"text": "ech", "matches": ["echo"]}]


class CalystoSchemeProfile(Profile):
    """Calysto Scheme (metakernel; kernelspec ``calysto_scheme``). Python modules are
    reachable from Scheme (``(import "time")``), and metakernel's magics display HTML."""

    kernel_name = "calysto_scheme"
    language_name = "scheme"  # its language_info has no file_extension: not checked
    code_hello_world = '(display "hello, world")'
    code_generate_error = '(error \'conformance "on purpose")'
    code_sleep = '(import "time")\n(time.sleep {seconds})'
    code_spin = (
        "(define (conformance-spin t) (if (< (current-time) t) (conformance-spin t)))\n"
        "(conformance-spin (+ (current-time) {seconds}))"
    )
    code_input = '(display (input "{prompt}"))'
    code_display_data = [{"code": "%%html\n<b>x</b>", "mime": "text/html"}]
    completion_samples = [{"text": "(disp", "matches": ["display"]}]
    complete_code_samples = ["(+ 1 2)"]
    incomplete_code_samples = ["(define (f x)"]


PROFILES: dict[str, type[Profile]] = {
    "echo": EchoProfile,
    "python3": Python3Profile,
    "xpython": XPythonProfile,
    "lua": LuaProfile,
    "lua54": LuaProfile,
    "lua53": LuaProfile,
    "lua52": LuaProfile,
    "lua55": LuaProfile,
    # Kernels written elsewhere (docs/conformance.md, "Kernels written elsewhere").
    "py": IPyMiniProfile,
    "async": AsyncKernelProfile,
    "bash": BashProfile,
    "calysto_scheme": CalystoSchemeProfile,
}


#: the entry point group through which a kernel package declares its profile: the name is
#: the kernelspec name, the value ``module:Class``
ENTRY_POINT_GROUP = "kernelsdk_conformance.profiles"


def discovered_profile(kernel_name: str) -> type[Profile] | None:
    """The profile class an installed package declares for ``kernel_name`` in the entry point
    group ``kernelsdk_conformance.profiles``, or None. A declared object that is not a
    Profile subclass is an error (ValueError), not silently replaced by an empty profile."""
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP, name=kernel_name):
        cls = entry.load()
        if not (isinstance(cls, type) and issubclass(cls, Profile)):
            raise ValueError(
                f"entry point {kernel_name} = {entry.value!r} in {ENTRY_POINT_GROUP} "
                "is not a kernelsdk_conformance.Profile subclass"
            )
        return cls
    return None


def profile_for(kernel_name: str) -> Profile:
    """The shipped profile for ``kernel_name``; else the one an installed package declares for
    it (entry point group ``kernelsdk_conformance.profiles``); else an empty one (most checks
    skip)."""
    cls = PROFILES.get(kernel_name) or discovered_profile(kernel_name)
    if cls is not None:
        return cls()
    generic: type[Profile] = type(
        f"Profile_{kernel_name}", (Profile,), {"kernel_name": kernel_name}
    )
    return generic()


def load_profile(spec: str) -> Profile:
    """A profile from ``module:Class``, ``path/to/file.py:Class``, or a kernel name with a
    shipped or declared (entry point) profile."""
    import importlib
    import importlib.util
    from pathlib import Path

    if ":" not in spec:
        found = PROFILES.get(spec) or discovered_profile(spec)
        if found is not None:
            return found()
        raise ValueError(f"unknown profile {spec!r}: use module:Class or file.py:Class")
    where, _, name = spec.rpartition(":")
    if where.endswith(".py"):
        path = Path(where)
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        if mod_spec is None or mod_spec.loader is None:
            raise ValueError(f"cannot load {where}")
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    cls = getattr(module, name)
    profile = cls() if isinstance(cls, type) else cls
    if not isinstance(profile, Profile):
        raise ValueError(f"{spec} is not a kernelsdk_conformance.Profile")
    return profile
