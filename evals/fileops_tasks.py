"""The file-ops task families: each draws one task on a random world and writes its gold solution.

A family is a function (rng, world) -> Plan | None (None: this world has nothing it can ask about). Its Plan
holds the user turns, the gold steps of each turn (the calls, then the answer) and what each answer must say.
Most families make the model use what an earlier call returned: the folder a `find` reports is where it must
`cd`, the line `tail`/`grep`/`sort`/`cat` returns is what it must write, the files `ls` lists are what it must
move or delete, and in the two-turn families the second turn builds on the first. Every gold solution ends with
a call that changes the file system, so the end state tells a finished task from one stopped a call short.
The calls follow the GorillaFileSystem rules (cd one folder at a time; cp/mv/echo/touch only in the current
folder). This module does not check episodes or assign splits (fileops.py, generated.py).
"""
from __future__ import annotations

import random

from tinygpt.evals.fileops_world import STEMS, FileRef, World, fresh_name, line, unique_token
from tinygpt.evals.generated import Plan, c, one_turn
from tinygpt.evals.suite import Call


def into(dirs: tuple[str, ...]) -> list[tuple[Call, ...]]:
    return [c("cd", folder=d) for d in dirs]


def out_of(dirs: tuple[str, ...]) -> list[tuple[Call, ...]]:
    return [c("cd", folder="..") for _ in dirs]


def where(dirs: tuple[str, ...]) -> str:
    return "/".join(dirs) if dirs else "the top of the workspace"


def pick(rng: random.Random, world: World, *, nested: bool = True, findable: bool = False,
         min_lines: int = 1) -> FileRef | None:
    """A random file (in a folder if `nested`; with a stem no other name contains if `findable`)."""
    options = [f for f in world.files if (f.dirs or not nested) and len(f.text.splitlines()) >= min_lines
               and (not findable or unique_token(world, f))]
    return rng.choice(options) if options else None


def find_copy(rng: random.Random, world: World) -> Plan | None:
    f = pick(rng, world, findable=True)
    if f is None:
        return None
    copy = f"{f.stem}_backup.{f.ext}"
    return one_turn(f"There is a file named {f.name} somewhere in the workspace. Make a copy of it named {copy} "
                    "in the same folder.",
                    [c("find", path=".", name=f.name), *into(f.dirs), c("cp", source=f.name, destination=copy),
                     f"Copied {f.path} to {copy} in {where(f.dirs)}."])


def find_tail_write(rng: random.Random, world: World) -> Plan | None:
    f = pick(rng, world, findable=True)
    if f is None:
        return None
    out = fresh_name(world, rng, "last_line", "txt")
    last = f.text.splitlines()[-1]
    return one_turn(f"A file whose name contains '{f.stem}' is somewhere in the workspace. Write its last line "
                    f"into a new file {out} at the top of the workspace.",
                    [c("find", path=".", name=f.stem), *into(f.dirs), c("tail", file_name=f.name, lines=1),
                     *out_of(f.dirs), c("touch", file_name=out), c("echo", content=last, file_name=out),
                     f"{out} now holds the last line of {f.path}: {last}"])


def count_record(rng: random.Random, world: World) -> Plan | None:
    f = pick(rng, world)
    if f is None:
        return None
    mode, unit = rng.choice((("l", "lines"), ("w", "words")))
    n = len(f.text.splitlines()) if mode == "l" else len(f.text.split())
    out = fresh_name(world, rng, "count", "txt")
    return one_turn(f"How many {unit} are in {f.path}? Write just the number into a new file {out} in the same "
                    "folder, and tell me the number.",
                    [*into(f.dirs), c("wc", file_name=f.name, mode=mode), c("touch", file_name=out),
                     c("echo", content=str(n), file_name=out), f"{f.path} has {n} {unit}."], (str(n),))


def grep_save(rng: random.Random, world: World) -> Plan | None:
    f = pick(rng, world, min_lines=2)
    if f is None:
        return None
    rows = f.text.splitlines()
    words = sorted({w for r in rows for w in r.split() if w.isalpha() and len(w) > 3})
    partial = [w for w in words if 0 < sum(w in r for r in rows) < len(rows)]
    pattern = rng.choice(partial or words)
    hits = [r for r in rows if pattern in r]
    out = fresh_name(world, rng, f"{pattern}_lines", "txt")
    return one_turn(f"Put every line of {f.path} that contains '{pattern}' into a new file {out} in the same "
                    "folder, one line each.",
                    [*into(f.dirs), c("grep", file_name=f.name, pattern=pattern), c("touch", file_name=out),
                     c("echo", content="\n".join(hits), file_name=out),
                     f"Saved {len(hits)} matching line{'s' if len(hits) != 1 else ''} to {out}."])


