"""Workers of the procrastinate runner (``recon worker``): alive or lost, what they run."""

from __future__ import annotations

from fastapi import APIRouter

from engine.api.deps import PREFIX, ConsoleDep
from engine.api.schemas import WorkersOut
from engine.app import queries

router = APIRouter(prefix=PREFIX)


@router.get("/workers")
def list_workers(console: ConsoleDep) -> WorkersOut:
    """Every worker with its host, pid, start, last heartbeat and running items
    (``batch/item``); one silent for longer than ``stallTimeoutS`` is ``lost``."""
    found = queries.workers_view(console)
    alive = sum(w.state == "alive" for w in found)
    return WorkersOut.model_validate({"workers": found, "total": len(found), "alive": alive})
