"""Constructs the export stack is built from."""
