"""Core commands: info, ask, chat, serve."""

from __future__ import annotations

import json
import sys

from llmspace.engine.base import GenerationParams


def register(sub, common) -> None:
    p = sub.add_parser("info", parents=[common], help="environment check: Python, torch, device, models")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-load", action="store_true", help="do not try loading the models")
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser("ask", parents=[common], help="one answer to a question (with --index: cited, from an index)")
    p.add_argument("question")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--index", help="answer from this RAG index, with citations")
    p.add_argument("--mode", choices=["auto", "generate", "extractive"], default="auto",
                   help="with --index: auto (what the chat model is measured to do best), generate (the model's "
                        "own answer, checked against its sources) or extractive (quote the best sentences)")
    _sampling_args(p)
    p.add_argument("--json", action="store_true", help="print the answer, usage and timings as JSON")
    p.set_defaults(handler=cmd_ask)

    p = sub.add_parser("chat", parents=[common], help="interactive streaming chat (Ctrl-D or /exit to quit)")
    p.add_argument("--system", help="system prompt")
    _sampling_args(p)
    p.set_defaults(handler=cmd_chat)

    p = sub.add_parser("serve", parents=[common], help="start the UI + API server (what `make run` does)")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.add_argument("--no-ui", action="store_true", help="API only, no Gradio UI")
    p.add_argument("--grpc-port", type=int, help="also serve gRPC (llmspace.v1.LLMSpace, docs/grpc.md) on this port "
                   "(default LLMSPACE_GRPC_PORT; unset: no gRPC)")
    p.set_defaults(handler=cmd_serve)


def _sampling_args(p) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--max-tokens", type=int, help="max new tokens (default: LLMSPACE_DEFAULT_MAX_TOKENS)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--seed", type=int)
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


def _params(args, services) -> GenerationParams:
    return GenerationParams(
        max_new_tokens=args.max_tokens if args.max_tokens is not None else services.settings.default_max_tokens,
        temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=args.seed, stop=args.stop)


def cmd_info(args, services) -> int:
    from llmspace.info import collect_info, format_info

    info = collect_info(services, load=not args.no_load)
    print(json.dumps(info, indent=2, ensure_ascii=False) if args.json else format_info(info))
    return 0 if info["ok"] else 1


def cmd_ask(args, services) -> int:
    from llmspace.chat import chat_stream

    params = _params(args, services)
    if args.index:
        return _ask_index(args, services, params)
    msgs = ([{"role": "system", "content": args.system}] if args.system else [])
    msgs.append({"role": "user", "content": args.question})
    text, last = "", None
    for d in chat_stream(services, msgs, params, user_key=_user_key()):
        if not args.json:
            print(d.text, end="", flush=True)
        text += d.text
        last = d
    if args.json:
        print(json.dumps({"model": services.engine.model_id, "answer": text, "finish_reason": last.finish_reason,
                          "usage": last.usage.to_dict(), "timings": last.timings}, ensure_ascii=False))
    else:
        print()
        _footer(last)
    return 0


def _ask_index(args, services, params) -> int:
    from llmspace.rag.cli_format import format_answer

    answer = services.rag.answer(args.question, index=args.index, mode=args.mode, params=params,
                                 user_key=_user_key())
    print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2) if args.json else format_answer(answer))
    return 0


def _user_key() -> str | None:
    """Who is asking, for A/B assignment and recorded answers: the OS user."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name (some containers)
        return None


def _footer(last) -> None:
    t, u = last.timings or {}, last.usage
    print(f"[{u.prompt_tokens} prompt + {u.completion_tokens} completion tokens, ttft {t.get('ttft_s', 0):.2f}s, "
          f"total {t.get('total_s', 0):.2f}s, {t.get('tokens_per_s', 0):.1f} tok/s, {last.finish_reason}]",
          file=sys.stderr)


def cmd_chat(args, services) -> int:
    from llmspace.chat import chat_stream
    from llmspace.errors import LLMSpaceError

    params = _params(args, services)
    history = ([{"role": "system", "content": args.system}] if args.system else [])
    s = services.settings
    name = services.engine.label if s.backend == "remote" else s.chat_model  # (label: no network call)
    print(f"llmspace chat with {name} — /exit or Ctrl-D to quit, /reset to clear.",
          file=sys.stderr)
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            print()
            return 0
        if line.strip() in ("/exit", "/quit"):
            return 0
        if line.strip() == "/reset":
            history = history[:1] if args.system else []
            continue
        if not line.strip():
            continue
        turn = history + [{"role": "user", "content": line}]
        try:
            text, last = "", None
            for d in chat_stream(services, turn, params, user_key=_user_key()):
                print(d.text, end="", flush=True)
                text += d.text
                last = d
        except LLMSpaceError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            continue
        print()
        _footer(last)
        history = turn + [{"role": "assistant", "content": text}]


def cmd_serve(args, services) -> int:
    from llmspace.serve.server import run_server

    s = services.settings
    updates = {k: v for k, v in (("host", args.host), ("port", args.port), ("grpc_port", args.grpc_port))
               if v is not None}
    for flag, value in (("--port", args.port), ("--grpc-port", args.grpc_port)):
        if value is not None and not 1 <= value <= 65535:
            from llmspace.errors import ConfigError

            raise ConfigError(f"{flag} must be 1-65535; got {value}.", param=flag[2:].replace("-", "_"))
    s = s.model_copy(update=updates)
    run_server(s, with_ui=not args.no_ui)
    return 0
