"""Planned work (MONITORING=on): the file that holds the down alerts off while `up`, `switch` or
`upgrade` restarts services; its deadline, and that it goes however the work ends."""

from __future__ import annotations

import re
import time

import pytest

from controller.config.monitoring_settings import MonitoringSettings
from controller.config.site import SiteConfig
from controller.lifecycle.metric_files import RESTART_PHASES, planned_work
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


def test_the_kv_check_is_written_and_a_start_up_without_a_figure_removes_the_last_one(tmp_path):
    from controller.lifecycle.metric_files import publish_kv_check

    site, warnings = _site(tmp_path), []
    path = site.metrics_dir / "kv_cache.prom"
    publish_kv_check(site, ON, "m", {"planned": 1100, "logged": 1000}, warnings.append)
    assert 'llmstack_kv_cache_tokens{model="m",source="plan"} 1100' in path.read_text()
    publish_kv_check(site, ON, "other", None, warnings.append)
    assert not path.exists() and warnings == []


def test_a_kv_check_that_cannot_be_written_warns_and_does_not_fail(tmp_path):
    from controller.lifecycle.metric_files import publish_kv_check

    site, warnings = _site(tmp_path), []
    site.state_dir.mkdir()
    site.metrics_dir.write_text("a file where the folder should be")
    publish_kv_check(site, ON, "m", {"planned": 1100, "logged": 1000}, warnings.append)
    assert len(warnings) == 1 and "KvPlanMismatch" in warnings[0]
