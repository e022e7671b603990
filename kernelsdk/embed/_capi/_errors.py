"""The C API's error codes (kernelsdk.h's KSDK_E*) and the exception that carries one."""

from __future__ import annotations

from typing import Final

OK: Final = 0
EARG: Final = -1
EHANDLE: Final = -2
ESTATE: Final = -3
EREQUEST: Final = -4
EPYTHON: Final = -5
ESTART: Final = -6
EINTERRUPTED: Final = -7
ESTDIN: Final = -8
ELIMIT: Final = -9


class ApiError(Exception):
    """A call from C failed: ``code`` is returned to C, the message is ksdk_last_error()."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def bad_argument(message: str) -> ApiError:
    return ApiError(EARG, message)


def wrong_state(message: str) -> ApiError:
    return ApiError(ESTATE, message)
