"""lm-eval's own Hugging Face backend (`hf`, fp32, CPU) against moelab's (`moelab`,
runner/lm_eval_backend/moelab_lm.py) on the shipped model, side by side in one run (issue 24): the
same three tasks, each backend on each task in its own process (this script with --child: lm-eval's
model registry, TaskManager and simple_evaluate, as its command line does), one after the other.
Tasks are lm-eval YAMLs over local JSON files written to a temporary folder (nothing downloaded):

- `mc`: multiple_choice, the shipped debian_moe_<domain> items (configs/tasks, all 10 domains);
- `ppl`: loglikelihood_rolling (word/byte perplexity, bits per byte) over held-out documents
  (models/debian-moe/corpus/en.test.jsonl);
- `gen`: generate_until in GSM8K's shape (a prompt, stop strings, max_gen_toks 32, a regex filter
  taking the answer out of the generated text, exact_match): greedy continuation of debian_moe_en
  queries (the first half of a held-out document), its first word against the document's next.

Per run: the process's wall time and, inside it, the imports (lm-eval, torch, and the backend's
module: for hf, lm-eval's HF model code and transformers), the model's construction (`load`: HF
reads the checkpoint; moelab's backend only checks its arguments, each moelab process it starts
loads the model itself), simple_evaluate (`eval`: the task's dataset and requests, the backend's
work, metrics, lm-eval's environment record) and, within it, how long a moelab process was
running; the process tree's CPU time; and memory three ways:
- "tree": the largest sum of RSS over the run's live process tree, sampled every 0.1 s from /proc
  (for moelab: lm-eval's Python and the moelab processes it runs are alive at once; pages of the
  libtorch_cpu.so that both map count twice, so it is an upper bound);
- "largest process": os.wait4's ru_maxrss, the peak of the largest single process of the tree (the
  kernel keeps the maximum over every waited-for descendant: Python, `moelab`, mpirun and its
  ranks; a maximum, not a sum);
- "moelab processes": the largest sampled sum over `moelab` and `mpirun` processes alone.
A first run measures lm-eval alone (imports, the task folder, no model) and what the index of
lm-eval's own tasks, which its command line builds and this script skips, would add.
Each run starts when the machine is quiet and is repeated (--tries) if other processes took more
than --max-others CPU-seconds during it (the figure is printed per run: `others' cpu`).
Agreement is checked against `hf` at batch size 1 request by request (log_samples): the largest
difference of a log-likelihood, greedy flags, generated texts, and the metrics.

  python3 bench/lm_eval_backend.py --moelab build/runner/moelab [--json out.json]
  (--mc-items N, --ppl-docs N, --gen-items N, --tasks mc,ppl,gen, --configs hf1,hf8,moelab1,moelab2,
  --workdir DIR to keep the task files and logs)
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "debian-moe"

CONFIGS = {  # name -> (--model, extra model_args, --batch_size)
    "hf1": ("hf", "dtype=float32", 1),
    "hf8": ("hf", "dtype=float32", 8),
    "moelab1": ("moelab", "ranks=1", 8),
    "moelab2": ("moelab", "ranks=2", 8),
}
TASK_NAMES = {"mc": "bench_mc", "ppl": "bench_ppl", "gen": "bench_gen"}


def write_tasks(d, mc_items, ppl_docs, gen_items):
    """The three task YAMLs and their JSON-lines data in folder d."""
    items = []
    for f in sorted((REPO / "configs" / "tasks").glob("debian_moe_*.jsonl")):
        items += [json.loads(l) for l in f.read_text(encoding="utf-8").splitlines() if l.strip()]
    # Round-robin over the domains, so that a smaller --mc-items still covers every language.
    by_dom = {}
    for it in items:
        by_dom.setdefault(it["domain"], []).append(it)
    mixed = [x for group in zip(*by_dom.values()) for x in group]
    mixed += [it for it in items if it not in mixed]
    mc = mixed[:mc_items]
    (d / "mc.jsonl").write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in mc), encoding="utf-8")
    docs = [json.loads(l)["text"] for l in (MODEL / "corpus" / "en.test.jsonl").read_text(encoding="utf-8").splitlines()
            if l.strip()][:ppl_docs]
    (d / "ppl.jsonl").write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in docs),
                                 encoding="utf-8")
    en = [json.loads(l) for l in (REPO / "configs" / "tasks" / "debian_moe_en.jsonl").read_text(encoding="utf-8")
          .splitlines() if l.strip()][:gen_items]
    gen = [{"question": it["query"], "answer": it["choices"][it["gold"]].split()[0]} for it in en]
    (d / "gen.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in gen), encoding="utf-8")

    def data(name):
        return f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {d / name}\ntest_split: test\n"

    (d / "mc.yaml").write_text(f"""task: bench_mc
{data("mc.jsonl")}output_type: multiple_choice
doc_to_text: "{{{{query}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{gold}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
  - metric: acc_norm
