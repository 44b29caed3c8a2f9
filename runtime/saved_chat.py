"""Save and load a conversation: its transcript (messages + exact ids) as JSON and its KV cache beside it.

`NAME.chat.json` holds messages/ids; `NAME.kv.safetensors` holds the KV (kv_cache.py, checked against the model).
Saving never overwrites a file it did not write: an existing NAME.chat.json / NAME.kv.safetensors must itself
be a tinygpt saved chat / KV file, else the save is refused. Both files are written to temp files first and
renamed only once both are complete, so a failed save leaves no half file and the old pair untouched.
Loading checks the model, the tool list and that the KV's ids are a prefix of the transcript's ids.
Not here: the REPL commands (tinygpt/repl.py), the KV format itself (kv_cache.py).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from tinygpt.runtime.kv_cache import FORMAT as KV_FORMAT, KVCacheError, Session, saved_format
from tinygpt.runtime.transcript import Transcript

FORMAT = "tinygpt-chat/1"
ROLES = ("system", "user", "assistant", "tool")


class SavedChatError(KVCacheError):
    """A saved chat cannot be written (it would overwrite someone else's file) or read (corrupt, foreign)."""


def chat_paths(path: str | Path) -> tuple[Path, Path]:
    """The (transcript, KV) file pair for a user's PATH (with or without the .chat.json suffix)."""
    p = Path(path).expanduser()
    stem = p.name.removesuffix(".chat.json")
    if not stem:
        raise SavedChatError(f"{path!r} names no file; give a path such as chats/mine")
    return p.with_name(stem + ".chat.json"), p.with_name(stem + ".kv.safetensors")


def _is_our_chat(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def _is_our_kv(path: Path) -> bool:
    """True if `path` is a KV file tinygpt wrote (reads the safetensors header only)."""
    return saved_format(path) == KV_FORMAT


def _check_replaceable(chat_path: Path, kv_path: Path) -> bool:
    """Raise unless each existing target is a saved chat file; True if a saved chat will be replaced."""
    replaced = False
    for target, ours in ((chat_path, _is_our_chat), (kv_path, _is_our_kv)):
        if target.is_dir():
            raise SavedChatError(f"{target} is a directory; pick another name")
        if target.exists() or target.is_symlink():
            if not ours(target):
                raise SavedChatError(f"{target} exists and is not a tinygpt saved chat; refusing to overwrite "
                                     "it (pick another name)")
            replaced = True
    return replaced


def save_chat(engine, transcript: Transcript, session: Session, path: str | Path) -> tuple[Path, bool]:
    """Write transcript + KV. Returns the transcript path and whether an earlier saved chat was replaced."""
    chat_path, kv_path = chat_paths(path)
    replaced = _check_replaceable(chat_path, kv_path)
    above = next((p for p in chat_path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise SavedChatError(f"{above} is a file, so nothing can be saved under it; pick another path")
    chat_path.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}.tmp"
    kv_tmp = kv_path.with_name(f".{kv_path.name}.{tag}.safetensors")
    chat_tmp = chat_path.with_name(f".{chat_path.name}.{tag}")
    data = {"format": FORMAT, "model_fingerprint": engine.loaded.fingerprint,
            "tools": transcript.tools, "messages": transcript.messages, "ids": transcript.ids,
            "pending_close": transcript._pending_close}
    try:
        engine.save_session(session, kv_tmp)
        with open(chat_tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, ensure_ascii=False))
            f.flush()
            os.fsync(f.fileno())
        os.replace(kv_tmp, kv_path)
        os.replace(chat_tmp, chat_path)
    finally:
        for tmp in (kv_tmp, chat_tmp):
            if tmp.exists():
                tmp.unlink()
    return chat_path, replaced


def _check_messages(messages: list) -> None:
    """Raise ValueError unless each item is a chat message as the transcript writes them."""
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content") or "", str):
            raise ValueError(f"message {i} is not a chat message (role {ROLES}, text content)")
        for call in m.get("tool_calls") or ():
            fn = call.get("function") if isinstance(call, dict) else None
            if not (isinstance(fn, dict) and isinstance(fn.get("name"), str)
                    and isinstance(fn.get("arguments", {}), dict)):
                raise ValueError(f"message {i} has a tool call without a name and an arguments object")


def load_chat(engine, path: str | Path, tools: list[dict] | None = None) -> tuple[Transcript, Session]:
    """Read a saved chat made by this model with these `tools`; raises SavedChatError/KVCacheError if the files
    are missing, corrupt, from another model or tool list, or were saved apart."""
    chat_path, kv_path = chat_paths(path)
    if chat_path.is_dir():
        raise SavedChatError(f"{chat_path} is a directory, not a saved chat")
    if not chat_path.exists():
        raise SavedChatError(f"no saved chat at {chat_path}")
    try:
        data = json.loads(chat_path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT}")
        ids = [int(i) for i in data["ids"]]
        messages = list(data["messages"])
        pending = data.get("pending_close", "")
        if not isinstance(pending, str):
            raise ValueError("pending_close has the wrong type")
        _check_messages(messages)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise SavedChatError(f"{chat_path} is not a readable saved chat ({exc})") from exc
    if data.get("model_fingerprint") != engine.loaded.fingerprint:
        raise SavedChatError(f"{chat_path} was saved with another model; load it with that model")
    if any(i < 0 or i >= engine.loaded.vocab_size for i in ids):
        raise SavedChatError(f"{chat_path} holds token ids outside this model's vocabulary")
    if (data.get("tools") or None) != (tools or None):
        raise SavedChatError(f"{chat_path} was saved with another tool list; load it where the same tools are on")
    session = engine.load_session(kv_path)
    if ids[: len(session.ids)] != session.ids:  # the KV may lag the transcript (e.g. unread tool results)
        raise SavedChatError(f"{kv_path} does not hold the ids of {chat_path}; they were saved apart")
    t = Transcript(engine=engine, tools=data.get("tools"), messages=messages, ids=ids)
    t._pending_close = pending
    return t, session
