"""User-data scenarios: text (MiniLM and any local HF model), images, tabular; BERT head pruning."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from gemini_core.errors import CheckpointError, DataError
from gemini_core.scenarios import TrainSettings, get_scenario
from gemini_core.scenarios.hf_models import build_from_arch, minilm_dir, self_attention_modules
from gemini_core.scenarios.images import ImagesScenario
from gemini_core.scenarios.tabular import TabularScenario, apply_preprocessing
from gemini_core.scenarios.text import TextScenario
from gemini_core.techniques.prune import pruner_kwargs
from gemini_core.training.baseline import get_baseline
from gemini_core.training.loop import accuracy_of
from tests.engine.test_data_io import need_shared, write

QUICK = TrainSettings(epochs=1, batch_size=16, lr=5e-5, max_steps=5)


@pytest.fixture(autouse=True)
def gemini_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def sms_subset(tmp_path_factory):
    """The first 140 SMS messages: real data, small enough to evaluate MiniLM quickly."""
    lines = need_shared("sms_spam", "SMSSpamCollection").read_text(encoding="utf-8").splitlines()[:140]
    path = tmp_path_factory.mktemp("sms") / "sms140.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A 2-layer BERT (hidden 32, 4 heads, FFN 64) with MiniLM's tokenizer and a 3-way head."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)
    tokenizer.save_pretrained(folder)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        vocab_size=tokenizer.vocab_size, max_position_embeddings=64, num_labels=3)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def copy_model_dir(source, target, drop=(), config_update=None):
    shutil.copytree(source, target)
    for name in drop:
        (target / name).unlink()
    if config_update:
        config = json.loads((target / "config.json").read_text())
        config.update(config_update)
        (target / "config.json").write_text(json.dumps(config))
    return target


# -- text: packaged MiniLM -------------------------------------------------------------------------
def test_minilm_trains_a_few_steps_on_sms_and_caches(sms_subset):
    # MiniLM costs about 0.5 s per 16 x 32-token step on 2 cores: keep it to 2 small steps.
    settings = TrainSettings(epochs=1, batch_size=8, lr=5e-5, max_steps=2)
    scenario = TextScenario(data=sms_subset, text_column=1, label_column=0, max_length=16, max_train_examples=32)
    assert scenario.name == "text" and scenario.domain == "text"
    baseline = get_baseline(scenario, settings)
    test = scenario.splits.test
    logits = baseline.model(**test.inputs)
    assert logits.shape == (len(test), 2)
    assert 0.0 <= baseline.test_accuracy <= 1.0 and not baseline.cached
    assert set(test.inputs) == {"input_ids", "attention_mask"} and test.inputs["input_ids"].shape[1] == 16
    assert scenario.describe()["train"] == 32 and scenario.describe()["train_available"] == 98
    # build_model is seeded, so the cache key is meaningful and the reload is the same model.
    again = get_baseline(TextScenario(data=sms_subset, text_column=1, label_column=0, max_length=16,
                                      max_train_examples=32), settings)
    assert again.cached and again.key == baseline.key
    assert torch.allclose(again.model(**test.first(4).inputs), baseline.model(**test.first(4).inputs))
    spec = scenario.prune_spec(baseline.model)
    assert len(spec.num_heads) == 18 and set(spec.num_heads.values()) == {12} and spec.prune_heads


def test_text_needs_data():
    with pytest.raises(DataError, match="needs --data FILE"):
        TextScenario()


def test_text_refuses_options_it_does_not_use(sms_subset):
    with pytest.raises(DataError, match="does not use image_size"):
        get_scenario("text", data=str(sms_subset), image_size=32)


# -- text: any local Hugging Face model ---------------------------------------------------------
def test_hf_local_model_loads_and_trains_on_full_sms(tiny_bert_dir):
    data = need_shared("sms_spam", "SMSSpamCollection")
    scenario = get_scenario(f"hf:{tiny_bert_dir}", data=str(data), text_column="1", label_column="0",
                            max_length=32, max_train_examples=64)
    assert scenario.name == f"hf:{tiny_bert_dir}"
    baseline = get_baseline(scenario, QUICK)
    assert scenario.splits.class_names == ["ham", "spam"]
    assert len(scenario.splits.test) == 837 and len(scenario.splits.train) == 64
    assert baseline.model(**scenario.example_inputs(3)).shape == (3, 2)  # 3-way head replaced by 2-way
    assert 0.0 <= baseline.test_accuracy <= 1.0


def test_arch_rebuilds_the_same_model_offline(tiny_bert_dir, sms_subset):
    scenario = TextScenario(str(tiny_bert_dir), data=sms_subset, text_column=1, label_column=0, max_length=16)
    model = scenario.build_model()
    arch = json.loads(json.dumps(scenario.arch()))  # must survive JSON (meta.json)
    assert arch["model"] == "hf" and arch["num_labels"] == 2 and "_name_or_path" not in arch["config"]
    rebuilt = build_from_arch(arch)
    rebuilt.load_state_dict(model.state_dict())
    inputs = scenario.example_inputs(4)
    assert torch.allclose(rebuilt(**inputs), model(**inputs), atol=1e-6)


def test_test_file_gives_the_test_split(tmp_path, tiny_bert_dir):
    rows = "".join(f"text number {i}\t{'ab'[i % 2]}\n" for i in range(40))
    train = write(tmp_path, "train.tsv", "text\tlabel\n" + rows)
    test = write(tmp_path, "test.tsv", "text\tlabel\nfresh one\tb\nfresh two\ta\nfresh three\tb\n")
    scenario = TextScenario(str(tiny_bert_dir), data=train, test_data=test, text_column="text",
                            label_column="label", max_length=16)
    splits = scenario.splits
    assert len(splits.test) == 3 and splits.test.labels.tolist() == [1, 0, 1]
    assert len(splits.train) + len(splits.val) == 40 and len(splits.val) == 6
    bad = write(tmp_path, "bad.tsv", "text\tlabel\nodd\tc\nodd2\ta\n")
    with pytest.raises(DataError, match="labels the training file does not: c"):
        TextScenario(str(tiny_bert_dir), data=train, test_data=bad, text_column="text", label_column="label").splits


def test_model_asking_for_remote_code_is_refused(tmp_path, tiny_bert_dir, sms_subset):
    folder = copy_model_dir(tiny_bert_dir, tmp_path / "remote",
                            config_update={"auto_map": {"AutoModel": "modeling_evil.EvilModel"}})
    with pytest.raises(CheckpointError, match=r"model asks to run its own code \(auto_map\); refused"):
        TextScenario(str(folder), data=sms_subset)


def test_missing_config_or_weights_are_named(tmp_path, tiny_bert_dir, sms_subset):
    no_config = copy_model_dir(tiny_bert_dir, tmp_path / "no_config", drop=["config.json"])
    with pytest.raises(CheckpointError, match="has no config.json"):
        TextScenario(str(no_config), data=sms_subset)
    no_weights = copy_model_dir(tiny_bert_dir, tmp_path / "no_weights", drop=["model.safetensors"])
    with pytest.raises(CheckpointError, match="has no weights"):
        TextScenario(str(no_weights), data=sms_subset)
    with pytest.raises(CheckpointError, match="does not exist"):
        TextScenario(str(tmp_path / "nowhere" / "model"), data=sms_subset)


def test_misspelled_text_column_names_the_closest(tiny_bert_dir):
    data = need_shared("sst2", "train_subset_first5000.tsv")
    scenario = TextScenario(str(tiny_bert_dir), data=data, text_column="sentense", label_column="label")
    with pytest.raises(DataError, match="Did you mean 'sentence'"):
        scenario.splits


# -- BERT structured pruning ----------------------------------------------------------------------
def _masked_original(original: nn.Module, history) -> nn.Module:
    """The unpruned model with the removed heads / FFN neurons zeroed where they are read."""
    for name, is_out, index in history:
        layer = original.get_submodule(name)
        reader = layer if not is_out else original.get_submodule(name.replace("intermediate.dense", "output.dense"))
        with torch.no_grad():
            reader.weight[:, index] = 0  # attention.output.dense (heads) or output.dense (FFN) inputs
    return original


def test_bert_head_and_ffn_pruning_round_trips_through_history(tiny_bert_dir, sms_subset):
    import torch_pruning as tp

    scenario = TextScenario(str(tiny_bert_dir), data=sms_subset, text_column=1, label_column=0, max_length=16)
    model = scenario.build_model().eval()
    original_state = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = scenario.example_inputs(4)
    params_before = sum(p.numel() for p in model.parameters())
    spec = scenario.prune_spec(model)
    pruner = tp.pruner.MetaPruner(model, example_inputs=inputs,
                                  importance=tp.importance.GroupMagnitudeImportance(p=2),
                                  **pruner_kwargs(spec, 0.5))
    pruner.step()
    spec.after_prune(model)
    hf = model.hf
    assert [a.num_attention_heads for a in self_attention_modules(model)] == [2, 2]
    assert hf.bert.encoder.layer[0].intermediate.dense.out_features == 32
    assert hf.bert.embeddings.word_embeddings.embedding_dim == 32  # hidden size kept
    assert sum(p.numel() for p in model.parameters()) < params_before
    with torch.no_grad():
        pruned_logits = model(**inputs)
    assert pruned_logits.shape == (4, 2)

    history = pruner.pruning_history()
    original = build_from_arch(scenario.arch())
    original.load_state_dict(original_state)
    with torch.no_grad():  # pruning == zeroing what was removed: the pruned model is the right one
        assert torch.allclose(_masked_original(original, history)(**inputs), pruned_logits, atol=1e-5)

    rebuilt = build_from_arch(json.loads(json.dumps(scenario.arch())))
    tp.DependencyGraph().build_dependency(rebuilt, example_inputs=inputs).load_pruning_history(
        json.loads(json.dumps(history)))
    spec.after_prune(rebuilt)
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(rebuilt(**inputs), pruned_logits, atol=1e-5)


@pytest.mark.parametrize("family", ["bert", "roberta", "electra"])
def test_prune_spec_keeps_hidden_size_across_bert_families(family):
    import torch_pruning as tp
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from gemini_core.scenarios.hf_models import HFClassifier, bert_prune_spec

    config = AutoConfig.for_model(family, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, vocab_size=100, max_position_embeddings=40, num_labels=3)
    torch.manual_seed(0)
    model = HFClassifier(AutoModelForSequenceClassification.from_config(config)).eval()
    spec = bert_prune_spec(model)
    ignored = {name for name, m in model.named_modules() if m in spec.ignored_layers}
    assert not any("encoder.layer" in name for name in ignored)  # unstructured pruning still reaches them
    inputs = {"input_ids": torch.randint(3, 100, (2, 12)), "attention_mask": torch.ones(2, 12, dtype=torch.long)}
    tp.pruner.MetaPruner(model, example_inputs=inputs, importance=tp.importance.GroupMagnitudeImportance(p=2),
                         **pruner_kwargs(spec, 0.5)).step()
    spec.after_prune(model)
    shapes = {name.split("layer.0.")[-1]: tuple(p.shape) for name, p in model.named_parameters()
              if "layer.0." in name and name.endswith("weight")}
    assert shapes["attention.self.query.weight"] == (16, 32) and shapes["attention.output.dense.weight"] == (32, 16)
    assert shapes["intermediate.dense.weight"] == (32, 32) and shapes["output.dense.weight"] == (32, 32)
    assert model(**inputs).shape == (2, 3)


def test_head_ratio_keeps_one_head():
    from gemini_core.scenarios.base import PruneSpec

    spec = PruneSpec(num_heads={nn.Linear(2, 2): 12})
    assert pruner_kwargs(spec, 1.0)["head_pruning_ratio"] == pytest.approx(11 / 12)
    assert pruner_kwargs(spec, 0.5)["head_pruning_ratio"] == 0.5


# -- images ----------------------------------------------------------------------------------------
def _image_folder(root, per_class=12):
    from PIL import Image

    rng = np.random.default_rng(0)
    for class_index, name in enumerate(["circle", "square"]):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = (rng.random((10, 10)) * 60 + 150 * class_index).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")
    Image.fromarray(np.zeros((12, 14, 3), np.uint8), mode="RGB").save(root / "circle" / "odd.jpg")
    (root / "square" / "broken.png").write_bytes(b"not a png at all")
    (root / "square" / "README.txt").write_text("notes")
    return root


def test_image_folder_trains_and_notes_skipped_files(tmp_path):
    scenario = get_scenario("images", data=str(_image_folder(tmp_path / "shapes")))
    splits = scenario.splits
    assert splits.class_names == ["circle", "square"]
    assert splits.train.inputs["x"].shape[1:] == (1, 10, 10)  # majority grayscale, most common size
    assert len(splits.train) + len(splits.val) + len(splits.test) == 25
    assert float(splits.train.inputs["x"].max()) <= 1.0
    notes = " | ".join(scenario.notes)
    assert "square/broken.png" in notes and "ignored 1 file" in notes and "resized to 10x10" in notes
    baseline = get_baseline(scenario, TrainSettings(epochs=1, batch_size=8, lr=3e-3, max_steps=3))
    assert baseline.model(**scenario.example_inputs(2)).shape == (2, 2)
    assert scenario.arch() == {"scenario": "images", "model": "SmallCNN", "in_channels": 1, "height": 10,
                               "width": 10, "num_classes": 2}
    assert scenario.prune_spec(baseline.model).round_to == 8


def test_image_size_option_and_rgb_npz(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (30, 20, 20, 3), dtype=np.uint8)  # N,H,W,C
    y = np.array(["cat", "dog", "eel"] * 10)
    np.savez(tmp_path / "pets.npz", x=x, y=y)
    scenario = ImagesScenario(data=tmp_path / "pets.npz", image_size="8x12")
    assert scenario.splits.train.inputs["x"].shape[1:] == (3, 8, 12)
    assert scenario.splits.class_names == ["cat", "dog", "eel"]
    assert float(scenario.splits.test.inputs["x"].max()) <= 1.0


def test_image_data_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ImagesScenario(data=tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"x")
    with pytest.raises(DataError, match="has no class folders"):
        ImagesScenario(data=tmp_path / "flat").splits
    one = _image_folder(tmp_path / "one")
    shutil.rmtree(one / "square")
    with pytest.raises(DataError, match="need at least 2 classes|needs at least 2 classes"):
        ImagesScenario(data=one).splits
    np.savez(tmp_path / "no_y.npz", x=np.zeros((10, 8, 8)))
    with pytest.raises(DataError, match="has no array 'y'"):
        ImagesScenario(data=tmp_path / "no_y.npz").splits
    np.savez(tmp_path / "short.npz", x=np.zeros((10, 8, 8)), y=np.zeros(9))
    with pytest.raises(DataError, match="x has 10 images but y has shape"):
        ImagesScenario(data=tmp_path / "short.npz").splits
    np.savez(tmp_path / "pickled.npz", x=np.zeros((10, 8, 8)), y=np.array([{"a": 1}] * 10, dtype=object))
    with pytest.raises(DataError, match="refused for safety"):
        ImagesScenario(data=tmp_path / "pickled.npz").splits


# -- tabular -----------------------------------------------------------------------------------------
def _patients_csv(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["age,city,score,id,outcome"]
    for i in range(80):
        age = "" if i % 17 == 0 else str(int(rng.integers(20, 80)))
        city = ["Oslo", "Rome", "Lima"][i % 3]
        lines.append(f"{age},{city},{rng.normal():.3f},patient-{i},{'sick' if i % 2 else 'well'}")
    return write(tmp_path, "patients.csv", "\n".join(lines) + "\n")


def test_tabular_preprocessing_is_fitted_on_train_rows(tmp_path):
    scenario = get_scenario("tabular", data=str(_patients_csv(tmp_path)), label_column="outcome")
    splits = scenario.splits
    prep = scenario.preprocessing()
    assert [n["column"] for n in prep["numeric"]] == ["age", "score"]
    assert prep["categorical"] == [{"column": "city", "categories": ["Lima", "Oslo", "Rome"]}]
    assert "id" in prep["dropped"]  # 80 distinct values: an identifier
    assert splits.train.inputs["x"].shape[1] == 5 and json.dumps(scenario.arch())
    train_x = splits.train.inputs["x"].numpy()
    assert np.allclose(train_x[:, :2].mean(axis=0), 0, atol=1e-5)  # standardised on train rows
    assert any("training mean" in note for note in scenario.notes)
    import pandas as pd

    new_rows = pd.DataFrame({"age": ["?"], "city": ["Paris"], "score": ["0.5"]})
    encoded = apply_preprocessing(prep, new_rows)
    assert encoded.shape == (1, 5) and encoded[0, 0] == 0 and encoded[0, 2:].tolist() == [0, 0, 0]
    baseline = get_baseline(scenario, TrainSettings(epochs=2, batch_size=16, lr=1e-3))
    assert 0.0 <= accuracy_of(baseline.model, splits.test) <= 1.0


def test_tabular_refuses_a_text_column(tmp_path):
    with pytest.raises(DataError, match="does not use text_column"):
        TabularScenario(data=_patients_csv(tmp_path), label_column="outcome", text_column="city")


def test_unset_cli_options_are_ignored_and_defaults_apply(sms_subset, tiny_bert_dir):
    scenario = get_scenario(f"hf:{tiny_bert_dir}", data=str(sms_subset), text_column=None, label_column=None,
                            test_data=None, header="infer", max_length=None, max_train_examples=None,
                            image_size=None)
    assert scenario.max_length == 64 and scenario.max_train_examples == 2000
    assert scenario.splits.train.inputs["input_ids"].shape[1] == 64  # within the tiny model's 64 positions
    long = TextScenario(str(tiny_bert_dir), data=sms_subset, max_length=128)
    assert long.splits.train.inputs["input_ids"].shape[1] == 64
    assert any("lowered to the model's limit of 64" in note for note in long.notes)


def test_structured_pruning_refuses_non_bert_models():
    from transformers import AutoModelForSequenceClassification, DistilBertConfig

    from gemini_core.errors import ConfigError
    from gemini_core.scenarios.hf_models import HFClassifier, bert_prune_spec

    config = DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64, vocab_size=100)
    model = HFClassifier(AutoModelForSequenceClassification.from_config(config))
    with pytest.raises(ConfigError, match="DistilBertForSequenceClassification is not one"):
        bert_prune_spec(model)


def test_too_few_rows_are_explained(tmp_path):
    tiny = write(tmp_path, "tiny.csv", "x,label\n1,a\n2,b\n3,a\n4,b\n")
    with pytest.raises(DataError, match="only 4 rows"):
        TabularScenario(data=tiny).splits
    rows = "".join(f"{i},{'abc'[i % 3]}\n" for i in range(12))
    three_classes = write(tmp_path, "three.csv", "x,label\n" + rows)
    with pytest.raises(DataError, match="cannot split the data"):
        TabularScenario(data=three_classes).splits
