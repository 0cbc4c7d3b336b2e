#!/usr/bin/env python
"""Thin entry point: `python scripts/evaluate.py [options]` = `perception evaluate [options]`."""
import sys

from perception.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
