"""Text from the platform (or from anyone posting to it) shown to a person literally and safely.

A value may hold a line break that forges a row or a mail section, an escape sequence a terminal obeys
(clear the screen, set the title, a hyperlink), or a bidirectional override that reorders what is read.
`literal` writes every such character as a visible escape, the way `repr` does, and doubles the
backslash so an escape in the output always means a character in the value.
"""

from __future__ import annotations

import unicodedata

_HIDDEN = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
"""Controls (C0, DEL, C1), format characters (bidi overrides, zero widths), lone surrogates, and the line
and paragraph separators: none shows as itself."""


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def literal(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control, format or separator character escaped (`\\n` kept when asked)."""
    if text.isprintable() and "\\" not in text:
        return text  # the usual value: nothing to look at character by character
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char == "\n" and keep_newlines:
            out.append(char)
        elif unicodedata.category(char) in _HIDDEN:
            out.append(_escape(char))
        else:
            out.append(char)
    return "".join(out)
