"""Building libkernelsdk-embed (and the Fortran module) on the user's machine, once, cached.

``python -m kernelsdk config`` calls :func:`build`. The library is cffi's embedding mode: a
shared library that starts a Python interpreter on its first call. It must start *this*
environment's interpreter (the venv that ran ``config``, with its site-packages and editable
installs), so the executable and the import path are baked into it, and the cache key covers
everything that goes in: kernelsdk's version, the interpreter, cffi, and every source file.

The cache is ``$KERNELSDK_EMBED_CACHE`` or ``$XDG_CACHE_HOME/kernelsdk/embed`` (default
``~/.cache/kernelsdk/embed``), one directory per key, made in a temporary directory and renamed
into place, under a lock file, so concurrent first calls build it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import attrs

from ..._exceptions import ConfigError
from ..._version import __version__

#: The cffi module's name: what the init code imports ``ffi`` and ``lib`` from.
MODULE_NAME: Final = "_kernelsdk_embed"
LIBRARY: Final = "kernelsdk-embed"
FORTRAN_LIBRARY: Final = "kernelsdk-fortran"
HERE: Final = Path(__file__).parent
HEADER: Final = HERE / "kernelsdk.h"
C_SOURCE: Final = HERE / "capi.c"
FORTRAN_SOURCE: Final = HERE / "kernelsdk.f90"

#: What Python may call in C, and the Python functions C calls (defined in _bridge.py).
CDEF: Final = """
typedef void (*ksdk_any_fn)(void);
typedef int (*ksdk_execute_fn)(int, const char *, void *);
typedef int (*ksdk_complete_fn)(int, const char *, int, void *);
typedef int (*ksdk_inspect_fn)(int, const char *, int, int, void *);
typedef int (*ksdk_is_complete_fn)(int, const char *, void *);
typedef void (*ksdk_interrupt_fn)(void *);

void _ksdk_set_error(const char *message);
void _ksdk_set_state(int k, int state);
void _ksdk_set_pending(int k, int pending);
int _ksdk_max_handles(void);
int _ksdk_set_mpi(int k, intptr_t bcast, intptr_t comm, intptr_t datatype, int handle_size,
                  int root);
void _ksdk_set_mpi_claimed(int k, int64_t claimed);

extern "Python" int _ksdk_py_ready(void);
extern "Python" int _ksdk_py_create(const char *, const char *);
extern "Python" int _ksdk_py_set_option(int, const char *, const char *);
extern "Python" int _ksdk_py_on(int, int, ksdk_any_fn, void *);
extern "Python" int _ksdk_py_expose(int, const char *, void *, const char *, int,
                                    const int64_t *, int, int);
extern "Python" int _ksdk_py_lifecycle(int, int, double);
extern "Python" const char *_ksdk_py_connection_file(int);
extern "Python" int _ksdk_py_output(int, int, const char *, const char *, const char *);
extern "Python" int _ksdk_py_input(int, const char *, int, char *, int);
extern "Python" int _ksdk_py_request_int(int, int, int, int);
extern "Python" int _ksdk_py_mpi_poll(int, int64_t);
"""

#: Runs in the embedded interpreter on the library's first call. {path} and {sites} are
#: filled in: the builder's import path and site directories, for an interpreter that did not
#: find the venv by itself (a host that had already started Python, a PYTHONPATH install).
INIT_CODE: Final = """
import site
import sys

for _dir in {sites!r}:
    if _dir not in sys.path:
        site.addsitedir(_dir)
for _dir in {path!r}:
    if _dir not in sys.path:
        sys.path.append(_dir)
if not sys.argv or not sys.argv[0]:
    try:
        with open("/proc/self/cmdline", "rb") as _f:
            sys.argv = [a.decode(errors="replace") for a in _f.read().split(b"\\0") if a]
    except OSError:
        sys.argv = [""]

from {module} import ffi, lib
from kernelsdk.embed._capi._bridge import install

