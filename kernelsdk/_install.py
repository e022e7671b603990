"""Installing, finding and removing the kernelspecs of kernels built on kernelsdk.

A kernelspec written here launches ``python -m kernelsdk run NAME -f {connection_file}``; that
argv is also how :func:`installed` recognises the specs kernelsdk wrote.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from ._entrypoints import class_spec, load_kernel
from ._exceptions import ConfigError, KernelNotFoundError
from ._kernelspec import KernelSpec

#: Valid kernelspec directory names (jupyter_client's rule; compared lower-cased).
KERNEL_NAME_RE = re.compile(r"^[a-z0-9._-]+$", re.IGNORECASE)

_RUN = ["-m", "kernelsdk", "run"]

#: What every kernelsdk kernel declares in its kernelspec: it serves CurveZMQ when the
#: connection file has keys (JEP 145). jupyter_client 8.9+ provisions keys only for kernelspecs
#: whose ``metadata.supported_encryption`` holds "curve" (ipykernel writes this same list).
SPEC_METADATA: Final = {"supported_encryption": ["curve"]}


#: The jupyter_client provisioner (entry-point name) of the kernelspecs that attach to an
#: embedded kernel (:func:`install_attach`, :mod:`kernelsdk.embed._attach`).
ATTACH_PROVISIONER: Final = "kernelsdk-attach"

#: What :func:`kernel_of` says an attach kernelspec runs: the option that installed it.
ATTACH_KERNEL_PREFIX: Final = "--attach "

# argv of an attach kernelspec. jupyter_client never runs it (the provisioner connects to the
# running kernel instead), but a kernelspec must have one: if something runs it anyway (a
# client without provisioners), it says why it cannot work.
_ATTACH_PLACEHOLDER: Final = (
    "import sys; sys.exit('this kernelspec attaches to the running embedded kernel '"
    " + repr(sys.argv[1]) + ' through the kernelsdk-attach provisioner of jupyter_client >= 7;'"
    " ' it has no program to run')"
)


def validate_kernel_name(name: str) -> str:
    """``name`` lower-cased, or :class:`ConfigError` if it cannot be a kernelspec directory."""
    if not KERNEL_NAME_RE.match(name):
        raise ConfigError(
            f"invalid kernel name {name!r}: use only letters, digits, '.', '_' and '-'"
        )
    return name.lower()


@attrs.frozen
class MPILaunch:
    """How an MPI variant of a kernel is launched: ``LAUNCHER -n RANKS [ARGS] python ...``.

    ``launcher`` is ``mpiexec``, ``srun`` or a path; ``output`` is a
    :class:`kernelsdk.mpi.OutputMode` value.
    """

    ranks: int
    launcher: str = "mpiexec"
    launcher_args: tuple[str, ...] = ()
    output: str = "all"

    def argv_prefix(self) -> list[str]:
        """The launcher's part of argv, with the launcher's absolute path.

        Raises:
            ConfigError: no such launcher, or mpi4py is not installed.
        """
        if self.ranks < 1:
            raise ConfigError(f"--mpi needs at least 1 rank, not {self.ranks}")
        if importlib.util.find_spec("mpi4py") is None:
            raise ConfigError("MPI kernels need mpi4py: pip install mpi4py mpich")
        # The launcher next to this Python first (the mpich wheel puts mpiexec there), so the
        # kernel does not depend on the PATH that Jupyter happens to be started with.
        beside = Path(sys.executable).parent / self.launcher  # a path stays itself
        found = str(beside) if beside.is_file() else shutil.which(self.launcher)
        if found is None:
            raise ConfigError(
                f"no MPI launcher {self.launcher!r} found next to {sys.executable} or on PATH; "
                "pip install mpich mpi4py, load your site's MPI module, or give --launcher PATH"
            )
        return [os.path.abspath(found), "-n", str(self.ranks), *self.launcher_args]


#: The jupyter_client provisioner (entry-point name) of the kernelspecs whose kernel runs as a
#: Slurm job (:class:`SlurmLaunch`, :mod:`kernelsdk.slurm`).
SLURM_PROVISIONER: Final = "kernelsdk-slurm"


@attrs.frozen
class SlurmLaunch:
    """How a kernel runs as a Slurm job through the ``kernelsdk-slurm`` provisioner.

    The options become sbatch's (``--partition``, ``--time``, ``--nodes``, ``--account``, then
    ``sbatch_args`` as given); an MPI variant adds ``--ntasks`` of its ranks. Times are in
    seconds; ``None`` keeps the provisioner's default.
    """

    partition: str | None = None
    time: str | None = None
    nodes: str | None = None
    account: str | None = None
    sbatch_args: tuple[str, ...] = ()
    idle_timeout: float | None = None
    start_timeout: float | None = None
    walltime_warning: float | None = None

    def provisioner(self, ranks: int | None) -> dict[str, Any]:
        """The kernelspec's ``metadata.kernel_provisioner``."""
        args = [
            f"--{option}={value}"
            for option, value in (
                ("partition", self.partition),
                ("time", self.time),
                ("nodes", self.nodes),
                ("account", self.account),
            )
            if value
        ]
        if ranks is not None:
            args.append(f"--ntasks={ranks}")
        config: dict[str, Any] = {"sbatch_args": [*args, *self.sbatch_args]}
        for name in ("idle_timeout", "start_timeout", "walltime_warning"):
            value = getattr(self, name)
            if value is not None:
                if value < 0:
                    raise ConfigError(f"--{name.replace('_', '-')} cannot be negative")
                config[name] = float(value)
        return {"provisioner_name": SLURM_PROVISIONER, "config": config}


