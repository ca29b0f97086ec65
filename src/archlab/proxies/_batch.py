"""Batch scoring of archs by zero-cost proxies, written as a resumable CSV, and the proxies' rank correlations
with a benchmark's accuracies (``archlab proxies``).

The protocol is that of the zero-cost proxy studies (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS",
ICLR 2021, and its reference code SamsungLabs/zero-cost-nas, ``nasbench2/nasbench2_pred.py``): every arch is
scored at initialisation on ONE fixed minibatch of the training split (64 examples by default, the reference's
``--batch_size``), and each proxy is judged by the Spearman rank correlation of its scores with the archs'
trained test accuracies (Kendall's tau as well, as in Ning et al., NeurIPS 2021). Here the batch is chosen by the
seed (as :class:`~archlab.proxies.ProxyScorer` chooses it) and every model is built under that seed, so an arch's
row never depends on which other archs were scored, nor in which order; the proxies come from
:func:`~archlab.proxies.compute_proxies` (one shared pass over the batch).

:func:`score_archs` appends one row per arch to a CSV (``arch``, one column per proxy, ``seconds``, ``errors``)
and flushes it, so a killed run loses at most the row it was computing; run again on the same file, it skips the
archs already there. A proxy that fails on an arch is NaN in its column and its reason is in ``errors``.
:func:`proxy_correlations` gives the correlations, leaving out each proxy's NaN scores.
"""

from __future__ import annotations

import csv
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlab.errors import SpaceError, UserError
from archlab.proxies._proxies import PROXIES, compute_proxies
from archlab.space import Arch, Space, as_rng

__all__ = ["DEFAULT_BATCH_PROXIES", "VOTE_PROXIES", "arch_label", "check_proxy_names", "csv_header", "proxy_batch",
           "proxy_correlations", "read_archs", "sample_archs", "score_archs", "vote_scores"]

#: What ``archlab proxies`` scores by default: every proxy but ``zen`` (slow: its Gaussian passes repeat the
#: forward several times) and ``naswot`` (the same score as ``nwot``).
DEFAULT_BATCH_PROXIES: tuple[str, ...] = tuple(n for n in PROXIES if n not in ("zen", "naswot"))

_FIXED_COLUMNS = ("arch", "seconds", "errors")

#: The proxies of Abdelfattah et al.'s majority vote (ICLR 2021, section 4: "vote" of synflow, jacob_cov and snip).
VOTE_PROXIES: tuple[str, ...] = ("synflow", "jacob_cov", "snip")


def check_proxy_names(names: Iterable[str]) -> list[str]:
    """``names`` stripped, without repeats, each a proxy of :data:`~archlab.proxies.PROXIES`; else a
    :class:`UserError`."""
    out = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not out:
        raise UserError("no proxy given; choose from " + ", ".join(PROXIES))
    for name in out:
        if name not in PROXIES:
            raise UserError(f"unknown proxy {name!r}; choose from {', '.join(PROXIES)}")
    return out


def csv_header(names: Sequence[str]) -> list[str]:
    """The CSV's columns: ``arch``, one per proxy, ``seconds`` (building and scoring the arch), ``errors``."""
    return ["arch", *names, "seconds", "errors"]


def arch_label(space: Space, arch: Arch) -> str:
    """The ``arch`` column: the cell string on a space with a string codec (``nb201``), else the arch's
    canonical JSON."""
    to_string = getattr(space, "to_string", None)
    return to_string(arch) if callable(to_string) else arch.key


def proxy_batch(x: torch.Tensor, y: torch.Tensor, batch_size: int = 64,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed minibatch: ``batch_size`` examples of ``(x, y)`` in a seeded random order (as
    :class:`~archlab.proxies.ProxyScorer` takes it)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"the batch size must be an int >= 1, got {batch_size!r}")
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:batch_size]
    return x[idx], y[idx]


def sample_archs(space: Space, n: int, seed: int = 0) -> list[Arch]:
    """``n`` distinct archs drawn from ``space`` by one seeded generator: the first ``k`` of ``n`` are the
    ``k`` drawn for ``n = k``, so a larger sample with the same seed extends a smaller one."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"the sample size must be an int >= 1, got {n!r}")
    size = space.size()
    if n > size:
        raise UserError(f"cannot sample {n} distinct archs: the {space.name} space has {size:,} archs")
    archs = list(space.sample_distinct(n, as_rng(seed)))
    if len(archs) < n:
        raise UserError(f"drew only {len(archs)} distinct archs of the {space.name} space in {100 * n + 1000} "
                        f"samples; ask for fewer than {n}")
    return archs


def read_archs(space: Space, path: str | os.PathLike) -> list[Arch]:
    """The archs listed in a text file, one a line: a cell string on a space with a string codec (``nb201``),
    else the arch's JSON. Blank lines and ``#`` comments are skipped; a line that is not an arch of ``space`` is a
    :class:`UserError` naming the file and the line."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the archs file {path}: {e}") from None
    from_string = getattr(space, "from_string", None)
    archs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            archs.append(from_string(line) if callable(from_string) and not line.startswith("{")
                         else space.validate(line))
        except SpaceError as e:
            raise UserError(f"{path}, line {lineno}: {e}") from None
    if not archs:
        raise UserError(f"the archs file {path} lists no arch")
    return archs


