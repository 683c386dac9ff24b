"""Console lists: a page of payments found by account and days, and a CSV export, through the
console's list component, against the bare SQL queries giving the same page, count, totals and rows.

Over 1,000,000 payments (``--quick``: 100,000) of a city's billers on a throwaway PostgreSQL
cluster (``bench/_postgres.py``), migrated by the application's own ``prepare_database`` so the
indexes are the installed schema's, the data made inside the database and ``VACUUM ANALYZE``d:

- **page**: an operator's search, a page of 50 payments of one account number in a range of
  days, its count and its totals: ``web.lists.read`` + ``run`` over Pay's
  ``payments_spec(session, actor, "zh")``, each search in a read-only unit of work as a page
  request runs it (the spec built per request, as the page builds it), against the same three
  queries (page, bounded count, totals) written by hand and sent through psycopg in one
  transaction.
- **export**: every payment of a range of days that holds 100,000 of them (``--quick``:
  10,000) as CSV: ``web.lists.export_rows`` + ``csv_lines``, against the hand-written query
  fetching the same rows through a server-side cursor.

The reader is a Pay operator holding ``pay_operator`` at the city (another city's biller holds
a fifth of the payments, so the subtree condition does work). Rounds alternate the order; each
ratio is the median over rounds of component rate / bare rate, and the headline is the lower of
the two.

    .venv/bin/python bench/console_lists.py            # about 6 minutes (1,000,000 payments)
    .venv/bin/python bench/console_lists.py --quick    # 1 to 1.5 minutes (100,000 payments)
    .venv/bin/python bench/console_lists.py --postgres-url postgresql+psycopg://U:PW@HOST/DB

The last line printed is ``console_lists ratio=X goal=0.5``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _postgres  # a sibling helper, found through the path set just above

GOAL = 0.5
ZONE = ZoneInfo("Asia/Shanghai")
#: The year the payments are spread over (UTC), ending at the start of this day.
END = datetime(2026, 12, 1, tzinfo=UTC)
#: Billers: (category, name_zh, name_en); the last one belongs to another city.
BILLERS = (
    ("water", "大连市供水有限公司", "Dalian Water Supply"),
    ("power", "国网大连供电公司", "State Grid Dalian Power"),
    ("gas", "大连燃气集团", "Dalian Gas"),
    ("fee", "大连市供暖办公室", "Dalian Heating Office"),
    ("water", "沈阳水务集团", "Shenyang Water"),
)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰"


@dataclass(frozen=True)
class Plan:
    payments: int
    export: int
    rounds: int
    pages: int
    warmup: int

    @property
    def accounts(self) -> int:
        return self.payments // 5

    @property
    def bills(self) -> int:
        return self.payments * 4 // 5


@dataclass
class World:
    services: Any
    dsn: str
    actor: Any
    city_path: str
    accounts: list[str]
    page_days: tuple[date, date]
    export_days: tuple[date, date]
    export_rows: int


# --- the data --------------------------------------------------------------------------------


def build_world(url: str, dsn: str, data_dir: Path, plan: Plan) -> World:
    """Migrate, make the tenants and billers through the services, load the rows in SQL."""
    from civicloud.app import build_services, prepare_database
    from civicloud.core import tenants
    from civicloud.core.actor import Actor, Grant
    from civicloud.core.config import Settings
    from civicloud.core.permissions import builtin_roles
    from civicloud.pay import billing
    from civicloud.pay.schemas import BillerCreate

    settings = Settings(data_dir=data_dir, database_url=url, log_level="WARNING")
    services = build_services(settings)
    prepare_database(services)
    system = Actor.system("bench")
    tag = os.urandom(3).hex()

    def tenant(kind: Any, parent: Any, slug: str) -> Any:
        return tenants.create_tenant(
            session=session,
            actor=system,
            data=tenants.TenantCreate(
                slug=f"bench-{tag}-{slug}",
                name_zh=f"租户 {slug}",
                name_en=f"Tenant {slug}",
                kind=kind,
                parent_id=parent.id if parent else None,
                region_code="cn-beijing" if parent is None else None,
            ),
        )

    with services.db.unit_of_work() as session:
        country = tenant(tenants.TenantKind.COUNTRY, None, "country")
        city = tenant(tenants.TenantKind.CITY, country, "dalian")
        other = tenant(tenants.TenantKind.CITY, country, "shenyang")
        billers = []
        for number, (category, name_zh, name_en) in enumerate(BILLERS):
            parent = other if number == len(BILLERS) - 1 else city
            agency = tenant(tenants.TenantKind.AGENCY, parent, f"agency-{number}")
            biller = billing.create_biller(
                session=session,
                actor=system,
                data=BillerCreate(
                    tenant_id=agency.id,
                    code=f"{category}-{number}",
                    name_zh=name_zh,
                    name_en=name_en,
                    category=category,
                    account_pattern=r"\d{10}",
                    settlement_bank="中国工商银行大连分行",
                    settlement_account="6222020200112233445",
                    settlement_account_name=name_zh,
                ),
            )
            billers.append((biller.id, agency.id))
        session.flush()
        city_path, city_id = city.path, city.id
    operator = next(r for r in builtin_roles() if r.name == "pay_operator")
    actor = Actor(
        kind="user",
        name="bench.operator",
        via="web",
        user_id=uuid.uuid4(),
        tenant_id=city_id,
        grants=(Grant("pay_operator", city_id, city_path, frozenset(operator.permissions)),),
    )
    seconds = load_rows(dsn, billers, plan)
    print(
        f"seed:       {plan.payments:,} payments, {plan.bills:,} bills of {plan.accounts:,} "
        f"accounts, {len(BILLERS)} billers (one in another city), loaded in SQL and "
        f"VACUUM ANALYZEd in {seconds:.1f} s"
    )
    # Accounts of the city's billers (account a belongs to biller a % 5; the 5th is elsewhere).
    step = max(1, plan.accounts // 97)
    accounts = [
        f"{a:010d}" for a in range(7, plan.accounts, step) if a % len(BILLERS) != len(BILLERS) - 1
    ][:64]
    start_day = (END - timedelta(days=182)).astimezone(ZONE).date()
    last_day = (END - timedelta(seconds=1)).astimezone(ZONE).date()
    export_days, export_rows = _export_days(dsn, city_path, plan.export, last_day)
    return World(
        services,
        dsn,
        actor,
        city_path,
        accounts,
        (start_day, last_day),
        export_days,
        export_rows,
    )


#: Pseudo-random but repeatable per row: a multiplicative hash of the row number, 0..999.
_HASH = "(((({n})::bigint * 2654435761 + {salt}) % 4294967296) / 4294967)"


def _h(n: str, salt: int) -> str:
    return _HASH.format(n=n, salt=salt)


def load_rows(dsn: str, billers: Sequence[tuple[uuid.UUID, uuid.UUID]], plan: Plan) -> float:
    """Bills, payments and their links made by ``INSERT … SELECT`` over ``generate_series``.

    Payment ``p`` covers bill ``p % bills``; bills ``0 .. payments - bills`` have two payments,
    a first attempt that failed, expired or was superseded, and a retry ten minutes later. An
    account has about four bills and five payments over the year; about 3 % of payments are
    still in flight, 2 % of the succeeded ones were refunded (in full or half).
    """
    import psycopg

    n, bills, accounts = plan.payments, plan.bills, plan.accounts
    year = 365 * 86400
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute("CREATE TEMP TABLE bench_biller (n int PRIMARY KEY, id uuid, tenant_id uuid)")
        for number, (biller_id, tenant_id) in enumerate(billers):
            conn.execute(
                "INSERT INTO bench_biller VALUES (%s, %s, %s)", (number, biller_id, tenant_id)
            )
        # The status of payment p: first attempts of retried bills never succeed.
        conn.execute(
            f"""
            CREATE FUNCTION pg_temp.status(p bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
              SELECT CASE
                WHEN p < {n - bills} THEN
                  CASE WHEN {_h("p", 1)} < 400 THEN 'failed'
                       WHEN {_h("p", 1)} < 900 THEN 'expired' ELSE 'superseded' END
                WHEN p >= {bills} THEN
                  CASE WHEN {_h("p", 1)} < 970 THEN 'succeeded'
                       WHEN {_h("p", 1)} < 980 THEN 'pending' ELSE 'failed' END
                ELSE
                  CASE WHEN {_h("p", 1)} < 960 THEN 'succeeded'
                       WHEN {_h("p", 1)} < 975 THEN 'failed'
                       WHEN {_h("p", 1)} < 990 THEN 'expired'
                       WHEN {_h("p", 1)} < 995 THEN 'pending' ELSE 'created' END
              END
            $$
            """
        )
        start = END - timedelta(seconds=year)
        conn.execute(
            f"""
            CREATE FUNCTION pg_temp.bill_time(b bigint) RETURNS timestamptz LANGUAGE sql
            IMMUTABLE AS $$
              SELECT '{start.isoformat()}'::timestamptz
                     + make_interval(secs => b * {(year - 3600) / bills} + {_h("b", 7)})
            $$
            """
        )
        with conn.transaction():
            conn.execute(
                f"""
                INSERT INTO pay_bill (id, biller_id, bill_number, account_number, payer_name,
                    amount_fen, currency, period, due_date, status, created_at, updated_at,
                    version)
                SELECT md5('bill' || b)::uuid, bb.id, 'B' || lpad(b::text, 12, '0'),
                    lpad((b % {accounts})::text, 10, '0'),
                    substr('{SURNAMES}', (b % {accounts}) % 20 + 1, 1)
                      || substr('{GIVEN}', ((b % {accounts}) / 20) % 30 + 1, 1)
                      || substr('{GIVEN}', ((b % {accounts}) / 600) % 30 + 1, 1),
                    1000 + {_h("b", 3)} * 37, 'CNY',
                    to_char(pg_temp.bill_time(b), 'YYYY-MM'),
                    (pg_temp.bill_time(b) + interval '20 days')::date,
                    CASE WHEN pg_temp.status(b) = 'succeeded'
                           OR (b < {n - bills} AND pg_temp.status(b + {bills}) = 'succeeded')
                         THEN 'paid' ELSE 'open' END,
                    pg_temp.bill_time(b), pg_temp.bill_time(b), 1
                FROM generate_series(0, {bills - 1}) AS b
                JOIN bench_biller bb ON bb.n = (b % {accounts}) % {len(BILLERS)}
                """  # noqa: S608 (numbers of ours)
            )
            conn.execute(
                f"""
                INSERT INTO pay_payment (id, trade_no, biller_id, tenant_id, provider, status,
                    amount_fen, refunded_fen, currency, idempotency_key, request_hash,
                    return_url, provider_trade_no, checkout, created_at, expires_at,
                    finished_at, version)
                SELECT md5('pay' || p)::uuid,
                    'CC' || to_char(x.at AT TIME ZONE 'UTC', 'YYYYMMDD') || lpad(p::text, 16, '0'),
                    bl.biller_id, bb.tenant_id,
                    CASE WHEN {_h("p", 5)} < 550 THEN 'alipay'
                         WHEN {_h("p", 5)} < 950 THEN 'wechatpay' ELSE 'sandbox' END,
                    x.status, bl.amount_fen,
                    CASE WHEN x.status = 'succeeded' AND {_h("p", 9)} < 10 THEN bl.amount_fen
                         WHEN x.status = 'succeeded' AND {_h("p", 9)} < 20 THEN bl.amount_fen / 2
                         ELSE 0 END,
                    'CNY', 'bench-' || p, repeat('0', 64), '/',
                    CASE WHEN x.status <> 'created' THEN '2026' || lpad(p::text, 24, '0') END,
                    '{{}}', x.at, x.at + interval '15 minutes',
                    CASE WHEN x.status NOT IN ('created', 'pending')
                         THEN x.at + interval '1 minute' END,
                    1
                FROM generate_series(0, {n - 1}) AS p
                CROSS JOIN LATERAL (
                    SELECT pg_temp.status(p) AS status,
                           pg_temp.bill_time(p % {bills})
                             + make_interval(mins => 5 + 10 * (p / {bills})::int) AS at
                ) x
                JOIN pay_bill bl ON bl.id = md5('bill' || (p % {bills}))::uuid
                JOIN bench_biller bb ON bb.id = bl.biller_id
                """  # noqa: S608 (numbers of ours)
            )
            conn.execute(
                f"""
                INSERT INTO pay_payment_bill (payment_id, bill_id, amount_fen, active)
                SELECT md5('pay' || p)::uuid, md5('bill' || (p % {bills}))::uuid,
                    1000 + {_h(f"p % {bills}", 3)} * 37,
                    pg_temp.status(p) IN ('created', 'pending')
                FROM generate_series(0, {n - 1}) AS p
                """  # noqa: S608 (numbers of ours)
            )
        for table in ("pay_bill", "pay_payment", "pay_payment_bill", "tenant", "pay_biller"):
            conn.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - started


def _export_days(
    dsn: str, city_path: str, wanted: int, last: date
) -> tuple[tuple[date, date], int]:
    """The shortest range of days ending on ``last`` holding at least ``wanted`` of the city's
    payments (days in the installation's zone), and how many it holds."""
    import psycopg

    from civicloud.core.tenants.service import subtree_bounds

    lo, hi = subtree_bounds(city_path)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """
            SELECT (p.created_at AT TIME ZONE 'Asia/Shanghai')::date AS day, count(*)
            FROM pay_payment p JOIN tenant t ON t.id = p.tenant_id
            WHERE t.path >= %s AND t.path < %s
            GROUP BY 1 ORDER BY 1 DESC
            """,
            (lo, hi),
        ).fetchall()
    total, first = 0, last
    for day, count in rows:
        if day > last:
            continue
        total += count
        first = day
        if total >= wanted:
            break
    return (first, last), total


# --- the two paths ---------------------------------------------------------------------------

_FROM = """
FROM pay_payment p
JOIN tenant t ON t.id = p.tenant_id
JOIN pay_biller b ON b.id = p.biller_id
WHERE t.path >= %(lo)s AND t.path < %(hi)s
  AND p.created_at >= %(start)s AND p.created_at < %(end)s
"""
_ACCOUNT = """
  AND p.id IN (SELECT pb.payment_id FROM pay_payment_bill pb
               JOIN pay_bill bl ON bl.id = pb.bill_id
               WHERE bl.account_number = %(account)s)
"""
_COLUMNS = """
SELECT p.trade_no, b.name_zh, c.account, c.payer, p.amount_fen, p.refunded_fen, p.status,
       p.provider, p.provider_trade_no, p.created_at, p.finished_at, p.id
"""
_COVERED = """
CROSS JOIN LATERAL (
    SELECT min(bl.account_number) AS account, min(bl.payer_name) AS payer
    FROM pay_payment_bill pb JOIN pay_bill bl ON bl.id = pb.bill_id
    WHERE pb.payment_id = p.id
) c
"""


def _rows_sql(where: str, limit: str) -> str:
    # The lateral join goes after the joins of _FROM, before its WHERE.
    head, _, tail = _FROM.partition("WHERE")
    return (
        f"{_COLUMNS}{head}{_COVERED}WHERE{tail}{where}ORDER BY p.created_at DESC, p.id DESC {limit}"
    )


PAGE_SQL = _rows_sql(_ACCOUNT, "LIMIT 51")
COUNT_SQL = f"SELECT count(*) FROM (SELECT 1 {_FROM}{_ACCOUNT} LIMIT 100001) AS s"  # noqa: S608
TOTALS_SQL = f"""
SELECT coalesce(sum(CASE WHEN p.status = 'succeeded' THEN p.amount_fen ELSE 0 END), 0),
       coalesce(sum(p.refunded_fen), 0),
       coalesce(sum(CASE WHEN p.status = 'succeeded' THEN 1 ELSE 0 END), 0)
{_FROM}{_ACCOUNT}
"""
EXPORT_SQL = _rows_sql("", "")


def _moments(days: tuple[date, date]) -> tuple[datetime, datetime]:
    first, last = days
    start = datetime.combine(first, datetime.min.time(), tzinfo=ZONE)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=ZONE)
    return start.astimezone(UTC), end.astimezone(UTC)


