"""The browser page out of the box: what /web/ loads is exported at server start,
in the background (``llmspace.export.web_bundle``).

Fast tests check the plan (what is missing, outdated, made elsewhere), the
status and the lock on fake export folders. The browser test starts the real
app as `make run` does (``python app.py``) on a fresh home, checks that the UI
and the API answer while the export runs, lets headless Chromium load the
exported model and answer, then starts again and checks nothing is re-exported.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmspace.config import Settings
from llmspace.export import web_bundle as wb

ROOT = Path(__file__).resolve().parents[1]


def fake_chat(folder: Path, dtypes=("q8", "q4")) -> Path:
    from llmspace.export.layout import onnx_path

    (folder / "onnx").mkdir(parents=True)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "special_tokens_map.json"):
        (folder / name).write_text("{}")
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))
    for d in dtypes:
        onnx_path(folder, d).write_bytes(b"onnx")
    return folder


def fake_embedding(folder: Path, index: bool = True) -> Path:
    (folder / "onnx").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "llmspace_export.json").write_text(json.dumps({"task": "feature-extraction"}))
    (folder / "onnx" / "model.onnx").write_bytes(b"onnx")
    if index:
        (folder / "index.json").write_text("{}")
    return folder


def fake_bundled_index(settings: Settings, content: str = "{}") -> None:
    (settings.indexes_dir / "roadmap").mkdir(parents=True, exist_ok=True)
    (settings.indexes_dir / "roadmap" / "manifest.json").write_text(content)


def made(settings: Settings) -> dict[str, tuple[bool, str]]:
    return {part: (make, why) for part, make, why in wb.plan(settings)}


def stamp(settings: Settings, **changes) -> None:
    wb.state_dir(settings).mkdir(parents=True, exist_ok=True)
    (wb.state_dir(settings) / "meta.json").write_text(json.dumps({**wb.wanted(settings), **changes}))


def test_plan_makes_what_is_missing_and_then_nothing(settings):
    fake_bundled_index(settings)
    assert {p: m for p, (m, _) in made(settings).items()} == {"chat": True, "embedding": True, "index": True}
    fake_chat(settings.exports_dir / "smollm2-135m-instruct")
    fake_embedding(settings.exports_dir / "all-minilm-l6-v2")
    stamp(settings)
    assert made(settings) == {p: (False, "up to date") for p in ("chat", "embedding", "index")}
    assert all(make for make in (m for _, m, _ in wb.plan(settings, force=True)))


def test_plan_redoes_what_a_new_version_model_or_index_outdates(settings):
    fake_bundled_index(settings)
    fake_chat(settings.exports_dir / "smollm2-135m-instruct")
    fake_embedding(settings.exports_dir / "all-minilm-l6-v2")
    old = wb.wanted(settings)
    stamp(settings, chat={**old["chat"], "llmspace": "0.0.1"})
    assert made(settings)["chat"] == (True, "outdated") and not made(settings)["embedding"][0]
    stamp(settings)
    fake_bundled_index(settings, '{"rebuilt": true}')  # the corpus changed: only the index is redone
    assert made(settings) == {"chat": (False, "up to date"), "embedding": (False, "up to date"),
                              "index": (True, "outdated")}


def test_exports_made_elsewhere_are_reused_or_left_alone(settings):
    fake_bundled_index(settings)
    fake_chat(settings.exports_dir / "smollm2-135m-instruct", dtypes=("fp32",))  # `llmspace export onnx --dtype fp32`
    fake_embedding(settings.exports_dir / "all-minilm-l6-v2")  # e.g. bundled in a Space
    plan = made(settings)
    assert plan["chat"][0] is False and "left alone" in plan["chat"][1] and "--force" in plan["chat"][1]
    assert plan["embedding"] == (False, "made elsewhere, reused") and plan["index"] == (False, "made elsewhere, reused")


def test_status_says_not_started_running_interrupted_or_off(settings):
    assert wb.web_export_status(settings)["state"] == "not_started"
    wb.state_dir(settings).mkdir(parents=True)
    status = wb._Status(settings)
    status.update(step=1, steps=2, message="quantizing to q4")
    assert wb.web_export_status(settings)["state"] == "running"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    status.update(pid=int(dead.stdout))
    assert wb.web_export_status(settings)["state"] == "interrupted"
    status.update(state="done")
    assert wb.web_export_status(settings.model_copy(update={"web_export": False}))["state"] == "off"


def test_setting_off_or_nothing_to_do_starts_no_process(settings):
    said: list[str] = []
    off = Settings.load(env={"LLMSPACE_WEB_EXPORT": "0"}, home=settings.home)
    assert off.web_export is False and wb.start_background(off, said.append) is None
    assert "LLMSPACE_WEB_EXPORT=0" in said[-1]
    fake_chat(settings.exports_dir / "smollm2-135m-instruct")
    fake_embedding(settings.exports_dir / "all-minilm-l6-v2")
    fake_bundled_index(settings)
    stamp(settings)
    assert wb.start_background(settings, said.append) is None and "up to date" in said[-1]


def test_one_export_at_a_time(settings):
    from filelock import FileLock

    wb.state_dir(settings).mkdir(parents=True)
    said: list[str] = []
    with FileLock(str(wb.state_dir(settings) / "lock")):  # another replica is exporting
        assert wb.prepare_web_bundle(settings, progress=said.append) == {"state": "busy"}
    assert "another process" in said[-1]


def test_model_listing_carries_the_preparation_status(settings):
    from fastapi.testclient import TestClient

    from llmspace.serve.web_routes import standalone_app

    wb.state_dir(settings).mkdir(parents=True)
    wb._Status(settings).update(step=1, steps=2, message="chat model: quantizing to q4")
    body = TestClient(standalone_app(settings)).get("/web/models/index.json").json()
    assert body["models"] == [] and body["web_export"]["state"] == "running"
    assert body["web_export"]["message"] == "chat model: quantizing to q4"


# ---------------------------------------------------------------- end to end
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """``python app.py`` (what `make run` runs) on a free port, its log in a file."""

    def __init__(self, home: Path, log: Path):
        self.port, self.log = _free_port(), log
        env = {**os.environ, "LLMSPACE_HOME": str(home), "LLMSPACE_PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log.open("w"),
                                     stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, self.text()
            time.sleep(0.5)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def web_export(self) -> dict:
        return httpx.get(f"{self.url}/web/models/index.json", timeout=30).json()["web_export"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.browser
def test_fresh_start_prepares_the_page_which_loads_the_model_and_answers(llmspace_home, tmp_path):
    browser_tests = pytest.importorskip("test_browser")  # skips without Chromium, the built page or Playwright
    from playwright.sync_api import sync_playwright

    settings = Settings.load()
    app = App(llmspace_home, tmp_path / "first.log")
    try:
        # the UI and the API answer while the export runs: it does not delay them
        assert httpx.get(f"{app.url}/health", timeout=30).json()["web_export"] == "running"
        assert httpx.get(f"{app.url}/", timeout=60).status_code == 200
        r = httpx.post(f"{app.url}/v1/chat/completions", timeout=120, json={
            "model": "default", "max_tokens": 8, "messages": [{"role": "user", "content": "Hello"}]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        assert app.web_export()["state"] == "running", "the export finished before the API was checked"

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(browser_tests.CHROMIUM), headless=True,
                                        args=browser_tests.FLAGS)
            page = browser.new_page()
            page.on("pageerror", lambda exc: print("page error:", exc))
            page.goto(f"{app.url}/web/?device=wasm")
            page.wait_for_function("() => /preparing the browser models/.test("
                                   "document.querySelector('#status')?.textContent ?? '')", timeout=30_000)
            # the page polls the server and offers the model once it is exported
            page.wait_for_selector("#load:not([disabled])", timeout=900_000)
            assert page.input_value("#dtype") == "q8"  # the page's first choice on WASM
            status = browser_tests.load_model(page)
            assert "WASM" in status and "q8" in status
            ids, text = browser_tests.ask(page, "What is the capital of France?", 12, turn=1)
            assert ids and text.strip(), text
            # retrieval in the page over the bundled index (its export lands after the chat model's)
            page.wait_for_selector("#search-query", timeout=600_000)
            page.fill("#search-query", "How do I export a model to ONNX?")
            page.click("#search-run")
            page.wait_for_selector("#search-hits li", timeout=120_000)
            browser.close()
        assert app.web_export()["state"] == "done"
        assert httpx.get(f"{app.url}/health", timeout=30).json()["web_export"] == "done"
        log = app.text()
        assert "browser models: preparing them in the background" in log and "quantizing to q4" in log
        assert "browser models: ready in" in log
        assert [e["name"] for e in httpx.get(f"{app.url}/web/models/index.json").json()["models"]] == \
            ["all-minilm-l6-v2", "smollm2-135m-instruct"]
    finally:
        app.stop()
    meta = (wb.state_dir(settings) / "meta.json").read_text()
    chat_version = os.path.realpath(settings.exports_dir / "smollm2-135m-instruct")

    second = App(llmspace_home, tmp_path / "second.log")  # a later start reuses the export
    try:
        assert "browser models: chat up to date; embedding up to date; index up to date." in second.text()
        assert "in the background" not in second.text()
        assert httpx.get(f"{second.url}/health", timeout=30).json()["web_export"] == "done"
    finally:
        second.stop()
    assert (wb.state_dir(settings) / "meta.json").read_text() == meta
    assert os.path.realpath(settings.exports_dir / "smollm2-135m-instruct") == chat_version
