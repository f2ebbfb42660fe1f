from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ParseError
from engine.sources.parse import (
    Report,
    RowMemo,
    build_snapshot,
    club_metrics,
    decode_export,
    parse_export,
    parse_report_param,
    report_param,
    summary_districts,
    summary_metrics,
)

CLUB_HEADER = (
    "District,Division,Area,Club Number,Club Name,Club Status,Mem. Base,Active Members,"
    'Goals Met,Level 1s,"Level 4s, Level 5s, or DTM award",New Members,Club Distinguished Status'
)
CLUB_ROWS = (
    "42,A,1,1234,Harbor Speakers,Active,20,26,10,4,1,6,M",
    '42,A,1,2345,"Speak, Lead & Grow",Active,18,22,7,4,1,3,S',
    "42,B,2,3456,Early Birds,Low,12,7,2,4,0,1,",
    "42,B,2,4567,Night Owls,Suspended,10,0,0,0,0,0,",
    "42,C,3,5678,Civic Club,Ineligible,9,9,5,4,1,0,",
    "42,C,3,6789,Lakeside,Active,15,19,5,4,1,4,D",
)
FOOTER = "Month of Jun, As of 07/05/2025"
SUMMARY = """\
DISTRICT,REGION,Paid Clubs,Paid Club Base,% Club Growth,Total YTD Payments,Payment Base,\
% Payment Growth,Active Clubs,Total Distinguished Clubs,Select Distinguished Clubs,\
Presidents Distinguished Clubs
01,03,41,45,-8.89%,"2,154","1,761",22.32%,41,18,5,1
42,09,"1,087",94,-7.45%,"14,782","14,545",1.63%,86,44,19,8
F,14,120,118,1.69%,"6,001","5,900",1.71%,119,50,20,9
"Month of Jun, As of 07/05/2025",,,,,,,,,,,
"""
DISTRICT_PERFORMANCE = """\
District,Division,Area,Club,Club Name,New,Late Ren.,Oct. Ren.,Apr. Ren.,Total Ren.,Total Chart,\
Total to Date,Distinguished Status,Charter Date/Suspend Date
42,A,1,1234,Harbor Speakers,6,1,15,14,30,0,36,Smedley Distinguished,
42,B,2,3456,Early Birds,1,0,9,"1,002","1,011",0,"1,012",,03/15/2025
Month of Jun, As of 07/05/2025
"""


def club_csv(*rows: str, header: str = CLUB_HEADER, footer: str = FOOTER) -> str:
    return "\r\n".join((header, *rows, footer)) + "\r\n"


