"""Export commands: ``export onnx|embedding|index|web|compare``, ``push``, ``space build|push``.

``llmspace export onnx --model default --dtype fp32,q8,q4 --out DIR`` writes a
folder Transformers.js, onnxruntime and ``--backend onnx`` all load, with a
parity report against PyTorch (exit 2 when a dtype fails parity).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

EXIT_PARITY = 2


def register(sub, common) -> None:
    p = sub.add_parser("export", help="export models to ONNX for onnxruntime and the browser")
    es = p.add_subparsers(dest="export_command", metavar="SUBCOMMAND")
    es.required = True

    r = es.add_parser("onnx", parents=[common], help="chat model (+ LoRA adapter) -> ONNX fp32/q8/q4 + parity report")
    r.add_argument("--adapter", help="LoRA adapter folder to merge first (peft)")
    r.add_argument("--dtype", default="fp32,q8,q4", help="comma-separated: fp32, q8, q4, int8 (default: fp32,q8,q4)")
    r.add_argument("--out", help="output folder (default: LLMSPACE_HOME/exports/<model name>)")
    r.add_argument("--force", action="store_true", help="replace an existing output folder")
    r.add_argument("--steps", type=int, default=16, help="greedy steps compared in the parity check")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.set_defaults(handler=cmd_onnx)

    r = es.add_parser("embedding", parents=[common], help="embedding model -> ONNX feature-extraction (browser retrieval)")
    r.add_argument("--embedding-model", help="registry name, folder or Hub id (default: the setting)")
    r.add_argument("--out", help="output folder (default: LLMSPACE_HOME/exports/<name>)")
    r.add_argument("--force", action="store_true")
    r.set_defaults(handler=cmd_embedding)

    r = es.add_parser("index", parents=[common], help="a RAG index -> index.json beside the embedding export")
    r.add_argument("name", help="index name (see `llmspace index ls`)")
    r.add_argument("--embedding-export", help="embedding export folder (default: exports/<embedding model>)")
    r.set_defaults(handler=cmd_index)

    r = es.add_parser("web", parents=[common], help="what /web/ loads (chat q8+q4, embedding, bundled index), "
                      "when missing or outdated: what the server's first start does in the background")
    r.add_argument("--force", action="store_true", help="export again, replacing even exports made by hand")
    r.set_defaults(handler=cmd_web)

    r = es.add_parser("genai", parents=[common], help="chat model -> onnxruntime-genai model with the GGUF's own 4-bit "
                      "blocks (the fast CPU backend, LLMSPACE_BACKEND=genai; built on its first use otherwise)")
    r.add_argument("--force", action="store_true", help="build again even if it exists")
    r.set_defaults(handler=cmd_genai)

    r = es.add_parser("compare", parents=[common], help="one prompt on PyTorch and ONNX: load s, first token s, tok/s")
    r.add_argument("prompt")
    r.add_argument("--export", help="export name or folder (default: the chat model's export)")
    r.add_argument("--dtype", choices=["fp32", "q8", "q4", "int8"])
    r.add_argument("--max-tokens", type=int, default=64)
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=cmd_compare)

    r = sub.add_parser("push", parents=[common], help="upload a folder (an export) to the Hugging Face Hub")
    _push_args(r)
    r.add_argument("--repo-type", choices=["model", "space", "dataset"], default="model")
    r.set_defaults(handler=cmd_push)

    p = sub.add_parser("space", help="build and push a Hugging Face Space")
    ss = p.add_subparsers(dest="space_command", metavar="SUBCOMMAND")
    ss.required = True
    r = ss.add_parser("build", parents=[common], help="write a folder ready to push as a Space")
    r.add_argument("out", help="output folder")
    r.add_argument("--kind", choices=["gradio", "static"], default="gradio",
                   help="gradio: the whole app; static: only the browser page and models")
    r.add_argument("--export", action="append", help="export to bundle (repeatable; default: all present)")
    r.add_argument("--title", default="llmspace")
    r.add_argument("--force", action="store_true", help="replace an existing output folder")
    r.set_defaults(handler=cmd_space_build)
    r = ss.add_parser("push", parents=[common], help="upload a built Space folder")
    _push_args(r)
    r.set_defaults(handler=cmd_space_push, repo_type="space")


def _push_args(r) -> None:
    r.add_argument("folder")
    r.add_argument("--repo", required=True, help="owner/name on the Hub")
    r.add_argument("--private", action="store_true")
    r.add_argument("--dry-run", action="store_true", help="list files and sizes; no token, no network")


def cmd_onnx(args, services) -> int:
    from llmspace.export.onnx_export import export_onnx
    from llmspace.export.parity import format_parity

    s = services.settings
    result = export_onnx(s.chat_model, args.out, args.dtype, adapter=args.adapter, force=args.force,
                         settings=s, parity_steps=args.steps)
    if args.json:
        print(json.dumps({"out": str(result.out), "files": result.files, "passed": result.passed,
                          "parity": [r.to_dict() for r in result.parity]}, indent=2))
    else:
        print(f"wrote {result.out}")
        for dtype, info in result.files.items():
            print(f"  {dtype:5s} {info['path']:28s} {info['bytes'] / 2**20:8.1f} MiB  ({info['seconds']} s)")
        print(format_parity(result.parity))
    return 0 if result.passed else EXIT_PARITY


def cmd_embedding(args, services) -> int:
    from llmspace.export.embedding import export_embedding

    meta = export_embedding(args.embedding_model, args.out, force=args.force, settings=services.settings)
    print(f"wrote {services.settings.exports_dir / meta['name'] if not args.out else args.out}: "
          f"{meta['dimension']} dims, max diff vs sentence-transformers "
          f"{meta['parity']['max_abs_diff_vs_sentence_transformers']:.1e}")
    return 0


def cmd_index(args, services) -> int:
    from llmspace.export.embedding import export_rag_index

    path = export_rag_index(args.name, args.embedding_export, settings=services.settings)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def cmd_web(args, services) -> int:
    from llmspace.export.web_bundle import prepare_web_bundle

    if services.settings.index_bundled_corpus:  # the page's index comes from it (the server builds it at start)
        from llmspace.rag.service import ensure_bundled_index

        ensure_bundled_index(services, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    status = prepare_web_bundle(services.settings, force=args.force)
    return 0 if status["state"] in ("done", "busy") else 1


def cmd_genai(args, services) -> int:
    from llmspace.export.genai import META_FILE, build_genai_model

    folder = build_genai_model(services.settings, force=args.force,
                               say=lambda msg: print(msg, file=sys.stderr, flush=True))
    meta = json.loads((folder / META_FILE).read_text())
    print(f"{folder}  ({meta['bytes'] / 2**20:.0f} MiB, built in {meta['total_s']} s)")
    print("serve it: LLMSPACE_BACKEND=genai llmspace serve   (or: llmspace serve --backend genai)")
    return 0


def cmd_compare(args, services) -> int:
    from llmspace.export.compare import compare_backends

    rows = compare_backends(services.settings, args.prompt, args.max_tokens, export=args.export, dtype=args.dtype)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    print(f"{'backend':8s} {'dtype':5s} {'load s':>7s} {'ttft s':>7s} {'tok/s':>7s}  output")
    for r in rows:
        if "error" in r:
            print(f"{r['backend']:8s} error: {r['error']}")
            continue
        print(f"{r['backend']:8s} {r['dtype']:5s} {r['load_s']:7.2f} {r['ttft_s']:7.3f} {r['tokens_per_s']:7.1f}  "
              f"{r['text'][:60]!r}")
    return 0


def cmd_push(args, services) -> int:
    from llmspace.hub import push

    result = push(args.folder, args.repo, private=args.private, dry_run=args.dry_run, repo_type=args.repo_type)
    for path, size in result.files:
        print(f"{size / 2**20:10.2f} MiB  {path}")
    total = f"{len(result.files)} files, {result.total_bytes / 2**20:.1f} MiB"
    print(f"dry run: would upload {total} to {result.repo_type} {result.repo}" if result.dry_run
          else f"pushed {total} to {result.url}")
    return 0


def cmd_space_build(args, services) -> int:
    from llmspace.export.space import build_space

    out = build_space(Path(args.out), kind=args.kind, exports=args.export, settings=services.settings,
                      force=args.force, title=args.title)
    print(f"wrote {out} ({args.kind} Space). Push it: llmspace space push {out} --repo USER/SPACE")
    return 0


def cmd_space_push(args, services) -> int:
    return cmd_push(args, services)
