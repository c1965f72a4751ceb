"""Pieces every backend shares: context checks and stop-string handling."""

from __future__ import annotations

from llmspace.errors import ContextLengthError


def check_context(prompt_tokens: int, max_new_tokens: int, context_window: int) -> None:
    """Reject a prompt that leaves no room, saying by how much it is over."""
    if prompt_tokens >= context_window:
        raise ContextLengthError(
            f"The prompt is {prompt_tokens} tokens; the model's context window is {context_window} "
            f"tokens, so it is {prompt_tokens - context_window + 1} tokens too long. Shorten the messages."
        )
    if prompt_tokens + max_new_tokens > context_window:
        room = context_window - prompt_tokens
        raise ContextLengthError(
            f"The prompt is {prompt_tokens} tokens and max_tokens is {max_new_tokens}: "
            f"{prompt_tokens + max_new_tokens} in all, over the context window of {context_window} "
            f"by {prompt_tokens + max_new_tokens - context_window}. Ask for at most {room} new tokens "
            f"or shorten the messages.",
            param="max_tokens",
        )


class StopMatcher:
    """Streams text while watching for stop strings.

    Text that could be the start of a stop string is held back until it is
    clear either way, so a stop string never leaks into the output.
    """

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.buffer = ""

    def feed(self, new: str) -> tuple[str, bool]:
        """Add new text; return (text safe to emit, whether a stop string was hit)."""
        self.buffer += new
        if not self.stops:
            out, self.buffer = self.buffer, ""
            return out, False
        cut = min((i for i in (self.buffer.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            out, self.buffer = self.buffer[:cut], ""
            return out, True
        hold = 0  # longest buffer suffix that is a proper prefix of some stop
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.buffer)), 0, -1):
                if self.buffer.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        out = self.buffer[: len(self.buffer) - hold]
        self.buffer = self.buffer[len(self.buffer) - hold:]
        return out, False

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out
