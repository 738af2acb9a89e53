"""`moelab tokenize` against the Python `tokenizers` library.

Runs the binary ($MOELAB_BIN) on the multilingual fixture text with every fixture
tokenizer ($MOELAB_toks/tokenizers, built by tests/fixtures/make_tokenizers.py) and
compares every id with `tokenizers.Tokenizer.from_file(...).encode(text)` computed here.
"""
import json
import pathlib
import subprocess

import pytest
from tokenizers import Tokenizer

STYLES = ["bytelevel", "gpt2style", "llama", "metaspace", "assorted"]


@pytest.fixture
def toks(fixtures):
    return fixtures / "tokenizers"


@pytest.fixture
def run_tokenize(moelab_bin):
    """Runs `moelab tokenize ARGS...` with bytes on stdin/stdout."""

    def run(*args, stdin=None):
        return subprocess.run([moelab_bin, "tokenize", *map(str, args)], input=stdin,
                              capture_output=True, timeout=300)

    return run


def text_of(path: pathlib.Path) -> str:
    # Bytes, not text mode: "\r\n" in the fixture must reach the tokenizer unchanged.
    return path.read_bytes().decode("utf-8")


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("special", [True, False], ids=["special", "no-special"])
def test_ids_match_tokenizers_library(style, special, toks, run_tokenize, tmp_path):
    text_file = toks / "multilingual.txt"
    out = tmp_path / "ids.json"
    args = ["--tokenizer", toks / style, "--input", text_file, "--output", out]
    if not special:
        args.append("--no-special-tokens")
    r = run_tokenize(*args)
    assert r.returncode == 0, r.stderr.decode()
    got = json.loads(out.read_text())["ids"]
    tok = Tokenizer.from_file(str(toks / style / "tokenizer.json"))
    want = tok.encode(text_of(text_file), add_special_tokens=special).ids
    assert len(got) == len(want)
    mismatch = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
    assert mismatch is None, f"first difference at id {mismatch}: {got[mismatch]} != {want[mismatch]}"


def test_stdin_and_stdout(toks, run_tokenize):
    text = "<|im_start|>user\nGrüße aus Zürich 👋 你好<|im_end|>\n"
    r = run_tokenize("--tokenizer", toks / "bytelevel" / "tokenizer.json", "--input", "-",
                     "--output", "-", stdin=text.encode("utf-8"))
    assert r.returncode == 0, r.stderr.decode()
    tok = Tokenizer.from_file(str(toks / "bytelevel" / "tokenizer.json"))
    assert json.loads(r.stdout)["ids"] == tok.encode(text).ids


def test_unsupported_tokenizer_is_a_one_line_error(toks, run_tokenize, tmp_path):
    bad = toks / "wordpiece" / "tokenizer.json"
    out = tmp_path / "ids.json"
    r = run_tokenize("--tokenizer", bad, "--input", toks / "multilingual.txt", "--output", out)
    assert r.returncode == 2  # moelab's exit status for an input error
    err = r.stderr.decode().strip()
    assert err.startswith("error: "), err
    assert "\n" not in err, err
    assert str(bad) in err and "model.type" in err and "WordPiece" in err, err
    assert not out.exists()


def test_malformed_tokenizer_json_is_a_one_line_error(toks, run_tokenize, tmp_path):
    good = (toks / "llama" / "tokenizer.json").read_bytes()
    bad = tmp_path / "tokenizer.json"
    bad.write_bytes(good[: len(good) // 2])  # truncated mid-file
    r = run_tokenize("--tokenizer", bad, "--input", toks / "multilingual.txt", "--output",
                     tmp_path / "ids.json")
    assert r.returncode == 2  # moelab's exit status for an input error
    err = r.stderr.decode().strip()
    assert err.startswith("error: "), err
    assert "\n" not in err, err
    assert str(bad) in err and "not valid JSON" in err, err


def test_invalid_utf8_input_names_the_input_file(toks, run_tokenize, tmp_path):
    text = tmp_path / "latin1.txt"
    text.write_bytes("Gr\u00fc\u00dfe".encode("latin-1"))
    r = run_tokenize("--tokenizer", toks / "llama", "--input", text, "--output", tmp_path / "o.json")
    assert r.returncode == 2  # moelab's exit status for an input error
    err = r.stderr.decode().strip()
    assert err.startswith("error: "), err
    assert "\n" not in err and str(text) in err and "UTF-8" in err, err
