"""Random small file trees for the file-ops suite: a seeded `World` in BFCL's GorillaFileSystem shape.

A world is /workspace with 3-4 top folders, some with sub-folders, each holding a few small text files whose
names (`<stem>_<number>.<ext>`) and lines are drawn from fixed word lists, so the same random stream always
builds the same tree. `World.files` lists every file with its folder path, for the task families
(fileops_tasks.py) to pick from. It does not make tasks or run tools.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

ROOT = "workspace"
TOP_DIRS = ("notes", "reports", "data", "projects", "archive", "drafts", "logs", "docs", "inbox", "research",
            "budget", "travel", "recipes", "photos", "music", "backup", "shared", "clients", "meetings", "scripts",
            "papers", "personal", "school", "garden", "fitness", "letters", "finance", "events", "health", "home")
SUB_DIRS = ("old", "current", "alpha", "beta", "misc", "q1", "q2", "q3", "q4", "team", "drafts", "final", "raw",
            "clean", "summer", "winter", "north", "south", "west", "east")
STEMS = ("memo", "plan", "summary", "todo", "ledger", "meeting", "draft", "report", "journal", "results",
         "schedule", "letter", "agenda", "invoice", "contract", "outline", "review", "checklist", "minutes",
         "proposal", "roster", "inventory", "recipe", "itinerary", "receipt", "survey", "estimate", "notice",
         "brief", "timeline")
EXTS = ("txt", "md", "csv", "log")
PEOPLE = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar")
VERBS = ("reviewed", "approved", "moved", "sent", "updated", "signed", "checked", "archived", "shared", "printed")
NOUNS = ("budget", "contract", "schedule", "invoice", "report", "design", "order", "plan", "survey", "deadline")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class FileRef:
    """A file of the world: its folder path from the workspace root, its name and its text."""

    dirs: tuple[str, ...]
    name: str
    text: str

    @property
    def path(self) -> str:
        return "/".join((*self.dirs, self.name))

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]

    @property
    def ext(self) -> str:
        return self.name.rsplit(".", 1)[1]


@dataclass
class World:
    """A file tree under construction: nested `contents` dicts and the list of its files."""

    root: dict = field(default_factory=dict)
    files: list[FileRef] = field(default_factory=list)

    def config(self) -> dict:
        """The tree as a GorillaFileSystem initial config (what VirtualFileSystem.from_bfcl loads)."""
        return {"root": {ROOT: {"type": "directory", "contents": self.root}}}

    def folder(self, dirs: tuple[str, ...]) -> dict:
        node = self.root
        for d in dirs:
            node = node[d]["contents"]
        return node

    def names(self) -> list[str]:
        """Every entry name in the tree (files and folders), for checking that a search term is unique."""
        out: list[str] = []

        def walk(contents: dict) -> None:
            for name, body in contents.items():
                out.append(name)
                if body["type"] == "directory":
                    walk(body["contents"])

        walk(self.root)
        return out

    def add_file(self, dirs: tuple[str, ...], name: str, text: str) -> FileRef:
        self.folder(dirs)[name] = {"type": "file", "content": text}
        ref = FileRef(dirs, name, text)
        self.files.append(ref)
        return ref

    def add_dir(self, dirs: tuple[str, ...], name: str) -> None:
        self.folder(dirs)[name] = {"type": "directory", "contents": {}}

    def subdirs(self, dirs: tuple[str, ...]) -> list[str]:
        return [n for n, b in self.folder(dirs).items() if b["type"] == "directory"]

    def files_in(self, dirs: tuple[str, ...]) -> list[FileRef]:
        return [f for f in self.files if f.dirs == dirs and f.name in self.folder(dirs)]


def line(rng: random.Random) -> str:
    """One line of file text, e.g. 'carol approved the invoice on friday (17)'."""
    who, did, what, day = rng.choice(PEOPLE), rng.choice(VERBS), rng.choice(NOUNS), rng.choice(DAYS)
    return f"{who} {did} the {what} on {day} ({rng.randint(1, 99)})"


def text(rng: random.Random, lines: int) -> str:
    rows: list[str] = []
    while len(rows) < lines:
        row = line(rng)
        if row not in rows:
            rows.append(row)
    return "\n".join(rows) + "\n"


def file_name(rng: random.Random, taken: set[str], ext: str | None = None) -> str:
    while True:
        name = f"{rng.choice(STEMS)}_{rng.randint(10, 99)}.{ext or rng.choice(EXTS)}"
        if name not in taken:
            taken.add(name)
            return name


def make_world(rng: random.Random) -> World:
    """A random world: 3-4 top folders with 2-3 files and 0-2 sub-folders of 1-3 files; 1-2 files at the top."""
    world = World()
    taken: set[str] = set()  # file names are unique across the whole tree, so a file's name finds it
    for top in rng.sample(TOP_DIRS, rng.randint(3, 4)):
        world.add_dir((), top)
        for _ in range(rng.randint(2, 3)):
            world.add_file((top,), file_name(rng, taken), text(rng, rng.randint(2, 5)))
        for sub in rng.sample(SUB_DIRS, rng.randint(0, 2)):
            world.add_dir((top,), sub)
            for _ in range(rng.randint(1, 3)):
                world.add_file((top, sub), file_name(rng, taken), text(rng, rng.randint(2, 5)))
    for _ in range(rng.randint(1, 2)):
        world.add_file((), file_name(rng, taken), text(rng, rng.randint(2, 4)))
    return world


def fresh_name(world: World, rng: random.Random, stem: str, ext: str) -> str:
    """A file name used nowhere in the tree yet, e.g. 'summary_31.txt'."""
    taken = set(world.names())
    while True:
        name = f"{stem}_{rng.randint(10, 99)}.{ext}"
        if name not in taken:
            return name


def unique_token(world: World, ref: FileRef) -> bool:
    """True if the file's stem names only this file: no other entry's name contains it (find matches substrings)."""
    return sum(ref.stem in n for n in world.names()) == 1
