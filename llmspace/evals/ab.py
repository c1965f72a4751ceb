"""Online A/B: split traffic between two variants and compare them.

A variant is a set of ``Settings`` overrides (model, backend, retrieval
settings, ...) plus an optional system prompt. Each request
is assigned by a stable hash of the user id or API key, so one user always
sees one variant; requests with neither are assigned at random, per request.
Every response is recorded with its variant (``feedback.record_response``) and
``ab_report`` compares the variants on thumbs-up rate, feedback rate, latency
and cost, with counts and 95% confidence intervals.

The configuration is a JSON object, in the setting ``ab`` (the JSON itself or
a path to a .json file)::

    {"split": 0.5, "a": {"name": "baseline"},
     "b": {"name": "wider", "retrieval": {"top_k": 8}, "settings": {"default_max_tokens": 128}}}
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import threading
import weakref
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as _PydError

from llmspace.errors import ConfigError

Z95 = 1.959964


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=40)
    settings: dict[str, Any] = Field(default_factory=dict, description="Settings overrides for this arm.")
    system_prompt: str | None = Field(None, description="Replaces (or adds) the system message.")
    retrieval: dict[str, Any] = Field(default_factory=dict,
                                      description="RAG retrieval options for this arm (top_k, mode, mmr_lambda, ...).")


class ABConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    split: float = Field(0.5, ge=0.0, le=1.0, description="Share of users sent to variant b.")
    a: Variant = Field(default_factory=lambda: Variant(name="a"))
    b: Variant = Field(default_factory=lambda: Variant(name="b"))
    salt: str = Field("llmspace-ab", description="Change it to reshuffle who gets which arm.")

    def model_post_init(self, _ctx) -> None:
        if self.a.name == self.b.name:
            raise ValueError("the two variants need different names")


def parse_ab_config(value: str | dict | None) -> ABConfig | None:
    """From the ``ab`` setting: JSON text, a path to a JSON file, a dict, or None (off)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value
        if not value.lstrip().startswith("{"):
            try:
                text = Path(value).expanduser().read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"A/B config file {value!r} cannot be read: {exc.strerror}.", param="ab") from None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"A/B config is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).",
                              param="ab") from None
    try:
        cfg = ABConfig.model_validate(value)
    except _PydError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "ab"
        raise ConfigError(f"Bad A/B config at {where!r}: {err['msg']}.", param="ab") from None
    from llmspace.config import Settings

    for v in (cfg.a, cfg.b):
        unknown = [k for k in v.settings if k not in Settings.model_fields]
        if unknown:
            raise ConfigError(f"A/B variant {v.name!r} overrides unknown setting(s) {', '.join(unknown)}.",
                              param="ab")
        try:  # the values too, so that a bad one fails at start rather than on the first request it gets
            Settings(**v.settings)
        except _PydError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"A/B variant {v.name!r} has a bad value for setting {where!r}: {err['msg']}.",
                              param="ab") from None
        if v.retrieval:
            from llmspace.rag.retrieve import RetrievalParams

            bad = [k for k in v.retrieval if k not in RetrievalParams.__dataclass_fields__]
            if bad:
                raise ConfigError(f"A/B variant {v.name!r} has unknown retrieval option(s) {', '.join(bad)}.",
                                  param="ab")
    return cfg if cfg.enabled else None


def bucket(key: str, salt: str) -> float:
    """A stable number in [0, 1) for ``key``."""
    h = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def assign(key: str | None, config: ABConfig) -> Variant:
    x = bucket(key, config.salt) if key else secrets.randbelow(2**32) / 2**32
    return config.b if x < config.split else config.a


# ------------------------------------------------------------------ serving
class Arm:
    """One variant as served: its ``services`` view and its message transform."""

    def __init__(self, variant: Variant, services):
        self.variant = variant
        self.name = variant.name
        self.services = services

    @property
    def retrieval(self) -> dict:
        """Keyword arguments for ``services.rag.answer`` on this arm."""
        return dict(self.variant.retrieval)

    def apply(self, messages: list) -> list:
        msgs = [m if isinstance(m, dict) else m.to_dict() for m in messages]
        if self.variant.system_prompt:
            msgs = [m for m in msgs if m.get("role") != "system"]
            msgs.insert(0, {"role": "system", "content": self.variant.system_prompt})
        return msgs


