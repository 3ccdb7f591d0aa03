"""Identifiers: OpenAI-style prefixes, lowercase base32 bodies (DNS-1123 friendly), secrets for API keys."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

CLIENT_CODE_RE = re.compile(r"^[a-z][a-z0-9-]{1,31}$")
_BODY_CHARS = 24


def _body(raw: bytes) -> str:
    return base64.b32encode(raw).decode().lower().rstrip("=")[:_BODY_CHARS]


def new_id(prefix: str) -> str:
    """`file-…`, `ftjob-…`, `upload_…`: prefix plus 24 random lowercase base32 characters."""
    return prefix + _body(secrets.token_bytes(15))


def derived_id(prefix: str, *parts: str) -> str:
    """A stable id for the same inputs, so a redelivered event registers the same record twice at most once."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return prefix + _body(digest[:15])


def new_api_key() -> str:
    return "msk-" + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def valid_client_code(value: str) -> bool:
    return bool(CLIENT_CODE_RE.fullmatch(value))


def seed_from(text: str) -> int:
    """A reproducible default seed (OpenAI picks one per job and shows it)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF
