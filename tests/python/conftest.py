"""Shared pieces of the end-to-end tests: the moelab binary and the fixtures."""
import json
import os
import pathlib
import subprocess

import pytest
import shutil


@pytest.fixture(scope="session")
def moelab_bin():
    path = os.environ.get("MOELAB_BIN")
    if not path or not pathlib.Path(path).exists():
        pytest.fail("MOELAB_BIN must point at the moelab binary (run through ctest)")
    return path


@pytest.fixture(scope="session")
def fixtures():
    d = os.environ.get("MOELAB_FIXTURES")
    if not d:
        pytest.fail("MOELAB_FIXTURES must point at the built fixtures (run through ctest)")
    return pathlib.Path(d)


@pytest.fixture
def moelab(moelab_bin):
    """Runs `moelab ARGS...`; returns the CompletedProcess (text mode)."""

    def run(*args, check=True, cwd=None):
        proc = subprocess.run([moelab_bin, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd)
        if check and proc.returncode != 0:
            raise AssertionError(f"moelab {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    return run


def write_ids_json(path, input_ids, lengths):
    seqs = [input_ids[b, : int(n)].tolist() for b, n in enumerate(lengths)]
    path.write_text(json.dumps({"input_ids": seqs}))
    return path


def train_small_tokenizer(fixtures, out_dir):
    """A byte-level BPE trained on the fixture text, small enough (<= 512 ids) for the
    fixture models' vocabulary, saved as out_dir/tokenizer.json; returns it."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator([(fixtures / "tokenizers" / "multilingual.txt").read_text()],
                            trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], show_progress=False,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    assert tok.get_vocab_size() <= 512
    tok.save(str(out_dir / "tokenizer.json"))
    return tok


def mixtral_with_tokenizer(fixtures, out_dir):
    """The mixtral fixture copied to out_dir with train_small_tokenizer's tokenizer."""
    shutil.copytree(fixtures / "models" / "mixtral", out_dir)
    return out_dir, train_small_tokenizer(fixtures, out_dir)
