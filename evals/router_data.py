"""A labelled request set for the router, built from the suites' own tasks: four domains.

`fileops`: the first turn of every fileops task, offered the file-system tools; and from BFCL's multi-turn tasks
with no file system (bfcl-other-domains), those that involve one API only, labelled by it: `trading`
(TradingBot), `vehicle` (VehicleControlAPI), `travel` (TravelAPI) — tasks that mix APIs are left out (their
domain is not one). Each row is `{"text", "tools", "domain", "group", "split", "task_id"}` as `tinygpt route
train --data` reads it. Rows with the same first turn (fileops prompts repeat across worlds; BFCL's categories
repeat an entry's) are one group, and a hash of the group puts it in `train` or `heldout` (about 30%), so no
heldout text was trained on. It runs no model and writes nothing (the CLI writes the file).
"""
from __future__ import annotations

import hashlib

from tinygpt.evals import bfcl_domains, fileops

BFCL_DOMAINS = {"TradingBot": "trading", "VehicleControlAPI": "vehicle", "TravelAPI": "travel"}
SPLITS = ("train", "heldout")
HELDOUT_SHARE = 0.3


def _row(text: str, tools: list[str], domain: str, task_id: str) -> dict:
    group = f"{domain}/{hashlib.blake2b(text.encode(), digest_size=8).hexdigest()}"
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


def labelled_rows(split: str | None = None) -> list[dict]:
    """Every labelled row, or those of `split` (train | heldout)."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
    rows = fileops_rows() + bfcl_rows()
    return [r for r in rows if split is None or r["split"] == split]
