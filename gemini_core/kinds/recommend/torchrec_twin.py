"""The TorchRec twin of a recommender's embedding tables: one model definition, its tables served by TorchRec.

A recommender (``models.Recommender``) names its id-indexed tables in ``embedding_tables()`` (``user_embedding``,
``item_embedding``, ``item_bias``: plain ``nn.Embedding`` modules). The twin is a copy of the model in which
those tables live in one TorchRec ``EmbeddingBagCollection`` and each ``nn.Embedding`` child is swapped for a
``TableLookup`` that reads its rows from that collection: the same call (ids in, rows out), so the model's
``forward``, ``score_candidates``, training loss and the ranking metrics run unchanged on the twin. Like
TorchRec's own module swaps, what runs the tables is chosen by a mapping over module types, never by a second
model definition:

* ``float``: ``nn.Embedding`` -> ``TableLookup`` over an ``EmbeddingBagCollection`` (sum pooling over bags of
  one id: a bag of one row is that row), the same float32 weights; scores equal the model's.
* ``int8`` / ``int4``: the collection is then swapped by ``torchrec.inference.modules.quantize_embeddings``
  (``EmbeddingBagCollection`` -> ``torchrec.quant.EmbeddingBagCollection``): row-wise quantized tables (each
  row its own fp16 scale and bias) served by FBGEMM's CPU n-bit kernels. A table too narrow to pack at the
  requested bits (FBGEMM wants each packed row to fill whole fp16 words: width 1, the item biases) is kept in
  fp16 instead, and says so in ``quantized_tables``.
* sharded: ``distributed.py`` hands the float twin's collection to ``DistributedModelParallel``, which swaps it
  for a ``ShardedEmbeddingBagCollection``; tables there are padded to a width divisible by 4 (FBGEMM's training
  kernels require it; the padding columns are never read, so they get no gradient and stay zero).

What runs where (TorchRec 1.8 with fbgemm-gpu-cpu 1.8 on torch 2.13): the float and quantized twins run on a
CPU with FBGEMM's CPU kernels. Sharding on CPU (gloo) offers table-wise, column-wise and table-column-wise
sharding with the ``fused`` kernel (FBGEMM's CPU batched embedding, its optimizer fused into the backward:
exact SGD, exact Adagrad or exact row-wise Adagrad only; Adam is GPU-only) and data-parallel with the ``dense``
kernel. Row-wise, table-row-wise and grid sharding and the UVM, UVM-caching, key-value and SSD/DRAM virtual
table kernels are offered for CUDA devices only.

TorchRec and FBGEMM are the optional ``recommend`` extra (see requirements.txt): they are imported where they
are used, and ``require_torchrec`` says how to install them when they are missing.
"""
from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Mapping

import torch
from torch import nn

from gemini_core.errors import ConfigError
from gemini_core.kinds.recommend.models import Recommender

PRECISIONS = ("float", "int8", "int4")
BITS = {"int8": 8, "int4": 4}
FBGEMM_WIDTH_MULTIPLE = 4  # the sharded (training) kernels' requirement on every local table width
INSTALL_HINT = ('pip install --no-deps "torchrec==1.8.0" "fbgemm-gpu-cpu==1.8.0", then the pure-Python packages '
                "requirements.txt lists under the recommend extra")


def require_torchrec():
    """The ``torchrec`` module, or a ConfigError that says how to install it (with FBGEMM's CPU build)."""
    try:
        import fbgemm_gpu  # noqa: F401  (TorchRec's kernels: a missing or mismatched build fails here, clearly)
        import torchrec
    except ImportError as exc:
        raise ConfigError(f"the TorchRec twin needs torchrec and fbgemm-gpu-cpu ({exc}); install them with: "
                          f"{INSTALL_HINT}") from None
    except OSError as exc:  # an fbgemm_gpu built for another torch: its libraries do not load
        raise ConfigError(f"fbgemm_gpu does not load with torch {torch.__version__} ({str(exc)[:200]}); "
                          "fbgemm-gpu-cpu 1.8 pairs with torch 2.13") from None
    return torchrec