def sort_save(rng: random.Random, world: World) -> Plan | None:
    f = pick(rng, world, min_lines=3)
    if f is None:
        return None
    out = fresh_name(world, rng, "sorted", f.ext)
    return one_turn(f"Save the lines of {f.path}, sorted alphabetically, as a new file {out} in the same folder.",
                    [*into(f.dirs), c("sort", file_name=f.name), c("touch", file_name=out),
                     c("echo", content="\n".join(sorted(f.text.splitlines())), file_name=out),
                     f"Wrote the sorted lines of {f.path} to {out}."])


def _mixed_folder(rng: random.Random, world: World) -> tuple[tuple[str, ...], str, list[str]] | None:
    """A folder holding files of some extension and of others: (folder, extension, names with it)."""
    options = []
    for dirs in {f.dirs for f in world.files if f.dirs}:
        names = [f.name for f in world.files_in(dirs)]
        for ext in sorted({n.rsplit(".", 1)[1] for n in names}):
            hits = [n for n in names if n.endswith("." + ext)]
            if len(hits) < len(names):
                options.append((dirs, ext, hits))
    return rng.choice(sorted(options)) if options else None


def organize_ext(rng: random.Random, world: World) -> Plan | None:
    chosen = _mixed_folder(rng, world)
    if chosen is None:
        return None
    dirs, ext, hits = chosen
    new = next(n for n in (f"{ext}_files", f"all_{ext}", f"{ext}_archive") if n not in world.names())
    return one_turn(f"In {where(dirs)}, make a folder called {new} and move every .{ext} file of {where(dirs)} "
                    "into it.",
                    [*into(dirs), c("ls"), c("mkdir", dir_name=new),
                     *[c("mv", source=n, destination=new) for n in hits],
                     f"Moved {len(hits)} .{ext} file{'s' if len(hits) != 1 else ''} into {where(dirs)}/{new}."])


def cleanup_ext(rng: random.Random, world: World) -> Plan | None:
    chosen = _mixed_folder(rng, world)
    if chosen is None:
        return None
    dirs, ext, hits = chosen
    return one_turn(f"Delete every .{ext} file in {where(dirs)}, and leave its other files alone.",
                    [*into(dirs), c("ls"), *[c("rm", file_name=n) for n in hits],
                     f"Deleted {', '.join(hits)} from {where(dirs)}."])


def find_rename(rng: random.Random, world: World) -> Plan | None:
    f = pick(rng, world, findable=True)
    if f is None:
        return None
    new = fresh_name(world, rng, rng.choice(STEMS), f.ext)
    return one_turn(f"Somewhere in the workspace is a file whose name contains '{f.stem}'. Rename it to {new}, "
                    "keeping it in its folder.",
                    [c("find", path=".", name=f.stem), *into(f.dirs), c("mv", source=f.name, destination=new),
                     f"Renamed {f.path} to {new}."])


def append_line(rng: random.Random, world: World) -> Plan | None:
    f = pick(rng, world)
    if f is None:
        return None
    extra = line(rng)
    return one_turn(f"Add the line '{extra}' at the end of {f.path}, keeping everything already in it.",
                    [*into(f.dirs), c("cat", file_name=f.name), c("echo", content=f.text + extra, file_name=f.name),
                     f"Added the line to {f.path}."])


def copy_into_folder(rng: random.Random, world: World) -> Plan | None:
    options = [(f, sub) for f in world.files for sub in world.subdirs(f.dirs)]
    if not options:
        return None
    f, sub = rng.choice(options)
    return one_turn(f"Copy {f.path} into the folder {sub} that sits next to it.",
                    [*into(f.dirs), c("cp", source=f.name, destination=sub),
                     f"Copied {f.path} into {'/'.join((*f.dirs, sub))}."])


def locate_then_copy(rng: random.Random, world: World) -> Plan | None:
    f = pick(rng, world, findable=True)
    if f is None:
        return None
    copy = f"{f.stem}_copy.{f.ext}"
    folder = "/".join(f.dirs)
    return Plan((f"Which folder is the file {f.name} in?", f"Make a copy of it named {copy} in that same folder."),
                ((c("find", path=".", name=f.name), f"{f.name} is in {folder}."),
                 (*into(f.dirs), c("cp", source=f.name, destination=copy), f"Copied it to {folder}/{copy}.")),
                ((folder,), ()))


def count_then_append(rng: random.Random, world: World) -> Plan | None:
    f = pick(rng, world)
    if f is None:
        return None
    n = len(f.text.splitlines())
    return Plan((f"How many lines are in {f.path}?",
                 "Add a last line to that file saying 'total: ' followed by that number."),
                ((*into(f.dirs), c("wc", file_name=f.name, mode="l"), f"{f.path} has {n} lines."),
                 (c("cat", file_name=f.name), c("echo", content=f"{f.text}total: {n}", file_name=f.name),
                  f"Added 'total: {n}' to {f.path}.")),
                ((str(n),), ()))


FAMILIES = {f.__name__.replace("_", "-"): f for f in (
    find_copy, find_tail_write, count_record, grep_save, sort_save, organize_ext, cleanup_ext, find_rename,
    append_line, copy_into_folder, locate_then_copy, count_then_append)}
