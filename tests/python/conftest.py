"""Shared fixtures of the end-to-end tests: the moelab binary and the built fixtures (plain
helper functions are in helpers.py)."""
import os
import pathlib
import subprocess

import pytest


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

