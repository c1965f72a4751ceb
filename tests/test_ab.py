"""Online A/B: stable assignment, the configured split, arms, report and API."""

from __future__ import annotations

import json

import pytest

from llmspace.errors import ConfigError
from llmspace.evals.ab import (
    ABConfig,
    ABRouter,
    Variant,
    ab_report,
    assign,
    format_ab_report,
    mean_ci,
    newcombe_diff,
    parse_ab_config,
    wilson,
)
from llmspace.evals.feedback import add_feedback, get_response, record_response
from llmspace.services import Services


def test_split_is_stable_per_user_and_close_to_the_fraction():
    cfg = ABConfig(split=0.3, a=Variant(name="base"), b=Variant(name="new"))
    first = {f"user-{i}": assign(f"user-{i}", cfg).name for i in range(20_000)}
    assert all(assign(k, cfg).name == v for k, v in list(first.items())[:2000])  # same user, same arm
    share_b = sum(v == "new" for v in first.values()) / len(first)
    assert abs(share_b - 0.3) < 0.015  # 20k users: 3 sigma is ~0.01
    # another salt reshuffles users but keeps the fraction
    other = ABConfig(split=0.3, a=Variant(name="base"), b=Variant(name="new"), salt="round-2")
    moved = sum(assign(k, other).name != v for k, v in first.items()) / len(first)
    assert 0.3 < moved < 0.5
    assert {assign(f"u{i}", ABConfig(split=0.0)).name for i in range(100)} == {"a"}
    assert {assign(f"u{i}", ABConfig(split=1.0)).name for i in range(100)} == {"b"}


def test_config_parsing_and_errors(tmp_path):
    assert parse_ab_config(None) is None and parse_ab_config("") is None
    cfg = parse_ab_config('{"split": 0.5, "b": {"name": "short", "settings": {"default_max_tokens": 32}}}')
    assert cfg.b.settings == {"default_max_tokens": 32} and cfg.a.name == "a"
    f = tmp_path / "ab.json"
    f.write_text(json.dumps({"split": 0.2}), encoding="utf-8")
    assert parse_ab_config(str(f)).split == 0.2
    assert parse_ab_config('{"enabled": false}') is None
    assert parse_ab_config('{"b": {"name": "wide", "retrieval": {"top_k": 8}}}').b.retrieval == {"top_k": 8}
    for bad, words in [('{"split": 2}', "split"), ('{"splt": 0.5}', "splt"), ("{nope", "not valid JSON"),
                       ('{"b": {"name": "x", "settings": {"chat_modle": "y"}}}', "chat_modle"),
                       (str(tmp_path / "missing.json"), "cannot be read"),
                       ('{"b": {"name": "x", "retrieval": {"topk": 3}}}', "topk"),
                       ('{"a": {"name": "same"}, "b": {"name": "same"}}', "different names")]:
        with pytest.raises(ConfigError, match=words):
            parse_ab_config(bad)


def test_router_arms_share_the_loaded_model_unless_overridden(settings):
    services = Services(settings)
    cfg = ABConfig(split=0.5, a=Variant(name="base"),
                   b=Variant(name="terse", system_prompt="Answer in one sentence.",
                             settings={"default_max_tokens": 32}))
    router = ABRouter(services, cfg)
    arms = {router.choose(f"user-{i}").name: router.choose(f"user-{i}") for i in range(50)}
    assert set(arms) == {"base", "terse"}
    assert arms["base"].services is services
    terse = arms["terse"].services
    assert terse.settings.default_max_tokens == 32
    assert terse.__dict__["engine"] is services.engine  # same model: not loaded twice
    msgs = arms["terse"].apply([{"role": "system", "content": "old"}, {"role": "user", "content": "hi"}])
    assert msgs == [{"role": "system", "content": "Answer in one sentence."}, {"role": "user", "content": "hi"}]
    assert ABRouter(services, None).choose("anyone") is None


def test_statistics():
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 0) is None
    d, lo, hi = newcombe_diff(5, 10, 8, 10)
    assert d == pytest.approx(0.3) and lo < 0 < hi  # 10 ratings each: not significant
    d, lo, hi = newcombe_diff(50, 100, 80, 100)
    assert 0 < lo < d < hi
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and lo == pytest.approx(2 - 1.96 / 3 ** 0.5, abs=1e-3)


def test_report_compares_variants(settings):
    db = settings.db_path
    for i in range(40):
        v = "a" if i % 2 else "b"
        rid = f"r{i}"
        record_response(db, id=rid, kind="chat", question="q", answer="x", variant=v, prompt_tokens=10,
                        completion_tokens=5, total_s=1.0 + (0.5 if v == "b" else 0) + (i % 3) * 0.1,
                        cost_usd=0.001)
        if i < 30:
            add_feedback(db, rating="up" if (v == "b" or i % 3 == 0) else "down", response_id=rid)
    record_response(db, id="no-ab", kind="chat", question="q", answer="x")  # A/B off: not counted
    rep = ab_report(db)
    a, b = rep["variants"]["a"], rep["variants"]["b"]
    assert a["responses"] == 20 and b["responses"] == 20
    assert b["rated"] == 15 and b["up"] == 15 and b["up_rate"] == 1.0
    assert a["rated"] == 15 and 0 < a["up_rate"] < 1
    assert a["feedback_rate"] == pytest.approx(0.75)
    assert b["latency_mean_s"] > a["latency_mean_s"]
    c = rep["comparison"]
    assert c["of"] == "b - a" and c["up_rate_diff_ci95"][0] > 0 and c["latency_diff_s_ci95"][1] > 0
    text = format_ab_report(rep)
    assert "b - a: up rate +" in text and "95%" in text


