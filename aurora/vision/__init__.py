"""Vision encoders and token reduction: merging as pure functions, a tower that applies it."""
