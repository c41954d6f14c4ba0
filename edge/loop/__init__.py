"""The loop that wires cameras, models and sinks together (pipeline: open, run, close), hot reload
(reload), and what a run is asked and reports (options: RunOptions, RunSummary), kept apart so that the
config builds options without importing the loop.

Imports: edge.web, edge.sinks, edge.live, edge.core. Only edge.app and `edgerec bench` import it.
"""
