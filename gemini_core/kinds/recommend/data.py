"""The recommender's data: an interaction log, read from the user's CSV / TSV or made up (the synthetic demo),
turned into implicit feedback and split leave-last-out per user with sampled negatives.

Policy (what this module decides, and says so in the log's ``notes``):

* Reading: ``read_log`` reads the interactions (and optionally an item file with texts) through the checked
  text reader the tables use (size cap, binary and encoding checks, delimiter by extension or sniffed,
  header ``"infer"`` / yes / no). Before the cells are parsed the rows (lines) and the columns of the header
  line are counted against their caps; after, the distinct users and items (each one an embedding row).
  Every problem is one ``DataError`` line naming the file, the row or the column.
* Duplicates: a (user, item) pair seen more than once keeps its latest interaction (by time, then by row);
  the others are counted in ``duplicates`` and dropped, because a held-out item the model also trained on
  would measure memory, not ranking.
* Unknown items: with an item file, interactions whose item is not in it are counted in ``unknown_items``
  and dropped (a text model has nothing to read for them). The catalogue is the items that occur in the
  log: an item nobody interacted with has no training signal for an id embedding.
* Implicit feedback (``implicit``): every interaction with a positive label is a positive (the NCF
  protocol, which counts every MovieLens rating as an interaction), unless a rating threshold is given:
  then only ratings at or above it. A click log has no label column (every row a click) or 0/1 labels
  (a 0 is an impression not clicked: never a positive).
* The split (``leave_last_out``): per user the last interaction by time is the test item, the one before
  the validation item, the rest train; users with fewer than 3 interactions stay in train only (counted),
  and so do users with fewer than 99 items they never interacted with (counted apart: too few to sample).
  Each test and validation user gets 99 items sampled (seeded) from the items the user never interacted
  with: the held-out item is ranked among 100 (He et al., "Neural Collaborative Filtering", 2017).

The demo (``demo_log``) is SYNTHETIC: users and items in latent clusters, item texts made of their cluster's
words, generated from a seed. Its structure is known, so a model's quality on it can be checked against it.
"""
from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from gemini_core.errors import DataError
from gemini_core.scenarios.table_read import (
    env_limit,
    infer_header,
    max_file_bytes,
    parse_header_option,
    read_text,
    sniff_delimiter,
)

# Caps checked before the work they bound: rows (lines counted before parsing), columns (the header line),
# distinct users and items (each is a row of an embedding table: 1M rows of 64 floats is 256 MB).
MAX_INTERACTIONS = 5_000_000  # GEMINI_MAX_INTERACTIONS
MAX_ITEM_ROWS = 1_000_000  # rows of an item file (GEMINI_MAX_ITEM_ROWS)
MAX_COLUMNS = 256
MAX_USERS = 1_000_000  # GEMINI_MAX_USERS
MAX_ITEMS = 1_000_000  # GEMINI_MAX_ITEMS
MAX_TEXT_CHARS = 1_000  # an item's text is cut here: MiniLM reads 256 tokens at most anyway
NEGATIVES = 99  # sampled items per held-out item (the NCF protocol ranks 1 among 100)
MIN_INTERACTIONS = 3  # a user with fewer has no validation and test item: kept in train only
DEMO_NOTE = "SYNTHETIC demo data (made up, not real users): users and items in latent clusters"


@dataclass(eq=False)
class InteractionLog:
    """Interactions as dense indices, sorted by user, then time, then the file's row order.

    ``user_ids[u]`` / ``item_ids[i]`` are the original ids of dense index u / i. ``labels`` hold the rating
    (or 1.0 for a click); ``timestamps`` the time (the row number when the file has no time column).
    """

    users: np.ndarray  # int64, 0..n_users-1
    items: np.ndarray  # int64, 0..n_items-1
    labels: np.ndarray  # float32
    timestamps: np.ndarray  # int64 (seconds, nanoseconds for dates, or the row number)
    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    item_texts: tuple[str, ...] | None = None  # one per item index, when an item file gave texts
    source: str = ""
    feedback: str = "clicks"  # "clicks" (1.0, or 0/1 labels) or "ratings"
    synthetic: bool = False
    has_time: bool = True
    duplicates: int = 0  # interactions dropped because their (user, item) pair came again later
    unknown_items: int = 0  # interactions dropped because their item is not in the item file
    notes: tuple[str, ...] = ()
    truth: dict | None = field(default=None, repr=False)  # the demo's latent clusters (synthetic data only)

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for array in (self.users, self.items, self.labels, self.timestamps):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update("\x00".join(self.user_ids).encode())
        digest.update("\x01".join(self.item_ids).encode())
        if self.item_texts is not None:
            digest.update("\x02".join(self.item_texts).encode())
        return digest.hexdigest()[:16]

    def describe(self) -> dict:
        return {"source": self.source, "synthetic": self.synthetic, "feedback": self.feedback,
                "interactions": len(self), "users": self.n_users, "items": self.n_items,
                "item_texts": self.item_texts is not None, "duplicates_dropped": self.duplicates,
                "unknown_items_dropped": self.unknown_items, "has_time": self.has_time, "notes": list(self.notes),
                "data_fingerprint": self.fingerprint()}


