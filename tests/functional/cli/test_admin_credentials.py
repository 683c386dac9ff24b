"""``civicloud admin`` and credentials: a new password revokes the user's API keys, and the last
platform administrator can be neither revoked nor deactivated, from the shell either."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.conftest import make_settings

from civicloud.app import build_services, create_app

from .conftest import Run

PASSWORD = "correct horse battery"


@pytest.fixture
def with_user(civicloud: Run) -> Run:
    """A country ``cn`` and a user ``li.wei`` homed there, made at the shell."""
    created = civicloud(
        "admin", "tenant", "create", "cn", "--name-zh", "中国", "--name-en", "China",
        "--kind", "country", "--region", "cn-beijing",
    )  # fmt: skip
    assert created.code == 0, created.err
    user = civicloud("admin", "user", "create", "li.wei", "--tenant", "cn", "--password", PASSWORD)
    assert user.code == 0, user.err
    return civicloud


def me(data_dir: Path, token: str) -> int:
    services = build_services(make_settings(data_dir))
    try:
        with TestClient(create_app(services=services), base_url="https://testserver") as client:
            return client.get(
                "/api/v1/me", headers={"Authorization": f"Bearer {token}"}
            ).status_code
    finally:
        services.db.dispose()


def test_set_password_revokes_the_users_api_keys(with_user: Run, data_dir: Path) -> None:
    civicloud = with_user
    assert civicloud("admin", "role", "grant", "li.wei", "auditor", "--tenant", "cn").code == 0
    # given a working API key
    issued = civicloud("admin", "apikey", "create", "li.wei", "--name", "ci")
    assert issued.code == 0, issued.err
    (token,) = re.findall(r"cck_[0-9a-f]{8}_[A-Za-z0-9_-]+", issued.out)
    prefix = token.split("_")[1]
    assert me(data_dir, token) == 200
    # when the operator sets a new password at the shell
    changed = civicloud(
        "admin", "user", "set-password", "li.wei", "--password", "a whole new passphrase"
    )
    # then it says which keys it revoked, the key is refused, and the list shows it revoked
    assert changed.code == 0, changed.err
    assert f"API keys revoked: {prefix}" in changed.out
    assert me(data_dir, token) == 401
    listed = civicloud("admin", "apikey", "list", "li.wei")
    assert re.search(rf"{prefix}.*\d{{4}}-\d\d-\d\d \d\d:\d\d.*\d{{4}}-\d\d-\d\d", listed.out)
    # and the revocation is audited
    audited = civicloud("audit", "list", "--action", "core.apikey.revoke")
    assert f"apikey:{prefix}" in audited.out


def test_the_last_platform_administrator_stays(with_user: Run) -> None:
    civicloud = with_user
    # given li.wei is the one platform administrator
    assert civicloud("admin", "role", "grant", "li.wei", "platform_admin", "--platform").code == 0
    bindings = civicloud("admin", "role", "bindings", "li.wei")
    (binding_id,) = re.findall(r"[0-9a-f-]{36}", bindings.out)
    # when the shell revokes the role, or deactivates the user
    revoked = civicloud("admin", "role", "revoke", binding_id)
    deactivated = civicloud("admin", "user", "deactivate", "li.wei")
    # then both are refused with one line and the conflict exit code, and nothing changed
    for refused in (revoked, deactivated):
        assert refused.code == 5
        assert "without a platform administrator" in refused.err
        assert len(refused.err.strip().splitlines()) == 1
        assert "Traceback" not in refused.err
    assert binding_id in civicloud("admin", "role", "bindings", "li.wei").out
    # (once a second administrator exists, the first may go)
    civicloud("admin", "user", "create", "wang.fang", "--tenant", "cn", "--password", PASSWORD)
    assert (
        civicloud("admin", "role", "grant", "wang.fang", "platform_admin", "--platform").code == 0
    )
    assert civicloud("admin", "role", "revoke", binding_id).code == 0


def test_the_refusal_speaks_chinese_under_a_chinese_locale(
    with_user: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    civicloud = with_user
    assert civicloud("admin", "role", "grant", "li.wei", "platform_admin", "--platform").code == 0
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    refused = civicloud("admin", "user", "deactivate", "li.wei")
    assert refused.code == 5
    assert "平台管理员" in refused.err
