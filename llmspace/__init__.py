"""llmspace: the LLM-engineering roadmap as one working system.

Importing this package is cheap: no model, torch or gradio is imported here.
Heavy pieces load lazily, once, when first used.
"""

__version__ = "0.1.0"

from llmspace.errors import LLMSpaceError  # noqa: E402  (light: no third-party imports)

__all__ = ["__version__", "LLMSpaceError", "get_settings"]


def get_settings(**overrides):
    """The settings object (env ``LLMSPACE_*`` plus ``overrides``)."""
    from llmspace.config import Settings

    return Settings.load(**overrides)
