"""Connectors map vision features to the language model's embedding space."""
