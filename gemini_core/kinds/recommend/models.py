"""Recommender models: each scores a (user, item) pair as the dot product of a user vector and an item vector
(plus an item bias where the model has one), so one user is scored against any set of items, or the whole
catalogue, with one matrix product.

- ``MatrixFactorization``: the vectors are rows of ``user_embedding`` and ``item_embedding``.
- ``TwoTower``: the rows pass through a small MLP per side (``user_tower``, ``item_tower``); the towers'
  hidden layers are what structured pruning removes, their last layers keep their width (the dot product
  pairs them).
- ``TextTwoTower``: a two-tower model whose item side also reads the item's text: the packaged MiniLM
  encodes every item text once (frozen; the vectors are cached by a hash of the texts) and a trained
  projection adds them to the item's id embedding before the item tower.

Every model gives ``embedding_tables()`` (the id-indexed tables a compression targets), ``score_candidates``
and ``score_all``, and ``arch()``, from which ``build_model`` rebuilds the architecture with fresh weights.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from gemini_core.errors import Cancelled, CheckpointError
from gemini_core.fsio import write_file_atomic
from gemini_core.paths import home_dir
from gemini_core.progress import ProgressFn, notify
from gemini_core.scenarios.hf_models import minilm_dir, quiet_transformers, weights_signature

MODELS = ("mf", "two-tower", "text-two-tower")
INIT_STD = 0.1  # id embeddings start small and random: large enough that the first gradients differ per row


class Recommender(nn.Module):
    """What every recommender model shares: scores are dot products of user and item vectors."""

    model_name = "recommender"

    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.n_users, self.n_items, self.dim = int(n_users), int(n_items), int(dim)
        self.user_embedding = nn.Embedding(self.n_users, self.dim)
        self.item_embedding = nn.Embedding(self.n_items, self.dim)
        nn.init.normal_(self.user_embedding.weight, std=INIT_STD)
        nn.init.normal_(self.item_embedding.weight, std=INIT_STD)

    # what a model defines
    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_embedding(users)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return self.item_embedding(items)

    def item_bias_of(self, items: torch.Tensor) -> torch.Tensor | None:
        return None

    # what every model gives
    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The score of each (users[j], items[j]) pair: higher ranks higher."""
        scores = (self.user_vectors(users) * self.item_vectors(items)).sum(-1)
        bias = self.item_bias_of(items)
        return scores if bias is None else scores + bias

    def score_candidates(self, user: int, items: torch.LongTensor) -> torch.Tensor:
        """The scores of ``items`` for one user (a 1-d tensor in the order of ``items``)."""
        items = torch.as_tensor(items, dtype=torch.long).reshape(-1)
        vector = self.user_vectors(torch.tensor([int(user)], dtype=torch.long, device=items.device))[0]
        scores = self.item_vectors(items) @ vector
        bias = self.item_bias_of(items)
        return scores if bias is None else scores + bias

    def score_all(self, users: torch.Tensor, item_vectors: torch.Tensor | None = None,
                  item_bias: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of every catalogue item for each of ``users``: (len(users), n_items). The item side can be
        passed in, computed once, when many batches of users are scored."""
        if item_vectors is None:
            item_vectors, item_bias = self.catalogue()
        scores = self.user_vectors(users) @ item_vectors.T
        return scores if item_bias is None else scores + item_bias

    def catalogue(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every item's vector and bias (None without biases)."""
        items = torch.arange(self.n_items, device=self.item_embedding.weight.device)
        return self.item_vectors(items), self.item_bias_of(items)

    def embedding_tables(self) -> dict[str, nn.Embedding]:
        """The id-indexed tables by attribute name (one row per user or item): what embedding compression
        (fewer bits, fewer rows) targets. Biases are tables of width 1."""
        return {name: module for name, module in self.named_children() if isinstance(module, nn.Embedding)}

    def arch(self) -> dict:
        return {"model": self.model_name, "n_users": self.n_users, "n_items": self.n_items, "dim": self.dim}


class MatrixFactorization(Recommender):
    """score(u, i) = <p_u, q_i> + b_i. A per-user bias would add the same amount to every item of a user and
    change no ranking, so only items have one (``biases=True``)."""

    model_name = "mf"

    def __init__(self, n_users: int, n_items: int, dim: int = 32, biases: bool = True):
        super().__init__(n_users, n_items, dim)
        self.item_bias = nn.Embedding(self.n_items, 1) if biases else None
        if self.item_bias is not None:
            nn.init.zeros_(self.item_bias.weight)

    def item_bias_of(self, items: torch.Tensor) -> torch.Tensor | None:
        return None if self.item_bias is None else self.item_bias(items).squeeze(-1)

    def arch(self) -> dict:
        return {**super().arch(), "biases": self.item_bias is not None}


def tower(dim: int, hidden: int) -> nn.Sequential:
    """dim -> hidden -> dim. The hidden width is what pruning shrinks; the output width stays ``dim``."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))


class TwoTower(Recommender):
    """score(u, i) = <f(p_u), g(q_i)> with MLP towers f, g over the id embeddings."""

    model_name = "two-tower"

    def __init__(self, n_users: int, n_items: int, dim: int = 32, hidden: int = 64):
        super().__init__(n_users, n_items, dim)
        self.hidden = int(hidden)
        self.user_tower = tower(self.dim, self.hidden)
        self.item_tower = tower(self.dim, self.hidden)

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_tower(self.user_embedding(users))

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        return self.item_tower(self.item_embedding(items))

    def tower_output_layers(self) -> list[nn.Linear]:
        """The towers' last layers: their outputs meet in the dot product, so pruning must keep their width."""
        return [self.user_tower[-1], self.item_tower[-1]]

    def arch(self) -> dict:
        return {**super().arch(), "hidden": self.hidden}


class TextTwoTower(TwoTower):
    """A two-tower model whose item side adds a projection of the item's frozen text vector to its id
    embedding: items with few interactions borrow from items with similar texts. The text vectors are a
    buffer (saved with the weights, never trained); the id tables still hold one row per id."""

    model_name = "text-two-tower"

    def __init__(self, n_users: int, n_items: int, text_features: torch.Tensor, dim: int = 32, hidden: int = 64):
        super().__init__(n_users, n_items, dim, hidden)
        if text_features.dim() != 2 or text_features.shape[0] != self.n_items:
            raise CheckpointError(f"text features of shape {tuple(text_features.shape)} do not give one vector "
                                  f"per item ({self.n_items} items)")
        self.register_buffer("item_text_features", text_features.detach().float().clone())
        self.text_projection = nn.Linear(int(text_features.shape[1]), self.dim)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        text = self.text_projection(self.item_text_features[items])
        return self.item_tower(self.item_embedding(items) + text)

    def arch(self) -> dict:
        return {**super().arch(), "text_dim": int(self.item_text_features.shape[1])}


def build_model(arch: dict, text_features: torch.Tensor | None = None) -> Recommender:
    """The architecture ``arch`` (a model's ``arch()``) with fresh weights. A text model without its text
    features gets zeros of the right shape: load its state dict after, which holds the features."""
    name = arch.get("model")
    n_users, n_items, dim = int(arch["n_users"]), int(arch["n_items"]), int(arch["dim"])
    if name == "mf":
        return MatrixFactorization(n_users, n_items, dim, biases=bool(arch.get("biases", True)))
    if name == "two-tower":
        return TwoTower(n_users, n_items, dim, int(arch["hidden"]))
    if name == "text-two-tower":
        if text_features is None:
            text_features = torch.zeros(n_items, int(arch["text_dim"]))
        return TextTwoTower(n_users, n_items, text_features, dim, int(arch["hidden"]))
    raise CheckpointError(f"unknown recommender model {name!r}; this version knows {', '.join(MODELS)}")


# -- item texts through the packaged MiniLM ---------------------------------------------------------------
TEXT_MAX_TOKENS = 64  # item titles and short descriptions; longer texts are cut (MiniLM was trained on 256)
TEXT_BATCH = 64
_TEXT_CACHE: dict[str, torch.Tensor] = {}  # this process's encodings by key (the disk cache survives it)


def text_cache_key(texts: Sequence[str]) -> str:
    """A hash of the texts, the encoder's weights and how they are read: the same texts are encoded once."""
    digest = hashlib.sha256(f"minilm:{weights_signature(minilm_dir())}:{TEXT_MAX_TOKENS}:mean-norm".encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:24]


def _cache_file(key: str):
    folder = home_dir() / "cache" / "recommend-text"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}.safetensors"


