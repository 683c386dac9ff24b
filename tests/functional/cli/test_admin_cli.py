"""``civicloud db``, ``demo`` and ``admin``: the operator's commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.conftest import make_settings

from civicloud.app import build_services, create_app
from civicloud.core.identity import User
from civicloud.core.roles import RoleBinding
from civicloud.core.tenants import Tenant

from .conftest import Run


def counts(data_dir: Path) -> dict[str, int]:
    services = build_services(make_settings(data_dir))
    try:
        with services.db.unit_of_work(write=False) as session:
            return {
                model.__name__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in (Tenant, User, RoleBinding)
            }
    finally:
        services.db.dispose()


def test_db_upgrade_creates_a_database_and_status_agrees(civicloud: Run, data_dir: Path) -> None:
    upgraded = civicloud("db", "upgrade")
    assert upgraded.code == 0, upgraded.err
    assert "up to date" in upgraded.out
    assert (data_dir / "civicloud.db").exists()
    status = civicloud("db", "status")
    assert status.code == 0
    assert "up to date" in status.out
    assert civicloud("db", "upgrade").code == 0


def test_db_status_says_when_migrations_are_pending(civicloud: Run, data_dir: Path) -> None:
    data_dir.mkdir()
    status = civicloud("db", "status")
    assert status.code == 1
    assert "pending" in status.out


def test_the_demo_world_is_created_once_however_often_it_runs(
    civicloud: Run, data_dir: Path
) -> None:
    first = civicloud("demo", "--no-serve")
    assert first.code == 0, first.err
    assert "dalian.admin" in first.out
    after_first = counts(data_dir)
    second = civicloud("demo", "--no-serve")
    assert second.code == 0, second.err
    assert counts(data_dir) == after_first
    # seven users of the core's world, one of them (water.operator) also a Pay operator,
    # another (dalian.admin) also Dalian's Store administrator, and a third (guiyang.admin)
    # also a traffic engineer of Guiyang's bureau; and Traffic's own engineer (guiyang.engineer)
    assert after_first == {"Tenant": 15, "User": 8, "RoleBinding": 11}


def test_managing_the_tenant_tree(civicloud: Run) -> None:
    # given a country with two provinces and a city
    steps = [
        ("cn", "--kind", "country", "--region", "cn-beijing"),
        ("ln", "--kind", "province", "--parent", "cn"),
        ("gz", "--kind", "province", "--parent", "cn", "--region", "cn-guiyang"),
        ("dl", "--kind", "city", "--parent", "ln"),
    ]
    for slug, *options in steps:
        created = civicloud(
            "admin",
            "tenant",
            "create",
            slug,
            "--name-zh",
            "名",
            "--name-en",
            slug.upper(),
            *options,
        )
        assert created.code == 0, created.err
        assert f"created tenant {slug}" in created.out
    # when the city moves to the other province
    moved = civicloud("admin", "tenant", "move", "dl", "--parent", "gz")
    assert moved.code == 0, moved.err
    # then the tree shows it there
    below_gz = civicloud("admin", "tenant", "list", "--root", "gz")
    assert "dl" in below_gz.out
    assert "dl" not in civicloud("admin", "tenant", "list", "--root", "ln").out
    # and a tenant with children cannot be deleted, an empty one can
    refused = civicloud("admin", "tenant", "delete", "gz")
    assert refused.code == 5
    assert "child" in refused.err
    assert civicloud("admin", "tenant", "delete", "dl").code == 0
    assert "dl" not in civicloud("admin", "tenant", "list").out
    assert civicloud("admin", "tenant", "rename", "gz", "--name-en", "Guizhou").code == 0
    assert "Guizhou" in civicloud("admin", "tenant", "list").out


def test_an_api_key_from_the_cli_works_against_the_api(civicloud: Run, data_dir: Path) -> None:
    # given a tenant and a user with a role there, made at the shell
    assert (
        civicloud(
            "admin",
            "tenant",
            "create",
            "cn",
            "--name-zh",
            "中国",
            "--name-en",
            "China",
            "--kind",
            "country",
            "--region",
            "cn-beijing",
        ).code
        == 0
    )
    user = civicloud(
        "admin", "user", "create", "li.wei", "--tenant", "cn", "--password", "correct horse battery"
    )
    assert user.code == 0, user.err
    granted = civicloud("admin", "role", "grant", "li.wei", "auditor", "--tenant", "cn")
    assert granted.code == 0, granted.err
    # when an API key is made for them
    issued = civicloud("admin", "apikey", "create", "li.wei", "--name", "ci", "--days", "3")
    assert issued.code == 0, issued.err
    (token,) = re.findall(r"cck_[0-9a-f]{8}_[A-Za-z0-9_-]+", issued.out)
    # then the token is accepted by the API, as that user, with that role
    services = build_services(make_settings(data_dir))
    with TestClient(create_app(services=services), base_url="https://testserver") as client:
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["user"]["username"] == "li.wei"
    assert [r["role_name"] for r in me.json()["roles"]] == ["auditor"]
    # and the key is listed by its prefix only
    listed = civicloud("admin", "apikey", "list", "li.wei")
    assert token.split("_")[1] in listed.out
    assert token not in listed.out


def test_the_cli_is_audited_as_the_operator(civicloud: Run) -> None:
    assert (
        civicloud(
            "admin",
            "tenant",
            "create",
            "cn",
            "--name-zh",
            "中国",
            "--name-en",
            "China",
            "--kind",
            "country",
            "--region",
            "cn-beijing",
        ).code
        == 0
    )
    listed = civicloud("audit", "list", "--action", "core.tenant")
    assert listed.code == 0
    assert "core.tenant.create" in listed.out
    assert "system:cli:" in listed.out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            [
                "admin",
                "tenant",
                "create",
                "Bad Slug",
                "--name-zh",
                "x",
                "--name-en",
                "x",
                "--kind",
                "country",
                "--region",
                "cn-beijing",
            ],
            2,
            "slug",
        ),
        (
            [
                "admin",
                "tenant",
                "create",
                "cn",
                "--name-zh",
                "x",
                "--name-en",
                "x",
                "--kind",
                "galaxy",
            ],
            2,
            "galaxy",
        ),
        (["admin", "tenant", "create", "cn"], 2, "--name-zh"),
        (["admin", "tenant", "move", "nowhere", "--parent", "elsewhere"], 4, "nowhere"),
        (["admin", "tenant", "delete", "nowhere"], 4, "nowhere"),
        (["admin", "user", "create", "li.wei", "--tenant", "nowhere"], 4, "nowhere"),
        (["admin", "role", "grant", "li.wei", "viewer"], 2, "--platform"),
        (["admin", "role", "revoke", "not-a-uuid"], 2, "binding_id"),
        (["admin", "apikey", "create", "nobody", "--name", "x"], 4, "nobody"),
        (["admin", "apikey", "create", "nobody", "--name", "x", "--days", "0"], 2, "--days"),
        (["admin", "frobnicate"], 2, "frobnicate"),
        (["serve", "--port", "70000"], 2, "--port"),
    ],
)
def test_bad_arguments_get_one_line_and_no_traceback(
    civicloud: Run, argv: list[str], code: int, message: str
) -> None:
    result = civicloud(*argv)
    assert result.code == code, result.err
    assert "Traceback" not in result.out + result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error:")
    assert message in lines[0]


def test_an_unusable_data_directory_is_one_line_too(civicloud: Run, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = civicloud("db", "upgrade", "--data-dir", str(blocker / "data"), data=False)
    assert result.code != 0
    assert "Traceback" not in result.out + result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
