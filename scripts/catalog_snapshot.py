"""Write controller/builtin_models.json, the snapshot of controller/builtin_models.yaml that the
package reads (so that `models` and `plan` start without PyYAML). Run it after editing the YAML:

    make catalog-snapshot

tests/unit/test_catalog_snapshot.py fails, naming this command, while the snapshot is stale."""

from __future__ import annotations

from pathlib import Path

from controller.config.catalog import BUILTIN_SNAPSHOT, snapshot_of_builtin_source

if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "controller" / BUILTIN_SNAPSHOT
    target.write_text(snapshot_of_builtin_source(), encoding="utf-8")
    print(f"wrote {target}")
