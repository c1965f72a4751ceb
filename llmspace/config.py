"""One settings object for every shell.

Values come from, in order of precedence: explicit overrides (CLI flags,
tests), ``LLMSPACE_*`` environment variables, then the defaults below, which
run on a 2-core CPU with no network. Unknown keys are errors, in overrides and
in the environment alike (``LLMSPACE_TYPO=1`` fails loudly instead of being
ignored).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as _PydValidationError

from llmspace.errors import ConfigError

ENV_PREFIX = "LLMSPACE_"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Field(default_factory=lambda: Path("~/.cache/llmspace").expanduser(),
                       description="Holds every converted model, index, export and log.")
    chat_model: str = Field("smollm2-135m-instruct",
                            description="Registry name, local folder or Hub id of the chat model.")
    embedding_model: str = Field("all-minilm-l6-v2",
                                 description="Registry name, local folder or Hub id of the embedding model.")
    reranker_model: str | None = Field(None, description="Optional cross-encoder for RAG reranking.")
    backend: Literal["torch", "onnx", "genai", "remote"] = Field("torch", description=(
        "torch, onnx or genai (onnxruntime-genai with the GGUF's own 4-bit blocks: the fast CPU path): in this "
        "process; remote: an OpenAI-compatible server (vLLM, llama.cpp, another llmspace) "
        "at remote_base_url."))
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (default: torch's choice).")
    # backend=remote (docs/serving.md)
    remote_base_url: str | None = Field(None, description="The remote server's OpenAI base URL, "
                                        "e.g. http://host:8000/v1 (backend=remote).")
    remote_model: str | None = Field(None, description="Model name to send (default: the first id the remote's "
                                     "GET /v1/models lists).")
    remote_api_key: str | None = Field(None, description="Sent as 'Authorization: Bearer ...' to the remote.")
    remote_timeout_s: float = Field(60, gt=0, description="Seconds to connect, and the longest wait for the next "
                                    "chunk of a remote answer, before it fails with HTTP 502.")
    remote_context_window: int | None = Field(None, ge=16, description="The remote model's context window in tokens "
                                              "(default: what its /v1/models entry reports, else 2048).")
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=1, le=65535)
    grpc_port: int | None = Field(None, ge=1, le=65535, description="Port of the gRPC service (llmspace.v1.LLMSpace, "
                                  "docs/grpc.md) beside the HTTP API, on the same host; unset: no gRPC.")
    default_max_tokens: int = Field(256, ge=1)
    max_tokens_limit: int = Field(2048, ge=1, description="Largest max_tokens a request may ask for.")
    max_request_chars: int = Field(200_000, ge=1, description="Largest total message text a request may carry.")
    queue_size: int = Field(32, ge=1, description="Gradio queue length.")
    # the engine thread (issue #10): how many sequences decode together, how many may wait
    max_num_seqs: int = Field(8, ge=1, le=256, description="Requests decoded together in one batch (vLLM's name).")
    max_queue: int = Field(64, ge=1, description="Requests that may wait for a batch slot; more get 503 + Retry-After.")
    queue_timeout_s: float = Field(120, ge=0, description="A request waiting longer than this gets 503 (0: no limit).")
    request_timeout_s: float = Field(600, ge=0, description="A generation running longer than this ends with "
                                     "finish_reason 'timeout' (0: no limit).")
    keepalive_s: float = Field(10, gt=0, description="While a request waits, streams send a keep-alive this often.")
    # bounds on what clients can make the server hold (issue #9)
    embedding_max_inputs: int = Field(2048, ge=1, description="Most texts one /v1/embeddings request may carry.")
    embedding_max_input_chars: int = Field(32_000, ge=1,
                                           description="Longest single text /v1/embeddings accepts.")
    rag_cache_size: int = Field(4, ge=1, description="Loaded RAG indexes kept in memory (least recently used go).")
    responses_max_rows: int = Field(100_000, ge=0, description=(
        "Recorded answers (feedback by id, A/B) kept; the oldest go on each write. 0: no row limit."))
    responses_max_days: float = Field(90, ge=0, description=(
        "Days a recorded answer is kept; older ones go on each write. 0: no age limit."))
    compare_max_engines: int = Field(2, ge=1, description="Engines the /web/ compare view keeps loaded.")
    language: Literal["en", "zh"] = Field("en", description="Default UI language.")
    default_index: str = Field("roadmap", description="Index the RAG tab and `ask --index` use by default.")
    index_bundled_corpus: bool = Field(True, description="Build the bundled roadmap index on first start.")
    web_dist: Path | None = Field(None, description="The built browser page served at /web/ (a folder with "
                                  "index.html). Default: web/dist of the source checkout llmspace runs from.")
    web_export: bool = Field(True, description="At server start, export what the browser page (/web/) loads, "
                             "in the background: chat model (q8, q4), embedding model, bundled index.")
    # evaluation and online A/B (docs/evals.md)
    ab: str | None = Field(None, description="Online A/B: JSON, or a path to a .json file (docs/evals.md).")
    eval_usd_per_hour: float | None = Field(None, ge=0, description="Hardware price/hour for cost (default 0.10).")
    eval_usd_per_1m_prompt_tokens: float | None = Field(None, ge=0,
                                                        description="Per-token price (switches cost to tokens).")
    eval_usd_per_1m_completion_tokens: float | None = Field(None, ge=0)
    eval_judge_model: str | None = Field(None, description="Model for `eval run --judge` (default: chat model).")

    @field_validator("remote_base_url")
    @classmethod
    def _http_url(cls, v):
        if v is not None and not v.lower().startswith(("http://", "https://")):
            raise ValueError(f"{v!r} is not an http(s) URL; give the remote's OpenAI base URL, e.g. http://host:8000/v1")
        return v.rstrip("/") if v else v

    # ---- derived paths -------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def indexes_dir(self) -> Path:
        return self.home / "indexes"

    @property
    def exports_dir(self) -> Path:
        return self.home / "exports"

    @property
    def db_path(self) -> Path:
        return self.home / "llmspace.db"

    # ---- loading -------------------------------------------------------
    @classmethod
    def load(cls, env: dict[str, str] | None = None, **overrides) -> "Settings":
        env = dict(os.environ if env is None else env)
        fields = cls.model_fields
        values: dict[str, object] = {}
        for key, raw in env.items():
            if not key.startswith(ENV_PREFIX):
                continue
            name = key[len(ENV_PREFIX):].lower()
            if name not in fields:
                raise ConfigError(
                    f"Unknown setting {key}. Valid settings: "
                    + ", ".join(ENV_PREFIX + f.upper() for f in fields)
                    + ". Unset it or fix the spelling.",
                    param=key,
                )
            values[name] = None if raw == "" and fields[name].default is None else raw
        unknown = [k for k in overrides if k not in fields]
        if unknown:
            raise ConfigError(f"Unknown setting(s): {', '.join(unknown)}. Valid: {', '.join(fields)}.",
                              param=unknown[0])
        values.update({k: v for k, v in overrides.items()})
        try:
            settings = cls(**values)
        except _PydValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            raise ConfigError(f"Bad value for setting {field!r}: {err['msg']}.", param=field) from None
        return settings.model_copy(update={"home": Path(settings.home).expanduser().resolve()})

    def ensure_home(self) -> Path:
        for d in (self.home, self.models_dir, self.indexes_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self.home

    def describe(self) -> dict[str, object]:
        """Settings as plain data, secrets masked (for `llmspace info`, logs, meta.json)."""
        data = self.model_dump(mode="json")
        if data.get("remote_api_key"):
            data["remote_api_key"] = "***"
        return data
