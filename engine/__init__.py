"""Month-end reconciliation engine: the product's core (no UI code here)."""

from __future__ import annotations
