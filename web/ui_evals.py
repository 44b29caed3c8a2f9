"""The UI's eval-results page: /ui/evals and its JSON under /ui/api/evals/... (work in progress).

Serves result rows and gate verdicts read from the evals directory; holds no statistics of its own (those
are the evals package's). Not here: the UI shell, static-file route and plotly vendoring (web/ui.py).
"""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
