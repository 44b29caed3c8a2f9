"""`tinygpt eval-router`: how well a saved router routes a labelled held-out set, and the cost–quality curve.

Prints routing accuracy (Wilson 95%), per-domain accuracy, the reliability table and ECE, escalation
precision/recall and the curve's APGR and CPT(50%/80%) (or --json), and writes a results JSON (--out) and a PNG
of the curve (--chart). Measures only: it runs no model and changes no store (docs/router.md, "Evaluating").
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULT_KIND = "tinygpt.eval-router"
DEFAULT_COSTS = "specialist=1,generalist=3,cloud=30"

EPILOG = f"""examples:
  tinygpt eval-router --router runs/router                      (the project's heldout split, no quality source)
  tinygpt eval-router --router runs/router --data heldout.jsonl --specialists fileops,trading,vehicle \\
      --quality specialist=0.9,off_domain=0.1,generalist=0.6,cloud=0.95 --out router-eval.json
  tinygpt eval-router --router R --results runs/evals --models generalist=qwen3-4b,cloud=claude,fileops=files-spec

quality per tier (the first that applies; the output says which):
  --results DIR --models ...   eval result rows: each tier's model's pass rate on the request's task_id
  the labelled rows' "quality" {{specialist, off_domain, generalist, cloud}}
  --quality specialist=,off_domain=,generalist=,cloud=   one stated assumption for every request
  none of these: accuracy, calibration and escalation only, no curve

specialists (domains a routable specialist serves): --specialists D1,D2:routed-ship, else the model store's
routable specialists, else every domain the router knows (then no request should escalate).
a request "should escalate" when its label has no specialist; it "escalated" when the rule did not send it to
a specialist. costs are per request: --costs (default {DEFAULT_COSTS}, relative units), or the cloud's in USD
from router/prices.toml with --cloud-model and --tokens (then --costs gives the local tiers' USD).
"""


def build_parser() -> argparse.ArgumentParser:
    from tinygpt.flags import float_in, int_in

    p = argparse.ArgumentParser(prog="tinygpt eval-router", description=__doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--router", default=None, help="the router directory (default: CACHE/router)")
    p.add_argument("--data", default=None, help="labelled JSONL (default: the project's heldout split)")
    p.add_argument("--specialists", default=None, help="domains with a routable specialist (D or D:routed-ship)")
    p.add_argument("--ship", type=float_in(0, 1), default=None, help="threshold for a ship specialist")
    p.add_argument("--routed-ship", type=float_in(0, 1), default=None, help="threshold for a routed-ship one")
    p.add_argument("--escalate-below", type=float_in(0, 1), default=None,
                   help="under this confidence the request goes to the cloud (for the shares and escalation)")
    p.add_argument("--quality", default=None, help="assumed quality: specialist=,off_domain=,generalist=,cloud=")
    p.add_argument("--results", default=None, help="eval results directory (with --models)")
    p.add_argument("--models", default=None, help="tier=model pairs for --results: generalist=,cloud=,DOMAIN=")
    p.add_argument("--costs", default=None, help=f"cost per request per tier (default {DEFAULT_COSTS})")
    p.add_argument("--cloud-model", default=None, help="price the cloud tier from router/prices.toml")
    p.add_argument("--tokens", default="1500,300", help="input,output tokens of a cloud request (1500,300)")
    p.add_argument("--bins", type=int_in(2, 100), default=10, help="reliability bins (10)")
    p.add_argument("--out", default=None, help="write the results JSON here")
    p.add_argument("--chart", default=None, help="write the PNG here (default: --out with .png)")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    return p


def _rows(path: str | None) -> tuple[list[dict], str]:
    """The labelled rows (decoded objects) and a description of where they came from."""
    from tinygpt.router.errors import RouterError

    if path is None:
        from tinygpt.evals.router_data import labelled_rows

        return labelled_rows("heldout"), "the project's labelled set, heldout split (evals/router_data.py)"
    try:
        lines = Path(path).expanduser().read_bytes().splitlines()
    except (FileNotFoundError, IsADirectoryError):
        raise RouterError(f"no labelled data file at {path}; --data takes JSON Lines of "
                          '{"text", "tools", "domain"} objects') from None
    rows = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise RouterError(f"{path}:{number}: not JSON ({exc})") from None
    return rows, str(path)


def _specialists(a, model, settings) -> tuple[dict[str, float], str]:
    """Threshold of the best routable specialist per domain, and where the list came from."""
    from tinygpt.evals.errors import EvalError

    from tinygpt.router.registry import GENERAL

    if a.specialists is not None:
        out = {}
        for item in (s.strip() for s in a.specialists.split(",") if s.strip()):
            domain, _, verdict = item.partition(":")
            if verdict not in ("", "ship", "routed-ship"):
                raise EvalError(f"--specialists: {item!r}: the verdict after ':' is ship or routed-ship")
            if domain == GENERAL:
                raise EvalError(f"--specialists: {GENERAL!r} is the generalist's domain, never a specialist's")
            out[domain] = settings.routed_ship if verdict == "routed-ship" else settings.ship
        return out, "--specialists"
    from tinygpt.router.registry import load_registry
    from tinygpt.runtime.store import ModelStore

    registry = load_registry(ModelStore(), generalist=settings.generalist)
    found = {d: settings.ship if registry.routable(d)[0].verdict == "ship" else settings.routed_ship
             for d in registry.domains()}
    if found:
        return found, "the model store's routable specialists"
    return ({d: settings.ship for d in model.domains if d != GENERAL},
            f"assumed: a ship specialist for every domain the router knows but {GENERAL}")


def _costs(a) -> dict:
    from tinygpt.evals.errors import EvalError
    from tinygpt.evals.router_quality import COST_KEYS, cloud_cost_usd, parse_pairs

    if a.cloud_model is None:
        costs = parse_pairs(a.costs or DEFAULT_COSTS, "--costs", COST_KEYS)
        return {**costs, "unit": "relative", "source": "--costs" if a.costs else f"default ({DEFAULT_COSTS})"}
    if a.costs is None:
        raise EvalError("--cloud-model prices the cloud in USD; give the local tiers' USD per request too "
                        "(--costs specialist=X,generalist=Y)")
    local = parse_pairs(a.costs, "--costs", COST_KEYS[:2])
    try:
        tokens = tuple(int(t) for t in a.tokens.split(","))
    except ValueError:
        tokens = ()
    if len(tokens) != 2 or min(tokens) < 0:
        raise EvalError(f"--tokens: expected INPUT,OUTPUT token counts, got {a.tokens!r}")
    return {**local, "cloud": cloud_cost_usd(a.cloud_model, tokens), "unit": "USD",
            "source": f"--costs for local tiers; cloud {a.cloud_model} at {tokens[0]} in / {tokens[1]} out tokens "
                      "from router/prices.toml"}


def _quality(a, rows, predicted, where):
    """(quality (n, 3) or None, source description, the assumption if any)."""
    from tinygpt.evals import router_quality as rq
    from tinygpt.evals.errors import EvalError

    if a.results is not None:
        if a.quality is not None:
            raise EvalError("give --results or --quality, not both")
        from tinygpt.evals.results import read_results

        models = rq.parse_pairs(a.models or "", "--models", number=False)
        return rq.from_results(read_results(a.results), models, rows, predicted), f"results ({a.results})", models
    q = rq.labelled(rows, predicted, where)
    if q is not None:
        if a.quality is not None:
            raise EvalError(f"{where} has per-row 'quality'; drop --quality (or use a file without it)")
        return q, "labelled (each row's own 'quality')", None
    if a.quality is not None:
        assumption = rq.parse_pairs(a.quality, "--quality", rq.QUALITY_KEYS)
        return rq.assumed(assumption, predicted, [r["domain"] for r in rows]), "assumed (--quality)", assumption
    return None, "none: no curve (give --results, per-row 'quality' or --quality)", None


def run(a) -> dict:
    import msgspec
    import numpy as np

    from tinygpt.cli_route import _default_dir
    from tinygpt.evals.router_eval import evaluate
    from tinygpt.router.data import example_from
    from tinygpt.router.errors import RouterError
    from tinygpt.router.model import load

    model = load(a.router or _default_dir())
    try:
        changes = {k: v for k, v in (("ship", a.ship), ("routed_ship", a.routed_ship),
                                     ("escalate_below", a.escalate_below)) if v is not None}
        settings = msgspec.structs.replace(model.meta.settings, **changes).checked()
    except ValueError as exc:
        raise RouterError(str(exc)) from exc
    rows, where = _rows(a.data)
    examples = [example_from(r, f"{where}:{i + 1}") for i, r in enumerate(rows)]
    if not examples:
        raise RouterError(f"{where} has no labelled requests")
    specialists, specialists_source = _specialists(a, model, settings)
    probs = np.array([model.probs(e.request) for e in examples])
    predicted = [model.domains[k] for k in probs.argmax(axis=1)]
    quality, source, assumption = _quality(a, rows, predicted, where)
    if a.results is not None:
        from tinygpt.evals.errors import EvalError

        lacking = [d for d in specialists if d not in assumption]
        if lacking:
            raise EvalError(f"--models names no specialist for domain {lacking[0]} (add {lacking[0]}=MODEL)")
    costs = _costs(a)
    guarded = np.array([not (e.request.text.strip() or e.request.tools)
                        or model.coverage(e.request) < model.meta.min_coverage for e in examples])
    measured = evaluate(probs, [e.domain for e in examples], list(model.domains), specialists,
                        settings.escalate_below, quality, costs, a.bins, guarded=guarded)
    return {"kind": RESULT_KIND, "version": 1, "router": str(a.router or _default_dir()), "router_id": model.id,
            "router_domains": list(model.domains), "data": where, "specialists": specialists,
            "specialists_source": specialists_source,
            "settings": msgspec.to_builtins(msgspec.structs.replace(settings, targets=[])),
            "quality_source": source, "quality_inputs": assumption, "costs": costs,
            "guarded": int(guarded.sum()), "trained_on_evaluated": trained_on(model.meta.sources, rows), **measured}


def trained_on(sources: list[str], rows: list[dict]) -> dict:
    """How many evaluated rows the router was trained on: their text (or group) is in a JSONL file named in its
    sources (router.json). Sources that cannot be read now (moved, or trajectory directories) are listed."""
    texts, groups, unread = set(), set(), []
    for source in sources:
        try:
            lines = Path(source).expanduser().read_bytes().splitlines()
        except OSError:
            unread.append(source)
            continue
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                texts.add(row.get("text"))
                groups.add(row.get("group"))
    texts.discard(None)
    groups.discard(None)
    overlap = sum(1 for r in rows if r.get("text") in texts or r.get("group") in groups)
    return {"rows": overlap, "of": len(rows), "sources": list(sources), "unread_sources": unread}


def main(argv: list[str]) -> int:
    a = build_parser().parse_args(argv)
    from tinygpt.evals.owned_file import check_owned, json_of_kind, png_by, write_owned
    from tinygpt.evals.router_chart import SOFTWARE

    _ours_json, _ours_png = json_of_kind(RESULT_KIND), png_by(SOFTWARE)
    chart = a.chart or (str(Path(a.out).with_suffix(".png")) if a.out else None)
    if a.out:
        check_owned(a.out, _ours_json, "--out")  # before any work: a user's file there is refused at once
    if chart:
        check_owned(chart, _ours_png, "--chart")
    result = run(a)
    seen = result["trained_on_evaluated"]
    if seen["rows"]:
        print(f"WARNING: the router was trained on {seen['rows']} of the {seen['of']} evaluated requests (their text "
              f"or group is in {', '.join(seen['sources'])}): these numbers overstate it. Evaluate on rows it never "
              "saw (route data --split heldout, and train on --split train)", file=sys.stderr)
    body = (json.dumps(result, indent=2) + "\n").encode()
    if a.out:
        write_owned(a.out, body, _ours_json, "--out")
    if chart and result["curve"] is not None:
        from tinygpt.evals.router_chart import chart_png

        write_owned(chart, chart_png(result), _ours_png, "--chart")
    if a.json:
        sys.stdout.write(body.decode())
    else:
        from tinygpt.evals.router_report import print_result
        from rich.console import Console

        print_result(result, Console(width=None if sys.stdout.isatty() else 160, markup=False, highlight=False))
        err = Console(stderr=True, markup=False, highlight=False)
        wrote = [p for p in (a.out, chart if result["curve"] is not None else None) if p]
        if wrote:
            err.print(f"wrote {' and '.join(wrote)}")
        if chart and result["curve"] is None:
            err.print(f"no chart at {chart}: there is no curve without a quality source")
    return 0