# -- reading the user's files --------------------------------------------------------------------------------
def _columns_of(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _read_columns(path, wanted: dict[str, str], header, row_cap: int, what: str) -> tuple[pd.DataFrame, bool, list]:
    """The ``wanted`` columns (role -> column name, or position without a header) of a delimited file, as
    strings, with the row number of each row; the caps are checked before the cells are parsed."""
    path = Path(path).expanduser()
    text, _encoding, notes = read_text(path, max_file_bytes())
    delimiter = sniff_delimiter(path, text)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)  # at least the rows: quoted newlines add lines
    if lines - 1 > row_cap:
        raise DataError(f"{path.name} has about {lines - 1:,} {what} rows; the limit is {row_cap:,}. "
                        "Use a sample of the rows.")
    first_line = text.lstrip("\r\n").split("\n", 1)[0].rstrip("\r")
    width = len(next(csv.reader([first_line], delimiter=delimiter, quoting=quoting), []))
    if width > MAX_COLUMNS:
        raise DataError(f"{path.name} has {width:,} columns on its first line; the limit is {MAX_COLUMNS}")
    header = parse_header_option(header)
    options = dict(sep=delimiter, dtype=str, quoting=quoting, keep_default_na=False, na_values=[""],
                   skip_blank_lines=True, engine="c")
    try:
        sample = pd.read_csv(io.StringIO(text), header=None, nrows=200, **options)
        has_header = infer_header(sample) if header == "infer" else bool(header)
        names = ([c.strip() if isinstance(c, str) else str(i) for i, c in enumerate(sample.iloc[0])]
                 if has_header else [str(i) for i in range(sample.shape[1])])
        missing = [c for c in wanted.values() if c not in names]
        if missing:
            shown = ", ".join(repr(n) for n in names[:12])
            raise DataError(f"{path.name} has no column {missing[0]!r} (columns: {shown}"
                            f"{', ...' if len(names) > 12 else ''})")
        positions = {role: names.index(column) for role, column in wanted.items()}
        used = sorted(set(positions.values()))
        cells = pd.read_csv(io.StringIO(text), header=0 if has_header else None, usecols=used, **options)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name} has no rows") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise DataError(f"{path.name} could not be read as delimited values: {detail}") from None
    if header == "infer":
        notes.append(f"{path.name}: header row detected" if has_header
                     else f"{path.name}: no header row detected, columns are numbered 0..{len(names) - 1}")
    cells.columns = used  # by position: a header's duplicate names do not matter
    frame = pd.DataFrame({role: cells[pos] for role, pos in positions.items()})
    frame["row"] = np.arange(len(frame)) + (2 if has_header else 1)  # the row a user sees in an editor
    if frame.empty:
        raise DataError(f"{path.name} has no data rows")
    if len(frame) > row_cap:
        raise DataError(f"{path.name} has {len(frame):,} {what} rows; the limit is {row_cap:,}")
    return frame, has_header, notes


def _require(frame: pd.DataFrame, role: str, column: str, name: str) -> pd.Series:
    values = frame[role].str.strip()
    empty = values.isna() | (values == "")
    if empty.any():
        row = int(frame.loc[empty.idxmax(), "row"])
        raise DataError(f"{name} row {row}: the {column!r} cell is empty")
    return values


def _numbers(frame: pd.DataFrame, role: str, column: str, name: str) -> np.ndarray:
    raw = frame[role].str.strip()
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        at = bad.idxmax()
        raise DataError(f"{name} row {int(frame.loc[at, 'row'])}: {column} {raw[at]!r} is not a number")
    return values.to_numpy(dtype=np.float64)


