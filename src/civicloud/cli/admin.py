"""``civicloud admin``: tenants, users, roles, API keys and regions, as the machine's operator.

Commands act as the platform-wide system actor (whoever holds the shell holds the database)
and are audited under ``system:cli:<os user>``. Tenants are named by slug, users by username.
"""

from __future__ import annotations

import uuid
from typing import TypeVar

import typer
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from civicloud.cli.common import (
    DataDirOpt,
    cli_actor,
    console,
    handle_errors,
    open_services,
    print_rows,
    unit_of_work,
)
from civicloud.core import identity, regions, roles, tenants
from civicloud.core.db import utcnow
from civicloud.core.errors import InvalidInput, NotFound
from civicloud.core.identity import ApiKeyCreate, UserCreate, UserUpdate
from civicloud.core.regions import RegionCreate
from civicloud.core.roles import RoleBindingCreate, RoleCreate
from civicloud.core.tenants import Tenant, TenantCreate, TenantKind, TenantMove, TenantRename

M = TypeVar("M", bound=BaseModel)

admin_app = typer.Typer(
    help="Administer tenants, users, roles, API keys and regions.", no_args_is_help=True
)
tenant_app = typer.Typer(help="The tenant tree.", no_args_is_help=True)
user_app = typer.Typer(help="Users.", no_args_is_help=True)
role_app = typer.Typer(help="Roles and role bindings.", no_args_is_help=True)
key_app = typer.Typer(help="API keys.", no_args_is_help=True)
region_app = typer.Typer(help="Data-residency regions.", no_args_is_help=True)


def _tenant(session: Session, slug: str) -> Tenant:
    found = tenants.get_tenant_by_slug(session=session, slug=slug)
    if found is None:
        raise NotFound("no tenant with slug %(slug)s", params={"slug": repr(slug)})
    return found


def _user(session: Session, username: str) -> identity.User:
    found = identity.get_user_by_username(session=session, username=username)
    if found is None:
        raise NotFound("no user %(username)s", params={"username": repr(username)})
    return found


# --- tenants -------------------------------------------------------------------------------


@tenant_app.command("list")
@handle_errors
def tenant_list(
    data_dir: DataDirOpt = None,
    root: str | None = typer.Option(None, help="Only this slug's subtree."),
) -> None:
    """Show the tenant tree."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        root_id = _tenant(session, root).id if root else None
        rows = tenants.list_tenants(
            session=session, actor=cli_actor(), root_id=root_id, limit=100_000
        )
        print_rows(
            "tenants",
            ["slug", "name", "kind", "region", "id"],
            [
                ["  " * t.depth + t.slug, f"{t.name_zh} / {t.name_en}", t.kind, t.region_code, t.id]
                for t in rows
            ],
        )


@tenant_app.command("create")
@handle_errors
def tenant_create(
    slug: str,
    name_zh: str = typer.Option(..., "--name-zh", help="Chinese display name."),
    name_en: str = typer.Option(..., "--name-en", help="English display name."),
    kind: TenantKind = typer.Option(..., help="What the tenant is."),
    parent: str | None = typer.Option(None, help="Parent slug (none: a root tenant)."),
    region: str | None = typer.Option(None, help="Home region (default: the parent's)."),
    data_dir: DataDirOpt = None,
) -> None:
    """Create a tenant."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        parent_id = _tenant(session, parent).id if parent else None
        data = _validated(
            TenantCreate,
            slug=slug,
            name_zh=name_zh,
            name_en=name_en,
            kind=kind,
            parent_id=parent_id,
            region_code=region,
        )
        created = tenants.create_tenant(session=session, actor=cli_actor(), data=data)
        console.print(f"created tenant {created.slug} ({created.id})")


@tenant_app.command("rename")
@handle_errors
def tenant_rename(
    slug: str,
    name_zh: str | None = typer.Option(None, "--name-zh"),
    name_en: str | None = typer.Option(None, "--name-en"),
    data_dir: DataDirOpt = None,
) -> None:
    """Change a tenant's display names."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        tenant = _tenant(session, slug)
        data = _validated(TenantRename, name_zh=name_zh, name_en=name_en)
        tenants.rename_tenant(session=session, actor=cli_actor(), tenant_id=tenant.id, data=data)
        console.print(f"renamed {slug}")


@tenant_app.command("move")
@handle_errors
def tenant_move(
    slug: str, parent: str = typer.Option(..., help="New parent slug."), data_dir: DataDirOpt = None
) -> None:
    """Move a tenant (and its subtree) under another parent."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        tenant, new_parent = _tenant(session, slug), _tenant(session, parent)
        tenants.move_tenant(
            session=session,
            actor=cli_actor(),
            tenant_id=tenant.id,
            data=TenantMove(parent_id=new_parent.id),
        )
        console.print(f"moved {slug} under {parent}")


