"""What a tenant may read of a message that came from a server or a backend: its own model ids stay; S3 URIs, other
URLs, file paths, network addresses, other `ft:` models and job ids become placeholders.

A shared inference server serves many tenants' adapters, and its log, its errors and its backend's messages name
them (ids, S3 prefixes, cache paths, internal addresses). Operators get the full text in the logs; a deployment's
`error.message`, a proxied error and an inference log line get what `for_tenant` leaves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bs3a?://[^\s'\"`),;\]]*", re.IGNORECASE), "<s3 uri>"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"`),;\]]*", re.IGNORECASE), "<url>"),
    (re.compile(r"\bft:[^\s'\"`),;\]]+"), "<another model>"),
    (re.compile(r"\bftjob-[a-z0-9]+\b"), "<job>"),
    (re.compile(r"\bartifacts/[^\s'\"`),;\]]+"), "<path>"),
    (re.compile(r"(?<![\w:.~/-])(?:~|\.{1,2})?/(?:[\w.@%+=-]+/?)+"), "<path>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<address>"),
    (re.compile(r"\[[0-9a-f:]{2,}\](?::\d+)?|\blocalhost(?::\d+)?\b", re.IGNORECASE), "<address>"),
)
_LIMIT = 500


def for_tenant(text: str, own: Iterable[str] = ()) -> str:
    """`text` with everything that could name another tenant or the platform's insides replaced; `own` (the
    tenant's own model ids) is kept as written."""
    kept = {f"\x00{i}\x00": name for i, name in enumerate(sorted({o for o in own if o}, key=len, reverse=True))}
    for marker, name in kept.items():
        text = text.replace(name, marker)
    for pattern, placeholder in _RULES:
        text = pattern.sub(placeholder, text)
    for marker, name in kept.items():
        text = text.replace(marker, name)
    text = " ".join(text.split())  # a log tail or traceback never reaches a tenant as a block
    return text if len(text) <= _LIMIT else text[: _LIMIT - 1] + "…"
