"""Who may do what on the S3 port: tenants' keys, narrowed keys, stopped keys, signatures,
presigned URLs, the clock, regions and anonymous access."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import update
from tests.factories.core import SYSTEM, make_tenant
from tests.factories.store import S3Member
from tests.functional.store.conftest import Port, bucket_name, client

from civicloud.core.db import utcnow
from civicloud.core.identity.models import User
from civicloud.core.services import Services
from civicloud.core.tenants.models import Tenant
from civicloud.store import keys, sigv4


def code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback test server
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


@pytest.fixture
def other_tenant(core_services: Services) -> Tenant:
    with core_services.db.unit_of_work() as session:
        return make_tenant(session, parent=make_tenant(session))


def test_another_tenants_key_is_refused(
    s3_http: Port, member: S3Member, other_tenant: Tenant, member_factory: Any
) -> None:
    mine = client(s3_http, member)
    name = bucket_name()
    mine.create_bucket(Bucket=name)
    mine.put_object(Bucket=name, Key="secret", Body=b"s")
    theirs = client(s3_http, member_factory(other_tenant))
    for attempt in (
        lambda: theirs.get_object(Bucket=name, Key="secret"),
        lambda: theirs.put_object(Bucket=name, Key="x", Body=b"x"),
        lambda: theirs.list_objects_v2(Bucket=name),
        lambda: theirs.delete_object(Bucket=name, Key="secret"),
        lambda: theirs.delete_bucket(Bucket=name),
        lambda: theirs.put_bucket_acl(Bucket=name, ACL="public-read"),
    ):
        with pytest.raises(ClientError) as refused:
            attempt()
        assert code(refused.value) == "AccessDenied"
    assert [b["Name"] for b in theirs.list_buckets()["Buckets"]] == []
    assert mine.get_object(Bucket=name, Key="secret")["Body"].read() == b"s"


def test_a_bucket_name_is_the_installations(
    s3_http: Port, member: S3Member, other_tenant: Tenant, member_factory: Any
) -> None:
    name = bucket_name()
    client(s3_http, member).create_bucket(Bucket=name)
    with pytest.raises(ClientError) as taken:
        client(s3_http, member_factory(other_tenant)).create_bucket(Bucket=name)
    assert code(taken.value) == "BucketAlreadyExists"
    with pytest.raises(ClientError) as owned:
        client(s3_http, member).create_bucket(Bucket=name)
    assert code(owned.value) == "BucketAlreadyOwnedByYou"


def test_roles_limit_what_a_key_does(s3_http: Port, tenant: Tenant, member_factory: Any) -> None:
    admin = client(s3_http, member_factory(tenant))
    name = bucket_name()
    admin.create_bucket(Bucket=name)
    admin.put_object(Bucket=name, Key="k", Body=b"v")
    reader = client(s3_http, member_factory(tenant, role="store_reader"))
    assert reader.get_object(Bucket=name, Key="k")["Body"].read() == b"v"
    with pytest.raises(ClientError) as no_write:
        reader.put_object(Bucket=name, Key="k", Body=b"w")
    assert code(no_write.value) == "AccessDenied"
    writer = client(s3_http, member_factory(tenant, role="store_writer"))
    writer.put_object(Bucket=name, Key="k2", Body=b"w")
    with pytest.raises(ClientError) as no_admin:
        writer.delete_bucket(Bucket=name)
    assert code(no_admin.value) == "AccessDenied"
    nobody = client(s3_http, member_factory(tenant, role=None))
    with pytest.raises(ClientError) as no_role:
        nobody.get_object(Bucket=name, Key="k")
    assert code(no_role.value) == "AccessDenied"


def test_a_narrowed_key_stays_in_its_buckets_prefixes_and_reads(
    s3_http: Port, tenant: Tenant, member_factory: Any
) -> None:
    admin = client(s3_http, member_factory(tenant))
    allowed, other = bucket_name(), bucket_name()
    admin.create_bucket(Bucket=allowed)
    admin.create_bucket(Bucket=other)
    admin.put_object(Bucket=allowed, Key="open/a", Body=b"a")
    admin.put_object(Bucket=allowed, Key="closed/b", Body=b"b")
    narrow = client(
        s3_http,
        member_factory(tenant, buckets=[allowed], prefixes=["open/"], read_only=True),
    )
    assert narrow.get_object(Bucket=allowed, Key="open/a")["Body"].read() == b"a"
    listed = narrow.list_objects_v2(Bucket=allowed, Prefix="open/")
    assert [o["Key"] for o in listed["Contents"]] == ["open/a"]
    for attempt in (
        lambda: narrow.list_objects_v2(Bucket=allowed),
        lambda: narrow.list_objects_v2(Bucket=allowed, Prefix="closed/"),
        lambda: narrow.get_object(Bucket=allowed, Key="closed/b"),
        lambda: narrow.put_object(Bucket=allowed, Key="open/new", Body=b"x"),
        lambda: narrow.list_objects_v2(Bucket=other),
        lambda: narrow.create_bucket(Bucket=bucket_name()),
    ):
        with pytest.raises(ClientError) as refused:
            attempt()
        assert code(refused.value) == "AccessDenied"
    assert [b["Name"] for b in narrow.list_buckets()["Buckets"]] == [allowed]


def test_a_key_stops_with_its_user_its_password_or_its_revocation(
    core_services: Services, store_context: Any, s3_http: Port, tenant: Tenant, member_factory: Any
) -> None:
    first, second, third = (member_factory(tenant) for _ in range(3))
    for m in (first, second, third):
        client(s3_http, m).list_buckets()
    with core_services.db.unit_of_work() as session:
        session.execute(update(User).where(User.id == first.user.id).values(is_active=False))
        session.execute(
            update(User).where(User.id == second.user.id).values(password_hash="$argon2id$new")
        )
        keys.revoke_key(session=session, actor=SYSTEM, access_key_id=third.access_key)
    store_context.credentials.clear()
    for m in (first, second, third):
        with pytest.raises(ClientError) as stopped:
            client(s3_http, m).list_buckets()
        assert code(stopped.value) == "InvalidAccessKeyId"


def test_a_wrong_secret_or_unknown_key_is_refused(s3_http: Port, member: S3Member) -> None:
    last = "y" if member.secret.endswith("x") else "x"  # never the right secret by chance
    wrong = S3Member(member.user, member.tenant, member.access_key, member.secret[:-1] + last)
    with pytest.raises(ClientError) as bad:
        client(s3_http, wrong).list_buckets()
    assert code(bad.value) == "SignatureDoesNotMatch"
    unknown = S3Member(member.user, member.tenant, "CCUNKNOWNKEY00000000", member.secret)
    with pytest.raises(ClientError) as missing:
        client(s3_http, unknown).list_buckets()
    assert code(missing.value) == "InvalidAccessKeyId"


def test_a_skewed_clock_is_refused(
    s3_http: Port, member: S3Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    import botocore.auth

    real = botocore.auth.datetime.datetime  # type: ignore[attr-defined]

    class Skewed(real):  # type: ignore[misc, valid-type]
        @classmethod
        def utcnow(cls) -> Any:
            return real.utcnow() - timedelta(minutes=20)

        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return real.now(tz) - timedelta(minutes=20)

    monkeypatch.setattr(botocore.auth.datetime, "datetime", Skewed)
    with pytest.raises(ClientError) as skewed:
        client(s3_http, member).list_buckets()
    assert code(skewed.value) == "RequestTimeTooSkewed"


@pytest.mark.parametrize("version", ["default", "s3v4"])
def test_presigned_urls_work_until_they_expire(
    s3_http: Port, member: S3Member, version: str
) -> None:
    """boto3's default presigns with Signature Version 2; ``s3v4`` with Version 4."""
    s3 = client(s3_http, member, **({} if version == "default" else {"signature_version": "s3v4"}))
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="shared.txt", Body=b"shared")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": name, "Key": "shared.txt"}, ExpiresIn=60
    )
    assert fetch(url) == (200, b"shared")
    tampered = url.replace("shared.txt", "shared.txt2")
    assert fetch(tampered)[0] == 403
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": name, "Key": "up.txt"}, ExpiresIn=60
    )
    # A plain PUT with no Content-Type (a Version 2 URL signs the Content-Type sent).
    parts = urllib.parse.urlsplit(put_url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    connection.request("PUT", f"{parts.path}?{parts.query}", body=b"uploaded")
    answer = connection.getresponse()
    answer.read()
    connection.close()
    assert answer.status == 200
    assert s3.get_object(Bucket=name, Key="up.txt")["Body"].read() == b"uploaded"
    import botocore.auth

    real = botocore.auth.datetime.datetime  # type: ignore[attr-defined]
    past = utcnow() - timedelta(hours=2)

    class Past(real):  # type: ignore[misc, valid-type]
        @classmethod
        def utcnow(cls) -> Any:
            return past.replace(tzinfo=None)

        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return past if tz else past.replace(tzinfo=None)

    original = botocore.auth.datetime.datetime
    botocore.auth.datetime.datetime = Past
    try:
        # Version 2 takes its expiry from the clock as a time; Version 4 from the signing time.
        expired = s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": name, "Key": "shared.txt"},
            ExpiresIn=-3600 if version == "default" else 60,
        )
    finally:
        botocore.auth.datetime.datetime = original
    status, body = fetch(expired)
    assert status == 403
    assert b"<Code>AccessDenied</Code>" in body
    assert b"expired" in body


