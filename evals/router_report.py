"""eval-router's tables for people (rich): accuracy per domain, the reliability table, escalation, and the
cost–quality curve's summary with a few of its points. It formats an eval-router result dict; it computes
nothing (router_eval.py) and the CLI's --json prints the same values.
"""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.1f}%"


def _rate(r: dict) -> str:
    return f"{_pct(r['rate'])} [{r['lo'] * 100:.1f}, {r['hi'] * 100:.1f}]"


def print_result(result: dict, console: Console) -> None:
    console.print(f"router {result['router_id']} on {result['requests']} requests of {result['data']}")
    console.print(f"specialists: {', '.join(f'{d} (>= {t:g})' for d, t in result['specialists'].items()) or 'none'}"
                  f" [{result['specialists_source']}]; escalate below {result['settings']['escalate_below']:g}")
    acc = Table(title="routing accuracy (Wilson 95%)")
    for name in ("domain", "requests", "correct", "accuracy [95%]"):
        acc.add_column(name, justify="left" if name == "domain" else "right")
    for d, r in [*result["per_domain"].items(), ("all", result["accuracy"])]:
        acc.add_row(d, str(r["n"]), str(r["correct"]), _rate(r), style="bold" if d == "all" else None)
    console.print(acc)
    if result["unknown_labels"]:
        console.print(f"labels the router does not know (always wrong): {', '.join(result['unknown_labels'])}")
    rel = Table(title=f"reliability (ECE {result['ece']:.3f})")
    for name in ("confidence bin", "requests", "mean confidence", "accuracy"):
        rel.add_column(name, justify="right")
    for b in result["reliability"]:
        rel.add_row(f"[{b['lo']:.1f}, {b['hi']:.1f})", str(b["count"]), f"{b['confidence']:.3f}",
                    f"{b['accuracy']:.3f}")
    console.print(rel)
    e = result["escalation"]
    console.print(f"escalation (left the specialists; should: label has no specialist): {e['escalated']} escalated, "
                  f"{e['should']} should; precision {_pct(e['precision'])}, recall {_pct(e['recall'])}")
    shares = result["shares"]
    console.print("at these settings: " + ", ".join(f"{t} {_pct(v)}" for t, v in shares.items()))
    c = result["curve"]
    console.print(f"quality: {result['quality_source']}; costs: {result['costs']['source']} "
                  f"({result['costs']['unit']})")
    if c is None:
        return
    ref = c["references"]
    console.print(f"all generalist {ref['all_generalist']['quality']:.3f} at cost {ref['all_generalist']['cost']:g}; "
                  f"local split {ref['local_split']['quality']:.3f} at {ref['local_split']['cost']:.3g} "
                  f"({_pct(ref['local_split']['specialist_share'])} to specialists); all cloud "
                  f"{ref['all_cloud']['quality']:.3f} at {ref['all_cloud']['cost']:g}")
    console.print(f"APGR {'n/a' if c['apgr'] is None else format(c['apgr'], '.3f')} (oracle "
                  f"{'n/a' if c['oracle']['apgr'] is None else format(c['oracle']['apgr'], '.3f')}, random 0.5); "
                  f"CPT(50%) {_pct(c['cpt50'])}, CPT(80%) {_pct(c['cpt80'])} of requests to the cloud "
                  f"(oracle {_pct(c['oracle']['cpt50'])}, {_pct(c['oracle']['cpt80'])})")
    curve = Table(title="cost–quality curve (a few points)")
    for name in ("escalate below", "to cloud", "to specialists", "quality", "PGR", "cost"):
        curve.add_column(name, justify="right")
    points = c["points"]
    step = max(1, len(points) // 10)
    for i in sorted(set(range(0, len(points), step)) | {len(points) - 1}):
        p = points[i]
        curve.add_row("above all" if p["threshold"] is None else f"{p['threshold']:.8f}", _pct(p["cloud_share"]),
                      _pct(p["specialist_share"]), f"{p['quality']:.3f}",
                      "n/a" if c["pgr"] is None else f"{c['pgr'][i]:.3f}", f"{p['cost']:.3g}")
    console.print(curve)
