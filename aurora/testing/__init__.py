"""Helpers for Aurora test suites (fixtures built with PyAV and PIL)."""
