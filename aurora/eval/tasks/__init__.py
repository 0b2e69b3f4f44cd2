"""Benchmarks, one module each; see `aurora.eval.task` for what a module provides and
`aurora.eval.registry` for how they are found."""
