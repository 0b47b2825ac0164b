"""Standalone exports: the preprocessing an ONNX model needs, and a loader that needs only onnxruntime + numpy.

A model trained on scaled or standardised inputs gives chance-level answers on raw data (raw
scikit-learn digits: 18.1% instead of 96.9%). ``write_standalone`` stores what the scenario did to
the raw inputs in ``preprocess.json`` (tokenizer files for text) and writes ``predict.py``, which
reads raw inputs, applies it and runs the ONNX file; ``--labels`` prints the accuracy.

Preprocessing is known for the built-in scenarios (digits: pixel scaling; breast-cancer: the training
rows' mean and std) and for text (the tokenizer, padding and truncation to ``max_length``);
other scenarios are refused with a ConfigError naming what is missing.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from gemini_core.errors import ConfigError
from gemini_core.scenarios.base import stratified_split

PREPROCESS_FILE = "preprocess.json"
LOADER_FILE = "predict.py"
GUIDE_FILE = "STANDALONE.md"
FORMAT_VERSION = 1


def preprocessing(scenario) -> dict:
    """What turns raw inputs into the model's inputs, for ``scenario`` (JSON-ready)."""
    name = scenario.name
    if name == "digits":
        # DigitsScenario.load_splits: images / 16.0, as N x 1 x 8 x 8 float32.
        return {"kind": "image", "input": "x", "scale": 1.0 / 16.0, "offset": 0.0, "shape": [1, 8, 8],
                "raw": "scikit-learn load_digits().images: N x 8 x 8 pixel values 0..16"}
    if name == "breast-cancer":
        mean, std = _breast_cancer_statistics()
        return {"kind": "tabular", "input": "x", "mean": mean, "std": std,
                "raw": "scikit-learn load_breast_cancer().data: N x 30 features, in the same column order"}
    if getattr(scenario, "domain", None) == "text" and hasattr(scenario, "tokenizer"):
        tokenizer = scenario.tokenizer()
        # The scenario pads every text to max_length with the tokenizer's pad token and truncates longer ones.
        return {"kind": "text", "inputs": ["input_ids", "attention_mask"], "max_length": int(scenario.max_length),
                "tokenizer": "tokenizer/tokenizer.json", "pad_id": int(tokenizer.pad_token_id or 0),
                "pad_token": tokenizer.pad_token, "raw": "one text per line (UTF-8)"}
    raise ConfigError(f"a standalone export of scenario {name!r} is not supported yet: its preprocessing "
                      "(image resizing or column encoding) is not recorded; use digits, breast-cancer or text")


def _breast_cancer_statistics() -> tuple[list[float], list[float]]:
    """The training rows' mean and std, computed exactly as BreastCancerScenario.load_splits does."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    train, _, _ = stratified_split(data.target.astype(np.int64))
    x = data.data.astype(np.float64)
    std = x[train].std(axis=0)
    std[std == 0] = 1.0
    return x[train].mean(axis=0).tolist(), std.tolist()


def write_standalone(folder: Path, scenario, onnx_file: str = "model.onnx") -> dict:
    """``preprocess.json`` (+ ``tokenizer/``) and ``predict.py`` beside ``folder/onnx_file``."""
    folder = Path(folder)
    if not (folder / onnx_file).is_file():
        raise ConfigError(f"{folder / onnx_file} does not exist: write the ONNX file first")
    spec = {"format": "gemini-standalone", "version": FORMAT_VERSION, "model": onnx_file,
            "classes": list(scenario.splits.class_names), "preprocess": preprocessing(scenario)}
    if spec["preprocess"]["kind"] == "text":
        _write_tokenizer(scenario, folder / "tokenizer")
    (folder / PREPROCESS_FILE).write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    shutil.copyfile(Path(__file__).with_name("standalone_predict.py"), folder / LOADER_FILE)
    kind = spec["preprocess"]["kind"]
    requires = ["onnxruntime", "numpy"] + (["tokenizers"] if kind == "text" else [])
    (folder / GUIDE_FILE).write_text(_guide(spec, requires), encoding="utf-8")
    return {"files": [PREPROCESS_FILE, LOADER_FILE, GUIDE_FILE] + (["tokenizer/"] if kind == "text" else []),
            "preprocess": kind, "requires": requires}


def _guide(spec: dict, requires: list[str]) -> str:
    """Runtime-only usage, for the export's README: no clone of this repository, no torch."""
    pre = spec["preprocess"]
    return (f"# Running {spec['model']} without gemini_core\n\n"
            f"Needs only: `pip install {' '.join(requires)}`.\n\n"
            f"Raw inputs: {pre['raw']}. The preprocessing the model was trained with ({pre['kind']}) is stored in "
            f"`{PREPROCESS_FILE}` and applied by `{LOADER_FILE}`.\n\n"
            "```bash\npython predict.py INPUTS                      # one predicted class per line\n"
            "python predict.py INPUTS --labels labels.npy  # accuracy as JSON\n```\n\n"
            "In Python:\n\n```python\nimport json\nfrom pathlib import Path\n\nimport onnxruntime as ort\n"
            "import predict  # this folder on sys.path\n"
            f"spec = json.load(open(\"{PREPROCESS_FILE}\"))\n"
            "inputs = predict.load_inputs(Path(\"INPUTS\"), spec[\"preprocess\"])\n"
            f"logits = ort.InferenceSession(\"{spec['model']}\").run(None, inputs)[0]\n```\n")


def _write_tokenizer(scenario, folder: Path) -> None:
    tokenizer = scenario.tokenizer()
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("a standalone text export needs a fast tokenizer (tokenizer.json); this model has none")
    tokenizer.save_pretrained(str(folder))