""")
    (d / "ppl.yaml").write_text(f"""task: bench_ppl
{data("ppl.jsonl")}output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
""")
    (d / "gen.yaml").write_text(f"""task: bench_gen
{data("gen.jsonl")}output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
target_delimiter: ""
generation_kwargs:
  until: ["\\n\\n", "Question:"]
  max_gen_toks: 32
  do_sample: false
filter_list:
  - name: first_word
    filter:
      - function: regex
        regex_pattern: "\\\\S+"
        group_select: 0
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
""")
    return len(mc), len(docs), len(gen)


def _children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _rss_and_name(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return 0, ""
    rss, name = 0, ""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Name:"):
            name = line.split(None, 1)[1].strip() if len(line.split()) > 1 else ""
    return rss, name


class TreeSampler(threading.Thread):
    """Every `period` s, the sum of VmRSS over pid's live process tree (pid included): its peak,
    the peak of the same sum over the `moelab` and `mpirun` processes alone, and how long one of
    those was alive."""

    def __init__(self, pid, period=0.1):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak_kb, self.moelab_peak_kb, self.moelab_s, self.max_procs = 0, 0, 0.0, 0
        self.stop = threading.Event()

    def run(self):
        last = time.perf_counter()
        while not self.stop.is_set():
            todo, total, ml, seen, n = [(self.pid, None)], 0, 0, False, 0
            while todo:
                p, parent_name = todo.pop()
                rss, name = _rss_and_name(p)
                # A child with its parent's name is a fork not yet exec'd (lm-eval runs `git` for its
                # environment record): its pages are its parent's, not counted again.
                if name != parent_name:
                    total += rss
                    n += 1
                if name in ("moelab", "mpirun", "orterun"):
                    ml += rss if name != parent_name else 0
                    seen = True
                todo += [(c, name) for c in _children(p)]
            now = time.perf_counter()
            if seen:
                self.moelab_s += now - last
            last = now
            self.peak_kb, self.moelab_peak_kb = max(self.peak_kb, total), max(self.moelab_peak_kb, ml)
            self.max_procs = max(self.max_procs, n)
            self.stop.wait(self.period)


def _busy_s():
    """CPU seconds spent by the whole machine so far (every core; /proc/stat, idle and iowait excluded)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit_s=1800):
    """Until the machine's other work has stopped (under 1 CPU-s used in 10 s), at most limit_s;
    the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        b = _busy_s()
        time.sleep(10)
        if _busy_s() - b < 1.0:
            break
    return time.perf_counter() - t0


def child(spec_path):
    """One measured run, in its own process: lm-eval's pieces one after the other, each timed;
    writes its figures, lm-eval's results and samples to spec["out"]."""
    spec = json.loads(pathlib.Path(spec_path).read_text())
    times, t = {}, time.perf_counter()
    import resource

    import torch  # noqa: F401  (simple_evaluate imports it anyway, to seed it: counted as an import for both)
    from lm_eval import simple_evaluate
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager
    if spec["model"] == "hf":
        import lm_eval.models.huggingface  # noqa: F401  (registers hf)
    elif spec["model"] == "moelab":
        # Only moelab: once a model type is registered, lm-eval 0.4.13 no longer imports its own
        # (run_lm_eval.py --model hf fails for that reason).
        sys.path.insert(0, str(REPO / "runner" / "lm_eval_backend"))
        import moelab_lm  # noqa: F401
    times["import_s"], t = time.perf_counter() - t, time.perf_counter()
    out = {"times": times}
    if spec["model"] is None:  # the floor: lm-eval's imports, its task index
        tm = TaskManager(include_path=spec["tasks_dir"], include_defaults=False)
        times["tasks_s"], t = time.perf_counter() - t, time.perf_counter()
        out["floor_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tm = TaskManager(include_path=spec["tasks_dir"])  # what lm-eval's command line builds
        times["default_index_s"] = time.perf_counter() - t
        out["n_default_tasks"] = len(tm.all_tasks)
    else:
        lm = get_model(spec["model"]).create_from_arg_string(
            spec["model_args"], {"batch_size": spec["batch_size"], "device": "cpu"})
        times["load_s"], t = time.perf_counter() - t, time.perf_counter()
        # Only our task folder: lm-eval's command line also indexes its own ~thousands of tasks
        # (the same seconds for both backends; measured once in the floor run).
        tm = TaskManager(include_path=spec["tasks_dir"], include_defaults=False)
        times["tasks_s"], t = time.perf_counter() - t, time.perf_counter()
        res = simple_evaluate(model=lm, tasks=[spec["task"]], task_manager=tm, num_fewshot=0, log_samples=True,
                              batch_size=spec["batch_size"], device="cpu")
        times["eval_s"] = time.perf_counter() - t
        out["metrics"] = {k: v for k, v in res["results"][spec["task"]].items()
                          if "stderr" not in k and k != "sample_len" and isinstance(v, (int, float))}
        out["samples"] = [{"doc_id": x["doc_id"], "resps": x["resps"]}
                          for x in sorted(res["samples"][spec["task"]], key=lambda x: x["doc_id"])]
    pathlib.Path(spec["out"]).write_text(json.dumps(out, default=str))


def run_one(task, cfg, workdir, moelab, env):
    """`task` under configuration `cfg` (or the floor, cfg None) in a child process of this script;
    its wall time, CPU, memory and what the child wrote."""
    model, extra, batch = CONFIGS[cfg] if cfg else (None, "", 1)
    margs = f"pretrained={MODEL},{extra}" + (f",moelab={moelab}" if model == "moelab" else "")
    name = f"{task}-{cfg}" if cfg else "floor"
    spec = {"model": model, "model_args": margs, "batch_size": batch, "task": TASK_NAMES.get(task),
            "tasks_dir": str(workdir / "tasks"), "out": str(workdir / f"{name}.json")}
    (workdir / f"{name}.spec.json").write_text(json.dumps(spec))
    log = open(workdir / f"{name}.log", "w")
    busy0, t0 = _busy_s(), time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(workdir / f"{name}.spec.json")],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
    sampler = TreeSampler(proc.pid)
    sampler.start()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    # CPU time the machine spent outside this run (other users' work, and this script's sampler):
    # a run that shared its 2 cores with other work shows it here.
    others = _busy_s() - busy0 - ru.ru_utime - ru.ru_stime
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.stop.set()
    sampler.join()
    log.close()
    if proc.returncode != 0:
        tail = (workdir / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(f"{name} failed (exit {proc.returncode}); spec {spec}\n" + "\n".join(tail))
    got = json.loads((workdir / f"{name}.json").read_text())
    return {"task": task, "config": cfg, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "others_cpu_s": others,
            "max_proc_mb": ru.ru_maxrss / 1024, "tree_mb": sampler.peak_kb / 1024,
            "moelab_mb": sampler.moelab_peak_kb / 1024, "moelab_alive_s": sampler.moelab_s,
            "max_procs": sampler.max_procs, **got}


def compare(task, ref, got):
    """What differs between two runs of one task, request by request."""
    out = {"metric_max_rel_diff": 0.0, "ll_max_abs_diff": 0.0, "ll_max_rel_diff": 0.0, "greedy_mismatch": 0,
           "text_same": 0, "text_total": 0}
    for k, v in ref["metrics"].items():
        w = got["metrics"].get(k)
        if v != w:
            out["metric_max_rel_diff"] = max(out["metric_max_rel_diff"], abs(v - w) / max(1e-12, abs(v)))
    assert [x["doc_id"] for x in ref["samples"]] == [x["doc_id"] for x in got["samples"]]
    for a, b in zip(ref["samples"], got["samples"]):
        assert len(a["resps"]) == len(b["resps"])
        for x, y in zip(a["resps"], b["resps"]):  # one request each: [response]
            x, y = x[0], y[0]
            if task == "gen":
                out["text_total"] += 1
                out["text_same"] += x == y
                continue
            if task == "mc":  # (log-likelihood, greedy)
                (x, gx), (y, gy) = x, y
                out["greedy_mismatch"] += bool(gx) != bool(gy)
            x, y = float(x), float(y)
            out["ll_max_abs_diff"] = max(out["ll_max_abs_diff"], abs(x - y))
            out["ll_max_rel_diff"] = max(out["ll_max_rel_diff"], abs(x - y) / max(1.0, abs(x)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moelab", default=os.environ.get("MOELAB_BIN") or str(REPO / "build" / "runner" / "moelab"))
    ap.add_argument("--mc-items", type=int, default=398)
    ap.add_argument("--ppl-docs", type=int, default=267)
    ap.add_argument("--gen-items", type=int, default=16)
    ap.add_argument("--tasks", default="mc,ppl,gen")
    ap.add_argument("--configs", default="hf1,hf8,moelab1,moelab2")
    ap.add_argument("--max-others", type=float, default=5.0,
                    help="repeat a run during which other processes used more CPU-s than this")
    ap.add_argument("--tries", type=int, default=3)
    ap.add_argument("--workdir", help="keep the tasks, logs and lm-eval outputs in this (new) folder")
    ap.add_argument("--json", help="write every figure (without the samples) here")
    a = ap.parse_args()
    tasks, cfgs = a.tasks.split(","), a.configs.split(",")
    moelab = str(pathlib.Path(a.moelab).resolve())

    import lm_eval
    import torch
    import transformers

    with tempfile.TemporaryDirectory(prefix="bench-lm-eval-") as tmp:
        tmp = pathlib.Path(a.workdir or tmp)
        (tmp / "tasks").mkdir(parents=True)
        n_mc, n_ppl, n_gen = write_tasks(tmp / "tasks", a.mc_items, a.ppl_docs, a.gen_items)
        # A copy of the binary: the same one for every run, whatever a rebuild does meanwhile.
        shutil.copy2(moelab, tmp / "moelab")
        moelab = str(tmp / "moelab")
        env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   PMIX_MCA_psec="native", MOELAB_BIN=moelab, HF_DATASETS_CACHE=str(tmp / "hf-datasets"),
                   TOKENIZERS_PARALLELISM="false")
        # Datasets' Arrow cache, made once before the timed runs (otherwise the first run pays for it).
        warm = ("import datasets,sys\nfor f in sys.argv[1:]: datasets.load_dataset('json', data_files={'test': f})")
        subprocess.run([sys.executable, "-c", warm, *[str(tmp / "tasks" / f"{t}.jsonl") for t in tasks]],
                       check=True, env=env, capture_output=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
        print(f"lm-eval {lm_eval.__version__}, transformers {transformers.__version__}, torch {torch.__version__}, "
              f"Python {platform.python_version()}, {os.cpu_count()} cores, {datetime.date.today()}, commit {commit}")
        print(f"tasks: mc {n_mc} items ({4 * n_mc} loglikelihood requests), ppl {n_ppl} documents, "
              f"gen {n_gen} prompts x max 32 tokens; moelab {a.moelab} ({os.path.getsize(moelab) >> 20} MiB, "
              f"{datetime.datetime.fromtimestamp(os.path.getmtime(a.moelab)):%Y-%m-%d %H:%M})", flush=True)
        def measured(task, cfg):
            """run_one on a quiet machine: repeated (up to --tries times) while other processes took
            more than --max-others CPU-s during it; the last try counts and says how many there were."""
            for i in range(1, a.tries + 1):
                wait_quiet()
                r = run_one(task, cfg, tmp, moelab, env)
                r["tries"] = i
                if r["others_cpu_s"] <= a.max_others:
                    break
                print(f"  ({task} {cfg}: other processes took {r['others_cpu_s']:.1f} CPU-s during try {i})",
                      flush=True)
            return r

        floor = measured(None, None)
        print(f"lm-eval alone (imports, task folder; no model): wall {floor['wall_s']:.1f} s, peak "
              f"{floor['floor_rss_mb']:.0f} MB; the command line's index of lm-eval's own "
              f"{floor['n_default_tasks']} tasks adds {floor['times']['default_index_s']:.1f} s "
              f"(peak then {floor['max_proc_mb']:.0f} MB); others' cpu {floor['others_cpu_s']:.1f} s", flush=True)
        runs = []
        for task in tasks:
            for cfg in cfgs:
                r = measured(task, cfg)
                runs.append(r)
                t = r["times"]
                print(f"  {task:4s} {cfg:8s} wall {r['wall_s']:6.1f} s (import {t['import_s']:.1f}, "
                      f"load {t['load_s']:.1f}, eval {t['eval_s']:.1f}; moelab running {r['moelab_alive_s']:.1f})  "
                      f"cpu {r['cpu_s']:.1f} s  peak MB: largest process {r['max_proc_mb']:.0f}, tree "
                      f"{r['tree_mb']:.0f}, moelab processes {r['moelab_mb']:.0f} ({r['max_procs']} processes)  "
                      f"others' cpu {r['others_cpu_s']:.1f} s  "
                      + "  ".join(f"{k}={v:.6g}" for k, v in r["metrics"].items()), flush=True)

    print("\n| task | backend | wall s | imports + load s | eval s | moelab running s | CPU s | largest process MB "
          "| tree MB | moelab processes MB | metrics | against hf, batch 1 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in runs:
        ref = next((x for x in runs if x["task"] == r["task"] and x["config"] == "hf1"), None)
        if ref is None or ref is r:
            agree = "reference" if ref is r else "-"
        else:
            c = compare(r["task"], ref, r)
            r["agreement"] = c
            if c["text_total"]:
                agree = f"{c['text_same']}/{c['text_total']} texts equal"
            else:
                agree = f"log-likelihoods within {c['ll_max_abs_diff']:.1e} (rel {c['ll_max_rel_diff']:.1e})"
                if r["task"] == "mc":
                    agree += f", greedy flags differing {c['greedy_mismatch']}"
            agree += f"; metrics rel diff {c['metric_max_rel_diff']:.1e}"
        model, extra, batch = CONFIGS[r["config"]]
        ml = model == "moelab"
        name = f"{model}, batch {batch}" + (f", {extra.replace('=', ' ')}" if ml else "")
        metrics = ", ".join(f"{k.split(',')[0]} {v:.6g}" for k, v in r["metrics"].items())
        t = r["times"]
        running, ml_mb = (f"{r['moelab_alive_s']:.1f}", f"{r['moelab_mb']:.0f}") if ml else ("-", "-")
        print(f"| {r['task']} | {name} | {r['wall_s']:.1f} | {t['import_s'] + t['load_s']:.1f} | {t['eval_s']:.1f} | "
              f"{running} | {r['cpu_s']:.1f} | {r['max_proc_mb']:.0f} | {r['tree_mb']:.0f} | {ml_mb} | {metrics} | "
              f"{agree} |")
    worst = max([floor] + runs, key=lambda r: r["others_cpu_s"])
    print(f"\nlargest CPU time spent outside the measured runs during one: {worst['others_cpu_s']:.1f} s "
          f"({worst['task']} {worst['config']}); runs repeated because of other work: "
          f"{sum(r['tries'] - 1 for r in [floor] + runs)}")
    if a.json:
        for r in runs:
            r.pop("samples")
        pathlib.Path(a.json).write_text(json.dumps({"floor": floor, "runs": runs}, indent=1, default=float))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
