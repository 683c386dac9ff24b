"""Each branch of the history owns its tables: a module's revision is compared against its own
models only (``civicloud db revision --branch``), core's against the rest."""

from __future__ import annotations

from civicloud.app import MODULES
from civicloud.cli.db import tables_of
from civicloud.models import Base


def test_the_branches_share_out_every_table_once() -> None:
    owned = {branch: tables_of(branch) for branch in ("core", *(m.name for m in MODULES))}
    every = [name for tables in owned.values() for name in tables]
    assert sorted(every) == sorted(Base.metadata.tables)
    assert len(every) == len(set(every))


def test_a_modules_tables_are_its_own_and_cores_are_the_platforms() -> None:
    assert tables_of("pay")
    assert all(name.startswith("pay_") for name in tables_of("pay"))
    assert {"tenant", "audit_record", "job_run"} <= tables_of("core")
    assert not any(name.startswith("pay_") for name in tables_of("core"))
