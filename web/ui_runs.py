"""The UI's training-runs page: /ui/runs and its JSON under /ui/api/runs/... (work in progress).

Lists trainer run directories and streams their metrics JSONL from an offset for live curves. Not here:
the UI shell, static-file route and plotly vendoring.
"""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
