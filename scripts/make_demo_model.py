#!/usr/bin/env python3
"""Builds the demo model used by the quickstart until the embedded default model
(trained, shipped in the repo) exists: a small random-init Mixtral with a byte-level
BPE tokenizer trained on text this machine already has (Python's standard library
sources). Deterministic: the same seed gives the same files."""
import argparse
import pathlib
import sysconfig

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import MixtralConfig, MixtralForCausalLM
from transformers import logging as hf_logging


def corpus(max_chars=2_000_000):
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    text, total = [], 0
    for f in sorted(stdlib.glob("*.py")):
        t = f.read_text(errors="ignore")
        text.append(t)
        total += len(t)
        if total > max_chars:
            break
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=pathlib.Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    hf_logging.disable_progress_bar()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2048, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    torch.manual_seed(args.seed)
    cfg = MixtralConfig(vocab_size=tok.get_vocab_size(), hidden_size=128, intermediate_size=256,
                        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                        num_local_experts=8, num_experts_per_tok=2, max_position_embeddings=1024,
                        eos_token_id=0, bos_token_id=0)
    model = MixtralForCausalLM(cfg).eval()
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tok.save(str(args.out / "tokenizer.json"))
    print(f"demo model written to {args.out}")


if __name__ == "__main__":
    main()
