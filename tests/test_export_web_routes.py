"""The /web/ routes inside the main app (``create_app``): page, model files, listing, safety."""

from __future__ import annotations

import shutil

import pytest
from export_helpers import tiny_export
from fastapi.testclient import TestClient

from llmspace.serve.web_routes import DEFAULT_DIST


@pytest.fixture
def client(settings, tmp_path_factory, shared_models_dir):
    from llmspace.serve.app import create_app
    from llmspace.services import Services

    shutil.copytree(tiny_export(tmp_path_factory.getbasetemp(), shared_models_dir), settings.exports_dir / "tiny")
    return TestClient(create_app(Services(settings), with_ui=False))


def test_models_are_listed_and_served(client):
    listing = client.get("/web/models/index.json").json()["models"]
    assert [(m["name"], m["task"], m["dtypes"]) for m in listing] == [("tiny", "text-generation", ["fp32", "q8", "q4"])]
    r = client.get("/web/models/tiny/onnx/model_q4.onnx")
    assert r.status_code == 200 and int(r.headers["content-length"]) == listing[0]["sizes"]["q4"]
    assert r.headers["cross-origin-embedder-policy"] == "require-corp"
    assert client.get("/web/models/tiny/tokenizer_config.json").json()["chat_template"]


@pytest.mark.parametrize("path", ["/web/models/tiny/../../llmspace.db", "/web/models/tiny/%2e%2e/%2e%2e/x",
                                  "/web/models/nope/config.json", "/web/models/tiny/missing.onnx",
                                  "/web/..%2f..%2fpyproject.toml"])
def test_no_file_outside_the_exports_or_the_page(client, path):
    r = client.get(path)
    assert r.status_code == 404


def test_page_is_served_or_says_how_to_build_it(client):
    r = client.get("/web/")
    if (DEFAULT_DIST / "index.html").exists():
        assert r.status_code == 200 and "<div id=\"root\">" in r.text
        assert r.headers["cross-origin-opener-policy"] == "same-origin"
    else:
        assert r.status_code == 404 and "npm run build" in r.json()["error"]["message"]
    assert client.get("/web", follow_redirects=False).headers["location"] == "/web/"


def test_compare_rejects_bad_bodies(client):
    assert client.post("/web/api/compare", json={"prompt": ""}).status_code == 400
    assert client.post("/web/api/compare", json={"prompt": "hi", "max_new_tokens": 100000}).status_code == 400
    assert client.post("/web/api/compare", json={"prompt": "hi", "typo": 1}).status_code == 400
