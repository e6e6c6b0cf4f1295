"""Property checks of step splitting and token spans on arbitrary text: spans are ordered, disjoint,
inside the text, equal to the stripped pieces between separators, and always get tokens."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from mathforge.models.tokenizer import default_tokenizer
from mathforge.reward.steps import split_steps, step_prefixes, token_spans

TOKENIZER = default_tokenizer()
SEPARATORS = st.sampled_from(["\n", "\n\n", " ки ", ";", "Step"])
TEXT = st.text(alphabet=st.sampled_from(list("ab 1+=\n;киStep∑ü\t.")), max_size=80)


@settings(max_examples=200, deadline=None)
@given(TEXT, SEPARATORS)
def test_spans_are_the_stripped_pieces_between_separators(text: str, separator: str) -> None:
    spans = split_steps(text, separator)
    pieces = [p.strip() for p in text.split(separator) if p.strip()]
    assert [text[s.char_start : s.char_end] for s in spans] == pieces
    ends = [0] + [s.char_end for s in spans]
    assert all(s.char_start >= end for s, end in zip(spans, ends, strict=False))
    prefixes = step_prefixes(text, separator)
    assert len(prefixes) == len(spans)
    for prefix, span in zip(prefixes, spans, strict=True):
        # The prefix is the text through the step, plus its separator when one follows.
        assert text.startswith(prefix) and prefix.startswith(text[: span.char_end])
        assert prefix[span.char_end :].strip() in ("", separator.strip())


@settings(max_examples=200, deadline=None)
@given(TEXT, SEPARATORS)
def test_every_step_gets_the_tokens_that_cover_it(text: str, separator: str) -> None:
    offsets = TOKENIZER(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    spans = token_spans(split_steps(text, separator), offsets)
    for span in spans:
        assert 0 <= span.token_start < span.token_end <= len(offsets)
        covered = offsets[span.token_start : span.token_end]
        assert covered[0][0] <= span.char_start and covered[-1][1] >= span.char_end
        assert all(end > span.char_start and start < span.char_end for start, end in covered)
    assert [s.token_end for s in spans] == sorted(s.token_end for s in spans)
