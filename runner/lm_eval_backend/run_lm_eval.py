#!/usr/bin/env python3
"""lm-eval's command line with moelab registered as a model type (`--model moelab`): the
same arguments as `lm_eval` (python -m lm_eval), e.g.

  python3 runner/lm_eval_backend/run_lm_eval.py --model moelab \
      --model_args pretrained=models/debian-moe,moelab=build/runner/moelab,ranks=2 \
      --tasks arc_easy --include_path my_tasks/
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _model_type(argv):
    for i, a in enumerate(argv):
        if a == "--model" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--model="):
            return a.split("=", 1)[1]
    return None


# lm-eval imports its own model types (hf, vllm, ...) only while its registry is empty
# (lm_eval.api.registry.get_model); registering moelab first would hide them. Import them
# first for any other --model, and not at all for moelab's (they pull in transformers).
if _model_type(sys.argv[1:]) != "moelab":
    import lm_eval.models  # noqa: E402,F401
import moelab_lm  # noqa: E402,F401  (registers --model moelab)
from lm_eval.__main__ import cli_evaluate  # noqa: E402

if __name__ == "__main__":
    cli_evaluate()
