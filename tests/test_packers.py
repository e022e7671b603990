"""Packers: dicts <-> bytes, JSON and msgpack, the way jupyter_client packs them."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import msgpack
import pytest
import strategies as sst
from hypothesis import given, settings

from kernelsdk import ConfigError
from kernelsdk.protocol import JSON, MSGPACK, Packer, get_packer


def test_get_packer() -> None:
    assert get_packer("json") is JSON
    assert get_packer("msgpack") is MSGPACK
    assert (JSON.name, MSGPACK.name) == ("json", "msgpack")
    for bad in ["pickle", "JSON", "", "orjson", "msgpack.packb"]:
        with pytest.raises(ConfigError, match="json, msgpack"):
            get_packer(bad)
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        get_packer("yaml")


@pytest.mark.parametrize("packer", [JSON, MSGPACK], ids=lambda p: p.name)
@given(value=sst.json_values)
@settings(max_examples=200, deadline=None)
def test_round_trip(packer: Packer, value: Any) -> None:
    packed = packer.pack(value)
    assert isinstance(packed, bytes)
    assert packer.unpack(packed) == value


@given(value=sst.content_dicts)
@settings(max_examples=100, deadline=None)
def test_json_output_is_standard_utf8_json(value: dict[str, Any]) -> None:
    packed = JSON.pack(value)
    text = packed.decode("utf-8")  # valid UTF-8
    assert json.loads(text) == value
    # ensure_ascii=False, as jupyter_client: non-ASCII text is sent as UTF-8, not escaped.
    for key in value:
        if key and all(c.isprintable() and c not in '"\\' for c in key):
            assert json.dumps(key, ensure_ascii=False) in text


def test_json_unicode_not_escaped() -> None:
    packed = JSON.pack({"s": "é☃😀"})
    assert "é☃😀".encode() in packed
    assert b"\\u" not in packed


def test_json_non_finite_floats_become_strings() -> None:
    value: dict[str, Any] = {"a": math.nan, "b": [math.inf, {"c": -math.inf}], "d": 1.5}
    packed = JSON.pack(value)
    assert json.loads(packed, parse_constant=_reject) == {
        "a": "nan",
        "b": ["inf", {"c": "-inf"}],
        "d": 1.5,
    }
    # The caller's dict is not modified.
    assert math.isnan(value["a"])
    assert value["b"][0] == math.inf


def _reject(name: str) -> Any:
    raise AssertionError(f"non-standard constant {name}")


def test_json_special_types() -> None:
    value = {
        "bytes": b"\x00\xffab",
        "bytearray": bytearray(b"xy"),
        "aware": datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "offset": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-3))),
        "naive": datetime(2024, 1, 2, 3, 4, 5),
        "date": date(2024, 1, 2),
        "tuple": (1, 2),
        "set": {3},
    }
    got = json.loads(JSON.pack(value))
    assert base64.b64decode(got["bytes"]) == b"\x00\xffab"
    assert base64.b64decode(got["bytearray"]) == b"xy"
    assert got["aware"] == "2024-01-02T03:04:05.000006Z"
    assert got["offset"] == "2024-01-02T03:04:05-03:00"
    assert got["naive"] == "2024-01-02T03:04:05Z"  # naive datetimes are taken as UTC
    assert got["date"] == "2024-01-02"
    assert got["tuple"] == [1, 2]
    assert got["set"] == [3]


def test_msgpack_special_types() -> None:
    value = {
        "bytes": b"\x00\xff",
        "bytearray": bytearray(b"xy"),
        "memoryview": memoryview(b"mv"),
        "aware": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "date": date(2024, 1, 2),
        "nan": math.nan,
    }
    got = msgpack.unpackb(MSGPACK.pack(value))
    assert got["bytes"] == b"\x00\xff"  # binary stays binary in msgpack
    assert got["bytearray"] == b"xy"
    assert got["memoryview"] == b"mv"
    assert got["aware"] == "2024-01-02T03:04:05Z"
    assert got["date"] == "2024-01-02"
    assert math.isnan(got["nan"])  # msgpack carries NaN natively
    assert MSGPACK.unpack(MSGPACK.pack({"b": b"x"})) == {"b": b"x"}


@pytest.mark.parametrize("packer", [JSON, MSGPACK], ids=lambda p: p.name)
def test_unserializable_values_raise_type_error(packer: Packer) -> None:
    with pytest.raises(TypeError, match="object"):
        packer.pack({"x": object()})


def test_unpack_rejects_garbage() -> None:
    for garbage in [b"{", b"\xff", b"[1,]", b"", b'{"a": 1} {}']:
        with pytest.raises(ValueError):
            JSON.unpack(garbage)
    with pytest.raises(ValueError):
        MSGPACK.unpack(b"\xc1")
    with pytest.raises(ValueError):
        MSGPACK.unpack(msgpack.packb({}) + b"extra")
