"""``python -m kernelsdk new NAME``: a new kernel package, ready to install, test and grow.

The files come from the templates in ``kernelsdk/new-kernel-template`` (``string.Template``
placeholders such as ``${name}``; a ``PACKAGE`` directory is renamed to the package, the
``.tmpl`` suffix dropped, ``gitignore`` becomes ``.gitignore``). The logos are drawn here:
a rounded square in a colour derived from the name, with the name's initial in the SVG.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import zlib
from collections.abc import Iterator
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from ._exceptions import ConfigError
from ._version import __version__

#: Kernel names: lower case, usable as a kernelspec name and (with ``-`` as ``_``) in Python.
NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
EXECUTABLE = {"binder/postBuild"}


def names(name: str, display_name: str | None = None) -> dict[str, str]:
    """The template fields for kernel ``name``."""
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"kernel name {name!r}: use lower-case letters, digits, '-' and '_', "
            "starting with a letter (e.g. 'mylang')"
        )
    words = re.split(r"[-_]", name)
    return {
        "name": name,
        "package": "_".join(words) + "_kernel",
        "dist_name": "-".join(words) + "-kernel",
        "class_name": "".join(w.capitalize() for w in words) + "Kernel",
        "display_name": display_name or " ".join(w.capitalize() for w in words),
        "kernelsdk_version": __version__,
    }


def _templates(root: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            yield from _templates(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(".tmpl"):
            yield prefix + entry.name.removesuffix(".tmpl"), entry


def render(name: str, display_name: str | None = None) -> dict[str, bytes]:
    """Every file of the new package: relative path -> content."""
    fields = names(name, display_name)
    out: dict[str, bytes] = {}
    for rel, template in _templates(files("kernelsdk") / "new-kernel-template"):
        parts = [fields["package"] if p == "PACKAGE" else p for p in rel.split("/")]
        if parts[-1] == "gitignore":
            parts[-1] = ".gitignore"
        text = Template(template.read_text(encoding="utf-8")).substitute(fields)
        out["/".join(parts)] = text.encode()
    resources = f"{fields['package']}/resources"
    red, green, blue = _colour(name)
    for size in (32, 64):
        out[f"{resources}/logo-{size}x{size}.png"] = _png(size, (red, green, blue))
    out[f"{resources}/logo-svg.svg"] = _svg(fields["display_name"], (red, green, blue))
    return out


def create(
    name: str, directory: Path | None = None, *, display_name: str | None = None, force: bool
) -> tuple[Path, list[str]]:
    """Write the package for kernel ``name`` into ``directory`` (default ``./NAME-kernel``).

    Refuses a directory that exists and is not empty, unless ``force``: then the package's
    files are overwritten and nothing else there is touched. Returns the directory and the
    files written.
    """
    content = render(name, display_name)
    target = directory if directory is not None else Path(names(name)["dist_name"])
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ConfigError(f"{target} exists and is not empty (--force writes into it anyway)")
    for rel, data in content.items():
        path = target / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
        if rel in EXECUTABLE:
            path.chmod(path.stat().st_mode | 0o111)
    return target, sorted(content)


def _colour(name: str) -> tuple[int, int, int]:
    """A darkish colour of the name's own (white text stays readable on it)."""
    digest = hashlib.sha256(name.encode()).digest()
    return digest[0] % 128 + 16, digest[1] % 128 + 16, digest[2] % 128 + 16


def _svg(display_name: str, rgb: tuple[int, int, int]) -> bytes:
    initial = (display_name.strip()[:1] or "K").upper()
    initial = initial.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    fill = "#{:02x}{:02x}{:02x}".format(*rgb)
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
        f'<rect width="64" height="64" rx="12" fill="{fill}"/>'
        '<text x="32" y="43" font-family="sans-serif" font-size="30" text-anchor="middle" '
        f'fill="#fff">{initial}</text></svg>\n'
    ).encode()


def _png(size: int, rgb: tuple[int, int, int]) -> bytes:
    """A ``size`` x ``size`` RGBA PNG: a rounded square in ``rgb`` with a white ring."""
    radius = size * 12 / 64
    centre = (size - 1) / 2
    rows = []
    for y in range(size):
        row = bytearray(b"\0")  # filter type: none
        for x in range(size):
            # Rounded corners: outside the corner circles is transparent.
            cx = min(max(x, radius), size - 1 - radius)
            cy = min(max(y, radius), size - 1 - radius)
            inside = (x - cx) ** 2 + (y - cy) ** 2 <= radius**2
            r = ((x - centre) ** 2 + (y - centre) ** 2) ** 0.5
            ring = size * 0.22 <= r <= size * 0.32
            pixel = (255, 255, 255) if ring else rgb
            row += bytes((*pixel, 255 if inside else 0))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


def relative(path: Path) -> str:
    """``path`` as the user would type it from here."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive
        return str(path)
