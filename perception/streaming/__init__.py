"""Streaming inference: sources, preprocessing, the runner, sinks."""
