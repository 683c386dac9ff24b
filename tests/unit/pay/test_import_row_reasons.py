"""Why an import refuses a row: a stable code for programs, the reason in the reader's language."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session
from tests.factories.core import SYSTEM
from tests.factories.pay import bill_row, make_biller

from civicloud.core.errors import format_message
from civicloud.pay import billing
from civicloud.pay.errors import ImportRejected
from civicloud.pay.schemas import RowError
from civicloud.web.messages import translate

LATIN_WORD = re.compile(r"\b(?!bill_number\b|details\b)[a-z]{4,}\b")


def _refused(session: Session, row: Any, *, source: str = "json") -> RowError:
    biller = make_biller(session)
    with pytest.raises(ImportRejected) as refused:
        billing.import_bills(
            session=session, actor=SYSTEM, biller_id=biller.id, rows=[row], source=source
        )
    (only,) = refused.value.extra["errors"]
    return RowError.model_validate(only)


CASES: list[tuple[Any, str, dict[str, Any]]] = [
    ("not a bill", "pay.import.not_an_object", {}),
    ({k: v for k, v in bill_row().items() if k != "period"}, "pay.import.missing", {}),
    (bill_row(colour="blue"), "pay.import.unknown_field", {"field": "colour"}),
    (bill_row(payer_name=""), "pay.import.empty", {"field": "payer_name"}),
    (bill_row(period="x" * 33), "pay.import.too_long", {"max_length": 32}),
    (bill_row(bill_number="-bad"), "pay.import.wrong_format", {"field": "bill_number"}),
    (bill_row(amount_fen="12.50"), "pay.import.not_a_number", {"field": "amount_fen"}),
    (bill_row(amount_fen=0), "pay.import.not_more_than", {"limit_fen": 0}),
    (bill_row(amount_fen=10**11), "pay.import.more_than_maximum", {"limit_fen": 10**10}),
    (bill_row(due_date="31/12/2026"), "pay.import.not_a_date", {"field": "due_date"}),
    (bill_row(due_date="1999-12-31"), "pay.import.date_out_of_range", {"min": "2000-01-01"}),
    (bill_row(payer_name="张\u202e三"), "pay.import.invisible_character", {"character": "U+202E"}),
    (bill_row(currency="USD"), "pay.import.not_allowed", {"field": "currency"}),
    (bill_row(account_number="12AB"), "pay.import.wrong_account_format", {}),
    (bill_row(details={"place": "x"}), "pay.import.details_not_taken", {}),
]


@pytest.mark.parametrize(("row", "code", "params"), CASES)
def test_each_refused_row_has_its_code_and_a_reason_in_both_languages(
    db_session: Session, row: Any, code: str, params: dict[str, Any]
) -> None:
    refused = _refused(db_session, row)
    assert refused.code == code
    assert params.items() <= refused.params.items()
    template = billing.ROW_REASONS[code]
    # the English reason is the template filled in; nothing is left unfilled
    assert refused.reason == format_message(template, refused.params)
    assert "%(" not in refused.reason
    # Chinese says it in Chinese, amounts in yuan, never in fen
    # (the column is named as the file or the API names it: amount_fen is a field's name)
    field = str(refused.params.get("field", "\0"))
    chinese = translate("zh", template, refused.params)
    assert re.search(r"[\u4e00-\u9fff]", chinese), chinese
    assert not LATIN_WORD.search(chinese.replace(field, "")), chinese
    assert "fen" not in chinese.replace(field, "")
    assert "fen" not in translate("en", template, refused.params).replace(field, "")


def test_an_amount_limit_is_shown_in_yuan(db_session: Session) -> None:
    refused = _refused(db_session, bill_row(amount_fen=0))
    assert "0.00" in translate("zh", billing.ROW_REASONS[refused.code], refused.params)


def test_a_csv_row_names_the_files_amount_column(db_session: Session) -> None:
    # given a file whose amount is not yuan with two decimals
    biller = make_biller(db_session)
    content = (
        "bill_number,account_number,payer_name,amount,period,due_date\n"
        "B1,0102030405,张三,12.345,2026-10,2026-12-20\n"
    ).encode()
    with pytest.raises(ImportRejected) as refused:
        billing.import_bills_csv(
            session=db_session, actor=SYSTEM, biller_id=biller.id, content=content
        )
    (row,) = refused.value.extra["errors"]
    # then the reason names the file's column, and says how to write an amount
    assert row["code"] == "pay.import.not_an_amount"
    assert row["params"] == {"field": "amount"}
    assert row["line"] == 2
    assert "52.31" in translate("zh", billing.ROW_REASONS[row["code"]], row["params"])


def test_a_rejected_import_says_how_many_rows_in_chinese(db_session: Session) -> None:
    biller = make_biller(db_session)
    rows = [bill_row(), bill_row(amount_fen=-1)]
    with pytest.raises(ImportRejected) as refused:
        billing.import_bills(session=db_session, actor=SYSTEM, biller_id=biller.id, rows=rows)
    assert refused.value.params == {"refused": 1, "total": 2}
    assert translate("zh", refused.value.message, refused.value.params) == (
        "2 行中有 1 行无效，未导入任何账单"  # noqa: RUF001
    )


@given(st.dictionaries(st.sampled_from([*billing.CSV_COLUMNS, "x", "currency"]), st.text()))
def test_any_row_is_refused_with_a_known_code(row: dict[str, str]) -> None:
    # Validation alone (no database): whatever a row holds, its refusal has a reason we know.
    from pydantic import ValidationError

    from civicloud.pay.schemas import BillIn

    try:
        BillIn.model_validate(row)
    except ValidationError as exc:
        code, params = billing._first_error(exc)
        assert code in billing.ROW_REASONS
        assert "%(" not in format_message(billing.ROW_REASONS[code], params)
        assert "%(" not in translate("zh", billing.ROW_REASONS[code], params)
