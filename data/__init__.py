"""Placeholder: the package API is assembled once the modules land."""
