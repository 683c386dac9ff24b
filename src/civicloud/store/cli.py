"""``civicloud store``: Store's operator commands (``Module.cli``).

Each command runs one service call (or a few) in one unit of work as the operator at the shell
(``system:cli:<os user>`` in the audit log). Tenants are named by slug, users by username;
sizes print in binary units (KiB, MiB, GiB) and are read in either (``10GiB``, ``500MB``).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from datetime import timedelta

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloud.cli.common import (
    DataDirOpt,
    cli_actor,
    console,
    err_console,
    handle_errors,
    open_services,
    print_rows,
    unit_of_work,
)
from civicloud.core import identity, tenants
from civicloud.core.errors import InvalidInput, NotFound
from civicloud.core.identity.models import User
from civicloud.core.services import Services
from civicloud.core.tenants.models import Tenant
from civicloud.core.text import format_bytes
from civicloud.store import fsck, keys, service
from civicloud.store.context import StoreContext
from civicloud.store.models import CANNED_ACLS, Bucket, StoreTenant

store_app = typer.Typer(
    help="Store: buckets, access keys, quotas, usage, the integrity check and key rotation.",
    no_args_is_help=True,
)
bucket_app = typer.Typer(
    help="Buckets: create, list, delete, versioning and ACL.", no_args_is_help=True
)
key_app = typer.Typer(help="S3 access keys: issue, list and revoke.", no_args_is_help=True)
quota_app = typer.Typer(help="Quotas of buckets and tenants.", no_args_is_help=True)

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "kb": 10**3,
    "m": 1 << 20,
    "mib": 1 << 20,
    "mb": 10**6,
    "g": 1 << 30,
    "gib": 1 << 30,
    "gb": 10**9,
    "t": 1 << 40,
    "tib": 1 << 40,
    "tb": 10**12,
    "p": 1 << 50,
    "pib": 1 << 50,
    "pb": 10**15,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_BAD_SIZE = "%(value)s is not a size (for example 10GiB, 500MB or 1048576)"
_NOT_MEMBER = "the user %(username)s does not belong to the tenant %(slug)s"
_BOTH_SIZES = "give --max-bytes or --max-size, not both"
_ONE_TARGET = "name a bucket (--bucket) or a tenant (--tenant), one of them"
_NO_LIMIT = "give --max-bytes, --max-size or --max-objects"
_BAD_VERSIONING = "versioning is enabled or suspended, not %(status)s"


def human_size(size: int) -> str:
    """``size`` bytes in binary units: ``512 B``, ``1.5 KiB``, ``10.0 GiB``."""
    return format_bytes(size)


def parse_size(text: str) -> int:
    """Bytes from ``10GiB``, ``500MB``, ``1.5 TiB`` or a plain count (``InvalidInput``)."""
    match = _SIZE.match(text)
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise InvalidInput(_BAD_SIZE, params={"value": repr(text[:40])})
    return int(float(match.group(1)) * unit)


def _open(data_dir: DataDirOpt) -> tuple[Services, StoreContext]:
    services = open_services(data_dir)
    return services, services.context("store", StoreContext)


def _tenant(session: Session, slug: str) -> Tenant:
    found = tenants.get_tenant_by_slug(session=session, slug=slug)
    if found is None:
        raise NotFound("no tenant with slug %(slug)s", params={"slug": repr(slug)})
    return found


def _user(session: Session, username: str) -> User:
    found = identity.get_user_by_username(session=session, username=username)
    if found is None:
        raise NotFound("no user %(username)s", params={"username": repr(username)})
    return found


def _quota(max_bytes: int | None, max_objects: int | None) -> str:
    parts = []
    if max_bytes is not None:
        parts.append(human_size(max_bytes))
    if max_objects is not None:
        parts.append(f"{max_objects} objects")
    return ", ".join(parts) or "-"


def _share(used: int, quota: int | None) -> str:
    if quota is None:
        return "-"
    if quota == 0:
        return "100%" if used else "0%"
    return f"{100 * used / quota:.1f}%"


def _in_subtree(tenant: Tenant, root: Tenant | None) -> bool:
    return root is None or tenant.path.startswith(root.path)


# ---- buckets ---------------------------------------------------------------------------------


@bucket_app.command("create")
@handle_errors
def bucket_create(
    name: str,
    tenant: str = typer.Option(..., "--tenant", help="The owning tenant's slug."),
    acl: str = typer.Option("private", help=f"A canned ACL: {', '.join(CANNED_ACLS)}."),
    data_dir: DataDirOpt = None,
) -> None:
    """Create a bucket for a tenant, in the tenant's home region."""
    services, context = _open(data_dir)
    with unit_of_work(services) as session:
        owner = _tenant(session, tenant)
        made = service.create_bucket(
            session=session,
            actor=cli_actor(),
            context=context,
            name=name,
            tenant_id=owner.id,
            acl=acl,
        )
        region = made.region_code
    console.print(f"created bucket {name} for {tenant} in {region}", highlight=False)


