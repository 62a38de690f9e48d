"""Tokens to text as the data was made: raw UTF-8, or LongCrawl64's JSON-escaped text (``json.dumps(text)[1:-1]``
before GPT-2 BPE, as its users' code documents it; FoX's ``JSONGPT2Tokenizer``). ``Dataset.text_encoding`` says
which a dataset holds."""

import json
import re
from typing import Iterable, Optional

ENCODINGS = ("raw", "json")

_ESCAPE = re.compile(r'\\(?:u([0-9a-fA-F]{4})(?:\\u([dD][c-fC-F][0-9a-fA-F]{2}))?|(["\\/bfnrt]))')
_SURROGATE = re.compile("[\ud800-\udfff]")
_SHORT = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def escape(text: str) -> str:
    """What a model trained on json-encoded data reads for ``text``: Python's ``json.dumps(text)[1:-1]``."""
    return json.dumps(text)[1:-1]


def unescape(text: str) -> str:
    """``json.loads('"' + text + '"')``, best effort: where that fails (a model's output may stop inside an escape,
    or hold a stray backslash), every valid escape is decoded and the rest is kept as written; a lone surrogate
    becomes U+FFFD."""
    try:
        out = json.loads('"' + text + '"')
    except ValueError:
        out = _ESCAPE.sub(_one, text)
    return _SURROGATE.sub("\ufffd", out)


def _one(m: "re.Match[str]") -> str:
    if m.group(3):
        return _SHORT[m.group(3)]
    high = int(m.group(1), 16)
    if m.group(2) and 0xD800 <= high < 0xDC00:
        return chr(0x10000 + ((high - 0xD800) << 10) + (int(m.group(2), 16) - 0xDC00))
    return chr(high) + (chr(int(m.group(2), 16)) if m.group(2) else "")


def decode(ids: Iterable[int], encoding: Optional[str] = "raw", tokenizer=None) -> str:
    """The text of GPT-2 token ``ids`` in ``encoding`` (``Dataset.text_encoding``; None, undecided, reads as raw).
    ``tokenizer`` is a tiktoken GPT-2 ``Encoding`` (default: ``tiktoken.get_encoding("gpt2")``)."""
    if encoding not in ENCODINGS + (None,):
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if tokenizer is None:
        import tiktoken
        tokenizer = tiktoken.get_encoding("gpt2")
    text = tokenizer.decode_bytes([int(i) for i in ids]).decode("utf-8", "replace")
    return unescape(text) if encoding == "json" else text