def _times(frame: pd.DataFrame, column: str, name: str) -> np.ndarray:
    """Numbers (epoch seconds or any ordered count) or dates (ISO 8601 or what pandas reads), as int64."""
    raw = frame["time"].str.strip()
    numbers = pd.to_numeric(raw, errors="coerce")
    if not numbers.isna().any():
        values = numbers.to_numpy(dtype=np.float64)
        if np.isfinite(values).all() and np.abs(values).max() < 2 ** 62:
            # fractional seconds keep their order in microseconds
            scale = 1 if np.all(values == np.round(values)) else 1_000_000
            return np.round(values * scale).astype(np.int64)
    dates = pd.to_datetime(raw, errors="coerce", format="mixed", utc=True)
    if dates.isna().any():
        at = dates.isna().idxmax()
        raise DataError(f"{name} row {int(frame.loc[at, 'row'])}: {column} {raw[at]!r} is neither a number "
                        "nor a date")
    return dates.astype("int64").to_numpy()


def read_log(path, user_column: str, item_column: str, label_column: str | None = None,
             time_column: str | None = None, items_path=None, item_id_column: str | None = None,
             text_columns=None, header="infer") -> InteractionLog:
    """Read an interaction log (one row per interaction) and optionally an item file with texts.

    Columns are named by their header (or by position, "0", "1", ..., in a file without one). Without a label
    column every row is a click (1.0); without a time column the row order is the time. ``text_columns``
    (a list or "title,genres") are joined into each item's text. Raises DataError (one line).
    """
    path = Path(path).expanduser()
    wanted = {"user": str(user_column), "item": str(item_column)}
    if label_column:
        wanted["label"] = str(label_column)
    if time_column:
        wanted["time"] = str(time_column)
    if len(set(wanted.values())) < len(wanted):
        raise DataError(f"the user, item, label and time columns must differ (given {sorted(wanted.values())})")
    frame, _has_header, notes = _read_columns(path, wanted, header,
                                              env_limit("GEMINI_MAX_INTERACTIONS", MAX_INTERACTIONS), "interaction")
    name = path.name
    users = _require(frame, "user", wanted["user"], name)
    items = _require(frame, "item", wanted["item"], name)
    labels = _numbers(frame, "label", wanted["label"], name) if label_column else np.ones(len(frame))
    times = _times(frame, wanted["time"], name) if time_column else np.arange(len(frame), dtype=np.int64)
    if not time_column:
        notes.append("no time column: the row order is taken as the order of the interactions")
    feedback = "clicks" if not label_column or np.isin(labels, (0.0, 1.0)).all() else "ratings"

    texts_by_id, unknown = None, 0
    if items_path is not None:
        catalogue, texts_by_id = _read_items(items_path, item_id_column or wanted["item"], text_columns, header)
        known = items.isin(catalogue).to_numpy()
        unknown = int((~known).sum())
        if unknown:
            notes.append(f"{unknown:,} interactions name an item that is not in {Path(items_path).name}: dropped")
            users, items, labels, times = users[known], items[known], labels[known], times[known]
        if len(users) == 0:
            raise DataError(f"no interaction in {name} names an item of {Path(items_path).name} "
                            f"(are {wanted['item']!r} and the item id column the same ids?)")
    elif text_columns:
        raise DataError("text columns are read from the item file: give items_path too")
    log = _build(users.to_numpy(dtype=object), items.to_numpy(dtype=object), labels, times,
                 source=str(path), feedback=feedback, has_time=bool(time_column), unknown=unknown, notes=notes)
    if texts_by_id is not None:
        log = replace(log, item_texts=tuple(texts_by_id[i] for i in log.item_ids))
    return log


def _read_items(path, id_column: str, text_columns, header) -> tuple[set, dict | None]:
    """The item file's ids (the catalogue) and, with text columns, each item's text."""
    path = Path(path).expanduser()
    columns = _columns_of(text_columns)
    wanted = {"id": str(id_column), **{f"text{i}": c for i, c in enumerate(columns)}}
    frame, _has_header, _notes = _read_columns(path, wanted, header,
                                               env_limit("GEMINI_MAX_ITEM_ROWS", MAX_ITEM_ROWS), "item")
    ids = _require(frame, "id", str(id_column), path.name)
    first = ~ids.duplicated()
    if not columns:
        return set(ids), None
    parts = [frame[f"text{i}"].fillna("").str.strip() for i in range(len(columns))]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined.str.cat(part, sep=". ").str.strip(". ")
    joined = joined.str.slice(0, MAX_TEXT_CHARS)
    return set(ids[first]), dict(zip(ids[first], joined[first]))


