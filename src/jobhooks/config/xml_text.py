"""The text of a file saved by Windows tools: a web.config or manifest.json decoded as an XML
parser decodes it (byte-order mark, then the XML declaration, then UTF-8)."""

from __future__ import annotations

import codecs
import re

__all__ = ["decode_source"]

# UTF-32 LE's mark begins with UTF-16 LE's, so it is tried first.
_BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "UTF-32-LE"),
    (codecs.BOM_UTF32_BE, "UTF-32-BE"),
    (codecs.BOM_UTF8, "UTF-8"),
    (codecs.BOM_UTF16_LE, "UTF-16-LE"),
    (codecs.BOM_UTF16_BE, "UTF-16-BE"),
)
# Where the zero bytes of '<?xml' (or of any ASCII) fall in each encoding: 0 is a zero byte.
_UNMARKED_WIDE = {
    "000x": "UTF-32-BE",
    "x000": "UTF-32-LE",
    "0x0x": "UTF-16-BE",
    "x0x0": "UTF-16-LE",
}
_ENCODING_DECLARATION = re.compile(
    rb"""\A\s*<\?xml\s[^>]*?\bencoding\s*=\s*["']([A-Za-z][A-Za-z0-9._-]*)["']"""
)


def _unmarked_wide_encoding(data: bytes) -> str | None:
    """UTF-16 or UTF-32 without a byte-order mark, told by where the zero bytes of the
    first (ASCII) characters fall, as XML 1.0 appendix F does."""
    zeros = "".join("0" if byte == 0 else "x" for byte in data[:4])
    return _UNMARKED_WIDE.get(zeros)


def _choose_encoding(data: bytes) -> tuple[str, int, str]:
    """The encoding of ``data``, where its text starts, and what chose the encoding."""
    for mark, encoding in _BYTE_ORDER_MARKS:
        if data.startswith(mark):
            return encoding, len(mark), "its byte-order mark says so"
    wide = _unmarked_wide_encoding(data)
    if wide is not None:
        return wide, 0, "its first bytes say so"
    declared = _ENCODING_DECLARATION.match(data)
    if declared is None:
        return "UTF-8", 0, "the default: it has no byte-order mark or XML declaration naming one"
    name = declared.group(1).decode("ascii")
    try:
        codec = codecs.lookup(name)
    except LookupError:
        raise ValueError(
            f"line 1: the XML declaration names the encoding {name!r}, which is unknown; "
            'save the file as UTF-8 and declare encoding="utf-8"'
        ) from None
    try:
        marker = "<?xml".encode(codec.name, errors="replace")
    except (LookupError, UnicodeError):
        # A codec of bytes to bytes (hex, base64, zlib...) or one that encodes no text.
        raise ValueError(
            f"line 1: the XML declaration names the encoding {name!r}, which is not a text "
            'encoding; save the file as UTF-8 and declare encoding="utf-8"'
        ) from None
    if marker != b"<?xml":
        # A declaration read as ASCII cannot be right about a 16- or 32-bit encoding:
        # the file was saved again without changing it. Read it as UTF-8, as libxml2 does.
        return "UTF-8", 0, f"its XML declaration names {name}, which its bytes are not"
    return name, 0, "its XML declaration names it"


def decode_source(data: bytes) -> str:
    """Decode a web.config, a fragment of one or a manifest.json read as bytes, as an XML
    parser does: by its byte-order mark (UTF-8, UTF-16 or UTF-32, either order), else the
    zero bytes of a UTF-16/32 file without one, else the encoding its XML declaration
    names, else UTF-8. The byte-order mark is not part of the text returned.

    Raises ValueError when the declaration names an unknown encoding or the bytes are not
    in the encoding chosen, saying which byte, on which line, and what to do.
    """
    encoding, start, reason = _choose_encoding(data)
    body = data[start:]
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        before = body[: exc.start].decode(encoding, errors="replace")
        line = before.count("\n") + 1
        column = len(before) - before.rfind("\n")
        label = codecs.lookup(encoding).name.upper().replace("_", "-")
        raise ValueError(
            f"cannot decode the file as {label} ({reason}): byte 0x{body[exc.start]:02X} at "
            f"line {line}, column {column} is not {label}; save the file as UTF-8, or name "
            'its encoding in the XML declaration (such as encoding="windows-1252")'
        ) from None