class Component:
    """The console's way: ``payments_spec`` on ``web.lists``."""

    def __init__(self, world: World) -> None:
        from civicloud.web.i18n import add_module_catalogs, load_translations

        self.world = world
        pay_locales = Path(__file__).resolve().parents[1] / "src/civicloud/pay/locales"
        add_module_catalogs([pay_locales])
        self.translations = load_translations()

    def page(self, account: str) -> tuple[list[Any], int | None, dict[str, int]]:
        from civicloud.pay.web.lists import payments_spec
        from civicloud.web import lists

        first, last = self.world.page_days
        params = {
            "account": account,
            "created_from": first.isoformat(),
            "created_to": last.isoformat(),
        }
        with self.world.services.db.unit_of_work(write=False) as session:
            spec = payments_spec(session, self.world.actor, "zh")
            state = lists.read(spec, params, ZONE)
            page = lists.run(spec, state, session)
        assert page.refused is None
        assert not state.errors
        return [row["_key"] for row in page.rows], page.count, page.totals

    def export(self) -> tuple[int, int]:
        """Rows and bytes of the CSV export of the export's days."""
        from civicloud.pay.web.lists import payments_spec
        from civicloud.web import lists

        first, last = self.world.export_days
        params = {"created_from": first.isoformat(), "created_to": last.isoformat()}
        zh = self.translations["zh"]
        text = lists.ExportText(translate=zh.gettext, zone=ZONE, zone_name=str(ZONE))
        size = lines = 0
        with self.world.services.db.unit_of_work(write=False) as session:
            spec = payments_spec(session, self.world.actor, "zh")
            state = lists.read(spec, params, ZONE)
            query = lists.filtered_query(spec, state)
            header = lists.export_header(spec, text)
            for chunk in lists.csv_lines(
                header, lists.export_rows(spec, state, query, session, text, "csv")
            ):
                size += len(chunk)
                lines += chunk.count(b"\r\n")
        return lines - 1, size


