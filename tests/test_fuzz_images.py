"""Fuzzing the images `classify`, `evaluate` and `train`/`teach` read: every kind OpenCV writes (grey, alpha,
16-bit, 1x1, CMYK JPEG), truncated, flipped, zero-size, and with headers that claim 30000 x 30000 pixels.

The property, for each reader: an image edgerec can use (uint8, three channels for evaluate and training,
a prediction for classify), or the file named as skipped / one line naming it; never another exception,
and never gigabytes of memory (each file is read in a worker process whose peak RSS is checked, under an
address-space limit so that a bomb cannot take the machine down with it).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from conftest import REPO, Worker, fuzz_examples, make_tiny_model  # noqa: E402
from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PEAK_MB, BASELINE_MB = 1024, 150
"""Most memory reading one image may take (growth of the worker's peak resident set); the worker's own."""

WORKER = r"""
import json, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # a safety net for the machine, above PEAK_MB
from edge.tools.classify import read_image
from edge.errors import EdgerecError
from edge.tools.evaluate import decode_image as _decode
from edge.core.model import Model
from training.data import _inspect, decode

model = Model.load(sys.argv[1], "cpu", 1)


def describe(image):
    return {"shape": list(image.shape), "dtype": str(image.dtype)}


def attempt(function):
    try:
        return function()
    except EdgerecError as error:
        return {"error": str(error)}
    except BaseException as error:
        return {"exception": f"{type(error).__name__}: {error}"}


def read(path):
    unreadable = []
    reply = {"classify": attempt(lambda: {"label": model.classify([read_image(path)])[0].label})}
    image = _decode(path, unreadable)
    reply["evaluate"] = describe(image) if image is not None else {"skipped": unreadable[0].reason}
    inspected = _inspect(path)
    reply["inspect"] = {"inspect": list(inspected) if isinstance(inspected, tuple) else inspected}
    if isinstance(inspected, tuple):
        reply["train"] = attempt(lambda: describe(decode(path)))
    return reply


def memory_mb(field):
    status = Path("/proc/self/status").read_text()
    return int(status.split(field + ":")[1].split()[0]) // 1024


for line in sys.stdin:
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident set size to the current one
    before = memory_mb("VmRSS")
    reply = attempt(lambda: read(Path(line.rstrip("\n"))))
    reply["grew_mb"] = memory_mb("VmHWM") - before
    reply["rss_mb"] = memory_mb("VmRSS")
    print(json.dumps(reply), flush=True)
"""


class Reader(Worker):
    """A worker process reading image files one at a time; a crash or a kill shows as {"crash": status}."""

    def __init__(self, model: Path) -> None:
        super().__init__(WORKER, str(model))

    def read(self, path: Path, timeout: float = 60.0) -> dict[str, Any]:
        reply = self.ask(str(path), timeout)
        if reply.get("rss_mb", 0) > 2 * BASELINE_MB:  # a fresh worker for the next file, as if alone
            self.restart()
        return reply

    def restart(self) -> None:
        """A fresh worker, so that the next peak RSS is that file's alone."""
        self.close()


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    worker = Reader(make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx"))
    yield worker
    worker.restart()


def check(reply: dict[str, Any], path: Path) -> None:
    """The property."""
    assert "crash" not in reply, f"reading {path} killed the process ({reply['crash']})"
    assert "exception" not in reply, reply["exception"]
    assert reply["grew_mb"] < PEAK_MB, f"reading {path} took {reply['grew_mb']} MB more"
    for what in ("classify", "evaluate", "inspect", "train"):
        result = reply.get(what, {})
        assert "exception" not in result, f"{what}: {result['exception']}"
        if "error" in result:
            assert "\n" not in result["error"] and str(path) in result["error"], result["error"]
    assert "label" in reply["classify"] or "error" in reply["classify"], reply
    evaluated = reply["evaluate"]
    assert evaluated.get("skipped") or (evaluated["dtype"] == "uint8" and evaluated["shape"][2] == 3), evaluated
    inspected = reply["inspect"]["inspect"]
    if isinstance(inspected, list):
        assert reply["train"]["dtype"] == "uint8" and reply["train"]["shape"] == [*inspected[2:], 3], reply
    else:
        assert inspected, "a skipped file needs a reason"


# --- files ---------------------------------------------------------------------------------------------


def png_claiming(width: int, height: int, rows: int | None = None) -> bytes:
    """A 1-bit grey PNG of `width` x `height` pixels, all black, with `rows` rows of data (None: all):
    a decompression bomb of about 110 KB for 30000 x 30000."""
    row = b"\0" + bytes((width + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height if rows is None else rows)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def png_with_chunk_claiming(length: int) -> bytes:
    """A 1x1 PNG whose IDAT chunk claims `length` bytes."""
    data = cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes()
    at = data.find(b"IDAT") - 4
    return data[:at] + struct.pack(">I", length) + data[at + 4:]


def claim_size(data: bytes, width: int, height: int) -> bytes:
    """`data` with its header's width and height replaced, where the format has them at a known place."""
    out = bytearray(data)
    if data.startswith(b"\x89PNG"):
        out[16:24] = struct.pack(">II", width, height)  # IHDR (its CRC now disagrees, as a hostile file's may)
    elif data.startswith(b"BM"):
        out[18:26] = struct.pack("<ii", min(width, 2**31 - 1), min(height, 2**31 - 1))
    elif data.startswith(b"\xff\xd8"):
        for marker in (b"\xff\xc0", b"\xff\xc2"):  # baseline or progressive frame header
            at = data.find(marker)
            if at > 0:
                out[at + 5:at + 9] = struct.pack(">HH", min(height, 65535), min(width, 65535))
    return bytes(out)


KINDS = {
    "bgr": lambda h, w: np.random.default_rng(h * w).integers(0, 256, (h, w, 3), np.uint8),
    "grey": lambda h, w: np.full((h, w), 128, np.uint8),
    "alpha": lambda h, w: np.full((h, w, 4), 200, np.uint8),
    "grey16": lambda h, w: np.full((h, w), 40000, np.uint16),
    "bgr16": lambda h, w: np.full((h, w, 3), 65535, np.uint16),
    "alpha16": lambda h, w: np.full((h, w, 4), 1000, np.uint16),
}
FORMATS = {".png": ("bgr", "grey", "alpha", "grey16", "bgr16", "alpha16"), ".jpg": ("bgr", "grey"),
           ".bmp": ("bgr", "grey", "alpha"), ".webp": ("bgr", "alpha"), ".tiff": tuple(KINDS)}


@st.composite
def image_files(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(sorted(FORMATS)))
    kind = draw(st.sampled_from(FORMATS[suffix]))
    height, width = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    data = (REPO / "tests" / "data" / "cmyk.jpg").read_bytes() if draw(st.integers(0, 9)) == 0 else \
        cv2.imencode(suffix, KINDS[kind](height, width))[1].tobytes()
    how = draw(st.sampled_from(["whole", "truncated", "flipped", "claims", "empty"]))
    if how == "truncated":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif how == "flipped":
        spots = draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)), min_size=1, max_size=8))
        data = bytes(b ^ dict(spots).get(i, 0) for i, b in enumerate(data))
    elif how == "claims":
        data = claim_size(data, draw(st.sampled_from([0, 1, 30000, 65535, 2**31 - 1, 2**32 - 1])),
                          draw(st.sampled_from([0, 1, 30000, 65535, 2**31 - 1, 2**32 - 1])))
    elif how == "empty":
        data = b""
    return suffix, data