def test_the_region_signed_must_be_the_buckets_or_the_alias(
    s3_http: Port, member: S3Member
) -> None:
    name = bucket_name()
    client(s3_http, member).create_bucket(Bucket=name)
    assert (
        client(s3_http, member, region="cn-beijing").list_objects_v2(Bucket=name)["KeyCount"] == 0
    )
    # Signed for another region, the request is refused with the bucket's region named, which
    # S3 clients follow: botocore signs again for cn-beijing and gets through.
    host = s3_http.endpoint.removeprefix("http://")
    signed = sigv4.sign_request(
        method="GET",
        host=host,
        path=f"/{name}",
        query=[("list-type", "2")],
        headers={},
        payload_sha256=sigv4.EMPTY_SHA256,
        access_key=member.access_key,
        secret=member.secret,
        region="eu-west-1",
        now=utcnow(),
    )
    connection = http.client.HTTPConnection(host, timeout=10)
    connection.request("GET", f"/{name}?list-type=2", headers=signed)
    answer = connection.getresponse()
    body = answer.read()
    connection.close()
    assert answer.status == 400
    assert b"<Code>AuthorizationHeaderMalformed</Code>" in body
    assert b"<Region>cn-beijing</Region>" in body
    assert client(s3_http, member, region="eu-west-1").list_objects_v2(Bucket=name)["KeyCount"] == 0
    assert client(s3_http, member).get_bucket_location(Bucket=name)["LocationConstraint"] == (
        "cn-beijing"
    )


