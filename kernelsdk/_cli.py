"""``python -m kernelsdk``: install, list, remove, run, check and create kernels on kernelsdk.

``run`` is what every kernel.json launches, so this module imports only what a subcommand
needs, when it needs it (``run`` never imports jupyter_client).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._exceptions import ConfigError, KernelSDKError
from ._version import __version__

if TYPE_CHECKING:
    from pathlib import Path

    from ._install import SlurmLaunch

PROG = "kernelsdk"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (2 for a user error)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["conformance"]:
        return _run_conformance(argv[1:])
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and args.command != "run":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.ignored = extra
    except SystemExit as exc:  # argparse reports usage errors (2) and --help (0) this way
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        status: int = args.func(args)
    except KernelSDKError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Install, list, remove and run Jupyter kernels built on kernelsdk."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "install",
        help="install kernelspecs (all available kernels if none is named)",
        description="Write kernel.json (and the kernel's logos) for each KERNEL, or for every "
        "kernel registered in the 'kernelsdk.kernels' entry-point group.",
    )
    p.add_argument("kernels", nargs="*", metavar="KERNEL", help="entry-point name or module:Class")
    _add_location(p, default_help="default: the system-wide Jupyter data directory")
    p.add_argument("--name", help="kernelspec name (only with exactly one KERNEL)")
    p.add_argument("--display-name", help="name shown by frontends (only with exactly one KERNEL)")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment variable for the kernel (repeatable)",
    )
    p.add_argument("--replace", action="store_true", help="overwrite an existing kernelspec")
    mpi = p.add_argument_group("MPI variants (see kernelsdk.mpi)")
    mpi.add_argument(
        "--mpi", type=int, metavar="N", help="run the kernel on N MPI ranks (name: KERNEL-mpiN)"
    )
    mpi.add_argument(
        "--launcher", default="mpiexec", help="mpiexec (default), srun, or a launcher's path"
    )
    mpi.add_argument(
        "--launcher-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra launcher argument (repeatable; write --launcher-arg=--flag)",
    )
    mpi.add_argument(
        "--mpi-output",
        choices=["all", "rank0", "grouped"],
        default="all",
        help="the ranks' output: all, labelled (default); rank 0 only; grouped after the cell",
    )
    slurm = p.add_argument_group(
        "Slurm jobs (see kernelsdk.slurm): the kernel runs as a batch job, from a Jupyter server "
        "outside the allocation (name: KERNEL-slurm, KERNEL-slurm-mpiN)"
    )
    slurm.add_argument(
        "--slurm", action="store_true", help="run the kernel as a Slurm job (with --mpi: N tasks)"
    )
    slurm.add_argument("--partition", help="sbatch --partition")
    slurm.add_argument("--time", help="sbatch --time (the job's time limit, e.g. 1:00:00)")
    slurm.add_argument("--nodes", help="sbatch --nodes")
    slurm.add_argument("--account", help="sbatch --account")
    slurm.add_argument(
        "--slurm-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra sbatch argument (repeatable; write --slurm-arg=--flag)",
    )
    for flag, text in (
        ("--idle-timeout", "end the job when no cell has run for S seconds (default: never)"),
        ("--start-timeout", "wait at most S seconds for the job to start (default: 300)"),
        ("--walltime-warning", "warn in the notebook S seconds before the time limit (300)"),
    ):
        slurm.add_argument(flag, type=float, metavar="S", help=text)
    attach = p.add_argument_group("attaching to an embedded kernel (see kernelsdk.embed)")
    attach.add_argument(
        "--attach",
        metavar="NAME",
        help="instead of a KERNEL, install attach-NAME: a kernelspec that connects to the newest "
        "running kernel a program embeds as NAME (shutdown detaches; the program runs on)",
    )
    attach.add_argument(
        "--language",
        default="python",
        help="the language of the embedded kernel's cells, for frontends (default: python)",
    )
    p.set_defaults(func=_cmd_install)

    p = sub.add_parser("list", help="list available kernels and where they are installed")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("remove", help="remove kernelspecs installed by kernelsdk")
    p.add_argument("names", nargs="+", metavar="NAME", help="kernelspec name")
    _add_location(p, default_help="default: wherever Jupyter finds them")
    p.set_defaults(func=_cmd_remove)

    p = sub.add_parser("run", help="serve a kernel (what kernel.json launches)")
    p.add_argument("kernel", metavar="KERNEL", help="entry-point name or module:Class")
    p.add_argument(
        "-f",
        dest="connection_file",
        required=True,
        metavar="CONNECTION_FILE",
        help="the connection file written by the Jupyter client",
    )
    p.add_argument(
        "--class",
        dest="kernel_class",
        metavar="MODULE:CLASS",
        help="the class KERNEL named at install time: imported first, which skips reading "
        "every distribution's entry points (kernelspecs written by install pass it)",
    )
    p.add_argument("--packer", choices=["json", "msgpack"], default="json")
    p.add_argument("--mpi", action="store_true", help="run on every rank of an MPI job")
    p.add_argument("--mpi-output", choices=["all", "rank0", "grouped"], default="all")
    p.add_argument(
        "--no-parent-watch",
        dest="watch_parent",
        action="store_false",
        help="keep running when the frontend (JPY_PARENT_PID) or the parent process dies",
    )
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="WARNING",
    )
    p.set_defaults(func=_cmd_run)

    # Listed here for --help only: main() hands everything after "conformance" to the suite's
    # own parser, so its options are defined once, in kernelsdk_conformance.cli.
    sub.add_parser(
        "conformance",
        help="check any installed kernel against the protocol (needs kernelsdk-conformance; "
        "'conformance --help' lists its options)",
        add_help=False,
    )

    p = sub.add_parser(
        "new",
        help="create a new kernel package (pyproject, kernel, tests, profile, logos, Binder)",
        description="Write a kernel package for the language NAME into DIRECTORY: an "
        "installable distribution registering the kernel NAME, a kernel class for a tiny "
        "language to grow from, in-memory tests, a conformance profile, logos and a Binder "
        "configuration.",
    )
    p.add_argument("name", metavar="NAME", help="the kernel's name, e.g. mylang")
    p.add_argument(
        "directory", nargs="?", metavar="DIRECTORY", help="where to write it (default: NAME-kernel)"
    )
    p.add_argument("--display-name", help="name shown by frontends (default: from NAME)")
    p.add_argument(
        "--force", action="store_true", help="write into DIRECTORY even if it is not empty"
    )
    p.set_defaults(func=_cmd_new)

    p = sub.add_parser(
        "config",
        help="compiler flags for C, C++ and Fortran programs embedding a kernel (kernelsdk.h)",
        description="Print the flags to build a host program against libkernelsdk-embed, like "
        "python3-config: cc host.c $(python -m kernelsdk config --cflags --ldflags). The first "
        "call builds the library for this Python environment (a C compiler is needed; "
        "gfortran for --fflags) and caches it.",
    )
    for flag, text in (
        ("--cflags", "-I for kernelsdk.h"),
        ("--ldflags", "-L, -rpath and -l of the library"),
        ("--fflags", "-I for the Fortran module kernelsdk (with --ldflags: its library too)"),
        ("--include-dir", "the directory of kernelsdk.h"),
        ("--lib-dir", "the directory of the library"),
    ):
        p.add_argument(flag, action="store_true", help=text)
    p.add_argument("--verbose", action="store_true", help="show the compiler commands")
    p.set_defaults(func=_cmd_config)
    return parser


def _add_location(p: argparse.ArgumentParser, *, default_help: str) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--user", action="store_true", help="the user's Jupyter data directory")
    group.add_argument("--sys-prefix", action="store_true", help=f"{sys.prefix}/share/jupyter")
    group.add_argument("--prefix", metavar="DIR", help=f"DIR/share/jupyter ({default_help})")


def _parse_env(items: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env expects KEY=VALUE, not {item!r}")
        env[key] = value
    return env


def _expand_families(names: list[str], available: Iterable[str]) -> list[str]:
    """A name that is no kernel but the stem of versioned ones (``lua`` for ``lua51``,
    ``lua54``...) stands for all of them. Anything else is kept, to fail with a clear error."""
    available = sorted(available)
    expanded: list[str] = []
    for name in names:
        family = [a for a in available if re.fullmatch(re.escape(name) + r"[\d.]+", a)]
        expanded += family if name not in available and ":" not in name and family else [name]
    return expanded


def _cmd_install(args: argparse.Namespace) -> int:
    if args.attach is not None:
        return _install_attach(args)
    from ._entrypoints import available_kernels
    from ._install import MPILaunch, install

    kernels = _expand_families(args.kernels, available_kernels())
    if (args.name is not None or args.display_name is not None) and len(kernels) != 1:
        raise ConfigError(
            f"--name and --display-name need exactly one KERNEL, got {len(kernels)}"
            + (f" ({', '.join(kernels)})" if kernels else "")
        )
    env = _parse_env(args.env)
    mpi = None
    if args.mpi is not None:
        mpi = MPILaunch(args.mpi, args.launcher, tuple(args.launcher_arg), args.mpi_output)
    slurm = _slurm_launch(args)
    if not kernels:
        kernels = sorted(available_kernels())
        if not kernels:
            raise ConfigError(
                "no kernels to install: no installed distribution registers a kernel in the "
                "'kernelsdk.kernels' entry-point group"
            )
    status = 0
    for kernel in kernels:
        try:
            dest = install(
                kernel,
                user=args.user,
                sys_prefix=args.sys_prefix,
                prefix=args.prefix,
                kernel_name=args.name,
                display_name=args.display_name,
                env=env,
                replace=args.replace,
                mpi=mpi,
                slurm=slurm,
            )
        except KernelSDKError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            status = 2
        else:
            print(f"Installed kernelspec {dest.name} ({kernel}) in {dest}")
    return status


_SLURM_OPTIONS = (
    "partition",
    "time",
    "nodes",
    "account",
    "idle_timeout",
    "start_timeout",
    "walltime_warning",
)


def _slurm_launch(args: argparse.Namespace) -> SlurmLaunch | None:
    from ._install import SlurmLaunch

    given = [o for o in _SLURM_OPTIONS if getattr(args, o) is not None] + (
        ["slurm_arg"] if args.slurm_arg else []
    )
    if not args.slurm:
        if given:
            options = ", ".join("--" + o.replace("_", "-") for o in given)
            raise ConfigError(f"{options} only apply with --slurm")
        return None
    return SlurmLaunch(
        partition=args.partition,
        time=args.time,
        nodes=args.nodes,
        account=args.account,
        sbatch_args=tuple(args.slurm_arg),
        idle_timeout=args.idle_timeout,
        start_timeout=args.start_timeout,
        walltime_warning=args.walltime_warning,
    )


def _install_attach(args: argparse.Namespace) -> int:
    from ._install import install_attach

    if args.kernels or args.mpi is not None or args.env or args.slurm:
        raise ConfigError(
            "--attach NAME takes no KERNEL, --mpi, --slurm or --env: the program runs it"
        )
    dest = install_attach(
        args.attach,
        user=args.user,
        sys_prefix=args.sys_prefix,
        prefix=args.prefix,
        kernel_name=args.name,
        display_name=args.display_name,
        language=args.language,
        replace=args.replace,
    )
    print(
        f"Installed kernelspec {dest.name} (attaches to the embedded kernel {args.attach!r}) "
        f"in {dest}"
    )
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from ._entrypoints import available_kernels
    from ._install import ATTACH_KERNEL_PREFIX, scan

    kernels = available_kernels()
    locations: dict[str, list[tuple[str, Path, bool]]] = {}
    attach: dict[str, list[tuple[str, Path, bool]]] = {}
    visible: set[str] = set()
    for spec_name, path, kernel in scan():
        shadowed = spec_name in visible
        visible.add(spec_name)
        if kernel is not None and kernel.startswith(ATTACH_KERNEL_PREFIX):
            attach.setdefault(kernel.removeprefix(ATTACH_KERNEL_PREFIX), []).append(
                (spec_name, path, shadowed)
            )
        elif kernel is not None:
            locations.setdefault(kernel, []).append((spec_name, path, shadowed))

    if not kernels:
        print("No kernels available (no distribution registers 'kernelsdk.kernels' entry points).")
    else:
        print("Available kernels:")
    for name in sorted(kernels):
        print(f"  {name}  ({kernels[name].value})")
        _print_locations(locations.pop(name, []))
    if locations:
        print("Installed kernelspecs of kernels that are not available:")
        for kernel in sorted(locations):
            print(f"  {kernel}")
            _print_locations(locations[kernel])
    if attach:
        print("Kernelspecs attaching to embedded kernels (install --attach):")
        for name in sorted(attach):
            print(f"  {name}")
            _print_locations(attach[name])
    return 0


def _print_locations(entries: list[tuple[str, Path, bool]]) -> None:
    if not entries:
        print("      not installed")
    for spec_name, path, shadowed in entries:
        note = " (hidden by an earlier kernelspec of that name)" if shadowed else ""
        print(f"      {spec_name}: {path}{note}")


def _cmd_remove(args: argparse.Namespace) -> int:
    from ._install import remove

    for path in remove(args.names, user=args.user, sys_prefix=args.sys_prefix, prefix=args.prefix):
        print(f"Removed {path}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from ._entrypoints import load_kernel

    if args.ignored:
        # Frontends pass their own extra arguments on to the kernel (`jupyter run FILE`
        # does): a kernel must start anyway, as ipykernel does.
        print(f"{PROG} run: ignoring arguments {' '.join(args.ignored)}", file=sys.stderr)

    cls = load_kernel(args.kernel, hint=args.kernel_class)
    if (slurm_settings := os.environ.get("KERNELSDK_SLURM")) is not None:
        # A kernel in a job of the Slurm provisioner: walltime warning, idle limit, and a
        # restart in the job.
        from .slurm._job import job_kernel

        cls = job_kernel(cls, slurm_settings)
    from ._runtime import run_kernel

    if args.mpi:
        from .mpi import OutputMode, run_mpi_kernel

        run_mpi_kernel(
            cls,
            args.connection_file,
            packer=args.packer,
            log_level=args.log_level,
            output=OutputMode(args.mpi_output),
            watch_parent=args.watch_parent,
        )
    else:
        run_kernel(
            cls,
            args.connection_file,
            packer=args.packer,
            log_level=args.log_level,
            watch_parent=args.watch_parent,
        )
    if slurm_settings is not None:
        from .slurm._job import exit_status

        return exit_status()
    return 0


def _run_conformance(argv: list[str]) -> int:
    import importlib

    try:
        cli = importlib.import_module("kernelsdk_conformance.cli")
    except ImportError as exc:
        print(
            f"{PROG}: error: the conformance suite is not installed: pip install -e conformance "
            f"(from a kernelsdk checkout) ({exc})",
            file=sys.stderr,
        )
        return 2
    try:
        status: int = cli.main(argv)
    except SystemExit as exc:  # its argparse: usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return status


def _cmd_new(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ._scaffold import create, relative

    directory = Path(args.directory) if args.directory else None
    target, written = create(args.name, directory, display_name=args.display_name, force=args.force)
    where = relative(target)
    print(f"Created {where} ({len(written)} files) for the kernel {args.name!r}. Next:")
    print(f"  cd {where}")
    print('  pip install -e ".[test]"     # after kernelsdk and kernelsdk-conformance')
    print(f"  python -m kernelsdk install {args.name} --sys-prefix")
    print("  pytest")
    print(f"  python -m kernelsdk conformance {args.name}   # finds its profile by entry point")
    print(f"  jupyter console --kernel {args.name}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from .embed._capi._build import flags

    wanted = {
        k: getattr(args, k) for k in ("cflags", "ldflags", "fflags", "include_dir", "lib_dir")
    }
    if not any(wanted.values()):
        raise ConfigError(
            "say what to print: --cflags, --ldflags, --fflags, --include-dir, --lib-dir"
        )
    print(" ".join(flags(**wanted, verbose=args.verbose)))
    return 0