def parse_error(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_export(text, "exports/club.csv")
    assert info.value.source == "exports/club.csv"
    assert "exports/club.csv" in str(info.value)
    return info.value


def test_club_performance_rows_and_metrics() -> None:
    export = parse_export(club_csv(*CLUB_ROWS), "club.csv")
    assert export.report == Report.CLUB_PERFORMANCE
    assert (export.data_month, export.as_of) == ("2025-06", date(2025, 7, 5))
    assert [r.line for r in export.rows] == [2, 3, 4, 5, 6, 7]
    assert export.rows[1].text["Club Name"] == "Speak, Lead & Grow"
    assert export.rows[2].text["Club Distinguished Status"] == ""
    assert club_metrics(export) == {
        "membership": 83.0,
        "membership_base": 84.0,
        "net_growth": -1.0,
        "new_members": 14.0,
        "clubs": 6.0,
        "active_clubs": 3.0,
        "suspended_clubs": 1.0,
        "low_clubs": 1.0,
        "ineligible_clubs": 1.0,
        "distinguished_clubs": 1.0,
        "select_distinguished_clubs": 1.0,
        "presidents_distinguished_clubs": 0.0,
        "smedley_distinguished_clubs": 1.0,
        "total_distinguished_clubs": 3.0,
        "dcp_goals": 29.0,
    }


def test_district_summary_with_commas_and_percent() -> None:
    export = parse_export(SUMMARY, "summary.csv")
    assert export.report == Report.DISTRICT_SUMMARY
    assert summary_districts(export) == ["1", "42", "F"]
    assert summary_metrics(export, "42") == {
        "paid_clubs": 1087.0,
        "total_payments": 14782.0,
        "payment_base": 14545.0,
    }
    assert export.rows[0].numbers["% Club Growth"] == -8.89
    assert export.rows[1].numbers["% Payment Growth"] == 1.63


def test_district_performance() -> None:
    export = parse_export(DISTRICT_PERFORMANCE, "perf.csv")
    assert export.report == Report.DISTRICT_PERFORMANCE
    first, second = export.rows
    assert first.text["Distinguished Status"] == "M"
    assert second.text["Distinguished Status"] == ""
    assert second.numbers["Apr. Ren."] == 1002.0
    assert second.numbers["Total to Date"] == 1012.0
    assert second.text["Charter Date/Suspend Date"] == "03/15/2025"


def test_snapshot_joins_club_performance_and_summary() -> None:
    club = parse_export(club_csv(*CLUB_ROWS), "club.csv")
    snap = build_snapshot("42", club, parse_export(SUMMARY, "summary.csv"))
    assert (snap.district, snap.as_of, snap.data_month) == ("42", date(2025, 7, 5), "2025-06")
    assert snap.metrics["paid_clubs"] == 1087.0
    assert snap.metrics["membership"] == 83.0
    assert "paid_clubs" not in build_snapshot("42", club, None).metrics


@pytest.mark.parametrize(
    ("footer", "month", "as_of"),
    [
        ("Month of Jun, As of 07/05/2025", "2025-06", date(2025, 7, 5)),
        ('"Month of June, As of 07/05/2025"', "2025-06", date(2025, 7, 5)),
        ('"Month of Jun, As of 07/05/2025",,,,,,,,,,,,', "2025-06", date(2025, 7, 5)),
        (',,"Month of Jun, As of 07/05/2025",,', "2025-06", date(2025, 7, 5)),
        ("Month of Jun,As of 07/05/2025,,,", "2025-06", date(2025, 7, 5)),
        ("  month of SEPT , as of 10/8/2025", "2025-09", date(2025, 10, 8)),
        ("Month of Mar., As of 04/01/2026", "2026-03", date(2026, 4, 1)),
        ("Month of Dec, As of 01/03/2026", "2025-12", date(2026, 1, 3)),
        ("Month of December, As of 12/20/2025", "2025-12", date(2025, 12, 20)),
        ("Month of Jan, As of 12/31/2025", "2026-01", date(2025, 12, 31)),
    ],
)
def test_footer_variants(footer: str, month: str, as_of: date) -> None:
    export = parse_export(club_csv(*CLUB_ROWS, footer=footer), "club.csv")
    assert (export.data_month, export.as_of) == (month, as_of)
    assert len(export.rows) == len(CLUB_ROWS)


def test_column_name_variants_of_other_years() -> None:
    header = (
        "District,Division,Area,Club ID,Club Name,Status,Membership Base,Active Membership,"
        "Goals Met,New Members,Distinguished Status"
    )
    rows = (
        "42,A,1,1234,Harbor Speakers,ACTIVE,20,26,10,6,Smedley Distinguished",
        "42,A,1,2345,Lakeside,active,18,22,7,3,Select Distinguished",
        "42,A,1,3456,Civic,Active,18,22,9,3,President's Distinguished",
        "42,A,1,4567,Pioneer,Active,15,19,5,4,Distinguished",
        "42,A,1,5678,Summit,Low,7,7,0,0,  ",
    )
    export = parse_export(club_csv(*rows, header=header), "old.csv")
    assert [r.text["Club Distinguished Status"] for r in export.rows] == ["M", "S", "P", "D", ""]
    assert [r.text["Club Status"] for r in export.rows][:2] == ["Active", "Active"]
    assert export.rows[0].text["Club Number"] == "1234"
    metrics = club_metrics(export)
    assert metrics["membership"] == 96.0
    assert metrics["total_distinguished_clubs"] == 4.0


def test_blank_lines_and_multiline_fields_keep_file_line_numbers() -> None:
    text = (
        "\r\n"
        + CLUB_HEADER
        + '\r\n42,A,1,1234,"Harbor\r\nSpeakers",Active,20,26,10,4,1,6,M\r\n\r\n'
        + "42,A,1,2345,Lakeside,Active,18,2x,7,4,1,3,S\r\n"
        + FOOTER
    )
    err = parse_error(text)
    assert (err.line, err.column) == (6, "Active Members")


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ("42,A,1,2345,Lakeside,Active,18,22,seven,4,1,3,S", "Goals Met", "expected a number"),
        ("42,A,1,2345,Lakeside,Active,18,12%,7,4,1,3,S", "Active Members", "expected a number"),
        ("42,A,1,2345,Lakeside,Closed,18,22,7,4,1,3,S", "Club Status", "unknown club status"),
        # An unknown code of letters is kept (see test_parse_hostile.py); "S&P" is no code.
        ("42,A,1,2345,Lakeside,Active,18,22,7,4,1,3,S&P", "Club Distinguished Status", "unknown"),
        ("42,A,1,2345,Lakeside,Active,18,22", "Goals Met", "row has 8 cells"),
        ("42,A,1,2345,Lakeside,Active,18,22,7,4,1,3,S,extra", None, "row has 14 cells"),
    ],
)
def test_malformed_row_names_file_line_and_column(
    row: str, column: str | None, message: str
) -> None:
    err = parse_error(club_csv(CLUB_ROWS[0], CLUB_ROWS[1], row))
    assert err.line == 4
    assert err.column == column
    assert message in str(err)
    assert "line 4" in str(err)