def kernelspec_for(
    name: str,
    cls: type[Any],
    *,
    display_name: str | None = None,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    mpi: MPILaunch | None = None,
    slurm: SlurmLaunch | None = None,
) -> KernelSpec:
    """The kernelspec that runs kernel ``name`` (an entry-point name or ``module:Class``).

    ``display_name`` defaults to the class's ``display_name``, else its ``implementation``
    title-cased, else ``name``. ``env`` is merged over the class's ``kernelspec_env``. With
    ``mpi``, the kernel runs on every rank of an MPI job (see :mod:`kernelsdk.mpi`). With
    ``slurm``, the ``kernelsdk-slurm`` provisioner runs it as a Slurm job (see
    :mod:`kernelsdk.slurm`). The metadata declares CurveZMQ support (:data:`SPEC_METADATA`),
    and ``debugger: true`` for a kernel with a ``debugger_class``.
    """
    argv = [sys.executable, *_RUN, name, "-f", "{connection_file}"]
    if ":" not in name and (spec := class_spec(cls)) is not None:
        argv += ["--class", spec]  # a faster start: no entry-point scan (see _entrypoints)
    argv += extra_args
    if mpi is not None:
        argv = [*mpi.argv_prefix(), *argv, "--mpi", "--mpi-output", mpi.output]
    language_info = getattr(cls, "language_info", None) or {}
    language = str(language_info.get("name") or _implementation(cls) or name)
    if display_name is None:
        display_name = getattr(cls, "display_name", None)
    if not display_name:
        implementation = _implementation(cls)
        display_name = implementation.title() if implementation else name
    if slurm is not None:
        display_name = f"{display_name} (Slurm" + (
            f", {mpi.ranks} ranks)" if mpi is not None else ")"
        )
    elif mpi is not None:
        display_name = f"{display_name} (MPI, {mpi.ranks} ranks)"
    metadata: dict[str, Any] = {name: list(value) for name, value in SPEC_METADATA.items()}
    if slurm is not None:
        metadata["kernel_provisioner"] = slurm.provisioner(None if mpi is None else mpi.ranks)
    if getattr(cls, "debugger_class", None) is not None:
        # JupyterLab offers its debugger for a kernelspec only when this is set (and for a
        # kernel whose kernelspec it cannot find).
        metadata["debugger"] = True
    merged_env = {str(k): str(v) for k, v in (getattr(cls, "kernelspec_env", None) or {}).items()}
    merged_env.update(env or {})
    return KernelSpec(
        argv=argv,
        display_name=str(display_name),
        language=language,
        # MPI variants interrupt by message: a signal to the launcher kills or aborts jobs;
        # so do Slurm jobs (the kernel runs on another host, and srun eats the first SIGINT).
        interrupt_mode="message"
        if mpi is not None or slurm is not None
        else getattr(cls, "interrupt_mode", None) or "signal",
        env=merged_env,
        metadata=metadata,
    )