def test_ab_api_and_cli(settings, monkeypatch, capsys):
    from fastapi.testclient import TestClient

    from llmspace.cli import main
    from llmspace.serve import eval_routes
    from llmspace.serve.app import create_app

    record_response(settings.db_path, id="r1", kind="chat", question="q", answer="x", variant="a", total_s=1.0)
    app = create_app(Services(settings), with_ui=False)
    if not any(getattr(r, "path", "") == "/v1/ab" for r in app.routes):
        app.include_router(eval_routes.router)
    body = TestClient(app).get("/v1/ab").json()
    assert body["config"] == {"enabled": False} and body["report"]["variants"]["a"]["responses"] == 1
    assert main(["ab", "report"]) == 0
    assert "A/B is off" in capsys.readouterr().out
    assert main(["ab", "assign", "alice"]) == 1  # off: says so


def test_serving_hooks_assign_by_api_key_and_record_the_variant(settings):
    """What the chat route does per request: choose an arm, answer, record it."""
    from starlette.requests import Request

    from llmspace.engine.base import Usage
    from llmspace.evals import ab
    from llmspace.serve.eval_routes import choose_arm, record

    services = Services(settings)
    ab._routers[services] = ABRouter(services, ABConfig(split=0.5, a=Variant(name="base"),
                                                        b=Variant(name="terse", system_prompt="Be terse.")))

    def request(key):
        return Request({"type": "http", "method": "POST", "path": "/v1/chat/completions",
                        "headers": [(b"authorization", f"Bearer {key}".encode())]})

    seen = {}
    for i in range(60):
        key = f"sk-{i}"
        arm = choose_arm(services, request(key))
        assert choose_arm(services, request(key)).name == arm.name  # stable per API key
        assert choose_arm(services, request("other"), user=f"u{i}") is not None
        seen[key] = arm.name
        record(services, request(key), response_id=f"chatcmpl-{i}", kind="chat",
               question=[{"role": "user", "content": "hi"}], answer="hello",
               usage=Usage(10, 3), timings={"ttft_s": 0.1, "total_s": 0.5 if arm.name == "base" else 0.3},
               model="m", arm=arm)
    rep = ab_report(settings.db_path)
    counts = {name: v["responses"] for name, v in rep["variants"].items()}
    assert counts == {n: list(seen.values()).count(n) for n in ("base", "terse")}
    assert rep["variants"]["terse"]["latency_mean_s"] == pytest.approx(0.3)
    assert rep["variants"]["base"]["cost_per_answer_usd"] == pytest.approx(0.1 * 0.5 / 3600)
    assert get_response(settings.db_path, "chatcmpl-0")["question"] == "hi"


def test_report_takes_control_and_treatment_from_the_config_not_the_alphabet(settings):
    """The control is the first variant configured ("zeta"), though "alpha" sorts first."""
    from llmspace.evals.ab import ab_router

    db = settings.db_path
    for i in range(40):
        v = "zeta" if i % 2 else "alpha"  # treatment "alpha" is liked more and slower
        record_response(db, id=f"r{i}", kind="chat", question="q", answer="x", variant=v,
                        total_s=1.0 + (0.5 if v == "alpha" else 0) + (i % 3) * 0.1)
        add_feedback(db, rating="up" if (v == "alpha" or i % 3 == 0) else "down", response_id=f"r{i}")
    cfg = ABConfig(split=0.5, a=Variant(name="zeta"), b=Variant(name="alpha"))
    rep = ab_report(db, config=cfg)
    assert list(rep["variants"]) == ["zeta", "alpha"]
    c = rep["comparison"]
    assert c["of"] == "alpha - zeta"
    assert c["up_rate_diff_ci95"][0] > 0 and c["latency_diff_s_ci95"][0] > 0  # treatment minus control
    assert "alpha - zeta: up rate +" in format_ab_report(rep)
    # every shell gets the report through the router, which knows the config
    services = Services(settings.model_copy(update={"ab": json.dumps(
        {"a": {"name": "zeta"}, "b": {"name": "alpha"}})}))
    assert ab_router(services).report()["comparison"]["of"] == "alpha - zeta"


@pytest.mark.parametrize("value, words", [
    ("{nope", "not valid JSON"),
    ('{"b": {"name": "x", "settings": {"default_max_tokens": "many"}}}', "'x' has a bad value for setting"),
    ('{"b": {"name": "x", "pattern": "cot"}}', "b.pattern"),  # prompt patterns do not exist yet
])
def test_a_bad_ab_setting_fails_at_start_not_on_the_first_request(settings, value, words):
    # every shell (CLI, HTTP app, UI) starts by building its Services
    with pytest.raises(ConfigError, match=words):
        Services(settings.model_copy(update={"ab": value}))
