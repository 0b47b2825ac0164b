"""Real handwritten digits as a user's image folder: scikit-learn's 8x8 digits (scans of 43 people's
handwriting, UCI) written as 28x28 grayscale PNGs in one folder per class.

    python -m bench.experiments.digits_pngs OUT_DIR [--size 28]

This is NOT MNIST (no MNIST is reachable offline here): 1,797 images, 8x8 scans upscaled with
bilinear resampling. It lets the ``images`` scenario run on real digit images given as files:

    python -m gemini_core train --scenario images --data OUT_DIR
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def write_digit_pngs(out_dir: Path, size_px: int = 28) -> int:
    """Write ``out_dir/<digit>/<index>.png`` (8-bit grayscale, ``size_px`` square); the number written."""
    from sklearn.datasets import load_digits

    data = load_digits()
    pixels = np.clip(np.rint(data.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)  # 0..16 -> 0..255
    for index, (image, label) in enumerate(zip(pixels, data.target)):
        folder = Path(out_dir) / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        big = Image.fromarray(image).resize((size_px, size_px), Image.Resampling.BILINEAR)
        big.save(folder / f"{index:04d}.png")
    return len(pixels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--size", type=int, default=28, help="side of the written PNGs in pixels (default 28)")
    args = parser.parse_args()
    count = write_digit_pngs(args.out_dir, args.size)
    print(f"{count} PNGs ({args.size}x{args.size}) in {args.out_dir}")


if __name__ == "__main__":
    main()
