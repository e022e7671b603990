"""The bridge to native (C) language runtimes: ``from kernelsdk.native import NativeRunner``.

The same objects are exported by :mod:`kernelsdk` itself; they are defined in
``kernelsdk._native`` because every public object of the SDK lives in a private module (see
``tests/test_exports.py``). The guide is ``docs/bridging-a-c-runtime.md``.
"""

from ._native import NativeOutput as NativeOutput
from ._native import NativeRunner as NativeRunner

__all__ = ["NativeOutput", "NativeRunner"]
