#!/usr/bin/env python3
"""The tokenizer of moelab's embedded default model: byte-level BPE (as GPT-2/Qwen:
the ByteLevel pre-tokenizer with GPT-2's split regex, the 256 byte symbols as the initial
alphabet, so every UTF-8 string is encodable) trained with the `tokenizers` library on the
train split that scripts/make_corpus.py writes (all domains, files in sorted order).

Special token: <|endoftext|> (id 0), used as BOS, EOS and padding. The post-processor
prepends it to every encoded text (add_special_tokens=True), as transformers'
`tokenizer(text)` and moelab's eval/calibrate do, so that a document's first real token
is scored too; moelab's training joins documents with it, so the model sees a document
start after it in both cases.

  python3 scripts/make_tokenizer.py --corpus build/debian-moe/corpus --vocab-size 4096 --out build/debian-moe/tokenizer

Writes tokenizer.json and tokenizer_config.json to --out. Deterministic for a given
corpus and `tokenizers` version (pinned in scripts/setup.sh).
"""
import argparse
import json
import pathlib

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

EOT = "<|endoftext|>"


def documents(corpus):
    for f in sorted(corpus.glob("*.train.jsonl")):
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)["text"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, type=pathlib.Path, help="make_corpus.py's --out")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--out", required=True, type=pathlib.Path)
    args = ap.parse_args()
    if not any(args.corpus.glob("*.train.jsonl")):
        raise SystemExit(f"make_tokenizer: no *.train.jsonl in {args.corpus} (run scripts/make_corpus.py)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args.vocab_size, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(documents(args.corpus), trainer)
    eot = tok.token_to_id(EOT)
    tok.post_processor = processors.TemplateProcessing(single=f"{EOT} $A", pair=f"{EOT} $A {EOT} $B",
                                                       special_tokens=[(EOT, eot)])
    args.out.mkdir(parents=True, exist_ok=True)
    tok.save(str(args.out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOT, "eos_token": EOT,
              "pad_token": EOT, "unk_token": None, "add_prefix_space": False, "clean_up_tokenization_spaces": False,
              "model_max_length": 1024}
    with open(args.out / "tokenizer_config.json", "w") as fh:
        json.dump(config, fh, indent=2)
        fh.write("\n")
    print(f"tokenizer: {tok.get_vocab_size()} ids ({EOT} = {eot}) written to {args.out}")


if __name__ == "__main__":
    main()
