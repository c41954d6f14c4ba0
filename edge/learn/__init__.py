"""Teaching on the device, no torch: a new head on a model's `features` (head, with its NumPy fit in
softmax_regression, written with edge.core.onnx_edit), its photos (data), and region crops
collected from the live loop off its thread (collect).

Imports: edge.live (regions, results), edge.tools (evaluation figures), edge.core. Never a sink, the web,
the loop or the command line.
"""
