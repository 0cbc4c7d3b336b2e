#!/usr/bin/env python
"""Thin entry point: `python scripts/infer.py SOURCE --checkpoint CKPT ...` = `perception infer ...`."""
import sys

from perception.cli import main

if __name__ == "__main__":
    sys.exit(main(["infer", *sys.argv[1:]]))
