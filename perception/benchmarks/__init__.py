"""Benchmarks behind `perception benchmark ...`: each module has add_arguments(parser) and run(args) -> dict."""
