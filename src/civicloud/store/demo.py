"""Store's part of the demo world (``Module.demo``; the core's demo world is made first).

Dalian's administrator (``dalian.admin``) becomes its Store administrator; Dalian gets a
private, versioned archive of documents in folders (``dalian-archive``) and a public-read bucket
of open data (``dalian-open-data``: CSV files in Chinese and English), every object written as
an upload is (encrypted under Dalian's data key, durable before it is committed).

The demo's access key: issued once, on the first run, for ``dalian.admin``. Every later run
finds it again and prints its secret once more, unwrapped with the master key as the S3 port
unwraps it to check a signature: a demo convenience, so that the ``aws`` command printed keeps
working across runs. Only the demo does this; a real key's secret is shown once, when it is
issued (``civicloud store key create``). If the demo key was revoked, or its user's password
changed, a new one is issued.
"""

# The demo's Chinese texts use Chinese punctuation (full-width commas and parentheses).
# ruff: noqa: RUF001

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloud.core import identity, roles, tenants
from civicloud.core.actor import Actor
from civicloud.core.services import Services
from civicloud.core.tenants.models import Tenant
from civicloud.store import keys, objects, service
from civicloud.store.context import StoreContext
from civicloud.store.errors import NoSuchKey
from civicloud.store.models import AccessKey, Bucket

#: The demo user who administers Dalian's storage, and the role it is given there.
DEMO_STORE_USER = "dalian.admin"
DEMO_STORE_TENANT = "dalian"
DEMO_STORE_ROLE = "store_admin"
#: How the demo recognises its own access key on a later run.
DEMO_KEY_DESCRIPTION = "civicloud demo key"


@dataclass(frozen=True)
class DemoFile:
    """An object of the demo: its key, content type and text (UTF-8)."""

    key: str
    content_type: str
    text: str


@dataclass(frozen=True)
class DemoBucket:
    """A demo bucket of Dalian's, with its ACL, versioning and files."""

    name: str
    acl: str
    versioned: bool
    files: tuple[DemoFile, ...]


_AIR_QUALITY = """日期 Date,监测点 Station,AQI,首要污染物 Primary pollutant,PM2.5 (μg/m³),PM10 (μg/m³),等级 Grade
2025-05-01,星海三站 Xinghai 3,42,—,21,38,优 Excellent
2025-05-01,青泥洼桥 Qingniwaqiao,48,—,25,44,优 Excellent
2025-05-01,甘井子 Ganjingzi,57,PM10,29,63,良 Good
2025-05-02,星海三站 Xinghai 3,39,—,18,35,优 Excellent
2025-05-02,青泥洼桥 Qingniwaqiao,51,PM2.5,36,49,良 Good
2025-05-02,甘井子 Ganjingzi,62,PM10,31,74,良 Good
2025-05-03,星海三站 Xinghai 3,35,—,15,31,优 Excellent
2025-05-03,青泥洼桥 Qingniwaqiao,44,—,22,41,优 Excellent
2025-05-03,甘井子 Ganjingzi,53,PM10,27,56,良 Good
"""

_BUS_STOPS = """站点编号 Stop ID,站点名称 Name (zh),Name (en),区 District,纬度 Latitude,经度 Longitude,线路 Lines
DL0101,中山广场,Zhongshan Square,中山区 Zhongshan,38.9178,121.6386,"2,13,16,30"
DL0102,友好广场,Youhao Square,中山区 Zhongshan,38.9155,121.6301,"5,16,23"
DL0103,人民路,Renmin Road,中山区 Zhongshan,38.9201,121.6452,"13,30,801"
DL0211,西安路,Xi'an Road,沙河口区 Shahekou,38.9066,121.5905,"10,15,22,406"
DL0212,星海广场,Xinghai Square,沙河口区 Shahekou,38.8818,121.5860,"22,23,28"
DL0305,大连北站,Dalian North Railway Station,甘井子区 Ganjingzi,38.9823,121.5967,"2,401,532"
"""

_OPEN_DATA_README = """大连市公共数据开放 · Dalian Open Data

本桶中的数据为演示数据，可公开读取，无需密钥。
The data in this bucket is demo data, readable by anyone without a key.

air-quality/2025-05.csv   空气质量日报 Daily air quality by monitoring station
transport/bus-stops.csv   公交站点 Bus stops with their lines and coordinates

许可 Licence: CC BY 4.0
"""

