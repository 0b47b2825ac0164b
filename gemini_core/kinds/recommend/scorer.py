"""Score items for one user with a recommender exported by Gemini Compression Studio, using numpy and
safetensors only (no torch, no gemini). An export ships this file as ``score.py`` beside ``model.safetensors``.

    python score.py EXPORT_FOLDER --user 3 --items 10,42,7     # scores of these items for user 3
    python score.py EXPORT_FOLDER --user 3 --top 10            # the 10 best items of the whole catalogue
    python score.py EXPORT_FOLDER --user-id 17 --top 10        # ids as in the data file (ids.json)

Users and items are the export's dense indices unless ``--user-id`` / ``--item-ids`` name the ids of the
data file (``ids.json`` maps them). In Python: ``Scorer.load(folder).score(user, items)``.

What it reads: the safetensors file's metadata entry ``gemini_recommend_layout`` (the architecture and each
table's layout) and its tensors. A table is one of:

- ``rows``: one row per id; ``pruned``: the kept ids' rows then one fallback row, ``kept`` one bit per id
  (numpy's packbits order); ``low-rank``: A's rows times ``factor``; ``qr``: ``q[id // divisor] *
  r[id % divisor]``;
- each part float32 (``weight``) or row-wise codes: ``codes`` (uint8, each row padded to whole bytes, the
  first code in the lowest bits), ``scale`` and ``offset`` (float16): value = code * scale + offset; with
  mixed precision a ``hot`` bit per row and a block of each (``codes_hot``... at ``hot_bits``, ``codes_cold``...
  at ``bits``), a row's place in its block being its rank among that block's rows.

A score is ``item_vector . user_vector`` (+ the item's bias for matrix factorization); two-tower models pass
each table's row through their tower (Linear, ReLU, Linear), a text model adds the projection of the item's
text vector to its row first.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

LAYOUT_KEY = "gemini_recommend_layout"
MODEL_FILE = "model.safetensors"
IDS_FILE = "ids.json"


def unpack(codes: np.ndarray, bits: int, dim: int) -> np.ndarray:
    if bits == 8:
        return codes
    per = 8 // bits
    shifts = (np.arange(per) * bits).astype(np.uint8)
    values = (codes[..., None] >> shifts) & np.uint8((1 << bits) - 1)
    return values.reshape(codes.shape[0], -1)[:, :dim]


def dequantize(codes, scale, offset, bits: int, dim: int) -> np.ndarray:
    return (unpack(codes, bits, dim).astype(np.float32) * scale.astype(np.float32)[:, None]
            + offset.astype(np.float32)[:, None])


class Rows:
    """One stored matrix of rows (float32, or row-wise codes)."""

    def __init__(self, desc: dict, tensors: dict, prefix: str):
        self.n, self.dim, self.bits = int(desc["n"]), int(desc["dim"]), int(desc["bits"])
        self.hot_bits = desc.get("hot_bits")
        get = lambda name: tensors[prefix + name]  # noqa: E731
        if self.bits == 32:
            self.weight = get("weight").astype(np.float32)
        elif self.hot_bits is None:
            self.codes, self.scale, self.offset = get("codes"), get("scale"), get("offset")
        else:
            hot = np.unpackbits(get("hot"))[: self.n].astype(bool)
            self.is_hot = hot
            self.position = np.zeros(self.n, dtype=np.int64)
            self.position[hot] = np.arange(int(hot.sum()))
            self.position[~hot] = np.arange(int((~hot).sum()))
            self.blocks = {True: (get("codes_hot"), get("scale_hot"), get("offset_hot"), int(self.hot_bits)),
                           False: (get("codes_cold"), get("scale_cold"), get("offset_cold"), self.bits)}

    def rows(self, index: np.ndarray) -> np.ndarray:
        if self.bits == 32:
            return self.weight[index]
        if self.hot_bits is None:
            return dequantize(self.codes[index], self.scale[index], self.offset[index], self.bits, self.dim)
        out = np.empty((index.size, self.dim), dtype=np.float32)
        hot = self.is_hot[index]
        for flag in (True, False):
            mask = hot == flag
            if mask.any():
                codes, scale, offset, bits = self.blocks[flag]
                at = self.position[index[mask]]
                out[mask] = dequantize(codes[at], scale[at], offset[at], bits, self.dim)
        return out


class Table:
    def __init__(self, desc: dict, tensors: dict, prefix: str):
        self.layout, self.n = desc["layout"], int(desc["ids"])
        self.parts = {name: Rows(part, tensors, f"{prefix}parts.{name}.") for name, part in desc["parts"].items()}
        if self.layout == "pruned":
            kept = np.unpackbits(tensors[prefix + "kept"])[: self.n].astype(bool)
            fallback = int(kept.sum())
            self.index = np.full(self.n, fallback, dtype=np.int64)
            self.index[kept] = np.arange(fallback)
        if self.layout == "low-rank":
            self.factor = tensors[prefix + "factor"].astype(np.float32)
        self.divisor = int(desc.get("divisor") or 0)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.n):
            raise IndexError(f"ids must be in [0, {self.n})")
        if self.layout == "rows":
            return self.parts["rows"].rows(ids)
        if self.layout == "pruned":
            return self.parts["rows"].rows(self.index[ids])
        if self.layout == "low-rank":
            return self.parts["a"].rows(ids) @ self.factor
        return self.parts["q"].rows(ids // self.divisor) * self.parts["r"].rows(ids % self.divisor)


def _tower(x: np.ndarray, tensors: dict, name: str) -> np.ndarray:
    hidden = np.maximum(x @ tensors[f"{name}.0.weight"].T + tensors[f"{name}.0.bias"], 0.0)
    return hidden @ tensors[f"{name}.2.weight"].T + tensors[f"{name}.2.bias"]


class Scorer:
    """The exported recommender in numpy."""

    def __init__(self, layout: dict, tensors: dict):
        self.layout, self.tensors = layout, tensors
        self.model = layout["arch"]["model"]
        self.users = Table(layout["tables"]["user_embedding"], tensors, "user_embedding.")
        self.items = Table(layout["tables"]["item_embedding"], tensors, "item_embedding.")

    @classmethod
    def load(cls, folder) -> "Scorer":
        path = Path(folder) / MODEL_FILE
        with safe_open(str(path), framework="numpy") as handle:
            layout = json.loads(handle.metadata()[LAYOUT_KEY])
        return cls(layout, load_file(str(path)))

    def user_vectors(self, users) -> np.ndarray:
        rows = self.users.lookup(users)
        return rows if self.model == "mf" else _tower(rows, self.tensors, "user_tower")

    def item_vectors(self, items) -> np.ndarray:
        rows = self.items.lookup(items)
        if self.model == "mf":
            return rows
        if self.model == "text-two-tower":
            text = self.tensors["item_text_features"][np.asarray(items, dtype=np.int64).reshape(-1)]
            rows = rows + text @ self.tensors["text_projection.weight"].T + self.tensors["text_projection.bias"]
        return _tower(rows, self.tensors, "item_tower")

    def score(self, user: int, items) -> np.ndarray:
        """The scores of ``items`` for ``user`` (higher ranks higher)."""
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        scores = self.item_vectors(items) @ self.user_vectors(np.array([int(user)]))[0]
        if "item_bias.weight" in self.tensors:
            scores = scores + self.tensors["item_bias.weight"][items, 0]
        return scores

    def top(self, user: int, k: int = 10) -> list[tuple[int, float]]:
        scores = self.score(user, np.arange(self.items.n))
        best = np.argsort(-scores, kind="stable")[:k]
        return [(int(i), float(scores[i])) for i in best]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="score items for a user with an exported recommender")
    p.add_argument("folder", help="the export folder (model.safetensors)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", type=int, help="the user's dense index")
    who.add_argument("--user-id", help="the user's id in the data file (ids.json)")
    p.add_argument("--items", help="comma list of item indices (default: the whole catalogue with --top)")
    p.add_argument("--item-ids", help="comma list of item ids from the data file (ids.json)")
    p.add_argument("--top", type=int, default=10, help="without --items: how many of the best items to list")
    args = p.parse_args(argv)
    scorer = Scorer.load(args.folder)
    ids = None
    if args.user_id is not None or args.item_ids is not None:
        ids = json.loads((Path(args.folder) / IDS_FILE).read_text(encoding="utf-8"))
    user = args.user if args.user_id is None else ids["user_ids"].index(args.user_id)
    items = None
    if args.item_ids:
        items = [ids["item_ids"].index(i.strip()) for i in args.item_ids.split(",") if i.strip()]
    elif args.items:
        items = [int(i) for i in args.items.split(",") if i.strip()]
    if items is not None:
        out = [{"item": i, "score": float(s)} for i, s in zip(items, scorer.score(user, items))]
    else:
        out = [{"item": i, "score": s} for i, s in scorer.top(user, args.top)]
    if ids is not None:
        for row in out:
            row["item_id"] = ids["item_ids"][row["item"]]
    json.dump({"user": user, "scores": out}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
