#!/usr/bin/env python3
"""The corpus of moelab's embedded default model, built from Debian packages only.

Domains (one per language of Debian's fortune cookie packages, plus Python code):

  domain  Debian packages                      files
  en      fortunes, fortunes-min               /usr/share/games/fortunes/* (not the offensive ones)
  de      fortunes-de                          /usr/share/games/fortunes/de/*
  es      fortunes-es                          /usr/share/games/fortunes/es/*  (es/off/ left out)
  it      fortunes-it                          /usr/share/games/fortunes/it/*
  ru      fortunes-ru                          /usr/share/games/fortunes/ru/*
  pl      fortunes-pl                          /usr/share/games/fortunes/pl/*
  cs      fortunes-cs                          /usr/share/games/fortunes/cs/*  (klasik-sk, Slovak, left out)
  zh      fortunes-zh                          chinese, tang300, song100 (ANSI colour codes removed)
  pt      fortunes-br                          brasil (Brazilian Portuguese)
  code    libpython3.X-minimal, -stdlib        /usr/lib/python3.X/**/*.py (site-/dist-packages left out)

The files of a domain are those its packages install (`dpkg -L`), so a file of another
package in the same folder never leaks in. fortunes-eo, -ga, -bg are too small (< 0.1 MB).

Documents: a fortune is one entry (entries are separated by lines holding a single `%`);
lines are right-stripped, blank lines at both ends dropped, entries under 16 or over 4000
bytes dropped, exact duplicates within a domain dropped (the first kept). A Python file is
cut at blank lines into chunks of at most ~1500 bytes (a longer paragraph is its own chunk).

Split (seed --seed, default 0): per domain, the documents are sorted by (file, position),
shuffled with random.Random(f"{seed}:{domain}"), and taken in that order: the first ones
into `test` until it holds --test-bytes of text, the next into `calibration` until
--cal-bytes, the rest into `train` up to --train-bytes. `quick` is a prefix of `test` (its
first documents up to --quick-bytes of text) for fast evaluations (the quickstart's sweep). Code is split by source file
instead (a file never straddles two splits) so that held-out code is unseen modules; a
file taken into a held-out split gives it 3 of its chunks (a seeded sample; its other
chunks are used nowhere), so that the held-out code comes from many modules.

Output (--out): <domain>.<split>.jsonl, one {"text": ...} per line, and manifest.json
(sources with their Debian package versions, parameters, and per file: documents, bytes
of text, sha256 of the file). --ship DIR also copies the held-out splits (calibration,
test) and the manifest to DIR. The same Debian package versions give byte-identical files.

  python3 scripts/make_corpus.py --out build/debian-moe/corpus --ship models/debian-moe/corpus
"""
import argparse
import glob
import hashlib
import json
import os
import pathlib
import random
import re
import shutil
import subprocess
import sys

FORTUNES = "/usr/share/games/fortunes"

# domain -> (Debian packages, predicate on the path below FORTUNES)
FORTUNE_DOMAINS = {
    "en": (["fortunes", "fortunes-min"], lambda rel: "/" not in rel),
    "de": (["fortunes-de"], lambda rel: rel.startswith("de/")),
    "es": (["fortunes-es"], lambda rel: rel.startswith("es/") and not rel.startswith("es/off/")),
    "it": (["fortunes-it"], lambda rel: rel.startswith("it/")),
    "ru": (["fortunes-ru"], lambda rel: rel.startswith("ru/")),
    "pl": (["fortunes-pl"], lambda rel: rel.startswith("pl/")),
    "cs": (["fortunes-cs"], lambda rel: rel.startswith("cs/") and rel != "cs/klasik-sk"),
    "zh": (["fortunes-zh"], lambda rel: "/" not in rel),
    "pt": (["fortunes-br"], lambda rel: "/" not in rel),
}
DOMAINS = list(FORTUNE_DOMAINS) + ["code"]
FORTUNE_PACKAGES = sorted({p for pkgs, _ in FORTUNE_DOMAINS.values() for p in pkgs})

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MIN_BYTES, MAX_BYTES, CODE_CHUNK = 16, 4000, 1500


def dpkg_files(pkg):
    out = subprocess.run(["dpkg-query", "-L", pkg], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"make_corpus: Debian package {pkg} is not installed "
                 f"(apt-get install {' '.join(FORTUNE_PACKAGES)}; scripts/setup.sh does it)")
    return out.stdout.split("\n")


def dpkg_version(pkg):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def fortune_files(domain):
    pkgs, keep = FORTUNE_DOMAINS[domain]
    files = set()
    for pkg in pkgs:
        for f in dpkg_files(pkg):
            if not f.startswith(FORTUNES + "/") or f.endswith((".dat", ".u8")):
                continue
            if os.path.islink(f) or not os.path.isfile(f) or os.path.getsize(f) == 0:
                continue
            if keep(os.path.relpath(f, FORTUNES)):
                files.add(f)
    return sorted(files)


def clean(text):
    text = CONTROL.sub("", ANSI.sub("", text))
    lines = [l.rstrip() for l in text.split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def fortune_entries(path):
    raw = open(path, "rb").read().decode("utf-8", errors="replace").replace("\r\n", "\n")
    return [clean(e) for e in re.split(r"(?m)^%[ \t]*\n", raw + "\n")]


def python_stdlib():
    """(folder, packages) of the Debian Python standard library."""
    cands = sorted(glob.glob("/usr/lib/python3.[0-9]*/os.py"),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p.split("/")[3])])
    if not cands:
        sys.exit("make_corpus: no Python standard library under /usr/lib/python3.*")
    root = os.path.dirname(cands[-1])
    ver = os.path.basename(root).replace("python", "")
    return root, [f"libpython{ver}-minimal", f"libpython{ver}-stdlib"]


