"""What every Claude caller shares: the SDK client, the default model, and failures sorted into
reasons (timeout, overloaded, rate_limited, connection, malformed, api_error) that say whether a
retry can help. The drafter (services/drafter/claude.py) and the classifier's hard-case assist
(services/classifier/claude_assist.py) build on it; both are tested against a local server that
speaks the Messages API, since the real API is not reachable from CI.
"""

from __future__ import annotations

import re
import typing

import anthropic
from anthropic.types import Model

# The most of one ticket text field (subject, body) a model is ever shown: the drafter's prompt
# cuts there, and the classifier reads exactly this much, so its injection scan covers all of it.
TICKET_CHARS_SHOWN = 8_000

DEFAULT_TIMEOUT_S = 20.0  # one HTTP request
DEFAULT_SDK_RETRIES = 2
FALLBACK_MODEL = "claude-sonnet-4-5"


class ClaudeFailure(Exception):
    """A Claude call did not give a usable answer; `reason` labels the callers' fallback metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.retryable = reason in {"timeout", "overloaded", "rate_limited", "connection"}


def default_model() -> str:
    """The newest Sonnet the installed SDK knows (its `Model` literal), undated ids preferred."""
    literal = typing.get_args(Model)[0]
    sonnets = [m for m in typing.get_args(literal) if m.startswith("claude-sonnet-") and not re.search(r"-\d{8}$", m)]
    if not sonnets:
        return FALLBACK_MODEL
    return max(sonnets, key=lambda m: tuple(int(part) for part in re.findall(r"\d+", m)))


def claude_client(
    api_key: str, base_url: str = "", *, timeout_s: float = DEFAULT_TIMEOUT_S, max_retries: int = DEFAULT_SDK_RETRIES
) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=api_key, base_url=base_url or None, timeout=timeout_s, max_retries=max_retries)


def classify_failure(exc: Exception) -> ClaudeFailure:
    """An SDK error as a ClaudeFailure whose reason says whether a retry can help."""
    if isinstance(exc, anthropic.APITimeoutError):
        return ClaudeFailure("timeout", str(exc))
    if isinstance(exc, anthropic.APIConnectionError):
        return ClaudeFailure("connection", str(exc))
    if isinstance(exc, anthropic.RateLimitError):
        return ClaudeFailure("rate_limited", str(exc))
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code in (503, 529):
        return ClaudeFailure("overloaded", str(exc))
    if isinstance(exc, anthropic.APIResponseValidationError):
        return ClaudeFailure("malformed", str(exc))
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code >= 500:
        return ClaudeFailure("overloaded", str(exc))
    if isinstance(exc, anthropic.APIError):
        return ClaudeFailure("api_error", str(exc))
    return ClaudeFailure("malformed", f"{type(exc).__name__}: {exc}")
