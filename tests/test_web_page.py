"""Where the browser page comes from, and what `/web/` and `space build` say when it is not built --
without assuming a source checkout (an installed wheel has no web/dist)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from llmspace.config import Settings
from llmspace.export import web_page
from llmspace.export.space import build_space, read_front_matter
from llmspace.serve.web_routes import standalone_app


def fake_page(folder):
    folder.mkdir(parents=True)
    (folder / "index.html").write_text('<!doctype html><div id="root"></div>', encoding="utf-8")
    (folder / "ort").mkdir()
    (folder / "ort" / "x.wasm").write_bytes(b"\0asm")
    return folder


def test_a_built_page_is_not_missing(tmp_path):
    assert web_page.missing_page(fake_page(tmp_path / "dist")) is None


def test_in_a_checkout_the_message_names_the_file_and_the_build_command(tmp_path):
    msg = web_page.missing_page(tmp_path / "nope")
    assert f"{tmp_path / 'nope' / 'index.html'} is missing" in msg
    assert f"cd {web_page.CHECKOUT / 'web'} && npm ci && npm run build" in msg


def test_installed_without_a_checkout_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(web_page, "CHECKOUT", tmp_path)  # no web/package.json beside the package
    monkeypatch.setattr(web_page, "SOURCE_DIST", tmp_path / "web" / "dist")
    msg = web_page.missing_page(web_page.SOURCE_DIST, Settings.load())
    assert "LLMSPACE_WEB_DIST is not set" in msg and "installed package" in msg
    assert "`cd web && npm ci && npm run build`" in msg and "set LLMSPACE_WEB_DIST" in msg


def test_the_setting_points_at_a_page_anywhere(monkeypatch, tmp_path):
    page = fake_page(tmp_path / "page")
    monkeypatch.setenv("LLMSPACE_WEB_DIST", str(page))
    client = TestClient(standalone_app(Settings.load()))
    r = client.get("/web/")
    assert r.status_code == 200 and '<div id="root">' in r.text
    assert client.get("/web/ort/x.wasm").content == b"\0asm"


def test_web_says_what_is_missing_when_the_setting_is_wrong(monkeypatch, tmp_path):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("LLMSPACE_WEB_DIST", str(tmp_path / "empty"))
    r = TestClient(standalone_app(Settings.load())).get("/web/")
    err = r.json()["error"]
    assert r.status_code == 404 and err["code"] == "web_page_not_built" and err["param"] == "web_dist"
    assert f"LLMSPACE_WEB_DIST={tmp_path / 'empty'} has no index.html" in err["message"]
    assert "npm ci && npm run build" in err["message"]


def test_space_build_takes_its_files_from_the_package_and_the_page_from_the_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMSPACE_WEB_DIST", str(fake_page(tmp_path / "page")))
    out = build_space(tmp_path / "space", settings=Settings.load())
    assert read_front_matter(out / "README.md")["app_file"] == "app.py"
    assert (out / "app.py").read_text(encoding="utf-8").startswith('"""Hugging Face Space entry point')
    assert (out / "web" / "dist" / "ort" / "x.wasm").exists() and (out / ".gitattributes").exists()
    assert (out / "llmspace" / "data" / "space" / "app.py").exists()
