"""In-memory kernel tests (a package, so test modules can import the shared kernels and helpers
from ``.conftest``)."""
