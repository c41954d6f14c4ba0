"""Offline tools over image files: classify, evaluate, robustness (with camera corruptions), explain
(occlusion maps), and the figures they draw.

Imports: edge.core and the shared helpers only; training uses them too.
"""
