"""Retries that hold: faults injected at each Hub call of a run (the commit lookup, the first open, a re-open,
the stream), waited out on hub.py's own clock (no real sleep), the output byte-identical to an unbroken run's."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from chinchilla_pipeline.cli import main
from chinchilla_pipeline.data import hub
from chinchilla_pipeline.errors import UserError
from hub_replicas import build_mirror
from test_hub import forums_config, prepare, snapshot

pytestmark = pytest.mark.usefixtures("short_parquet_shutdown")  # conftest: tiny files, no 5 s wait per stream
SHA = "f" * 40  # the commit the fake Hub resolves every revision to
OUT = "phase_b_forums_500m"  # the dataset directory forums_config's runs write


class Clock:
    """hub.py's ``time``: a ``sleep`` only moves this clock (seconds), and is recorded in ``waits``."""

    def __init__(self):
        self.now, self.waits = 0.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def too_many_requests() -> Exception:
    """What huggingface_hub raises for HTTP 429."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    request = httpx2.Request("GET", "https://huggingface.co/api/datasets/x")
    return HfHubHTTPError("429 Too Many Requests", response=httpx2.Response(429, request=request))


class Network:
    """The Hub the run sees: each call at a place ("resolve", "open", "read": one batch of the stream) asks
    ``check``. ``plan[(place, n)]``: the outages the n-th call at ``place`` starts, (place, seconds) each;
    a place fails from then until ``seconds`` have passed on the clock (0: that call alone)."""

    def __init__(self, clock: Clock, plan: dict, error=lambda: ConnectionError("injected: connection reset")):
        self.clock, self.plan, self.error = clock, plan, error
        self.calls, self.failures, self.until = Counter(), Counter(), {}

    def check(self, place: str) -> None:
        self.calls[place] += 1
        for where, seconds in self.plan.get((place, self.calls[place]), []):
            self.until[where] = self.clock.now + seconds
        if self.clock.now <= self.until.get(place, -1.0):
            self.failures[place] += 1
            raise self.error()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    return build_mirror(tmp_path_factory.mktemp("hub"))


@pytest.fixture
def online(mirror, tokenizer_dir, monkeypatch):
    """A run as online: ``HfApi.dataset_info`` answers ``SHA``, ``datasets`` opens the Hub ids on the mirror;
    each of the three goes through ``net.check`` first. Returns a function installing a ``Network``."""
    import datasets
    from huggingface_hub import HfApi

    monkeypatch.delenv(hub.MIRROR_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    clock, state = Clock(), {"net": None}
    monkeypatch.setattr(hub, "time", clock)

    def check(place):
        if state["net"] is not None:
            state["net"].check(place)

    def dataset_info(self, repo_id, revision=None, **kwargs):
        check("resolve")
        return SimpleNamespace(sha=SHA)

    def on_mirror(real):  # load_dataset, or load_dataset_builder: a Hub id read from its replica
        def load(path, *args, **kwargs):
            if not (mirror / path).is_dir():
                return real(path, *args, **kwargs)  # a local builder (json, parquet, ...)
            check("open")
            return real(str(mirror / path), *args, **kwargs)

        return load

    def reading(real):
        def iter_batches(self, *args, **kwargs):
            for table in real(self, *args, **kwargs):
                check("read")
                yield table

        return iter_batches

    monkeypatch.setattr(HfApi, "dataset_info", dataset_info)
    for name in ("load_dataset", "load_dataset_builder"):
        monkeypatch.setattr(datasets, name, on_mirror(getattr(datasets, name)))
    monkeypatch.setattr(datasets.IterableDataset, "iter", reading(datasets.IterableDataset.iter))

    def install(plan: dict, **kwargs) -> Network:
        monkeypatch.setattr(hub, "_resolved", {})  # a fresh process: the commit is looked up again
        state["net"] = Network(clock, plan, **kwargs)
        return state["net"]

    install.clock = clock
    return install


def run(cfg: Path, tokenizer_dir, out: Path, *extra: str) -> int:
    return prepare(cfg, tokenizer_dir, out, *extra)


MINUTES_5 = 300.0
OUTAGES = {  # where a 5-minute outage starts: the places it takes down
    "resolve": {("resolve", 1): [("resolve", MINUTES_5)]},
    "open": {("open", 1): [("open", MINUTES_5)]},
    "reopen": {("read", 5): [("read", 0), ("open", MINUTES_5)]},  # one drop, then the re-opens fail
    "stream": {("read", 5): [("read", MINUTES_5), ("open", MINUTES_5)]},  # everything down mid-stream
}


@pytest.mark.parametrize("where", OUTAGES)
def test_five_minute_outage_is_waited_out_and_output_is_identical(online, tmp_path, tokenizer_dir, where):
    cfg = forums_config(tmp_path)
    online({})
    assert run(cfg, tokenizer_dir, tmp_path / "clean") == 0
    net = online(OUTAGES[where])
    start = online.clock.now
    assert run(cfg, tokenizer_dir, tmp_path / "faulty") == 0
    assert net.failures[where if where in ("resolve", "open") else "read"] >= 1  # where it started
    assert sum(net.failures.values()) > 2  # it survived more than one try
    assert online.clock.now - start >= MINUTES_5  # the run waited the outage out, on hub.py's clock
    assert snapshot(tmp_path / "faulty" / OUT) == snapshot(tmp_path / "clean" / OUT)


def test_four_ranks_starting_into_429s_all_finish_and_merge_identical(online, tmp_path, tokenizer_dir):
    """4 ranks started together: their commit lookups and first opens get 429 for 10 minutes; each waits
    (jittered: the ranks' waits differ) and the merged dataset is the unbroken ranks' merge, byte for byte."""
    cfg = forums_config(tmp_path)
    storm = {("resolve", 1): [("resolve", 600.0)], ("open", 1): [("open", 600.0)]}
    first_waits = []
    for out, plan in (("clean", {}), ("faulty", storm)):
        for rank in range(4):
            waited = len(online.clock.waits)
            net = online(plan, error=too_many_requests)
            assert run(cfg, tokenizer_dir, tmp_path / out, "--rank", str(rank), "--world_size", "4") == 0
            if plan:
                assert net.failures["resolve"] > 2 and net.failures["open"] > 1, net.failures
                first_waits.append(online.clock.waits[waited])
        argv = ["merge", "--config_path", str(cfg), "--world_size", "4", "--out_dir", str(tmp_path / out)]
        assert main(argv) == 0
    assert all(15 <= w <= 45 for w in first_waits)  # a 429's first wait: 30 s x 0.5-1.5
    assert len(set(first_waits)) == 4  # jitter: ranks that failed together do not retry together
    assert snapshot(tmp_path / "faulty" / OUT) == snapshot(tmp_path / "clean" / OUT)


def test_outage_past_the_budget_gives_up_in_one_line_and_rerun_resumes(
    online, tmp_path, tokenizer_dir, monkeypatch, capsys
):
    """A 2-hour outage mid-stream: the stream and its re-opens share one 30-minute budget, then one line,
    exit 2; the shards written stay, and once the network is back, the rerun ends identical."""
    cfg = forums_config(tmp_path)
    online({})
    assert run(cfg, tokenizer_dir, tmp_path / "clean") == 0
    online({("read", 5): [("read", 7200.0), ("open", 7200.0)]})
    waited = len(online.clock.waits)
    capsys.readouterr()
    assert run(cfg, tokenizer_dir, tmp_path / "broken") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Hub: check the network, then rerun: the run resumes" in err[0], err
    assert "gave up on the stream after 4 batches" in err[0] and f"${hub.BUDGET_ENV}=1800 s" in err[0], err
    assert sum(online.clock.waits[waited:]) == pytest.approx(hub.DEFAULT_BUDGET_S)  # one budget, not one per call
    assert (tmp_path / "broken" / OUT / ".progress.json").is_file()
    online.clock.now += 7200.0  # the network is back
    assert run(cfg, tokenizer_dir, tmp_path / "broken") == 0
    assert snapshot(tmp_path / "broken" / OUT) == snapshot(tmp_path / "clean" / OUT)


class RateLimited(Exception):
    status = 429  # as aiohttp's ClientResponseError carries it (hub.status_code)


def test_waits_double_to_their_cap_until_the_budget_then_one_line(monkeypatch):
    """The nominal waits (jitter pinned at 1): a dropped connection 1, 2, 4, 8, 16, then 30 s; a 429 30 s up to
    5 minutes (the Hub counts requests over 5-minute windows); the last one ends as the 30-minute budget does."""
    clock = Clock()
    monkeypatch.setattr(hub, "time", clock)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub._jitter, "uniform", lambda lo, hi: 1.0)

    def failing(error):
        def stream():
            yield 1
            raise error

        return stream

    with pytest.raises(UserError, match=r"rate limited by the Hub \(429\): set HF_TOKEN .*start fewer ranks"):
        list(hub.retrying(failing(RateLimited("429 Too Many Requests")), "forums", "forums.json"))
    assert clock.waits == [30, 60, 120, 240, 300, 300, 300, 300, 150]
    clock.waits.clear()
    with pytest.raises(UserError, match="cannot reach the Hub") as info:
        list(hub.retrying(failing(ConnectionError("reset by peer")), "forums", "forums.json"))
    assert "HF_TOKEN" not in str(
        info.value
    ) and "gave up on the stream after 1 batches: 65 failures in 30.0 min" in str(info.value)
    assert clock.waits == [1, 2, 4, 8, 16] + [30] * 58 + [29]


def test_jitter_spreads_waits_and_leaves_random_alone(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(hub, "time", clock)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    state = random.getstate()
    left = iter(range(7))

    def lookup():  # 6 times 429, then the answer
        if next(left) < 6:
            raise RateLimited("429")
        return "sha"

    assert hub.call(lookup, "forums", "forums.json", "the commit lookup") == "sha"
    nominal = [min(300.0, 30.0 * 2**i) for i in range(len(clock.waits))]
    assert len(clock.waits) == 6 and all(0.5 * n <= w <= 1.5 * n for w, n in zip(clock.waits, nominal))
    assert random.getstate() == state  # the jitter draws from the OS, not from the stream's seeds


def test_progress_resets_the_streak_and_other_errors_are_not_retried(monkeypatch):
    """A stream that delivers between failures never runs out of budget; a 404, or anything offline, is not retried."""
    clock = Clock()
    monkeypatch.setattr(hub, "time", clock)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv(hub.BUDGET_ENV, "10")
    opens = iter(range(1, 100))

    def stream():  # the n-th open delivers one more item than the one before, then drops
        n = next(opens)
        yield from range(n)
        if n < 50:
            raise ConnectionError("reset by peer")

    assert list(hub.retrying(stream, "forums", "forums.json")) == list(range(50))
    assert len(clock.waits) == 49 and sum(clock.waits) > 10 and max(clock.waits) <= 1.5  # always a first wait

    class NotFound(Exception):
        status = 404

    def missing():
        raise NotFound("404")

    with pytest.raises(NotFound):
        hub.call(missing, "forums", "forums.json", "the commit lookup")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConnectionError):
        hub.call(lambda: stream().throw(ConnectionError("offline")), "forums", "forums.json", "opening the source")
    assert len(clock.waits) == 49


def test_sources_opened_first_wait_out_an_outage(online, tmp_path):
    """``open_sources`` (commands reading several sources open each first) retries its opens too."""
    from chinchilla_pipeline.data import sources
    from chinchilla_pipeline.data.config import DatasetConfig
    from chinchilla_pipeline.schema import load_config

    path = forums_config(tmp_path)
    net = online({("resolve", 1): [("resolve", MINUTES_5)], ("open", 1): [("open", MINUTES_5)]})
    sources.open_sources([(load_config(DatasetConfig, path), path)])
    assert net.failures["resolve"] > 1 and net.failures["open"] > 1
