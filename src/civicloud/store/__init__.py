"""Store: tenant-isolated, S3-compatible object storage that unmodified S3 clients use.

Every bucket belongs to a tenant and lives in that tenant's home region; objects are encrypted
at rest under per-tenant data keys wrapped by the installation's master key, made durable before
they are acknowledged, and checked again when read. The S3 port is a platform listener
(``--s3-port``, default 9000); the console and ``civicloud store`` manage buckets, keys, quotas
and usage. See docs/modules/store.md.

``MODULE`` is Store's one declaration of everything it brings to an installation.
"""

from pathlib import Path

from civicloud.core.i18n import N_
from civicloud.core.modules import HomeCard, Job, Listener, ListenerOption, Module, NavEntry
from civicloud.core.permissions import RoleSpec
from civicloud.store.settings import StoreSettings

_HERE = Path(__file__).resolve().parent

MODULE = Module(
    name="store",
    title=N_("Store"),
    permissions={
        "store.bucket.read": N_("See buckets, their settings and usage"),
        "store.bucket.admin": N_(
            "Create and delete buckets, change their versioning, ACL and quota"
        ),
        "store.object.read": N_("List and read objects"),
        "store.object.write": N_("Upload, copy and delete objects"),
        "store.quota.admin": N_("Set tenants' storage quotas"),
        "store.log.read": N_("Read and export the storage access log"),
    },
    roles=(
        RoleSpec(
            "store_reader",
            "存储只读用户",
            "Store reader",
            ("core.tenant.read", "store.bucket.read", "store.object.read"),
        ),
        RoleSpec(
            "store_writer",
            "存储读写用户",
            "Store writer",
            ("core.tenant.read", "store.bucket.read", "store.object.read", "store.object.write"),
        ),
        RoleSpec(
            "store_admin",
            "存储管理员",
            "Store administrator",
            ("core.tenant.read", "store.*"),
        ),
    ),
    models=("civicloud.store.models",),
    settings=StoreSettings,
    context="civicloud.store.context:build",
    cli="civicloud.store.cli:store_app",
    demo="civicloud.store.demo:seed",
    api="civicloud.store.api:router",
    pages="civicloud.store.web:router",
    templates=_HERE / "templates",
    locales=_HERE / "locales",
    static=_HERE / "static",
    stylesheets=("store.css",),
    labels={
        "bucket": N_("The bucket"),
        "access_key_id": N_("The access key"),
        "bucket_name": N_("The bucket's name"),
    },
    nav=(NavEntry("store", "/console/store", N_("Store"), permission="store.*"),),
    errors="civicloud.store.errors",
    jobs=(
        Job(
            "store.clean_uploads",
            N_("Abort stale multipart uploads"),
            "civicloud.store.jobs:clean_uploads",
            every_seconds=600.0,
        ),
        Job(
            "store.collect_garbage",
            N_("Delete stored bytes nothing refers to"),
            "civicloud.store.jobs:collect_garbage",
            every_seconds=60.0,
        ),
        Job(
            "store.sample_usage",
            N_("Record tenants' storage usage"),
            "civicloud.store.jobs:sample_usage",
            every_seconds=300.0,
        ),
    ),
    listeners=(
        Listener(
            "store.s3",
            N_("S3 port"),
            "civicloud.store.s3.listener:start_s3",
            options=(ListenerOption("--s3-port", "s3_port", "The S3 port (0: any free port)."),),
        ),
    ),
    home=HomeCard(
        title=N_("Cloud storage"),
        summary=N_(
            "S3-compatible object storage for every department, encrypted and kept in its region."
        ),
        items=(N_("S3-compatible"), N_("Encrypted at rest"), N_("Data residency")),
    ),
    migrations=_HERE / "migrations",
)

__all__ = ["MODULE"]
