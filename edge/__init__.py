"""edgerec's on-device runtime, and its small Python API (docs/python-api.md):

    import edge
    model = edge.Model.load()                       # a model file (None: the embedded ImageNet model)
    model.classify([bgr_frame], top_k=3)            # -> [Prediction(top=[Category(label, index, score), ...])]
    edge.run(edge.RunOptions(edge.SourceOptions("0")), on_change=print)   # the live loop until it ends
    edge.teach(edge.TeachOptions(Path("photos"), Path("shelf.onnx")))     # a new head, no torch

The names load when first used (PEP 562), so `import edge` stays cheap and imports no part of the package:
what lives where is docs/architecture.md, and each folder's `__init__` says what it may import.

No cloud call anywhere: ONNX Runtime 1.32 otherwise creates a device id and event store for Microsoft
telemetry in ~/.cache on its first session. The opt-out must be in the environment before onnxruntime is
imported, so it is set here, where every edgerec import passes first (a value the user set is kept).

Decompression bombs: OpenCV refuses to decode an image of more than OPENCV_IO_MAX_IMAGE_PIXELS pixels
(read once, when cv2 loads). Its default, 2^30, lets a 109 KB PNG claiming 30000 x 30000 take 5 GB of
memory in cv2.imread; 2^26 (67 megapixels, more than any camera edgerec reads) keeps a decode under 200 MB.
"""

import importlib
import os

MAX_IMAGE_PIXELS = 2**26

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))

_API = {
    # a model file: load, classify
    "Model": "edge.core.model",
    "Prediction": "edge.core.model",
    "Category": "edge.core.model",
    # the live run and its options
    "run": "edge.loop.pipeline",
    "RunOptions": "edge.loop.options",
    "RunSummary": "edge.loop.options",
    "SourceOptions": "edge.live.capture",
    "RegionOptions": "edge.live.regions",
    "Result": "edge.live.result",
    # teach: a new head on the device
    "teach": "edge.learn.head",
    "TeachOptions": "edge.learn.head",
    "TeachReport": "edge.learn.head",
    # every user mistake is one of these, with a one-line message
    "EdgerecError": "edge.errors",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> object:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'edge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
