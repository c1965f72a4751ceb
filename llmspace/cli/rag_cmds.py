"""RAG commands: ``index`` (build, bundled, ls, info, rm) and ``search``.
(``llmspace ask --index N "q"`` lives with ``ask`` in core.py and calls
``services.rag.answer``.)"""

from __future__ import annotations

import json
import sys


def register(sub, common) -> None:
    p = sub.add_parser("index", help="RAG indexes: build from files/folders, list, inspect, remove")
    s = p.add_subparsers(dest="index_command", metavar="SUBCOMMAND")
    s.required = True

    r = s.add_parser("build", parents=[common], help="index files/folders (.md .txt .html .pdf .docx); "
                                                     "re-running re-embeds only changed files")
    r.add_argument("paths", nargs="+", metavar="PATH")
    r.add_argument("--name", required=True, help="index name (letters, digits, . _ -)")
    r.add_argument("--dense", choices=["flat", "hnsw"], default="flat",
                   help="exact search (default) or approximate HNSW for large corpora")
    r.add_argument("--chunk-tokens", type=int, default=160, help="chunk size in embedding-model tokens")
    r.add_argument("--overlap-tokens", type=int, default=32, help="overlap between neighbouring chunks")
    r.add_argument("--json", action="store_true", help="print the build report as JSON")
    r.set_defaults(handler=cmd_build)

    r = s.add_parser("bundled", parents=[common], help="build the bundled roadmap index if missing or outdated")
    r.set_defaults(handler=cmd_bundled)

    r = s.add_parser("ls", parents=[common], help="list indexes")
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=cmd_ls)

    r = s.add_parser("info", parents=[common], help="an index's manifest: model, chunker, documents, counts")
    r.add_argument("name")
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=cmd_info)

    r = s.add_parser("rm", parents=[common], help="delete an index")
    r.add_argument("name")
    r.set_defaults(handler=cmd_rm)

    p = sub.add_parser("search", parents=[common], help="retrieve chunks from an index, with scores")
    p.add_argument("query")
    p.add_argument("--index", help="index name (default: LLMSPACE_DEFAULT_INDEX, 'roadmap')")
    p.add_argument("--mode", choices=["hybrid", "dense", "bm25"], default="hybrid")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--threshold", type=float, help="drop hits scoring below this")
    p.add_argument("--mmr", type=float, metavar="LAMBDA", help="MMR diversity, e.g. 0.7 (off by default)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_search)


def _progress(fraction: float, message: str) -> None:
    if fraction <= 0:  # nothing to show yet (and an early error then prints on a clean line)
        return
    print(f"\r[{fraction * 100:5.1f}%] {message[:70]:<70}", end="", file=sys.stderr, flush=True)


def cmd_build(args, services) -> int:
    from llmspace.rag.chunking import ChunkerSettings

    chunker = ChunkerSettings(chunk_tokens=args.chunk_tokens, overlap_tokens=args.overlap_tokens)
    report = services.rag.build(args.paths, args.name, dense=args.dense, chunker=chunker,
                                progress=None if args.json else _progress)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return 0
    print(file=sys.stderr)
    print(f"index {report.name!r}: {report.documents} documents, {report.chunks} chunks "
          f"({report.embedded_chunks} embedded, {report.reused_chunks} reused) in {report.seconds:.1f} s")
    if report.removed_files:
        print(f"removed: {', '.join(report.removed_files)}")
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def cmd_bundled(args, services) -> int:
    from llmspace.rag.bundled import ensure_bundled_index

    result = ensure_bundled_index(services, progress=_progress)
    print(file=sys.stderr)
    print(f"index {result['name']!r}: {result['status']}")
    return 0


def cmd_ls(args, services) -> int:
    from llmspace.rag.cli_format import format_index_list

    rows = services.rag.list()
    print(json.dumps(rows, ensure_ascii=False, indent=2) if args.json else format_index_list(rows))
    return 0


def cmd_info(args, services) -> int:
    from llmspace.rag.cli_format import format_index_info

    info = services.rag.info(args.name)
    print(json.dumps(info, ensure_ascii=False, indent=2) if args.json else format_index_info(info))
    return 0


def cmd_rm(args, services) -> int:
    services.rag.delete(args.name)
    print(f"deleted index {args.name!r}")
    return 0


def cmd_search(args, services) -> int:
    from llmspace.rag.cli_format import format_hits

    hits = services.rag.search(args.query, args.index, mode=args.mode, top_k=args.top_k,
                               score_threshold=args.threshold, mmr_lambda=args.mmr)
    if args.json:
        print(json.dumps({"index": args.index or services.settings.default_index, "query": args.query,
                          "hits": [h.to_dict() for h in hits]}, ensure_ascii=False, indent=2))
    else:
        print(format_hits(hits))
    return 0
