"""The batch runner: priorities, concurrency limit, retries with backoff, timeouts, throttling."""
