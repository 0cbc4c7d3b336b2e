#!/usr/bin/env python
"""Thin entry point: `python scripts/train.py [options]` = `perception train [options]`."""
import sys

from perception.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
