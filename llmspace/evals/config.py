"""Eval settings: prices (for cost) and the optional judge.

Cost has two modes, and every report says which one it used:

* ``tokens`` — per-token prices, as a hosted API bills: set
  ``usd_per_1m_prompt_tokens`` and/or ``usd_per_1m_completion_tokens``.
* ``hardware`` (default) — the machine's price per hour times the wall time
  each answer held it (batch of one). Over a run this equals the hourly price
  divided by the measured throughput: cost per 1k tokens =
  ``usd_per_hour / 3600 / (tokens per second) * 1000``.

Values come from ``Settings`` fields when the settings object has them
(``eval_usd_per_hour``, ``eval_usd_per_1m_prompt_tokens``,
``eval_usd_per_1m_completion_tokens``, ``eval_judge_model``), else the defaults
below; CLI flags override both.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# About what a 2-vCPU on-demand cloud VM costs; set your own with eval_usd_per_hour.
DEFAULT_USD_PER_HOUR = 0.10


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    usd_per_hour: float = Field(DEFAULT_USD_PER_HOUR, ge=0, description="Hardware price per hour (hardware mode).")
    usd_per_1m_prompt_tokens: float | None = Field(None, ge=0)
    usd_per_1m_completion_tokens: float | None = Field(None, ge=0)
    judge_model: str | None = Field(None, description="Model for the optional LLM-as-judge (default: the chat model).")

    @property
    def cost_mode(self) -> Literal["tokens", "hardware"]:
        if self.usd_per_1m_prompt_tokens is not None or self.usd_per_1m_completion_tokens is not None:
            return "tokens"
        return "hardware"

    def describe_cost(self) -> str:
        if self.cost_mode == "tokens":
            return (f"per-token prices: ${self.usd_per_1m_prompt_tokens or 0:g}/1M prompt, "
                    f"${self.usd_per_1m_completion_tokens or 0:g}/1M completion tokens")
        return f"hardware: ${self.usd_per_hour:g}/hour x wall time per answer (= price / measured throughput)"

    def case_cost(self, prompt_tokens: int, completion_tokens: int, seconds: float | None) -> float | None:
        if self.cost_mode == "tokens":
            return (prompt_tokens * (self.usd_per_1m_prompt_tokens or 0)
                    + completion_tokens * (self.usd_per_1m_completion_tokens or 0)) / 1e6
        if seconds is None:
            return None
        return self.usd_per_hour * seconds / 3600

    @classmethod
    def from_settings(cls, settings=None, **overrides) -> "EvalConfig":
        values = {}
        for field in cls.model_fields:
            v = getattr(settings, "eval_" + field, None) if settings is not None else None
            if v is not None:
                values[field] = v
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
