"""What a new user reads must be true: every shipped sweep spec plans, every example in
`moelab --help` and each subcommand's --help (and every command block of the README) names
only paths that exist in the repository or that an example before it creates, and no script
pipes into a reader that may stop early under pipefail (the quickstart once died with 141)."""
import json
import pathlib
import re
import shlex
import subprocess

import pytest
import yaml

from helpers import REPO

# Options whose value is a file or folder the command writes.
OUTPUT_OPTIONS = {"--out", "--output", "--results", "--plan-out", "--per-item", "--checkpoint-dir", "--log-file",
                  "--json", "--search-state"}
# Options of the main program that take a value (before the subcommand).
GLOBAL_VALUE_OPTIONS = {"--ranks", "--log-level", "--config"}
PATH_SUFFIX = re.compile(r"\.(jsonl?|h5|txt|ya?ml|safetensors|csv|tex|md|html|png|sh)$")
# Commands whose first positional argument is a path (a model, a spec, a results folder).
PATH_POSITIONAL = {"inspect", "forward", "prune", "calibrate", "eval", "lm-eval", "generate", "merge", "set-skipping", "compress", "finetune",
                   "plan-resources", "status", "report", "submit"}


def path_like(value):
    return "/" in value or bool(PATH_SUFFIX.search(value))


def normal(p):
    return str(pathlib.PurePosixPath(p))


class PathChecker:
    """Follows a sequence of example commands; remembers what each creates."""

    def __init__(self, where):
        self.where = where
        self.created = set()
        self.problems = []
        self.commands = 0

    def exists(self, p):
        p = normal(p)
        if any(p == c or p.startswith(c + "/") for c in self.created):
            return True
        if p.startswith("build/"):  # scripts/build.sh makes it
            return True
        return (REPO / p).exists()

    def need(self, value, line):
        if value in ("-", "") or value.startswith("$"):
            return
        if ":" in value and "/" not in value.split(":", 1)[0]:  # DOMAIN:PATH
            value = value.split(":", 1)[1]
        if not self.exists(value):
            self.problems.append(f"{self.where}: `{line}` names {value}, which does not exist")

    def command(self, line):
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as e:
            self.problems.append(f"{self.where}: `{line}`: {e}")
            return
        segments, seg = [], []
        for t in tokens:
            if t in ("|", "&&", ";"):
                segments.append(seg)
                seg = []
            else:
                seg.append(t)
        segments.append(seg)
        for seg in segments:
            self.segment(seg, line)

    def segment(self, seg, line):
        idx = next((i for i, t in enumerate(seg) if t == "moelab" or t.endswith("/moelab")), None)
        if idx is None:
            if seg and "/" in seg[0] and not seg[0].startswith("/"):  # a script of the repository
                self.need(seg[0], line)
            return
        self.commands += 1
        args = seg[idx + 1:]
        i = 0
        while i < len(args) and args[i].startswith("-"):  # the main program's options
            opt = args[i].split("=", 1)[0]
            if "=" not in args[i] and opt in GLOBAL_VALUE_OPTIONS and i + 1 < len(args):
                if opt == "--config":
                    self.need(args[i + 1], line)
                i += 1
            i += 1
        if i >= len(args):
            return
        command = args[i]
        i += 1
        if command == "sweep" and i < len(args):
            i += 1  # plan | run
        first_positional = command in PATH_POSITIONAL or command == "sweep"
        while i < len(args):
            t = args[i]
            if t.startswith("["):  # an optional part of a synopsis
                i += 1
                continue
            if t.startswith("--") or re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*=", t):
                opt, eq, value = t.partition("=")
                if not opt.startswith("--"):
                    opt = "--" + opt.replace("_", "-")
                if not eq:
                    if i + 1 < len(args) and not args[i + 1].startswith("-"):
                        value = args[i + 1]
                        i += 1
                    else:
                        value = ""
                if opt in OUTPUT_OPTIONS and value and path_like(value):
                    self.created.add(normal(value))
                elif value and path_like(value):
                    self.need(value, line)
            elif first_positional:
                self.need(t, line)
                first_positional = False
            elif path_like(t):
                self.need(t, line)
            i += 1


def example_lines(help_text):
    """The example command lines of a --help text: in its description (before the option
    lists), lines indented by two spaces that start with `moelab` (or `mpirun ... moelab`,
    `cat ... | moelab`); continuation lines (after a trailing backslash) joined."""
    description = re.split(r"^(?:Usage|Options|OPTIONS|Positionals|POSITIONALS|Subcommands|SUBCOMMANDS):", help_text,
                           maxsplit=1, flags=re.M)[0]
    out = []
    for raw in description.splitlines():
        s = raw.strip()
        if out and out[-1].endswith("\\"):
            out[-1] = out[-1][:-1] + " " + s
        elif re.match(r"^  (mpirun .*?)?moelab\s|^  cat .*\|\s*moelab\s", raw):
            out.append(s)
    return out


