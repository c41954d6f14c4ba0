"""Fuzzing model files: mutated contract files (the tiny test model and the embedded INT8 model).

The property: `Model.load` raises EdgerecError with one line naming the file, or loads a model whose output
for a batch of two frames is float32 [2, number of labels]. Every load runs in a separate worker process,
so a crash inside ONNX Runtime (abort, segmentation fault) shows up as a failed example, not a dead test run.
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
onnx = pytest.importorskip("onnx")
from conftest import Worker, fuzz_examples, make_tiny_model  # noqa: E402
from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge.core import model as edge_model  # noqa: E402
from edge.core.metadata import PREFIX, DatasetInfo, ModelInfo  # noqa: E402
from edge.core.model import check_in_child, default_model_path  # noqa: E402
from edge.errors import EdgerecError  # noqa: E402

WORKER = r"""
import json, sys
import numpy as np
from edge.errors import EdgerecError
from edge.core.model import Model
for line in sys.stdin:
    path = line.rstrip("\n")
    try:
        model = Model.load(path, "cpu", 1)
        probs = model.infer(np.zeros((2, *model.info.input_size, 3), np.uint8))
        reply = {"shape": list(probs.shape), "dtype": str(probs.dtype), "labels": len(model.labels)}
    except EdgerecError as error:
        reply = {"error": str(error)}
    except BaseException as error:
        reply = {"exception": f"{type(error).__name__}: {error}"}
    print(json.dumps(reply), flush=True)
"""


class Loader(Worker):
    """A worker process that loads model files one at a time; restarted when a file kills it."""

    def __init__(self) -> None:
        super().__init__(WORKER)

    def load(self, path: Path, timeout: float = 60.0) -> dict[str, Any]:
        return self.ask(str(path), timeout)


@pytest.fixture(scope="module")
def loader():
    worker = Loader()
    yield worker
    worker.close()


@functools.cache
def original(name: str) -> bytes:
    """The tiny contract model (reproducible metadata) or the embedded INT8 model, read once (not a fixture:
    Hypothesis prints a failing example's fixtures, and these are megabytes)."""
    if name == "int8":
        return default_model_path().read_bytes()
    with tempfile.TemporaryDirectory() as folder:
        return tiny_model(Path(folder) / "tiny.onnx").read_bytes()


def tiny_model(path: Path, **kwargs: Any) -> Path:
    info = ModelInfo(labels=["blue", "green", "red"], input_size=(8, 8), crop=1.0, arch="tiny-test",
                     precision="fp32", dataset=DatasetInfo("synthetic", "0" * 16, 3, 3), created="2026-01-01")
    return make_tiny_model(path, **{"metadata": info.to_props(), **kwargs})


def check(reply: dict[str, Any], path: Path) -> None:
    """The property."""
    assert "crash" not in reply, f"ONNX Runtime killed the loading process ({reply['crash']}) on {path}"
    assert "exception" not in reply, reply["exception"]
    if "error" in reply:
        message = reply["error"]
        assert "\n" not in message and message.startswith(f"{path}: "), message
        return
    assert reply["shape"] == [2, reply["labels"]] and reply["dtype"] == "float32", reply


# --- byte-level mutations ---------------------------------------------------------------------------

edits = st.lists(st.tuples(st.sampled_from(["flip", "cut", "overwrite", "insert"]), st.floats(0, 1),
                           st.binary(min_size=1, max_size=16)), min_size=1, max_size=6)


def mutate(data: bytes, changes: list[tuple[str, float, bytes]]) -> bytes:
    out = bytearray(data)
    for how, where, chunk in changes:
        at = min(int(where * len(out)), max(len(out) - 1, 0))
        if how == "flip" and out:
            out[at] ^= chunk[0] or 1
        elif how == "cut":
            del out[at:]
        elif how == "overwrite":
            out[at:at + len(chunk)] = chunk
        else:
            out[at:at] = chunk
    return bytes(out)


@settings(max_examples=fuzz_examples(120))
@given(base=st.sampled_from(["tiny", "tiny", "tiny", "int8"]), changes=edits)
@example(base="tiny", changes=[("cut", 0.0, b"x")])  # an empty file
@example(base="int8", changes=[("cut", 0.5, b"x")])  # half a model
def test_byte_mutations(base: str, changes, loader, tmp_path_factory) -> None:
    path = tmp_path_factory.mktemp("model") / "mutated.onnx"
    path.write_bytes(mutate(original(base), changes))
    check(loader.load(path), path)


# --- contract-level mutations: metadata that lies, inputs and outputs that break the contract --------

json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(),
                                     st.text(max_size=12)),
                           lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=10)
metadata_texts = st.one_of(json_values.map(json.dumps), st.text(max_size=30),
                           st.sampled_from(['["blue", "green"]', '["a", "b", "c", "d"]', "[]", '[""]', "[16, 16]",
                                            "[8]", "[0, 8]", "[8.5, 8]", '"int4"', '"fp16"', "0", "1.5", "2", "-1",
                                            "NaN", "Infinity", '{"name": 5}', "{}", '["blue", 1, "red"]']))
