"""Small fixture data in each benchmark's published format, and a rule-based judge server."""