@bucket_app.command("list")
@handle_errors
def bucket_list(
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant and below."),
    data_dir: DataDirOpt = None,
) -> None:
    """List buckets: tenant, region, versioning, ACL, usage and quota."""
    services, _context = _open(data_dir)
    with services.db.unit_of_work(write=False) as session:
        root = _tenant(session, tenant) if tenant else None
        owners = {t.id: t for t in session.scalars(select(Tenant))}
        rows = [
            [
                b.name,
                owners[b.tenant_id].slug,
                b.region_code,
                b.versioning,
                b.acl,
                b.used_objects,
                human_size(b.used_bytes),
                _quota(b.quota_bytes, b.quota_objects),
            ]
            for b in service.list_buckets(session=session, actor=cli_actor())
            if _in_subtree(owners[b.tenant_id], root)
        ]
    print_rows(
        "buckets",
        ["name", "tenant", "region", "versioning", "ACL", "objects", "size", "quota"],
        rows,
    )


@bucket_app.command("delete")
@handle_errors
def bucket_delete(name: str, data_dir: DataDirOpt = None) -> None:
    """Delete an empty bucket."""
    services, _context = _open(data_dir)
    with unit_of_work(services) as session:
        service.delete_bucket(session=session, actor=cli_actor(), name=name)
    console.print(f"deleted bucket {name}", highlight=False)


@bucket_app.command("versioning")
@handle_errors
def bucket_versioning(name: str, status: str, data_dir: DataDirOpt = None) -> None:
    """Turn a bucket's versioning on (enabled) or suspend it (suspended)."""
    wanted = {"enabled": "Enabled", "suspended": "Suspended"}.get(status.strip().lower())
    if wanted is None:
        raise InvalidInput(_BAD_VERSIONING, params={"status": repr(status[:40])})
    services, _context = _open(data_dir)
    with unit_of_work(services) as session:
        service.set_versioning(session=session, actor=cli_actor(), name=name, status=wanted)
    console.print(f"versioning of {name}: {wanted.lower()}", highlight=False)


@bucket_app.command("acl")
@handle_errors
def bucket_acl(name: str, acl: str, data_dir: DataDirOpt = None) -> None:
    """Give a bucket a canned ACL (private, public-read, public-read-write,
    authenticated-read)."""
    services, _context = _open(data_dir)
    with unit_of_work(services) as session:
        service.set_bucket_acl(session=session, actor=cli_actor(), name=name, acl=acl)
    console.print(f"ACL of {name}: {acl}", highlight=False)


# ---- access keys -----------------------------------------------------------------------------


@key_app.command("create")
@handle_errors
def key_create(
    tenant: str = typer.Option(..., "--tenant", help="The user's tenant (slug)."),
    user: str = typer.Option(..., "--user", help="The username the key acts as."),
    bucket: list[str] = typer.Option([], "--bucket", help="Only this bucket (repeatable)."),
    prefix: list[str] = typer.Option([], "--prefix", help="Only keys with this prefix."),
    read_only: bool = typer.Option(False, "--read-only", help="Reads only."),
    description: str = typer.Option("", help="What the key is for."),
    as_json: bool = typer.Option(False, "--json", help="Print the key as JSON."),
    data_dir: DataDirOpt = None,
) -> None:
    """Issue an S3 access key for a user of a tenant; prints the key id and the secret, which
    is shown only this once."""
    services, context = _open(data_dir)
    with unit_of_work(services) as session:
        home, owner = _tenant(session, tenant), _user(session, user)
        if owner.tenant_id != home.id:
            raise InvalidInput(_NOT_MEMBER, params={"username": user, "slug": tenant})
        issued = keys.issue_key(
            session=session,
            actor=cli_actor(),
            context=context,
            user_id=owner.id,
            buckets=bucket or None,
            prefixes=prefix or None,
            read_only=read_only,
            description=description,
        )
        made = issued.key
        shown = {
            "access_key_id": made.access_key_id,
            "secret_access_key": issued.secret,
            "user": user,
            "tenant": tenant,
            "buckets": made.buckets,
            "prefixes": made.prefixes,
            "read_only": made.read_only,
        }
    # Plain output, never wrapped or styled: scripts read it.
    if as_json:
        sys.stdout.write(json.dumps(shown) + "\n")
    else:
        sys.stdout.write(f"{shown['access_key_id']} {shown['secret_access_key']}\n")