@tenant_app.command("delete")
@handle_errors
def tenant_delete(slug: str, data_dir: DataDirOpt = None) -> None:
    """Delete a tenant that has no children and owns nothing."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        tenants.delete_tenant(
            session=session, actor=cli_actor(), tenant_id=_tenant(session, slug).id
        )
        console.print(f"deleted {slug}")


# --- users ---------------------------------------------------------------------------------


@user_app.command("list")
@handle_errors
def user_list(
    data_dir: DataDirOpt = None,
    tenant: str | None = typer.Option(None, help="Only below this slug."),
) -> None:
    """Show users."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        tenant_id = _tenant(session, tenant).id if tenant else None
        rows = identity.list_users(
            session=session, actor=cli_actor(), tenant_id=tenant_id, limit=100_000
        )
        print_rows(
            "users",
            ["username", "name", "active", "id"],
            [[u.username, u.display_name, u.is_active, u.id] for u in rows],
        )


@user_app.command("create")
@handle_errors
def user_create(
    username: str,
    tenant: str = typer.Option(..., help="Home tenant slug."),
    display_name: str | None = typer.Option(None, "--display-name"),
    email: str | None = typer.Option(None),
    password: str | None = typer.Option(
        None, help="Initial password (prompted for when --prompt-password)."
    ),
    prompt_password: bool = typer.Option(False, "--prompt-password", help="Ask for the password."),
    data_dir: DataDirOpt = None,
) -> None:
    """Create a user."""
    if prompt_password:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        data = _validated(
            UserCreate,
            username=username,
            display_name=display_name or username,
            email=email,
            password=password,
            tenant_id=_tenant(session, tenant).id,
        )
        user = identity.create_user(
            session=session, actor=cli_actor(), data=data, passwords=services.passwords
        )
        console.print(f"created user {user.username} ({user.id})")


def _live_keys(session: Session, user: identity.User) -> list[identity.ApiKey]:
    return [
        k
        for k in identity.list_api_keys(session=session, actor=cli_actor(), user_id=user.id)
        if k.revoked_at is None and k.expires_at > utcnow()
    ]


@user_app.command("set-password")
@handle_errors
def user_set_password(
    username: str,
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True),
    data_dir: DataDirOpt = None,
) -> None:
    """Set a user's password: ends its browser sessions and revokes its API keys."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        user = _user(session, username)
        live = [k.prefix for k in _live_keys(session, user)]
        identity.update_user(
            session=session,
            actor=cli_actor(),
            user_id=user.id,
            data=_validated(UserUpdate, password=password),
            passwords=services.passwords,
        )
        console.print(f"password of {username} changed; sessions ended")
        if live:
            console.print(f"API keys revoked: {', '.join(live)}")


@user_app.command("deactivate")
@handle_errors
def user_deactivate(username: str, data_dir: DataDirOpt = None) -> None:
    """Deactivate a user and end its browser sessions (never the last platform administrator)."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        user = _user(session, username)
        identity.update_user(
            session=session,
            actor=cli_actor(),
            user_id=user.id,
            data=UserUpdate(is_active=False),
            passwords=services.passwords,
        )
        console.print(f"{username} deactivated")


# --- roles ---------------------------------------------------------------------------------


@role_app.command("list")
@handle_errors
def role_list(data_dir: DataDirOpt = None) -> None:
    """Show roles and their permissions."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        rows = roles.list_roles(session=session)
        print_rows(
            "roles",
            ["name", "name", "permissions"],
            [[r.name, f"{r.name_zh} / {r.name_en}", ", ".join(r.permissions)] for r in rows],
        )


@role_app.command("create")
@handle_errors
def role_create(
    name: str,
    permission: list[str] = typer.Option(
        ..., "--permission", "-p", help="A permission or pattern (repeatable)."
    ),
    name_zh: str = typer.Option(..., "--name-zh"),
    name_en: str = typer.Option(..., "--name-en"),
    data_dir: DataDirOpt = None,
) -> None:
    """Define a custom role."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        data = _validated(
            RoleCreate, name=name, name_zh=name_zh, name_en=name_en, permissions=permission
        )
        roles.create_role(session=session, actor=cli_actor(), data=data)
        console.print(f"created role {name}")


@role_app.command("grant")
@handle_errors
def role_grant(
    username: str,
    role: str,
    tenant: str | None = typer.Option(None, help="Tenant slug (omit with --platform)."),
    platform: bool = typer.Option(False, "--platform", help="Grant platform-wide."),
    data_dir: DataDirOpt = None,
) -> None:
    """Grant a role to a user at a tenant (or platform-wide)."""
    if (tenant is None) == (not platform):
        raise InvalidInput("give exactly one of --tenant SLUG or --platform")
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        tenant_id = _tenant(session, tenant).id if tenant else None
        data = _validated(
            RoleBindingCreate,
            user_id=_user(session, username).id,
            role_name=role,
            tenant_id=tenant_id,
        )
        binding = roles.grant_role(session=session, actor=cli_actor(), data=data)
        console.print(f"granted {role} to {username} at {tenant or 'platform'} ({binding.id})")


