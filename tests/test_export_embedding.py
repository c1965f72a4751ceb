"""The embedding model's ONNX export (feature-extraction) and the browser index file."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest
from export_helpers import embedding_export

from llmspace.export.errors import ExportError
from llmspace.export.space import read_front_matter


@pytest.fixture(scope="module")
def emb_dir(tmp_path_factory, shared_models_dir):
    return embedding_export(tmp_path_factory.getbasetemp(), shared_models_dir)


def test_vectors_equal_sentence_transformers(emb_dir, settings):
    from sentence_transformers import SentenceTransformer

    from llmspace import models
    from llmspace.export.embedding import onnx_sentence_vectors

    texts = ["A longer sentence about exporting language models to the browser with ONNX Runtime Web.",
             "短い", "x"]
    st = SentenceTransformer(str(models.resolve("minilm", "embedding", settings.models_dir)), device="cpu")
    ref = st.encode(texts, normalize_embeddings=True)
    assert float(np.abs(onnx_sentence_vectors(emb_dir, texts) - ref).max()) < 1e-4
    meta = json.loads((emb_dir / "llmspace_export.json").read_text())
    assert meta["task"] == "feature-extraction" and meta["dimension"] == 384
    assert meta["parity"]["max_abs_diff_vs_sentence_transformers"] < 1e-4


def test_layout_and_card(emb_dir):
    from llmspace.export.layout import check_layout, list_exports

    assert check_layout(emb_dir, ["fp32"]) == [] and (emb_dir / "vocab.txt").exists()
    assert read_front_matter(emb_dir / "README.md")["pipeline_tag"] == "feature-extraction"
    listing = list_exports(emb_dir.parent)
    assert any(e["name"] == emb_dir.name and e["task"] == "feature-extraction" for e in listing)


def test_rag_index_goes_to_the_browser(emb_dir, settings, tmp_path):
    from llmspace.cli import main
    from llmspace.embeddings import Embedder
    from llmspace.rag.build import build_index

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "onnx.md").write_text("# ONNX\n\nONNX is an open format for machine learning models.\n")
    (docs / "paris.md").write_text("# France\n\nParis is the capital of France.\n")
    build_index(settings.indexes_dir, "tiny", [docs], Embedder(settings))
    target = settings.exports_dir / "all-minilm-l6-v2"
    shutil.copytree(emb_dir, target)
    assert main(["export", "index", "tiny"]) == 0
    index = json.loads((target / "index.json").read_text())
    vectors = np.frombuffer(base64.b64decode(index["vectors"]), dtype=np.float32).reshape(index["count"], index["dim"])
    assert index["count"] == len(index["chunks"]) >= 2 and index["dim"] == 384
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert {c["source"] for c in index["chunks"]} == {"onnx.md", "paris.md"}


def test_index_needs_an_embedding_export(settings, tmp_path):
    from llmspace.export.embedding import export_rag_index, write_browser_index

    with pytest.raises(ExportError, match="llmspace export embedding"):
        export_rag_index("anything", tmp_path / "nothing", settings=settings)
    with pytest.raises(ExportError, match="2 chunks but vectors"):
        write_browser_index(tmp_path, [{"text": "a"}, {"text": "b"}], np.zeros((3, 4)))
