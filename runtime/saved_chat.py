"""Save and load a conversation: its transcript (messages + exact ids) as JSON and its KV cache beside it.

`NAME.chat.json` holds messages/ids; `NAME.kv.safetensors` holds the KV (kv_cache.py, checked against the model).
Both are written to temp files and renamed. Loading checks that the KV's ids are a prefix of the transcript's ids.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from tinygpt.runtime.kv_cache import KVCacheError, Session
from tinygpt.runtime.transcript import Transcript


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.name.removesuffix(".chat.json")
    return p.with_name(stem + ".chat.json"), p.with_name(stem + ".kv.safetensors")


def save_chat(engine, transcript: Transcript, session: Session, path: str | Path) -> Path:
    """Write transcript + KV. Returns the transcript path."""
    chat_path, kv_path = _paths(path)
    engine.save_session(session, kv_path)
    data = {"format": "tinygpt-chat/1", "model_fingerprint": engine.loaded.fingerprint,
            "tools": transcript.tools, "messages": transcript.messages, "ids": transcript.ids,
            "pending_close": transcript._pending_close}
    tmp = chat_path.with_name(f".{chat_path.name}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, chat_path)
    return chat_path


def load_chat(engine, path: str | Path) -> tuple[Transcript, Session]:
    """Read a saved chat; raises KVCacheError if the files are missing, corrupt or from another model."""
    chat_path, kv_path = _paths(path)
    if not chat_path.exists():
        raise KVCacheError(f"no saved chat at {chat_path}")
    try:
        data = json.loads(chat_path.read_text(encoding="utf-8"))
        ids = [int(i) for i in data["ids"]]
        messages = list(data["messages"])
    except (ValueError, KeyError, TypeError) as exc:
        raise KVCacheError(f"{chat_path} is not a readable saved chat ({exc})") from exc
    session = engine.load_session(kv_path)
    if ids[: len(session.ids)] != session.ids:  # the KV may lag the transcript (e.g. unread tool results)
        raise KVCacheError(f"{kv_path} does not hold the ids of {chat_path}; they were saved apart")
    t = Transcript(engine=engine, tools=data.get("tools"), messages=messages, ids=ids)
    t._pending_close = data.get("pending_close", "")
    return t, session
