"""Limits every door shares: a value above one is a typo or a hostile file, not a setting."""
from __future__ import annotations

MAX_BATCH = 1 << 16  # a measurement or training batch above this is refused (latency is measured at that batch)
