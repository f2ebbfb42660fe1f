"""Hostile and odd input to the parser and the id validators (issue #18, defects 4, 5
and 8; issue #16: unknown distinguished codes, one spelling of a district id)."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from datetime import date

import pytest

from engine.domain.models import normalize_district, validate_district, validate_month
from engine.errors import ConfigError, ParseError
from engine.settings import DEFAULT_MAX_EXPORT_BYTES, Settings, clamp
from engine.sources.parse import (
    Report,
    RowMemo,
    build_snapshot,
    club_metrics,
    decode_export,
    parse_export,
    parse_report_param,
    summary_districts,
)
from tests.engine.sources.test_parse import (
    CLUB_ROWS,
    DISTRICT_PERFORMANCE,
    FOOTER,
    SUMMARY,
    club_csv,
)

# --- months and district ids: ASCII, matched in full -------------------------------

NOT_MONTHS = ["２０２５-06", "٢٠٢٥-٠٦", "2025-06\n", "2025-06 ", "2025-6", "2025-13", "x2025-06"]


@pytest.mark.parametrize("month", NOT_MONTHS)
def test_a_month_is_ascii_and_matched_in_full(month: str) -> None:
    with pytest.raises(ConfigError):
        validate_month(month)


@pytest.mark.parametrize("month", NOT_MONTHS)
def test_a_requested_month_is_validated_too(month: str) -> None:
    with pytest.raises(ConfigError):
        parse_export(club_csv(*CLUB_ROWS), "club.csv", requested=month)


@pytest.mark.parametrize("district", ["４２", "٤٢", "42\n", " 42", "4-2", "", "12345", "Ⅻ"])
def test_a_district_is_ascii_and_matched_in_full(district: str) -> None:
    with pytest.raises(ConfigError):
        validate_district(district)
    with pytest.raises(ValueError):
        normalize_district(district)


@pytest.mark.parametrize(
    ("district", "normal"), [("02", "2"), ("2", "2"), ("0042", "42"), ("f", "F"), ("0", "0")]
)
def test_a_district_has_one_spelling(district: str, normal: str) -> None:
    assert validate_district(district) == normalize_district(district) == normal


def test_zero_padded_districts_in_a_summary_are_one_district_with_the_plain_id() -> None:
    padded = SUMMARY.replace("\n42,", "\n0042,")
    assert summary_districts(parse_export(padded, "summary.csv")) == ["1", "42", "F"]


def test_a_district_listed_twice_in_a_summary_is_refused() -> None:
    twice = SUMMARY.replace("\nF,14,", "\n02,14,").replace("\n01,03,", "\n2,03,")
    with pytest.raises(ParseError) as info:
        parse_export(twice, "summary.csv")
    assert (info.value.source, info.value.line, info.value.column) == ("summary.csv", 4, "DISTRICT")
    assert "'2'" in str(info.value) and "line 2" in str(info.value)


@pytest.mark.parametrize(
    "cell",
    ["٢٠", "２０", '"1,２34"', "20\u0663"],  # other scripts' digits are not numbers
)
def test_numbers_are_ascii(cell: str) -> None:
    row = CLUB_ROWS[0].replace(",20,26,", f",20,{cell},")
    with pytest.raises(ParseError) as info:
        parse_export(club_csv(row), "club.csv")
    assert (info.value.line, info.value.column) == (2, "Active Members")


@pytest.mark.parametrize(
    "footer",
    [
        "Month of Jun, As of ０7/05/2025",
        "Month of Jun, As of 07/05/٢٠٢٥",
        "Month of\u2003Jun, As of 07/05/2025",  # an em space
    ],
)
def test_footers_are_ascii(footer: str) -> None:
    with pytest.raises(ParseError, match="malformed footer"):
        parse_export(club_csv(*CLUB_ROWS, footer=footer), "club.csv")


def test_report_params_are_ascii() -> None:
    with pytest.raises(ParseError):
        parse_report_param("clubperformance~42~６/30/2025~7/5/2025~2024-2025")
    with pytest.raises(ParseError):
        parse_report_param("clubperformance~４２~6/30/2025~7/5/2025~2024-2025")
    assert parse_report_param("clubperformance~042~6/30/2025~7/5/2025~2024-2025").district == "42"


# --- repeated clubs and oversized exports ------------------------------------------


def test_a_repeated_club_is_refused_naming_file_line_and_club() -> None:
    text = club_csv(*CLUB_ROWS[:3], CLUB_ROWS[1], *CLUB_ROWS[3:])
    with pytest.raises(ParseError) as info:
        parse_export(text, "exports/club.csv")
    err = info.value
    assert (err.source, err.line, err.column) == ("exports/club.csv", 5, "Club Number")
    assert "'2345'" in str(err) and "first at line 3" in str(err)


def test_a_repeated_club_is_refused_with_a_memo_too() -> None:
    memo = RowMemo()
    parse_export(club_csv(*CLUB_ROWS), "d1.csv", memo=memo)  # every line in the memo
    with pytest.raises(ParseError, match="listed again"):
        parse_export(club_csv(*CLUB_ROWS, CLUB_ROWS[0]), "d2.csv", memo=memo)


def test_a_repeated_club_in_district_performance_is_refused() -> None:
    body, footer = DISTRICT_PERFORMANCE.rsplit("Month of", 1)
    repeated = body + body.splitlines()[1] + "\nMonth of" + footer
    with pytest.raises(ParseError) as info:
        parse_export(repeated, "perf.csv")
    assert (info.value.line, info.value.column) == (4, "Club")


def test_an_export_over_the_size_cap_is_refused_naming_file_and_size() -> None:
    text = club_csv(*CLUB_ROWS)
    assert len(parse_export(text, "club.csv", max_bytes=len(text)).rows) == len(CLUB_ROWS)
    with pytest.raises(ParseError) as info:
        parse_export(text, "club.csv", max_bytes=len(text) - 1)
    assert info.value.source == "club.csv"
    assert f"{len(text):,} characters" in str(info.value)
    assert "max_export_bytes" in str(info.value)


def test_the_default_cap_refuses_a_huge_export_before_reading_it() -> None:
    row = CLUB_ROWS[0] + "\r\n"
    huge = club_csv() + row * (DEFAULT_MAX_EXPORT_BYTES // len(row) + 1)
    with pytest.raises(ParseError, match="over the cap of 20,000,000"):
        parse_export(huge, "huge.csv")


def test_the_cap_is_a_clamped_source_setting() -> None:
    assert Settings().source.max_export_bytes == DEFAULT_MAX_EXPORT_BYTES == 20_000_000
    assert clamp("source", "max_export_bytes", 10)[0] == 100_000
    assert Settings().with_values("source", max_export_bytes=5e9).source.max_export_bytes == (
        500_000_000
    )


# --- unknown distinguished codes ---------------------------------------------------

WITH_H = (
    CLUB_ROWS[0],
    CLUB_ROWS[1].replace(",S", ",H"),
    CLUB_ROWS[2],
    CLUB_ROWS[5].replace(",D", ",h"),
)


def test_an_unknown_distinguished_code_is_kept_and_counted_under_its_own_level() -> None:
    export = parse_export(club_csv(*WITH_H), "exports/club_42.csv")
    assert [row.text["Club Distinguished Status"] for row in export.rows] == ["M", "H", "", "H"]
    metrics = club_metrics(export)
    assert metrics["distinguished_level_h_clubs"] == 2.0
    assert metrics["total_distinguished_clubs"] == 1.0  # M only: H's rank is unknown
    assert metrics["clubs"] == 4.0
    (warning,) = export.warnings
    assert "exports/club_42.csv" in warning and "'H'" in warning
    assert "2 club(s) from line 3" in warning


def test_the_warning_reaches_the_snapshot_and_survives_the_memo() -> None:
    memo = RowMemo()
    first = parse_export(club_csv(*WITH_H), "d1.csv", memo=memo)
    again = parse_export(club_csv(*WITH_H), "d2.csv", memo=memo)  # rows from the memo
    assert again.rows[1] is first.rows[1]
    assert again.warnings == tuple(w.replace("d1.csv", "d2.csv") for w in first.warnings)
    snapshot = build_snapshot("42", again, None)
    assert snapshot.warnings == again.warnings
    assert snapshot.metrics["distinguished_level_h_clubs"] == 2.0


def test_known_codes_give_no_warning_and_no_extra_metric() -> None:
    export = parse_export(club_csv(*CLUB_ROWS), "club.csv")
    assert export.warnings == ()
    assert not any(name.startswith("distinguished_level_") for name in club_metrics(export))


def test_several_unknown_codes_each_get_a_warning_in_district_performance() -> None:
    text = DISTRICT_PERFORMANCE.replace("Smedley Distinguished,", "Q,").replace(
        ",,03/15", ",XY,03/15"
    )
    export = parse_export(text, "perf.csv")
    assert export.report == Report.DISTRICT_PERFORMANCE
    assert [row.text["Distinguished Status"] for row in export.rows] == ["Q", "XY"]
    assert [w.split(": ", 1)[1][:33] for w in export.warnings] == [
        "unknown distinguished status 'Q' ",
        "unknown distinguished status 'XY'",
    ]


@pytest.mark.parametrize("cell", ["S&P", "Honours", "H1"])
def test_what_is_no_code_is_still_refused(cell: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_export(club_csv(CLUB_ROWS[0].replace(",M", f",{cell}")), "club.csv")
    assert info.value.column == "Club Distinguished Status"


# --- encodings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.encode("utf-16"),  # a spreadsheet's "Unicode text": BOM, LE
        lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
        lambda text: text.encode("utf-16-le"),  # no BOM: the NUL bytes tell
        lambda text: text.encode("utf-16-be"),
        lambda text: text.encode("utf-32"),
        lambda text: text.encode("utf-8-sig"),
        lambda text: text.encode("utf-8"),
    ],
    ids=["utf-16", "utf-16-be-bom", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig", "utf-8"],
)
def test_unicode_exports_are_decoded(encode: Callable[[str], bytes]) -> None:
    text = club_csv(*CLUB_ROWS).replace("Harbor", "Häfen")
    assert decode_export(encode(text)) == text
    export = parse_export(decode_export(encode(text)), "club.csv")
    assert export.rows[0].text["Club Name"] == "Häfen Speakers"
    assert (export.data_month, export.as_of) == ("2025-06", date(2025, 7, 5))


def test_decode_export_never_raises() -> None:
    for data in (codecs.BOM_UTF16_LE + b"\x00\xd8", codecs.BOM_UTF32_LE + b"\xff" * 5, b"\x00"):
        assert isinstance(decode_export(data), str)


def test_a_utf16_export_is_not_misread_as_windows_1252() -> None:
    text = club_csv(*CLUB_ROWS)
    assert parse_export(decode_export(text.encode("utf-16")), "club.csv") == parse_export(
        text, "club.csv"
    )
    assert FOOTER in decode_export(text.encode("utf-16-le"))  # no BOM: NUL bytes tell
