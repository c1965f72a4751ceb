"""The ``llmspace`` command: a thin client of the library.

Each command group lives in its own module exposing ``register(subparsers)``;
handlers take ``(args, services)`` and return an exit code. ``--help`` imports
nothing heavy.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from llmspace import __version__
from llmspace.errors import LLMSpaceError

# Modules in llmspace.cli that add command groups, in --help order.
GROUPS = ["core"]
OPTIONAL_GROUPS = ["rag_cmds", "eval_cmds", "export_cmds"]  # present once their capability lands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmspace",
        description="The LLM-engineering roadmap, runnable: chat, RAG with citations, evals, ONNX export.",
    )
    parser.add_argument("--version", action="version", version=f"llmspace {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("settings (override LLMSPACE_* variables)")
    g.add_argument("--home", help="folder for models, indexes, logs (LLMSPACE_HOME)")
    g.add_argument("--model", dest="chat_model", help="chat model: registry name, folder or Hub id")
    g.add_argument("--backend", choices=["torch", "onnx", "genai", "remote"],
                   help="inference backend (remote: an OpenAI-compatible server at --remote-url)")
    g.add_argument("--remote-url", dest="remote_base_url", metavar="URL",
                   help="with --backend remote: the server's OpenAI base URL, e.g. http://host:8000/v1")
    g.add_argument("--remote-model", dest="remote_model", metavar="NAME",
                   help="with --backend remote: the model name to send (default: the first the server lists)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="device (default: auto)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    parser._llmspace_common = common  # type: ignore[attr-defined]
    for name in GROUPS + OPTIONAL_GROUPS:
        try:
            module = importlib.import_module(f"llmspace.cli.{name}")
        except ModuleNotFoundError as exc:
            if name in OPTIONAL_GROUPS and exc.name == f"llmspace.cli.{name}":
                continue
            raise
        module.register(sub, common)
    return parser


def settings_from_args(args: argparse.Namespace):
    from llmspace.config import Settings

    keys = ("home", "chat_model", "backend", "device", "remote_base_url", "remote_model")
    return Settings.load(**{k: getattr(args, k) for k in keys if getattr(args, k, None) is not None})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from llmspace.services import Services

        services = Services(settings_from_args(args))
        return int(args.handler(args, services) or 0)
    except LLMSpaceError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
