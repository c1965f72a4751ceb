"""`import llmspace` and `llmspace --help` must stay fast: no model, no torch."""

import subprocess
import sys

HEAVY = ["torch", "transformers", "gradio", "sentence_transformers", "faiss", "onnxruntime", "optimum",
         "bm25s", "jieba", "fastapi"]

CODE = """
import sys, contextlib, io
import llmspace, llmspace.config, llmspace.errors, llmspace.models, llmspace.cli
with contextlib.redirect_stdout(io.StringIO()):
    try:
        llmspace.cli.main(["--help"])
    except SystemExit:
        pass
print(",".join(m for m in %r if m in sys.modules))
""" % (HEAVY,)


def test_import_and_help_load_nothing_heavy():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported at import time: {out.stdout.strip()}"


def test_the_library_does_not_depend_on_the_http_shell():
    """Services (which the library and evals use) and its metrics load without llmspace.serve."""
    code = ("import sys\nfrom llmspace.config import Settings\nfrom llmspace.services import Services\n"
            "Services(Settings.load(env={})).metrics.waiting.inc()\n"
            "print(sorted(k for k in sys.modules if k.startswith('llmspace.serve')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    from llmspace.metrics import Metrics
    from llmspace.serve.metrics import Metrics as Old  # the old path still works

    assert Old is Metrics
