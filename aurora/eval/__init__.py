"""Evaluation: benchmarks as data plus small scoring functions, judges and metrics.

`synth_score` scores captions of Aurora's synthetic clips (`aurora.synth`) by reading their
attributes back out of the text.
"""
