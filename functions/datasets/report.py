"""What a dataset validation finds: limits in, a report out (stored in MongoDB and shown by the API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Format = Literal["chat", "prompt_completion"]

# Token estimate heuristic, documented because users budget training runs with it:
# ~4 characters per token is the usual average for English under GPT/Llama-style BPE vocabularies (code and
# non-Latin scripts run denser, so this under-counts them); each chat message also costs a few tokens of
# template (`<|im_start|>role\n` ... `<|im_end|>\n`), and a prompt/completion example one end-of-sequence token.
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
TOKENS_PER_COMPLETION = 1


def estimate_tokens(fmt: Format | None, chars: int, messages: int, examples: int) -> int:
    """Tokens in the valid examples: ceil(chars / 4) plus per-message (chat) or per-example (prompt/completion)."""
    text = -(-chars // CHARS_PER_TOKEN)
    if fmt == "chat":
        return text + TOKENS_PER_MESSAGE * messages
    return text + TOKENS_PER_COMPLETION * examples


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 5 * 1024**3  # whole file
    max_line_bytes: int = 4 * 1024**2  # one line
    min_examples: int = 10
    max_errors: int = 50  # errors kept; error_count counts all

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_line_bytes < 1:
            raise ValueError("max_bytes and max_line_bytes must be positive")
        if self.min_examples < 0 or self.max_errors < 0:
            raise ValueError("min_examples and max_errors must not be negative")


@dataclass
class LineError:
    line: int | None  # 1-based line number; None for file-level problems
    reason: str  # a sentence a person can act on
    field: str | None = None  # JSON path of the offending field when known, e.g. "messages[1].role"

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason, "field": self.field}


@dataclass
class ValidationReport:
    valid: bool
    format: Format | None
    examples: int  # valid examples
    lines: int  # non-blank lines seen
    bytes: int  # bytes read (reading stops early for a file over the size limit or a binary file)
    token_estimate: int  # over valid examples, see estimate_tokens
    messages: int  # total messages in valid chat examples (0 for prompt/completion)
    error_count: int  # every error found, kept or not
    # File-level errors (line None) first, then line errors in line order; at most Limits.max_errors.
    errors: list[LineError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "format": self.format,
            "examples": self.examples,
            "lines": self.lines,
            "bytes": self.bytes,
            "token_estimate": self.token_estimate,
            "messages": self.messages,
            "error_count": self.error_count,
            "errors": [e.to_dict() for e in self.errors],
        }


def human_size(n: int) -> str:
    """1536 -> '1.5 KiB': sizes in messages people read."""
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
