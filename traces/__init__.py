"""tinygpt.traces: the `.atraj` trajectory format, its crash-safe writer/reader, and traces -> training data.

Imports nothing internal.
"""
