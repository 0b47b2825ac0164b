"""Image classification on the user's images: a folder of class folders, or an ``.npz`` of arrays.

* Folder: ``DATA/<class>/<image>`` (PNG, JPEG, BMP, GIF, WebP; read with Pillow). Class names are
  the sub-folder names, sorted. Files that Pillow cannot read are skipped and named in ``notes``.
  All images get the majority's colour mode (grayscale -> 1 channel, else RGB -> 3) and one size.
* ``.npz``: arrays ``x`` as (N,H,W), (N,H,W,C) or (N,C,H,W) with C in 1/3/4, and ``y`` (N labels,
  numbers or strings). Loaded with ``allow_pickle=False``: object arrays are refused.
* Size: ``image_size`` (int, (H, W) or "HxW"); by default the most common size, scaled down so the
  longer side is at most ``MAX_SIDE_PX`` (the SmallCNN is for small images on a CPU).
* Pixels are scaled to [0, 1]. Split 70/15/15, stratified, fixed seed.
"""
from __future__ import annotations

import zipfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gemini_core.errors import DataError
from gemini_core.scenarios.base import PruneSpec, Scenario, Split, Splits, TrainSettings, _last_linear, train_val_split
from gemini_core.scenarios.builtin import splits_from_arrays
from gemini_core.scenarios.models import SmallCNN
from gemini_core.scenarios.registry import register_scenario
from gemini_core.scenarios.table_data import (
    encode_labels,
    map_labels,
    refuse_unused_options,
    require_rows,
    split_or_error,
)
from gemini_core.scenarios.table_read import refuse_special

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
MAX_SIDE_PX = 64
MIN_SIDE_PX = 4  # SmallCNN pools twice
MAX_ARRAY_BYTES = 2 * 1024 ** 3
MAX_IMAGE_PIXELS = 50_000_000  # one image; beyond it Pillow's decompression-bomb guard would fire anyway
CHANNEL_COUNTS = (1, 3, 4)


def parse_image_size(image_size) -> tuple[int, int] | None:
    """(H, W) from an int, a pair or a string "32" / "32x48"."""
    if image_size in (None, ""):
        return None
    if isinstance(image_size, str):
        parts = image_size.lower().replace("×", "x").split("x")
        try:
            image_size = tuple(int(p) for p in parts) if len(parts) > 1 else int(parts[0])
        except ValueError:
            raise DataError(f"image size must look like 32 or 32x48, not {image_size!r}") from None
    size = (int(image_size), int(image_size)) if np.isscalar(image_size) else tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < MIN_SIDE_PX or max(size) > 512:
        raise DataError(f"image size must be two sides of {MIN_SIDE_PX} to 512 pixels, not {image_size!r}")
    return size


def capped_size(height_px: int, width_px: int, max_side_px: int = MAX_SIDE_PX) -> tuple[int, int]:
    """Scale down (keeping the aspect ratio) so neither side exceeds ``max_side_px``."""
    scale = min(1.0, max_side_px / max(height_px, width_px))
    return max(MIN_SIDE_PX, round(height_px * scale)), max(MIN_SIDE_PX, round(width_px * scale))


# -- folders ---------------------------------------------------------------------------------------
def _class_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root} has no class folders: put each class's images in its own sub-folder "
                        f"({root.name}/cat/1.png, {root.name}/dog/2.png, ...)")
    return folders


def _scan_images(folders: list[Path], notes: list[str]) -> list[tuple[str, Path, str, tuple[int, int]]]:
    """(class name, file, mode, (H, W)) for each file Pillow recognises; headers only, no decoding."""
    from PIL import Image, UnidentifiedImageError

    found, unreadable, ignored = [], [], 0
    for folder in folders:
        for file in sorted(folder.rglob("*")):
            if not file.is_file() or file.name.startswith("."):
                continue
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                ignored += 1
                continue
            try:
                with Image.open(file) as image:
                    size = (image.height, image.width)
                    mode = image.mode
            except Image.DecompressionBombError:
                size, mode = None, None
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
                unreadable.append(file)
                continue
            if size is None or size[0] * size[1] > MAX_IMAGE_PIXELS:
                shown = f"is {size[1]}x{size[0]} pixels" if size else "has more pixels than Pillow opens safely"
                raise DataError(f"{file.name} {shown}, above the limit of {MAX_IMAGE_PIXELS:,} pixels per image "
                                "(a decompression bomb, or a photo far larger than the model needs); remove it")
            found.append((folder.name, file, mode, size))
    _note_unreadable(unreadable, folders[0].parent, notes)
    if ignored:
        notes.append(f"ignored {ignored} file(s) that are not images")
    return found


