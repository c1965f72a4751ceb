"""Hugging Face Space entry point, written by `llmspace space build`.

One server on port 7860: the Gradio UI at /, the OpenAI-compatible API at /v1,
and the browser app at /web/ with the exported models bundled under home/exports.
space.json (beside this file) holds the settings this Space was built with;
variables set in the Space's settings win over it.
"""

import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ.setdefault("LLMSPACE_HOME", str(HERE / "home"))
os.environ.setdefault("LLMSPACE_HOST", "0.0.0.0")
for key, value in json.loads((HERE / "space.json").read_text()).get("env", {}).items():
    os.environ.setdefault(key, value)

from llmspace.serve.server import main  # noqa: E402  (after the environment is set)

if __name__ == "__main__":
    main()