def attach_kernelspec(
    name: str, *, display_name: str | None = None, language: str = "python"
) -> KernelSpec:
    """The kernelspec that attaches to the newest live embedded kernel called ``name``.

    Its ``metadata.kernel_provisioner`` names the ``kernelsdk-attach`` provisioner with
    ``config: {"name": name}``; ``display_name`` defaults to ``"Attach: <name>"``. Interrupts
    go to the provisioner (``interrupt_mode`` ``signal``), which sends them as messages and
    never signals the host.

    Raises:
        ConfigError: ``name`` is not a valid embedded kernel name.
    """
    from .embed._files import validate_name

    try:
        validate_name(name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return KernelSpec(
        argv=[sys.executable, "-c", _ATTACH_PLACEHOLDER, name],
        display_name=display_name or f"Attach: {name}",
        language=language,
        interrupt_mode="signal",
        metadata={
            "kernel_provisioner": {"provisioner_name": ATTACH_PROVISIONER, "config": {"name": name}}
        },
    )


def install_attach(
    name: str,
    *,
    user: bool = False,
    sys_prefix: bool = False,
    prefix: str | os.PathLike[str] | None = None,
    kernel_name: str | None = None,
    display_name: str | None = None,
    language: str = "python",
    replace: bool = False,
) -> Path:
    """Install the kernelspec that attaches to the embedded kernel ``name``
    (:func:`attach_kernelspec`); return the spec directory, ``attach-<name>`` by default.

    Raises:
        ConfigError: invalid name, the spec exists and ``replace`` is false, or the location
            cannot be written.
    """
    target = kernels_dir(user=user, sys_prefix=sys_prefix, prefix=prefix)
    spec = attach_kernelspec(name, display_name=display_name, language=language)
    kernel_name = validate_kernel_name(kernel_name or f"attach-{name}")
    return _install_spec(target, kernel_name, spec, [], replace=replace)


def _implementation(cls: type[Any]) -> str | None:
    """The class's ``implementation`` unless it is only the SDK base class's default."""
    for klass in cls.__mro__:
        if "implementation" in vars(klass):
            if klass.__module__.startswith("kernelsdk."):
                return None
            value = vars(klass)["implementation"]
            return value if isinstance(value, str) and value else None
    return None


def kernels_dir(
    *, user: bool = False, sys_prefix: bool = False, prefix: str | os.PathLike[str] | None = None
) -> Path:
    """The ``kernels`` directory of an install location, like ``jupyter kernelspec install``:
    the user data dir, ``sys.prefix``, ``prefix``, or by default the system-wide one."""
    from jupyter_core import paths

    if sum((bool(user), bool(sys_prefix), prefix is not None)) > 1:
        raise ConfigError("choose at most one of --user, --sys-prefix and --prefix")
    if user:
        base = Path(paths.jupyter_data_dir())
    elif sys_prefix:
        base = Path(sys.prefix) / "share" / "jupyter"
    elif prefix is not None:
        base = Path(prefix).expanduser().absolute() / "share" / "jupyter"
    else:
        base = Path(paths.SYSTEM_JUPYTER_PATH[0])
    return base / "kernels"


def install(
    name: str,
    *,
    user: bool = False,
    sys_prefix: bool = False,
    prefix: str | os.PathLike[str] | None = None,
    kernel_name: str | None = None,
    display_name: str | None = None,
    env: Mapping[str, str] | None = None,
    replace: bool = False,
    mpi: MPILaunch | None = None,
    slurm: SlurmLaunch | None = None,
) -> Path:
    """Install the kernelspec of kernel ``name``; return the spec directory.

    Writes ``<kernels dir>/<kernel_name>/kernel.json`` plus every regular file of the class's
    ``resources`` directory (logos, ``kernel.js``). ``kernel_name`` defaults to ``name`` (or,
    for a ``module:Class`` spec, to the class's ``implementation``), with ``-mpiN`` appended
    for an MPI variant of N ranks, and ``-slurm`` (before ``-mpiN``) for a kernel run as a Slurm
    job (``slurm``).

    Raises:
        KernelNotFoundError: no kernel ``name``.
        ConfigError: invalid name, the spec exists and ``replace`` is false, or the location
            cannot be written.
    """
    target = kernels_dir(user=user, sys_prefix=sys_prefix, prefix=prefix)
    if kernel_name is not None:
        kernel_name = validate_kernel_name(kernel_name)
    cls = load_kernel(name)
    if kernel_name is None:
        kernel_name = name
        if ":" in name:
            kernel_name = _implementation(cls) or ""
            if not KERNEL_NAME_RE.match(kernel_name):
                raise ConfigError(f"cannot derive a kernel name from {name!r}; give --name")
        if slurm is not None:
            kernel_name = f"{kernel_name}-slurm"
        if mpi is not None:
            kernel_name = f"{kernel_name}-mpi{mpi.ranks}"
        kernel_name = validate_kernel_name(kernel_name)
    spec = kernelspec_for(name, cls, display_name=display_name, env=env, mpi=mpi, slurm=slurm)
    return _install_spec(target, kernel_name, spec, _resource_files(cls), replace=replace)


def _install_spec(
    target: Path, kernel_name: str, spec: KernelSpec, resources: list[Path], *, replace: bool
) -> Path:
    dest = target / kernel_name
    if (dest.exists() or dest.is_symlink()) and not replace:
        raise ConfigError(
            f"kernelspec {kernel_name!r} already exists at {dest}; use --replace to overwrite it"
        )
    try:
        _write_spec_dir(target, dest, spec, resources)
    except OSError as exc:
        raise ConfigError(_write_error(target, exc)) from None
    return dest


def _resource_files(cls: type[Any]) -> list[Path]:
    resources = getattr(cls, "resources", None)
    if resources is None:
        return []
    directory = Path(os.fspath(resources))
    if not directory.is_dir():
        raise ConfigError(
            f"{cls.__module__}.{cls.__qualname__}.resources is not a directory: {directory}"
        )
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name != "kernel.json")