_REGULATION = """大连市政务数据安全管理办法（演示文本）

第一条 为加强本市政务数据安全管理，保障数据依法有序流动，制定本办法。
第二条 本市行政区域内政务数据的收集、存储、使用、加工、传输、提供、公开等活动，适用本办法。
第三条 政务数据应当存储在本市境内，重要数据实行分级分类保护。

Dalian Government Data Security Measures (demo text)

Article 1. These measures strengthen the security of government data in the city.
Article 2. They apply to collecting, storing, using and publishing government data.
Article 3. Government data is stored within the city; important data is classified.
"""

_MINUTES = """# 市政府常务会议纪要 · Executive meeting minutes

- 日期 Date: 2025-03-12
- 议题 Topics: 智慧城市二期 (Smart City phase 2); 供水管网改造 (water mains renewal)

## 决定 Decisions

1. 批准政务云存储扩容方案。Approve the government cloud storage expansion.
2. 供水管网改造于四月开工。Water mains renewal starts in April.
"""

_BUDGET = """项目 Item,2024 预算 Budget (万元 10k CNY),2024 决算 Actual (万元 10k CNY)
政务云 Government cloud,1200,1134
智慧交通 Smart traffic,860,902
供水管网 Water mains,2300,2187
"""

_REPORT = """大连市2024年国民经济和社会发展统计公报（摘要，演示）
Dalian 2024 Statistical Communiqué (summary, demo)

全市地区生产总值 GDP: 9,516.8 亿元 (100 million CNY)
常住人口 Resident population: 753.9 万人 (10k people)
港口货物吞吐量 Port cargo throughput: 3.0 亿吨 (100 million tonnes)
"""

DEMO_BUCKETS: tuple[DemoBucket, ...] = (
    DemoBucket(
        "dalian-archive",
        "private",
        True,
        (
            DemoFile(
                "政策文件/2025/政务数据安全管理办法.txt", "text/plain; charset=utf-8", _REGULATION
            ),
            DemoFile(
                "meetings/2025-03-12-executive-meeting.md", "text/markdown; charset=utf-8", _MINUTES
            ),
            DemoFile("finance/2024/budget-summary.csv", "text/csv; charset=utf-8", _BUDGET),
            DemoFile(
                "reports/2024/statistical-communique.txt", "text/plain; charset=utf-8", _REPORT
            ),
        ),
    ),
    DemoBucket(
        "dalian-open-data",
        "public-read",
        False,
        (
            DemoFile("README.txt", "text/plain; charset=utf-8", _OPEN_DATA_README),
            DemoFile("air-quality/2025-05.csv", "text/csv; charset=utf-8", _AIR_QUALITY),
            DemoFile("transport/bus-stops.csv", "text/csv; charset=utf-8", _BUS_STOPS),
        ),
    ),
)


def _grant_role(session: Session, actor: Actor, tenant: Tenant) -> bool:
    """Give the demo user the Store role at Dalian; whether the user exists."""
    user = identity.get_user_by_username(session=session, username=DEMO_STORE_USER)
    if user is None:
        return False
    held = {
        (b.role_name, b.tenant_id)
        for b in roles.list_bindings(session=session, actor=actor, user_id=user.id)
    }
    if (DEMO_STORE_ROLE, tenant.id) not in held:
        roles.grant_role(
            session=session,
            actor=actor,
            data=roles.RoleBindingCreate(
                user_id=user.id, role_name=DEMO_STORE_ROLE, tenant_id=tenant.id
            ),
        )
    return True


def _put(
    session: Session, context: StoreContext, bucket: service.BucketRef, file: DemoFile
) -> bool:
    """Write one file unless its key is there already; whether it was written."""
    try:
        objects.find_version(session, bucket, file.key, None)
    except NoSuchKey:
        pass
    else:
        return False
    key = context.active_key(session, bucket.tenant_id)
    assert key is not None  # the bucket's creation made the tenant's data key
    data = file.text.encode("utf-8")
    written = objects.write_blob(
        context, key, objects.Incoming(read=io.BytesIO(data).read, length=len(data))
    )
    objects.commit_version(
        session=session,
        bucket=bucket,
        key=file.key,
        new=objects.NewVersion(
            size=written.size,
            etag=written.etag,
            headers={"content-type": file.content_type},
            acl="public-read" if bucket.acl == "public-read" else "private",
            blob_id=written.blob_id,
            data_key_id=written.data_key_id,
        ),
        owner_id=None,
    )
    return True