KEYS = ["format_version", "labels", "input_size", "crop", "arch", "precision", "label_ids", "dataset", "created",
        "metrics", "training", "quantization", "unknown_field"]


@st.composite
def contract_mutations(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments of make_tiny_model that break the contract, plus metadata edits and output edits."""
    return {
        "graph": draw(st.fixed_dictionaries({}, optional={
            "input_type": st.sampled_from(["uint8", "float"]), "layout": st.sampled_from(["NHWC", "NCHW"]),
            "size": st.sampled_from([1, 8, 16]), "classes": st.integers(1, 5)})),
        "metadata": draw(st.dictionaries(st.sampled_from(KEYS), st.one_of(st.none(), metadata_texts), max_size=3)),
        "outputs": draw(st.sampled_from(["same", "extra", "renamed", "none-left"])),
    }


def build(path: Path, mutation: dict[str, Any]) -> Path:
    tiny_model(path, **mutation["graph"])
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    for key, text in mutation["metadata"].items():
        props.pop(PREFIX + key, None) if text is None else props.__setitem__(PREFIX + key, text)
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    graph = proto.graph
    if mutation["outputs"] == "extra":
        graph.output.append(onnx.helper.make_tensor_value_info("mean", onnx.TensorProto.FLOAT, ["N", 3]))
    elif mutation["outputs"] == "renamed":
        graph.node[-1].output[0] = graph.output[0].name = "scores"
    elif mutation["outputs"] == "none-left":
        graph.output[0].name = graph.node[-1].output[0] = "mean2"
        graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.INT64
    onnx.save(proto, str(path))
    return path


@settings(max_examples=fuzz_examples(80))
@given(mutation=contract_mutations())
@example(mutation={"graph": {}, "metadata": {"labels": '["blue", "green"]'}, "outputs": "same"})  # lying labels
@example(mutation={"graph": {}, "metadata": {"input_size": "[16, 16]"}, "outputs": "same"})  # lying size
@example(mutation={"graph": {"input_type": "float"}, "metadata": {}, "outputs": "same"})
@example(mutation={"graph": {}, "metadata": {"labels": "[\"blue\""}, "outputs": "extra"})
@example(mutation={"graph": {}, "metadata": {"dataset": "[]"}, "outputs": "same"})  # found: a TypeError
@example(mutation={"graph": {}, "metadata": {"dataset": '{"name": "x", "ntm_val": 3}'}, "outputs": "same"})
@example(mutation={"graph": {}, "metadata": {"metrics": "[1]"}, "outputs": "same"})
def test_contract_mutations(mutation: dict[str, Any], loader, tmp_path_factory) -> None:
    path = build(tmp_path_factory.mktemp("model") / "broken.onnx", mutation)
    check(loader.load(path), path)


def test_metadata_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    """Found by fuzzing: ONNX Runtime's custom_metadata_map raised UnicodeDecodeError."""
    path = tiny_model(tmp_path / "latin1.onnx")
    path.write_bytes(path.read_bytes().replace(b"tiny-test", b"tiny\xe9test"[:9]))  # same length, bad UTF-8
    with pytest.raises(EdgerecError, match=r"latin1\.onnx: metadata is not UTF-8 text"):
        edge_model.Model.load(path, "cpu", 1)


def test_bad_file_prints_nothing_on_stdout(tmp_path: Path, capfd) -> None:
    """Found by fuzzing: a node whose op type is not UTF-8 made ONNX Runtime's own provider fallback print
    '*** EP Error ***' lines on standard output (where `classify --json` writes) and try again."""
    path = tiny_model(tmp_path / "bad.onnx")
    path.write_bytes(path.read_bytes().replace(b"Softmax", b"So\xddtmax"))
    with pytest.raises(EdgerecError, match=r"bad\.onnx: not a loadable ONNX model"):
        edge_model.Model.load(path, "cpu", 1)
    assert capfd.readouterr().out == ""


def test_check_in_child_passes_a_good_file_and_names_a_bad_one(tmp_path: Path, tiny_model: Path) -> None:
    check_in_child(tiny_model)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(tiny_model.read_bytes()[:100])
    with pytest.raises(EdgerecError, match=r"broken\.onnx: not a loadable ONNX model"):
        check_in_child(broken)


def test_check_in_child_survives_a_crash(tmp_path: Path, tiny_model: Path, monkeypatch) -> None:
    """A file that kills ONNX Runtime kills the child only: the caller gets one line naming the file."""
    monkeypatch.setattr(edge_model, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(EdgerecError, match=r"tiny\.onnx: loading it killed a test process \(signal SIGSEGV\)"):
        check_in_child(tiny_model)
