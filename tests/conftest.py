"""Shared fixtures.

Every test gets its own ``LLMSPACE_HOME`` under ``tmp_path`` (autouse), so no
test reads or writes the user's real home. Converting the packaged chat model
takes ~25 s, so it is done once per test session into a shared folder that each
test's home links to as ``models/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmspace.config import Settings


@pytest.fixture(scope="session")
def shared_models_dir(tmp_path_factory) -> Path:
    # CI and developers may point this at a persistent folder to skip the conversion.
    preset = os.environ.get("LLMSPACE_TEST_MODELS_DIR")
    if preset:
        Path(preset).mkdir(parents=True, exist_ok=True)
        return Path(preset)
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def llmspace_home(tmp_path, shared_models_dir, monkeypatch) -> Path:
    home = tmp_path / "llmspace_home"
    home.mkdir()
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    for key in list(os.environ):
        if key.startswith("LLMSPACE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("LLMSPACE_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return home


@pytest.fixture
def settings(llmspace_home) -> Settings:
    return Settings.load()


@pytest.fixture(scope="session")
def session_services(shared_models_dir, tmp_path_factory):
    """One loaded ``Services`` (real SmolLM2 + MiniLM) shared by the slow tests."""
    from llmspace.services import Services

    home = tmp_path_factory.mktemp("session_home")
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    services = Services(Settings.load(env={}, home=home))
    return services


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(session_services):
    """The real app (UI + API) served by uvicorn on a free loopback port.

    Yields the base URL, e.g. ``http://127.0.0.1:PORT``.
    """
    import threading
    import time

    import uvicorn

    from llmspace.serve.app import create_app

    port = _free_port()
    app = create_app(session_services, with_ui=True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
