"""Critique and revision (Bai et al. 2022, "Constitutional AI", the supervised stage) on the review
task: a response revised toward a principle by an operator the principle defines.

In Constitutional AI a model critiques its own response against a principle and rewrites it; the
rewrites become SFT data. On the built-in task the critique is exact (the principles are
components of the gold reward, `alignax.feedback.principles`) and the revision is the edit that
removes what the principle objects to:

    sentiment       "not" is dropped and each negative adjective becomes its positive
                    counterpart (bad -> good, awful -> great, ...): every adjective then adds
                    +|m| to S, never less than before
    non_repetition  a word is dropped when it would repeat a word pair already in the response:
                    the revision has no repeated pair
    termination     a response without an end-of-text gets one (in place of its last word when
                    it is already `max_length` long)

    revised = revise(response_ids, ("sentiment", "non_repetition", "termination"), max_length=24)

Fluency has no revision operator (it is the generator's likelihood; an edit cannot target it).
"""

from __future__ import annotations

from collections.abc import Sequence

from alignax.tasks.review import EOS_ID, NEGATIVE, NOT, POSITIVE, WORD_TO_ID

_NOT_ID = WORD_TO_ID[NOT]
_POSITIVE_OF = {WORD_TO_ID[n]: WORD_TO_ID[p] for n, p in zip(NEGATIVE, POSITIVE, strict=True)}


def _sentiment(words: list[int]) -> list[int]:
    return [_POSITIVE_OF.get(w, w) for w in words if w != _NOT_ID]


def _non_repetition(words: list[int]) -> list[int]:
    kept: list[int] = []
    seen: set[tuple[int, int]] = set()
    for w in words:
        pair = (kept[-1], w) if kept else None
        if pair in seen:
            continue
        if pair is not None:
            seen.add(pair)
        kept.append(w)
    return kept


REVISIONS = {"sentiment": _sentiment, "non_repetition": _non_repetition}


def revise(response: Sequence[int], principles: Sequence[str], *, max_length: int) -> list[int]:
    """`response` (review-task word ids, with its EOS if it has one) revised toward each of
    `principles` in turn; at most `max_length` tokens, EOS included."""
    unknown = [p for p in principles if p not in (*REVISIONS, "termination")]
    if unknown:
        raise ValueError(
            f"no revision operator for principle(s) {unknown}; available: "
            f"{', '.join((*REVISIONS, 'termination'))}"
        )
    ended = len(response) > 0 and response[-1] == EOS_ID
    words = list(response[:-1] if ended else response)
    for name in principles:
        if name in REVISIONS:
            words = REVISIONS[name](words)
    if ended or "termination" in principles:
        words = words[: max_length - 1] + [EOS_ID]
    return words
