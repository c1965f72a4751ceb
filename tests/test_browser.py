"""The browser page end to end, in headless Chromium (Debian's ``chromium``,
driven by Playwright's Python package; never ``playwright install``).

A FastAPI app serves web/dist at /web/ and the exported tiny model; the page
loads it with Transformers.js on WASM and must produce, token for token, the
greedy output of the server's ONNX backend. Skips with the reason when
Chromium, the built page or Playwright is missing locally; CI installs all three.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from export_helpers import embedding_export, tiny_export

from llmspace.config import Settings
from llmspace.engine.base import Message

CHROMIUM = Path("/usr/bin/chromium")
DIST = Path(__file__).resolve().parents[1] / "web" / "dist"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

if not CHROMIUM.exists():
    pytest.skip("headless Chromium is not installed (/usr/bin/chromium): apt-get install chromium",
                allow_module_level=True)
if not (DIST / "index.html").exists():
    pytest.skip("the browser app is not built (web/dist): cd web && npm ci && npm run build", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright's Python package: pip install playwright")

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory, shared_models_dir):
    """(base URL, settings, requested paths): the app on a free loopback port."""
    import uvicorn

    from llmspace.serve.web_routes import standalone_app

    base = tmp_path_factory.getbasetemp()
    home = tmp_path_factory.mktemp("browser_home")
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    shutil.copytree(tiny_export(base, shared_models_dir), home / "exports" / "tiny")
    shutil.copytree(embedding_export(base, shared_models_dir), home / "exports" / "all-minilm-l6-v2")
    settings = Settings.load(env={}, home=home)
    app = standalone_app(settings)
    paths: list[str] = []

    @app.middleware("http")
    async def record(request, call_next):
        paths.append(request.url.path)
        return await call_next(request)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", settings, paths
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One persistent Chromium context (fresh profile): its HTTP cache and Cache API survive page reloads."""
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=FLAGS)
        requests: list[str] = []
        context.on("request", lambda r: requests.append(r.url))
        context.requests = requests
        yield context
        context.close()


def open_page(browser, site, query: str):
    url, _, _ = site
    page = browser.new_page()
    page.on("pageerror", lambda exc: print("page error:", exc))
    page.goto(f"{url}/web/?{query}")
    page.wait_for_selector("#load:not([disabled])", timeout=30_000)
    return page


def load_model(page) -> str:
    page.click("#load")
    page.wait_for_selector("#status[data-status=ready], #status[data-status=error]", timeout=120_000)
    status = page.inner_text("#status")
    assert page.get_attribute("#status", "data-status") == "ready", status
    return status


def ask(page, text: str, max_tokens: int, turn: int) -> tuple[list[int], str]:
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#prompt", text)
    page.click("#send")
    item = f"#history li.assistant:nth-of-type({2 * turn})[data-state=done]"
    page.wait_for_selector(item, timeout=120_000)
    ids = page.get_attribute(item, "data-token-ids") or ""
    return [int(x) for x in ids.split(",") if x], page.inner_text(f"{item} .content")


@pytest.mark.parametrize("dtype", ["fp32", "q8"])
def test_browser_greedy_equals_server_onnx_token_for_token(browser, site, dtype):
    from llmspace.engine.onnx_engine import OnnxEngine

    url, settings, _ = site
    engine = OnnxEngine(settings, "tiny", dtype=dtype)
    page = open_page(browser, site, f"device=wasm&dtype={dtype}&model=tiny")
    status = load_model(page)
    assert "WASM" in status and dtype in status
    assert page.eval_on_selector(".progress .bar", "el => el.style.width") == "100%"

    first = [Message("user", "Hello there")]
    ids, text = ask(page, "Hello there", 12, turn=1)
    assert ids == engine.greedy_ids(first, 12) and len(ids) > 0
    # a second turn: the chat history goes back to the model
    second = first + [Message("assistant", text), Message("user", "And then?")]
    ids2, _ = ask(page, "And then?", 8, turn=2)
    assert ids2 == engine.greedy_ids(second, 8)
    assert page.locator("#history li").count() == 4
    assert "tok/s" in page.inner_text("#history li.assistant:nth-of-type(4) .stats")
    assert all(r.startswith(url) or r.startswith(("blob:", "data:")) for r in browser.requests), \
        "the page fetched something from another origin"
    page.close()