@key_app.command("list")
@handle_errors
def key_list(
    tenant: str = typer.Option(..., "--tenant", help="The tenant (slug) whose users' keys."),
    user: str | None = typer.Option(None, "--user", help="Only this user's keys."),
    data_dir: DataDirOpt = None,
) -> None:
    """List the live access keys of a tenant's users (never their secrets)."""
    services, _context = _open(data_dir)
    actor = cli_actor()
    with services.db.unit_of_work(write=False) as session:
        home = _tenant(session, tenant)
        if user is not None:
            chosen = _user(session, user)
            if chosen.tenant_id != home.id:
                raise InvalidInput(_NOT_MEMBER, params={"username": user, "slug": tenant})
            users: Sequence[User] = [chosen]
        else:
            users = session.scalars(
                select(User).where(User.tenant_id == home.id).order_by(User.username)
            ).all()
        rows = [
            [
                k.access_key_id,
                u.username,
                ", ".join(k.buckets) if k.buckets is not None else "*",
                ", ".join(k.prefixes) if k.prefixes is not None else "*",
                "yes" if k.read_only else "no",
                f"{k.created_at:%Y-%m-%d %H:%M}",
                f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "-",
                k.description,
            ]
            for u in users
            for k in keys.list_keys(session=session, actor=actor, user_id=u.id)
        ]
    print_rows(
        "access keys",
        ["access key id", "user", "buckets", "prefixes", "read-only", "created", "used", "note"],
        rows,
    )


@key_app.command("revoke")
@handle_errors
def key_revoke(access_key_id: str, data_dir: DataDirOpt = None) -> None:
    """Stop an access key for good."""
    services, _context = _open(data_dir)
    with unit_of_work(services) as session:
        keys.revoke_key(session=session, actor=cli_actor(), access_key_id=access_key_id)
    console.print(f"revoked {access_key_id}", highlight=False)


# ---- usage and quotas ------------------------------------------------------------------------


@store_app.command("usage")
@handle_errors
def usage(
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant and below."),
    data_dir: DataDirOpt = None,
) -> None:
    """What each tenant and each of its buckets stores, against its quota."""
    services, _context = _open(data_dir)
    with services.db.unit_of_work(write=False) as session:
        root = _tenant(session, tenant) if tenant else None
        accounts = session.execute(
            select(StoreTenant, Tenant)
            .join(Tenant, Tenant.id == StoreTenant.tenant_id)
            .order_by(Tenant.path)
        ).all()
        buckets: dict[object, list[Bucket]] = {}
        for b in service.list_buckets(session=session, actor=cli_actor()):
            buckets.setdefault(b.tenant_id, []).append(b)
        rows: list[list[object]] = []
        for _account, owner in accounts:
            if not _in_subtree(owner, root):
                continue
            used = service.tenant_usage(session=session, tenant_id=owner.id)
            rows.append(_usage_row(owner.slug, "(all)", used))
            for b in buckets.get(owner.id, []):
                rows.append(
                    _usage_row(
                        "",
                        b.name,
                        service.Usage(b.used_bytes, b.used_objects, b.quota_bytes, b.quota_objects),
                    )
                )
    print_rows(
        "usage",
        ["tenant", "bucket", "objects", "size", "quota", "of quota (bytes)", "of quota (objects)"],
        [[str(v) for v in row] for row in rows],
    )


def _usage_row(tenant: str, bucket: str, used: service.Usage) -> list[object]:
    return [
        tenant,
        bucket,
        used.used_objects,
        human_size(used.used_bytes),
        _quota(used.quota_bytes, used.quota_objects),
        _share(used.used_bytes, used.quota_bytes),
        _share(used.used_objects, used.quota_objects),
    ]


def _quota_target(session: Session, bucket: str | None, tenant: str | None) -> Tenant | None:
    if (bucket is None) == (tenant is None):
        raise InvalidInput(_ONE_TARGET)
    return _tenant(session, tenant) if tenant is not None else None


