"""Listing a bucket: ListObjects v1 and v2 and ListObjectVersions, sorted by key in UTF-8
binary order and fully consistent (they read committed rows).

Every page costs a few index seeks, whatever the bucket's size: rows come from the index on
``(bucket_id, key)``, at most a page and one more at a time, and a common prefix is skipped in
one seek past every key under it (to the prefix with its last character incremented), never by
reading the keys it rolls up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloud.store.models import ObjectVersion

#: Rows fetched per seek at most, and first after a common prefix was skipped.
BATCH = 1001
FIRST_BATCH = 8
#: Keys hidden by delete markers one page reads at most before it ends, truncated, where it
#: stopped (a long run of deleted keys would otherwise be read whole by one request).
MAX_HIDDEN = 10_000


@dataclass(frozen=True)
class Hidden:
    """Where a page stopped after reading ``MAX_HIDDEN`` deleted keys."""

    key: str


def after_prefix(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (in UTF-8 byte
    order, which is code-point order); ``None`` if there is none."""
    chars = list(prefix)
    while chars:
        last = ord(chars[-1])
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates are not characters: jump over them
                nxt = 0xE000
            chars[-1] = chr(nxt)
            return "".join(chars)
        chars.pop()
    return None


@dataclass
class Page:
    """One page of a listing."""

    entries: list[ObjectVersion] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    #: Where the next page starts (the last key or prefix given), when truncated.
    next_marker: str | None = None
    next_version: str | None = None


def _rows(
    session: Session,
    bucket_id: uuid.UUID,
    *,
    start: str | None,
    inclusive: bool,
    prefix: str,
    latest: bool,
    limit: int,
) -> list[ObjectVersion]:
    query = select(ObjectVersion).where(ObjectVersion.bucket_id == bucket_id)
    if latest:
        query = query.where(ObjectVersion.is_latest.is_(True))
    if start is None or start < prefix:
        if prefix:
            query = query.where(ObjectVersion.key >= prefix)
    elif inclusive:
        query = query.where(ObjectVersion.key >= start)
    else:
        query = query.where(ObjectVersion.key > start)
    if prefix:
        high = after_prefix(prefix)
        if high is not None:
            query = query.where(ObjectVersion.key < high)
    order = (ObjectVersion.key,) if latest else (ObjectVersion.key, ObjectVersion.id.desc())
    return list(session.scalars(query.order_by(*order).limit(limit)))


def _walk(
    session: Session,
    bucket_id: uuid.UUID,
    *,
    prefix: str,
    delimiter: str,
    start: str | None,
    latest: bool,
) -> Iterator[ObjectVersion | str | Hidden]:
    """Every current object (``latest``) or every version after ``start``, in order, with the
    keys under a common prefix rolled up into that prefix (yielded as a ``str``); a
    :class:`Hidden` ends it after ``MAX_HIDDEN`` deleted keys."""
    position, inclusive = start, False
    hidden = 0
    # With a delimiter, a seek may end at its first row (rolled up into a common prefix): the
    # batches start small and grow while rows are taken one by one.
    limit = FIRST_BATCH if delimiter else BATCH
    while True:
        rows = _rows(
            session,
            bucket_id,
            start=position,
            inclusive=inclusive,
            prefix=prefix,
            latest=latest,
            limit=limit,
        )
        if not rows:
            return
        jumped = False
        for row in rows:
            if latest and row.is_delete_marker:
                # Hidden by its delete marker, the key is not listed, nor rolled up into a
                # common prefix (a folder with only deleted keys is not shown).
                hidden += 1
                if hidden >= MAX_HIDDEN:
                    yield Hidden(row.key)
                    return
                continue
            if delimiter:
                cut = row.key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = row.key[: cut + len(delimiter)]
                    yield common
                    nxt = after_prefix(common)
                    if nxt is None:
                        return
                    position, inclusive, jumped = nxt, True, True
                    limit = FIRST_BATCH
                    break
            yield row
        if not jumped:
            if len(rows) < limit:
                return
            position, inclusive = rows[-1].key, False
            limit = min(BATCH, limit * 4)
            if not latest:
                # Versions of one key may straddle batches: continue inside that key.
                yield from _versions_of_key_after(session, bucket_id, rows[-1])
                position = rows[-1].key


def _versions_of_key_after(
    session: Session, bucket_id: uuid.UUID, last: ObjectVersion
) -> Iterator[ObjectVersion]:
    yield from session.scalars(
        select(ObjectVersion)
        .where(
            ObjectVersion.bucket_id == bucket_id,
            ObjectVersion.key == last.key,
            ObjectVersion.id < last.id,
        )
        .order_by(ObjectVersion.id.desc())
    )


def list_objects(
    session: Session,
    bucket_id: uuid.UUID,
    *,
    prefix: str = "",
    delimiter: str = "",
    start_after: str | None = None,
    max_keys: int = 1000,
) -> Page:
    """A page of current objects after ``start_after`` (a key or a common prefix)."""
    page = Page()
    if max_keys <= 0:
        return page
    taken = 0
    start = start_after if start_after else None
    for item in _walk(
        session, bucket_id, prefix=prefix, delimiter=delimiter, start=start, latest=True
    ):
        if taken == max_keys:
            page.truncated = True
            break
        if isinstance(item, Hidden):
            page.truncated, page.next_marker = True, item.key
            break
        if isinstance(item, str):
            if start is not None and item <= start:
                continue
            page.prefixes.append(item)
            page.next_marker = item
        else:
            page.entries.append(item)
            page.next_marker = item.key
        taken += 1
    return page


def list_versions(
    session: Session,
    bucket_id: uuid.UUID,
    *,
    prefix: str = "",
    delimiter: str = "",
    key_marker: str | None = None,
    version_marker: str | None = None,
    max_keys: int = 1000,
) -> Page:
    """A page of versions and delete markers, by key and newest first, after
    ``(key_marker, version_marker)``."""
    page = Page()
    if max_keys <= 0:
        return page
    start: str | None = key_marker or None
    resume_id: int | None = None
    if key_marker and version_marker:
        marker_row = session.scalar(
            select(ObjectVersion.id).where(
                ObjectVersion.bucket_id == bucket_id,
                ObjectVersion.key == key_marker,
                ObjectVersion.version_id == version_marker,
            )
        )
        resume_id = marker_row
    items: list[ObjectVersion | str] = []
    if key_marker and resume_id is not None:
        # The rest of the marker's key first: its versions older than the marker.
        items.extend(
            session.scalars(
                select(ObjectVersion)
                .where(
                    ObjectVersion.bucket_id == bucket_id,
                    ObjectVersion.key == key_marker,
                    ObjectVersion.id < resume_id,
                )
                .order_by(ObjectVersion.id.desc())
                .limit(max_keys + 1)
            )
        )
    walker = _walk(
        session, bucket_id, prefix=prefix, delimiter=delimiter, start=start, latest=False
    )

    def every() -> Iterator[ObjectVersion | str]:
        yield from items
        for item in walker:
            if isinstance(item, Hidden):  # versions are all listed: nothing is hidden
                continue
            if isinstance(item, str):
                if start is not None and item <= start:
                    continue
            elif start is not None and item.key <= start:
                continue
            yield item

    for taken, item in enumerate(every()):
        if taken == max_keys:
            page.truncated = True
            break
        if isinstance(item, str):
            page.prefixes.append(item)
            page.next_marker, page.next_version = item, None
        else:
            page.entries.append(item)
            page.next_marker, page.next_version = item.key, item.version_id
    return page