def _read_rows(path: Path, header: list[str]) -> dict[str, dict[str, Any]]:
    """The rows already in ``path`` by arch (none if it is missing or empty); a :class:`UserError` if its header
    is not ``header``. A last line cut short by a kill (no newline at its end) is removed from the file."""
    if not path.is_file() or path.stat().st_size == 0:
        return {}
    try:
        raw = path.read_bytes()
        cut = len(raw) if raw.endswith(b"\n") else raw.rfind(b"\n") + 1  # a row cut short by a kill
        rows = list(csv.reader(raw[:cut].decode().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read the scores file {path}: {e}") from None
    if rows and rows[0] != header:
        raise UserError(f"{path} has the columns {','.join(rows[0])}, not this run's {','.join(header)}: "
                        "score into another file, or choose the same proxies to resume it")
    if cut < len(raw):
        try:
            with open(path, "r+b") as f:
                f.truncate(cut)
        except OSError as e:
            raise UserError(f"cannot write the scores file {path}: {e}") from None
    if not rows:
        return {}
    done: dict[str, dict[str, Any]] = {}
    for lineno, values in enumerate(rows[1:], start=2):
        if len(values) != len(header):
            raise UserError(f"{path}, line {lineno}: {len(values)} values, the header has {len(header)}")
        row: dict[str, Any] = dict(zip(header, values, strict=True))
        try:
            for name in header[1:-1]:
                row[name] = float(row[name])
        except ValueError:
            raise UserError(f"{path}, line {lineno}: {name} is not a number ({row[name]!r})") from None
        done[row["arch"]] = row
    return done


def _score_one(space: Space, arch: Arch, x: torch.Tensor, y: torch.Tensor, names: list[str],
               seed: int) -> tuple[dict[str, float], dict[str, str]]:
    """The proxies of ``arch``'s model built under ``seed`` (the global RNG left as it was), and why any failed."""
    errors: dict[str, str] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = space.build(arch)
        except Exception as e:  # an arch that cannot be built: every proxy fails for that reason
            return dict.fromkeys(names, math.nan), {"build": repr(e)}
        scores = compute_proxies(model, x, y, names, seed=seed, errors=errors)
    return scores, errors


def score_archs(space: Space, data: Any, archs: Sequence[Arch], names: Sequence[str] | None,
                out_csv: str | os.PathLike, seed: int = 0, batch_size: int = 64,
                progress: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Score ``archs`` of ``space`` by the proxies ``names`` (default :data:`DEFAULT_BATCH_PROXIES`) on one
    minibatch of ``data``'s training split (``data.x_train``, ``data.y_train``; or an ``(x, y)`` pair), appending a
    row per arch to ``out_csv`` and flushing it.

    Archs already in ``out_csv`` (same header) are not scored again; repeated archs are scored once. Returns one
    row per distinct arch, in the order given: ``{"arch": label, <proxy>: float, "seconds": float, "errors": str}``
    (``errors``: ``"grasp: RuntimeError(...); ..."``, empty when every proxy was computed).

    ``progress`` is called with ``{"event": "start", "total", "resumed", "todo"}`` once, then with ``{"event":
    "row", "done", "todo", "row"}`` after each row written.
    """
    names = check_proxy_names(names if names is not None else DEFAULT_BATCH_PROXIES)
    x_all, y_all = (data.x_train, data.y_train) if hasattr(data, "x_train") else data
    x, y = proxy_batch(x_all, y_all, batch_size, seed)
    header = csv_header(names)
    path = Path(out_csv)
    done = _read_rows(path, header)
    by_label: dict[str, Arch] = {}
    for arch in archs:
        arch = space.validate(arch)
        by_label.setdefault(arch_label(space, arch), arch)
    order = list(by_label)
    todo = [label for label in order if label not in done]
    if progress is not None:
        progress({"event": "start", "total": len(order), "resumed": len(order) - len(todo), "todo": len(todo)})
    new = not path.is_file() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        f = open(path, "a", newline="")  # noqa: SIM115 (closed by the with below)
    except OSError as e:
        raise UserError(f"cannot write the scores file {path}: {e}") from None
    with f:
        writer = csv.writer(f, lineterminator="\n")
        if new:
            writer.writerow(header)
            f.flush()
        for i, label in enumerate(todo, start=1):
            start = time.perf_counter()
            scores, errors = _score_one(space, by_label[label], x, y, names, seed)
            reasons = "; ".join(f"{k}: {' '.join(v.split())}" for k, v in errors.items())
            row = {"arch": label, **scores, "seconds": time.perf_counter() - start, "errors": reasons}
            writer.writerow([row[c] for c in header])
            f.flush()
            done[label] = row
            if progress is not None:
                progress({"event": "row", "done": i, "todo": len(todo), "row": row})
    return [done[label] for label in order]


def vote_scores(rows: Sequence[dict[str, Any]], names: Sequence[str] = VOTE_PROXIES) -> np.ndarray:
    """The majority vote of the proxies ``names`` as one score per row (Abdelfattah et al., ICLR 2021, section 4).

    Arch ``a`` is preferred to ``b`` when more of the proxies score ``a`` above ``b`` than below it; a row's
    score is the number of other rows it is preferred to, plus half of those it ties with (its Copeland score),
    so ranking by it follows the pairwise majority. A row where any of the proxies is NaN scores NaN and takes no
    part in the vote. Needs ``O(len(rows)**2 * len(names))`` comparisons, made a block of rows at a time (about
    32 MB of memory).
    """
    if len(names) < 2:
        raise UserError(f"a vote needs at least two proxies, got {list(names)}")
    missing = [n for n in names if rows and n not in rows[0]]
    if missing:
        raise UserError(f"no column for proxy {', '.join(missing)} in the scores; a vote needs every proxy it "
                        f"counts ({', '.join(names)})")
    matrix = np.asarray([[float(r[n]) for n in names] for r in rows], dtype=np.float64).reshape(len(rows), len(names))
    ok = ~np.isnan(matrix).any(axis=1)
    valid = matrix[ok]
    out = np.full(len(rows), np.nan)
    wins = np.empty(len(valid))
    block = max(1, (1 << 22) // max(1, valid.size))
    for start in range(0, len(valid), block):
        part = valid[start:start + block]
        # (block, n, proxies): +1 where the row's proxy is above the other's, -1 below, 0 equal (inf == inf)
        with np.errstate(invalid="ignore"):  # inf - inf: equal
            margin = np.sign(np.nan_to_num(part[:, None, :] - valid[None, :, :], nan=0.0)).sum(axis=2)
        wins[start:start + block] = (margin > 0).sum(axis=1) + 0.5 * ((margin == 0).sum(axis=1) - 1)
    out[ok] = wins
    return out


def proxy_correlations(rows: Sequence[dict[str, Any]], accuracies: Sequence[float],
                       names: Sequence[str] | None = None,
                       votes: dict[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Spearman's rho and Kendall's tau (``scipy.stats``; tau-b, which handles ties) of each proxy's scores in
    ``rows`` with ``accuracies`` (one per row), leaving out the rows where the score or the accuracy is NaN.
    ``votes`` adds, under each of its keys, the majority vote of the proxies it names (:func:`vote_scores`).

    Returns ``{"spearman": {proxy: rho}, "kendall": {proxy: tau}, "n": rows with an accuracy, "n_by_proxy":
    {proxy: rows used}}``; a correlation is ``None`` when it is undefined (fewer than two rows, or constant
    scores). Infinite scores (``nwot`` of a singular kernel is -inf) are kept: they rank.
    """
    from scipy import stats

    acc = np.asarray(accuracies, dtype=np.float64)
    if len(acc) != len(rows):
        raise UserError(f"{len(rows)} rows but {len(acc)} accuracies")
    if names is None:
        names = [k for k in (rows[0] if rows else {}) if k not in _FIXED_COLUMNS]
    columns = {name: np.asarray([float(r[name]) for r in rows], dtype=np.float64) for name in names}
    for key, members in (votes or {}).items():
        columns[key] = vote_scores(rows, members)
    out: dict[str, Any] = {"spearman": {}, "kendall": {}, "n": int(np.sum(~np.isnan(acc))), "n_by_proxy": {}}
    for name, scores in columns.items():
        keep = ~np.isnan(scores) & ~np.isnan(acc)
        s, a = scores[keep], acc[keep]
        out["n_by_proxy"][name] = int(keep.sum())
        rho = tau = None
        if len(s) >= 2 and np.unique(s).size > 1 and np.unique(a).size > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rho = float(stats.spearmanr(s, a).statistic)
                tau = float(stats.kendalltau(s, a).statistic)
        out["spearman"][name] = rho if rho is not None and math.isfinite(rho) else None
        out["kendall"][name] = tau if tau is not None and math.isfinite(tau) else None
    return out
