"""The factory loop as one resumable stage machine: rollouts -> data -> train -> eval -> gate -> register.

`retrain(cfg, console)` runs every stage into RUN (cfg.out). Each stage writes into its own version directory
RUN/<stage>/v<N>/ with a `stage.json` (status running | complete, the fingerprint of its inputs — its config and
the upstream stage's outputs —, its outputs, times), written atomically. A complete stage with the same
fingerprint is reused; changed inputs give a new version (old ones are kept) and the later stages follow; an
incomplete stage is continued (train: the trainer's exact resume; the others: redone, after deleting what they
wrote in their own version directory). RUN/retrain.json holds the overall status and each stage's version.
It never writes a user's files: `--traces` directories are only read, and a store entry that this run did not
create is never replaced. The teacher is `oracle`, a local model, a model on an OpenAI-compatible server
(`teacher_remote`) or a backends.toml backend (`backend:NAME`); the last two record text only (token_exact false),
so their episodes train as chat records (see stage_data).
With `data` (a JSONL file of the user's own chats, evals/chat_suite.py) the domain is the user's and the recorded
assistant turns are the teacher: the stages are data -> train -> eval -> gate -> register. The data stage checks
the file (every bad line named, nothing written), splits it by content hash into train / validation / held-out
and copies those records into the run; its fingerprint is the file's SHA-256, so an edited file redoes data and
everything after it and an unchanged one is reused. The specialist trains on the train chats (validation loss on
the validation ones); eval scores base and specialist on the held-out chats turn by turn (evals/chat_eval.py),
in the same result rows, so the gate decides as it does for the tool world, with the tool world's suites as
guards. The user's file is only read.

Test hook: TINYGPT_RETRAIN_CRASH=<stage> makes the process SIGKILL itself partway through that stage, after it
has written some of its output (rollouts and eval: after the first episode's row; data and gate: after writing
their files, before stage.json says complete; train: after its first checkpoint; register: after adding the
store entry, before describing it). Tests use it to kill deterministically, without timing races.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

STAGES = ("rollouts", "data", "train", "eval", "gate", "register")
DATA_STAGES = STAGES[1:]  # with the user's own chats (RetrainConfig.data): no rollouts
STATUS_FILE = "retrain.json"
STAGE_FILE = "stage.json"
CREATOR = "tinygpt retrain"
CRASH_ENV = "TINYGPT_RETRAIN_CRASH"
ORACLE = "oracle"
BACKEND_PREFIX = "backend:"  # --teacher backend:NAME: a backend of backends.toml plays the train tasks
# retrain's training defaults for a small model (under --config and the flags; TrainConfig's defaults under them)
TRAIN_DEFAULTS = {"method": "lora", "learning_rate": 5e-4, "epochs": 3.0, "valid_fraction": 0.0, "val_every": 0,
                  "save_every": 10}


class RetrainError(RuntimeError):
    """The retrain run cannot go on as asked; the message says what was wrong and what to do."""


@dataclass
class RetrainConfig:
    """One retrain run. `train` holds TrainConfig values given as flags (flag > `train_config` file > retrain's
    TRAIN_DEFAULTS > TrainConfig's defaults). `guards` None: the tool world's other generated domains."""

    model: str
    domain: str
    out: str
    guards: list[str] | None = None
    teacher: str = ORACLE
    teacher_remote: str = ""  # an OpenAI-compatible server's base URL; then teacher_model names its model
    teacher_model: str = ""
    api_key_env: str = ""
    timeout: float | None = None
    traces: list[str] = field(default_factory=list)
    train_tasks: int = 32
    eval_tasks: int = 50
    guard_tasks: int = 50
    train: dict = field(default_factory=dict)
    train_config: str | None = None
    name: str = ""
    in_flight: int = 4
    max_tokens: int = 256
    seed: int = 0
    gate_config: str | None = None
    data: str = ""  # a JSONL of the user's own chats: the domain (any new name) is theirs, their turns the teacher


# ---- small helpers ------------------------------------------------------------------------------------------
def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_json(path: Path, value: dict) -> None:
    """Write JSON through a temp file, fsync and a rename: a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_sha(root: Path, pattern: str = "*.atraj") -> str:
    """A hash of every `pattern` file under `root`: relative paths (run ids masked) and contents."""
    h = hashlib.sha256()
    for path in sorted(root.rglob(pattern)):
        h.update(path.name.encode() + b"\0" + file_sha(path).encode())
    return h.hexdigest()[:16]


def user_traces_key(dirs: list[str]) -> list:
    """What identifies the user's trajectories (read-only): each file's path, size and modification time."""
    from tinygpt.traces.reader import list_traces

    out = []
    for d in dirs:
        for p in list_traces(d, include_partial=True):
            st = p.stat()
            out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return out


def crash_point(stage: str) -> None:
    """The test hook (module docstring): SIGKILL this process here when TINYGPT_RETRAIN_CRASH names `stage`."""
    if os.environ.get(CRASH_ENV) == stage:
        os.kill(os.getpid(), signal.SIGKILL)


def heldout_split(suite) -> str:
    return "heldout" if "heldout" in suite.SPLITS else getattr(suite, "DEFAULT_SPLIT", suite.SPLITS[-1])


def default_name(out: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(out).resolve().name).strip("-._") or "specialist"
    return name[:64]


def default_guards(domain: str) -> list[str]:
    return [d for d in ("fileops", "calendar", "shop") if d != domain]


# ---- the run directory and its stages -------------------------------------------------------------------------
def check_out(out: Path) -> bool:
    """True if `out` is a retrain run to continue, False if it is new or empty; RetrainError for anything else."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RetrainError(f"--out {out} is not a directory; name a new directory (or an earlier retrain run)")
    if not out.exists() or not any(out.iterdir()):
        return False
    status = read_json(out / STATUS_FILE)
    if status is None or status.get("created_by") != CREATOR:
        raise RetrainError(f"--out {out} exists and was not made by `tinygpt retrain` (no {STATUS_FILE} of it); "
                           "nothing was written. Name a new directory, or an earlier retrain run to continue it")
    return True


class StageDir:
    """One stage's version directory and its stage.json."""

    def __init__(self, run: Path, stage: str, version: int, fingerprint: str, inputs: dict):
        self.stage, self.version, self.fingerprint, self.inputs = stage, version, fingerprint, inputs
        self.path = run / stage / f"v{version}"
        self.meta = read_json(self.path / STAGE_FILE) or {}

    @property
    def complete(self) -> bool:
        return self.meta.get("status") == "complete" and self.meta.get("fingerprint") == self.fingerprint

    @property
    def outputs(self) -> dict:
        return self.meta.get("outputs", {})

    def start(self, clean: bool) -> None:
        """Mark running; `clean`: first delete what this stage wrote here before (all but stage.json)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if clean:
            for entry in self.path.iterdir():
                if entry.name == STAGE_FILE:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        self.meta = {"stage": self.stage, "version": self.version, "status": "running",
                     "fingerprint": self.fingerprint, "inputs": self.inputs, "outputs": {},
                     "started": self.meta.get("started") or _now(), "attempts": self.meta.get("attempts", 0) + 1}
        write_json(self.path / STAGE_FILE, self.meta)

    def finish(self, outputs: dict, seconds: float) -> None:
        self.meta.update(status="complete", outputs=outputs, finished=_now(),
                         seconds=round(self.meta.get("seconds", 0.0) + seconds, 3))
        write_json(self.path / STAGE_FILE, self.meta)


def pick_version(run: Path, stage: str, inputs: dict) -> tuple[StageDir, str]:
    """The version directory for `inputs`: a complete one with their fingerprint ("reuse"), an incomplete one
    with it ("continue"), else a new one ("new")."""
    fp = digest(inputs)
    versions = sorted((int(p.name[1:]) for p in (run / stage).glob("v*") if p.name[1:].isdigit()), reverse=True)
    for v in versions:
        meta = read_json(run / stage / f"v{v}" / STAGE_FILE) or {}
        if meta.get("fingerprint") == fp:
            return StageDir(run, stage, v, fp, inputs), ("reuse" if meta.get("status") == "complete" else "continue")
    return StageDir(run, stage, (versions[0] if versions else 0) + 1, fp, inputs), "new"


# ---- loading models -------------------------------------------------------------------------------------------
def load_engine(model: str, adapter: Path | None = None, in_flight: int = 1):
    """An engine on `model` (a store name, directory or hub id; the embedded default for "default"), with an
    adapter if given."""
    from tinygpt.config import load_config
    from tinygpt.model_arg import model_path
    from tinygpt.runtime.engine import Engine
    from tinygpt.runtime.models import load

    path = model_path(load_config({"model": model or None}))
    loaded = load(path) if adapter is None else load(path, str(adapter))
    return Engine(loaded, solo_processors=in_flight == 1)


def play(console, engine, suite, tasks, settings, out_dir: Path, *, model: str, split: str, label: str,
         crash: str | None = None, remote=None):
    """run_suite (the user's chats: chat_eval.run_chats) with a progress bar (a line at the end without a
    terminal); `crash`: the stage whose test hook fires after the first row. Returns (manifest, rows)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tinygpt.evals.chat_eval import run_chats
    from tinygpt.evals.chat_suite import ChatSuite
    from tinygpt.evals.runner import run_suite

    run = run_chats if isinstance(suite, ChatSuite) else run_suite

    passed = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        job = bar.add_task(label, total=len(tasks) * settings.passes)

        def on_row(row) -> None:
            nonlocal passed
            passed += row.passed
            bar.update(job, advance=1, description=f"{label} ({passed} passed)")
            if crash:
                crash_point(crash)

        manifest, rows = run(engine, suite, tasks, settings, out_dir, model=model, split=split, on_row=on_row,
                             remote=remote)
    console.print(f"  {label}: {sum(r.passed for r in rows)}/{len(rows)} passed")
    return manifest, rows


@dataclass
class Plan:
    """What a run resolved to before anything is written: the suites, names and the training config."""

    cfg: RetrainConfig
    run: Path
    suite: object
    guards: list
    base_fingerprint: str
    teacher_fingerprint: str
    teacher: str  # who plays the train tasks, as recorded: oracle, a model name, remote:<address>#<model>
    remote: object  # the teacher's message-level policy (a remote or backend teacher), else None
    name: str
    train: object  # TrainConfig with model and data still to fill in
    gate: tuple  # (GateConfig, ConfigSource)
    data_sha: str = ""  # the user's chat file's SHA-256 (cfg.data), else ""

    @property
    def baseline(self) -> str:
        return self.cfg.model or "default"

    @property
    def stages(self) -> tuple[str, ...]:
        return DATA_STAGES if self.cfg.data else STAGES

    @property
    def chats(self) -> bool:
        """True when the domain is the user's chats (cfg.data), not a generated suite."""
        return bool(self.cfg.data)


# ---- the stages -----------------------------------------------------------------------------------------------
def stage_rollouts(p: Plan, sd: StageDir, console) -> dict:
    """The teacher plays the domain's first N train tasks through the real agent loop, every episode recorded."""
    from tinygpt.evals.runner import RunSettings
    from tinygpt.evals.suite import select_tasks

    cfg = p.cfg
    tasks = select_tasks(p.suite, "train", limit=cfg.train_tasks)
    oracle = p.teacher == ORACLE
    engine = None if p.remote is not None else load_engine(cfg.model if oracle else cfg.teacher,
                                                              in_flight=cfg.in_flight)
    settings = RunSettings(policy="gold" if oracle else "model", seed=cfg.seed, max_tokens=cfg.max_tokens,
                           in_flight=cfg.in_flight)
    manifest, rows = play(console, engine, p.suite, tasks, settings, sd.path, model=p.teacher, split="train",
                          label=f"teacher {p.teacher} on {p.suite.NAME}/train", crash="rollouts", remote=p.remote)
    unanswered = [r for r in rows if r.end == "remote_error"]
    if unanswered and len(unanswered) == len(rows):
        raise RetrainError(f"the teacher {p.teacher} answered none of the {len(rows)} episodes (first: "
                           f"{unanswered[0].reason.removeprefix('remote_error: ')}); check the server and run the "
                           "same command again")
    if unanswered:
        console.print(f"  {len(unanswered)} of {len(rows)} episodes got no answer from the teacher (failures of the "
                      "teacher: they are not trained on)")
    return {"episodes": len(rows), "passed": sum(r.passed for r in rows), "traces": str(sd.path / "traces"),
            "run_id": manifest.run_id, "traces_sha": tree_sha(sd.path / "traces"), "unanswered": len(unanswered)}


def stage_data(p: Plan, sd: StageDir, console, rollouts: dict) -> dict:
    """Rejection sampling: traces-to-data keeps only checker-passing episodes (the teacher's and the user's).

    What the run trains on: rows.jsonl (the recorded ids) if every kept episode is token-exact; else chat.jsonl,
    which holds every kept episode (token-exact ones too) as messages, rendered by the trainer with the base's
    own chat template. One format per run: text-only episodes have no ids, and mixing would train the same kind
    of turn two ways."""
    from tinygpt.traces.export_config import ExportConfig
    from tinygpt.traces.to_data import traces_to_data

    sources = [rollouts["traces"], *p.cfg.traces]
    report = traces_to_data(sources, sd.path / "export", ExportConfig(require_pass=True))
    crash_point("data")
    rows, chat = sd.path / "export" / "rows.jsonl", sd.path / "export" / "chat.jsonl"
    if report.written == 0:
        raise RetrainError(f"no checker-passing episode among the {report.read} read from "
                           f"{', '.join(map(str, sources))} ({report.filtered.get('not_passed', 0)} failed the "
                           "checker): nothing to train on. Use a stronger --teacher, more --train-tasks, or --traces")
    fmt = "rows" if report.chat_only == 0 else "chat"
    kept = f"{report.rows} rows" if fmt == "rows" else (f"{report.written} chat records ({report.chat_only} "
                                                         "text-only episodes: all are trained as chat)")
    console.print(f"  {report.files} trace files, {report.read} episodes read, "
                  f"{report.filtered.get('not_passed', 0)} failed the checker, {report.exact_dup + report.near_dup} "
                  f"duplicates -> {kept}" + (f", {report.trained_tokens} trained tokens" if fmt == "rows" else ""))
    out = {"rows": report.rows, "read": report.read, "not_passed": report.filtered.get("not_passed", 0),
           "duplicates": report.exact_dup + report.near_dup, "tokens": report.tokens,
           "trained_tokens": report.trained_tokens, "rows_file": str(rows), "rows_sha": file_sha(rows)}
    if fmt == "chat":
        out.update(format="chat", examples=report.written, chat_only=report.chat_only, chat_file=str(chat),
                   chat_sha=file_sha(chat))
    return out


def stage_chat_data(p: Plan, sd: StageDir, console) -> dict:
    """The user's chats (checked in prepare) into the run: train.jsonl, valid.jsonl and heldout.jsonl by the
    content-hash split, each chat once, and report.json. The user's file is only read."""
    counts = p.suite.counts()
    files = {"train": sd.path / "train.jsonl", "validation": sd.path / "valid.jsonl",
             "heldout": sd.path / "heldout.jsonl"}
    for split, path in files.items():
        with open(path, "w", encoding="utf-8") as f:
            for task in p.suite.tasks(split):
                f.write(json.dumps(task.data.record(task.id), ensure_ascii=False) + "\n")
    valid = files["validation"] if counts["validation"] else None
    out = {"format": "chat", "records": sum(counts.values()), "duplicates": p.suite.duplicates, **counts,
           "source": str(Path(p.cfg.data).expanduser().resolve()), "data_sha": p.data_sha,
           "chat_file": str(files["train"]), "chat_sha": file_sha(files["train"]), "examples": counts["train"],
           "valid_file": str(valid or ""), "valid_sha": file_sha(valid) if valid else "",
           "heldout_file": str(files["heldout"]), "heldout_sha": file_sha(files["heldout"]),
           "rows": 0, "rows_file": str(files["train"])}
    write_json(sd.path / "report.json", out)
    crash_point("data")
    console.print(f"  {out['records']} chats from {p.cfg.data}" + (f" ({p.suite.duplicates} exact duplicates left "
                  "out)" if p.suite.duplicates else "") + f": {counts['train']} train, {counts['validation']} "
                  f"validation, {counts['heldout']} held-out (by a hash of each chat's content)")
    if counts["heldout"] < p.gate[0].min_tasks:
        console.print(f"  only {counts['heldout']} held-out chats: the gate decides nothing on fewer than "
                      f"{p.gate[0].min_tasks} (min_tasks); about 5x that many chats in all would give it enough")
    return out


def train_file(data: dict) -> str:
    """The file the train stage trains on: the data stage's rows, or its chat records (stage_data says which)."""
    return data["chat_file"] if data.get("format") == "chat" else data["rows_file"]


def stage_train(p: Plan, sd: StageDir, console, data: dict, resume: bool) -> dict:
    """SFT of the base on the rows, in sd/run; an incomplete run continues from its checkpoint (exact resume)."""
    import dataclasses

    from tinygpt.run_output import announcer
    from tinygpt.trainer import checkpoint, sft, run_dir

    run = sd.path / "run"
    if os.environ.get(CRASH_ENV) == "train":
        save = checkpoint.save

        def save_then_crash(*args, **kwargs):
            save(*args, **kwargs)
            crash_point("train")

        checkpoint.save = save_then_crash
    if resume and run_dir.read_marker(run) is not None:
        console.print(f"  continuing the training run {run} from its latest checkpoint")
        summary = sft.run(sft.TrainConfig(), resume=str(run), flags={}, announce=announcer("train"))
    else:
        if run.exists():  # made but no marker yet: the trainer takes an empty directory only
            shutil.rmtree(run)
        cfg = dataclasses.replace(p.train, data=train_file(data), out=str(run), valid_data=data.get("valid_file", ""))
        summary = sft.run(cfg, announce=announcer("train"))
    if summary["status"] != "complete":
        raise KeyboardInterrupt  # Ctrl-C: the trainer wrote a checkpoint; the stage stays resumable
    adapter = run / "adapter"
    return {"run_dir": str(run), "adapter": str(adapter), "rows_file": train_file(data),
            "adapter_sha": file_sha(adapter / "adapters.safetensors"),
            "steps": summary["step"], "first_loss": summary.get("first_loss"), "final_loss": summary.get("final_loss")}


def eval_plan(p: Plan) -> list[tuple[str, object, str, int]]:
    """(arm, suite, split, tasks) of every eval run: base and specialist on the domain and on each guard."""
    cfg = p.cfg
    runs = []
    for suite, limit in [(p.suite, cfg.eval_tasks)] + [(g, cfg.guard_tasks) for g in p.guards]:
        for arm in ("base", "specialist"):
            runs.append((arm, suite, heldout_split(suite), limit))
    return runs


def stage_eval(p: Plan, sd: StageDir, console, train: dict) -> dict:
    """Base and specialist, greedy, on the held-out tasks of the domain and guards; complete runs are kept."""
    from tinygpt.evals.chat_eval import TURNS_SUFFIX
    from tinygpt.evals.results import MANIFEST_SUFFIX, ROWS_SUFFIX, read_manifest, read_rows
    from tinygpt.evals.runner import RunSettings
    from tinygpt.evals.suite import select_tasks

    cfg, results = p.cfg, sd.path / "results"
    done: dict[tuple[str, str], str] = {}
    for m in sorted(results.glob(f"*{MANIFEST_SUFFIX}")) if results.is_dir() else []:
        manifest = read_manifest(m)
        if manifest.status == "complete":
            done[(manifest.model, manifest.suite)] = manifest.run_id
        else:  # a killed run of this stage: its files go, and it is run again
            m.with_name(manifest.run_id + ROWS_SUFFIX).unlink(missing_ok=True)
            m.with_name(manifest.run_id + TURNS_SUFFIX).unlink(missing_ok=True)  # a chat run's per-turn details
            shutil.rmtree(results / "traces" / manifest.run_id, ignore_errors=True)
            m.unlink()
    engines: dict[str, object] = {}
    settings = RunSettings(seed=cfg.seed, max_tokens=cfg.max_tokens, in_flight=cfg.in_flight)
    out: dict[str, dict] = {}
    for arm, suite, split, limit in eval_plan(p):
        model = p.baseline if arm == "base" else p.name
        run_id = done.get((model, suite.NAME))
        if run_id is None:
            if arm not in engines:
                engines[arm] = load_engine(cfg.model, None if arm == "base" else Path(train["adapter"]), cfg.in_flight)
            tasks = select_tasks(suite, split, limit=limit)
            manifest, rows = play(console, engines[arm], suite, tasks, settings, results, model=model, split=split,
                                  label=f"{arm} on {suite.NAME}/{split}", crash="eval")
            run_id = manifest.run_id
        else:
            rows = read_rows(results / f"{run_id}{ROWS_SUFFIX}")
            console.print(f"  {arm} on {suite.NAME}/{split}: reusing run {run_id}")
        out.setdefault(suite.NAME, {})[arm] = {"run_id": run_id, "split": split, "tasks": len(rows),
                                               "passed": {r.task_id: r.passed for r in rows}}
    return {"results": str(results), "runs": out}


def stage_gate(p: Plan, sd: StageDir, console, evals: dict) -> dict:
    """The eval gate on the eval stage's runs: target = the domain, guards = the guard suites."""
    import msgspec

    from tinygpt.evals.chart import chart_png
    from tinygpt.evals.gate import evaluate
    from tinygpt.evals.results import read_results

    gate_cfg, source = p.gate
    suites = [p.suite.NAME, *(g.NAME for g in p.guards)]
    result = evaluate(read_results(evals["results"]), candidate=p.name, baseline=p.baseline, suites=suites,
                      target=p.suite.NAME, cfg=gate_cfg, source=source)
    result = msgspec.structs.replace(result, recorded="recorded by the register stage of tinygpt retrain")
    path = sd.path / "gate-result.json"
    path.write_bytes(msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n")
    (sd.path / "gate-result.png").write_bytes(chart_png(result))
    crash_point("gate")
    for line in result.reasons:
        console.print(f"  {line}")
    rates = {s.suite: {"role": s.role, "tasks": s.tasks,
                       "base": {"pass_rate": s.baseline.rate, "interval": [s.baseline.lo, s.baseline.hi]},
                       "specialist": {"pass_rate": s.candidate.rate, "interval": [s.candidate.lo, s.candidate.hi]},
                       "difference": {"estimate": s.diff.estimate, "interval": [s.diff.lo, s.diff.hi]}}
             for s in result.suites}
    return {"verdict": result.verdict, "reasons": list(result.reasons), "suites": rates,
            "confidence": result.confidence,
            "candidate_fingerprint": result.candidate.model_fingerprint, "gate_result": str(path),
            "chart": str(sd.path / "gate-result.png")}


def tool_names(suite) -> list[str]:
    from tinygpt.evals.chat_suite import ChatSuite
    from tinygpt.evals.suite import start_episode

    if isinstance(suite, ChatSuite):
        return suite.tool_names()
    episode = start_episode(suite, suite.tasks(heldout_split(suite))[0])
    try:
        return sorted(episode.toolset.names)
    finally:
        if episode.close is not None:
            episode.close()


def owned_entry(store, name: str, run: Path):
    """The store entry `name` if this retrain run made it, None if there is none; RetrainError if another owns it."""
    entry = next((e for e in store.read().models if e.name == name), None)
    aliased = name in store.read().aliases
    if entry is None and not aliased:
        return None
    ours = entry is not None and (entry.provenance.get("run") == str(run.resolve()) or
                                  Path(entry.path).resolve().is_relative_to(run.resolve()))
    if not ours:
        raise RetrainError(f"the model store already has {name!r}, which this retrain run ({run}) did not create; "
                           "it is left as it is. Choose another --name (or `tinygpt models rm` it first)")
    return entry


def stage_register(p: Plan, sd: StageDir, console, train: dict, gate: dict) -> dict:
    """On ship / routed-ship: the specialist in the model store, with its domain, tools, provenance and status."""
    from tinygpt.evals.verdict_store import record_verdict
    from tinygpt.runtime.store import ModelStore

    verdict = gate["verdict"]
    if verdict not in ("ship", "routed-ship"):
        console.print(f"  verdict {verdict}: nothing registered")
        crash_point("register")
        return {"registered": None, "verdict": verdict, "note": f"verdict {verdict}: nothing registered"}
    store, adapter = ModelStore(), Path(train["adapter"]).resolve()
    entry = owned_entry(store, p.name, p.run)
    if entry is not None and Path(entry.path).resolve() != adapter:  # an earlier version of this run: replaced
        store.remove(p.name)
        entry = None
    if entry is None:
        store.add(p.name, adapter, base=p.cfg.model or "default", kind="specialist")
    crash_point("register")
    store.describe(p.name, domain=p.suite.NAME, tools=tool_names(p.suite),
                   provenance={"created_by": CREATOR, "run": str(p.run.resolve()), "teacher": p.teacher,
                               "data": train["rows_file"], "train_run": train["run_dir"],
                               "gate_result": gate["gate_result"], "verdict": verdict})
    recorded = record_verdict(store, p.name, gate["candidate_fingerprint"], verdict)
    if not recorded.startswith("recorded"):
        raise RetrainError(f"the specialist {p.name!r} was registered but its verdict was {recorded}")
    console.print(f"  {recorded}; domain {p.suite.NAME}: the router routes {p.suite.NAME} requests to it")
    return {"registered": p.name, "verdict": verdict, "domain": p.suite.NAME, "adapter": str(adapter),
            "note": recorded}


# ---- planning and the driver ----------------------------------------------------------------------------------
def _base_fingerprint(model: str, flag: str) -> str:
    from tinygpt.config import load_config
    from tinygpt.model_arg import model_path
    from tinygpt.runtime.models import fingerprint
    from tinygpt.runtime.store import ModelStore

    resolved = ModelStore().resolve(model_path(load_config({"model": model or None})))
    if resolved.adapter is not None and flag == "--model":
        raise RetrainError(f"--model {model} is a specialist (base + adapter); retrain trains a base model: name "
                           "its base")
    return fingerprint(resolved.base) + (f"+{digest(str(resolved.adapter))}" if resolved.adapter else "")


def _guard_suite(name: str, default: bool):
    """The guard suite `name`; None for a default guard whose module this build does not have."""
    from tinygpt.evals.suite import SUITES, load_suite

    try:
        return load_suite(name)
    except ModuleNotFoundError as exc:
        if default and exc.name == SUITES[name]:
            return None
        raise


def resolve_teacher(cfg: RetrainConfig, base_fp: str) -> tuple[str, str, object]:
    """(label, fingerprint, message policy or None) of the teacher; builds the remote policy as `tinygpt eval
    --remote` does (an inline openai-compatible backend, no redaction) but sends nothing."""
    import os

    from tinygpt.router.backends import Backend, BackendError, guarded, load_backends
    from tinygpt.runtime.remote_policy import remote_fingerprint

    if cfg.teacher_remote:
        if cfg.teacher != ORACLE:
            raise RetrainError(f"--teacher {cfg.teacher} and --teacher-remote {cfg.teacher_remote}: give one")
        if not cfg.teacher_model:
            raise RetrainError("--teacher-remote needs --teacher-model NAME: the server's model (its GET /v1/models "
                               "lists them)")
        if cfg.api_key_env and not os.environ.get(cfg.api_key_env):
            raise RetrainError(f"--api-key-env {cfg.api_key_env}: that environment variable is not set (or empty); "
                               "export the key in it, or leave --api-key-env out for a server without a key")
        inline = Backend(name="remote", kind="openai-compatible", model=cfg.teacher_model, base_url=cfg.teacher_remote,
                         api_key_env=cfg.api_key_env, timeout=120.0 if cfg.timeout is None else cfg.timeout,
                         enabled=True, redact=False)
        try:
            policy = guarded(inline, env=os.environ)
        except BackendError as exc:
            raise RetrainError(f"--teacher-remote: {exc}") from None
        return policy.fingerprint, policy.fingerprint, policy
    if cfg.teacher_model or cfg.api_key_env or cfg.timeout is not None:
        raise RetrainError("--teacher-model, --api-key-env and --timeout go with --teacher-remote URL")
    if cfg.teacher.startswith(BACKEND_PREFIX):
        name = cfg.teacher.removeprefix(BACKEND_PREFIX)
        try:
            backends = load_backends()
            backend = backends.get(name)
            policy = backends.policy(name)
        except BackendError as exc:
            raise RetrainError(f"--teacher {cfg.teacher}: {exc}") from None
        return cfg.teacher, remote_fingerprint(backend.url, backend.model), policy
    return cfg.teacher, base_fp if cfg.teacher == ORACLE else _base_fingerprint(cfg.teacher, "--teacher"), None


def check_teacher(p: Plan) -> None:
    """One short request to a remote teacher before anything is written: an unreachable server, a wrong model or
    key is one clear error, not a run directory of failed episodes."""
    from tinygpt.runtime.message_policy import RemoteError
    from tinygpt.runtime.sampling import SamplingParams

    reply = p.remote.reply([{"role": "user", "content": "Say OK."}], [], tool_choice="auto",
                           parallel_tool_calls=False, params=SamplingParams(max_tokens=1))
    try:
        for _ in reply:
            pass
    except RemoteError as exc:
        raise RetrainError(f"the teacher {p.teacher} cannot be used: {exc}. Nothing was written; check the URL, "
                           "--teacher-model and the key, and run the same command again") from None


def prepare(cfg: RetrainConfig) -> Plan:
    """Check every input and resolve the run's plan; writes nothing. User errors raise with one clear line."""
    from tinygpt.evals.gate_config import load_gate_config
    from tinygpt.evals.suite import load_suite
    from tinygpt.runtime.store import NAME_RE, ModelStore
    from tinygpt.trainer.config import TrainConfig, read_toml, resolve
    from tinygpt.traces.reader import list_traces

    run = Path(cfg.out).expanduser()
    check_out(run)
    if cfg.data:
        check_data_flags(cfg)
    else:
        suite = load_suite(cfg.domain)
        if "train" not in suite.SPLITS:
            raise RetrainError(f"--domain {cfg.domain}: the suite has no train split to learn from (splits: "
                               f"{', '.join(suite.SPLITS)}); use a generated suite: fileops, calendar, shop")
    names = default_guards(cfg.domain) if cfg.guards is None else list(cfg.guards)
    if cfg.domain in names or len(set(names)) != len(names):
        raise RetrainError(f"--guards {' '.join(names)}: name each guard once, and not the domain {cfg.domain}")
    guards = [g for g in map(_guard_suite, names, [cfg.guards is None] * len(names)) if g is not None]
    for d in cfg.traces:
        if not Path(d).is_dir() and not Path(d).is_file():
            raise RetrainError(f"--traces {d}: no such file or directory")
        if not list_traces(d, include_partial=True):
            raise RetrainError(f"--traces {d}: no .atraj trajectories in it; record some (tinygpt agent, quickstart) "
                               "or leave --traces out")
    base_fp = _base_fingerprint(cfg.model, "--model")
    teacher, teacher_fp, remote = resolve_teacher(cfg, base_fp) if not cfg.data else (
        f"data:{Path(cfg.data).expanduser().resolve()}", "", None)
    name = cfg.name or default_name(cfg.out)
    if not NAME_RE.fullmatch(name):
        raise RetrainError(f"--name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit")
    if name == (cfg.model or "default"):
        raise RetrainError(f"--name {name} is the base model's name; name the specialist differently")
    owned_entry(ModelStore(), name, run)
    values = {**TRAIN_DEFAULTS, **(read_toml(cfg.train_config) if cfg.train_config else {}),
              **{k: v for k, v in cfg.train.items() if v is not None}}
    for key in ("model", "data", "out", "register", "teacher_logprobs", "valid_data"):
        if values.get(key):
            raise RetrainError(f"the training config sets {key!r}; retrain decides it (the base is --model, the data "
                               "is the data stage's rows, the run is under --out); remove it")
    train = resolve({**values, "model": cfg.model or "default"})
    if not isinstance(train, TrainConfig):
        raise TypeError(train)
    data_sha = ""
    if cfg.data:
        suite, data_sha = chat_suite(cfg, train.max_seq_length)
        teacher_fp = data_sha
    return Plan(cfg=cfg, run=run, suite=suite, guards=guards, base_fingerprint=base_fp, teacher_fingerprint=teacher_fp,
                teacher=teacher, remote=remote, name=name, train=train, gate=load_gate_config(cfg.gate_config),
                data_sha=data_sha)


def check_data_flags(cfg: RetrainConfig) -> None:
    """With the user's chats (cfg.data): the domain is a new name, and no teacher or traces go with them."""
    from tinygpt.evals.suite import SUITES
    from tinygpt.router.registry import GENERAL
    from tinygpt.runtime.store import NAME_RE

    if cfg.teacher != ORACLE or cfg.teacher_remote or cfg.teacher_model:
        raise RetrainError("--data: the recorded assistant turns of your chats are the teacher; --teacher and "
                           "--teacher-remote play the tool world's generated tasks and do not go with --data")
    if cfg.traces:
        raise RetrainError("--data and --traces: give one; to learn from recorded .atraj episodes too, export them as "
                           "chats (tinygpt traces-to-data) and add their chat.jsonl lines to your --data file")
    if not NAME_RE.fullmatch(cfg.domain or ""):
        raise RetrainError(f"--domain {cfg.domain!r}: the domain of your chats is a name of letters, digits, '.', "
                           "'_' and '-' (starting with a letter or digit, at most 64)")
    if cfg.domain in SUITES or cfg.domain == GENERAL:
        raise RetrainError(f"--domain {cfg.domain}: that name is taken by "
                           f"{'the router generalist' if cfg.domain == GENERAL else 'a built-in eval suite'}; name "
                           "the domain of your chats differently (e.g. --domain my-" + cfg.domain + ")")


_CHAT_SUITES: dict[tuple, object] = {}  # one read of a file per process: quickstart prepares, then retrain does


def chat_suite(cfg: RetrainConfig, max_tokens: int):
    """(ChatSuite of cfg.data, the file's SHA-256); RetrainError naming the bad lines of a file that cannot be
    used. The file is checked against the base model's tokenizer and chat template (evals/chat_suite.py)."""
    from tinygpt.config import load_config
    from tinygpt.evals.chat_suite import ChatDataError, load_chat_suite
    from tinygpt.model_arg import model_path
    from tinygpt.runtime.store import ModelStore

    path = Path(cfg.data).expanduser()
    if not path.is_file():
        raise RetrainError(f"--data {cfg.data}: no such file" + (" (it is a directory: give the JSONL file)"
                                                                 if path.is_dir() else ""))
    try:
        sha = file_sha(path)
    except OSError as exc:
        raise RetrainError(f"--data {cfg.data}: cannot read it ({exc.strerror or exc})") from None
    base = ModelStore().resolve(model_path(load_config({"model": cfg.model or None}))).base
    key = (str(path.resolve()), sha, str(base), max_tokens, cfg.domain)
    if key not in _CHAT_SUITES:
        from mlx_lm.utils import load_tokenizer

        try:
            _CHAT_SUITES[key] = load_chat_suite(cfg.domain, path, load_tokenizer(Path(base)), max_tokens)
        except ChatDataError as exc:
            raise RetrainError(f"{exc}\nNothing was written.") from None
    return _CHAT_SUITES[key], sha


def _train_key(train) -> str:
    from dataclasses import asdict

    return digest({k: v for k, v in asdict(train).items() if k not in ("data", "out", "register")})


def stage_inputs(p: Plan, stage: str, outs: dict) -> dict:
    """What stage `stage` depends on: its config and its upstream stages' outputs (their fingerprint)."""
    cfg = p.cfg
    if stage == "rollouts":
        return {"teacher": p.teacher, "teacher_fingerprint": p.teacher_fingerprint, "domain": cfg.domain,
                "base_fingerprint": p.base_fingerprint, "train_tasks": cfg.train_tasks, "max_tokens": cfg.max_tokens,
                "seed": cfg.seed, "in_flight": cfg.in_flight if p.teacher != ORACLE else 1}
    if stage == "data" and p.chats:
        return {"data_sha": p.data_sha, "domain": cfg.domain, "split": "sha256 of messages+tools, 60/20/20"}
    if stage == "data":
        return {"traces_sha": outs["rollouts"]["traces_sha"], "user_traces": user_traces_key(cfg.traces),
                "require_pass": True}
    if stage == "train":
        data = outs["data"]  # a rows run's key is as it always was, so earlier runs' train stages are reused
        key = {"chat_sha": data["chat_sha"]} if data.get("format") == "chat" else {"rows_sha": data["rows_sha"]}
        if data.get("valid_sha"):  # the user's chats: the validation chats too
            key["valid_sha"] = data["valid_sha"]
        return {**key, "config": _train_key(p.train)}
    if stage == "eval":
        held = {"heldout_sha": outs["data"]["heldout_sha"]} if p.chats else {}  # an edit may touch held-out only
        return {"adapter_sha": outs["train"]["adapter_sha"], "base_fingerprint": p.base_fingerprint,
                "baseline": p.baseline, "name": p.name, "domain": cfg.domain, "guards": [g.NAME for g in p.guards],
                "eval_tasks": cfg.eval_tasks, "guard_tasks": cfg.guard_tasks, "max_tokens": cfg.max_tokens,
                "seed": cfg.seed, "in_flight": cfg.in_flight, **held}
    if stage == "gate":
        gate_cfg, source = p.gate
        return {"eval": digest(outs["eval"]["runs"]), "gate_config": digest(repr(gate_cfg)),
                "gate_config_sha256": source.sha256}
    return {"verdict": outs["gate"]["verdict"], "candidate_fingerprint": outs["gate"]["candidate_fingerprint"],
            "adapter_sha": outs["train"]["adapter_sha"], "name": p.name, "domain": cfg.domain}


def _run_stage(p: Plan, stage: str, outs: dict, console, status: dict) -> dict:
    sd, how = pick_version(p.run, stage, stage_inputs(p, stage, outs))
    status["stages"][stage] = sd.version
    write_json(p.run / STATUS_FILE, status)
    if how == "reuse":
        console.print(f"[{stage}] v{sd.version}: reusing ({_brief(stage, sd.outputs)})")
        return sd.outputs
    console.print(f"[{stage}] v{sd.version}: " + ("continuing an interrupted run" if how == "continue" else "start"))
    started = time.perf_counter()
    sd.start(clean=how == "continue" and stage != "train")
    fn = {"rollouts": lambda: stage_rollouts(p, sd, console),
          "data": lambda: stage_chat_data(p, sd, console) if p.chats else stage_data(p, sd, console,
                                                                                    outs["rollouts"]),
          "train": lambda: stage_train(p, sd, console, outs["data"], resume=how == "continue"),
          "eval": lambda: stage_eval(p, sd, console, outs["train"]),
          "gate": lambda: stage_gate(p, sd, console, outs["eval"]),
          "register": lambda: stage_register(p, sd, console, outs["train"], outs["gate"])}[stage]
    out = fn()
    seconds = time.perf_counter() - started
    sd.finish(out, seconds)
    console.print(f"[{stage}] v{sd.version}: done in {seconds:.1f}s ({_brief(stage, out)})")
    return out


def _brief(stage: str, out: dict) -> str:
    if stage == "rollouts":
        return f"{out['episodes']} episodes, {out['passed']} passed"
    if stage == "data" and "heldout" in out:
        return (f"{out['train']} train, {out['validation']} validation, {out['heldout']} held-out chats of "
                f"{out['records']}")
    if stage == "data":
        kept = f"{out['examples']} chat records" if out.get("format") == "chat" else f"{out['rows']} rows"
        return f"{kept} from {out['read']} episodes, {out['not_passed']} rejected"
    if stage == "train":
        return f"{out['steps']} steps, loss {out['first_loss']:.3f} -> {out['final_loss']:.3f}"
    if stage == "eval":
        return ", ".join(f"{s}: base {sum(a['base']['passed'].values())}/{a['base']['tasks']}, specialist "
                         f"{sum(a['specialist']['passed'].values())}/{a['specialist']['tasks']}"
                         for s, a in out["runs"].items())
    if stage == "gate":
        return f"verdict {out['verdict']}"
    return f"registered {out['registered']}" if out["registered"] else out["note"]


def summarize(p: Plan, outs: dict) -> dict:
    """The run's summary: the same for a run that reused every stage as for the run that made them."""
    gate, data = outs["gate"], outs["data"]
    chats = {"chats": {k: data[k] for k in ("records", "duplicates", "train", "validation", "heldout")}} \
        if p.chats else {}
    return {
        "out": str(p.run), "status": "complete", "domain": p.suite.NAME, "guards": [g.NAME for g in p.guards],
        "base": p.baseline, "name": p.name, "teacher": p.teacher, "verdict": gate["verdict"],
        "reasons": gate["reasons"], "confidence": gate["confidence"], "suites": gate["suites"],
        "registered": outs["register"]["registered"], "register_note": outs["register"]["note"],
        "episodes": data["train"] if p.chats else outs["rollouts"]["episodes"], "rows": data["rows"],
        "data_format": data.get("format", "rows"), "steps": outs["train"]["steps"], **chats,
        "stages": {s: int(Path(str(outs["_dirs"][s])).name[1:]) for s in p.stages},
        "paths": {"traces": outs["rollouts"]["traces"] if "rollouts" in outs else None, "rows": data["rows_file"],
                  "train_data": train_file(outs["data"]),
                  "train_run": outs["train"]["run_dir"], "adapter": outs["train"]["adapter"],
                  "results": outs["eval"]["results"], "gate_result": gate["gate_result"], "chart": gate["chart"],
                  "status": str(p.run / STATUS_FILE)},
    }


def recorded_config(cfg: RetrainConfig) -> dict:
    """cfg as retrain.json records it: the teacher's URL without user info, query or fragment (no secrets)."""
    from tinygpt.runtime.remote_policy import server_address

    values = dict(vars(cfg))
    if cfg.teacher_remote:
        values["teacher_remote"] = server_address(cfg.teacher_remote)
    return values


def retrain(cfg: RetrainConfig, console=None) -> dict:
    """Run (or continue) the whole loop for `cfg` into cfg.out; return the summary (also in RUN/retrain.json).

    Raises RetrainError (and the packages' own user errors) for bad input before anything is written;
    KeyboardInterrupt leaves RUN/retrain.json "interrupted" and every stage resumable."""
    if console is None:
        from rich.console import Console

        console = Console(stderr=True, markup=False, highlight=False)
    p = prepare(cfg)
    if p.remote is not None and pick_version(p.run, "rollouts", stage_inputs(p, "rollouts", {}))[1] != "reuse":
        check_teacher(p)
    p.run.mkdir(parents=True, exist_ok=True)
    status = read_json(p.run / STATUS_FILE) or {"created_by": CREATOR, "created": _now(), "stages": {}}
    status.update(status="running", updated=_now(), config=recorded_config(cfg))
    status.pop("summary", None)
    write_json(p.run / STATUS_FILE, status)
    if p.chats:
        counts = p.suite.counts()
        console.print(f"retrain {p.baseline} on your chats {cfg.data} as domain {p.suite.NAME} (guards: "
                      f"{', '.join(g.NAME for g in p.guards) or 'none'}) -> {p.run}: {counts['train']} train / "
                      f"{counts['validation']} validation / {counts['heldout']} held-out chats (eval on up to "
                      f"{cfg.eval_tasks}), {cfg.guard_tasks} guard tasks, specialist {p.name}")
    else:
        console.print(f"retrain {p.baseline} on {p.suite.NAME} (guards: "
                      f"{', '.join(g.NAME for g in p.guards) or 'none'}) -> {p.run}: teacher {p.teacher}, "
                      f"{cfg.train_tasks} train / {cfg.eval_tasks} eval / {cfg.guard_tasks} guard tasks, specialist "
                      f"{p.name}")
    console.print("training config: " + ", ".join(f"{k}={v}" for k, v in vars(p.train).items() if v not in ("", [])))
    outs: dict = {"_dirs": {}}
    try:
        for stage in p.stages:
            outs[stage] = _run_stage(p, stage, outs, console, status)
            outs["_dirs"][stage] = p.run / stage / f"v{status['stages'][stage]}"
        summary = summarize(p, outs)
    except BaseException as exc:
        from tinygpt.cli import interrupted

        status.update(status="interrupted" if interrupted(exc) else "failed", updated=_now(),
                      error=f"{type(exc).__name__}: {exc}")
        write_json(p.run / STATUS_FILE, status)
        raise
    status.update(status="complete", updated=_now(), summary=summary)
    status.pop("error", None)
    write_json(p.run / STATUS_FILE, status)
    return summary
