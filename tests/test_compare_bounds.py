"""The /web/ compare view keeps few engines and refuses models it does not have (issue #9)."""

from __future__ import annotations

import shutil

import pytest
from export_helpers import tiny_export
from fastapi.testclient import TestClient

from llmspace.config import Settings
from llmspace.export import compare


@pytest.fixture(autouse=True)
def empty_engine_cache():
    compare._ENGINES.clear()
    yield
    compare._ENGINES.clear()


def _client(settings: Settings) -> TestClient:
    from llmspace.serve.app import create_app
    from llmspace.services import Services

    return TestClient(create_app(Services(settings), with_ui=False))


def test_unknown_models_and_dtypes_are_refused_and_nothing_is_kept(settings, tmp_path_factory, shared_models_dir):
    client = _client(settings)
    for i in range(3):
        r = client.post("/web/api/compare", json={"prompt": "hi", "max_new_tokens": 2, "model": f"nope-{i}"})
        assert r.status_code == 404 and "llmspace export onnx" in r.json()["error"]["message"]
    shutil.copytree(tiny_export(tmp_path_factory.getbasetemp(), shared_models_dir), settings.exports_dir / "tiny")
    r = client.post("/web/api/compare", json={"prompt": "hi", "max_new_tokens": 2, "model": "tiny", "dtype": "int8"})
    assert r.status_code == 404 and "has no int8 file" in r.json()["error"]["message"]
    assert len(compare._ENGINES) == 0


@pytest.mark.slow
def test_loaded_engines_are_bounded_by_the_setting(llmspace_home, tmp_path_factory, shared_models_dir):
    settings = Settings.load(compare_max_engines=1)
    shutil.copytree(tiny_export(tmp_path_factory.getbasetemp(), shared_models_dir), settings.exports_dir / "tiny")
    client = _client(settings)
    for dtype in ("fp32", "q8", "q4"):
        rows = client.post("/web/api/compare", json={"prompt": "hi", "max_new_tokens": 2, "model": "tiny",
                                                     "dtype": dtype}).json()["results"]
        assert not any("error" in r for r in rows), rows
        assert len(compare._ENGINES) == 1  # torch then onnx each loaded; only the last one is kept
    [(key, engine)] = compare._ENGINES.items()
    assert key[1] == "onnx" and key[3] == "q4" and engine.dtype == "q4"
