"""``WeightedMultiDatasetSampler``: training sequences from several token streams by weight.

A source's train split is its shards concatenated into one token stream of N
tokens. Window i is tokens[i·T : i·T + T + 1] (T = context): T inputs and the
T next-token targets, so consecutive windows share one token and every token
is an input exactly once per epoch; a source holds (N - 1) // T windows.
"""

from __future__ import annotations

import copy
import zlib
from typing import Any, Sequence

import numpy as np

from ..data.shards import Shard
from .mixture import Mixture

Pick = tuple[int, int]  # (source index, first token of its window in the source's stream)


class TokenStream:
    """The shards of one split read as a single token array (memory-mapped, zero-copy)."""

    def __init__(self, shards: Sequence[Shard]):
        self.shards = [s for s in shards if s.num_tokens]
        self.starts = np.cumsum([0] + [s.num_tokens for s in self.shards])  # shard i = [starts[i], starts[i+1])
        self.num_tokens = int(self.starts[-1])

    def read(self, start: int, length: int) -> np.ndarray:
        """``length`` tokens from global offset ``start`` (may span shards), as int64."""
        i = int(np.searchsorted(self.starts, start, side="right")) - 1
        local = start - int(self.starts[i])
        shard = self.shards[i].tokens
        if local + length <= shard.size:
            return shard[local : local + length].astype(np.int64)
        parts, need = [], length
        while need:
            chunk = self.shards[i].tokens[local : local + need]
            parts.append(chunk)
            need -= chunk.size
            i, local = i + 1, 0
        return np.concatenate(parts).astype(np.int64)