@quota_app.command("set")
@handle_errors
def quota_set(
    bucket: str | None = typer.Option(None, "--bucket", help="The bucket's quota."),
    tenant: str | None = typer.Option(None, "--tenant", help="The tenant's quota (slug)."),
    max_bytes: int | None = typer.Option(None, "--max-bytes", min=0, help="Bytes at most."),
    max_size: str | None = typer.Option(None, "--max-size", help="Size at most: 10GiB, 500MB."),
    max_objects: int | None = typer.Option(None, "--max-objects", min=0, help="Objects at most."),
    data_dir: DataDirOpt = None,
) -> None:
    """Set a bucket's or a tenant's quota; a limit not given stays as it was."""
    if max_bytes is not None and max_size is not None:
        raise InvalidInput(_BOTH_SIZES)
    if max_size is not None:
        max_bytes = parse_size(max_size)
    if max_bytes is None and max_objects is None:
        raise InvalidInput(_NO_LIMIT)
    services, context = _open(data_dir)
    with unit_of_work(services) as session:
        owner = _quota_target(session, bucket, tenant)
        if owner is not None:
            current = service.tenant_usage(session=session, tenant_id=owner.id)
            held = (current.quota_bytes, current.quota_objects)
        else:
            assert bucket is not None
            ref = service.bucket_ref(session, bucket)
            row = session.get(Bucket, ref.id)
            assert row is not None
            held = (row.quota_bytes, row.quota_objects)
        chosen_bytes = max_bytes if max_bytes is not None else held[0]
        chosen_objects = max_objects if max_objects is not None else held[1]
        service.set_quota(
            session=session,
            actor=cli_actor(),
            bucket=bucket,
            tenant_id=owner.id if owner is not None else None,
            max_bytes=chosen_bytes,
            max_objects=chosen_objects,
            context=context,
        )
    what = f"bucket {bucket}" if bucket else f"tenant {tenant}"
    console.print(f"quota of {what}: {_quota(chosen_bytes, chosen_objects)}", highlight=False)


@quota_app.command("clear")
@handle_errors
def quota_clear(
    bucket: str | None = typer.Option(None, "--bucket", help="The bucket's quota."),
    tenant: str | None = typer.Option(None, "--tenant", help="The tenant's quota (slug)."),
    data_dir: DataDirOpt = None,
) -> None:
    """Lift a bucket's or a tenant's quota (both limits)."""
    services, context = _open(data_dir)
    with unit_of_work(services) as session:
        owner = _quota_target(session, bucket, tenant)
        service.set_quota(
            session=session,
            actor=cli_actor(),
            bucket=bucket,
            tenant_id=owner.id if owner is not None else None,
            max_bytes=None,
            max_objects=None,
            context=context,
        )
    what = f"bucket {bucket}" if bucket else f"tenant {tenant}"
    console.print(f"quota of {what}: none", highlight=False)


# ---- integrity and keys ----------------------------------------------------------------------


@store_app.command("fsck")
@handle_errors
def check(
    repair: bool = typer.Option(False, "--repair", help="Mend what can be mended."),
    deep: bool = typer.Option(False, "--deep", help="Read every blob in full (finds bit rot)."),
    older_than: int = typer.Option(
        60, "--older-than-minutes", min=0, help="Unreferenced blobs younger than this are kept."
    ),
    every: int = typer.Option(1000, "--progress-every", min=1, help="Blobs between progress."),
    data_dir: DataDirOpt = None,
) -> None:
    """Check stored blobs against the metadata, and the usage counters; exit 1 if anything is
    wrong and not repaired."""
    services, context = _open(data_dir)

    def progress(done: int) -> None:
        err_console.print(f"fsck: {done} blobs checked", highlight=False)

    with unit_of_work(services) as session:
        report = fsck.check(
            session=session,
            context=context,
            repair=repair,
            deep=deep,
            older_than=timedelta(minutes=older_than),
            progress=progress,
            every=every,
        )
    for finding in report.findings:
        console.print(finding.describe(), highlight=False, markup=False, soft_wrap=True)
    console.print(report.summary(), highlight=False, markup=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@store_app.command("rotate-master-key")
@handle_errors
def rotate_master_key(data_dir: DataDirOpt = None) -> None:
    """Make a new master key and wrap every data key and access-key secret under it."""
    services, context = _open(data_dir)
    new_id = context.master.rotate()
    with unit_of_work(services) as session:
        data_keys, access_keys = keys.rewrap_keys(
            session=session, actor=cli_actor(), context=context
        )
    context.forget_keys()
    console.print(
        f"master key {new_id}: rewrapped {data_keys} data keys and {access_keys} access keys",
        highlight=False,
    )


store_app.add_typer(bucket_app, name="bucket")
store_app.add_typer(key_app, name="key")
store_app.add_typer(quota_app, name="quota")