class Bare:
    """The same page, count, totals and rows by hand-written SQL on psycopg."""

    def __init__(self, world: World) -> None:
        import psycopg

        from civicloud.core.tenants.service import subtree_bounds

        self.world = world
        self.conn = psycopg.connect(world.dsn)
        self.lo, self.hi = subtree_bounds(world.city_path)

    def close(self) -> None:
        self.conn.close()

    def page(self, account: str) -> tuple[list[Any], int | None, dict[str, int]]:
        start, end = _moments(self.world.page_days)
        params = {"lo": self.lo, "hi": self.hi, "start": start, "end": end, "account": account}
        with self.conn.transaction():
            rows = self.conn.execute(PAGE_SQL, params).fetchall()
            count = self.conn.execute(COUNT_SQL, params).fetchone()
            totals = self.conn.execute(TOTALS_SQL, params).fetchone()
        assert count is not None
        assert totals is not None
        paid, refunded, succeeded = totals
        return (
            [row[-1] for row in rows[:50]],
            count[0],
            {"paid": paid, "refunded": refunded, "succeeded": succeeded},
        )

    def export(self) -> tuple[int, int]:
        """Rows fetched (through a server-side cursor, 2,000 at a time) and 0 bytes."""
        start, end = _moments(self.world.export_days)
        params = {"lo": self.lo, "hi": self.hi, "start": start, "end": end}
        rows = 0
        with self.conn.transaction(), self.conn.cursor(name="bench_export") as cursor:
            cursor.itersize = 2000
            cursor.execute(EXPORT_SQL, params)
            for _ in cursor:
                rows += 1
        return rows, 0