def _note_unreadable(files: list[Path], root: Path, notes: list[str]) -> None:
    if files:
        names = [str(f.relative_to(root)) for f in files]
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        notes.append(f"skipped {len(names)} unreadable image file(s): {shown}")


def load_image_folder(root: Path, image_size=None) -> tuple[np.ndarray, list[str], list[str]]:
    """(N x C x H x W float32 in [0, 1], labels as class-folder names, notes)."""
    notes: list[str] = []
    folders = _class_folders(root)
    scanned = _scan_images(folders, notes)
    classes = sorted({name for name, *_ in scanned})
    empty = [f.name for f in folders if f.name not in classes]
    if empty:
        notes.append(f"class folder(s) without readable images, left out: {', '.join(empty[:10])}")
    if len(classes) < 2:
        raise DataError(f"{root} has readable images in {len(classes)} class folder(s) "
                        f"({', '.join(classes) or 'none'}); classification needs at least 2 classes")
    gray_count = sum(mode in GRAY_MODES for _, _, mode, _ in scanned)
    mode = "L" if gray_count * 2 > len(scanned) else "RGB"
    sizes = Counter(size for *_, size in scanned)
    size = parse_image_size(image_size) or capped_size(*sizes.most_common(1)[0][0])
    if len(sizes) > 1 or size != next(iter(sizes)):
        notes.append(f"images resized to {size[0]}x{size[1]} (found {len(sizes)} size(s))")
    notes.append(f"{'grayscale' if mode == 'L' else 'RGB'} ({gray_count} of {len(scanned)} images were grayscale)")
    _check_memory(len(scanned), 1 if mode == "L" else 3, size)
    arrays, labels, broken = [], [], []
    for name, file, _, _ in scanned:
        try:
            arrays.append(_read_array(file, mode, size))
            labels.append(name)
        except (OSError, ValueError):  # e.g. a truncated file whose header was fine
            broken.append(file)
    _note_unreadable(broken, root, notes)
    if not arrays:
        raise DataError(f"{root} has no readable images")
    return np.stack(arrays), labels, notes


