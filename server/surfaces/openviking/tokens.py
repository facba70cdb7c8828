"""OpenViking's token estimate of a message (``estimate_text_tokens``), for ``pending_tokens``:
1.5 per CJK, Kana, Hangul, full-width or CJK punctuation character, 2.0 above U+FFFF, 0.25
for anything else, the sum rounded up."""

from __future__ import annotations

import math

# v0.3.24's ranges (openviking/utils/token_estimation.py), checked before the 0xFFFF rule.
_WIDE = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF00, 0xFFEF),  # half-width and full-width forms
    (0x20000, 0x2EBEF),  # CJK extensions B-F
)


def _weight(ch: str) -> float:
    point = ord(ch)
    if any(low <= point <= high for low, high in _WIDE):
        return 1.5
    if point > 0xFFFF:
        return 2.0
    return 0.25


def estimate_tokens(text: str) -> int:
    return math.ceil(sum(_weight(ch) for ch in text))