install(ffi, lib)
"""


@attrs.frozen
class Built:
    """Where a built library and its header are."""

    root: Path

    @property
    def include_dir(self) -> Path:
        return self.root / "include"

    @property
    def lib_dir(self) -> Path:
        return self.root / "lib"

    @property
    def library(self) -> Path:
        return self.lib_dir / f"lib{LIBRARY}.so"


def cache_root() -> Path:
    explicit = os.environ.get("KERNELSDK_EMBED_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kernelsdk" / "embed"


def import_path() -> list[str]:
    """The builder's import path to bake in, without the current directory (which would make
    the library depend on where ``config`` was run)."""
    cwd = os.getcwd()
    return [p for p in sys.path if p and os.path.isabs(p) and p != cwd and os.path.isdir(p)]


def site_dirs() -> list[str]:
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return [d for d in dirs if os.path.isdir(d)]


def c_compiler() -> list[str]:
    """The C compiler: ``$CC``, else the one Python was built with, else cc or gcc.

    Raises:
        ConfigError: ``$CC`` names no program, or there is no compiler at all.
    """
    _chosen_exists("CC")
    for candidate in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc"):
        if not candidate:
            continue
        words = shlex.split(candidate)
        if words and shutil.which(words[0]):
            return words
    raise ConfigError(
        "no C compiler found to build the kernelsdk embedding library: install one "
        "(apt-get install gcc, or Xcode's command line tools) or set CC"
    )


def _chosen_exists(variable: str) -> None:
    """A compiler the user chose (``$CC``, ``$FC``) is used or refused, never passed over."""
    chosen = os.environ.get(variable, "")
    words = shlex.split(chosen)
    if words and not shutil.which(words[0]):
        raise ConfigError(f"{variable}={chosen!r}: no such program (unset {variable} or fix it)")


def fortran_compiler() -> list[str]:
    _chosen_exists("FC")
    for candidate in (os.environ.get("FC"), "gfortran"):
        if candidate and (words := shlex.split(candidate)) and shutil.which(words[0]):
            return words
    raise ConfigError(
        "no Fortran compiler found to build the kernelsdk Fortran module: install gfortran "
        "(apt-get install gfortran) or set FC"
    )


def _python_link() -> tuple[str, str]:
    """libpython's directory and link name; a clear error for a Python without one."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    ldlibrary = sysconfig.get_config_var("LDLIBRARY") or ""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not ldlibrary.endswith(".so"):
        raise ConfigError(
            f"this Python ({sys.executable}) has no shared libpython, which a C host needs to "
            "embed it; use a Python built with --enable-shared (pyenv: "
            'PYTHON_CONFIGURE_OPTS="--enable-shared" pyenv install ...; Debian: libpython3-dev)'
        )
    name = ldlibrary.removeprefix("lib").removesuffix(".so")
    return libdir, name


