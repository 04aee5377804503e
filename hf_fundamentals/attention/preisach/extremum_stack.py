"""The extremum-stack form of the relay bank (arXiv 2605.23603; the read-out is our design): the paper's
state, the alternating dominant extrema of the drive, kept with the wiping-out rule, and relays read from it
by binary search.

The stack at time t is defined recursively (initial state −1 means the drive came from −∞, so it opens with a
maximum): ``M₁`` = the latest arg-max of u over ``[0, t]``, ``m₁`` = the latest arg-min over ``(M₁, t]``,
``M₂`` = the latest arg-max over ``(m₁, t]``, ... until the current token t. Maxima strictly decrease and minima
strictly increase from older to newer; every entry alternates max/min, and the last entry is the current token.

Push (amortised O(1)): a new drive x wipes out every maximum ``<= x`` and every minimum ``>= x``. Those form a
suffix of the maxima and a suffix of the minima, so popping from the top while the top or the entry below it is
wiped removes exactly the entries from the first wiped one on; x then takes that slot (or goes on top). Tokens that
are repeated or interior to a monotone run never survive as entries below the top, so the stack (and everything
read from it) is rate-independent.

Read of a relay (α, β) (O(log n)): the most recent maximum ``>= α`` and the most recent minimum ``<= β``, each
by binary search on its monotone list; the relay is +1 iff that maximum exists and is more recent (the current
token is the top entry, so it is included). If the minimum is entry ``2j−1`` (or there is none, ``j = 0``), the
+1 relay's anchor (see :mod:`~hf_fundamentals.attention.preisach.relays`) is the maximum right above it, entry
``2j``: the highest token after the last dominant minimum below β.

This form is a reference in plain Python (one loop over t per sequence); O(n log n) total for a fixed number of
relay reads per token, and it can read thresholds that were not fixed in advance.
"""

from __future__ import annotations

from bisect import bisect_right

import torch
from torch import Tensor

from hf_fundamentals.attention.preisach.relays import check_relay_inputs


class ExtremumStack:
    """Alternating dominant extrema of one drive sequence. ``times``/``values`` hold the entries oldest first
    (even positions are maxima, odd ones minima); ``maxima``/``minima`` hold the values split by kind, for the
    binary searches (``neg_maxima`` is ``−maxima`` so that both are increasing)."""

    def __init__(self) -> None:
        self.times: list[int] = []
        self.values: list[float] = []
        self.neg_maxima: list[float] = []
        self.minima: list[float] = []

    def __len__(self) -> int:
        return len(self.times)

    def _wiped(self, i: int, x: float) -> bool:
        return x >= self.values[i] if i % 2 == 0 else x <= self.values[i]

    def push(self, t: int, x: float) -> None:
        """Add token t with drive x, wiping out the extrema it dominates."""
        while self.times and (
            self._wiped(len(self) - 1, x) or (len(self) >= 2 and self._wiped(len(self) - 2, x))
        ):
            i = len(self) - 1
            self.times.pop()
            self.values.pop()
            (self.neg_maxima if i % 2 == 0 else self.minima).pop()
        i = len(self)
        self.times.append(t)
        self.values.append(x)
        (self.neg_maxima.append(-x) if i % 2 == 0 else self.minima.append(x))

    def read(self, alpha: float, beta: float) -> tuple[int, int]:
        """``(state, anchor)`` of relay (α, β) now: state ±1, anchor the token index for +1 (else −1)."""
        k = bisect_right(self.neg_maxima, -alpha)  # maxima >= alpha are the first k maxima
        j = bisect_right(self.minima, beta)  # minima <= beta are the first j minima
        if k == 0:
            return -1, -1
        last_max, last_min = 2 * (k - 1), 2 * (j - 1) + 1
        if j > 0 and last_min > last_max:
            return -1, -1
        return 1, self.times[2 * j]


def relay_states_stack(
    u: Tensor, alpha: Tensor, beta: Tensor, *, real: Tensor | None = None, return_anchors: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Relay states (and anchors) read from the extremum stack after every token: the same contract and output as
    :func:`~hf_fundamentals.attention.preisach.relays.relay_states_parallel` (``[..., n, R]`` int8 ±1, anchors
    int64). A Python loop: for tests and small inputs."""
    check_relay_inputs(u, alpha, beta, real)
    n, r_count = u.shape[-1], alpha.shape[-1]
    lead = u.shape[:-1]
    uu = u.detach().double().reshape(-1, n).cpu().tolist()
    aa = alpha.detach().double().expand(*lead, r_count).reshape(-1, r_count).cpu().tolist()
    bb = beta.detach().double().expand(*lead, r_count).reshape(-1, r_count).cpu().tolist()
    rr = None if real is None else real.expand(u.shape).reshape(-1, n).cpu().tolist()
    states = torch.full((len(uu), n, r_count), -1, dtype=torch.int8)
    anchors = torch.full((len(uu), n, r_count), -1, dtype=torch.long)
    for row, drive in enumerate(uu):
        stack = ExtremumStack()
        a_row, b_row = aa[row], bb[row]
        s_row, anc_row = [-1] * r_count, [-1] * r_count
        for t, x in enumerate(drive):
            if rr is None or rr[row][t]:
                stack.push(t, x)
                read = [stack.read(a_row[m], b_row[m]) for m in range(r_count)]
                s_row = [sr for sr, _ in read]
                anc_row = [ar for _, ar in read]
            states[row, t] = torch.tensor(s_row, dtype=torch.int8)
            anchors[row, t] = torch.tensor(anc_row, dtype=torch.long)
    states = states.reshape(*lead, n, r_count).to(u.device)
    anchors = anchors.reshape(*lead, n, r_count).to(u.device)
    return (states, anchors) if return_anchors else states