def test_trailing_empty_cells_are_accepted() -> None:
    export = parse_export(club_csv(CLUB_ROWS[0] + ",,,"), "club.csv")
    assert export.rows[0].numbers["Active Members"] == 26.0


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "empty file"),
        ("\r\n ,, \r\n", 1, "empty file"),
        ("Name,Value\r\nx,1\r\n" + FOOTER, 1, "unknown export"),
        (club_csv(*CLUB_ROWS, footer=""), 7, "no footer"),
        (club_csv(*CLUB_ROWS, footer="Month of Foo, As of 07/05/2025"), 8, "malformed footer"),
        (club_csv(*CLUB_ROWS, footer="Month of Jun"), 8, "malformed footer"),
        (club_csv(*CLUB_ROWS, footer="Month of Feb, As of 02/30/2025"), 8, "invalid as-of date"),
        (club_csv(CLUB_ROWS[0]) + CLUB_ROWS[1] + "\r\n", 4, "after the footer"),
        (club_csv(CLUB_ROWS[0]).replace("Harbor", "x" * 200_000), 2, "unreadable CSV"),
    ],
)
def test_malformed_files(text: str, line: int, message: str) -> None:
    err = parse_error(text)
    assert err.line == line
    assert message in str(err)


def test_missing_required_column_is_named() -> None:
    header = CLUB_HEADER.replace(",New Members", "")
    err = parse_error(club_csv(header=header))
    assert (err.line, err.column) == (1, "New Members")


def test_metrics_of_the_wrong_export_type() -> None:
    summary = parse_export(SUMMARY, "summary.csv")
    with pytest.raises(ParseError, match="expected a clubperformance export"):
        club_metrics(summary)
    with pytest.raises(ParseError) as info:
        summary_metrics(summary, "7")
    assert info.value.column == "DISTRICT"


def test_decode_export_handles_bom_and_windows_1252() -> None:
    assert decode_export("\ufeffClub".encode()) == "Club"
    assert decode_export("Café".encode("cp1252")) == "Café"


def test_report_param_round_trip() -> None:
    param = report_param(Report.CLUB_PERFORMANCE, "42", "2025-06", date(2025, 7, 5))
    assert param == "clubperformance~42~6/30/2025~7/5/2025~2024-2025"
    request = parse_report_param(param)
    assert (request.report, request.district, request.month, request.collection_date) == (
        "clubperformance",
        "42",
        "2025-06",
        date(2025, 7, 5),
    )
    summary = report_param(Report.DISTRICT_SUMMARY, "42", "2026-01", date(2026, 2, 3))
    assert summary == "districtsummary~~1/31/2026~2/3/2026~2025-2026"


@pytest.mark.parametrize(
    "param",
    [
        "clubperformance~42~6/30/2025~7/5/2025",
        "clubperformance~42~6/29/2025~7/5/2025~2024-2025",
        "clubperformance~42~6/30/2025~7/5/2025~2025-2026",
        "clubperformance~~6/30/2025~7/5/2025~2024-2025",
        "districtsummary~42~6/30/2025~7/5/2025~2024-2025",
        "clubperformance~4-2~6/30/2025~7/5/2025~2024-2025",
        "clubperformance~42~6/30/2025~7/32/2025~2024-2025",
    ],
)
def test_malformed_report_param(param: str) -> None:
    with pytest.raises(ParseError):
        parse_report_param(param)


VALID = club_csv(*CLUB_ROWS)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.tuples(st.integers(0, len(VALID)), st.integers(0, 40), st.text(max_size=20)).map(
            lambda t: VALID[: t[0]] + t[2] + VALID[t[0] + t[1] :]
        ),
    )
)
def test_any_input_parses_or_raises_parse_error(text: str) -> None:
    try:
        export = parse_export(text, "fuzz.csv")
    except ParseError as exc:
        assert exc.source == "fuzz.csv"
    else:
        assert export.data_month[:4].isdigit()