def _write_spec_dir(target: Path, dest: Path, spec: KernelSpec, resources: list[Path]) -> None:
    """Build the spec in a temporary sibling directory, then move it into place, so a failure
    never leaves a half-written kernelspec behind."""
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", suffix=".tmp", dir=target))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; kernelspecs are read by every user
        for src in resources:
            shutil.copyfile(src, tmp / src.name)
        (tmp / "kernel.json").write_text(
            json.dumps(spec.to_dict(), indent=1) + "\n", encoding="utf-8"
        )
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_error(target: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    where = exc.filename or target
    message = f"cannot write kernelspec into {target}: {reason}: {where}"
    if isinstance(exc, PermissionError):
        message += " (use --user, --sys-prefix or --prefix DIR to install somewhere writable)"
    return message


# -- finding and removing -----------------------------------------------------------------------


def kernel_of(spec_dir: str | os.PathLike[str]) -> str | None:
    """The kernel (entry-point name or spec) a kernelsdk kernelspec runs, or ``None`` if the
    directory holds no kernelspec written by kernelsdk. For an attach kernelspec
    (:func:`install_attach`) it is ``"--attach <name>"``."""
    try:
        with open(Path(spec_dir) / "kernel.json", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if (attach := _attach_name(data)) is not None:
        return ATTACH_KERNEL_PREFIX + attach
    argv = data.get("argv") if isinstance(data, dict) else None
    if not isinstance(argv, list):
        return None
    for i in range(len(argv) - len(_RUN)):
        if argv[i : i + len(_RUN)] == _RUN:
            kernel = argv[i + len(_RUN)]
            return kernel if isinstance(kernel, str) else None
    return None


def _attach_name(data: object) -> str | None:
    """The embedded kernel's name in an attach kernelspec's ``kernel.json`` data, else None."""
    metadata = data.get("metadata") if isinstance(data, dict) else None
    provisioner = metadata.get("kernel_provisioner") if isinstance(metadata, dict) else None
    if not isinstance(provisioner, dict):
        return None
    if provisioner.get("provisioner_name") != ATTACH_PROVISIONER:
        return None
    config = provisioner.get("config")
    name = config.get("name") if isinstance(config, dict) else None
    return name if isinstance(name, str) else None


def search_dirs() -> list[Path]:
    """Where Jupyter looks for kernelspecs, in order (jupyter_client's own list if available)."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        from jupyter_core.paths import jupyter_path

        return [Path(d) for d in jupyter_path("kernels")]
    return [Path(d) for d in KernelSpecManager().kernel_dirs]


def installed(kernel_dirs: Iterable[str | os.PathLike[str]] | None = None) -> dict[str, Path]:
    """Kernelspecs written by kernelsdk that Jupyter sees, by kernelspec name.

    ``kernel_dirs`` (default: Jupyter's search path) are searched in order; the first spec of a
    name wins, as in Jupyter, even when it is not one of ours.
    """
    dirs = None if kernel_dirs is None else [os.fspath(d) for d in kernel_dirs]
    try:
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        specs = {name: path for name, path, _ in scan(dirs, first_only=True)}
    else:
        ksm = KernelSpecManager() if dirs is None else KernelSpecManager(kernel_dirs=dirs)
        specs = {name: Path(path) for name, path in ksm.find_kernel_specs().items()}
    return {name: path for name, path in sorted(specs.items()) if kernel_of(path) is not None}


def scan(
    kernel_dirs: Iterable[str | os.PathLike[str]] | None = None, *, first_only: bool = False
) -> list[tuple[str, Path, str | None]]:
    """Every kernelspec directory in ``kernel_dirs`` (default :func:`search_dirs`), in search
    order, as ``(kernelspec name, directory, kernel run by kernelsdk or None)``."""
    dirs = search_dirs() if kernel_dirs is None else [Path(d) for d in kernel_dirs]
    found: list[tuple[str, Path, str | None]] = []
    seen: set[str] = set()
    for d in dirs:
        try:
            entries = sorted(d.iterdir())
        except OSError:
            continue
        for entry in entries:
            name = entry.name.lower()
            if not KERNEL_NAME_RE.match(name) or not (entry / "kernel.json").is_file():
                continue
            if first_only and name in seen:
                continue
            seen.add(name)
            found.append((name, entry, kernel_of(entry)))
    return found


def remove(
    names: Iterable[str],
    *,
    user: bool = False,
    sys_prefix: bool = False,
    prefix: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Remove kernelspecs written by kernelsdk; return the directories removed.

    With a location (``user``, ``sys_prefix`` or ``prefix``) only that location is searched;
    otherwise every copy of each name on Jupyter's search path is removed. Nothing is removed
    unless every name is found. Specs not written by kernelsdk are never removed.
    """
    names = [validate_kernel_name(n) for n in names]
    if user or sys_prefix or prefix is not None:
        dirs = [kernels_dir(user=user, sys_prefix=sys_prefix, prefix=prefix)]
    else:
        dirs = search_dirs()
    specs = scan(dirs)
    to_remove: list[Path] = []
    for name in dict.fromkeys(names):
        matches = [(path, kernel) for n, path, kernel in specs if n == name]
        ours = [path for path, kernel in matches if kernel is not None]
        if not ours:
            where = ", ".join(str(d) for d in dirs)
            if matches:
                raise ConfigError(
                    f"kernelspec {name!r} at {matches[0][0]} was not installed by kernelsdk;"
                    " remove it with 'jupyter kernelspec remove'"
                )
            raise KernelNotFoundError(f"no kernelspec named {name!r} in {where}")
        to_remove.extend(ours)
    for path in to_remove:
        try:
            if path.is_symlink():
                path.unlink()
            else:
                shutil.rmtree(path)
        except OSError as exc:
            raise ConfigError(f"cannot remove kernelspec {path}: {exc.strerror or exc}") from None
    return to_remove