def _read_array(file: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(file) as image:
            return _to_array(image, mode, size)
    except Image.DecompressionBombError:
        raise DataError(f"{file.name} has too many pixels (a decompression bomb); remove it") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{file.name} is a damaged image: {str(exc).splitlines()[0][:200]}") from None


def _to_array(image, mode: str, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    image = image.convert(mode)
    if (image.height, image.width) != size:
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _check_memory(count: int, channels: int, size: tuple[int, int]) -> None:
    need_bytes = count * channels * size[0] * size[1] * 4
    if need_bytes > MAX_ARRAY_BYTES:
        raise DataError(f"{count} images of {channels}x{size[0]}x{size[1]} need {need_bytes / 1024 ** 3:.1f} GB "
                        "in memory; use a smaller image size or fewer images")


# -- npz -------------------------------------------------------------------------------------------
def load_npz(path: Path, image_size=None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(N x C x H x W float32 in [0, 1], raw labels, notes) from an .npz with ``x`` and ``y``."""
    notes: list[str] = []
    _check_npz(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("x", "y") if k not in archive.files]
            if missing:
                raise DataError(f"{path.name} has no array {' or '.join(map(repr, missing))} "
                                f"(found: {', '.join(archive.files) or 'nothing'}); save images as x, labels as y")
            x, y = archive["x"], archive["y"]
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(f"{path.name} holds Python objects (pickled arrays); refused for safety. "
                            "Save x and y as arrays of numbers or strings") from None
        raise DataError(f"{path.name} is not a readable .npz file: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise DataError(f"{path.name} is not a readable .npz file: {str(exc).splitlines()[0][:200]}") from None
    y = np.asarray(y).reshape(-1) if np.ndim(y) == 2 and 1 in np.shape(y) else np.asarray(y)
    if y.dtype.kind == "c":
        raise DataError(complex_refusal(path.name, "y", y.dtype))
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{path.name}: x has {len(x)} images but y has shape {tuple(y.shape)}; "
                        "y needs one label per image")
    x = _scale_pixels(_to_nchw(x, path.name), notes)
    return _resize_array(x, image_size, notes), y, notes


def _check_npz(path: Path) -> None:
    """Before anything is decompressed: a real zip, and x / y arrays whose headers (shape, dtype) are sane and
    within ``MAX_ARRAY_BYTES`` (a few KB of .npz can otherwise declare terabytes)."""
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path.name} is not an .npz file (not a zip of .npy arrays); save it with numpy.savez")
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.flag_bits & 0x1:
                    raise DataError(f"{path.name}: {info.filename!r} is encrypted")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise DataError(f"{path.name}: {info.filename!r} uses an unknown compression method")
                if info.file_size > MAX_ARRAY_BYTES + 4096:
                    raise DataError(f"{path.name}: {info.filename!r} unpacks to {info.file_size:,} bytes, above "
                                    f"the limit of {MAX_ARRAY_BYTES:,}")
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if name not in ("x", "y"):
                    continue
                with archive.open(info) as handle:
                    version = np.lib.format.read_magic(handle)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(handle)
                if dtype.hasobject:
                    raise DataError(f"{path.name} holds Python objects (pickled arrays); refused for safety. "
                                    "Save x and y as arrays of numbers or strings")
                if dtype.kind == "c":
                    raise DataError(complex_refusal(path.name, name, dtype))
                count = int(np.prod(shape, dtype=np.float64)) if shape else 1
                if name == "x" and len(shape) not in (3, 4):
                    raise DataError(f"{path.name}: x has shape {tuple(shape)}; expected (N,H,W), (N,H,W,C) or "
                                    "(N,C,H,W)")
                if name == "y" and len(shape) not in (1, 2):
                    raise DataError(f"{path.name}: y has shape {tuple(shape)}; it needs one label per image")
                if count * max(dtype.itemsize, 4) > MAX_ARRAY_BYTES:
                    raise DataError(f"{path.name}: {name} of shape {tuple(shape)} would need "
                                    f"{count * max(dtype.itemsize, 4) / 1024 ** 3:.1f} GB; the limit is "
                                    f"{MAX_ARRAY_BYTES / 1024 ** 3:.0f} GB")
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise DataError(f"{path.name} is not a readable .npz file: {str(exc).splitlines()[0][:200]}") from None


def complex_refusal(file_name: str, array: str, dtype) -> str:
    """Complex values have no pixel or label meaning, and a cast to float32 would drop the imaginary part
    without a word: refused, saying what to save instead."""
    what = "images need real pixel values" if array == "x" else "labels need real values or text"
    return (f"{file_name}: {array} holds complex numbers ({np.dtype(dtype).name}); {what}. Save the part you mean "
            f"(np.abs({array}) or {array}.real) with numpy.savez")


def _to_nchw(x: np.ndarray, name: str) -> np.ndarray:
    if x.dtype.kind == "c":
        raise DataError(complex_refusal(name, "x", x.dtype))
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{name}: x must hold numbers, not {x.dtype}")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in CHANNEL_COUNTS:
        return x.transpose(0, 3, 1, 2)
    if x.ndim == 4 and x.shape[1] in CHANNEL_COUNTS:
        return x
    raise DataError(f"{name}: x has shape {tuple(x.shape)}; expected (N,H,W), (N,H,W,C) or (N,C,H,W) "
                    "with C = 1, 3 or 4")


def _scale_pixels(x: np.ndarray, notes: list[str]) -> np.ndarray:
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError("x has NaN or infinite pixel values")
    low, high = float(x.min()), float(x.max())
    if low >= 0 and high <= 1:
        return x
    if low >= 0 and high <= 255:
        notes.append("pixels divided by 255")
        return x / 255.0
    notes.append(f"pixels rescaled from [{low:g}, {high:g}] to [0, 1]")
    return (x - low) / max(high - low, 1e-12)


def _resize_array(x: np.ndarray, image_size, notes: list[str]) -> np.ndarray:
    size = parse_image_size(image_size) or capped_size(x.shape[2], x.shape[3])
    if size == tuple(x.shape[2:]):
        return x
    notes.append(f"images resized from {x.shape[2]}x{x.shape[3]} to {size[0]}x{size[1]}")
    _check_memory(len(x), x.shape[1], size)
    resized = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode="bilinear",
                                              antialias=True, align_corners=False)
    return resized.clamp(0, 1).numpy()


def _load_images(path: Path, image_size) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if path.is_dir():
        return load_image_folder(path, image_size)
    if path.suffix.lower() == ".npz":
        return load_npz(path, image_size)
    raise DataError(f"{path.name} is neither a folder of class folders nor an .npz file")


# -- the scenario ----------------------------------------------------------------------------------
@register_scenario("images", label="images: a folder of class folders, or an .npz file", data_kind="images",
                   seconds_per_point=1.0, seconds_per_setting=1.5, seconds_to_train=20.0)
class ImagesScenario(Scenario):
    name = "images"
    domain = "vision"
    default_train = TrainSettings(epochs=30, batch_size=64, lr=3e-3, patience=6)

    def __init__(self, data=None, image_size=None, seed: int = 0, test_data=None, **other):
        super().__init__()
        refuse_unused_options("images", other)
        if not data:
            raise DataError("the images scenario needs --data FOLDER (one sub-folder per class) or an .npz file")
        self.data = Path(data).expanduser()
        if not self.data.exists():
            raise DataError(f"image data {str(self.data)!r} does not exist")
        refuse_special(self.data)
        # A held-out test folder or .npz: --data trains and validates (85/15), the test data only tests.
        self.test_data = Path(test_data).expanduser() if test_data else None
        if self.test_data is not None and not self.test_data.exists():
            raise DataError(f"test image data {str(self.test_data)!r} does not exist")
        if self.test_data is not None:
            refuse_special(self.test_data)
        self.image_size, self.seed = image_size, int(seed or 0)
        self.description = f"small CNN on the images in {self.data.name}"
        self.notes: list[str] = []

    def load_splits(self) -> Splits:
        x, raw_labels, self.notes = _load_images(self.data, self.image_size)
        y, class_names = encode_labels(pd.Series(np.asarray(raw_labels).astype(str)), "class", self.notes)
        require_rows(len(y), "images")
        if self.test_data is None:
            return split_or_error(splits_from_arrays, x, y, class_names, seed=self.seed)
        train, val = split_or_error(train_val_split, y, seed=self.seed)
        test_x, test_raw, test_notes = _load_images(self.test_data, tuple(x.shape[2:]))
        self.notes += [f"test data: {note}" for note in test_notes]
        if test_x.shape[1] != x.shape[1]:
            raise DataError(f"test images have {test_x.shape[1]} channel(s), the training images {x.shape[1]}")
        test_y = map_labels(pd.Series(np.asarray(test_raw).astype(str)), class_names, "class", self.test_data.name)

        def make(images, labels):
            return Split({"x": torch.as_tensor(images, dtype=torch.float32)}, torch.as_tensor(labels, dtype=torch.long))

        return Splits(make(x[train], y[train]), make(x[val], y[val]), make(test_x, test_y), class_names)

    def _input_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.splits.train.inputs["x"].shape[1:]
        return int(channels), int(height), int(width)

    def build_model(self):
        torch.manual_seed(self.seed)
        return SmallCNN(*self._input_shape(), len(self.splits.class_names))

    def arch(self) -> dict:
        channels, height, width = self._input_shape()
        return {"scenario": self.name, "model": "SmallCNN", "in_channels": channels, "height": height,
                "width": width, "num_classes": len(self.splits.class_names)}

    def prune_spec(self, model) -> PruneSpec:
        # Multiples of 8 channels keep CPU kernels on their fast paths.
        return PruneSpec(ignored_layers=[_last_linear(model)], round_to=8)

    def describe(self) -> dict:
        info = super().describe()
        channels, height, width = self._input_shape()
        info.update({"data_file": str(self.data), "image_shape": [channels, height, width], "notes": self.notes,
                     "test_file": str(self.test_data) if self.test_data else None})
        return info
