"""The district dashboard (or ``recon sim serve``) over HTTP as a source."""

from __future__ import annotations

from datetime import date
from typing import Unpack

import httpx

from engine.cancel import CancelToken
from engine.errors import SourceError
from engine.sources.base import ExportSource, SourceOptions, export_too_large
from engine.sources.parse import Report, decode_export, report_param


class HttpSource(ExportSource):
    """The dashboard (or ``recon sim serve``) over HTTP, with one reused httpx client.

    Fetches ``{base_url}/export.aspx?type=CSV&report=...`` (see
    :func:`engine.sources.parse.report_param`; the district as the one spelling of
    :func:`~engine.domain.models.normalize_district`). Timeouts, connection errors
    and 5xx are transient; other 4xx are permanent; a bad CSV is a ParseError naming
    the URL, and so is a body over ``max_bytes``: refused from its Content-Length, or
    while it streams in, never read whole.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 30.0,
        **options: Unpack[SourceOptions],
    ) -> None:
        super().__init__(**options)
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
            response = self._client.send(request, stream=True)
            try:
                _check_status(response, district, month, url)
                body = self._body(response, url, cancel)
            finally:
                response.close()
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
        except httpx.RequestError as exc:  # a body that cannot be decoded, redirect loops
            raise SourceError(repr(exc), district=district, month=month, url=url) from exc
        return decode_export(body), url

    def _body(self, response: httpx.Response, url: str, cancel: CancelToken) -> bytes:
        """The body, refused as soon as it is known to be over the cap."""
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > self._max_bytes:
            raise export_too_large(url, int(length), self._max_bytes)
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > self._max_bytes:
                raise export_too_large(url, None, self._max_bytes)
        cancel.check()
        return bytes(body)


def _check_status(response: httpx.Response, district: str | None, month: str, url: str) -> None:
    if response.status_code != 200:
        transient = response.status_code >= 500 or response.status_code == 429
        raise SourceError(
            f"HTTP {response.status_code}",
            district=district,
            month=month,
            url=url,
            transient=transient,
        )