def _key(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _cffi() -> Any:
    """cffi, which builds the library (the ``embed`` extra).

    Raises:
        ConfigError: it is not installed.
    """
    try:
        import cffi
    except ImportError:
        raise ConfigError(
            "the C library is built with cffi, which is not installed: "
            "pip install 'kernelsdk[embed]' (or pip install cffi)"
        ) from None
    return cffi


def library_key() -> str:
    cffi = _cffi()
    return _key(
        __version__,
        sys.executable,
        sys.version,
        cffi.__version__,
        repr(import_path()),
        repr(site_dirs()),
        CDEF,
        INIT_CODE,
        HEADER.read_text(),
        C_SOURCE.read_text(),
        Path(__file__).read_text(),  # how it is compiled
    )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build(*, verbose: bool = False) -> Built:
    """The library for this environment: built on the first call, then found in the cache.

    Raises:
        ConfigError: no C compiler, no shared libpython, or the compiler failed (its output
            is in the message).
    """
    root = cache_root()
    built = Built(root / library_key())
    if built.library.exists():
        return built
    with _locked(root / f"{built.root.name}.lock"):
        if built.library.exists():  # another process built it while we waited
            return built
        staging = Path(tempfile.mkdtemp(prefix=f"{built.root.name}.", dir=root))
        try:
            _build_into(staging, verbose=verbose)
            os.replace(staging, built.root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return built


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _build_into(root: Path, *, verbose: bool) -> None:
    cffi = _cffi()
    compiler = c_compiler()
    libdir, pylib = _python_link()
    (root / "include").mkdir()
    (root / "lib").mkdir()
    (root / "src").mkdir()
    shutil.copy(HEADER, root / "include" / HEADER.name)

    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    preamble = (
        f"#define KSDK_PYTHON_EXECUTABLE {_c_string(sys.executable)}\n"
        "typedef void (*ksdk_any_fn)(void);\n" + C_SOURCE.read_text()
    )
    ffi.set_source(MODULE_NAME, preamble)
    ffi.embedding_init_code(
        INIT_CODE.format(path=import_path(), sites=site_dirs(), module=MODULE_NAME)
    )
    source = root / "src" / f"{MODULE_NAME}.c"
    with contextlib.redirect_stdout(sys.stderr if verbose else io.StringIO()):
        ffi.emit_c_code(str(source))  # it says "generating ..." on stdout, which config owns

    library = root / "lib" / f"lib{LIBRARY}.so"
    command = [
        *compiler,
        "-shared",
        "-fPIC",
        "-O2",
        f"-I{root / 'include'}",
        f"-I{sysconfig.get_paths()['include']}",
        str(source),
        "-o",
        str(library),
        f"-Wl,-soname,lib{LIBRARY}.so",
        f"-L{libdir}",
        f"-l{pylib}",
        f"-Wl,-rpath,{libdir}",
        "-lpthread",
    ]
    _run(command, "the kernelsdk embedding library", verbose=verbose)


def _run(command: list[str], what: str, *, verbose: bool) -> None:
    if verbose:
        print(shlex.join(command), file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConfigError(
            f"building {what} failed ({shlex.join(command)}):\n{done.stdout}{done.stderr}"
        )


def build_fortran(built: Built, *, verbose: bool = False) -> Path:
    """The Fortran module (``kernelsdk.mod``, ``libkernelsdk-fortran.a``) for this compiler,
    next to the library; its directory. ``.mod`` files are specific to a compiler version."""
    compiler = fortran_compiler()
    version = subprocess.run(
        [*compiler, "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[:1]
    target = built.root / f"fortran-{_key(*compiler, *version, FORTRAN_SOURCE.read_text())}"
    if (target / f"lib{FORTRAN_LIBRARY}.a").exists():
        return target
    with _locked(built.root / f"{target.name}.lock"):
        if (target / f"lib{FORTRAN_LIBRARY}.a").exists():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=built.root))
        try:
            obj = staging / "kernelsdk.o"
            _run(
                [
                    *compiler,
                    "-c",
                    "-O2",
                    "-fPIC",
                    f"-J{staging}",
                    str(FORTRAN_SOURCE),
                    "-o",
                    str(obj),
                ],
                "the kernelsdk Fortran module",
                verbose=verbose,
            )
            _run(
                ["ar", "rcs", str(staging / f"lib{FORTRAN_LIBRARY}.a"), str(obj)],
                "the kernelsdk Fortran library",
                verbose=verbose,
            )
            obj.unlink()
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def flags(
    *,
    cflags: bool = False,
    ldflags: bool = False,
    fflags: bool = False,
    include_dir: bool = False,
    lib_dir: bool = False,
    verbose: bool = False,
) -> list[str]:
    """What ``python -m kernelsdk config`` prints, in the order asked for by the options'
    kind: compile flags, then link flags (the Fortran library before the C one)."""
    built = build(verbose=verbose)
    fortran = build_fortran(built, verbose=verbose) if fflags else None
    words: list[str] = []
    if include_dir:
        words.append(str(built.include_dir))
    if lib_dir:
        words.append(str(built.lib_dir))
    if cflags:
        words.append(f"-I{built.include_dir}")
    if fortran is not None:
        words.append(f"-I{fortran}")
    if ldflags:
        if fortran is not None:
            words += [f"-L{fortran}", f"-l{FORTRAN_LIBRARY}"]
        words += [f"-L{built.lib_dir}", f"-Wl,-rpath,{built.lib_dir}", f"-l{LIBRARY}"]
    return words
