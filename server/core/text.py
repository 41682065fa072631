"""Cleaning of free text that other people will see (nicknames, chat).

NFKC turns full-width and other compatibility forms into plain letters, so
full-width "Host" is plain "Host"; bidi controls and zero-width characters are removed, since
they change how neighbouring text is drawn (a name shown reversed, a message
that reorders the one after it) or make two equal-looking strings differ.
Pure, with no imports from the rest of the server (protocol and identity both
use it).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

# U+061C Arabic letter mark, U+180E Mongolian vowel separator, U+200B-U+200D
# zero-width space/non-joiner/joiner, U+200E/U+200F LRM/RLM, U+202A-U+202E bidi
# embeddings and overrides, U+2060-U+2064 word joiner and invisible operators,
# U+2066-U+2069 bidi isolates, U+FEFF zero-width no-break space.
INVISIBLE: Final = re.compile(
    "[\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def clean_text(text: str) -> str:
    """`text` NFKC-normalised with bidi controls and zero-width characters removed."""
    if text.isascii():
        return text  # the common case: nothing to normalise or remove
    return INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
