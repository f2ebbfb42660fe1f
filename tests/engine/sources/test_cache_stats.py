"""The source's day-summary cache and row memo count their reads (issue #19: Cache page)."""

from __future__ import annotations

from datetime import date

from engine.settings import SourceSettings
from engine.sources.factory import make_source
from engine.sources.parse import CacheCounts


def test_summary_cache_and_row_memo_count_hits_and_misses() -> None:
    source = make_source(SourceSettings(), share_summary=True)
    try:
        assert source.cache_stats()["source row memo"].hit_rate is None  # 0 of 0: no rate
        for day in (date(2025, 7, 2), date(2025, 7, 3)):
            for district in ("1", "2"):
                source.fetch(district, "2025-06", day)
        found = source.cache_stats()
    finally:
        source.close()
    summaries, memo = found["source day summaries"], found["source row memo"]
    assert (summaries.hits, summaries.misses, summaries.size) == (2, 2, 2)
    assert memo.hits > 0 and memo.misses > 0 and 0 < memo.size <= memo.limit
    assert CacheCounts(hits=3, misses=1, size=1, limit=2).hit_rate == 0.75


def test_naive_sources_have_no_shared_caches() -> None:
    source = make_source(SourceSettings(), share_summary=False)
    assert source.cache_stats() == {}
