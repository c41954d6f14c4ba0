"""Fuzzing the config file: random TOML documents and mutations of the shipped example.

The property: `load_config` returns a Config whose `run_options` succeed (or raise EdgerecError), with
values the consumers (OpenCV, threading, ONNX Runtime) accept; or it raises EdgerecError whose message is
one line that names the file and the key. Never another exception. A handful go through `edgerec
check-config` too (exit 2, one line on stderr).
"""

from __future__ import annotations

import json
import math
import string
import threading
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from conftest import fuzz_examples, run_cli  # noqa: E402
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge.app.config import Config, defaults_toml, describe_config, load_config, run_options, tomllib  # noqa: E402
from edge.errors import EdgerecError  # noqa: E402

DEFAULTS = tomllib.loads(defaults_toml())
SECTIONS = {name: field.annotation for name, field in Config.model_fields.items()}
KEYS = [(section, key) for section, table in DEFAULTS.items() for key in table]
KEYS += [(name, key) for name, section in SECTIONS.items() if hasattr(section, "model_fields")
         for key in section.model_fields if (name, key) not in KEYS]  # keys the example leaves unset
INT32 = 2**31 - 1

# --- values and documents ------------------------------------------------------------------------

scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-320, 1e308, math.inf, -math.inf, math.nan]),
    st.text(max_size=20),
    st.sampled_from(["", "auto", "0", "demo", "cpu", "frame", "motion", "interval", "127.0.0.1:8080", "x:١٢",
                     "127.0.0.1:²", "http://127.0.0.1:1/x", "rtsp://", "\x00", "é" * 100]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=8)
names = st.one_of(st.text(max_size=70), st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=70))
boxes = st.one_of(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=6),
                  st.lists(st.floats(0, 1), min_size=4, max_size=4), values)
regions = st.lists(st.fixed_dictionaries({"name": names, "box": boxes},
                                         optional={"trigger": values, "interval": scalars, "model": values}),
                   max_size=3)
cameras = st.lists(st.fixed_dictionaries({"name": names, "source": st.one_of(values, st.just("demo"))},
                                         optional={"regions": regions, "motion": values}), max_size=3)


def toml(data: dict[str, Any]) -> str:
    """`data` as a TOML document: top-level keys, each value inline (tables as {...}, lists as [...])."""
    return "".join(f"{key_text(key)} = {value_text(value)}\n" for key, value in data.items())


