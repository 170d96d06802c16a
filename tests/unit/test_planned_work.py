"""Planned work (MONITORING=on): the file that holds the down alerts off while `up`, `switch` or
`upgrade` restarts services; its deadline, and that it goes however the work ends."""

from __future__ import annotations

import re
import time

import pytest

from controller.config.monitoring_settings import MonitoringSettings
from controller.config.site import SiteConfig
from controller.lifecycle.planned_work import RESTART_PHASES, planned_work
from controller.phases import Deadlines

ON = MonitoringSettings(MONITORING="on")


def _site(tmp_path) -> SiteConfig:
    return SiteConfig(tmp_path, tmp_path / ".env")


def test_the_file_names_the_work_and_a_deadline_of_its_restart_phases(tmp_path):
    site, deadlines = _site(tmp_path), Deadlines()
    path = site.metrics_dir / "planned_work.prom"
    before = time.time()
    with planned_work(site, ON, "switch", deadlines):
        text = path.read_text()
    (sample,) = [line for line in text.splitlines() if not line.startswith("#")]
    until = float(re.fullmatch(r'llmstack_planned_work_until_seconds\{operation="switch"\} (\S+)', sample).group(1))
    window = sum(deadlines[phase] for phase in RESTART_PHASES)
    assert before + window - 1 <= until <= time.time() + window + 1
    assert not path.exists()


def test_the_file_goes_when_the_work_fails(tmp_path):
    site = _site(tmp_path)
    with pytest.raises(RuntimeError), planned_work(site, ON, "up", Deadlines()):
        assert (site.metrics_dir / "planned_work.prom").exists()
        raise RuntimeError("the work failed")
    assert not (site.metrics_dir / "planned_work.prom").exists()


def test_nothing_is_written_without_monitoring(tmp_path):
    site = _site(tmp_path)
    with planned_work(site, MonitoringSettings(), "up", Deadlines()):
        assert not site.metrics_dir.exists()
