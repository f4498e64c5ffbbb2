"""The settings module: every COGRAPH_* variable parsed and checked in one place, bad values
named, typos reported, and every Config field described for the Launchpad."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

import settings
from settings import SettingError, Settings, current

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_without_variables():
    assert Settings.from_environ({}) == Settings()


def test_values_are_parsed_by_type():
    got = Settings.from_environ(
        {
            "COGRAPH_TRAIN_EPOCHS": "7",
            "COGRAPH_GATE_MARGIN": " 0.25 ",
            "COGRAPH_MICRO_BATCHING": "off",
            "COGRAPH_DELTA_ENGINE": "delta-spark",
            "COGRAPH_INPUT_ENCODING": "latin-1",
        }
    )
    assert (got.train_epochs, got.gate_margin, got.micro_batching) == (7, 0.25, False)
    assert (got.delta_engine, got.input_encoding) == ("delta-spark", "latin-1")


def test_every_bad_value_is_named_at_once():
    with pytest.raises(SettingError) as caught:
        Settings.from_environ(
            {
                "COGRAPH_TRAIN_EPOCHS": "1.5",
                "COGRAPH_MAX_QUARANTINE_SHARE": "2",
                "COGRAPH_DELTA_ENGINE": "parquet",
                "COGRAPH_NIGHTLY_CRON": "daily",
                "COGRAPH_INPUT_ENCODING": "utf-99",
                "COGRAPH_DEVICE": "tpu",
                "COGRAPH_SPARK_DRIVER_MEMORY": "lots",
            }
        )
    message = str(caught.value)
    assert "COGRAPH_TRAIN_EPOCHS='1.5': expected an integer" in message
    assert "COGRAPH_MAX_QUARANTINE_SHARE='2': expected a share between 0 and 1" in message
    assert "COGRAPH_DELTA_ENGINE='parquet': expected one of deltalake, delta-spark" in message
    for variable in ("NIGHTLY_CRON", "INPUT_ENCODING", "DEVICE", "SPARK_DRIVER_MEMORY"):
        assert f"COGRAPH_{variable}=" in message


def test_an_unknown_variable_is_reported_with_the_closest_name(caplog):
    with caplog.at_level(logging.WARNING, logger="settings"):
        Settings.from_environ({"COGRAPH_TRAIN_EPOCH": "3"})
    assert "COGRAPH_TRAIN_EPOCH is not a cograph setting; did you mean COGRAPH_TRAIN_EPOCHS?" in (
        caplog.text
    )


def test_current_follows_the_environment(monkeypatch):
    monkeypatch.setenv("COGRAPH_GATE_MARGIN", "0.5")
    assert current().gate_margin == 0.5
    monkeypatch.setenv("COGRAPH_GATE_MARGIN", "0.3")
    assert current().gate_margin == 0.3


def test_no_module_reads_cograph_variables_itself():
    """Only settings/ reads COGRAPH_* variables; the rest asks it."""
    readers = []
    for package in ("assets", "orchestration", "resources", "serving", "spark_jobs",
                    "storage", "training"):  # fmt: skip
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            if 'getenv("COGRAPH_' in text or 'environ["COGRAPH_' in text:
                readers.append(str(path.relative_to(ROOT)))
    assert not readers


def test_every_config_field_is_described():
    """The Launchpad shows each field's description; none may be blank."""
    modules = [importlib.import_module(f"assets.{p.stem}") for p in (ROOT / "assets").glob("*.py")]
    modules.append(importlib.import_module("orchestration.maintenance"))
    configs = {
        cls
        for module in modules
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, dg.Config) and cls is not dg.Config
    }
    assert len(configs) >= 10
    blank = [
        f"{cls.__name__}.{name}"
        for cls in configs
        for name, info in cls.model_fields.items()
        if not info.description
    ]
    assert not blank
    # the description reaches Dagster's config schema, not only pydantic's
    fields = importlib.import_module("assets.model").TrainConfig.to_config_schema()
    epochs = fields.as_field().config_type.fields["epochs"]
    assert epochs.description.endswith("Default from COGRAPH_TRAIN_EPOCHS.")


def test_docs_list_every_setting():
    assert (ROOT / "docs" / "settings.md").read_text() == settings.markdown(), (
        "regenerate: python -m settings --markdown > docs/settings.md"
    )


def test_definitions_refuse_to_load_with_a_bad_setting():
    """A bad value stops the code location from loading, naming the variable."""
    env = {**os.environ, "COGRAPH_TRAIN_EPOCHS": "many"}
    done = subprocess.run(
        [sys.executable, "-c", "import orchestration.definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "COGRAPH_TRAIN_EPOCHS='many': expected an integer" in done.stderr
