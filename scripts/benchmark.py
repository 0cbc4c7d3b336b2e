#!/usr/bin/env python
"""Thin entry point: `python scripts/benchmark.py heads|events|readers ...` = `perception benchmark ...`."""
import sys

from perception.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
