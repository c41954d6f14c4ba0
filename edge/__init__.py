"""edgerec's on-device runtime.

No cloud call anywhere: ONNX Runtime 1.32 otherwise creates a device id and event store for Microsoft
telemetry in ~/.cache on its first session. The opt-out must be in the environment before onnxruntime is
imported, so it is set here, where every edgerec import passes first (a value the user set is kept).

Decompression bombs: OpenCV refuses to decode an image of more than OPENCV_IO_MAX_IMAGE_PIXELS pixels
(read once, when cv2 loads). Its default, 2^30, lets a 109 KB PNG claiming 30000 x 30000 take 5 GB of
memory in cv2.imread; 2^26 (67 megapixels, more than any camera edgerec reads) keeps a decode under 200 MB.
"""

import os

MAX_IMAGE_PIXELS = 2**26

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
