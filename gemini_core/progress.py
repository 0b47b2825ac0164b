"""One progress event for every long operation (training, recovery, sweeps, export, sensitivity).

Engine functions take ``progress: ProgressFn | None`` and call it with a ``ProgressEvent``; the CLI
turns events into tqdm bars and lines on stderr, the dashboard's jobs into live charts. Events also
read like the dicts they replaced (``event["loss"]``), so a view can pick the fields it shows.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator


@dataclass(frozen=True)
class ProgressEvent(Mapping):
    """``kind``: what happened ("step", "epoch", "cached", "message", ...); ``fields``: its figures."""

    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""

    def __getitem__(self, key: str) -> Any:
        if key == "event":
            return self.kind
        if key == "message" and key not in self.fields:
            return self.message
        return self.fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())

    def as_dict(self) -> dict:
        out = {"event": self.kind, **self.fields}
        if self.message:
            out.setdefault("message", self.message)
        return out

    def __str__(self) -> str:
        return self.message or self.kind


ProgressFn = Callable[[ProgressEvent], None]


def event(kind: str, message: str = "", **fields: Any) -> ProgressEvent:
    return ProgressEvent(kind, fields, message)


def notify(progress: ProgressFn | None, kind: str, message: str = "", **fields: Any) -> None:
    """Send one event when someone listens (most engine calls run without a listener)."""
    if progress is not None:
        progress(ProgressEvent(kind, fields, message))
