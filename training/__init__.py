"""Training: fine-tune a compact CNN on image folders and export self-describing ONNX files (needs torch).

OpenMP threads that wait for work by spinning steal the cores they share with other busy processes: on a
2-core machine at a load average of about 10, training steps ran 2.5-4x faster with passive waiting, and
within noise of spinning when the machine was idle (docs/training.md). The setting must be made before
torch loads OpenMP, i.e. before the first `import torch`; an explicit OMP_WAIT_POLICY in the environment
wins. Importing `edge` first sets the onnxruntime telemetry opt-out the same way.
"""

import os

import edge  # noqa: F401

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