def subcommands(moelab):
    text = moelab("--help").stdout
    section = re.split(r"^(?:Subcommands|SUBCOMMANDS):", text, maxsplit=1, flags=re.M)[1]
    return [m.group(1) for m in re.finditer(r"^  ([a-z][a-z-]+)\s{2,}", section, re.M)]


def help_pages(moelab):
    pages = {"moelab --help": moelab("--help").stdout}
    for sub in subcommands(moelab):
        pages[f"moelab {sub} --help"] = moelab(sub, "--help").stdout
        if sub == "sweep":
            for verb in ("plan", "run"):
                pages[f"moelab sweep {verb} --help"] = moelab("sweep", verb, "--help").stdout
    return pages


def check_pages(pages):
    problems, commands = [], 0
    for where, text in pages.items():
        checker = PathChecker(where)
        for line in example_lines(text):
            checker.command(line)
        problems += checker.problems
        commands += checker.commands
    return problems, commands


def test_every_help_example_names_only_existing_or_created_paths(moelab):
    pages = help_pages(moelab)
    assert len(pages) >= 18, sorted(pages)
    problems, commands = check_pages(pages)
    assert not problems, "\n".join(problems)
    assert commands >= 60, commands  # the examples were found (a parser that finds none proves nothing)
    for where, text in pages.items():
        if where not in ("moelab sweep --help",):
            assert example_lines(text), f"{where} has no examples"


def test_the_checker_fails_on_a_stale_example(moelab):
    """The check itself: the old --help (models/tiny-mixtral, never shipped) and an example
    naming a removed file are caught; an output of an earlier example is accepted."""
    stale = {"old main help": "Examples:\n  moelab inspect models/tiny-mixtral\n"
                              "  moelab forward models/tiny-mixtral --text 'Hello world' --top 5\n"}
    problems, _ = check_pages(stale)
    assert len(problems) == 2 and "models/tiny-mixtral" in problems[0]
    removed = {"eval": "Examples:\n  moelab eval models/debian-moe --task configs/tasks/removed_task.jsonl\n"}
    assert len(check_pages(removed)[0]) == 1
    chained = {"prune": "Examples:\n  moelab calibrate models/debian-moe --data "
                        "models/debian-moe/corpus/en.calibration.jsonl --out stats.h5\n"
                        "  moelab score --stats stats.h5 --model models/debian-moe --out scores.json\n"
                        "  moelab prune models/debian-moe --scores scores.json --out pruned/\n"
                        "  moelab eval pruned/ --data models/debian-moe/corpus/en.test.jsonl\n"}
    assert check_pages(chained) == ([], 4)
    used_before_created = {"x": "Examples:\n  moelab eval pruned/ --data x.txt\n  moelab prune m --out pruned/\n"}
    assert len(check_pages(used_before_created)[0]) == 3  # pruned/, x.txt, m


def readme_command_lines(path):
    text = path.read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for raw in block.splitlines():
            s = raw.strip()
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1] + " " + s
            elif s and not s.startswith("#"):
                lines.append(s)
    return lines


@pytest.mark.parametrize("doc", ["README.md", "configs/paper/README.md", "configs/tasks/README.md", "configs/shapes/README.md"])
def test_readme_command_blocks_name_only_existing_or_created_paths(doc):
    checker = PathChecker(doc)
    for line in readme_command_lines(REPO / doc):
        checker.command(line)
    assert not checker.problems, "\n".join(checker.problems)
    assert checker.commands >= 1


def test_the_readme_opening_and_main_help_name_every_supported_family(moelab):
    """Both once described a smaller tool (two families; 'the roadmap (see the issues)' for
    capabilities long shipped): each family of the README's table must be named in both."""
    text = (REPO / "README.md").read_text()
    table = text.split("## Supported models", 1)[1].split("\n\n", 2)[1]
    families = [row.split("|")[1].strip() for row in table.splitlines()[2:] if row.startswith("|")]
    assert len(families) >= 7, families
    opening = text.split("## ", 1)[0]
    main_help = moelab("--help").stdout.split("Usage:", 1)[0]
    for f in families:
        assert f in opening, f"the README's opening does not name {f}"
        assert f in main_help, f"moelab --help does not name {f}"
    assert "roadmap" not in opening


def shipped_sweep_specs():
    specs = []
    for p in sorted((REPO / "configs").rglob("*.yaml")):
        doc = yaml.safe_load(p.read_text())
        if isinstance(doc, dict) and "criteria" in doc and "model" in doc:
            specs.append(p)
    return specs


