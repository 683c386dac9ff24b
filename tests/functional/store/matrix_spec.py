"""Store's part of the authorisation matrix: its API and console routes, the buckets and
access keys they name (by name, not by id), and Store's request models and form fields."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, cast

from tests.factories.core import Side, grant, make_user, unique
from tests.functional.matrix import MatrixSpec

from civicloud.core.actor import Actor
from civicloud.core.services import Services
from civicloud.store import service
from civicloud.store.context import StoreContext
from civicloud.store.keys import issue_key


def build(services: Services, side: Side) -> Mapping[str, uuid.UUID]:
    """A bucket of the side's city and an access key of a Store administrator there. Store's
    routes name buckets and keys by name: the matrix only puts each value into the path as
    text, so the names stand where other modules' ids do."""
    context = services.context("store", StoreContext)
    with services.db.unit_of_work() as session:
        city = session.merge(side.child)
        user = make_user(session, services.passwords, tenant=city)
        grant(session, user=user, role="store_admin", tenant=city)
        name = unique("matrix").lower().replace("_", "-")[:40]
        service.create_bucket(
            session=session,
            actor=Actor.system("matrix"),
            context=context,
            name=name,
            tenant_id=city.id,
        )
        issued = issue_key(
            session=session, actor=Actor.system("matrix"), context=context, user_id=user.id
        )
        found: dict[str, Any] = {"store_bucket": name, "store_key": issued.key.access_key_id}
        return cast("Mapping[str, uuid.UUID]", found)


SPEC = MatrixSpec(
    name="store",
    id_parameters={"bucket": "store_bucket", "access_key_id": "store_key"},
    bodies={
        "BucketCreate": lambda ids: {
            "name": unique("matrix").lower().replace("_", "-")[:40],
            "tenant_id": ids["tenant_id"],
        },
        "KeyCreate": lambda ids: {"description": "matrix", "user_id": ids["user_id"]},
    },
    form_values={
        "bucket_name": lambda: unique("matrix").lower().replace("_", "-")[:40],
        "acl": lambda: "private",
        "status": lambda: "Enabled",
        "quota_gb": lambda: "1",
        "quota_objects": lambda: "10",
        "object_key": lambda: "matrix.txt",
        "version_id": lambda: "",
        "access_key": lambda: "CCMATRIX",
        "expires": lambda: "3600",
        "description": lambda: "matrix",
        "read_only": lambda: "yes",
    },
    build=build,
)