def _build(users: np.ndarray, items: np.ndarray, labels, times, *, source: str, feedback: str, has_time: bool,
           unknown: int = 0, notes=(), synthetic: bool = False, item_order=None, truth=None) -> InteractionLog:
    """Dense indices, duplicates dropped (the latest kept), sorted by user, time, row; the id caps checked."""
    user_index, user_ids = pd.factorize(pd.Series(users, dtype=object), sort=False)
    if len(user_ids) > env_limit("GEMINI_MAX_USERS", MAX_USERS):
        raise DataError(f"{len(user_ids):,} distinct users; the limit is {MAX_USERS:,} (each is an embedding row)")
    item_index, item_ids = pd.factorize(pd.Series(items, dtype=object), sort=False)
    if item_order is not None:  # the demo names every item in its own order, even one nobody picked
        item_ids = pd.Index(item_order)
        item_index = item_ids.get_indexer(items)
    if len(item_ids) > env_limit("GEMINI_MAX_ITEMS", MAX_ITEMS):
        raise DataError(f"{len(item_ids):,} distinct items; the limit is {MAX_ITEMS:,} (each is an embedding row)")
    rows = np.arange(len(user_index))
    order = np.lexsort((rows, np.asarray(times), user_index))
    u, i = user_index[order].astype(np.int64), item_index[order].astype(np.int64)
    keep = ~pd.DataFrame({"u": u, "i": i}).duplicated(keep="last").to_numpy()
    duplicates = int((~keep).sum())
    notes = list(notes)
    if duplicates:
        notes.append(f"{duplicates:,} repeated (user, item) interactions: the latest of each pair kept")
    order = order[keep]
    log = InteractionLog(
        users=u[keep], items=i[keep], labels=np.asarray(labels, dtype=np.float32)[order],
        timestamps=np.asarray(times, dtype=np.int64)[order], user_ids=tuple(str(v) for v in user_ids),
        item_ids=tuple(str(v) for v in item_ids), source=source, feedback=feedback, synthetic=synthetic,
        has_time=has_time, duplicates=duplicates, unknown_items=unknown, notes=tuple(notes), truth=truth)
    if log.n_items < 2:
        raise DataError(f"{Path(source).name or source}: a recommender needs at least 2 distinct items")
    return log


# -- implicit feedback -------------------------------------------------------------------------------------
def implicit(log: InteractionLog, threshold: float | None = None) -> InteractionLog:
    """The positives of ``log``: every interaction with a positive label (all ratings; clicks, not the 0s of
    shown-not-clicked), or with a threshold only labels at or above it. Labels become 1.0. The catalogue
    (item indices) is unchanged, so models and texts still line up."""
    keep = log.labels >= threshold if threshold is not None else log.labels > 0
    rule = (f"positives: ratings of at least {threshold:g}" if threshold is not None
            else "positives: every interaction (all ratings count)" if log.feedback == "ratings"
            else "positives: every click")
    if not keep.any():
        raise DataError(f"{Path(log.source).name or log.source}: no interaction is a positive ({rule})")
    dropped = int((~keep).sum())
    notes = [*log.notes, rule + (f"; {dropped:,} interactions below it dropped" if dropped else "")]
    return replace(log, users=log.users[keep], items=log.items[keep], labels=np.ones(int(keep.sum()), np.float32),
                   timestamps=log.timestamps[keep], notes=tuple(notes))


# -- the synthetic demo ---------------------------------------------------------------------------------------
DEMO_CLUSTERS = {
    "space": ("rocket", "orbit", "galaxy", "planet", "astronaut", "comet", "telescope", "nebula"),
    "cooking": ("recipe", "oven", "spice", "pasta", "bread", "soup", "kitchen", "sauce"),
    "football": ("goal", "striker", "stadium", "league", "match", "referee", "penalty", "coach"),
    "music": ("guitar", "melody", "concert", "drums", "album", "singer", "chorus", "piano"),
    "gardening": ("roses", "soil", "seeds", "compost", "tulips", "pruning", "greenhouse", "lawn"),
    "finance": ("stocks", "bonds", "interest", "budget", "savings", "dividend", "mortgage", "inflation"),
}
DEMO_SHAPES = ("a guide to {} and {}", "notes on {}, {} and {}", "the {} of {}", "{} meets {}: a {} story")


