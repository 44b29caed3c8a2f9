"""tinygpt.tools: the tool registry (schemas from signatures) and the file-system sandbox.

Imports `traces` only.
"""
