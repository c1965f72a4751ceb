"""RAG figures: quality on the labelled roadmap questions, scale, end to end.

    .venv/bin/python benchmarks/bench_rag.py [--sizes 1000,10000,100000] [--answers 8] [--quick]

1. Quality: the bundled roadmap corpus indexed as shipped; recall@1/@5, MRR
   and evidence@5 for BM25-only, dense-only and hybrid, per language, in one
   run (``data/roadmap_qa.jsonl``); and the "I don't know" gate on those
   in-domain questions against off-topic ones.
2. Scale: build throughput (chunks/s) and query latency p50/p95 at each size,
   memory of the loaded index and its size on disk. The smallest size is a
   real build (files -> chunks -> MiniLM -> FAISS + BM25). Larger sizes reuse
   those real vectors tiled with small random perturbations (embedding 100k
   chunks with MiniLM on 2 cores would take ~30 min), and synthetic texts for
   BM25: their "build" figure excludes embedding, shown apart.
3. End to end: answer latency and the share of answers that cite a valid
   source (and the labelled file) on a subset of the questions, per language.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from llmspace.device import cpu_name

OFF_TOPIC = ["What is the capital of France?", "Who won the 2018 football world cup?", "How do I bake sourdough bread?",
             "What is the boiling point of water on Mount Everest?", "Recommend a good science fiction novel.",
             "How tall is the Eiffel Tower?", "What is the best way to learn the guitar?",
             "Explain photosynthesis in plants.", "今天天气怎么样？", "法国的首都是哪里？", "怎么做红烧肉？",
             "2018年世界杯冠军是谁？", "推荐一本好看的科幻小说。", "光合作用是什么？", "珠穆朗玛峰有多高？", "如何学习弹吉他？"]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def loaded_index_mb(folder: Path) -> float:
    """Resident memory a loaded index adds, measured in a fresh process (libraries imported first)."""
    import subprocess

    code = ("import gc, psutil, faiss, bm25s, numpy; from llmspace.rag.index import RagIndex; p = psutil.Process(); "
            f"gc.collect(); a = p.memory_info().rss; i = RagIndex.load(__import__('pathlib').Path({str(folder)!r})); "
            "gc.collect(); print((p.memory_info().rss - a) / 2**20)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def quality(services) -> None:
    from llmspace.rag import quality as Q
    from llmspace.rag.bundled import ensure_bundled_index
    from llmspace.rag.retrieve import RetrievalParams, relevant

    t0 = time.perf_counter()
    r = ensure_bundled_index(services)
    rep = r["report"] or {}
    print(f"\n## 1. Retrieval quality: bundled roadmap corpus ({rep.get('documents')} docs, {rep.get('chunks')} chunks,"
          f" built in {time.perf_counter() - t0:.1f} s, embedding {rep.get('embed_seconds')} s)")
    ret = services.rag.retriever("roadmap")
    rows = Q.load_qa()
    t0 = time.perf_counter()
    res = Q.evaluate(ret, rows)
    n_q = len(rows) * 3
    print(f"{len(rows)} labelled questions ({sum(r['lang'] == 'en' for r in rows)} en, "
          f"{sum(r['lang'] == 'zh' for r in rows)} zh); a hit is right when its chunk is from the labelled file; "
          f"Ev@5: a top-5 chunk contains the labelled answer string. ({n_q} searches in "
          f"{time.perf_counter() - t0:.1f} s)")
    print(Q.format_table(res))
    for lang in ("en", "zh", "all"):
        best = {m: max(res["bm25"][lang][m], res["dense"][lang][m]) for m in ("recall@1", "recall@5", "mrr")}
        ok = all(res["hybrid"][lang][m] >= best[m] for m in best)
        print(f"hybrid >= max(bm25, dense) on R@1, R@5, MRR [{lang}]: {'yes' if ok else 'NO'}")
    p = RetrievalParams(top_k=5)
    answered = sum(bool(relevant(ret.search(r["question"], p), r["question"], p)) for r in rows)
    refused = sum(not relevant(ret.search(q, p), q, p) for q in OFF_TOPIC)
    print(f"'I don't know' gate: answers {answered}/{len(rows)} in-domain questions, refuses {refused}/"
          f"{len(OFF_TOPIC)} off-topic ones (thresholds were set on these same sets)")


def _vocab() -> list[str]:
    import re

    from llmspace.rag.bundled import CORPUS_DIR

    words = re.findall(r"[A-Za-z]{3,}", " ".join(p.read_text() for p in (CORPUS_DIR / "en").glob("*.md")))
    return sorted(set(w.lower() for w in words))


def synthetic_texts(n: int, vocab: list[str], seed: int = 0) -> list[str]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        words = rnd.choices(vocab, k=rnd.randint(70, 110))
        out.append(" ".join(words[:40]) + ". " + " ".join(words[40:]) + ".")
    return out


def scale(services, sizes: list[int], n_queries: int) -> None:
    import numpy as np

    from llmspace.rag import build as B
    from llmspace.rag.index import RagIndex, dir_size
    from llmspace.rag.retrieve import RetrievalParams, Retriever
    from llmspace.rag.types import Chunk

    print("\n## 2. Scale: build throughput, query latency, memory, disk")
    vocab = _vocab()
    work = Path(tempfile.mkdtemp(prefix="bench-rag-"))
    # real build at the smallest size: ~100-word paragraphs, one chunk each
    n0 = sizes[0]
    docs = work / "docs"
    docs.mkdir()
    texts = synthetic_texts(n0, vocab)
    for d in range(0, n0, 50):
        (docs / f"doc{d // 50:04d}.md").write_text("\n\n".join(f"## Part {i}\n\n{t}" for i, t in
                                                              enumerate(texts[d:d + 50], start=d)))
    t0 = time.perf_counter()
    rep = services.rag.build([docs], "bench-real")
    real_s = time.perf_counter() - t0
    embed_cps = rep.embedded_chunks / rep.embed_seconds
    print(f"real build of {rep.chunks} chunks ({rep.documents} files): {real_s:.1f} s = {rep.chunks / real_s:.0f} "
          f"chunks/s end to end; MiniLM embedding alone {embed_cps:.0f} chunks/s "
          f"({rep.embed_seconds:.1f} s, {os.cpu_count()} cores)")
    base = RagIndex.load(services.settings.indexes_dir / "bench-real")
    base_vecs = base.all_vectors()
    print(f"{'chunks':>8} {'kind':<5} {'build s':>8} {'chunks/s*':>10} {'load s':>7} {'mem MiB':>8} {'disk MiB':>9} "
          f"{'hybrid p50':>10} {'p95 ms':>7} {'dense p50':>9} {'p95 ms':>7} {'bm25 p50':>8} {'p95 ms':>7}")
    rng = np.random.default_rng(0)
    for n in sizes:
        kinds = ["flat"] + (["hnsw"] if n >= 10_000 else [])
        for kind in kinds:
            folder = work / f"idx-{n}-{kind}"
            folder.mkdir()
            texts_n = texts if n == n0 else synthetic_texts(n, vocab, seed=n)
            reps = -(-n // len(base_vecs))
            vecs = np.tile(base_vecs, (reps, 1))[:n]
            if n > len(base_vecs):  # perturbed copies so the tiles are not exact duplicates
                vecs = vecs + rng.normal(0, 0.02, vecs.shape).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            chunks = [Chunk(id=f"d{i // 50}:{i % 50}", doc_id=f"d{i // 50}", source=f"doc{i // 50:05d}.md",
                            title="synthetic", heading=f"Part {i}", text=t, start=0, end=len(t))
                      for i, t in enumerate(texts_n)]
            t0 = time.perf_counter()
            B._write_dense(folder, vecs.astype(np.float32), kind)
            B._write_bm25(folder, chunks)
            B._write_jsonl(folder / "chunks.jsonl", (c.to_dict() for c in chunks))
            manifest = {"format_version": 1, "name": folder.name, "embedding": {"model": "all-minilm-l6-v2",
                                                                                  "dimension": 384},
                        "dense": {"kind": kind, **({"ef_search": 64} if kind == "hnsw" else {})}}
            (folder / "manifest.json").write_text(json.dumps(manifest))
            build_s = time.perf_counter() - t0
            del vecs, chunks
            t0 = time.perf_counter()
            index = RagIndex.load(folder)
            load_s = time.perf_counter() - t0
            mem = loaded_index_mb(folder)
            ret = Retriever(index, services.embedder)
            qrnd = random.Random(1)
            queries = [" ".join(qrnd.sample(texts_n[qrnd.randrange(n)].split(), 8)) for _ in range(n_queries)]
            lat = {}
            for mode in ("hybrid", "dense", "bm25"):
                ret.search(queries[0], RetrievalParams(mode=mode))  # warm
                ts = []
                for q in queries:
                    t = time.perf_counter()
                    ret.search(q, RetrievalParams(mode=mode, top_k=5))
                    ts.append((time.perf_counter() - t) * 1000)
                lat[mode] = (statistics.median(ts), pct(ts, 0.95))
            print(f"{n:>8} {kind:<5} {build_s:>8.1f} {n / build_s:>10.0f} {load_s:>7.2f} {mem:>8.0f} "
                  f"{dir_size(folder) / 2**20:>9.1f} {lat['hybrid'][0]:>10.1f} {lat['hybrid'][1]:>7.1f} "
                  f"{lat['dense'][0]:>9.1f} {lat['dense'][1]:>7.1f} {lat['bm25'][0]:>8.1f} {lat['bm25'][1]:>7.1f}")
            del index, ret
    print(f"* build s / chunks/s at every size exclude embedding (BM25 tokenise+index, FAISS, write); a full build "
          f"adds n / {embed_cps:.0f} s of MiniLM. Vectors past {len(base_vecs)} are tiled real vectors + noise, texts "
          f"synthetic (English words from the corpus). Latency per query (top-5, {n_queries} queries) "
          f"includes embedding the query (all modes: every hit carries its cosine) and scoring the returned hits' "
          f"term coverage. mem: resident memory the loaded index adds, measured in a fresh process.")


def end_to_end(services, n_per_lang: int) -> None:
    from llmspace.rag.quality import load_qa

    print(f"\n## 3. End to end: answers on the bundled corpus ({n_per_lang} questions per language, "
          f"{services.settings.chat_model}, greedy, max 64 new tokens, top-3 sources)")
    rows = load_qa()
    t0 = time.perf_counter()
    services.engine.load()
    print(f"chat model load {time.perf_counter() - t0:.1f} s")
    for lang in ("en", "zh"):
        subset = [r for r in rows if r["lang"] == lang][::max(1, 49 // n_per_lang)][:n_per_lang]
        lat, valid, right, modes, attached = [], 0, 0, {}, 0
        for r in subset:
            t = time.perf_counter()
            a = services.rag.answer(r["question"], "roadmap", max_tokens=64, top_k=3, online=False)
            lat.append(time.perf_counter() - t)
            valid += a.cited_valid
            right += any(c.valid and c.source == r["source"] for c in a.citations)
            modes[a.mode] = modes.get(a.mode, 0) + 1
            attached += any("attached" in n for n in a.notes)
        print(f"{lang}: latency p50 {statistics.median(lat):.2f} s, p95 {pct(lat, 0.95):.2f} s; valid citation "
              f"{valid}/{len(subset)}; cites the labelled file {right}/{len(subset)}; modes {modes}; "
              f"citation attached after generation {attached}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--answers", type=int, default=6, help="questions per language for the end-to-end part")
    ap.add_argument("--quick", action="store_true", help="sizes 300,3000; 3 answers per language")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.answers = "300,3000", 3
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from llmspace.config import Settings
    from llmspace.services import Services

    home = Path(tempfile.mkdtemp(prefix="bench-rag-home-"))
    shared = Settings.load().models_dir  # reuse the converted chat model of the user's home
    shared.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(shared, target_is_directory=True)
    services = Services(Settings.load(env={}, home=home))
    print(f"# bench_rag — {cpu_name()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, load average "
          f"{os.getloadavg()[0]:.1f} at start (other processes share these cores: timings are noisy)")
    t0 = time.perf_counter()
    quality(services)
    scale(services, [int(x) for x in args.sizes.split(",")], args.queries)
    end_to_end(services, args.answers)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
