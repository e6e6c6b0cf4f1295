"""The one text preparation used by fastText training and by every scorer (service, CLI, recall).

fastText splits on whitespace only and treats a newline as the end of an example, so a document
must become one line of whitespace-separated tokens before it is trained on or scored. Training
and scoring must prepare text identically, or the scores drift from what the model learnt.
"""

from __future__ import annotations

import re

#: fastText's label prefix; a token starting with it inside a document would read as a label.
LABEL_PREFIX = "__label__"

# One pass splits out three kinds of token: LaTeX commands stay whole (\frac, \int); math symbols
# and punctuation stand alone, so "$x^2+1$" yields x ^ 2 + 1 rather than one token per formula;
# each Han character is a token, since Chinese is written without spaces (word n-grams then act
# as character n-grams).
_TOKENS = re.compile(
    r"(\\[a-zA-Z]+|[$^_{}()\[\]=+\-*/<>|&%#~,.;:!?\"'`]|[\u3000-\u303f\uff00-\uffef]|[\u4e00-\u9fff\u3400-\u4dbf])"
)


def prepare_text(text: str, max_chars: int = 0) -> str:
    """Returns `text` as one lowercase line of space-separated tokens, safe to train or score.

    Newlines and other whitespace collapse to single spaces, fastText label markers are defused,
    math symbols and Han characters are split into tokens. max_chars > 0 keeps only the first
    max_chars characters of the input (a bound on work per document).
    """
    if max_chars and len(text) > max_chars:
        text = text[:max_chars]
    text = text.lower()
    if LABEL_PREFIX in text:
        text = text.replace(LABEL_PREFIX, "label ")
    return " ".join(_TOKENS.sub(r" \1 ", text).split())
