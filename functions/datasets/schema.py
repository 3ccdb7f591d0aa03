"""The shapes of a valid line as msgspec structs: decoding into them parses and type-checks in C, in one pass.

Two sets. The strict set forbids unknown fields, so a line it accepts has had every byte either decoded as a
string (which checks UTF-8) or matched as JSON syntax: no separate UTF-8 pass is needed on the hot path.
The lenient set takes lines with extra fields (an "id", "metadata"...), which are valid too; its caller must
check UTF-8 itself, since msgspec skips ignored values without decoding them.
All structs are gc=False (they never form cycles), so the millions decoded do not keep waking the collector.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

UNSET = msgspec.UNSET


class TextPart(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    type: Literal["text"]
    text: str


class System(msgspec.Struct, tag_field="role", tag="system", forbid_unknown_fields=True, gc=False):
    content: str | list[TextPart]
    name: str | msgspec.UnsetType = UNSET


class User(msgspec.Struct, tag_field="role", tag="user", forbid_unknown_fields=True, gc=False):
    content: str | list[TextPart]
    name: str | msgspec.UnsetType = UNSET


class Assistant(msgspec.Struct, tag_field="role", tag="assistant", forbid_unknown_fields=True, gc=False):
    content: str | list[TextPart]
    name: str | msgspec.UnsetType = UNSET
    weight: Literal[0, 1] = 1


class Chat(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    messages: list[System | User | Assistant]


class PromptCompletion(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    prompt: str
    completion: str


class LenientTextPart(msgspec.Struct, gc=False):
    type: Literal["text"]
    text: str


class LenientSystem(msgspec.Struct, tag_field="role", tag="system", gc=False):
    content: str | list[LenientTextPart]
    name: str | msgspec.UnsetType = UNSET
    # Declared only so that its presence is seen (unknown fields are ignored here): only assistants take one.
    weight: Any = UNSET


class LenientUser(msgspec.Struct, tag_field="role", tag="user", gc=False):
    content: str | list[LenientTextPart]
    name: str | msgspec.UnsetType = UNSET
    weight: Any = UNSET  # as for LenientSystem


class LenientAssistant(msgspec.Struct, tag_field="role", tag="assistant", gc=False):
    content: str | list[LenientTextPart]
    name: str | msgspec.UnsetType = UNSET
    weight: Literal[0, 1] = 1


class LenientChat(msgspec.Struct, gc=False):
    messages: list[LenientSystem | LenientUser | LenientAssistant]
    # A record with both formats' keys is refused, so these must be seen rather than ignored.
    prompt: Any = UNSET
    completion: Any = UNSET


class LenientPromptCompletion(msgspec.Struct, gc=False):
    prompt: str
    completion: str
    messages: Any = UNSET  # as in LenientChat


def parts_chars(parts: list[TextPart] | list[LenientTextPart]) -> int:
    return sum(len(p.text) for p in parts)
