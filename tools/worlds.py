"""Embedded tool worlds: small initial file trees (BFCL GorillaFileSystem shape) for demos and tests.

`default_world()` is what `fs:virtual` starts from. It does NOT hold BFCL's tasks (those come from the
bfcl-eval wheel) and nothing here touches the disk.
"""
from __future__ import annotations

import copy


def _file(text: str) -> dict:
    return {"type": "file", "content": text}


def _dir(**entries: dict) -> dict:
    return {"type": "directory", "contents": dict(entries)}


_DEFAULT = {"root": {"workspace": _dir(**{
    "README.md": _file("# Workspace\nNotes, reports and a small data set for trying the file tools.\n"),
    "notes": _dir(**{
        "todo.txt": _file("buy milk\nfinish the quarterly report\ncall Alice about the budget\n"),
        "ideas.txt": _file("Collaboration leads to success.\nInnovation ignites growth.\n"),
    }),
    "reports": _dir(**{
        "q1_report.txt": _file("Q1 revenue: 120\nQ1 costs: 80\nbudget analysis: on track\n"),
        "q2_report.txt": _file("Q2 revenue: 150\nQ2 costs: 95\nbudget analysis: over by 5\n"),
        "archive": _dir(),
    }),
    "data": _dir(**{
        "measurements.csv": _file("day,temp\n1,21.5\n2,22.1\n3,19.8\n4,23.0\n"),
        ".cache": _file("hidden scratch data\n"),
    }),
})}}


def default_world() -> dict:
    """A fresh copy of the default tree: /workspace with notes/, reports/ (+archive/), data/ and a README."""
    return copy.deepcopy(_DEFAULT)
