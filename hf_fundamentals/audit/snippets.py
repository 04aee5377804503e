"""Reference snippets the length of the generations, so the classifier's confusion and calibration are measured
on text like the text it will label.

The label-shift correction inverts the confusion matrix C[i, j] = P(classified j | domain i). It is unbiased only
when C holds on the generations (Lipton et al., arXiv 1802.03916, section 3: the class-conditional distributions
must match). A classifier that is near-perfect on 2000-character reference documents confuses 250-character
continuations far more often, so C measured on whole documents under-corrects. Windows cut from the held-out
reference documents with lengths drawn from the generations' own lengths make the two match in length.

Where a window starts matters too. A model sampled from its BOS token (``--prompts bos``) writes document
beginnings, often whole short documents that end at EOS; a window from the middle of a reference document is
text of another kind (no headword, no title line). ``anchor="start"`` cuts every snippet at the document's
beginning, so the snippets match the generations in position as well as in length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["ANCHORS", "draw_snippets"]

ANCHORS = ("random", "start")
"""Where a snippet starts: at a random word boundary, or at the document's beginning."""


def draw_snippets(
    texts: Sequence[str],
    labels: np.ndarray,
    lengths: Sequence[int] | np.ndarray,
    *,
    per_doc: int = 3,
    min_chars: int = 20,
    seed: int = 0,
    anchor: str = "random",
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``per_doc`` windows of each text, each as long (in characters) as a length drawn from ``lengths``.

    A window starts at a random word boundary (``anchor="random"``) or at the text's beginning
    (``anchor="start"``: the prefixes BOS-prompted generations resemble); a text shorter than the drawn length
    is kept whole. Returns ``(snippets, their labels, index of the source text)``.
    """
    if anchor not in ANCHORS:
        raise ValueError(f"anchor: got {anchor!r}; expected one of {', '.join(ANCHORS)}")
    lengths = np.asarray(lengths, dtype=np.int64)
    lengths = lengths[lengths >= min_chars]
    if lengths.size == 0:
        raise ValueError(f"lengths: no generation has >= {min_chars} characters to match snippets to")
    if per_doc < 1:
        raise ValueError(f"per_doc: got {per_doc}; expected >= 1")
    labels = np.asarray(labels)
    if len(texts) != labels.shape[0]:
        raise ValueError(f"labels: got {labels.shape[0]} labels for {len(texts)} texts")
    rng = np.random.default_rng(seed)
    out: list[str] = []
    out_labels: list[int] = []
    source: list[int] = []
    for i, text in enumerate(texts):
        starts = [0] if anchor == "start" else [0] + [k + 1 for k, ch in enumerate(text) if ch.isspace()]
        for length in rng.choice(lengths, size=per_doc):
            if len(text) <= length:
                window = text
            else:
                fits = [s for s in starts if s + length <= len(text)] or [0]
                start = fits[int(rng.integers(len(fits)))]  # one draw either way: same rng stream
                window = text[start : start + int(length)]
            out.append(window)
            out_labels.append(int(labels[i]))
            source.append(i)
    return out, np.asarray(out_labels, dtype=labels.dtype), np.asarray(source, dtype=np.int64)