def key_text(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else "inf" if value == math.inf else "-inf" if value == -math.inf \
            else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(map(value_text, value)) + "]"
    return "{" + ", ".join(f"{key_text(k)} = {value_text(v)}" for k, v in value.items()) + "}"


def misspell(key: str, how: int) -> str:
    """The key with one letter dropped, doubled or swapped with the next, or in capitals."""
    i = how % len(key)
    return [key[:i] + key[i + 1:], key[:i + 1] + key[i:], key[:i] + key[i + 1:i + 2] + key[i] + key[i + 2:],
            key.upper()][how % 4]


@st.composite
def mutations(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """The shipped example with one change, and the key path an error must name."""
    data = json.loads(json.dumps(DEFAULTS))  # a deep copy
    kind = draw(st.sampled_from(["value", "misspell", "unknown", "section", "regions", "cameras"]))
    if kind in ("value", "misspell"):
        section, key = draw(st.sampled_from(KEYS))
        table = data.setdefault(section, {})
        if kind == "value":
            table[key] = draw(values)
            return data, section
        wrong = misspell(key, draw(st.integers(0, 99)))
        table[wrong] = table.pop(key, 1)
        return data, section if wrong in SECTIONS[section].model_fields else f"{section}.{wrong}"
    if kind == "unknown":
        where = draw(st.sampled_from([None, *DEFAULTS]))
        key = draw(st.text(min_size=1, max_size=12))
        (data if where is None else data[where])[key] = draw(values)
        return data, where or key
    if kind == "section":
        section = draw(st.sampled_from(sorted(SECTIONS)))
        data[section] = draw(values)
        return data, section
    data[kind] = draw(regions if kind == "regions" else cameras)
    return data, kind


# --- the property -----------------------------------------------------------------------------------


def check_file(path: Path, names: str = "") -> Config | None:
    """The property: a usable Config, or one line naming the file (and `names`, the key path)."""
    try:
        config = load_config(path)
    except EdgerecError as error:
        message = str(error)
        assert "\n" not in message and "\r" not in message, message
        assert message.startswith(f"{path}: "), message
        if names and "invalid TOML" not in message:
            assert printable(names.split(".")[0]) in message, (names, message)
        return None
    describe_config(config)  # what check-config prints
    try:
        options = run_options(config)
    except EdgerecError as error:
        assert "\n" not in str(error), str(error)
        return config
    check_usable(options)
    return config


def printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def check_usable(options: Any) -> None:
    """What check-config accepts, the consumers accept: OpenCV's int32 milliseconds, thread joins, ORT."""
    sources = [options.source, *(camera.source for camera in options.cameras)]
    for source in sources:
        for timeout in (source.open_timeout, source.read_timeout):
            assert 0 < timeout * 1000 <= INT32, timeout  # cv2 CAP_PROP_*_TIMEOUT_MSEC
        assert source.read_timeout + source.open_timeout + 1 <= threading.TIMEOUT_MAX  # LiveSource.close
        for size in (source.width, source.height):
            assert size is None or 0 < size <= INT32, size
    if options.threads is not None:
        assert 1 <= options.threads <= 1024, options.threads  # ORT makes that many threads


@settings(max_examples=fuzz_examples(150), suppress_health_check=[HealthCheck.too_slow])
@given(mutation=mutations())
@example(mutation=({"\ud7fc": False}, "\ud7fc"))
@example(mutation=({"model": {"threads": 2**31}}, "model.threads"))  # ORT's setter: TypeError
@example(mutation=({"model": {"threads": 2**30}}, "model.threads"))  # a billion threads
@example(mutation=({"source": {"open_timeout": 1e308}}, "source.open_timeout"))  # int(inf) for OpenCV
@example(mutation=({"source": {"read_timeout": 1e10}}, "source.read_timeout"))  # past int32 ms
def test_mutated_example_is_valid_or_one_line_naming_the_key(mutation: tuple[dict, str], tmp_path_factory) -> None:
    data, names = mutation
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_text(toml(data), encoding="utf-8")
    check_file(path, names)


@settings(max_examples=fuzz_examples(60))
@given(document=st.dictionaries(st.one_of(st.sampled_from(sorted(SECTIONS)), st.text(max_size=10)),
                                st.one_of(values, regions, cameras), max_size=6))
@example(document={"\r": []})  # an unknown key's control character split the message in two
@example(document={"source": {"ur\ni": 1}})
def test_random_document_is_valid_or_one_line(document: dict[str, Any], tmp_path_factory) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_text(toml(document), encoding="utf-8")
    check_file(path)


@settings(max_examples=fuzz_examples(150))
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 3), st.binary(min_size=1, max_size=4)),
                      min_size=1, max_size=4))
@example(edits=[(0, 0, b"\xff\xfe")])  # not UTF-8
def test_byte_mutations_are_valid_or_one_line(edits: list[tuple[int, int, bytes]], tmp_path_factory) -> None:
    """The example's bytes with some flipped, cut, inserted or overwritten: never another exception."""
    text = bytearray(defaults_toml().encode())
    for where, how, chunk in edits:
        at = where % (len(text) + 1)
        if how == 0:
            text[at:at] = chunk
        elif how == 1:
            del text[at:at + len(chunk)]
        elif how == 2:
            text[at:at + len(chunk)] = chunk
        elif at < len(text):
            text[at] ^= chunk[0]
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_bytes(bytes(text))
    check_file(path)


@pytest.mark.parametrize("text", [
    b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n",  # found by fuzzing: tomllib's RecursionError
    b"x = " + b"{a = " * 2000 + b"1" + b"}" * 2000 + b"\n",
    b"source = " + b"[" * 200 + b"]" * 200 + b"\n",
])
def test_deep_nesting_is_one_line(text: bytes, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(text)
    assert check_file(path) is None


@pytest.mark.parametrize("text", [
    b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n",
    b"[source]\nuri = \"caf\xe9\"\n",
    b"[recognitoin]\nema = 0.5\n",
    b"[[regions]]\nname = \"door\"\nbox = [0.5, 0.5, 0.9, 0.1]\n",
])
def test_check_config_prints_one_line_and_exits_2(text: bytes, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(text)
    result = run_cli("check-config", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"edgerec: error: {path}: "), result.stderr