def test_model_is_cached_between_visits(browser, site):
    _, _, paths = site
    page = open_page(browser, site, "device=wasm&dtype=fp32&model=tiny")
    load_model(page)  # first visit (or cached by the test above)
    page.close()
    before = len(paths)
    page = open_page(browser, site, "device=wasm&dtype=fp32&model=tiny")
    load_model(page)
    fetched = [p for p in paths[before:] if p.startswith("/web/models/tiny/")]
    assert fetched == [], f"model files fetched again on the second visit: {fetched}"
    page.close()


def test_stop_button_interrupts_generation(browser, site):
    page = open_page(browser, site, "device=wasm&dtype=q8&model=tiny")
    load_model(page)
    page.fill("#max-tokens", "1500")
    page.fill("#prompt", "Count to a thousand.")
    page.click("#send")
    page.wait_for_function(
        "() => /([3-9]|\\d\\d+) tokens/.test(document.querySelector('#history li.assistant .stats')?.textContent ?? '')",
        timeout=60_000)
    page.click("#stop")
    page.wait_for_selector("#history li.assistant[data-state=done]", timeout=60_000)
    stats = page.inner_text("#history li.assistant .stats")
    assert "stopped" in stats and int(stats.split()[0]) < 1500
    page.close()


def test_browser_embeddings_and_search_match_sentence_transformers(browser, site):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from llmspace import models
    from llmspace.export.embedding import write_browser_index

    _, settings, _ = site
    texts = ["ONNX is an open format for machine learning models.", "Paris is the capital of France.",
             "Transformers.js runs models in the browser."]
    st = SentenceTransformer(str(models.resolve("minilm", "embedding", settings.models_dir)), device="cpu")
    ref = st.encode(texts, normalize_embeddings=True)
    write_browser_index(settings.exports_dir / "all-minilm-l6-v2",
                        [{"text": t, "source": f"doc{i}.md"} for i, t in enumerate(texts)], ref, name="test")
    page = open_page(browser, site, "device=wasm&dtype=fp32&model=tiny")
    got = np.array(page.evaluate("t => window.llmspace.embed('all-minilm-l6-v2', t)", texts))
    assert got.shape == ref.shape and float(np.abs(got - ref).max()) < 1e-4
    page.fill("#search-query", "Which city is France's capital?")
    page.click("#search-run")
    page.wait_for_selector("#search-hits li", timeout=60_000)
    assert "Paris" in page.inner_text("#search-hits li:first-child")
    page.close()


def test_compare_view_runs_server_and_browser(browser, site):
    import httpx

    url, _, _ = site
    rows = httpx.post(f"{url}/web/api/compare", json={"prompt": "Hello there", "max_new_tokens": 8,
                                                      "model": "tiny", "dtype": "fp32"}, timeout=120).json()["results"]
    by = {r["backend"]: r for r in rows}
    assert set(by) == {"torch", "onnx"} and not any("error" in r for r in rows)
    assert by["torch"]["text"] == by["onnx"]["text"]  # same weights, both fp32, greedy
    assert all(r["load_s"] > 0 and r["ttft_s"] > 0 for r in rows)

    page = open_page(browser, site, "device=wasm&dtype=fp32&model=tiny")
    load_model(page)
    page.fill("#compare-prompt", "Hello there")
    page.click("#compare-run")
    page.wait_for_function("() => document.querySelectorAll('#compare-table tbody tr').length === 3",
                           timeout=120_000)
    table = page.inner_text("#compare-table")
    assert "torch" in table and "onnx" in table and "browser (wasm, fp32)" in table
    page.close()