def demo_log(seed: int = 0, users: int = 300, items_per_cluster: int = 40, in_cluster: float = 0.85) -> InteractionLog:
    """SYNTHETIC interactions with a known structure, the same for the same seed.

    Items fall in ``len(DEMO_CLUSTERS)`` clusters; an item's text is made of its cluster's words. Each user
    belongs to one cluster and has 12-40 interactions (clicks): with probability ``in_cluster`` an item of
    the user's cluster, else any item; within either, popular items (a Zipf-like weight by the item's place
    in its cluster) are picked more often. ``truth`` holds each user's and item's cluster and the weights,
    so a model's ranking can be checked against the structure: the true preference of user u for item i is
    ``in_cluster * [same cluster] * w_i / W_cluster + (1 - in_cluster) * w_i / W_all``, and a random
    ranking has HR@10 = 0.1.
    """
    rng = np.random.default_rng(seed)
    names = list(DEMO_CLUSTERS)
    n_clusters, n_items = len(names), len(names) * items_per_cluster
    item_cluster = np.repeat(np.arange(n_clusters), items_per_cluster)
    place = np.tile(np.arange(items_per_cluster), n_clusters)
    weight = 1.0 / (place + 1.0) ** 0.8  # a few popular items per cluster, a long tail
    texts = []
    for item in range(n_items):
        words = DEMO_CLUSTERS[names[item_cluster[item]]]
        shape = DEMO_SHAPES[int(rng.integers(len(DEMO_SHAPES)))]
        picked = rng.choice(len(words), size=shape.count("{}"), replace=False)
        texts.append(shape.format(*(words[p] for p in picked)))
    user_cluster = rng.integers(0, n_clusters, size=users)
    rows_u, rows_i, rows_t = [], [], []
    for user in range(users):
        count = int(rng.integers(12, 41))
        own = item_cluster == user_cluster[user]
        p_item = in_cluster * np.where(own, weight, 0.0) / weight[own].sum() + (1 - in_cluster) * weight / weight.sum()
        picked = rng.choice(n_items, size=count, replace=False, p=p_item / p_item.sum())
        times = 1_600_000_000 + np.cumsum(rng.integers(60, 86_400, size=count))
        rows_u += [f"u{user}"] * count
        rows_i += [f"i{int(i)}" for i in picked]
        rows_t += times.tolist()
    item_ids = [f"i{i}" for i in range(n_items)]
    truth = {"user_cluster": user_cluster, "item_cluster": item_cluster, "clusters": tuple(names),
             "item_weight": weight, "in_cluster": in_cluster}
    log = _build(np.asarray(rows_u, dtype=object), np.asarray(rows_i, dtype=object), np.ones(len(rows_u)),
                 np.asarray(rows_t), source=f"synthetic demo (seed {seed})", feedback="clicks", has_time=True,
                 synthetic=True, item_order=item_ids,
                 notes=[f"{DEMO_NOTE} ({n_clusters} clusters, {users} users, {n_items} items, seed {seed})"],
                 truth=truth)
    return replace(log, item_texts=tuple(texts))