# --- measuring -------------------------------------------------------------------------------


def _time(work: Callable[[], object], times: int) -> float:
    began = time.perf_counter()
    for _ in range(times):
        work()
    return (time.perf_counter() - began) / times


def check_same(world: World, component: Component, bare: Bare) -> str:
    """Both paths give the same pages, counts and totals, and export the same number of rows."""
    found = 0
    for account in world.accounts:
        mine, theirs = component.page(account), bare.page(account)
        if mine != theirs:
            raise SystemExit(f"account {account}: component {mine} but bare {theirs}")
        found += len(mine[0])
    exported, size = component.export()
    fetched, _ = bare.export()
    if exported != fetched or exported != world.export_rows:
        raise SystemExit(
            f"export: component {exported} rows, bare {fetched}, expected {world.export_rows}"
        )
    return (
        f"check:      the {len(world.accounts)} accounts' pages, counts and totals are the same on "
        f"both paths ({found / len(world.accounts):.1f} payments per account in the days); the "
        f"export has {exported:,} rows on both ({size / 1e6:.1f} MB of CSV)"
    )


@dataclass
class Round:
    page_ms: dict[str, float]
    export_rate: dict[str, float]


def measure(world: World, plan: Plan, paths: dict[str, Any]) -> list[Round]:
    accounts = world.accounts

    def pages(path: Any) -> Callable[[], object]:
        turn = iter(range(10**9))
        return lambda: path.page(accounts[next(turn) % len(accounts)])

    exporters = [name for name in paths if name in ("component", "bare")]
    for name, path in paths.items():  # warm-up: caches, prepared statements, the buffer pool
        _time(pages(path), plan.warmup)
        if name in exporters:
            path.export()
    rounds: list[Round] = []
    for number in range(plan.rounds):
        order = list(paths) if number % 2 == 0 else list(reversed(paths))
        result = Round({}, {})
        for name in order:
            result.page_ms[name] = _time(pages(paths[name]), plan.pages) * 1000
        for name in (n for n in order if n in exporters):
            began = time.perf_counter()
            rows, _ = paths[name].export()
            result.export_rate[name] = rows / (time.perf_counter() - began)
        rounds.append(result)
        print(
            f"round {number + 1}/{plan.rounds}: page component {result.page_ms['component']:.2f} ms"
            f", bare "
            f"{result.page_ms['bare']:.2f} ms; export component "
            f"{result.export_rate['component']:,.0f} rows/s, bare {result.export_rate['bare']:,.0f}"
            " rows/s"
        )
    return rounds