class WeightedMultiDatasetSampler:
    """The global stream of training sequences of a whole run, blended from its sources by a ``Mixture``.

    - **Weights mean tokens**, not documents: every sequence has the same
      length, so a weight of 2/3 gives 2/3 of the sequences and tokens.
    - **Exact proportions**: ``target_s(p)`` is source s's weight summed over
      the sequences since the last restart (train/mixture.py: a hard phase
      boundary restarts it; a ramp does not). With two sources at fixed
      weights sequence p goes to the source with the largest deficit
      ``target_s(p) - drawn_s`` (Megatron's greedy blending; ties to the first
      source of the mixture's order there), exact since the two deficits sum
      to 0. With more sources, or moving weights, greedy overshoots (by 3% of
      a sequence at 5 fixed weights, 6% in a ramp, measured): there sequence p
      goes, among the sources whose deficit is at least d = 1 / (2n - 2), to
      the one whose target will first pass ``drawn_s + 1 - d`` (Tijdeman
      1980, "The chairman assignment problem": deviation <= 1 - d for any
      weights). Either way every prefix of the stream stays within one
      sequence of each source's target.
    - **Order within a source**: a permutation of its windows seeded by
      (seed, crc32(source name), epoch). No window repeats inside an epoch; a
      source that runs out starts epoch e + 1 with a different permutation,
      recorded in ``epoch_events``. A source shared by two phases keeps going
      where it stopped.
    - **State**: ``position`` (sequences drawn in the run), ``drawn`` (per
      source since the last restart) and ``used`` (per source in the run): a
      few integers, the whole data position (``state_dict``). Restoring them
      gives exactly the sequences an unbroken run gives next.
    - **DDP**: ``take(n, rank, world)`` advances the global stream by ``n``
      sequences for every rank alike and returns rank ``rank``'s contiguous
      slice of them; the stream does not depend on ``world``.
    - **Two halves**: ``take`` advances the state and names the windows
      (integers, microseconds); ``read`` copies them from the shards (the slow
      half when pages are not cached), so train/prefetch.py can read step k + 1
      in a background thread (``peek``) while step k computes.
    """

    def __init__(
        self,
        names: Sequence[str],
        streams: Sequence[TokenStream],
        weights: Sequence[float] | Mixture,
        *,
        context: int,
        seed: int,
    ):
        mixture = weights if isinstance(weights, Mixture) else Mixture.fixed(names, weights)
        if len(names) != len(streams) or list(names) != mixture.names:
            raise ValueError("names, streams and the mixture's sources must match")
        self.names = list(names)
        self.streams = list(streams)
        self.mixture = mixture
        self.context = context
        self.seed = seed
        self.num_windows = [(s.num_tokens - 1) // context for s in streams]
        for name, n in zip(self.names, self.num_windows):
            if n < 1:
                raise ValueError(f"source '{name}' has fewer than context + 1 = {context + 1} train tokens")
        self.position = 0
        self.drawn = [0] * len(names)
        self.used = [0] * len(names)
        self.epoch_events: list[dict[str, Any]] = []
        self._perms: dict[int, tuple[int, np.ndarray]] = {}  # source -> (epoch, permutation)
        self._delta = 1 / (2 * len(names) - 2) if len(names) > 1 else 1.0
        self._deadlines: dict[int, tuple[tuple[int, int], float]] = {}  # source -> ((stretch, drawn), sequence)

    # --- blending -------------------------------------------------------------
    def _next_source(self) -> int:
        if self.position and self.mixture.restarts_at(self.position):
            self.drawn = [0] * len(self.names)
        targets, order = self.mixture.targets(self.position)
        stretch, scheduled = self.mixture.stretch_at(self.position)
        best, best_key = order[0], (float("inf"), float("inf"))
        for s in order:
            deficit = targets[s] - self.drawn[s]
            if not scheduled:
                key = (-deficit, 0.0)
            elif deficit >= self._delta:  # the earliest deadline; among never-due ones, the largest deficit
                key = (self._deadline(s, stretch), -deficit)
            else:
                continue
            if key < best_key:
                best, best_key = s, key
        return best

    def _deadline(self, s: int, stretch: int) -> float:
        """The first sequence (>= now) once drawn which source ``s`` would lag its target by more than
        1 - d; a function of (stretch, drawn_s) alone, so it is cached and the same after a resume."""
        key = (stretch, self.drawn[s])
        cached = self._deadlines.get(s)
        if cached is None or cached[0] != key:
            q = self.mixture.crossing(s, self.drawn[s] + 1 - self._delta, self.position)
            self._deadlines[s] = cached = (key, float(q))
        return max(cached[1], float(self.position))

    def _window(self, s: int, used: int) -> int:
        """Window index of the ``used``-th draw ever made from source ``s``."""
        epoch, k = divmod(used, self.num_windows[s])
        cached = self._perms.get(s)
        if cached is None or cached[0] != epoch:
            key = zlib.crc32(self.names[s].encode("utf-8"))
            rng = np.random.default_rng([self.seed, key, epoch])
            self._perms[s] = cached = (epoch, rng.permutation(self.num_windows[s]))
        return int(cached[1][k])

    def _advance(self) -> tuple[int, int]:
        """Take the next sequence of the global stream: (source, draw count before it)."""
        s = self._next_source()
        used = self.used[s]
        if used and used % self.num_windows[s] == 0:
            self.epoch_events.append(
                {"source": self.names[s], "epoch": used // self.num_windows[s], "position": self.position}
            )
        self.drawn[s] += 1
        self.used[s] += 1
        self.position += 1
        return s, used

    def next_sources(self, n: int) -> list[int]:
        """Advance by ``n`` sequences without reading tokens; their sources (for tests and planning)."""
        return [self._advance()[0] for _ in range(n)]

    def take(self, n: int, rank: int = 0, world: int = 1) -> list[Pick]:
        """Advance by ``n`` sequences; rank ``rank``'s slice of them as picks for ``read`` (n/world of them)."""
        assert n % world == 0, "sequences per step must divide among ranks"
        per_rank = n // world
        drawn = [self._advance() for _ in range(n)][rank * per_rank : (rank + 1) * per_rank]
        return [(s, self._window(s, used) * self.context) for s, used in drawn]

    def peek(self, n: int, rank: int = 0, world: int = 1) -> list[Pick]:
        """The picks ``take(n, rank, world)`` returns next, leaving this sampler's state and events as they are
        (on a copy: a new epoch's permutation is drawn here and again by ``take``, ~0.2 s per million windows
        on the 2-core VM, once per epoch)."""
        ahead = copy.copy(self)
        ahead.drawn, ahead.used, ahead.epoch_events = list(self.drawn), list(self.used), []
        ahead._perms, ahead._deadlines = dict(self._perms), dict(self._deadlines)
        return ahead.take(n, rank, world)

    def read(self, picks: Sequence[Pick]) -> tuple[np.ndarray, np.ndarray]:
        """The picks' windows as (tokens (len(picks), T+1) int64, sources). Reads the read-only memory maps
        and changes nothing: safe in another thread while this one takes the next picks."""
        out = np.empty((len(picks), self.context + 1), dtype=np.int64)
        for row, (s, start) in enumerate(picks):
            out[row] = self.streams[s].read(start, self.context + 1)
        return out, np.array([s for s, _ in picks], dtype=np.int64)

    def next_step(self, n: int, rank: int = 0, world: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Advance by ``n`` sequences; rank ``rank``'s slice as (tokens (n/world, T+1) int64, sources)."""
        return self.read(self.take(n, rank, world))

    # --- state ----------------------------------------------------------------
    def consumed(self) -> dict[str, int]:
        """Sequences taken from each source so far."""
        return dict(zip(self.names, self.used))

    def state_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "drawn": list(self.drawn),
            "used": list(self.used),
            "names": list(self.names),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert state["names"] == self.names, "sampler state belongs to another set of sources"
        self.position = int(state["position"])
        self.drawn = [int(x) for x in state["drawn"]]
        self.used = [int(x) for x in state["used"]]
        self._perms.clear()
        self._deadlines.clear()
