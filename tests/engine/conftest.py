"""A tiny random Llama and a byte-level BPE tokenizer trained offline, saved as safetensors."""
from __future__ import annotations

import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: loads the real SmolLM2 model (minutes on 2 cores)")


TRAIN_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "A function returns a value; a statement changes the state of the program.",
    "Python evaluates expressions from left to right, except for assignments.",
    "The movie was wonderful and the actors were great.",
    "The film was terrible, boring and far too long.",
]


def build_tokenizer(vocab_size: int = 300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TRAIN_TEXT * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>")


def build_tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab_size,
                         max_position_embeddings=256, bos_token_id=0, eos_token_id=0,
                         tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = build_tokenizer()
    model = build_tiny_llama(len(tokenizer))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture()
def tiny_lm(tiny_llm_dir):
    from gemini_core.llm.source import load_local

    return load_local(tiny_llm_dir)