def lay_out_site(spec_path, tmp_path, fixtures):
    """A copy of a spec whose paths under site/ (the Slurm spec's site-specific data, as its
    README lays it out) exist: the model a fixture Mixtral, data and tasks small files."""
    spec = yaml.safe_load(spec_path.read_text())
    copy = tmp_path / spec_path.name
    site_paths = set()

    def walk(v):
        if isinstance(v, str) and v.startswith("site/"):
            site_paths.add(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(spec)
    for rel in site_paths:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if rel == spec["model"]:
            p.symlink_to(fixtures / "models" / "mixtral")
        elif "/tasks/" in rel:
            p.write_text((REPO / "configs" / "tasks" / "tiny_arith.jsonl").read_text())
        else:
            p.write_text('{"text": "hello"}\n')
    text = spec_path.read_text()
    copy.write_text(text)
    return copy


def test_every_shipped_sweep_spec_plans(moelab, fixtures, tmp_path):
    specs = shipped_sweep_specs()
    names = {s.relative_to(REPO).as_posix() for s in specs}
    assert {"configs/quickstart.yaml", "configs/newer_criteria.yaml", "configs/paper/small-tables1-2.yaml",
            "configs/paper/mixtral-8x7b-tables1-2.yaml"} <= names
    for spec in specs:
        path = spec
        if "site/" in spec.read_text():
            (tmp_path / spec.stem).mkdir()
            path = lay_out_site(spec, tmp_path / spec.stem, fixtures)
        out = moelab("sweep", "plan", path, check=False)
        assert out.returncode == 0, f"{spec.relative_to(REPO)}: {out.stderr.strip()}"
        assert "jobs" in out.stdout.splitlines()[0], out.stdout[:300]


def test_the_options_file_of_the_help_runs(moelab_bin, tmp_path):
    """`moelab prune --config configs/options/prune.yaml out=...` (the main --help's example),
    from the repository's root as the file says."""
    out = tmp_path / "pruned"
    r = subprocess.run([moelab_bin, "prune", "--config", "configs/options/prune.yaml", f"out={out}"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["moelab_num_experts_per_layer"][:2] == [6, 7]


SHELL_FILES = sorted([*REPO.glob("scripts/*.sh"), *REPO.glob("slurm/*.sh"), *REPO.glob("slurm/*.in"),
                      REPO / ".ci" / "run", *REPO.glob("tests/**/*.sh")])
EARLY_EXIT_READER = re.compile(r"\|\s*(head\b|grep\s+(-\w*[qm]\w*|--quiet|--max-count))")


def test_no_script_pipes_into_a_reader_that_stops_early_under_pipefail():
    """`cmd | head -1` under `set -o pipefail`: head exits, cmd gets SIGPIPE (141), and set -e
    ends the script, depending on timing (the quickstart died this way after `sweep plan`)."""
    assert len(SHELL_FILES) >= 8
    bad = []
    for f in SHELL_FILES:
        text = f.read_text()
        if "pipefail" not in text:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
            if EARLY_EXIT_READER.search(code):
                bad.append(f"{f.relative_to(REPO)}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_the_pipefail_check_catches_the_quickstart_of_4d01ac3(tmp_path):
    old = "set -euo pipefail\n$MOELAB sweep plan configs/quickstart.yaml | head -1\n"
    assert EARLY_EXIT_READER.search(old.splitlines()[1])
    # and the failure is real: a writer that outlives head's exit fails the script with 141
    script = tmp_path / "s.sh"
    script.write_text("set -euo pipefail\nyes | head -1\necho reached\n")
    r = subprocess.run(["bash", script], capture_output=True, text=True, timeout=30)
    assert r.returncode == 141 and "reached" not in r.stdout


def test_the_small_paper_spec_runs_on_the_default_model(moelab, tmp_path):
    """configs/paper/small-tables1-2.yaml as shipped (model, corpus, tasks, Lottery and
    resources), narrowed to two of its criteria (an activation one and a gradient one) at one
    ratio so that a test can run every procedure it lists, Lottery included: all jobs finish
    and the report has its tables."""
    from sweep_fixtures import plan, records
    paper = REPO / "configs" / "paper"
    spec = yaml.safe_load((paper / "small-tables1-2.yaml").read_text())
    assert len(spec["criteria"]) == 32 and spec["procedures"] == ["one-shot", "iterative", "lottery"]

    def absolute(v):
        if isinstance(v, str) and (v.startswith("../") or v.endswith(".jsonl")):
            return str((paper / v).resolve())
        if isinstance(v, list):
            return [absolute(x) for x in v]
        if isinstance(v, dict):
            return {k: absolute(x) for k, x in v.items()}
        return v

    spec = absolute(spec)
    spec["criteria"] = ["Min-EAN", "Max-EGN"]
    spec["ratios"] = [0.25]
    spec["calibration"][0]["num_samples"] = 8
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(spec))
    results = tmp_path / "results"
    moelab("sweep", "run", tmp_path / "small.yaml", "--results", results, "--jobs", "2")
    recs = records(results)
    assert recs and all(r["state"] == "done" for r in recs.values())
    prunes = [j for j in plan(results)["jobs"] if j["kind"] == "prune"]
    assert {j["tags"]["procedure"] for j in prunes} == {"one-shot", "iterative", "lottery"} and len(prunes) == 6
    moelab("report", results)
    assert "lottery" in (results / "report" / "report.md").read_text().lower()