@settings(max_examples=fuzz_examples(120))
@given(file=image_files())
@example(file=(".png", png_claiming(30000, 30000, rows=10)))  # a header that lies, with little data
@example(file=(".jpg", (REPO / "tests" / "data" / "cmyk.jpg").read_bytes()))
@example(file=(".png", png_with_chunk_claiming(0x4000000C)))  # found: 1 GB for a 70-byte file
@example(file=(".png", cv2.imencode(".png", np.zeros((1, 1), np.uint16))[1].tobytes()))
def test_images_are_read_or_named_as_skipped(file: tuple[str, bytes], reader: Reader, tmp_path_factory) -> None:
    suffix, data = file
    path = tmp_path_factory.mktemp("image") / f"fuzzed{suffix}"
    path.write_bytes(data)
    check(reader.read(path), path)


def test_a_png_chunk_claiming_gigabytes_is_refused_unread(reader: Reader, tmp_path: Path) -> None:
    """Found by fuzzing: OpenCV 5's PNG reader allocated what a chunk's length claims: 2 GB for 70 bytes."""
    path = tmp_path / "claims.png"
    path.write_bytes(png_with_chunk_claiming(2**31 - 1))
    reply = reader.read(path)
    check(reply, path)
    assert reply["classify"]["error"] == f"{path}: not a readable image (a PNG chunk claims 2147483647 bytes, " \
                                        "more than the file holds)"
    assert reply["evaluate"]["skipped"].startswith("a PNG chunk claims") and reply["inspect"]["inspect"]


def test_a_decompression_bomb_is_refused_before_it_takes_gigabytes(reader: Reader, tmp_path: Path) -> None:
    """Found while fuzzing: a 110 KB PNG of 30000 x 30000 black pixels took 5 GB in cv2.imread (OpenCV's
    own limit is 2^30 pixels), and past edgerec's limit cv2.imread raised cv2.error out of `classify`."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(30000, 30000))
    reader.restart()
    reply = reader.read(path)
    check(reply, path)
    assert reply["classify"]["error"].startswith(f"{path}: not a readable image (more than 67108864 pixels")
    assert "CV_IO_MAX_IMAGE_PIXELS" in reply["evaluate"]["skipped"]