_SHARED = {"engine": ("chat_model", "backend", "device", "dtype", "threads", "remote_base_url", "remote_model",
                      "remote_api_key", "remote_timeout_s", "remote_context_window"),
           "embedder": ("embedding_model",), "metrics": ()}


class ABRouter:
    """Per-process A/B state: the config and one ``Services`` view per arm."""

    def __init__(self, services, config: ABConfig | None):
        self.base = services
        self.config = config
        self._arms: dict[str, Arm] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.config is not None

    def choose(self, user_key: str | None) -> Arm | None:
        """The arm for this user/API key, or None when A/B is off."""
        if self.config is None:
            return None
        return self.arm(assign(user_key, self.config))

    def arm(self, variant: Variant) -> Arm:
        with self._lock:
            if variant.name not in self._arms:
                self._arms[variant.name] = Arm(variant, self._view(variant))
            return self._arms[variant.name]

    def _view(self, variant: Variant):
        if not variant.settings:
            return self.base
        from llmspace.config import Settings
        from llmspace.services import Services

        base = self.base.settings
        settings = Settings.load(env={}, **{**base.model_dump(), **variant.settings, "ab": None})
        view = Services(settings)
        for attr, keys in _SHARED.items():  # share what the overrides leave alone (one model in memory)
            if all(getattr(settings, k) == getattr(base, k) for k in keys):
                view.__dict__[attr] = getattr(self.base, attr)
        return view

    def report(self, since: float | None = None) -> dict:
        """``ab_report`` of this process's database, control (``a``) first."""
        return ab_report(self.base.settings.db_path, since, self.config)

    def describe(self) -> dict:
        if self.config is None:
            return {"enabled": False}
        return {"enabled": True, "split": self.config.split, "a": self.config.a.model_dump(),
                "b": self.config.b.model_dump()}


_routers: "weakref.WeakKeyDictionary[Any, ABRouter]" = weakref.WeakKeyDictionary()
_routers_lock = threading.Lock()


def ab_router(services) -> ABRouter:
    """The router of ``services`` (built once from ``settings.ab``)."""
    with _routers_lock:
        r = _routers.get(services)
        if r is None:
            r = _routers[services] = ABRouter(services, parse_ab_config(getattr(services.settings, "ab", None)))
        return r


# ------------------------------------------------------------------ report
def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    if n == 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_diff(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float] | None:
    """p2 - p1 with Newcombe's (hybrid Wilson) 95% interval."""
    w1, w2 = wilson(k1, n1), wilson(k2, n2)
    if w1 is None or w2 is None:
        return None
    p1, p2 = k1 / n1, k2 / n2
    d = p2 - p1
    return d, d - math.sqrt((p2 - w2[0]) ** 2 + (w1[1] - p1) ** 2), d + math.sqrt((w2[1] - p2) ** 2 + (p1 - w1[0]) ** 2)


def mean_ci(xs: list[float]) -> tuple[float, float, float] | None:
    if not xs:
        return None
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, m, m
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    half = Z95 * sd / math.sqrt(len(xs))
    return m, m - half, m + half


