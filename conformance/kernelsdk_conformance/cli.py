"""``python -m kernelsdk conformance KERNEL`` (also ``python -m kernelsdk_conformance``)."""

from __future__ import annotations

import argparse
import sys

from ._registry import CHECKS, Options
from ._runner import Result, load_checks, run
from .profiles import load_profile, profile_for
from .report import exit_status, format_results, table_row


def add_arguments(p: argparse.ArgumentParser) -> None:
    load_checks()  # registers the checks, for --help

    p.add_argument("kernel", metavar="KERNEL", help="an installed kernelspec name")
    p.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="NAME",
        choices=list(CHECKS),
        help=f"run only this check (repeatable): {', '.join(CHECKS)}",
    )
    p.add_argument(
        "--profile",
        metavar="PROFILE",
        help="samples: module:Class, file.py:Class or a shipped profile name "
        "(default: the shipped profile for KERNEL, if any)",
    )
    p.add_argument("--format", choices=["table", "markdown", "json"], default="table")
    p.add_argument(
        "--fuzz-budget",
        type=int,
        default=50,
        metavar="N",
        help="malformed messages the robustness check sends (default 50)",
    )
    p.add_argument(
        "--fuzz-seed",
        type=int,
        metavar="N",
        help="their seed, to send the same messages as a run that reported it (default: new)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="seconds to wait for any reply before calling it a hang (default 15)",
    )
    p.add_argument("--startup-timeout", type=float, default=60.0, metavar="S")
    p.add_argument(
        "--check-budget",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds one check may take, kernel start-up not counted (default 60)",
    )
    p.add_argument("--kernel-output", action="store_true", help="show the kernel's own output")
    p.add_argument(
        "--transport-encryption",
        choices=["disabled", "auto", "required"],
        default="disabled",
        help="CurveZMQ (JEP 145) as jupyter_client's KernelManager.transport_encryption: "
        "'required' runs the checks over encrypted sockets (default: disabled)",
    )


def run_from_args(args: argparse.Namespace) -> int:
    try:
        profile = load_profile(args.profile) if args.profile else profile_for(args.kernel)
    except Exception as exc:  # a broken profile or profile entry point: the user's to fix
        print(f"conformance: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    options = Options(
        timeout=args.timeout,
        startup_timeout=args.startup_timeout,
        fuzz_budget=args.fuzz_budget,
        fuzz_seed=args.fuzz_seed,
        kernel_output=args.kernel_output,
        check_budget=args.check_budget,
        transport_encryption=args.transport_encryption,
    )
    live = args.format == "table" and sys.stdout.isatty()

    def show(result: Result) -> None:
        if live:
            print(table_row(result), flush=True)

    try:
        results = run(
            args.kernel, profile, checks=args.check or None, options=options, on_result=show
        )
    except Exception as exc:  # no such kernelspec, a profile without a needed sample...
        print(f"conformance: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if live:
        from .report import summary

        print(summary(results))
    else:
        print(format_results(results, args.format, args.kernel))
    return exit_status(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kernelsdk conformance", description="Check a Jupyter kernel against the protocol."
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