def explain(world: World, component: Component) -> None:
    """EXPLAIN ANALYZE every statement the component sends for one search (``--explain``)."""
    from sqlalchemy import event

    sent: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    engine = world.services.db.engine
    event.listen(engine, "before_cursor_execute", keep)
    try:
        component.page(world.accounts[0])
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    with engine.connect() as connection:
        for statement, parameters in sent:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            print("explain:    " + " ".join(statement.split())[:2000])
            plan_rows = connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters
            )
            for (line,) in plan_rows:
                print(f"  {line}")


@contextmanager
def postgres_target(given: str) -> Iterator[tuple[str, str] | None]:
    """``(SQLAlchemy URL, libpq DSN)``: ``given``, or a database on a throwaway cluster."""
    if given:
        from sqlalchemy.engine import make_url

        dsn = make_url(given).set(drivername="postgresql").render_as_string(hide_password=False)
        yield given, dsn
        return
    with _postgres.cluster() as pg:
        if pg is None:
            yield None
            return
        print(f"postgresql: {pg.version}, a throwaway cluster ({pg.settings})")
        yield pg.create_database("bench_lists"), pg.dsn("bench_lists")


def main() -> None:
    """Parse the options, seed, check, measure, print the ratio line last."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100,000 payments (1 to 1.5 minutes)")
    parser.add_argument("--payments", type=int, help="payments made (1,000,000; quick 100,000)")
    parser.add_argument("--export", type=int, help="rows exported (100,000; quick 10,000)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (5, quick 3)")
    parser.add_argument("--pages", type=int, help="searches per path per round (200, quick 100)")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the page query")
    parser.add_argument(
        "--postgres-url",
        default="",
        help="use this PostgreSQL (postgresql+psycopg://USER:PW@HOST/DB) instead of a throwaway "
        "cluster; the bench adds tenants, billers, bills and payments there",
    )
    args = parser.parse_args()
    plan = Plan(
        payments=args.payments or (100_000 if args.quick else 1_000_000),
        export=args.export or (10_000 if args.quick else 100_000),
        rounds=args.rounds or (3 if args.quick else 5),
        pages=args.pages or (100 if args.quick else 200),
        warmup=50 if args.quick else 100,
    )
    print(f"machine:    {os.cpu_count() or 1} cores, Python {sys.version.split()[0]}")
    with (
        tempfile.TemporaryDirectory(prefix="civicloud-bench-") as scratch,
        postgres_target(args.postgres_url) as target,
    ):
        if target is None:
            print("note: PostgreSQL server binaries not found (initdb, pg_ctl): nothing to run")
            print(f"console_lists ratio=nan goal={GOAL}")
            return
        url, dsn = target
        world = build_world(url, dsn, Path(scratch), plan)
        component, bare = Component(world), Bare(world)
        try:
            print(check_same(world, component, bare))
            if args.explain:
                explain(world, component)
            print(
                f"method:     {plan.warmup} searches and one export per path to warm up, then "
                f"{plan.rounds} rounds of {plan.pages} searches (over {len(world.accounts)} "
                f"accounts, {world.page_days[0]} to {world.page_days[1]}) and one export "
                f"({world.export_rows:,} rows, {world.export_days[0]} to "
                f"{world.export_days[1]}) per path, order alternating"
            )
            paths = {"component": component, "bare": bare}
            rounds = measure(world, plan, paths)
        finally:
            bare.close()
            world.services.db.dispose()

    def median(values: Sequence[float]) -> float:
        return float(statistics.median(values))

    page_ratio = median([r.page_ms["bare"] / r.page_ms["component"] for r in rounds])
    export_ratio = median([r.export_rate["component"] / r.export_rate["bare"] for r in rounds])
    print()
    for name in ("component", "bare"):
        ms = median([r.page_ms[name] for r in rounds])
        rate = median([r.export_rate[name] for r in rounds])
        print(
            f"{name:<10} page {ms:6.2f} ms ({1000 / ms:6.0f} searches/s)   "
            f"export {rate:9,.0f} rows/s ({world.export_rows / rate:5.2f} s for "
            f"{world.export_rows:,} rows)"
        )
    print(f"page:       ratio {page_ratio:.2f} (component searches/s / bare; goal {GOAL})")
    print(f"export:     ratio {export_ratio:.2f} (component rows/s / bare; goal {GOAL})")
    lower = "page" if page_ratio <= export_ratio else "export"
    headline = min(page_ratio, export_ratio)
    print(f"headline:   the lower of the two, the {lower}'s")
    print(f"console_lists ratio={headline:.2f} goal={GOAL}")


if __name__ == "__main__":
    main()