def _buckets(session: Session, actor: Actor, context: StoreContext, tenant: Tenant) -> list[str]:
    said: list[str] = []
    for spec in DEMO_BUCKETS:
        existing = session.scalar(select(Bucket).where(Bucket.name == spec.name))
        if existing is not None and existing.tenant_id != tenant.id:
            said.append(f"Store: bucket {spec.name} belongs to another tenant; left alone")
            continue
        if existing is None:
            service.create_bucket(
                session=session,
                actor=actor,
                context=context,
                name=spec.name,
                tenant_id=tenant.id,
                acl=spec.acl,
            )
            if spec.versioned:
                service.set_versioning(
                    session=session, actor=actor, name=spec.name, status="Enabled"
                )
        ref = service.bucket_ref(session, spec.name)
        written = sum(_put(session, context, ref, file) for file in spec.files)
        said.append(
            f"Store: bucket {spec.name} ({ref.acl}, {len(spec.files)} files"
            f"{f', {written} written now' if written else ''})"
        )
    return said


def _demo_key(session: Session, actor: Actor, context: StoreContext) -> tuple[str, str] | None:
    """The demo user's demo key and its secret: the one made on an earlier run if it still
    works, else a new one."""
    user = identity.get_user_by_username(session=session, username=DEMO_STORE_USER)
    if user is None:
        return None
    found: Sequence[AccessKey] = session.scalars(
        select(AccessKey)
        .where(
            AccessKey.user_id == user.id,
            AccessKey.description == DEMO_KEY_DESCRIPTION,
            AccessKey.revoked_at.is_(None),
        )
        .order_by(AccessKey.created_at)
    ).all()
    for key in found:
        if key.password_mark == keys.password_mark(user):
            bound = key.access_key_id.encode()
            secret = context.master.unwrap(key.secret_wrapped, context=bound).decode()
            return key.access_key_id, secret
    issued = keys.issue_key(
        session=session,
        actor=actor,
        context=context,
        user_id=user.id,
        description=DEMO_KEY_DESCRIPTION,
    )
    return issued.key.access_key_id, issued.secret


def endpoint(context: StoreContext) -> str:
    """Where a client on this machine reaches the S3 port, as the settings say."""
    settings = context.settings
    if settings.public_url:
        return settings.public_url.rstrip("/")
    scheme = "http" if settings.tls == "off" else "https"
    host = settings.s3_host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a name, not a bind
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    if settings.tls != "off" and host in ("127.0.0.1", "[::1]"):
        host = "localhost"  # the self-signed certificate names localhost
    port = str(settings.s3_port) if settings.s3_port else "PORT"
    return f"{scheme}://{host}:{port}"


def aws(context: StoreContext) -> str:
    """``aws`` with the options that reach this S3 port (its self-signed CA, if it has one)."""
    extra = ""
    if context.settings.tls == "self-signed":
        extra = f" --ca-bundle {context.data_dir / 'store' / 'tls' / 's3-cert.pem'}"
    return f"aws --endpoint-url {endpoint(context)}{extra}"


def aws_command(context: StoreContext, access_key_id: str, secret: str) -> str:
    """The ``aws`` command that lists the demo user's buckets."""
    return f"AWS_ACCESS_KEY_ID={access_key_id} AWS_SECRET_ACCESS_KEY={secret} {aws(context)} s3 ls"


def seed(*, session: Session, services: Services, context: object) -> list[str]:
    """Dalian's Store role, buckets and files, and the demo's access key (idempotent); what to
    tell the person trying it."""
    if not isinstance(context, StoreContext):
        context = services.context("store", StoreContext)
    assert isinstance(context, StoreContext)
    actor = Actor.system("demo")
    tenant = tenants.get_tenant_by_slug(session=session, slug=DEMO_STORE_TENANT)
    if tenant is None:
        return []
    said: list[str] = []
    if _grant_role(session, actor, tenant):
        said += ["Store roles:", f"  {DEMO_STORE_USER:<16} {DEMO_STORE_ROLE}@{DEMO_STORE_TENANT}"]
    said += _buckets(session, actor, context, tenant)
    made = _demo_key(session, actor, context)
    if made is not None:
        access_key_id, secret = made
        said += [
            f"Store: the S3 access key of {DEMO_STORE_USER} (demo only: shown on every run):",
            f"  export AWS_ACCESS_KEY_ID={access_key_id}",
            f"  export AWS_SECRET_ACCESS_KEY={secret}",
            f"  {aws(context)} s3 ls",
            f"  {aws(context)} s3 ls s3://dalian-open-data --recursive",
        ]
    return said
