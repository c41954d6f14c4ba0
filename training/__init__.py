"""edgerec's training package: fine-tune, export and quantize models for the edge runtime."""

import edge  # noqa: F401  (sets the onnxruntime telemetry opt-out before onnxruntime is imported)
