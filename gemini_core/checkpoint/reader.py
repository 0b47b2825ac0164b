"""The one reader of an export that comes from outside, whatever its kind.

``open_export(root)`` is what every kind's ``evaluate``, the classifier's ``load`` and ``--overwrite``'s
check call on an export folder (a zip was unpacked once by ``archive._export_root``, with the archive's
caps). It returns the recipe only after:

1. recipe.json: its size from stat before a byte is read, its nesting capped, the closed schema
   (``checkpoint.schema``), in which every path the recipe names is a relative path inside the export,
   refused from its text alone with the same line whether or not the target exists;
2. the folder, walked without following anything: a symbolic link, or a device, pipe or socket, anywhere in
   it is refused;
3. the files the recipe's kind loads are listed (``model.safetensors``; an LLM's ``model/`` weights, its
   ``model.gguf``, ``compressed/`` and ``openvino/`` when the recipe names them), and a folder a library
   loads whole (an LLM's ``model/``, ``compressed/``, ``openvino/``) holds no file the recipe does not list.
   A file lying beside the export that nothing loads (a note, a pickle) is never opened; ``--overwrite``
   asks for more (``only_listed``: the folder holds nothing but the listed files, so replacing it deletes
   only what the product wrote);
4. each listed file: a file a library reads whole (config.json, tokenizer.json, ...) capped from stat, its
   size against the recipe's, then (last: the only step that reads the files) its SHA-256, opened without
   following a link.

Kinds join paths with ``member`` and read JSON files of a verified export with ``read_json_member``, so no
kind has a second reader that skips a check.
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from gemini_core.checkpoint.format import MAX_RECIPE_BYTES, MODEL_FILE, RECIPE_FILE, read_recipe, read_regular
from gemini_core.checkpoint.schema import MAX_DEPTH, OUTSIDE, inside_export, nesting_depth
from gemini_core.errors import CheckpointError
from gemini_core.fsio import sha256_file
from gemini_core.scenarios.table_read import env_limit

MAX_ENTRIES = 10_000  # files and folders of one export (GEMINI_MAX_EXPORT_MEMBERS, as for a zip)
# Files a library reads whole into memory (transformers: config.json, tokenizer.json, merges.txt,
# tokenizer.model; OpenVINO: the .xml graph): capped from stat, before anything reads them.
READ_WHOLE = {".json": "a JSON file", ".txt": "a text file", ".model": "a tokenizer file", ".jinja": "a template",
              ".md": "a text file", ".xml": "a graph file", ".py": "a text file"}
MAX_READ_WHOLE_BYTES = MAX_RECIPE_BYTES
LINK = "the export holds a symbolic link ({}); an export holds no links and gemini never follows one"
SPECIAL = "the export holds {} that is a device, pipe or socket; an export holds only regular files"


@dataclass
class ExportTree:
    """What a folder holds, from lstat: regular files (relative path -> size) and folders."""

    files: dict[str, int] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)


def _shown(rel: str) -> str:
    """A name from inside the export, for a message: quoted, printable, short."""
    text = ascii(rel)
    return text if len(text) <= 82 else text[:79] + "...'"


def scan_export(root: Path) -> ExportTree:
    """Every entry under ``root``, without following links: a link or a special file is refused wherever it is."""
    root = Path(root)
    limit = env_limit("GEMINI_MAX_EXPORT_MEMBERS", MAX_ENTRIES)
    tree, pending = ExportTree(), [""]
    while pending:
        folder = pending.pop()
        with os.scandir(root / folder if folder else root) as entries:
            for entry in entries:
                rel = f"{folder}/{entry.name}" if folder else entry.name
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    raise CheckpointError(LINK.format(_shown(rel)))
                if stat.S_ISDIR(st.st_mode):
                    tree.folders.add(rel)
                    pending.append(rel)
                elif stat.S_ISREG(st.st_mode):
                    tree.files[rel] = st.st_size
                else:
                    raise CheckpointError(SPECIAL.format(_shown(rel)))
                if len(tree.files) + len(tree.folders) > limit:
                    raise CheckpointError(f"the export holds more than {limit:,} files and folders "
                                          "(GEMINI_MAX_EXPORT_MEMBERS changes it)")
    return tree


def _check_read_whole(rel: str, size: int) -> None:
    what = READ_WHOLE.get(Path(rel).suffix.lower())
    if what and rel != RECIPE_FILE and size > MAX_READ_WHOLE_BYTES:
        raise CheckpointError(f"{rel} is {size:,} bytes, above the limit of {MAX_READ_WHOLE_BYTES:,} bytes for "
                              f"{what} of an export")


def _sha256(path: Path) -> str:
    if not stat.S_ISREG(os.lstat(path).st_mode):
        raise CheckpointError(f"{path.name} is not a regular file")
    return sha256_file(path)


def loaded_folders(recipe: dict) -> list[str]:
    """Folders a library loads whole (every file in them is read or may be): an LLM's model, packed and IR
    folders. A classifier export loads only ``model.safetensors``."""
    llm = recipe.get("llm")
    if not isinstance(llm, dict):
        return []
    return [llm[key] for key in ("model_dir", "compressed_dir", "openvino_dir") if llm.get(key) is not None]


def check_listed(recipe: dict, tree: ExportTree, only_listed: bool = False) -> None:
    """No unlisted file where a library loads (anywhere with ``only_listed``); every listed file there, a regular
    file, of its listed size, and capped from stat when a library reads it whole."""
    listed = recipe.get("files") or {}
    folders = tuple(f"{folder}/" for folder in loaded_folders(recipe))
    unlisted = sorted(rel for rel in tree.files if rel not in listed and rel != RECIPE_FILE
                      and (only_listed or rel.startswith(folders)))
    if unlisted:
        more = f" and {len(unlisted) - 1} more" if len(unlisted) > 1 else ""
        where = "" if only_listed else " in a folder that is loaded whole"
        raise CheckpointError(f"the export holds {len(unlisted)} file(s){where} recipe.json does not list "
                              f"({_shown(unlisted[0])}{more}); every file that is loaded is listed with its "
                              "checksum")
    for rel in sorted(listed):
        if rel in tree.folders:
            raise CheckpointError(f"{rel} is not a regular file")
        if rel not in tree.files:
            raise CheckpointError(f"{rel} is missing from the export")
        _check_read_whole(rel, tree.files[rel])
    for rel, info in sorted(listed.items()):
        expected = info.get("bytes")
        if expected is not None and expected != tree.files[rel]:  # from stat: a 2 GB file is not hashed first
            raise CheckpointError(f"checksum mismatch for {rel}: the file was changed or damaged after export "
                                  f"({tree.files[rel]:,} bytes; recipe.json lists {expected:,})")


def check_checksums(root: Path, recipe: dict) -> None:
    """Every listed file's SHA-256 (after ``check_listed``: each is a regular file inside the export)."""
    for rel, info in sorted((recipe.get("files") or {}).items()):
        if _sha256(root / rel) != info.get("sha256"):
            raise CheckpointError(f"checksum mismatch for {rel}: the file was changed or damaged after export")


