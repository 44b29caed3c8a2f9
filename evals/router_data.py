"""A labelled request set for the router, built from the suites' own tasks: four domains, and `general`.

`fileops`: the first turn of every fileops task, offered the file-system tools; and from BFCL's multi-turn tasks
with no file system (bfcl-other-domains), those that involve one API only, labelled by it: `trading`
(TradingBot), `vehicle` (VehicleControlAPI), `travel` (TravelAPI) — tasks that mix APIs are left out (their
domain is not one). Each row is `{"text", "tools", "domain", "group", "split", "task_id"}` as `tinygpt route
train --data` reads it. Rows with the same first turn (fileops prompts repeat across worlds; BFCL's categories
repeat an entry's) are one group, and a hash of the group puts it in `train` or `heldout` (about 30%), so no
heldout text was trained on. `general` is what no specialist should take (the policy sends it to the
generalist): BFCL's `irrelevance` questions (functions offered that do not apply; `live_irrelevance` was tried
and left out: its 884 finance and web API questions pulled trading requests to `general`) and the
short chat requests of router_general.py (grouped by template). It runs no model and writes nothing (the CLI
writes the file).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tinygpt.evals import bfcl_domains, fileops
from tinygpt.evals.bfcl_wheel import require
from tinygpt.evals.router_general import general_requests

BFCL_DOMAINS = {"TradingBot": "trading", "VehicleControlAPI": "vehicle", "TravelAPI": "travel"}
SPLITS = ("train", "heldout")
HELDOUT_SHARE = 0.3
GENERAL = "general"  # must match router.policy.GENERAL: requests for the generalist, never a specialist
IRRELEVANCE = ("BFCL_v4_irrelevance.json",)
GENERATED = 400  # general chat requests from the template generator


def _row(text: str, tools: list[str], domain: str, task_id: str, group: str | None = None) -> dict:
    group = group or f"{domain}/{hashlib.blake2b(text.encode(), digest_size=8).hexdigest()}"
    digest = hashlib.blake2b(group.encode(), digest_size=4).digest()
    split = "heldout" if int.from_bytes(digest, "big") / 2**32 < HELDOUT_SHARE else "train"
    return {"text": text, "tools": tools, "domain": domain, "group": group, "split": split, "task_id": task_id}


def fileops_rows() -> list[dict]:
    tools = None
    rows = []
    for split in fileops.SPLITS:
        for task in fileops.tasks(split):
            tools = tools or sorted(fileops.start(task).toolset.names)  # every fileops task offers the same
            rows.append(_row(task.turns[0], tools, "fileops", task.id))
    return rows


def bfcl_rows() -> list[dict]:
    rows = []
    for task in bfcl_domains.tasks("test"):
        classes = task.data.entry["involved_classes"]
        if len(classes) != 1 or classes[0] not in BFCL_DOMAINS:
            continue
        tools = sorted({doc["name"] for doc in task.data.entry["function"]})
        rows.append(_row(task.turns[0], tools, BFCL_DOMAINS[classes[0]], task.id))
    return rows


def general_rows() -> list[dict]:
    """BFCL's irrelevance questions (first turn's user and system text, the functions offered) and the generated
    chat requests, all labelled `general`."""
    rows = []
    data = Path(require()) / "data"
    for name in IRRELEVANCE:
        for line in (data / name).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            text = "\n".join(m["content"] for m in entry["question"][0] if m["role"] in ("user", "system"))
            tools = sorted({doc["name"] for doc in entry["function"]})
            if text.strip():
                rows.append(_row(text, tools, GENERAL, entry["id"]))
    for k, (text, group) in enumerate(general_requests(GENERATED)):
        rows.append(_row(text, [], GENERAL, f"general-chat-{k}", group=group))
    return rows


def labelled_rows(split: str | None = None) -> list[dict]:
    """Every labelled row, or those of `split` (train | heldout)."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
    rows = fileops_rows() + bfcl_rows() + general_rows()
    return [r for r in rows if split is None or r["split"] == split]