@role_app.command("revoke")
@handle_errors
def role_revoke(binding_id: uuid.UUID, data_dir: DataDirOpt = None) -> None:
    """Revoke a role binding by its id (see `admin role bindings`); never the last platform
    administrator's."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        roles.revoke_role(session=session, actor=cli_actor(), binding_id=binding_id)
        console.print(f"revoked {binding_id}")


@role_app.command("bindings")
@handle_errors
def role_bindings(username: str | None = typer.Argument(None), data_dir: DataDirOpt = None) -> None:
    """Show role bindings (of one user)."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        user_id = _user(session, username).id if username else None
        rows = roles.list_bindings(session=session, actor=cli_actor(), user_id=user_id)
        names = {
            u.id: u.username
            for u in identity.list_users(session=session, actor=cli_actor(), limit=100_000)
        }
        slugs = {
            t.id: t.slug
            for t in tenants.list_tenants(session=session, actor=cli_actor(), limit=100_000)
        }
        print_rows(
            "role bindings",
            ["id", "user", "role", "tenant"],
            [
                [
                    b.id,
                    names.get(b.user_id, b.user_id),
                    b.role_name,
                    slugs.get(b.tenant_id, "platform") if b.tenant_id else "platform",
                ]
                for b in rows
            ],
        )


# --- API keys ------------------------------------------------------------------------------


@key_app.command("create")
@handle_errors
def key_create(
    username: str,
    name: str = typer.Option(..., help="What the key is for."),
    days: int | None = typer.Option(None, min=1, max=3650, help="Days until it expires."),
    data_dir: DataDirOpt = None,
) -> None:
    """Create an API key for a user; the token is printed once."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        issued = identity.issue_api_key(
            session=session,
            actor=cli_actor(),
            data=_validated(ApiKeyCreate, name=name, expires_in_days=days),
            default_days=services.settings.auth.api_key_days,
            user_id=_user(session, username).id,
        )
    console.print(
        f"API key {issued.key.prefix} for {username}, expires {issued.key.expires_at:%Y-%m-%d}."
    )
    console.print("Store this token now; it is not shown again:")
    console.print(issued.token, highlight=False, soft_wrap=True)


@key_app.command("list")
@handle_errors
def key_list(username: str, data_dir: DataDirOpt = None) -> None:
    """Show a user's API keys."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        rows = identity.list_api_keys(
            session=session, actor=cli_actor(), user_id=_user(session, username).id
        )
        print_rows(
            "API keys",
            ["prefix", "name", "expires", "revoked", "last used"],
            [
                [
                    k.prefix,
                    k.name,
                    f"{k.expires_at:%Y-%m-%d}",
                    k.revoked_at and f"{k.revoked_at:%Y-%m-%d %H:%M}",
                    k.last_used_at and f"{k.last_used_at:%Y-%m-%d %H:%M}",
                ]
                for k in rows
            ],
        )


@key_app.command("revoke")
@handle_errors
def key_revoke(prefix: str, data_dir: DataDirOpt = None) -> None:
    """Revoke an API key by its prefix."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        key = identity.get_api_key_by_prefix(session=session, prefix=prefix)
        if key is None:
            raise NotFound("no API key with prefix %(prefix)s", params={"prefix": repr(prefix)})
        identity.revoke_api_key(session=session, actor=cli_actor(), key_id=key.id)
        console.print(f"revoked {prefix}")


# --- regions -------------------------------------------------------------------------------


@region_app.command("list")
@handle_errors
def region_list(data_dir: DataDirOpt = None) -> None:
    """Show the regions."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        rows = regions.list_regions(session=session)
        print_rows(
            "regions",
            ["code", "name", "country"],
            [[r.code, f"{r.name_zh} / {r.name_en}", r.country_code] for r in rows],
        )


@region_app.command("add")
@handle_errors
def region_add(
    code: str,
    name_zh: str = typer.Option(..., "--name-zh"),
    name_en: str = typer.Option(..., "--name-en"),
    country: str = typer.Option(..., help="ISO 3166 country code, e.g. CN."),
    data_dir: DataDirOpt = None,
) -> None:
    """Register a region."""
    services = open_services(data_dir)
    with unit_of_work(services) as session:
        data = _validated(
            RegionCreate, code=code, name_zh=name_zh, name_en=name_en, country_code=country
        )
        regions.create_region(session=session, actor=cli_actor(), data=data)
        console.print(f"added region {code}")


def _validated(model: type[M], **values: object) -> M:
    """Build a Pydantic model, turning validation errors into one ``InvalidInput`` line."""
    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(
            "%(field)s is not valid: %(reason)s", params={"field": where, "reason": first["msg"]}
        ) from None


def register(root: typer.Typer) -> None:
    """Add the ``admin`` group."""
    admin_app.add_typer(tenant_app, name="tenant")
    admin_app.add_typer(user_app, name="user")
    admin_app.add_typer(role_app, name="role")
    admin_app.add_typer(key_app, name="apikey")
    admin_app.add_typer(region_app, name="region")
    root.add_typer(admin_app, name="admin")