# -- the leave-last-out split -------------------------------------------------------------------------------
@dataclass(eq=False)
class RankingSplit:
    """Train interactions, and per evaluated user one validation and one test item with sampled negatives.

    ``val_users[j]`` / ``test_users[j]`` are the same users (in user order); ``*_negatives[j]`` the items
    ranked against ``*_items[j]``. ``train_users`` / ``train_items`` are the training positives, sorted by
    user (``train_offsets[u]:train_offsets[u+1]`` is user u's slice)."""

    log: InteractionLog
    train_users: np.ndarray
    train_items: np.ndarray
    train_offsets: np.ndarray  # n_users + 1
    val_users: np.ndarray
    val_items: np.ndarray
    val_negatives: np.ndarray  # (users, NEGATIVES)
    test_users: np.ndarray
    test_items: np.ndarray
    test_negatives: np.ndarray
    train_only_users: int  # users with fewer than MIN_INTERACTIONS interactions: in train, never evaluated
    dense_users: int  # users with fewer unseen items than the negatives: in train, never evaluated
    seed: int

    @property
    def n_users(self) -> int:
        return self.log.n_users

    @property
    def n_items(self) -> int:
        return self.log.n_items

    def train_items_of(self, user: int) -> np.ndarray:
        return self.train_items[self.train_offsets[user]:self.train_offsets[user + 1]]

    def held_out(self, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(users, held-out items, negatives) of the "val" or "test" part."""
        if which == "val":
            return self.val_users, self.val_items, self.val_negatives
        if which == "test":
            return self.test_users, self.test_items, self.test_negatives
        raise ValueError(f"which must be 'val' or 'test', not {which!r}")

    def fingerprint(self, which: str = "test") -> str:
        """What an evaluation of ``which`` depends on besides the model: its users, held-out items, negatives
        and the items excluded from the full ranking. Two records with the same key pair user by user."""
        digest = hashlib.sha256(self.log.fingerprint().encode())
        for array in (*self.held_out(which), self.train_items, self.train_offsets):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(f"{which}:{self.seed}".encode())
        return digest.hexdigest()[:16]

    def describe(self) -> dict:
        return {"split": "leave-last-out", "train_interactions": int(self.train_users.size),
                "evaluated_users": int(self.test_users.size), "train_only_users": self.train_only_users,
                "dense_users": self.dense_users,
                "negatives_per_user": int(self.test_negatives.shape[1]), "split_seed": self.seed}


def leave_last_out(log: InteractionLog, seed: int = 0, negatives: int = NEGATIVES) -> RankingSplit:
    """Per user: the last interaction by time is test, the one before validation, the rest train (users with
    fewer than 3 interactions in train only); ``negatives`` items the user never interacted with, sampled
    per test and per validation user (seeded). Every interaction of ``log`` counts as a positive: pass it
    through ``implicit`` first."""
    counts = np.bincount(log.users, minlength=log.n_users)
    ends = np.cumsum(counts)
    starts = ends - counts
    enough = counts >= MIN_INTERACTIONS
    # a user who has seen nearly the whole catalogue has too few unseen items to rank the held-out one among
    sampleable = log.n_items - counts >= negatives
    evaluated = np.flatnonzero(enough & sampleable)
    if evaluated.size == 0:
        if not enough.any():
            raise DataError(f"no user has {MIN_INTERACTIONS} or more interactions: leave-last-out needs a train, "
                            "a validation and a test item per user")
        raise DataError(f"every user with {MIN_INTERACTIONS} or more interactions has seen all but fewer than "
                        f"{negatives} of the {log.n_items:,} items: too few unseen items to rank a held-out item among")
    # the log is sorted by user, time, row: a user's last rows are their latest
    test_rows, val_rows = ends[evaluated] - 1, ends[evaluated] - 2
    in_train = np.ones(len(log), dtype=bool)
    in_train[test_rows] = False
    in_train[val_rows] = False
    train_users, train_items = log.users[in_train], log.items[in_train]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(train_users, minlength=log.n_users))])
    rng = np.random.default_rng(seed)
    test_neg = _sample_unseen(rng, log, starts, ends, evaluated, negatives)
    val_neg = _sample_unseen(rng, log, starts, ends, evaluated, negatives)
    return RankingSplit(log=log, train_users=train_users, train_items=train_items, train_offsets=offsets,
                        val_users=evaluated.astype(np.int64), val_items=log.items[val_rows], val_negatives=val_neg,
                        test_users=evaluated.astype(np.int64), test_items=log.items[test_rows],
                        test_negatives=test_neg, train_only_users=int((~enough).sum()),
                        dense_users=int((enough & ~sampleable).sum()), seed=seed)


def _sample_unseen(rng: np.random.Generator, log: InteractionLog, starts, ends, users, k: int) -> np.ndarray:
    """``k`` distinct items per user that the user never interacted with (uniform over those items)."""
    out = np.empty((users.size, k), dtype=np.int64)
    for row, user in enumerate(users):
        seen = log.items[starts[user]:ends[user]]
        if seen.size * 2 > log.n_items:  # dense users: pick from the complement directly
            out[row] = rng.choice(np.setdiff1d(np.arange(log.n_items), seen), size=k, replace=False)
            continue
        picked: list[int] = []
        taken = set(seen.tolist())
        while len(picked) < k:  # rejection: at least half the catalogue is unseen, so few rounds
            for item in rng.integers(0, log.n_items, size=2 * k).tolist():
                if item not in taken:
                    taken.add(item)
                    picked.append(item)
                    if len(picked) == k:
                        break
        out[row] = picked
    return out
