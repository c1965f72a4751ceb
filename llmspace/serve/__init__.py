"""The HTTP shell: FastAPI app with OpenAI-compatible routes, /health, /metrics."""
