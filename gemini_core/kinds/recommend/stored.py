"""How a compressed recommender is stored: the tensors an export writes (packed codes, float16 scales and offsets,
packed bit masks, float32 dense weights), their byte counts, the layout that describes them, and ``rebuild``,
which makes the model again from those tensors and the layout alone. Split from ``compress.py`` (what a point
does) so each file holds one stage.
"""
from __future__ import annotations

import copy
import hashlib
import json

import torch
from safetensors.torch import save as save_tensors
from torch import nn

from gemini_core.errors import CheckpointError
from gemini_core.kinds.recommend.models import Recommender, TwoTower, build_model
from gemini_core.kinds.recommend.tables import FloatRows, Table, _tensor, table_from_description

TABLES = ("user_embedding", "item_embedding")  # the id-indexed tables a point compresses
TOWER_OF = {"user_embedding": "user_tower", "item_embedding": "item_tower"}
LAYOUT_FORMAT = 1  # the stored layout's version (recipe.json and the safetensors metadata)
LAYOUT_KEY = "gemini_recommend_layout"  # the safetensors metadata entry the standalone scorer reads


# -- what is stored -----------------------------------------------------------------------------------------
def with_tables(model: Recommender) -> Recommender:
    """``model`` with its id tables as ``Table`` modules (a trained model's ``nn.Embedding`` tables become float
    ``rows`` tables in a copy), so every model is stored in one layout."""
    if all(isinstance(getattr(model, name), Table) for name in TABLES):
        return model
    out = copy.copy(model)
    out._modules = dict(model._modules)
    for name in TABLES:
        table = getattr(model, name)
        if not isinstance(table, Table):
            out._modules[name] = Table(table.num_embeddings, "rows", {"rows": FloatRows(table.weight)})
    return out


def stored_tensors(model: Recommender) -> dict[str, torch.Tensor]:
    """Exactly the tensors an export writes: parameters and persistent buffers (codes, scales, offsets, bit
    masks, dense weights, a text model's item text vectors), contiguous, on the CPU."""
    return {name: tensor.detach().cpu().contiguous() for name, tensor in with_tables(model).state_dict().items()}


def table_names(name: str) -> bool:
    """Whether a stored tensor belongs to an id-indexed table (the embedding bytes)."""
    return name.split(".")[0] in (*TABLES, "item_bias")


def byte_counts(model: Recommender) -> dict:
    """Bytes as stored: the id-indexed tables (user, item, item bias) and the rest (towers, text vectors)."""
    tables = dense = 0
    for name, tensor in stored_tensors(model).items():
        size = tensor.numel() * tensor.element_size()
        if table_names(name):
            tables += size
        else:
            dense += size
    return {"embedding_bytes": int(tables), "dense_bytes": int(dense)}


def layout(model: Recommender) -> dict:
    """What ``rebuild`` needs besides the tensors: the architecture and each table's layout."""
    model = with_tables(model)
    arch = model.arch()
    if isinstance(model, TwoTower):
        arch["hidden"] = [int(model.user_tower[0].out_features), int(model.item_tower[0].out_features)]
    return {"format": LAYOUT_FORMAT, "arch": arch,
            "tables": {name: getattr(model, name).describe() for name in TABLES}}


def serialize(model: Recommender, metadata: dict | None = None) -> bytes:
    """The safetensors bytes of the model (its layout in the metadata, for the standalone scorer)."""
    meta = {LAYOUT_KEY: json.dumps(layout(model), sort_keys=True), **(metadata or {})}
    return save_tensors(stored_tensors(model), metadata=meta)


def weights_sha256(model: Recommender) -> str:
    """A hash of exactly what is stored: two builds of a point hold the same model when these agree."""
    return hashlib.sha256(serialize(model)).hexdigest()


def rebuild(spec: dict, tensors: dict[str, torch.Tensor]) -> Recommender:
    """The model ``layout(model)`` described, from the stored tensors alone (shapes checked)."""
    if not isinstance(spec, dict) or spec.get("format") != LAYOUT_FORMAT:
        raise CheckpointError(f"recommender layout format {spec.get('format') if isinstance(spec, dict) else spec!r}: "
                              f"this version reads {LAYOUT_FORMAT}")
    arch = dict(spec["arch"])
    hidden = arch.get("hidden")
    if isinstance(hidden, list):
        arch["hidden"] = int(hidden[0])
    text = tensors.get("item_text_features")
    model = build_model(arch, text)
    if isinstance(model, TwoTower):
        for name, width in zip(TABLES, hidden if isinstance(hidden, list) else [arch["hidden"]] * 2):
            tower = getattr(model, TOWER_OF[name])
            first = _tensor(tensors, f"{TOWER_OF[name]}.0.weight")
            last = _tensor(tensors, f"{TOWER_OF[name]}.2.weight")
            if first.shape[0] != int(width) or last.shape[1] != int(width):
                raise CheckpointError(f"{TOWER_OF[name]}'s stored layers are not {width} units wide")
            tower[0] = nn.Linear(int(first.shape[1]), int(first.shape[0]))
            tower[2] = nn.Linear(int(last.shape[1]), int(last.shape[0]))
    for name in TABLES:
        desc = (spec.get("tables") or {}).get(name)
        if not isinstance(desc, dict):
            raise CheckpointError(f"the layout does not describe {name}")
        setattr(model, name, table_from_description(desc, tensors, f"{name}."))
    if isinstance(model, Recommender) and not isinstance(model, TwoTower):
        model.dim = model.user_embedding.embedding_dim
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"the stored tensors do not fit the layout: missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]}")
    return model.eval()
