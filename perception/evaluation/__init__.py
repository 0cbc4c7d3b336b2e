"""Comparing temporal heads: test conditions, measurements, the report."""
