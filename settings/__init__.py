"""Every deployment setting, read from its ``COGRAPH_*`` variable in this one place.

Each field of :class:`Settings` is one variable: ``COGRAPH_`` + the field's name in capitals
(``train_epochs`` is ``COGRAPH_TRAIN_EPOCHS``). Values are parsed by the field's type and
checked against its bounds when read; a bad value fails with the variable's name, the
value and what was expected, and every bad variable is named at once. A ``COGRAPH_*``
variable that no field declares is logged with the closest name, because a typo would
otherwise change nothing, silently.

Assets take their Config defaults from here (:func:`config_field`, which also gives the
Launchpad the field's description); the service, the CLIs and the tests read
:func:`current`. ``python -m settings`` prints every setting with its value;
``docs/settings.md`` is the same table, generated (``python -m settings --markdown``).
"""

from __future__ import annotations

import codecs
import difflib
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

import pydantic

PREFIX = "COGRAPH_"
log = logging.getLogger(__name__)


class SettingError(ValueError):
    """One or more ``COGRAPH_*`` variables hold values their settings refuse."""


def _choice(*options: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in options else f"one of {', '.join(options)}"

    return check


def _at_least(low: float, *, above: bool = False) -> Callable[[float], str | None]:
    def check(value: float) -> str | None:
        ok = value > low if above else value >= low
        return None if ok else f"a number {'>' if above else '>='} {low:g}"

    return check


def _share(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else "a share between 0 and 1"


def _cron(value: str) -> str | None:
    return None if len(value.split()) == 5 else "a cron expression of five fields"


def _memory(value: str) -> str | None:
    ok = value == "" or re.fullmatch(r"\d+[kmgt]?", value.lower())
    return None if ok else "a JVM memory size such as 4g or 512m"


def _encoding(value: str) -> str | None:
    try:
        codecs.lookup(value)
    except LookupError:
        return "a Python codec name such as utf-8 or latin-1"
    return None


def _device(value: str) -> str | None:
    ok = re.fullmatch(r"auto|cpu|cuda(:\d+)?", value.lower())
    return None if ok else "auto, cpu, cuda or cuda:N"


def setting(default: Any, doc: str, check: Callable[[Any], str | None] | None = None) -> Any:
    """A field of :class:`Settings`: its default, what it does, and what it accepts."""
    return field(default=default, metadata={"doc": doc, "check": check})


@dataclass(frozen=True)
class Settings:
    # where things run and live
    deployment: str = setting(
        "local",
        "`local`: Spark local[*], one process; `cluster`: COGRAPH_SPARK_MASTER and "
        "COGRAPH_LAKE_ROOT required, steps in their own processes.",
        _choice("local", "cluster"),
    )
    lake_root: str = setting("lake", "Folder of the lake: Delta tables, artifacts, the inbox.")
    spark_master: str = setting("local[*]", "Spark master URL, e.g. spark://host:7077.")
    spark_driver_memory: str = setting(
        "", "Spark driver memory (empty: 4g locally, 8g on a cluster).", _memory
    )
    spark_packages: str = setting(
        "auto",
        "Optional JVM packages: `auto` (what `make install` fetched), `none`, or Maven "
        "coordinates.",
    )
    jvm_jars: str = setting("", "Folder of the fetched JVM jars (empty: `.jvm/` in the project).")
    delta_engine: str = setting(
        "deltalake",
        "Who commits Delta versions: `deltalake` (Spark writes Parquet) or `delta-spark`.",
        _choice("deltalake", "delta-spark"),
    )
    writer_lease_seconds: float = setting(
        1800.0,
        "How long a writer waits for the lake's single-writer lease.",
        _at_least(0, above=True),
    )
    nightly_cron: str = setting("0 2 * * *", "When `nightly_full_refresh` runs (UTC).", _cron)
    nightly_schedule_on: bool = setting(
        False, "Start `nightly_full_refresh` on (otherwise it is off until turned on in the UI)."
    )
    maintenance_cron: str = setting("30 3 * * 0", "When `lake_maintenance` runs (UTC).", _cron)
    housekeeping_grace_hours: float = setting(
        168.0,
        "Housekeeping leaves files younger than this: a write may be in flight.",
        _at_least(0),
    )
    # ingest
    source: str = setting(
        "synthetic",
        "Input of `raw_tables`: `synthetic`, `movielens` or `generic` (CSV/Parquet files).",
        _choice("synthetic", "movielens", "generic"),
    )
    movielens_path: str = setting(
        "../shared/datasets/ml-latest-small", "Folder of a MovieLens dataset."
    )
    interactions_path: str = setting("", "Generic source: the interactions file.")
    concepts_path: str = setting("", "Generic source: the item-concept file.")
    items_path: str = setting("", "Generic source: the item catalog file (optional).")
    ingest_mode: str = setting(
        "append",
        "`append` adds an input once per content; `replace` makes the raw tables this input.",
        _choice("append", "replace"),
    )
    max_quarantine_share: float = setting(
        0.05, "An input with a larger share of rejected rows fails.", _share
    )
    min_input_rows: int = setting(1, "An input with fewer data rows fails.", _at_least(0))
    input_encoding: str = setting(
        "utf-8", "Encoding of CSV inputs; undecodable lines are quarantined.", _encoding
    )
    # graph
    window_days: float = setting(
        30.0,
        "Two engagements of one user count as co-engagement within this many days.",
        _at_least(0, above=True),
    )
    max_cold_start_share: float = setting(
        0.5, "`kg_cold_start_share` warns when a larger share of items has no engagement.", _share
    )
    default_domain: str = setting(
        "default", "The domain of items whose catalog row names none (filters, evaluation)."
    )
    # cross-domain evaluation
    cross_domain_target: str = setting(
        "",
        "Target domain of the cross-domain evaluation: its interactions of cold users and of "
        "new items are held out of training, so that `cross_domain_evaluation` can measure "
        "them (empty: off, nothing held out).",
    )
    cross_domain_cold_user_share: float = setting(
        0.2, "Share of users whose target-domain history is held out (cold users).", _share
    )
    cross_domain_new_item_share: float = setting(
        0.1, "Share of target-domain items held out whole (new items).", _share
    )
    # training
    hasp_memory_budget_mb: int = setting(
        64,
        "Memory per training shard, per device (small by default, so that the demo "
        "graph is cut into several shards).",
        _at_least(1),
    )
    device_count: int = setting(1, "Devices the shards are sized for.", _at_least(1))
    device: str = setting(
        "auto",
        "Torch device for training, and where the service's strategy `neural` scores: "
        "`auto` (CUDA when present), `cpu`, `cuda[:N]`.",
        _device,
    )
    world_size: int = setting(1, "Data-parallel training processes.", _at_least(1))
    transe_epochs: int = setting(100, "Most TransE concept pretraining epochs.", _at_least(1))
    transe_max_seconds: float = setting(
        300.0, "TransE's time budget (0: none); it also stops when its loss flattens.", _at_least(0)
    )
    train_epochs: int = setting(30, "Most GNN training epochs per shard.", _at_least(1))
    train_max_seconds: float = setting(
        600.0,
        "Each encoder's training time budget (0: none): no epoch starts that would end past "
        "it; patience on validation stops it too.",
        _at_least(0),
    )
    inference_memory_budget_mb: int = setting(
        256, "Memory for full-graph inference and ranking chunks.", _at_least(1)
    )
    malloc_keep_mb: int = setting(
        1024,
        "Allocations up to this size reuse freed memory, and up to this much freed memory "
        "stays in the process for reuse (glibc; 0: glibc's defaults).",
        _at_least(0),
    )
    # measured (docs/benchmarks.md): in-process reading, validation and the touched pairs
    # take 0.7 s at 10k rows, 5.3 s at 100k and 25 s at 300k; Spark's steps about 18 s
    small_batch_max_rows: int = setting(
        100_000,
        "An inbox batch of at most this many rows is applied in-process (Arrow and numpy, "
        "no Spark action); a larger one, or one with input only Spark reads exactly, by Spark.",
        _at_least(0),
    )
    # quality and serving
    gate_margin: float = setting(
        0.1,
        "The gate blocks the index when the served model is this much (relative) below "
        "the best no-learning baseline.",
        _at_least(0),
    )
    drift_max_share: float = setting(
        0.1,
        "`inductive_drift` warns when a larger share of served items was embedded "
        "inductively since the last retrain.",
        _share,
    )
    index_quantize: str = setting(
        "none", "Serve a quantized index: `none`, `sq8` or `fp16`.", _choice("none", "sq8", "fp16")
    )
    admin_token: str = setting(
        "", "Bearer token of the service's admin endpoints (empty: refused)."
    )
    micro_batching: bool = setting(True, "The service batches concurrent queries into one search.")
    header_timeout_seconds: float = setting(
        10.0,
        "The service's deadline for a request's headers (slow clients get 408 and are closed).",
        _at_least(0, above=True),
    )
    reload_poll_seconds: float = setting(
        5.0, "The service checks `ann_index/LATEST` this often (0: never).", _at_least(0)
    )

    @classmethod
    def variable(cls, name: str) -> str:
        return PREFIX + name.upper()

    @classmethod
    def doc(cls, name: str) -> str:
        return _FIELDS[name].metadata["doc"]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """The settings that ``environ`` gives; :class:`SettingError` names every bad one."""
        values, errors = {}, []
        for f in fields(cls):
            text = environ.get(cls.variable(f.name))
            if text is None:
                continue
            try:
                value = _PARSE[type(f.default)](text.strip())
                problem = f.metadata["check"] and f.metadata["check"](value)
            except ValueError:
                problem = _KIND[type(f.default)]
            if problem:
                errors.append(f"{cls.variable(f.name)}={text!r}: expected {problem}")
            else:
                values[f.name] = value
        if errors:
            raise SettingError("; ".join(errors))
        _warn_unknown(environ)
        return cls(**values)


_FIELDS = {f.name: f for f in fields(Settings)}


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


_PARSE: dict[type, Callable[[str], Any]] = {str: str, int: int, float: float, bool: _boolean}
_KIND = {int: "an integer", float: "a number", bool: "1, 0, true or false"}


def _warn_unknown(environ: Mapping[str, str]) -> None:
    known = [Settings.variable(name) for name in _FIELDS]
    for name in sorted(environ):
        if name.startswith(PREFIX) and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            log.warning("%s is not a cograph setting%s", name, hint)


@lru_cache(maxsize=8)
def _cached(snapshot: tuple[tuple[str, str], ...]) -> Settings:
    return Settings.from_environ(dict(snapshot))


def current() -> Settings:
    """The settings of this process's environment, parsed once per distinct environment."""
    return _cached(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(PREFIX))))


def config_field(name: str) -> Any:
    """A Dagster Config field whose default is the setting ``name`` and whose description
    (shown in the Launchpad) says what it does and which variable sets the default."""
    return pydantic.Field(
        default=getattr(current(), name),
        description=f"{Settings.doc(name)} Default from {Settings.variable(name)}.",
    )


def markdown() -> str:
    """Every setting as a Markdown table: variable, default, what it does."""
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for f in fields(Settings):
        default = f.default if f.default != "" else "(empty)"
        rows.append(f"| `{Settings.variable(f.name)}` | `{default}` | {Settings.doc(f.name)} |")
    return "\n".join(rows) + "\n"
