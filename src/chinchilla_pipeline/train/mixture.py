"""The target mixture of a run: every source's weight at every sequence of the global stream.

The stream is one sequence after another over the whole run, all phases. Phase i covers sequences
[first step x S, end step x S) (S = sequences per step, ``Schedule.phase_steps``); inside it each source
has its phase weight (normalised in the phase, 0 for the sources of other phases).

A phase with ``blend_in`` starts with a ramp: over a window of L sequences centred on its first one, the
weights move linearly from the previous phase's to its own (sequence j of the window has
t = (j + 0.5) / L of the new weights). The window is symmetric, so each source gets the tokens the hard
switch gives it (to rounding): the new phase lends L/4 sequences' worth of its mix to the old one's last
L/2 sequences and borrows as much back.

``WeightedMultiDatasetSampler`` keeps each source's draws within one sequence of its *cumulative target*,
the weights summed from the last restart. A hard boundary (a phase without ``blend_in``, and the run's
start) restarts the count, as a new phase did before blends existed: a curriculum without blends draws
the same sequences bitwise. A blended boundary does not restart: the ramp and the phases on both sides
of it are one exact stretch. In a stretch with a ramp, or with more than two sources, the sampler
needs ``crossing`` (when a source's target will pass a level) to stay exact.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Protocol, Sequence


class PhaseLike(Protocol):
    """What the mixture reads of a phase (``train.config.PhaseConfig``)."""

    name: str
    sources: Sequence[Any]  # each with .name and .weight
    blend_in: int | str | None


@dataclass(frozen=True)
class Piece:
    """Sequences [start, end) of the global stream (``end`` None: open-ended) at constant or ramped weights."""

    start: int
    end: int | None
    first: tuple[float, ...]  # each source's weight at the first sequence's ramp position (sum 1)
    last: tuple[float, ...]  # at the end; equal to ``first`` for a constant piece
    order: tuple[int, ...]  # a tie in deficits goes to the earliest source of this order
    restart: bool  # the exactness count restarts at ``start`` (a hard phase boundary, or the run's start)

    def summed(self, m: int) -> list[float]:
        """Each source's weight summed over the piece's first ``m`` sequences."""
        return [self.summed_one(i, m) for i in range(len(self.first))]

    def summed_one(self, i: int, m: int) -> float:
        a, b = self.first[i], self.last[i]
        if self.first == self.last:
            return m * a
        # sum over j < m of a + (b - a)(j + 0.5)/span = m a + (b - a) m^2 / (2 span)
        return m * a + (b - a) * (m * m) / (2 * (self.end - self.start))

    def weights_at(self, p: int) -> list[float]:
        """The weights of sequence ``p`` (inside the piece)."""
        if self.first == self.last:
            return list(self.first)
        t = (p - self.start + 0.5) / (self.end - self.start)
        return [(1 - t) * a + t * b for a, b in zip(self.first, self.last)]


class Mixture:
    """Pieces covering the stream from sequence 0, in order; the sampler asks it for targets."""

    def __init__(self, names: Sequence[str], pieces: Sequence[Piece]):
        if not pieces or pieces[0].start != 0 or not pieces[0].restart:
            raise ValueError("a mixture starts at sequence 0 with a restart")
        self.names = list(names)
        self.pieces = list(pieces)
        self.starts = [p.start for p in pieces]
        # each piece's targets at its start, counted from the last restart
        self.base: list[list[float]] = []
        self.stretch: list[int] = []  # the piece that opens each piece's stretch (its last restart)
        for k, piece in enumerate(self.pieces):
            if piece.restart:
                self.base.append([0.0] * len(names))
                self.stretch.append(k)
            else:
                prev = self.pieces[k - 1]
                self.base.append([b + s for b, s in zip(self.base[k - 1], prev.summed(piece.start - prev.start))])
                self.stretch.append(self.stretch[k - 1])
        # stretches where the largest deficit is not exact: a ramp, or more than two sources
        hard = {self.stretch[k] for k, p in enumerate(self.pieces) if p.first != p.last}
        for k, p in enumerate(self.pieces):
            if sum(w > 0 for w in p.first) > 2:
                hard.add(self.stretch[k])
        self.scheduled = [self.stretch[k] in hard for k in range(len(self.pieces))]

    @classmethod
    def fixed(cls, names: Sequence[str], weights: Sequence[float]) -> "Mixture":
        total = float(sum(weights))
        w = tuple(float(x) / total for x in weights)
        return cls(names, [Piece(0, None, w, w, tuple(range(len(names))), True)])

    def piece_at(self, p: int) -> Piece:
        return self.pieces[bisect.bisect_right(self.starts, p) - 1]

    def restarts_at(self, p: int) -> bool:
        """Whether sequence ``p`` opens a stretch whose count starts from zero."""
        k = bisect.bisect_right(self.starts, p) - 1
        return self.starts[k] == p and self.pieces[k].restart

    def targets(self, p: int) -> tuple[list[float], tuple[int, ...]]:
        """Each source's cumulative target once sequence ``p`` is drawn (from the last restart), and the
        tie order there."""
        k = bisect.bisect_right(self.starts, p) - 1
        piece = self.pieces[k]
        return [b + s for b, s in zip(self.base[k], piece.summed(p - piece.start + 1))], piece.order

    def weights_at(self, p: int) -> list[float]:
        return self.piece_at(p).weights_at(p)

    def stretch_at(self, p: int) -> tuple[int, bool]:
        """(index of the piece that opens sequence ``p``'s stretch, whether the sampler schedules it by
        deadlines: a ramp or more than two sources)."""
        k = bisect.bisect_right(self.starts, p) - 1
        return self.stretch[k], self.scheduled[k]

    def crossing(self, i: int, level: float, p: int) -> float:
        """The first sequence q >= ``p`` once drawn which source ``i``'s target exceeds ``level``, counted
        in ``p``'s stretch; past the stretch's end its last weights are taken to go on (the deadlines of
        Tijdeman's rule need an unbounded future). Targets never decrease, so each piece is a search;
        ``inf`` when the target stops growing below ``level``."""
        k = bisect.bisect_right(self.starts, p) - 1
        while True:
            piece, base = self.pieces[k], self.base[k][i]
            lo = max(p - piece.start, 0) + 1  # sequences of the piece drawn by then
            if piece.end is None or k + 1 == len(self.pieces) or self.pieces[k + 1].restart:
                break
            hi = piece.end - piece.start
            if base + piece.summed_one(i, hi) > level:
                while lo < hi:  # the least m in [lo, hi] with target > level
                    mid = (lo + hi) // 2
                    lo, hi = (lo, mid) if base + piece.summed_one(i, mid) > level else (mid + 1, hi)
                return piece.start + lo - 1
            k += 1
        # the stretch's last piece, then its final weight w for ever past its end (if it has one)
        span, w = (None if piece.end is None else piece.end - piece.start), piece.last[i]

        def target(m: int) -> float:
            if span is None or m <= span:
                return base + piece.summed_one(i, m)
            return base + piece.summed_one(i, span) + (m - span) * w

        if target(lo) <= level and span is not None and target(span) > level:
            hi = span
            while lo < hi:  # the least m in [lo, hi] with target > level
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if target(mid) > level else (mid + 1, hi)
        elif target(lo) <= level:
            if w <= 0:
                return float("inf")
            top = (span or 0, target(span) if span is not None else base)
            lo = max(lo, top[0] + int((level - top[1]) / w))  # the closed form, then up by rounding
            while target(lo) <= level:
                lo += 1
        return piece.start + lo - 1


def blend_sequences(blend_in: int | str, target_tokens: int, context: int) -> int:
    """A ``blend_in`` (tokens, or "x%" of the run's tokens) as an even number of sequences."""
    tokens = float(blend_in[:-1]) / 100 * target_tokens if isinstance(blend_in, str) else blend_in
    return 2 * round(tokens / (2 * context))


def run_mixture(
    phases: Sequence[PhaseLike],
    phase_steps: Sequence[tuple[int, int]],
    sequences_per_step: int,
    target_tokens: int,
    context: int,
) -> Mixture:
    """The mixture a curriculum's phases and a plan's phase steps define; ``ValueError`` for a ramp that
    does not fit (half of it must lie inside each neighbouring phase, beside that phase's other ramp)."""
    names: list[str] = []
    for phase in phases:
        names += [s.name for s in phase.sources if s.name not in names]
    weights, orders = [], []
    for phase in phases:
        total = float(sum(s.weight for s in phase.sources))
        w = dict.fromkeys(names, 0.0) | {s.name: float(s.weight) / total for s in phase.sources}
        weights.append(tuple(w[n] for n in names))
        own = [names.index(s.name) for s in phase.sources]
        orders.append(tuple(own + [k for k in range(len(names)) if k not in own]))
    spans = [(a * sequences_per_step, b * sequences_per_step) for a, b in phase_steps]
    halves = [0] * (len(phases) + 1)  # half window at the start of phase i (0: hard)
    for i, phase in enumerate(phases):
        if phase.blend_in is not None:
            if i == 0:
                raise ValueError(f"phase '{phase.name}' is the first: it has no phase to blend in from")
            halves[i] = blend_sequences(phase.blend_in, target_tokens, context) // 2
            if halves[i] == 0:
                raise ValueError(f"phase '{phase.name}': blend_in {phase.blend_in!r} is under two sequences")
    for i, phase in enumerate(phases):
        length = spans[i][1] - spans[i][0]
        if halves[i] + halves[i + 1] > length:
            raise ValueError(
                f"phase '{phase.name}' has {length:,} sequences, fewer than the half ramps that overlap it "
                f"({halves[i]:,} + {halves[i + 1]:,}): shorten blend_in"
            )
    hard = {spans[i][0] for i in range(len(phases)) if not halves[i]}  # where the count restarts
    pieces: list[Piece] = []
    for i in range(len(phases)):
        start, end = spans[i]
        if halves[i]:
            ramp = (start - halves[i], start + halves[i])
            pieces.append(Piece(*ramp, weights[i - 1], weights[i], orders[i], ramp[0] in hard))
        body_start = start + halves[i]
        body_end = end - halves[i + 1] if i + 1 < len(phases) else None
        if body_end is None or body_end > body_start:
            pieces.append(Piece(body_start, body_end, weights[i], weights[i], orders[i], body_start in hard))
    return Mixture(names, pieces)
