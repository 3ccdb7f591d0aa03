"""File names people gave us, made safe to show back: the one helper every way in (multipart upload, Uploads API,
the seed route, S3 drops, DFS files) and every response (files, uploads, seed bodies) goes through.

A name is kept as the person wrote it except for what could mislead whoever reads it later:
- directory parts, with either separator (`../../etc/passwd` → `passwd`, `C:\\x\\y.jsonl` → `y.jsonl`): a
  browser or a tool may send a whole path, and a path shown back looks like a place on someone's disk;
- control characters (C0, DEL, C1), line/paragraph separators and the bidirectional controls (U+061C,
  U+200E/U+200F, U+202A..U+202E, U+2066..U+2069), with which a name displays as something it is not
  (after U+202E the rest of the name is shown right to left).
Letters of any script, spaces and punctuation stay: `my chats été+v2.jsonl` is shown as it was uploaded.

A name that is nothing after cleaning (`..`, `dir/`, only control characters) is refused with a 400 naming
`filename` where a person is there to answer (`clean_filename`); where nobody is (an S3 drop, a stored record),
`display_filename` falls back to FALLBACK_NAME.
"""

from __future__ import annotations

import re

from functions.core.errors import InvalidRequest

MAX_NAME_CHARS = 255
FALLBACK_NAME = "dataset.jsonl"
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SEPARATORS = re.compile(r"[/\\]")


def strip_filename(raw: str) -> str:
    """The last path part of `raw`, without invisible controls or surrounding blanks; "" if nothing is left."""
    # Controls go first: `.\u200e.` is `..` to whoever reads it, so it must be refused like `..`.
    name = _SEPARATORS.split(_INVISIBLE.sub("", raw))[-1].strip()
    if name in (".", ".."):
        return ""
    if len(name) > MAX_NAME_CHARS:  # shorten the stem, not the extension the upload checks look at
        stem, dot, ext = name.rpartition(".")
        keep = dot + ext if stem and len(ext) <= 16 else ""
        name = name[: MAX_NAME_CHARS - len(keep)].rstrip() + keep
    return name


def clean_filename(raw: str, param: str = "filename") -> str:
    """The name to store and show for a file a person is uploading now; a clear 400 when nothing usable is left."""
    name = strip_filename(raw)
    if not name:
        raise InvalidRequest(
            f"filename {raw[:80]!r} has no usable name once directory parts and control characters are removed; "
            "name the file e.g. train.jsonl",
            param=param,
        )
    return name


def display_filename(raw: str) -> str:
    """A stored or dropped name made safe to show; never empty."""
    return strip_filename(raw) or FALLBACK_NAME
