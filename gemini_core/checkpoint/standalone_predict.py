"""Run an exported ONNX classifier on raw inputs. Needs onnxruntime and numpy (text also needs tokenizers).

    python predict.py INPUTS [--labels LABELS.npy] [--threads 2]

INPUTS: a .npy array (images: N x H x W or N x C x H x W raw pixels; tables: N x features) or, for
text models, a UTF-8 file with one text per line. The preprocessing the model was trained with is
read from preprocess.json beside this file. Prints one predicted class per line, or with --labels
(integer class indices, .npy) one JSON line with the accuracy.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def image_inputs(raw: np.ndarray, spec: dict) -> dict:
    x = raw.astype(np.float32) * np.float32(spec["scale"]) + np.float32(spec["offset"])
    return {spec["input"]: x.reshape((x.shape[0], *spec["shape"]))}


def tabular_inputs(raw: np.ndarray, spec: dict) -> dict:
    mean, std = np.asarray(spec["mean"], np.float64), np.asarray(spec["std"], np.float64)
    if raw.ndim != 2 or raw.shape[1] != mean.shape[0]:
        raise SystemExit(f"error: expected N x {mean.shape[0]} features, got shape {raw.shape}")
    return {spec["input"]: ((raw.astype(np.float64) - mean) / std).astype(np.float32)}


def text_inputs(texts: list[str], spec: dict) -> dict:
    from tokenizers import Tokenizer  # only text models need it (the tokenizer.json format)

    tokenizer = Tokenizer.from_file(str(HERE / spec["tokenizer"]))
    length = int(spec["max_length"])
    tokenizer.enable_truncation(max_length=length)
    tokenizer.enable_padding(length=length, pad_id=int(spec["pad_id"]), pad_token=spec["pad_token"] or "[PAD]")
    encoded = tokenizer.encode_batch(texts)
    return {"input_ids": np.asarray([e.ids for e in encoded], np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encoded], np.int64)}


def load_inputs(path: Path, spec: dict) -> dict:
    kind = spec["kind"]
    if kind == "text":
        texts = path.read_text(encoding="utf-8").splitlines()
        return text_inputs(texts, spec)
    raw = np.load(path, allow_pickle=False)  # never unpickle: an input file must not run code
    return image_inputs(raw, spec) if kind == "image" else tabular_inputs(raw, spec)


def predict(inputs: dict, model_file: Path, threads: int, batch_size: int = 256) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]
    count = len(next(iter(inputs.values())))
    logits = [session.run(None, {k: inputs[k][i:i + batch_size] for k in wanted})[0]
              for i in range(0, count, batch_size)]
    return np.concatenate(logits).argmax(-1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Run the exported ONNX model on raw inputs")
    parser.add_argument("inputs", type=Path)
    parser.add_argument("--labels", type=Path, help="integer labels (.npy): print accuracy instead of predictions")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: onnxruntime's default)")
    args = parser.parse_args(argv)
    spec = json.loads((HERE / "preprocess.json").read_text(encoding="utf-8"))
    predictions = predict(load_inputs(args.inputs, spec["preprocess"]), HERE / spec["model"], args.threads)
    if args.labels is None:
        sys.stdout.write("".join(f"{spec['classes'][p]}\n" for p in predictions))
        return
    labels = np.load(args.labels, allow_pickle=False)
    accuracy = float((predictions == labels).mean())
    print(json.dumps({"accuracy": accuracy, "examples": int(len(labels))}))


if __name__ == "__main__":
    main()
