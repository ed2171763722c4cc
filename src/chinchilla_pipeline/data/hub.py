"""Hugging Face Hub sources: local mirrors, commit pins, one-line failures, retried streams.

- Mirror: with ``CHINCHILLA_HUB_MIRROR=/dir`` set, the Hub id ``owner/name`` is read from
  ``/dir/owner/name`` through the same ``datasets.load_dataset(path, name, split=..., revision=...)``
  call (a local directory ignores ``revision``). Tests build replicas of the real repositories there;
  an offline machine can hold real copies there (``huggingface-cli download --repo-type dataset``).
- Pin: ``resolve`` turns the config's ``revision`` into the 40-hex commit it names (``HfApi.dataset_info``),
  once per process; that commit, not a branch name, is what ``load_dataset`` reads, and the commit and the
  ``datasets`` version go into the prep fingerprint and the manifest (``pin``).
- Failures: ``hub_error`` turns what the Hub or ``datasets`` raised into one ``UserError`` line naming the
  config and what to do (script-only repository, gated 401/403, 404, 429, 5xx, no network).
- Retries: ``retrying`` re-opens a stream that dropped (connection errors, 5xx, 429) with bounded exponential
  backoff and skips the items already delivered, so the retried stream is the unbroken one. The re-opening
  itself (``reopening``) also serves local parquet sources, re-opened without their undecodable row groups
  (``records.skip_undecodable``).
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from ..errors import UserError
from ..schema import read_json
from .config import HubSource

MIRROR_ENV = "CHINCHILLA_HUB_MIRROR"
# Retries of a dropped stream, and the first wait (doubling, capped at BACKOFF_CAP_S): 1+2+4+8+16+30 s ~ 1 min.
RETRIES_ENV, BACKOFF_ENV = "CHINCHILLA_HUB_RETRIES", "CHINCHILLA_HUB_BACKOFF_S"
DEFAULT_RETRIES, DEFAULT_BACKOFF_S, BACKOFF_CAP_S = 6, 1.0, 30.0
# HTTP 429: the Hub counts requests over 5-minute windows, so waits start at 30 s and reach 5 minutes:
# 30+60+120+240+300+300 s ~ 17 min before giving up (the first wait scales with $CHINCHILLA_HUB_BACKOFF_S).
RATE_LIMIT_FIRST_S, RATE_LIMIT_CAP_S = 30.0, 300.0
COMMIT = re.compile(r"^[0-9a-f]{40}$")
T = TypeVar("T")
log = logging.getLogger(__name__)
_resolved: dict[tuple[str, str | None], "Resolved"] = {}


@dataclass(frozen=True)
class Resolved:
    """What ``load_dataset`` reads (``path``, ``revision``) and what is recorded (``commit``)."""

    path: str  # Hub id, or the mirror directory
    revision: str | None  # passed to load_dataset: the commit when known
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
            sha = HfApi().dataset_info(src.path, revision=src.revision or "main").sha
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


SOURCE_NAME = ".source.json"  # in a dataset directory: the pin the (possibly unfinished) run reads


def check_resume(out: Path, source: dict, config_path: str | Path) -> None:
    """Refuse to continue or reuse ``out`` when it was prepared from another commit or ``datasets`` version."""
    saved = None
    for path in (out / SOURCE_NAME, out / "manifest.json"):
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


def hub_error(err: BaseException, name: str, config_path: str | Path) -> UserError | BaseException:
    """One line naming the config and what to do; an error of no known kind is returned unchanged."""
    text = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
    names = {type(e).__name__ for e in _chain(err)}
    code = status_code(err)

    def line(what: str) -> UserError:
        return UserError(f"{name}: {what} ({type(err).__name__}: {text})", path=config_path, field="source")

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
            "cannot reach the Hub: check the network (HF_HUB_OFFLINE=1 and CHINCHILLA_HUB_MIRROR read "
            "local copies instead)"
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


def retrying(
    open_stream: Callable[[], Iterable[T]],
    name: str,
    config_path: str | Path,
    *,
    first: Iterable[T] | None = None,
    retries: int | None = None,
    backoff_s: float | None = None,
) -> Iterator[T]:
    """Items of ``first`` (default ``open_stream()``); a transient failure re-opens the stream with
    ``open_stream`` and skips the items already delivered (``reopening``).

    Gives up after ``retries`` failures without progress in between (``$CHINCHILLA_HUB_RETRIES``, default 6)
    with a ``UserError``: what was committed before stays, and rerunning the command resumes.
    """
    retries = _env_number(RETRIES_ENV, DEFAULT_RETRIES, int) if retries is None else retries
    backoff_s = _env_number(BACKOFF_ENV, DEFAULT_BACKOFF_S, float) if backoff_s is None else backoff_s
    last = {"delivered": -1, "failures": 0}  # at the previous failure

    def recover(err: Exception, delivered: int) -> None:
        if not is_transient(err):
            raise err
        failures = last["failures"] + 1 if delivered == last["delivered"] else 1  # progress resets the count
        last.update(delivered=delivered, failures=failures)
        limited = status_code(err) == 429
        if failures > retries:
            raise UserError(
                f"{name}: the stream failed {failures} times in a row after {delivered:,} batches "
                f"({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}); "
                + (
                    "rate limited by the Hub: set HF_TOKEN (higher limits) or start fewer ranks at once, then "
                    if limited
                    else ""
                )
                + "rerun the same command to resume from the last complete shard",
                path=config_path,
                field="source",
            ) from None
        first_wait, cap = (RATE_LIMIT_FIRST_S * backoff_s, RATE_LIMIT_CAP_S) if limited else (backoff_s, BACKOFF_CAP_S)
        wait = min(cap, first_wait * 2 ** (failures - 1))
        log.warning(
            "%s: stream dropped after %d batches (%s); retry %d/%d in %.0f s",
            name,
            delivered,
            type(err).__name__,
            failures,
            retries,
            wait,
        )
        time.sleep(wait)

    return reopening(open_stream, recover, first=first)
