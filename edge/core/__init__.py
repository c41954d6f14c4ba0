"""The model file: load and validate it (model), its metadata schema (metadata), the one geometric
preprocessing step (preprocess), execution devices (devices), image files and decoding (datasets, decode),
the novelty score and its place in the graph (novelty, novelty_graph), the ModelProto fields edgerec edits
(onnx_edit).

Imports: nothing of edge but the shared helpers (edge.errors, files, logs, progress). Knows nothing of
cameras, regions, sinks or the web. Training imports it, never the other way.
"""