# --- parsed rows reused across exports (optimized mode) ------------------------------


def test_a_memo_reuses_the_rows_of_unchanged_lines_and_reads_the_rest() -> None:
    memo = RowMemo()
    day1 = club_csv(*CLUB_ROWS)
    revised = CLUB_ROWS[2].replace(",12,7,", ",12,9,")  # Early Birds: 7 -> 9 members
    day2 = club_csv(
        *CLUB_ROWS[:2], revised, *CLUB_ROWS[3:], footer="Month of Jun, As of 07/06/2025"
    )
    first = parse_export(day1, "d1.csv", memo=memo)
    second = parse_export(day2, "d2.csv", memo=memo)
    assert second == parse_export(day2, "d2.csv")  # the same as without a memo
    assert first.rows[0] is second.rows[0] and first.rows[3] is second.rows[3]
    assert first.rows[2] is not second.rows[2]
    assert second.rows[2].numbers["Active Members"] == 9
    assert second.as_of == date(2025, 7, 6)
    assert len(memo) == len(CLUB_ROWS) + 1


def test_a_memo_never_hides_an_error_or_a_changed_header() -> None:
    memo = RowMemo()
    parse_export(club_csv(*CLUB_ROWS), "d1.csv", memo=memo)
    bad = CLUB_ROWS[1].replace(",22,", ",2x,")
    with pytest.raises(ParseError) as info:
        parse_export(club_csv(CLUB_ROWS[0], bad), "d2.csv", memo=memo)
    assert (info.value.source, info.value.line, info.value.column) == (
        "d2.csv",
        3,
        "Active Members",
    )
    other = CLUB_HEADER.replace("Club Status", "Status")  # another year's name, same column
    export = parse_export(club_csv(*CLUB_ROWS, header=other), "d3.csv", memo=memo)
    assert export.rows[0] is not parse_export(club_csv(*CLUB_ROWS), "d4.csv", memo=memo).rows[0]


def test_a_memo_is_bounded_and_skips_multiline_records() -> None:
    memo = RowMemo(maxsize=4)
    text = club_csv(*CLUB_ROWS[:3], '42,A,1,9999,"Two\r\nLines",Active,20,26,10,4,1,6,M')
    export = parse_export(text, "d1.csv", memo=memo)
    assert export == parse_export(text, "d1.csv")
    assert export.rows[3].text["Club Name"] == "Two\r\nLines"
    assert len(memo) == 3  # the record over two lines is read each time
    parse_export(club_csv(*CLUB_ROWS), "d2.csv", memo=memo)
    assert len(memo) <= 4


def test_rows_of_another_data_month_are_not_read() -> None:
    text = club_csv(*CLUB_ROWS)  # Month of Jun, As of 07/05/2025
    same = parse_export(text, "club.csv", rows_for="2025-06")
    assert same == parse_export(text, "club.csv") and len(same.rows) == len(CLUB_ROWS)
    other = parse_export(
        club_csv(CLUB_ROWS[0], CLUB_ROWS[1].replace(",22,", ",2x,")), "c.csv", rows_for="2025-05"
    )
    assert (other.report, other.rows, other.data_month, other.as_of) == (
        Report.CLUB_PERFORMANCE,
        (),
        "2025-06",
        date(2025, 7, 5),
    )


@pytest.mark.parametrize(
    "text",
    [
        club_csv(*CLUB_ROWS, footer="Month of Jun, As of 13/45/2025"),  # bad footer date
        club_csv(*CLUB_ROWS, footer="Totals,1,2,3"),  # no footer at the end
        "Not,A,Known,Header\r\n" + FOOTER,  # the header is still checked
    ],
)
def test_rows_for_never_skips_an_error_of_the_header_or_footer(text: str) -> None:
    with pytest.raises(ParseError):
        parse_export(text, "club.csv", rows_for="2025-05")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (club_csv(*CLUB_ROWS[:2], footer=FOOTER + "\r\n" + FOOTER.replace("Jun", "Jul")), "after"),
        (club_csv(CLUB_ROWS[0], "42,A,1,2345,Short,Active"), "row has 6 cells"),
    ],
)
def test_rows_for_still_checks_the_layout_of_another_months_export(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_export(text, "club.csv", rows_for="2025-05")
