"""tinygpt.runtime: model loading, the generation engine with persistent KV, grammar backends, agent loop.

Imports `tools`, `traces` and `kernels` only; never `web`, `evals`, `trainer`, `router` or the CLI.
"""
