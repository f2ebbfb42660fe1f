"""The district dashboard (or ``recon sim serve``) over HTTP as a source."""

from __future__ import annotations

from datetime import date

import httpx

from engine.cancel import CancelToken
from engine.errors import SourceError
from engine.instrument import NO_INSTRUMENT, Instrument
from engine.sources.base import ExportSource
from engine.sources.parse import Report, decode_export, report_param


class HttpSource(ExportSource):
    """The dashboard (or ``recon sim serve``) over HTTP, with one reused httpx client.

    Fetches ``{base_url}/export.aspx?type=CSV&report=...`` (see
    :func:`engine.sources.parse.report_param`). Timeouts, connection errors and 5xx
    are transient; other 4xx are permanent; a bad CSV is a ParseError naming the URL.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 30.0,
        share_summary: bool,
        instrument: Instrument = NO_INSTRUMENT,
    ) -> None:
        super().__init__(share_summary=share_summary, instrument=instrument)
        self.name = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._client = httpx.Client(base_url=self.name, timeout=httpx.Timeout(timeout_s))

    def close(self) -> None:
        super().close()
        self._client.close()

    def _club(
        self, district: str, month: str, collection_date: date, cancel: CancelToken
    ) -> tuple[str, str]:
        param = report_param(Report.CLUB_PERFORMANCE, district, month, collection_date)
        return self._get(param, district, month, cancel)

    def _summary_export(
        self, month: str, collection_date: date, cancel: CancelToken
    ) -> tuple[str, str]:
        param = report_param(Report.DISTRICT_SUMMARY, "", month, collection_date)
        return self._get(param, None, month, cancel)

    def _get(
        self, param: str, district: str | None, month: str, cancel: CancelToken
    ) -> tuple[str, str]:
        """The export's text and URL."""
        cancel.check()
        request = self._client.build_request(
            "GET", "/export.aspx", params={"type": "CSV", "report": param}
        )
        url = str(request.url)
        try:
            response = self._client.send(request)
        except httpx.TransportError as exc:  # timeouts included: all worth a retry
            timed_out = isinstance(exc, httpx.TimeoutException)
            message = (
                f"timed out after {self.timeout_s:g} s"
                if timed_out
                else f"connection failed: {exc!r}"
            )
            raise SourceError(
                message, district=district, month=month, url=url, transient=True
            ) from exc
        cancel.check()
        if response.status_code != 200:
            transient = response.status_code >= 500 or response.status_code == 429
            raise SourceError(
                f"HTTP {response.status_code}",
                district=district,
                month=month,
                url=url,
                transient=transient,
            )
        return decode_export(response.content), url