def code_files(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "dist-packages", "__pycache__"))
        for fn in sorted(filenames):
            if fn.endswith(".py"):
                f = os.path.join(dirpath, fn)
                if not os.path.islink(f):
                    out.append(f)
    return sorted(out)


def code_chunks(path):
    text = clean(open(path, "rb").read().decode("utf-8", errors="replace").replace("\r\n", "\n"))
    chunks, cur = [], ""
    for para in re.split(r"\n\s*\n", text):
        para = para.strip("\n")
        if not para.strip():
            continue
        if cur and len((cur + "\n\n" + para).encode()) > CODE_CHUNK:
            chunks.append(cur)
            cur = para
        else:
            cur = cur + "\n\n" + para if cur else para
    if cur:
        chunks.append(cur)
    return chunks


def usable(t):
    return MIN_BYTES <= len(t.encode()) <= MAX_BYTES


def split_groups(groups, seed, domain, test_bytes, cal_bytes, train_bytes, heldout_per_group=None):
    """groups: list of lists of documents (a group never straddles two splits). A group
    taken into a held-out split gives it at most heldout_per_group of its documents (a
    seeded sample, in order; the rest are dropped). Returns dict split -> docs."""
    rng = random.Random(f"{seed}:{domain}")
    order = list(range(len(groups)))
    rng.shuffle(order)
    out = {"test": [], "calibration": [], "train": []}
    size = {k: 0 for k in out}
    limits = {"test": test_bytes, "calibration": cal_bytes, "train": train_bytes}
    stage = ["test", "calibration", "train"]
    si = 0
    for gi in order:
        g = groups[gi]
        while si < 3 and size[stage[si]] >= limits[stage[si]]:
            si += 1
        if si == 3:
            break
        if heldout_per_group and stage[si] != "train" and len(g) > heldout_per_group:
            g = [g[i] for i in sorted(rng.sample(range(len(g)), heldout_per_group))]
        gb = sum(len(d.encode()) for d in g)
        out[stage[si]].extend(g)
        size[stage[si]] += gb
    return out


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=pathlib.Path)
    ap.add_argument("--ship", type=pathlib.Path, help="also copy the held-out splits and the manifest here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--domains", default=",".join(DOMAINS))
    ap.add_argument("--test-bytes", type=int, default=48_000)
    ap.add_argument("--cal-bytes", type=int, default=48_000)
    ap.add_argument("--train-bytes", type=int, default=1_000_000)
    ap.add_argument("--quick-bytes", type=int, default=6_000,
                    help="<domain>.quick.jsonl: the first test documents up to this much text (0: none)")
    args = ap.parse_args()
    domains = args.domains.split(",")
    for d in domains:
        if d not in DOMAINS:
            sys.exit(f"make_corpus: unknown domain {d} (known: {','.join(DOMAINS)})")
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {"seed": args.seed, "test_bytes": args.test_bytes, "cal_bytes": args.cal_bytes,
                "train_bytes": args.train_bytes, "format": "JSONL, one {\"text\": ...} per line",
                "recipe": "scripts/make_corpus.py", "domains": {}, "files": {}}
    for domain in domains:
        if domain == "code":
            root, pkgs = python_stdlib()
            files = code_files(root)
            groups = [[c for c in code_chunks(f) if usable(c)] for f in files]
            groups = [g for g in groups if g]
            source = root
        else:
            pkgs, _ = FORTUNE_DOMAINS[domain]
            files = fortune_files(domain)
            seen, docs = set(), []
            for f in files:
                for e in fortune_entries(f):
                    if usable(e) and e not in seen:
                        seen.add(e)
                        docs.append(e)
            groups = [[d] for d in docs]
            source = FORTUNES
        total = sum(len(d.encode()) for g in groups for d in g)
        splits = split_groups(groups, args.seed, domain, args.test_bytes, args.cal_bytes, args.train_bytes,
                              heldout_per_group=3 if domain == "code" else None)
        if args.quick_bytes:
            quick, size = [], 0
            for d in splits["test"]:
                if quick and size + len(d.encode()) > args.quick_bytes:
                    break
                quick.append(d)
                size += len(d.encode())
            splits["quick"] = quick
        manifest["domains"][domain] = {
            "packages": {p: dpkg_version(p) for p in pkgs}, "source": source,
            "source_files": [os.path.relpath(f, source) for f in files],
            "documents": sum(len(g) for g in groups), "bytes": total}
        for split, docs in splits.items():
            name = f"{domain}.{split}.jsonl"
            path = args.out / name
            with open(path, "w", encoding="utf-8") as fh:
                for d in docs:
                    fh.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
            manifest["files"][name] = {"domain": domain, "split": split, "documents": len(docs),
                                       "text_bytes": sum(len(d.encode()) for d in docs),
                                       "file_bytes": path.stat().st_size, "sha256": sha256(path)}
        print(f"{domain:5s} {len(files):4d} files {manifest['domains'][domain]['documents']:6d} docs "
              f"{total / 1e6:6.2f} MB -> " + " ".join(
                  f"{s} {len(splits[s])} docs/{manifest['files'][f'{domain}.{s}.jsonl']['text_bytes'] / 1e3:.0f} kB"
                  for s in ("train", "calibration", "test", "quick") if s in splits))
    with open(args.out / "manifest.json", "w") as fh:
        json.dump(manifest, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    if args.ship:
        args.ship.mkdir(parents=True, exist_ok=True)
        for name, info in manifest["files"].items():
            if info["split"] != "train":
                shutil.copyfile(args.out / name, args.ship / name)
        shutil.copyfile(args.out / "manifest.json", args.ship / "manifest.json")
        print(f"held-out splits and manifest copied to {args.ship}")


if __name__ == "__main__":
    main()