def test_a_bucket_stays_in_its_tenants_region(s3_http: Port, member: S3Member) -> None:
    s3 = client(s3_http, member)
    with pytest.raises(ClientError) as elsewhere:
        s3.create_bucket(
            Bucket=bucket_name(), CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
    assert code(elsewhere.value) == "InvalidLocationConstraint"
    name = bucket_name()
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "cn-beijing"})
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_anonymous_access_only_where_an_acl_allows(s3_http: Port, member: S3Member) -> None:
    s3 = client(s3_http, member)
    public, private = bucket_name(), bucket_name()
    s3.create_bucket(Bucket=public, ACL="public-read")
    s3.create_bucket(Bucket=private)
    s3.put_object(Bucket=public, Key="open.csv", Body=b"a,b\n")
    s3.put_object(Bucket=private, Key="closed.csv", Body=b"c,d\n")
    assert fetch(f"{s3_http.endpoint}/{public}/open.csv") == (200, b"a,b\n")
    status, listing = fetch(f"{s3_http.endpoint}/{public}")
    assert status == 200
    assert b"<Key>open.csv</Key>" in listing
    for url in (f"{s3_http.endpoint}/{private}/closed.csv", f"{s3_http.endpoint}/{private}"):
        status, body = fetch(url)
        assert status == 403
        assert b"<Code>AccessDenied</Code>" in body
        assert b"<RequestId>" in body
    status, _ = fetch(f"{s3_http.endpoint}/")
    assert status == 403
    anonymous = client(s3_http, None)
    with pytest.raises(ClientError) as no_write:
        anonymous.put_object(Bucket=public, Key="x", Body=b"x")
    assert code(no_write.value) == "AccessDenied"
    s3.put_bucket_acl(Bucket=public, ACL="public-read-write")
    anonymous.put_object(Bucket=public, Key="dropped", Body=b"drop")
    assert s3.get_object(Bucket=public, Key="dropped")["Body"].read() == b"drop"


