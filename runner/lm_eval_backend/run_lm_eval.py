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
import moelab_lm  # noqa: E402,F401  (registers --model moelab)
from lm_eval.__main__ import cli_evaluate  # noqa: E402

if __name__ == "__main__":
    cli_evaluate()
