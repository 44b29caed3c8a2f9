"""tinygpt.traces: the `.atraj` trajectory format, its crash-safe writer/reader, and traces -> training data.

Imports nothing internal. This file re-exports the light, msgspec-only surface the runtime records with;
`tinygpt.traces.to_data` (numpy, datasketch) is imported only by whoever builds training data.
"""
from tinygpt.traces.atraj import (
    FORMAT_VERSION, End, Header, Message, ModelCall, Reward, RouteDecision, Sampling, ToolCall, ToolResult,
    ToolSpec, Verdict,
)
from tinygpt.traces.errors import CorruptTraceError, TraceError, TraceWriteError
from tinygpt.traces.reader import Episode, list_traces, read_episode
from tinygpt.traces.recorder import Recorder

__all__ = [
    "FORMAT_VERSION", "End", "Header", "Message", "ModelCall", "Reward", "RouteDecision", "Sampling", "ToolCall",
    "ToolResult", "ToolSpec", "Verdict", "CorruptTraceError", "TraceError", "TraceWriteError", "Episode",
    "list_traces", "read_episode", "Recorder",
]