def test_every_answer_carries_a_request_id(s3_http: Port, member: S3Member) -> None:
    s3 = client(s3_http, member)
    assert s3.list_buckets()["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    with pytest.raises(ClientError) as missing:
        s3.head_bucket(Bucket=bucket_name())
    assert missing.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    with pytest.raises(ClientError) as no_bucket:
        s3.list_objects_v2(Bucket=bucket_name())
    assert code(no_bucket.value) == "NoSuchBucket"
    assert no_bucket.value.response["Error"]["BucketName"]


def test_virtual_hosted_style_addresses_the_bucket_by_its_host(
    s3_http: Port, member: S3Member
) -> None:
    s3 = client(s3_http, member)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="dir/file.txt", Body=b"virtual")
    port = s3_http.endpoint.rsplit(":", 1)[1]
    host = f"{name}.s3.localhost:{port}"
    for path, query, expected in (
        ("/dir/file.txt", [], b"virtual"),
        ("/", [("list-type", "2")], b"<Key>dir/file.txt</Key>"),
    ):
        signed = sigv4.sign_request(
            method="GET", host=host, path=path, query=query, headers={},
            payload_sha256=sigv4.EMPTY_SHA256, access_key=member.access_key,
            secret=member.secret, region="us-east-1", now=utcnow(),
        )  # fmt: skip
        connection = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
        target = path + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")
        connection.request("GET", target, headers={"Host": host, **signed})
        answer = connection.getresponse()
        body = answer.read()
        connection.close()
        assert answer.status == 200
        assert expected in body


def test_a_prefix_narrowed_key_changes_no_bucket_and_sees_no_other_uploads(
    s3_http: Port, tenant: Tenant, member_factory: Any
) -> None:
    admin = client(s3_http, member_factory(tenant))
    name = bucket_name()
    admin.create_bucket(Bucket=name)
    admin.create_multipart_upload(Bucket=name, Key="secret/plan.docx")
    narrow = client(s3_http, member_factory(tenant, prefixes=["uploads/"]))
    for attempt in (
        lambda: narrow.put_bucket_acl(Bucket=name, ACL="public-read"),
        lambda: narrow.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": "Enabled"}
        ),
        lambda: narrow.delete_bucket(Bucket=name),
        lambda: narrow.list_multipart_uploads(Bucket=name),
        lambda: narrow.copy_object(
            Bucket=name, Key="uploads/copy", CopySource={"Bucket": name, "Key": "secret/x"}
        ),
    ):
        with pytest.raises(ClientError) as refused:
            attempt()
        assert code(refused.value) == "AccessDenied"
    narrow.put_object(Bucket=name, Key="uploads/mine", Body=b"m")
    deleted = narrow.delete_objects(
        Bucket=name, Delete={"Objects": [{"Key": "uploads/mine"}, {"Key": "secret/plan.docx"}]}
    )
    assert [d["Key"] for d in deleted["Deleted"]] == ["uploads/mine"]
    assert [e["Key"] for e in deleted["Errors"]] == ["secret/plan.docx"]
    assert admin.get_bucket_acl(Bucket=name)["Grants"][0]["Permission"] == "FULL_CONTROL"


def test_a_copy_from_another_tenants_bucket_says_nothing_of_its_keys(
    s3_http: Port, member: S3Member, other_tenant: Tenant, member_factory: Any
) -> None:
    mine = client(s3_http, member)
    private = bucket_name()
    mine.create_bucket(Bucket=private)
    mine.put_object(Bucket=private, Key="there", Body=b"x")
    theirs = client(s3_http, member_factory(other_tenant))
    target = bucket_name()
    theirs.create_bucket(Bucket=target)
    for key in ("there", "absent"):
        with pytest.raises(ClientError) as refused:
            theirs.copy_object(Bucket=target, Key="k", CopySource={"Bucket": private, "Key": key})
        assert code(refused.value) == "AccessDenied"


def test_a_public_buckets_location_is_answered_to_other_tenants(
    s3_http: Port, member: S3Member, other_tenant: Tenant, member_factory: Any
) -> None:
    name = bucket_name()
    client(s3_http, member).create_bucket(Bucket=name, ACL="public-read")
    theirs = client(s3_http, member_factory(other_tenant))
    assert theirs.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert theirs.list_objects_v2(Bucket=name)["KeyCount"] == 0
