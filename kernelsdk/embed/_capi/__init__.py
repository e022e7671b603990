"""The C API of embedded kernels: libkernelsdk-embed, its header and its Fortran module.

Private: C, C++ and Fortran hosts use ``kernelsdk.h`` (``python -m kernelsdk config``);
``_build`` builds the library, ``_bridge`` is the Python side of each C function.
"""