def check_named(recipe: dict) -> None:
    """The files the recipe's kind loads are listed (each was verified by ``check_listed``)."""
    listed = recipe.get("files") or {}
    llm = recipe.get("llm")
    if not isinstance(llm, dict):  # a classifier export: its compressed weights
        if MODEL_FILE not in listed:
            raise CheckpointError(f"recipe.json lists no checksum for {MODEL_FILE}")
        return
    model_dir = llm["model_dir"]
    if not any(rel.startswith(f"{model_dir}/") and rel.endswith(".safetensors") for rel in listed):
        raise CheckpointError(f"recipe.json lists no checksum for the weights in {model_dir}/")
    if llm.get("gguf_file") is not None and llm["gguf_file"] not in listed:
        raise CheckpointError("recipe.json: field llm.gguf_file names a file recipe.json does not list")
    for key in ("compressed_dir", "openvino_dir"):
        if llm.get(key) is not None and not any(rel.startswith(f"{llm[key]}/") for rel in listed):
            raise CheckpointError(f"recipe.json: field llm.{key} names a folder whose files recipe.json does not "
                                  "list")


def open_export(root, only_listed: bool = False) -> dict:
    """The recipe of the export folder ``root`` after every check above; CheckpointError (one line) otherwise.
    ``only_listed``: the folder must hold nothing but recipe.json and the files it lists (``--overwrite``)."""
    root = Path(root)
    recipe = read_recipe(root)
    tree = scan_export(root)
    check_named(recipe)  # first: what the kind loads is listed (the line names it)
    check_listed(recipe, tree, only_listed)
    check_checksums(root, recipe)  # last: the only step that reads the files
    return recipe


def member(root: Path, rel: str) -> Path:
    """``root / rel`` for a path a verified recipe names (inside the export, checked again from its text)."""
    if not inside_export(rel):
        raise CheckpointError(f"recipe.json {OUTSIDE}")
    return Path(root) / rel


def read_json_member(root: Path, rel: str):
    """A JSON file of an export verified by ``open_export``: capped, not followed if a link, nesting capped."""
    path = member(root, rel)
    try:
        value = json.loads(read_regular(path, MAX_READ_WHOLE_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{rel} is missing from the export") from None
    except RecursionError:
        raise CheckpointError(f"{rel} is nested too deeply") from None
    except OSError as exc:
        raise CheckpointError(f"{rel} cannot be read ({exc.strerror or type(exc).__name__})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{rel} is not valid JSON: {str(exc).splitlines()[0][:200]}") from None
    if nesting_depth(value) > MAX_DEPTH:
        raise CheckpointError(f"{rel} is nested too deeply (more than {MAX_DEPTH} levels)")
    return value
