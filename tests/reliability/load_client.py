"""A bounded load from a second process: ``python -m tests.reliability.load_client URL N C``.

C threads share N GET requests over the read endpoints and print one JSON
line: requests, errors (non-200 or transport errors), p50 and p99 latency (ms).
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time

import httpx

PATHS = (
    "/healthz",
    "/api/reconciliation/jobs?month=2025-03",
    "/api/reconciliation/performance/stats?timeWindow=60000",
    "/api/reconciliation/performance/cache",
    "/api/reconciliation/performance/bottlenecks?timeWindow=60000",
    "/api/reconciliation/performance/resources?timeWindow=60000",
)


def main(url: str, total: int, clients: int) -> dict[str, float]:
    counter = itertools.count()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while (n := next(counter)) < total:
                start = time.perf_counter()
                try:
                    status = http.get(PATHS[n % len(PATHS)]).status_code
                    error = None if status == 200 else f"HTTP {status}"
                except httpx.HTTPError as exc:
                    error = repr(exc)
                with lock:
                    latencies.append(time.perf_counter() - start)
                    if error:
                        errors.append(error)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "first_errors": errors[:5],  # type: ignore[dict-item]
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
