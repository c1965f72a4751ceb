"""Hugging Face Space / `make run` entry point: one server on port 7860 with
the Gradio UI at /, the OpenAI-compatible API at /v1, /health and /metrics."""

from llmspace.serve.server import main

if __name__ == "__main__":
    main()
