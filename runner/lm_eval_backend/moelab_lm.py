"""moelab as an lm-evaluation-harness model type: `--model moelab`.

lm-eval (pinned 0.4.13, scripts/setup.sh) builds every request of a task itself (its YAMLs,
prompts, few-shot samplers and metrics); this class hands the requests to the `moelab`
binary, which scores them with its C++ runtime on any number of ranks, and returns what
lm-eval's own Hugging Face backend (HFLM) would:

- loglikelihood: `moelab eval --requests` (one JSON line per (context, continuation); the
  pair encoded as HFLM._encode_pair does, cut to max_length + 1 tokens from the left) ->
  (sum of the continuation's log-probabilities, whether greedy decoding gives it);
- loglikelihood_rolling: `moelab eval --data ... --windows lm-eval` (lm-eval's disjoint
  windows) -> the document's total log-likelihood;
- chat templates (`--apply_chat_template`): rendered by the model's Hugging Face tokenizer, as
  HFLM.apply_chat_template does; moelab encodes a string that starts with the BOS text without a
  second BOS (lm-eval's has_bos_prefix);
- generate_until: `moelab generate --requests` (greedy decoding; the stop strings with the
  tokenizer's end-of-sequence text added and the context cut from the left to max_length -
  max_gen_toks tokens, as HFLM.generate_until does) -> the continuation cut before the first
  stop string (lm-eval's postprocess_generated_text). Sampling (do_sample, temperature > 0)
  is refused with a message.

Model arguments (`--model_args`): pretrained (the checkpoint folder, required), moelab (the
binary; default $MOELAB_BIN, else `moelab` on PATH), ranks (MPI ranks, default 1),
max_length (default: moelab's default, the model's max_position_embeddings as HFLM),
batch_size (sequences per forward), add_bos_token (HFLM's: unset or true keeps the tokenizer's
special tokens, as `tokenizer.encode` does by default; false drops them, rolling requests only),
tokenizer (a tokenizer.json or folder other than the model's; a folder's chat template is the one
`--apply_chat_template` uses), dtype (moelab's --dtype),
compute_device (moelab's --device, e.g. cuda; lm-eval's own `device` argument, cuda:0 by default
in its CLI, is ignored so that a CPU run stays on the CPU).

Use: `python3 runner/lm_eval_backend/run_lm_eval.py --model moelab --model_args
pretrained=models/debian-moe --tasks ...` (the same arguments as `lm_eval`).
"""
import json
import os
import shutil
import subprocess
import tempfile

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model


def _truthy(v):
    return v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes")


