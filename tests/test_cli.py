"""The `llmspace` command, run as a user runs it (a subprocess)."""

import json
import os
import subprocess
import sys

import pytest


def run(*args, env_extra=None, timeout=300):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "llmspace", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("info", "ask", "chat", "serve"):
        assert cmd in r.stdout


@pytest.mark.slow
def test_ask_json_gives_the_fixed_greedy_answer():
    r = run("ask", "--json", "--max-tokens", "30", "What is the capital of France?")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["answer"] == "The capital of France is Paris."
    assert out["usage"]["completion_tokens"] == 7 and out["finish_reason"] == "stop"


@pytest.mark.parametrize("args,needle", [
    (["ask", "--max-tokens", "0", "hi"], "max_tokens"),
    (["ask", "--temperature", "-1", "hi"], "temperature"),
    (["ask", ""], "empty"),
    (["ask", "--model", "no-such-model", "hi"], "Unknown chat model"),
])
def test_bad_input_prints_a_message_and_exits_non_zero(args, needle):
    r = run(*args)
    assert r.returncode != 0
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_bad_setting_in_environment_is_reported():
    r = run("info", "--no-load", env_extra={"LLMSPACE_TYPO": "1"})
    assert r.returncode == 1 and "Unknown setting LLMSPACE_TYPO" in r.stderr


@pytest.mark.slow
def test_info_reports_device_and_models():
    r = run("info", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["ok"] and info["device"]["device"] in ("cpu", "cuda", "mps")
    assert info["models"]["chat"]["loads"] and info["models"]["embedding"]["loads"]
    assert info["device"]["advice"]
    engine = info["engine"]  # the active backend, its weights and a measured decode speed
    assert engine["backend"] == "torch" and engine["weights"] == "fp32" and engine["max_num_seqs"] == 8
    assert engine["decode_tokens_per_s"] > 0 and "measure_error" not in engine


def test_chat_reads_stdin_until_eof():
    r = subprocess.run([sys.executable, "-m", "llmspace", "chat", "--max-tokens", "12"], input="/exit\n",
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