def _padded(width: int, multiple: int) -> int:
    return -(-int(width) // int(multiple)) * int(multiple)


def to_embedding_bag_collection(tables: Mapping[str, nn.Embedding], width_multiple: int = 1):
    """An ``EmbeddingBagCollection`` holding ``tables``' weights: one table and one feature per name (the
    feature is named like the table), sum pooling, each width rounded up to ``width_multiple`` with zero
    columns. A bag of one id pools to that id's row, so a lookup equals ``tables[name](ids)``."""
    torchrec = require_torchrec()
    if not tables:
        raise ConfigError("a TorchRec twin needs at least one embedding table")
    configs, device = [], None
    for name, table in tables.items():
        if not isinstance(table, nn.Embedding):
            raise ConfigError(f"table {name!r} is a {type(table).__name__}, not an nn.Embedding")
        device = device or table.weight.device
        configs.append(torchrec.EmbeddingBagConfig(
            name=name, feature_names=[name], num_embeddings=int(table.num_embeddings),
            embedding_dim=_padded(table.embedding_dim, width_multiple), pooling=torchrec.PoolingType.SUM))
    collection = torchrec.EmbeddingBagCollection(tables=configs, device=device)
    with torch.no_grad():
        for name, table in tables.items():
            target = collection.embedding_bags[name].weight
            target.zero_()
            target[:, :table.embedding_dim].copy_(table.weight.detach())
    return collection


class TorchRecTables(nn.Module):
    """The collection that serves a model's tables (float, quantized or sharded: whatever module the swaps
    put in ``collection``) and the one lookup every ``TableLookup`` calls."""

    def __init__(self, collection: nn.Module, widths: Mapping[str, int], padded: Mapping[str, int]):
        """``widths``: each table's width in the model; ``padded``: its width in the collection."""
        super().__init__()
        self.collection = collection
        self.keys = list(widths)  # the collection's feature order
        self.widths = dict(widths)
        self.padded = dict(padded)
        self.quantized_tables: dict[str, str] = {}  # table -> stored data type, after quantization

    def lookup(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """Rows of table ``name`` for ``ids`` (any shape): one bag per id in ``name``'s feature, empty bags in
        the others (every feature of the collection must be present in its input)."""
        from torchrec import KeyedJaggedTensor

        flat = ids.reshape(-1).long()
        count = flat.shape[0]
        lengths = torch.zeros(len(self.keys) * count, dtype=torch.long, device=flat.device)
        at = self.keys.index(name)
        lengths[at * count:(at + 1) * count] = 1
        pooled = self.collection(KeyedJaggedTensor(keys=self.keys, values=flat, lengths=lengths))
        # the pooled output is one row per bag, the features side by side; in the output's own key order (a
        # sharded collection orders them by shard, not as configured)
        keys, widths = pooled.keys(), pooled.length_per_key()
        place = keys.index(name)
        start = sum(widths[:place])
        rows = pooled.values()[:, start:start + self.widths[name]]
        return rows.reshape(*ids.shape, self.widths[name])


class TableLookup(nn.Module):
    """Stands where an ``nn.Embedding`` stood: ``lookup(ids)`` returns the rows of one table of the shared
    collection. ``weight`` is the table as float rows (for a quantized collection, what its kernel returns)."""

    def __init__(self, owner: TorchRecTables, name: str, num_embeddings: int, embedding_dim: int):
        super().__init__()
        object.__setattr__(self, "_owner", owner)  # not a child: the owner is registered once, on the model
        self.table_name = name
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self._owner.lookup(self.table_name, ids)

    @property
    def weight(self) -> torch.Tensor:
        collection = self._owner.collection
        if is_float_collection(collection):  # the trained parameter itself, without FBGEMM's padding columns
            return collection.embedding_bags[self.table_name].weight[:, :self.embedding_dim]
        if is_quantized_collection(collection):  # the rows as the quantized kernel returns them
            with torch.no_grad():
                return self.forward(torch.arange(self.num_embeddings))
        raise ConfigError(f"table {self.table_name!r} is sharded over processes: gather it first "
                          "(distributed.gather_tables)")

    def extra_repr(self) -> str:
        return f"{self.table_name!r}, {self.num_embeddings}, {self.embedding_dim}"


def is_float_collection(module: nn.Module) -> bool:
    from torchrec import EmbeddingBagCollection

    return type(module) is EmbeddingBagCollection


def is_quantized_collection(module: nn.Module) -> bool:
    from torchrec.quant.embedding_modules import EmbeddingBagCollection

    return isinstance(module, EmbeddingBagCollection)


def _set_child(model: nn.Module, path: str, module: nn.Module | None) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, module)


def tables_of(model: Recommender) -> dict[str, nn.Embedding]:
    tables = model.embedding_tables()
    if not tables:
        raise ConfigError(f"{type(model).__name__} has no embedding tables to serve through TorchRec")
    return tables


def packable(width: int, bits: int) -> bool:
    """Whether FBGEMM's row-wise n-bit format can pack a row of ``width`` values at ``bits``: the packed row must
    fill whole fp16 words (2 bytes), the width of its scale and bias."""
    return (int(width) * int(bits)) % 16 == 0


def twin(model: Recommender, precision: str = "float", width_multiple: int = 1) -> Recommender:
    """A copy of ``model`` whose embedding tables are served by TorchRec at ``precision`` (``PRECISIONS``); the
    model itself is not changed. The copy scores like the model (float) or within the quantization error."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    tables = tables_of(model)
    collection = to_embedding_bag_collection(tables, width_multiple)
    widths = {name: int(t.embedding_dim) for name, t in tables.items()}
    holder = TorchRecTables(collection, widths, {n: _padded(w, width_multiple) for n, w in widths.items()})
    if precision != "float":
        from torchrec.inference.modules import quantize_embeddings

        bits = BITS[precision]
        dtype = torch.qint8 if bits == 8 else torch.quint4x2  # how TorchRec's QuantConfig names INT8 and INT4
        narrow = {n: torch.float16 for n, w in holder.padded.items() if not packable(w, bits)}
        # TorchRec's own swap: EmbeddingBagCollection -> torchrec.quant.EmbeddingBagCollection, in place
        quantize_embeddings(holder, dtype=dtype, inplace=True, per_table_weight_dtype=narrow or None,
                            output_dtype=torch.float)
        holder.quantized_tables = {n: ("fp16" if n in narrow else precision) for n in widths}
    else:
        holder.quantized_tables = {n: "fp32" for n in widths}
    # the copy keeps everything but the tables, each swapped for its lookup (nn.Embedding -> TableLookup)
    out = copy.deepcopy(model)
    out.torchrec_tables = holder
    for name, table in tables.items():
        _set_child(out, name, TableLookup(holder, name, table.num_embeddings, table.embedding_dim))
    return out.eval()


# -- what a twin costs -------------------------------------------------------------------------------------------
def table_bytes(model: nn.Module) -> dict:
    """The bytes the model's embedding tables occupy as stored: for plain ``nn.Embedding`` tables their float
    weights; for a TorchRec twin the collection's storage (a quantized collection: the packed rows FBGEMM's
    kernels read, each with its fp16 scale and bias and padded to FBGEMM's 16-byte row alignment).
    ``{"total": bytes, "tables": {name: bytes or None}}`` (None: a quantized table, counted in the total only)."""
    holder = getattr(model, "torchrec_tables", None)
    if holder is None:
        tables = model.embedding_tables()
        sizes = {n: t.weight.numel() * t.weight.element_size() for n, t in tables.items()}
        return {"total": sum(sizes.values()), "tables": sizes, "storage": "nn.Embedding float32"}
    collection = holder.collection
    if is_float_collection(collection):
        bags = collection.embedding_bags
        sizes = {n: bags[n].weight.numel() * bags[n].weight.element_size() for n in holder.keys}
        return {"total": sum(sizes.values()), "tables": sizes, "storage": "EmbeddingBagCollection float32"}
    if not is_quantized_collection(collection):
        raise ConfigError("the bytes of a sharded collection are counted per process; gather it first")
    # the quantized kernels read one packed buffer per group of tables (its state_dict's views of it do not add
    # up to it), so the buffers themselves are counted
    total = 0
    for module in collection._emb_modules:
        for attr in ("weights_host", "weights_dev", "weights_uvm"):
            tensor = getattr(module, attr, None)
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel() * tensor.element_size()
    return {"total": int(total), "tables": {n: None for n in holder.keys},
            "storage": "quantized EmbeddingBagCollection (" + ", ".join(
                f"{n} {t}" for n, t in holder.quantized_tables.items()) + ")"}


def payload_bytes(tables: Mapping[str, nn.Embedding], precision: str) -> int:
    """The bytes the rows need at ``precision`` without FBGEMM's row alignment: ``rows * (width * bits / 8 + 4)``
    (fp16 scale and bias per row) for a packable table, fp16 for one that is not, float32 for ``float``."""
    total = 0
    for table in tables.values():
        rows, width = int(table.num_embeddings), int(table.embedding_dim)
        if precision == "float":
            total += rows * width * 4
        elif packable(width, BITS[precision]):
            total += rows * (width * BITS[precision] // 8 + 4)
        else:
            total += rows * width * 2
    return total


@torch.no_grad()
def scoring_latency(model: Recommender, candidates: int = 1000, repeats: int = 100, warmup: int = 10,
                    seed: int = 0) -> dict:
    """Seconds to score ``candidates`` items for one user (``score_candidates``), ``repeats`` times after
    ``warmup``: median and interquartile range, each call with other random users and items (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    n_users, n_items = int(model.n_users), int(model.n_items)
    times = []
    model.eval()
    for step in range(warmup + repeats):
        user = int(torch.randint(0, n_users, (1,), generator=generator))
        items = torch.randint(0, n_items, (candidates,), generator=generator)
        begin = time.perf_counter()
        model.score_candidates(user, items)
        if step >= warmup:
            times.append(time.perf_counter() - begin)
    quartiles = statistics.quantiles(times, n=4)
    return {"p50_s": statistics.median(times), "q25_s": quartiles[0], "q75_s": quartiles[2], "repeats": repeats,
            "candidates": candidates}


@torch.no_grad()
def lookup_latency(model: Recommender, table: str = "item_embedding", batch: int = 4096, repeats: int = 100,
                   warmup: int = 10, seed: int = 0) -> dict:
    """Seconds to look up ``batch`` random rows of one table through the model's own module for it (an
    ``nn.Embedding`` or a twin's ``TableLookup``): median and interquartile range."""
    module = model.get_submodule(table)
    rows = int(module.num_embeddings)
    generator = torch.Generator().manual_seed(seed)
    times = []
    for step in range(warmup + repeats):
        ids = torch.randint(0, rows, (batch,), generator=generator)
        begin = time.perf_counter()
        module(ids)
        if step >= warmup:
            times.append(time.perf_counter() - begin)
    quartiles = statistics.quantiles(times, n=4)
    return {"p50_s": statistics.median(times), "q25_s": quartiles[0], "q75_s": quartiles[2], "repeats": repeats,
            "batch": batch, "table": table}