def encode_texts(texts: Sequence[str], progress: ProgressFn | None = None,
                 should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
    """One unit-length 384-float vector per text from the packaged all-MiniLM-L6-v2 (mean of the token
    vectors, normalised: how that model was trained to be used), computed once per set of texts and kept in
    the home folder's cache as safetensors."""
    texts = [str(t) for t in texts]
    key = text_cache_key(texts)
    if key in _TEXT_CACHE:
        return _TEXT_CACHE[key]
    file = _cache_file(key)
    if file.exists():
        try:
            features = load_tensors(file.read_bytes())["features"]
            if features.shape[0] == len(texts):
                _TEXT_CACHE[key] = features
                notify(progress, "cached", f"item texts: {len(texts):,} vectors from the cache")
                return features
        except Exception:  # noqa: BLE001  (a damaged cache file is encoded again and replaced)
            pass
    from transformers import AutoModel, AutoTokenizer

    folder = str(minilm_dir())
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        encoder = AutoModel.from_pretrained(folder, local_files_only=True, trust_remote_code=False).float().eval()
    # texts of similar length share a batch, so little of each batch is padding
    order = sorted(range(len(texts)), key=lambda k: len(texts[k]))
    chunks = []
    with torch.no_grad():
        for start in range(0, len(texts), TEXT_BATCH):
            if should_stop is not None and should_stop():
                raise Cancelled(f"stopped after encoding {start:,} of {len(texts):,} item texts")
            batch = tokenizer([texts[k] for k in order[start:start + TEXT_BATCH]], padding=True, truncation=True,
                              max_length=TEXT_MAX_TOKENS, return_tensors="pt")
            tokens = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            chunks.append(nn.functional.normalize(pooled, dim=-1))
            notify(progress, "step", f"item texts: {min(start + TEXT_BATCH, len(texts)):,} of {len(texts):,}",
                   done=min(start + TEXT_BATCH, len(texts)), total=len(texts))
    features = torch.zeros(len(texts), encoder.config.hidden_size)
    if chunks:
        features[torch.tensor(order)] = torch.cat(chunks)
    write_file_atomic(file, save_tensors({"features": features.contiguous()}))
    _TEXT_CACHE[key] = features
    return features
