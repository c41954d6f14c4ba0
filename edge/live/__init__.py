"""A camera at run time, below the sinks: sources and their grabber threads (capture), motion, regions and
their triggers, the scheduler that batches due regions per model, smoothing, the overlay, and the results
the sinks read (result: Result, FrameResult; stages: timers).

Imports: edge.core and the shared helpers. Never a sink, the web, or the loop that wires them (edge.loop).
"""
