"""edgerec's on-device runtime.

No cloud call anywhere: ONNX Runtime 1.32 otherwise creates a device id and event store for Microsoft
telemetry in ~/.cache on its first session. The opt-out must be in the environment before onnxruntime is
imported, so it is set here, where every edgerec import passes first (a value the user set is kept).
"""

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
