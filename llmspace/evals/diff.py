"""Compare two runs: cases that flipped, metric deltas, and the regression gate."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from llmspace.evals.metrics import COMPARED, GATED
from llmspace.evals.store import RunRecord


@dataclass
class Flip:
    case_id: str
    before: bool | None  # None: not in that run
    after: bool | None
    changed_assertions: list[str] = field(default_factory=list)  # "contains 'LoRA': pass -> fail"
    error_after: str | None = None


@dataclass
class RunDiff:
    a: str
    b: str
    flipped: list[Flip]  # pass -> fail and fail -> pass
    only_in_a: list[str]
    only_in_b: list[str]
    deltas: dict[str, dict]  # metric -> {"a", "b", "delta", "better": bool | None}
    same_dataset: bool

    @property
    def regressions(self) -> list[Flip]:
        return [f for f in self.flipped if f.before and not f.after]

    @property
    def fixes(self) -> list[Flip]:
        return [f for f in self.flipped if not f.before and f.after]

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "same_dataset": self.same_dataset,
                "flipped": [f.__dict__ for f in self.flipped], "only_in_a": self.only_in_a,
                "only_in_b": self.only_in_b, "deltas": self.deltas}


def diff_runs(a: RunRecord, b: RunRecord) -> RunDiff:
    ra = {r.case_id: r for r in a.results}
    rb = {r.case_id: r for r in b.results}
    flipped = []
    for cid in [c for c in ra if c in rb]:
        x, y = ra[cid], rb[cid]
        if x.passed == y.passed:
            continue
        changed = []
        before = {_key(a): a for a in x.assertions}  # match by what is checked, not by position
        for ay in y.assertions:
            ax = before.get(_key(ay))
            if ax is None or ax.passed != ay.passed:
                changed.append(f"{ay.type} {ay.value!r}: {_pf(ax.passed if ax else None)} -> {_pf(ay.passed)}"
                               + (f" ({ay.detail})" if ay.detail else ""))
        flipped.append(Flip(cid, x.passed, y.passed, changed, y.error))
    deltas = {}
    ma, mb = a.metrics or {}, b.metrics or {}
    for name, higher_better in COMPARED.items():
        va, vb = ma.get(name), mb.get(name)
        if va is None and vb is None:
            continue
        d = None if va is None or vb is None else vb - va
        better = None if not d else (d > 0) == higher_better
        deltas[name] = {"a": va, "b": vb, "delta": d, "better": better}
    return RunDiff(a.id, b.id, flipped, [c for c in ra if c not in rb], [c for c in rb if c not in ra], deltas,
                   a.dataset_sha256 == b.dataset_sha256)


def _key(a) -> tuple[str, str]:
    return a.type, json.dumps(a.value, sort_keys=True, ensure_ascii=False)


def _pf(p: bool | None) -> str:
    return "n/a" if p is None else "pass" if p else "fail"


def regressions(baseline: RunRecord, run: RunRecord, tolerance: float = 0.0) -> list[str]:
    """Gated metrics that dropped by more than ``tolerance`` (absolute, e.g. 0.05 = 5 points)."""
    out = []
    for name in GATED:
        va, vb = (baseline.metrics or {}).get(name), (run.metrics or {}).get(name)
        if va is None or vb is None:
            continue
        if vb < va - tolerance - 1e-12:
            out.append(f"{name} dropped from {va:.3f} to {vb:.3f} (baseline {baseline.id})")
    return out


def format_diff(d: RunDiff) -> str:
    lines = [f"diff {d.a} -> {d.b}" + ("" if d.same_dataset else "  (different datasets: compare with care)")]
    for name, v in d.deltas.items():
        a, b, delta = v["a"], v["b"], v["delta"]
        mark = "" if v["better"] is None else (" better" if v["better"] else " WORSE")
        lines.append(f"  {name:26s} {_num(a):>10s} -> {_num(b):>10s}  ({'' if delta is None else f'{delta:+.4g}'}"
                     f"){mark}")
    if d.flipped:
        lines.append(f"flipped cases ({len(d.regressions)} pass->fail, {len(d.fixes)} fail->pass):")
        for f in d.flipped:
            lines.append(f"  {f.case_id}: {_pf(f.before)} -> {_pf(f.after)}")
            lines.extend(f"      {c}" for c in f.changed_assertions)
            if f.error_after:
                lines.append(f"      error: {f.error_after}")
    else:
        lines.append("no case flipped")
    if d.only_in_a or d.only_in_b:
        lines.append(f"only in {d.a}: {', '.join(d.only_in_a) or '-'}; only in {d.b}: {', '.join(d.only_in_b) or '-'}")
    return "\n".join(lines)


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.4g}"
