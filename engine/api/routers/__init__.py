"""One APIRouter per area: performance (and caches), batches, jobs, operations."""
