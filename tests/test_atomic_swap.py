"""Swapping an artefact folder (index, model, export) under readers and builders.

Issue #9 "Files": the old two-rename swap left an instant with no folder (a
reader got a 404), and a reader ran recovery without the build lock, which could
rename the old copy back under a running build, fail it and lose the new index.
The fast tests drive ``fsutil`` directly; the slow one queries a real index
(MiniLM) from threads and a second process while a build process is killed
mid-swap and then restarted with a slowed swap.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock

from llmspace import fsutil
from llmspace.config import Settings
from llmspace.errors import NotFoundError
from llmspace.services import Services

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def write_version(folder: Path, n: int) -> Path:
    folder.mkdir()
    (folder / "a.txt").write_text(str(n))
    (folder / "b.txt").write_text(str(n) * 2000)  # big enough that reading it takes a moment
    return folder


def hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock"))


# ---------------------------------------------------------------- fsutil, no models
POLL = """
import os, sys, time
target, stop = sys.argv[1], sys.argv[2]
misses = reads = 0
while not os.path.exists(stop):
    try:
        with open(os.path.join(target, "a.txt")) as f:
            f.read()
        reads += 1
    except OSError:
        misses += 1
print(reads, misses)
"""


def test_the_path_is_never_missing_during_50_swaps(tmp_path):
    # start from a linked artefact: migrating a plain folder written by an older llmspace has its own
    # (documented) moment without the path, tested apart below
    target = tmp_path / "art"
    fsutil.replace_dir(write_version(tmp_path / ".tmp-0", 0), target)
    stop = tmp_path / "stop"
    poller = subprocess.Popen([sys.executable, "-c", POLL, str(target), str(stop)], stdout=subprocess.PIPE, text=True)
    misses, reads, done = [], [0], threading.Event()

    def read():
        while not done.is_set():
            if not target.is_dir():
                misses.append("missing")
            try:
                (target / "a.txt").read_text()
                reads[0] += 1
            except OSError as exc:
                misses.append(repr(exc))

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.2)  # the poller process is running
    # a lookup that began before the flip takes microseconds, but on a loaded 2-core CI machine a reader can
    # be descheduled for tens of milliseconds between resolving the link and reading: a 0.3 s grace
    for n in range(1, 51):
        fsutil.replace_dir(write_version(tmp_path / f".tmp-{n}", n), target, grace_s=0.3)
    done.set()
    reader.join()
    stop.touch()
    p_reads, p_misses = map(int, poller.communicate(timeout=60)[0].split())
    assert misses == [] and p_misses == 0, (misses[:5], p_misses)
    assert reads[0] > 50 and p_reads > 0
    assert (target / "a.txt").read_text() == "50"
    assert hidden(tmp_path) == [".art.versions"] and len(list(fsutil.versions_dir(target).iterdir())) == 1


def test_a_reader_that_resolves_once_never_mixes_two_versions(tmp_path):
    target = tmp_path / "art"
    fsutil.replace_dir(write_version(tmp_path / ".tmp-0", 0), target)
    bad, done, loads = [], threading.Event(), [0]

    def read():
        while not done.is_set():
            real = fsutil.current(target)
            try:
                a, b = (real / "a.txt").read_text(), (real / "b.txt").read_text()
            except FileNotFoundError:  # a swap deleted this version meanwhile: resolve again
                assert fsutil.current(target) != real
                continue
            loads[0] += 1
            if b != a * 2000:
                bad.append((a, b[:5]))

    readers = [threading.Thread(target=read) for _ in range(2)]
    for r in readers:
        r.start()
    for n in range(1, 101):  # no grace: the reader must resolve again when its version goes
        fsutil.replace_dir(write_version(tmp_path / f".tmp-{n}", n), target, grace_s=0)
    done.set()
    for r in readers:
        r.join()
    assert bad == [] and loads[0] > 100


def test_a_plain_folder_from_an_older_llmspace_loads_and_is_migrated(tmp_path):
    target = write_version(tmp_path / "art", 0)
    assert fsutil.current(target) == target.resolve()
    fsutil.replace_dir(write_version(tmp_path / ".tmp-1", 1), target)
    assert target.is_symlink() and (target / "a.txt").read_text() == "1"
    assert hidden(tmp_path) == [".art.versions"] and len(list(fsutil.versions_dir(target).iterdir())) == 1


def test_recover_clears_what_killed_writers_left(tmp_path):
    target = tmp_path / "art"
    fsutil.replace_dir(write_version(tmp_path / ".tmp-1", 1), target)
    store = fsutil.versions_dir(target)
    linked = fsutil.current(target)
    unlinked = write_version(store / "29991231-000000-000000000-dead00", 2)  # renamed in, never linked (killed)
    os.utime(unlinked, (time.time() - 60, time.time() - 60))
    os.symlink(".", tmp_path / ".art.link-deadbeef")  # a half-made link
    fsutil.recover_dir(target, "a.txt")
    assert fsutil.current(target) == linked and (target / "a.txt").read_text() == "1"
    assert [p.name for p in store.iterdir()] == [linked.name] and hidden(tmp_path) == [".art.versions"]

    os.unlink(target)  # killed mid-migration: the version is there, the link not yet
    assert fsutil.current(target, wait_s=0.2) is None
    fsutil.recover_dir(target, "a.txt")
    assert (target / "a.txt").read_text() == "1"

    store.rename(tmp_path / ".del-art-deadbeef")  # killed mid-delete: the link dangles
    fsutil.recover_dir(target, "a.txt")
    assert not target.exists() and not target.is_symlink() and hidden(tmp_path) == []

    write_version(tmp_path / ".old-art-1a2b3c4d", 7)  # the older swap, killed between its two renames
    fsutil.recover_dir(target, "a.txt")
    assert (target / "a.txt").read_text() == "7" and hidden(tmp_path) == []


def test_the_two_rename_fallback_keeps_readers_served(tmp_path, monkeypatch):
    """Where links cannot be made (Windows without Developer Mode): readers wait out the gap."""
    monkeypatch.setattr(fsutil, "_can_symlink", lambda folder: False)
    target = write_version(tmp_path / "art", 0)
    missing, done = [], threading.Event()

    def read():
        while not done.is_set():
            if fsutil.current(target) is None:
                missing.append(1)

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(1, 101):
        fsutil.replace_dir(write_version(tmp_path / f".tmp-{n}", n), target, grace_s=0)
    done.set()
    reader.join()
    assert missing == [] and not target.is_symlink() and (target / "a.txt").read_text() == "100"
    assert hidden(tmp_path) == []


def test_a_reader_never_recovers_under_a_running_build(llmspace_home):
    """The state a build holding the lock is in between swapping steps: a reader must
    leave it alone (the old code renamed the old copy back, failing the build)."""
    services = Services(Settings.load())
    indexes = services.settings.indexes_dir
    indexes.mkdir(parents=True)
    old = indexes / ".old-live-1a2b3c4d"
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps({"name": "live", "format_version": 1}))
    with FileLock(str(indexes / ".live.lock")):
        with pytest.raises(NotFoundError, match="No index named 'live'"):
            services.rag.info("live")
        assert old.is_dir() and not (indexes / "live").exists()


def test_deleting_an_index_waits_for_its_build(llmspace_home, monkeypatch):
    from llmspace.errors import ValidationError
    from llmspace.rag import index as idx

    indexes = Settings.load().indexes_dir
    indexes.mkdir(parents=True)
    tmp = indexes / ".tmp-live-1"
    tmp.mkdir()
    (tmp / "manifest.json").write_text("{}")
    fsutil.replace_dir(tmp, indexes / "live")
    monkeypatch.setattr(idx, "DELETE_WAIT_S", 0.2)
    with FileLock(str(indexes / ".live.lock")):
        with pytest.raises(ValidationError, match="being built"):
            idx.delete_index(indexes, "live")
    idx.delete_index(indexes, "live")
    assert not (indexes / "live").exists() and hidden(indexes) == []


# ---------------------------------------------------------------- real index, real processes
BUILD = """
import os, pathlib, sys, time
from llmspace.config import Settings
from llmspace.services import Services
home, folder, how = sys.argv[1:4]
swapping = False
rename = pathlib.Path.rename
def watched(self, target):  # each rename of the swap: die after it, or dawdle after it
    out = rename(self, target)
    if swapping and how == "kill":
        os.kill(os.getpid(), 9)
    if swapping and how == "slow":
        time.sleep(1.5)
    return out
