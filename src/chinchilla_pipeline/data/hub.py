"""Hugging Face Hub sources: local mirrors, commit pins, one-line failures, retried streams.

- Mirror: with ``CHINCHILLA_HUB_MIRROR=/dir`` set, the Hub id ``owner/name`` is read from
  ``/dir/owner/name`` through the same ``datasets.load_dataset_builder(path, name, revision=...)``
  call (a local directory ignores ``revision``). Tests build replicas of the real repositories there;
  an offline machine can hold real copies there (``huggingface-cli download --repo-type dataset``).
- Pin: ``resolve`` turns the config's ``revision`` into the 40-hex commit it names (``HfApi.dataset_info``),
  once per process; that commit, not a branch name, is what ``datasets`` reads, and the commit and the
  ``datasets`` version go into the prep fingerprint and the manifest (``pin``).
- Failures: ``hub_error`` turns what the Hub or ``datasets`` raised into one ``UserError`` line naming the
  config and what to do (script-only repository, gated 401/403, 404, 429, 5xx, no network).
- Retries: every Hub call of a run goes through one policy (``_Streak``): the commit lookup (``call``), the
  open of a source (``opening``) and the stream (``retrying``), which re-opens where it dropped and skips the
  items already delivered, so the retried stream is the unbroken one. Only transient failures (connection
  errors, timeouts, 5xx, 429; never offline) are tried again, after waits that double up to a cap, drawn with
  jitter, until a time budget runs out; then ``hub_error``'s line for the failure says what was tried. A call
  made while another is being retried (the open inside a re-open) shares its streak: one budget per outage.
  The re-opening itself (``reopening``) also serves local parquet sources, re-opened without their
  undecodable row groups (``records.skip_undecodable``).
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from ..errors import UserError
from ..schema import read_json
from .config import DatasetConfig, HubSource
from .layout import MANIFEST_NAME, SOURCE_NAME

MIRROR_ENV = "CHINCHILLA_HUB_MIRROR"
# The retry policy of every Hub call. Waits start at $CHINCHILLA_HUB_BACKOFF_S (1 s) and double up to 30 s:
# 1, 2, 4, 8, 16, then 30 s. A 429 waits 30x longer, up to 5 minutes (the Hub counts requests over 5-minute
# windows): 30, 60, 120, 240, then 300 s. Each wait is drawn from 0.5-1.5x that, so that ranks which failed
# together do not retry together. Failures in a row give up once $CHINCHILLA_HUB_RETRY_BUDGET_S (30 min) has
# passed since the first: ~65 tries of a dropped connection, ~10 of a 429.
BACKOFF_ENV, BUDGET_ENV = "CHINCHILLA_HUB_BACKOFF_S", "CHINCHILLA_HUB_RETRY_BUDGET_S"
DEFAULT_BACKOFF_S, BACKOFF_CAP_S, DEFAULT_BUDGET_S = 1.0, 30.0, 1800.0
RATE_LIMIT_FIRST_S, RATE_LIMIT_CAP_S = 30.0, 300.0  # the first scales with $CHINCHILLA_HUB_BACKOFF_S
JITTER = (0.5, 1.5)  # a wait's range, in multiples of its nominal length
COMMIT = re.compile(r"^[0-9a-f]{40}$")
T = TypeVar("T")
log = logging.getLogger(__name__)
_resolved: dict[tuple[str, str | None], "Resolved"] = {}
_jitter = random.SystemRandom()  # drawn from the OS: no seed shared by ranks, no draw from `random`'s stream
_active = threading.local()  # .streak: the streak a Hub call made now on this thread belongs to


@dataclass(frozen=True)
class Resolved:
    """What ``datasets`` reads (``path``, ``revision``) and what is recorded (``commit``)."""

    path: str  # Hub id, or the mirror directory
    revision: str | None  # passed to load_dataset_builder: the commit when known
    commit: str | None  # 40-hex commit, None when it could not be resolved (offline with a branch name)


def is_commit(revision: str | None) -> bool:
    return revision is not None and COMMIT.match(revision) is not None


def offline() -> bool:
    """``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` set to a true value."""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def mirror_dir(repo_id: str, config_path: str | Path | None = None) -> Path | None:
    """``$CHINCHILLA_HUB_MIRROR/owner/name`` when the variable is set (it must then hold the repository)."""
    root = os.environ.get(MIRROR_ENV)
    if not root:
        return None
    path = Path(root) / repo_id
    if not path.is_dir():
        raise UserError(
            f"{MIRROR_ENV}={root} has no directory {repo_id} (expected a copy of the Hub "
            "repository there, or unset the variable to read the Hub)",
            path=config_path,
            field="source.path",
        )
    return path


def resolve(src: HubSource, config_path: str | Path, name: str) -> Resolved:
    """The source's repository and commit; online, ``revision`` (default ``main``) becomes a commit."""
    key = (src.path, src.revision)
    if key in _resolved:
        return _resolved[key]
    if Path(src.path).is_dir():  # a local dataset directory named directly: nothing to resolve or pin
        _resolved[key] = Resolved(src.path, src.revision, None)
        return _resolved[key]
    mirror = mirror_dir(src.path, config_path)
    if mirror is not None:  # the mirror stands for the pinned commit
        res = Resolved(str(mirror), src.revision, src.revision if is_commit(src.revision) else None)
    elif offline():  # a 40-hex pin is still exact; a branch name cannot be resolved
        res = Resolved(src.path, src.revision, src.revision if is_commit(src.revision) else None)
    else:
        from huggingface_hub import HfApi

        try:
            sha = call(
                lambda: HfApi().dataset_info(src.path, revision=src.revision or "main").sha,
                name,
                config_path,
                "the commit lookup",
            )
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - classified into one line or re-raised
            raise hub_error(err, name, config_path) from None
        if not is_commit(src.revision):
            log.warning(
                '%s: %s revision %r is not a commit; reading commit %s (set "revision": "%s" in %s to pin it)',
                name,
                src.path,
                src.revision or "main",
                sha,
                sha,
                config_path,
            )
        res = Resolved(src.path, sha, sha)
    _resolved[key] = res
    return res


def pin(src: HubSource, config_path: str | Path, name: str) -> dict[str, str | None] | None:
    """What a prepared dataset records about its Hub source: repository, commit, ``datasets`` version
    (None for a local dataset directory)."""
    import datasets

    if Path(src.path).is_dir():
        return None
    res = resolve(src, config_path, name)
    return {
        "repo": src.path,
        "name": src.name,
        "split": src.split,
        "revision": src.revision,
        "commit": res.commit,
        "datasets_version": datasets.__version__,
    }


def check_resume(out: Path, source: dict, config_path: str | Path) -> None:
    """Refuse to continue or reuse ``out`` when it was prepared from another commit or ``datasets`` version."""
    saved = None
    for path in (out / SOURCE_NAME, out / MANIFEST_NAME):  # the pin of an unfinished run, or of a finished one
        if path.is_file():
            data = read_json(path)
            saved = data if path.name == SOURCE_NAME else data.get("source")
            break
    if not saved:
        return
    keys = ("commit", "datasets_version")
    if all(saved.get(k) == source.get(k) for k in keys):
        return
    raise UserError(
        f"{out} was prepared from {saved.get('repo')} at commit {saved.get('commit')} with datasets "
        f"{saved.get('datasets_version')}; this run would read commit {source.get('commit')} with datasets "
        f'{source.get("datasets_version")}, another stream: set "revision": "{saved.get("commit")}" '
        f"and install datasets=={saved.get('datasets_version')} to resume, or pass --overwrite to start "
        "again",
        path=config_path,
        field="source.revision",
    )


def save_source(out: Path, source: dict) -> None:
    """Record the pin before the first shard (atomically), so that a resume can be checked against it."""
    from ..atomic import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SOURCE_NAME, source)


def status_code(err: BaseException) -> int | None:
    """The HTTP status of a ``huggingface_hub``/``requests``/``httpx``/``aiohttp`` error, or of its cause."""
    for e in _chain(err):
        response = getattr(e, "response", None)
        code = getattr(response, "status_code", None) or getattr(e, "status", None) or getattr(e, "code", None)
        if isinstance(code, int) and 100 <= code < 600:
            return code
    return None


def _chain(err: BaseException) -> list[BaseException]:
    out = []
    while err is not None and len(out) < 8:
        out.append(err)
        err = err.__cause__ or err.__context__
    return out


def is_transient(err: BaseException) -> bool:
    """A dropped connection, a timeout, a 5xx or a 429: worth re-opening the stream."""
    code = status_code(err)
    if code is not None:
        return code >= 500 or code == 429
    names = {type(e).__name__ for e in _chain(err)}
    return any(isinstance(e, (ConnectionError, TimeoutError)) for e in _chain(err)) or bool(
        names
        & {
            "ConnectError",
            "ReadTimeout",
            "ConnectTimeout",
            "RemoteProtocolError",
            "ReadError",
            "ClientPayloadError",
            "ServerDisconnectedError",
            "ClientConnectionError",
            "ChunkedEncodingError",
            "IncompleteRead",
            "ProtocolError",
        }
    )


class HubError(UserError):
    """``hub_error``'s line for ``cause``, what the Hub or ``datasets`` raised: the retries look at it (a
    transient one is tried again); None once the retries gave up."""

    def __init__(self, message: str, cause: BaseException | None, *, path: str | Path, field: str):
        super().__init__(message, path=path, field=field)
        self.cause = cause


def hub_error(err: BaseException, name: str, config_path: str | Path, gave_up: str = "") -> UserError | BaseException:
    """One line naming the config and what to do (then ``gave_up``, what the retries tried); an error of no
    known kind is returned unchanged."""
    text = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
    names = {type(e).__name__ for e in _chain(err)}
    code = status_code(err)

    def line(what: str) -> UserError:
        message = f"{name}: {what} ({type(err).__name__}: {text}){gave_up}"
        return HubError(message, None if gave_up else err, path=config_path, field="source")

    if "Dataset scripts are no longer supported" in str(err) or "trust_remote_code" in str(err):
        return line(
            "the repository is a loading script, which datasets>=4 refuses: point the config at a "
            "parquet revision (refs/convert/parquet or a parquet pull request, by commit) with data_files"
        )
    if "GatedRepoError" in names or code in (401, 403):
        return line(
            f"gated or private repository (HTTP {code or 403}): accept its terms on its Hub page, then set "
            "HF_TOKEN (or `huggingface-cli login`); if it is neither, check source.path"
        )
    if "RevisionNotFoundError" in names:
        return line("revision not found in the repository: check source.revision (a 40-hex commit of that repo)")
    if {"RepositoryNotFoundError", "DatasetNotFoundError"} & names or code == 404:
        return line(
            "repository, config or file not found (404): check source.path, source.name, source.revision "
            "and source.data_files"
        )
    if code == 429:
        return line(
            "rate limited by the Hub (429): set HF_TOKEN (higher limits) and start fewer ranks at once, "
            "then rerun: the run resumes"
        )
    if code is not None and code >= 500:
        return line(f"Hub server error ({code}): retry later; the run resumes where it stopped")
    if offline() and (is_transient(err) or isinstance(err, FileNotFoundError) or "offline" in str(err).lower()):
        return line(
            "not in the local Hub cache, and HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set: download it where the Hub "
            "is reachable, or point CHINCHILLA_HUB_MIRROR at a copy"
        )
    if is_transient(err) or isinstance(err, OSError) and "offline" in str(err).lower():
        return line(
            "cannot reach the Hub: check the network, then rerun: the run resumes (HF_HUB_OFFLINE=1 and "
            "CHINCHILLA_HUB_MIRROR read local copies instead)"
        )
    if isinstance(err, (FileNotFoundError, ValueError)):
        return line("cannot open the source: check source.path, source.name, source.split and source.data_files")
    return err


def _env_number(name: str, default: float, kind: type) -> float:
    """``$name`` as ``kind`` (``default`` when unset); anything else is one ``UserError`` naming it."""
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        raise UserError(f"expected a number, got {value!r}", field=f"${name}") from None


def reopening(
    open_stream: Callable[[], Iterable[T]],
    recover: Callable[[Exception, int], None],
    *,
    first: Iterable[T] | None = None,
) -> Iterator[T]:
    """Items of ``first`` (default ``open_stream()``); when the stream fails, ``recover(err, delivered)``
    either raises (give up) or returns, and then the stream is re-opened with ``open_stream`` and the
    ``delivered`` items already given are skipped (the stream is deterministic: the re-opened one replays them).
    """
    delivered = 0
    stream = open_stream() if first is None else first
    while True:
        seen = 0
        try:
            for item in stream:
                if seen < delivered:  # already delivered before the failure: the stream replays it
                    seen += 1
                    continue
                seen += 1
                delivered += 1
                yield item
            return
        except Exception as err:  # noqa: BLE001 - recover decides: it raises what is not recoverable
            recover(err, delivered)
        stream = open_stream()


class _Streak:
    """Transient failures in a row of one Hub call or stream, and when the first came (monotonic s)."""

    def __init__(self, name: str, config_path: str | Path, what: str):
        self.name, self.config_path, self.what = name, config_path, what  # what: named when giving up
        self.backoff_s = _env_number(BACKOFF_ENV, DEFAULT_BACKOFF_S, float)
        self.budget_s = _env_number(BUDGET_ENV, DEFAULT_BUDGET_S, float)
        self.failures, self.since = 0, 0.0

    def wait(self, err: BaseException) -> None:
        """Sleep before the next try after the transient ``err``; once the budget is spent, its one line."""
        now = time.monotonic()
        if self.failures == 0:
            self.since = now
        self.failures += 1
        spent = now - self.since
        if spent >= self.budget_s:
            tried = f"{self.failures} failure{'s' if self.failures > 1 else ''} in {spent / 60:.1f} min"
            gave_up = f"; gave up on {self.what}: {tried} (${BUDGET_ENV}={self.budget_s:g} s)"
            raise hub_error(err, self.name, self.config_path, gave_up) from None
        limited = status_code(err) == 429
        first, cap = (
            (RATE_LIMIT_FIRST_S * self.backoff_s, RATE_LIMIT_CAP_S) if limited else (self.backoff_s, BACKOFF_CAP_S)
        )
        nominal = min(cap, first * 2.0 ** min(self.failures - 1, 30))
        wait = min(nominal * _jitter.uniform(*JITTER), self.budget_s - spent)  # the last try as the budget ends
        text = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}" if str(err) else type(err).__name__
        left = self.budget_s - spent
        log.warning(
            "%s: %s failed (%s); trying again in %.0f s (%.0f s of the budget left)",
            self.name,
            self.what,
            text,
            wait,
            left,
        )
        time.sleep(wait)


def _transient(err: BaseException) -> BaseException | None:
    """What failed, when ``err`` is worth another try: a transient failure, or ``hub_error``'s line for one;
    never offline (nothing would change), nor once retries gave up."""
    cause = err.cause if isinstance(err, HubError) else err
    if cause is None or isinstance(cause, UserError) or offline() or not is_transient(cause):
        return None
    return cause


def _attempts(fn: Callable[[], T], streak: _Streak) -> T:
    """``fn()``, tried again after each transient failure, within ``streak``, or within the streak of the
    call that this one runs inside (the open inside a re-open): one budget per outage."""
    outer = getattr(_active, "streak", None)
    _active.streak = streak = outer or streak
    try:
        while True:
            try:
                return fn()
            except Exception as err:  # noqa: BLE001 - only transient failures are tried again
                cause = _transient(err)
                if cause is None:
                    raise
                streak.wait(cause)
    finally:
        _active.streak = outer


def call(fn: Callable[[], T], name: str, config_path: str | Path, what: str) -> T:
    """``fn()``, Hub requests, retried through transient failures (waits, jitter and budget: ``_Streak``);
    past the budget a ``UserError``: ``hub_error``'s line for the last failure, naming ``what`` was tried."""
    return _attempts(fn, _Streak(name, config_path, what))


def opening(cfg: DatasetConfig, config_path: str | Path, open_source: Callable[[], T]) -> T:
    """``open_source()``; for a Hub source, retried as one Hub call (``call``)."""
    if not isinstance(cfg.source, HubSource):
        return open_source()
    return call(open_source, cfg.name, config_path, "opening the source")


def retrying(
    open_stream: Callable[[], Iterable[T]],
    name: str,
    config_path: str | Path,
    *,
    first: Iterable[T] | None = None,
) -> Iterator[T]:
    """Items of ``first`` (default ``open_stream()``); a transient failure, while reading or while re-opening,
    waits and re-opens the stream with ``open_stream``, skipping the items already delivered (``reopening``).

    Items delivered since the previous failure start a new streak. Past the budget a ``UserError``: what was
    committed before stays, and rerunning the command resumes.
    """
    streak = _Streak(name, config_path, "the stream")
    last = {"delivered": -1}  # at the previous failure

    def recover(err: Exception, delivered: int) -> None:
        cause = _transient(err)
        if cause is None:
            raise err
        if delivered != last["delivered"]:  # progress since the previous failure
            streak.failures, last["delivered"] = 0, delivered
        streak.what = f"the stream after {delivered:,} batches"
        streak.wait(cause)

    return reopening(lambda: _attempts(open_stream, streak), recover, first=first)