def ab_report(db_path: Path | str, since: float | None = None, config: ABConfig | None = None) -> dict:
    """Per-variant counts and rates, and treatment minus control with 95% intervals.

    The control is ``config.a`` (the first variant of the ``ab`` setting) and
    the treatment ``config.b``, whatever their names; without a config (A/B
    since switched off) the variants are taken in name order."""
    from llmspace.db import connect
    from llmspace.evals.feedback import migrations
    from llmspace.evals.metrics import percentile

    where, args = "WHERE r.variant IS NOT NULL", []
    if since is not None:
        where += " AND r.created_at >= ?"
        args.append(since)
    with connect(db_path, migrations) as db:
        rows = db.execute(
            "SELECT r.variant, r.total_s, r.cost_usd, r.completion_tokens, "
            "(SELECT SUM(rating = 1) FROM feedback f WHERE f.response_id = r.id) AS ups, "
            "(SELECT SUM(rating = -1) FROM feedback f WHERE f.response_id = r.id) AS downs "
            f"FROM responses r {where}", args).fetchall()
    variants: dict[str, dict] = {}
    for r in rows:
        v = variants.setdefault(r["variant"], {"lat": [], "cost": [], "n": 0, "rated": 0, "up": 0, "down": 0})
        v["n"] += 1
        if r["total_s"] is not None:
            v["lat"].append(r["total_s"])
        if r["cost_usd"] is not None:
            v["cost"].append(r["cost_usd"])
        ups, downs = r["ups"] or 0, r["downs"] or 0
        if ups or downs:  # a response rated several times counts once, by its majority
            v["rated"] += 1
            v["up"] += int(ups >= downs)
            v["down"] += int(downs > ups)
    out: dict = {"variants": {}}
    order = [config.a.name, config.b.name] if config is not None else []
    order += sorted(n for n in variants if n not in order)
    for name in order:
        if name not in variants:
            continue
        v = variants[name]
        lat = mean_ci(v["lat"])
        out["variants"][name] = {
            "responses": v["n"], "rated": v["rated"], "up": v["up"], "down": v["down"],
            "feedback_rate": v["rated"] / v["n"] if v["n"] else None,
            "up_rate": v["up"] / v["rated"] if v["rated"] else None,
            "up_rate_ci95": wilson(v["up"], v["rated"]),
            "latency_mean_s": lat[0] if lat else None, "latency_mean_ci95": lat[1:] if lat else None,
            "latency_p50_s": percentile(v["lat"], 50), "latency_p95_s": percentile(v["lat"], 95),
            "cost_per_answer_usd": sum(v["cost"]) / len(v["cost"]) if v["cost"] else None,
        }
    names = list(out["variants"])
    if config is not None:
        names = [config.a.name, config.b.name] if all(n in variants for n in order[:2]) else []
    if len(names) == 2:
        a, b = (variants[n] for n in names)
        d = newcombe_diff(a["up"], a["rated"], b["up"], b["rated"])
        la, lb = mean_ci(a["lat"]), mean_ci(b["lat"])
        lat_d = None
        if la and lb and len(a["lat"]) > 1 and len(b["lat"]) > 1:
            se = math.sqrt(((la[2] - la[0]) / Z95) ** 2 + ((lb[2] - lb[0]) / Z95) ** 2)
            lat_d = (lb[0] - la[0], lb[0] - la[0] - Z95 * se, lb[0] - la[0] + Z95 * se)
        out["comparison"] = {"of": f"{names[1]} - {names[0]}", "up_rate_diff_ci95": d, "latency_diff_s_ci95": lat_d}
    return out


def format_ab_report(rep: dict) -> str:
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    def ci(c, scale=100, unit="%"):
        return "" if not c else f" [{c[0] * scale:.1f}{unit}, {c[1] * scale:.1f}{unit}]"

    if not rep["variants"]:
        return "No A/B responses recorded yet (is the `ab` setting on and traffic flowing?)."
    lines = [f"{'variant':12s} {'responses':>9s} {'rated':>6s} {'up rate [95% CI]':>26s} {'latency mean [95% CI]':>28s}"
             f" {'p95':>7s} {'cost/answer':>12s}"]
    for name, v in rep["variants"].items():
        lat = "n/a" if v["latency_mean_s"] is None else f"{v['latency_mean_s']:.2f}s" + ci(
            v["latency_mean_ci95"], 1, "s")
        p95 = "n/a" if v["latency_p95_s"] is None else f"{v['latency_p95_s']:.2f}s"
        cost = "n/a" if v["cost_per_answer_usd"] is None else f"${v['cost_per_answer_usd']:.6f}"
        up = pct(v["up_rate"]) + ci(v["up_rate_ci95"])
        lines.append(f"{name:12s} {v['responses']:>9d} {v['rated']:>6d} {up:>26s} {lat:>28s} {p95:>7s} {cost:>12s}")
    c = rep.get("comparison")
    if c:
        d, ld = c["up_rate_diff_ci95"], c["latency_diff_s_ci95"]
        up = "n/a" if d is None else f"{100 * d[0]:+.1f} points [{100 * d[1]:+.1f}, {100 * d[2]:+.1f}]"
        lat = "n/a" if ld is None else f"{ld[0]:+.2f}s [{ld[1]:+.2f}, {ld[2]:+.2f}]"
        lines.append(f"{c['of']}: up rate {up}; latency {lat}")
        lines.append("An interval that contains 0 means no difference shown at 95% confidence.")
    return "\n".join(lines)