pathlib.Path.rename = watched
def progress(fraction, message):
    global swapping
    swapping = swapping or message.startswith("swapping")
Services(Settings.load(env={}, home=home)).rag.build([folder], "live", progress=progress)
"""

READ = """
import json, sys, time, pathlib
from llmspace.config import Settings
from llmspace.services import Services
home, ready, stop = sys.argv[1:4]
rag = Services(Settings.load(env={}, home=home)).rag
rag.search("How do bees keep warm?", "live", top_k=1)
pathlib.Path(ready).touch()
seen, errors = [], []
while not pathlib.Path(stop).exists():
    try:
        build_id = rag.retriever("live").index.manifest["build_id"]
        assert rag.search("How do bees keep warm?", "live", top_k=1)
        if not seen or seen[-1] != build_id:
            seen.append(build_id)
    except Exception as exc:
        errors.append(repr(exc))
    time.sleep(0.01)
print(json.dumps({"seen": seen, "errors": errors[:5]}))
"""


@pytest.mark.slow
def test_readers_are_served_while_a_build_is_killed_and_restarted(tmp_path, session_services):
    from test_rag_docs import write_corpus

    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(session_services.settings.models_dir, target_is_directory=True)
    services = Services(Settings.load(env={}, home=home))
    services.__dict__["embedder"] = session_services.embedder
    folder = write_corpus(tmp_path / "corpus")
    services.rag.build([folder], "live")
    v1 = services.rag.info("live")["build_id"]
    (folder / "ants.md").write_text("# Ants\n\nAnts farm aphids for honeydew and guard them from ladybirds.\n")

    ready, stop = tmp_path / "ready", tmp_path / "stop"
    reader_proc = subprocess.Popen([sys.executable, "-c", READ, str(home), str(ready), str(stop)], env=ENV,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[list[str]] = [[] for _ in range(3)]
    errors: list[str] = []
    done = threading.Event()

    def read(log: list[str]) -> None:
        while not done.is_set():
            try:
                build_id = services.rag.retriever("live").index.manifest["build_id"]
                assert services.rag.search("How do bees keep warm?", "live", top_k=1)[0].chunk.source == "bees.md"
                assert services.rag.info("live")["summary"]["bytes"] > 0
                if not log or log[-1] != build_id:
                    log.append(build_id)
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                errors.append(repr(exc))
            time.sleep(0.01)

    threads = [threading.Thread(target=read, args=(log,)) for log in seen]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 240
        while not ready.exists() and reader_proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), reader_proc.communicate()[1][-2000:]

        killed = subprocess.run([sys.executable, "-c", BUILD, str(home), str(folder), "kill"], env=ENV,
                                capture_output=True, text=True, timeout=300)
        assert killed.returncode == -9, killed.stderr[-2000:]
        assert services.rag.info("live")["build_id"] == v1  # the old index is still served

        restarted = subprocess.run([sys.executable, "-c", BUILD, str(home), str(folder), "slow"], env=ENV,
                                   capture_output=True, text=True, timeout=300)
        assert restarted.returncode == 0, restarted.stderr[-2000:]
        v2 = services.rag.info("live")["build_id"]
        assert v2 != v1
        time.sleep(0.3)
    finally:
        done.set()
        for t in threads:
            t.join()
        stop.touch()
        out, err = reader_proc.communicate(timeout=60)
    other = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"seen": [], "errors": [err[-2000:]]}
    assert errors == [] and other["errors"] == [], (errors[:5], other["errors"])
    for log in [*seen, other["seen"]]:
        assert log == [v1, v2], log  # old until the new one was whole, then the new one; nothing else
    assert services.rag.search("Who farms aphids?", "live", top_k=1)[0].chunk.source == "ants.md"
    indexes = services.settings.indexes_dir
    assert hidden(indexes) == [".live.versions"] and len(list((indexes / ".live.versions").iterdir())) == 1


@pytest.mark.slow
def test_an_index_built_by_an_older_llmspace_still_loads(tmp_path, session_services):
    """Older llmspace wrote ``indexes/<name>/`` as a plain folder; it loads, and a rebuild migrates it."""
    from test_rag_docs import write_corpus

    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(session_services.settings.models_dir, target_is_directory=True)
    services = Services(Settings.load(env={}, home=home))
    services.__dict__["embedder"] = session_services.embedder
    folder = write_corpus(tmp_path / "corpus")
    services.rag.build([folder], "old")
    indexes = services.settings.indexes_dir
    version = fsutil.current(indexes / "old")
    os.unlink(indexes / "old")
    version.rename(indexes / "old")  # the old layout
    shutil.rmtree(fsutil.versions_dir(indexes / "old"))
    assert services.rag.search("How do bees keep warm?", "old", top_k=1)[0].chunk.source == "bees.md"
    report = services.rag.build([folder], "old")
    assert report.reused_chunks == report.chunks  # the old index was read for reuse
    assert (indexes / "old").is_symlink() and hidden(indexes) == [".old.versions"]
    assert services.rag.search("How do bees keep warm?", "old", top_k=1)[0].chunk.source == "bees.md"