@register_model("moelab")
class MoelabLM(LM):
    def __init__(self, pretrained, moelab=None, ranks=1, max_length=None, batch_size=8, add_bos_token=None,
                 tokenizer=None, dtype=None, compute_device=None, **unused):
        super().__init__()
        self.pretrained = str(pretrained)
        if not os.path.isfile(os.path.join(self.pretrained, "config.json")):
            raise ValueError(f"moelab: pretrained={self.pretrained!r} has no config.json")
        self.moelab = moelab or os.environ.get("MOELAB_BIN") or shutil.which("moelab")
        if not self.moelab or not os.access(self.moelab, os.X_OK):
            raise ValueError("moelab: the binary was not found (model_args moelab=PATH, or $MOELAB_BIN, or moelab on "
                             "PATH; scripts/build.sh builds build/runner/moelab)")
        self.ranks = int(ranks)
        self.max_length = int(max_length) if max_length not in (None, "", "None") else None
        # lm-eval passes its own batch_size ("auto" included) through additional_config.
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 8
        # HFLM (0.4.13): None -> tokenizer.encode's default (its special tokens, a BOS where the
        # tokenizer adds one), True -> the same, False -> none.
        self.add_bos_token = None if add_bos_token in (None, "", "None") else _truthy(add_bos_token)
        self.tokenizer_path = tokenizer
        self._hf_tokenizer = None
        self.dtype = dtype
        self.compute_device = compute_device

    # --- running moelab ---------------------------------------------------------------
    def _run(self, subcommand, out, *args):
        """`moelab SUBCOMMAND pretrained ARGS` with the model arguments every subcommand takes;
        the JSON lines it wrote to `out`. A failure raises with moelab's error lines."""
        cmd = [self.moelab, *(["--ranks", str(self.ranks)] if self.ranks > 1 else []), subcommand, self.pretrained,
               "--overwrite", "--batch-size", str(self.batch_size), *args]
        if self.tokenizer_path:
            cmd += ["--tokenizer", str(self.tokenizer_path)]
        if self.dtype:
            cmd += ["--dtype", str(self.dtype)]
        if self.compute_device:
            cmd += ["--device", str(self.compute_device)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")] or proc.stderr.splitlines()[-5:]
            raise RuntimeError(f"moelab {subcommand} failed (exit {proc.returncode}): " + " | ".join(lines))
        with open(out, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def _eval(self, workdir, *args):
        per_item = os.path.join(workdir, "per_item.jsonl")
        max_length = ["--max-length", str(self.max_length)] if self.max_length else []
        return self._run("eval", per_item, "--per-item", per_item, *max_length, *args)

    # --- the three request types --------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm=False):
        if not requests:
            return []
        if self.add_bos_token is False:
            raise NotImplementedError("moelab: add_bos_token=False is supported for loglikelihood_rolling only "
                                      "(moelab eval --requests encodes as HFLM's default does)")
        with tempfile.TemporaryDirectory(prefix="moelab-lm-eval-") as d:
            path = os.path.join(d, "requests.jsonl")
            with open(path, "w", encoding="utf-8") as f:
                for r in requests:
                    context, continuation = r.args
                    f.write(json.dumps({"context": context, "continuation": continuation}, ensure_ascii=False) + "\n")
            rows = [x for x in self._eval(d, "--requests", path) if x["kind"] == "loglikelihood"]
        rows.sort(key=lambda x: x["request"])
        if len(rows) != len(requests):
            raise RuntimeError(f"moelab returned {len(rows)} scores for {len(requests)} requests")
        out = [(float(x["loglik"]), bool(x["greedy"])) for x in rows]
        for r, o in zip(requests, out):
            self.cache_hook.add_partial("loglikelihood", r.args, o)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        if not requests:
            return []
        texts = [r.args[0] for r in requests]
        # An empty document scores nothing (HFLM: no windows, 0.0); moelab's document
        # reader skips blank ones, so only the others are sent, in order.
        sent = [i for i, t in enumerate(texts) if t != ""]
        out = [0.0] * len(texts)
        if sent:
            with tempfile.TemporaryDirectory(prefix="moelab-lm-eval-") as d:
                path = os.path.join(d, "docs.jsonl")
                with open(path, "w", encoding="utf-8") as f:
                    for i in sent:
                        f.write(json.dumps({"text": texts[i]}, ensure_ascii=False) + "\n")
                args = ["--data", f"docs:{path}", "--windows", "lm-eval"]
                if self.add_bos_token is not False:
                    args.append("--add-bos-token")
                rows = [x for x in self._eval(d, *args) if x["kind"] == "perplexity"]
            rows.sort(key=lambda x: x["document"])
            if len(rows) != len(sent):
                raise RuntimeError(f"moelab returned {len(rows)} documents for {len(sent)} sent")
            for i, x in zip(sent, rows):
                out[i] = -float(x["nll"])
        for r, o in zip(requests, out):
            self.cache_hook.add_partial("loglikelihood_rolling", r.args, o)
        return out

    def _eos_text(self):
        """HFLM's `eos`: the tokenizer's end-of-sequence token as text (tokenizer_config.json)."""
        path = os.path.join(self._tokenizer_folder(), "tokenizer_config.json")
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            eos = json.load(f).get("eos_token")
        return eos.get("content") if isinstance(eos, dict) else eos

    def _tokenizer_folder(self):
        tp = self.tokenizer_path
        return str(tp) if tp and os.path.isdir(str(tp)) else self.pretrained

    # --- chat templates (lm-eval --apply_chat_template), rendered as HFLM renders them ----
    @property
    def tokenizer(self):
        """The Hugging Face tokenizer, for its chat template only (moelab tokenizes in C++)."""
        if self._hf_tokenizer is None:
            from transformers import AutoTokenizer
            self._hf_tokenizer = AutoTokenizer.from_pretrained(self._tokenizer_folder())
        return self._hf_tokenizer

    @property
    def tokenizer_name(self):
        return self._tokenizer_folder().replace("/", "__")

    def chat_template(self, chat_template=False):
        from lm_eval.api.model import TemplateLM
        return TemplateLM.chat_template(self, chat_template)

    def apply_chat_template(self, chat_history, add_generation_prompt=True):
        """HFLM.apply_chat_template (0.4.13): the tokenizer's template, as text; a template that
        refuses a system turn gets the history without it. The rendered prompt usually starts
        with the BOS text, which moelab then encodes without a second BOS (has_bos_prefix)."""
        import jinja2
        kwargs = dict(tokenize=False, add_generation_prompt=add_generation_prompt,
                      continue_final_message=not add_generation_prompt)
        try:
            return self.tokenizer.apply_chat_template(chat_history, **kwargs)
        except jinja2.exceptions.TemplateError:
            return self.tokenizer.apply_chat_template([m for m in chat_history if m["role"] != "system"], **kwargs)

    def _model_max_length(self):
        """HFLM's max_length when none is given: the model's max_position_embeddings, else 2048."""
        if self.max_length:
            return self.max_length
        with open(os.path.join(self.pretrained, "config.json"), encoding="utf-8") as f:
            return int(json.load(f).get("max_position_embeddings") or 2048)

    def generate_until(self, requests, disable_tqdm=False):
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
        if not requests:
            return []
        eos = self._eos_text()
        lines, untils = [], []
        for r in requests:
            context, gen_kwargs = r.args
            kwargs = normalize_gen_kwargs(dict(gen_kwargs), 256)
            if kwargs.get("do_sample") or float(kwargs.get("temperature") or 0.0) > 0:
                raise NotImplementedError("moelab: only greedy generation (do_sample false, temperature 0) is "
                                          "implemented")
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            untils.append(until)
            lines.append({"context": context, "until": until, "max_gen_toks": int(kwargs.pop("max_gen_toks"))})
        with tempfile.TemporaryDirectory(prefix="moelab-lm-eval-") as d:
            path, out = os.path.join(d, "requests.jsonl"), os.path.join(d, "generated.jsonl")
            with open(path, "w", encoding="utf-8") as f:
                for line in lines:
                    f.write(json.dumps(line, ensure_ascii=False) + "\n")
            no_special = ["--no-special-tokens"] if self.add_bos_token is False else []
            rows = self._run("generate", out, "--requests", path, "--out", out, "--max-length",
                             str(self._model_max_length()), *no_special)
        rows.sort(key=lambda x: x["request"])
        if len(rows) != len(requests):
            raise RuntimeError(f"moelab returned {len(rows)} continuations for {len(requests)} requests")
        res = [postprocess_generated_text(generation=x["text"], stop=u, think_end_token=None)
               for x, u in zip(rows, untils)]
        for r, o in zip(requests, res):
            self.cache_hook.add_partial("generate_until", r.args, o)
        return res
