#!/usr/bin/env python3
"""Multiple-choice tasks of moelab's embedded default model, one per domain, made from the
held-out test split that scripts/make_corpus.py writes: "which of 4 continuations is the
real text" (the real one or 3 scrambles of it, so the choices have the same characters and
only knowledge of the language or of Python tells them apart; chance: 25%).

For each eligible test document (in file order, up to --items per domain):

  natural language (space-separated words; en de es it ru pl cs pt): the document needs
      >= 14 words; the context is its first n = clamp(words // 2, 5, 30) words (with the
      whitespace between them, as in the text); the answer is the next 8 words, each with
      the whitespace before it (so it starts with a space or a newline). Scrambles: the 8
      words in another order, the whitespace kept in place.
  zh: the document needs >= 24 characters; the context is its first
      clamp(chars // 2, 8, 60) characters, the answer the next 10 characters. Scrambles:
      the 10 characters in another order.
  code: the document needs >= 6 non-blank lines; the context is its first
      clamp(lines // 2, 3, 10) lines with their newlines, the answer the next line that has
      >= 4 whitespace-separated tokens (indentation kept, no newline); the lines skipped to
      reach it stay in the context. Scrambles: the line's tokens in another order.

A document is skipped when its answer has fewer than 3 distinct scrambles. The 3 scrambles
(distinct, each different from the answer) and the order of the 4 choices are drawn with
random.Random(f"{seed}:{domain}:{i}"). All choices have the same length in characters and
bytes, so acc, acc_norm and acc_bytes agree.

The task's YAML sets target_delimiter "" (the answer carries its own leading whitespace)
so the scored continuation is exactly the document's next characters. Output, per domain:
<out>/<prefix><domain>.jsonl ({"query", "choices", "gold"}, configs/tasks/README.md) and
<prefix><domain>.yaml.

  python3 scripts/make_tasks.py --corpus models/debian-moe/corpus --out configs/tasks --items 40
"""
import argparse
import json
import pathlib
import random
import re

WORDS = re.compile(r"\s*\S+")
LATIN = ["en", "de", "es", "it", "ru", "pl", "cs", "pt"]


def clamp(v, lo, hi):
    return max(lo, min(hi, v))


UNITS = re.compile(r"(\s*)(\S+)")


def split_words(text):
    words = WORDS.findall(text)
    if len(words) < 14:
        return None
    n = clamp(len(words) // 2, 5, 30)
    return "".join(words[:n]), "".join(words[n:n + 8])


def split_chars(text):
    if len(text) < 24:
        return None
    n = clamp(len(text) // 2, 8, 60)
    ans = text[n:n + 10]
    return (text[:n], ans) if ans.strip() else None


def split_code(text):
    lines = text.split("\n")
    if sum(1 for l in lines if l.strip()) < 6:
        return None
    n = clamp(len(lines) // 2, 3, 10)
    for j in range(n, len(lines)):
        if len(lines[j].split()) >= 4:
            return "".join(l + "\n" for l in lines[:j]), lines[j]
    return None


def scramble_units(ans, rng):
    """ans with its units in another order: characters (zh) or whitespace-separated
    words/tokens (the whitespace before each unit stays in place)."""
    parts = UNITS.findall(ans)
    units = [u for _, u in parts]
    perm = units[:]
    rng.shuffle(perm)
    return "".join(sep + u for (sep, _), u in zip(parts, perm)) + ans[len("".join(s + u for s, u in parts)):]


def scramble_chars(ans, rng):
    chars = list(ans)
    rng.shuffle(chars)
    return "".join(chars)


def make_items(domain, docs, n_items, seed):
    split = split_code if domain == "code" else split_chars if domain == "zh" else split_words
    scramble = scramble_chars if domain == "zh" else scramble_units
    items = []
    for d in docs:
        p = split(d)
        if not p or not p[1].strip():
            continue
        ctx, ans = p
        rng = random.Random(f"{seed}:{domain}:{len(items)}")
        wrong = []
        for _ in range(200):
            w = scramble(ans, rng)
            if w != ans and w not in wrong:
                wrong.append(w)
            if len(wrong) == 3:
                break
        if len(wrong) < 3:
            continue
        choices = wrong + [ans]
        rng.shuffle(choices)
        items.append({"query": ctx, "choices": choices, "gold": choices.index(ans), "domain": domain})
        if len(items) == n_items:
            break
    return items


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, type=pathlib.Path, help="folder holding <domain>.test.jsonl")
    ap.add_argument("--out", required=True, type=pathlib.Path)
    ap.add_argument("--items", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prefix", default="debian_moe_")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for f in sorted(args.corpus.glob("*.test.jsonl")):
        domain = f.name.split(".")[0]
        docs = [json.loads(l)["text"] for l in open(f, encoding="utf-8") if l.strip()]
        items = make_items(domain, docs, args.items, args.seed)
        stem = f"{args.prefix}{domain}"
        with open(args.out / f"{stem}.jsonl", "w", encoding="utf-8") as fh:
            for it in items:
                fh.write(json.dumps(it, ensure_ascii=False) + "\n")
        with open(args.out / f"{stem}.yaml", "w") as fh:
            fh.write(f"# Made by scripts/make_tasks.py from {f.name} (held-out test split): which of 4\n"
                     f"# continuations is the real text (the others: scrambles of it). Answers carry their own\n# leading whitespace.\n"
                     f"name: {stem}\ntarget_delimiter: \"\"\n")
        print(f"{stem}: {len(items)} items")


if __name__ == "__main__":
    main()
