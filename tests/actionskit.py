"""Run one job of a GitHub Actions workflow on this machine, step by step, as a GitHub runner would.

    job = Job(workflow=str(repo / ".github/workflows/orch.yml"), event_name="issues", event=payload,
              workspace=str(tmp / "runner/work"), runner=str(tmp / "runner"), repository="acme/widgets",
              machine=Machine(python=sys.executable, pip_find_links=[wheelhouse], github_url=gh.api_url,
                              clone_url=gh.git_url("acme", "widgets")),
              secrets={"GITHUB_TOKEN": "...", "OPENAI_API_KEY": "..."})
    result = run_job(job)          # or: python tests/actionskit.py job.json (a process a test may kill)
    result.step("Run eligible issues once").exit_code

What is real: the workflow file as written, its `if:` conditions and `${{ }}` expressions (evaluated here; anything
this evaluator does not know fails the run, so the workflow cannot grow something unproven), `run:` steps under
`bash -e` (GitHub's default shell on Linux) with the job's and the step's environment, in order, and git, pip, the
agent CLI and orch themselves. What is substituted, each documented where it is done:

- `uses:` steps get their documented effect (USES below); an action or an input not listed there fails the run.
- Commands that need the internet, root or Ubuntu are PATH shims (SHIMS below): sudo, apt-get, sysctl, npm.
- The runner's machine environment (`Machine`): where pip finds packages (an offline wheelhouse instead of PyPI),
  where GitHub is (GITHUB_SERVER_URL/GITHUB_API_URL name the emulator), and which interpreter setup-python uses.

Every step runs in a process group of its own. In process, ``run_job(job, on_step_start=...)`` calls
``on_step_start(step, proc)`` as each `run:` step starts, and ``run_job(job, before_step=...)`` calls
``before_step(step)`` before each step that will run starts (a test may hold a step there until it is ready). As a
process, ``python tests/actionskit.py job.json`` (``job_to_json`` writes one) appends a JSON line per event to
``<runner>/steps.jsonl`` as it happens (job-started, step-started, step-process with the step's pid = its process
group id, step-finished or step-skipped, job-finished) and writes ``<runner>/result.json`` at the end. To lose the
runner half-way, SIGKILL the kit's and the step's process groups (note: `orch daemon` starts each `orch run` in a
session of its own, as on a runner, where the runner's own cleanup would stop them). SIGTERM or SIGINT to the kit is
GitHub's cancellation: the running step's group gets SIGINT, then SIGTERM 7.5 s later, then SIGKILL 2.5 s after that;
then only steps whose `if:` uses always() (or cancelled()) run, to their end unless the job is cancelled again.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
NODE_PREFIX = ROOT / ".ci" / "node"  # where .ci/run installs the pinned npm packages


class Unproven(AssertionError):
    """The workflow uses something this kit cannot run faithfully: the test fails rather than guess."""


# --- expressions ----------------------------------------------------------------------------------------------------
# GitHub's expression language (docs: "Evaluate expressions in workflows and actions"), the part the workflow uses:
# literals, context property paths, ! == != && || and parentheses, contains(), fromJSON(), and the status functions.

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<str>'(?:[^']|'')*')
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<op>\|\||&&|==|!=|<=|>=|<|>|!|\(|\)|,)
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_*][A-Za-z0-9_-]*)*)
)""",
    re.X,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unproven(f"expression {text!r}: cannot read from {text[pos:]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def truthy(v: Any) -> bool:
    return not (v is None or v is False or v == 0 or v == "" or (isinstance(v, float) and v != v))


def _number(v: Any) -> float:
    if v is None or v is False:
        return 0.0
    if v is True:
        return 1.0
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip() or 0)
        except ValueError:
            return float("nan")
    return float("nan")


def _equal(a: Any, b: Any) -> bool:
    """GitHub's ==: strings compare case-insensitively; different primitive types compare as numbers."""
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return a is b
    if type(a) is type(b):
        return bool(a == b)
    return _number(a) == _number(b)


def to_string(v: Any) -> str:
    """How a value is written into a string (`${{ }}` in env, with, run)."""
    if v is None:
        return ""
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (dict, list)):
        return json.dumps(v, indent=2)
    return str(v)


@dataclass
class Status:
    """The job's status as the status functions see it."""

    failed: bool = False
    cancelled: bool = False


class Evaluator:
    """Evaluates one expression against the contexts; raises Unproven on anything it does not know."""

    CONTEXTS = ("github", "env", "secrets", "steps", "runner", "job", "vars")

    def __init__(self, contexts: dict[str, Any], status: Status | None = None) -> None:
        self.contexts = contexts
        self.status = status or Status()
        self.used_status_function = False

    def evaluate(self, text: str) -> Any:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        value = self._or()
        if self.i != len(self.toks):
            raise Unproven(f"expression {text!r}: unexpected {self.toks[self.i][1]!r}")
        return value

    def _peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def _take(self, want: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise Unproven(f"expression {self.text!r}: ends early")
        tok = self.toks[self.i]
        if want is not None and tok[1] != want:
            raise Unproven(f"expression {self.text!r}: expected {want!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def _or(self) -> Any:
        left = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            left = left if truthy(left) else right
        return left

    def _and(self) -> Any:
        left = self._cmp()
        while self._peek() == "&&":
            self._take()
            right = self._cmp()
            left = right if truthy(left) else left
        return left

    def _cmp(self) -> Any:
        left = self._unary()
        while self._peek() in ("==", "!="):
            op = self._take()[1]
            right = self._unary()
            left = _equal(left, right) if op == "==" else not _equal(left, right)
        if self._peek() in ("<", ">", "<=", ">="):
            raise Unproven(f"expression {self.text!r}: ordering comparisons are not supported by the kit")
        return left

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not truthy(self._unary())
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self._take()
        if text == "(":
            value = self._or()
            self._take(")")
            return value
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text)
        if kind != "name":
            raise Unproven(f"expression {self.text!r}: unexpected {text!r}")
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if self._peek() == "(":
            return self._call(text)
        root, *path = text.split(".")
        if root not in self.CONTEXTS or root not in self.contexts:
            raise Unproven(f"expression {self.text!r}: context {root!r} is not available in the kit")
        if "*" in path:
            raise Unproven(f"expression {self.text!r}: object filters are not supported by the kit")
        value = self.contexts[root]
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if root == "secrets" and value is None:
            return ""  # an unset secret reads as the empty string
        return value

    def _call(self, name: str) -> Any:
        self._take("(")
        args = []
        while self._peek() != ")":
            args.append(self._or())
            if self._peek() == ",":
                self._take()
        self._take(")")
        if name in ("always", "success", "failure", "cancelled") and args:
            raise Unproven(f"expression {self.text!r}: {name}() takes no arguments")
        if name == "always":
            self.used_status_function = True
            return True
        if name == "success":
            self.used_status_function = True
            return not self.status.failed and not self.status.cancelled
        if name == "failure":
            self.used_status_function = True
            return self.status.failed
        if name == "cancelled":
            self.used_status_function = True
            return self.status.cancelled
        if name == "fromJSON" and len(args) == 1:
            return json.loads(to_string(args[0]))
        if name == "contains" and len(args) == 2:
            hay, needle = args
            if isinstance(hay, list):
                return any(_equal(item, needle) for item in hay)
            return to_string(needle).casefold() in to_string(hay).casefold()
        raise Unproven(f"expression {self.text!r}: function {name}() with {len(args)} argument(s) is not supported")


_EMBEDDED = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def interpolate(text: Any, contexts: dict[str, Any]) -> str:
    """A string with `${{ expr }}` parts, each replaced by its value written as a string."""
    if not isinstance(text, str):
        return to_string(text)
    return _EMBEDDED.sub(lambda m: to_string(Evaluator(contexts).evaluate(m.group(1))), text)


def condition(text: Any, contexts: dict[str, Any], status: Status, step: bool) -> bool:
    """An `if:` value (with or without `${{ }}`); a step's condition without a status function means success() && ..."""
    if text is None:
        return not status.failed and not status.cancelled if step else True
    text = str(text).strip()
    m = re.fullmatch(r"\$\{\{(.*)\}\}", text, re.S)
    if m:
        text = m.group(1)
    ev = Evaluator(contexts, status)
    value = truthy(ev.evaluate(text))
    if step and not ev.used_status_function:
        value = value and not status.failed and not status.cancelled
    if not step and not ev.used_status_function:
        value = value and not status.cancelled
    return value


def precheck(node: Any, contexts: dict[str, Any], key: str = "") -> None:
    """Evaluate every expression in the workflow once, whether or not its step will run: one the kit cannot
    evaluate fails now, not only on the day a skipped step starts to run."""
    if isinstance(node, dict):
        for k, v in node.items():
            precheck(v, contexts, str(k))
    elif isinstance(node, list):
        for v in node:
            precheck(v, contexts, key)
    elif isinstance(node, str):
        if key == "if":
            condition(node, contexts, Status(), step=True)
        else:
            interpolate(node, contexts)


# --- the machine ----------------------------------------------------------------------------------------------------

SHIMS = {
    # sudo: nothing here needs root. Each command the workflow runs with sudo is itself a shim below (or runs
    # unprivileged), so sudo runs the rest of its command line as it is.
    "sudo": """#!/bin/bash
echo "sudo $*" >> "$ACTIONSKIT_SHIM_LOG"
exec "$@"
""",
    # apt-get: no network and not Ubuntu. `update` is a no-op; `install` succeeds only when every requested package
    # is already installed on this machine (dpkg -s), so the workflow cannot rely on a package the test lacks.
    "apt-get": """#!/bin/bash
echo "apt-get $*" >> "$ACTIONSKIT_SHIM_LOG"
case "$1" in
  update) exit 0 ;;
  install)
    shift
    for arg in "$@"; do
      case "$arg" in
        -y|-q|--yes|--quiet|--no-install-recommends) ;;
        -*) echo "apt-get shim: option $arg is not supported" >&2; exit 100 ;;
        *) dpkg -s "$arg" >/dev/null 2>&1 || { echo "apt-get shim: $arg is not installed on this machine" >&2; exit 100; } ;;
      esac
    done
    exit 0 ;;
  *) echo "apt-get shim: only update and install are supported, not: $*" >&2; exit 100 ;;
esac
""",
    # sysctl: Debian has no kernel.apparmor_restrict_unprivileged_userns (an Ubuntu 24.04 AppArmor knob). Exactly the
    # write that lifts it is accepted (bubblewrap then works here as it will on the runner); anything else fails.
    "sysctl": """#!/bin/bash
echo "sysctl $*" >> "$ACTIONSKIT_SHIM_LOG"
if [ "$*" = "-w kernel.apparmor_restrict_unprivileged_userns=0" ]; then
  echo "kernel.apparmor_restrict_unprivileged_userns = 0"
  exit 0
fi
echo "sysctl shim: only '-w kernel.apparmor_restrict_unprivileged_userns=0' is accepted, not: $*" >&2
exit 255
""",
    # npm: no network. `npm install -g PKG@VERSION` succeeds only when PKG is installed at exactly VERSION in .ci/node
    # (what .ci/run installs); its executables are linked into the runner's global bin folder, which is on PATH.
    "npm": """#!{python}
import json, os, sys
from pathlib import Path
with open(os.environ["ACTIONSKIT_SHIM_LOG"], "a") as log:
    log.write("npm " + " ".join(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if len(args) < 3 or args[:2] != ["install", "-g"] or any(a.startswith("-") for a in args[2:]):
    sys.exit(f"npm shim: only `npm install -g PKG@VERSION ...` is supported, not: npm {' '.join(args)}")
prefix, bindir = Path(os.environ["ACTIONSKIT_NODE_PREFIX"]), Path(os.environ["ACTIONSKIT_NPM_BIN"])
for spec in args[2:]:
    name, at, version = spec.rpartition("@")
    if not at or not name or not version:
        sys.exit(f"npm shim: {spec} is not pinned to a version")
    meta = prefix / "node_modules" / name / "package.json"
    if not meta.is_file():
        sys.exit(f"npm shim: {name} is not installed in {prefix} (see .ci/run)")
    data = json.loads(meta.read_text())
    if data["version"] != version:
        sys.exit(f"npm shim: {spec} requested, but {prefix} has {name}@{data['version']}")
    bins = data.get("bin") or {}
    bins = {name.split("/")[-1]: bins} if isinstance(bins, str) else bins
    for exe, rel in bins.items():
        link = bindir / exe
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(meta.parent / rel)
        print(f"added {exe} -> {meta.parent / rel}")
""",
}


@dataclass
class Machine:
    """What the runner machine offers, where the test must differ from ubuntu-latest.

    ``python`` is the interpreter actions/setup-python provides (the requested version is checked against orch's
    requires-python, not installed: the wheelhouse is built for this interpreter). ``pip_find_links`` stands in
    for PyPI: pip runs for real, offline (PIP_NO_INDEX), with this machine's pip configuration ignored.
    ``github_url`` is "the runner's GitHub": GITHUB_SERVER_URL and GITHUB_API_URL name it, and actions/checkout
    clones from it. ``extra_path`` holds folders a stock runner also has on PATH (git, node, bwrap live there).
    ``apps`` are the GitHub Apps create-github-app-token can mint tokens for. ``cache_dir`` is the repository's
    Actions cache, which outlives the job: the same folder for every job of one repository.
    """

    python: str
    pip_find_links: list[str]
    github_url: str
    clone_url: str
    extra_path: list[str] = field(default_factory=list)
    node_prefix: str = str(NODE_PREFIX)
    apps: dict[str, list[str]] = field(default_factory=dict)  # GitHub Apps by id: [slug, installation token]
    cache_dir: str = ""  # the repository's Actions cache, shared by its jobs (actions/cache)


@dataclass
class Job:
    workflow: str
    event_name: str
    event: dict[str, Any]
    workspace: str  # GITHUB_WORKSPACE: empty or absent; checkout clones into it
    runner: str  # the runner's own folders: HOME, RUNNER_TEMP, tool cache, shims, artifacts, logs
    repository: str  # owner/name
    machine: Machine
    secrets: dict[str, str] = field(default_factory=dict)
    job_id: str = "orch"
    run_id: int = 1
    ref: str = "refs/heads/main"
    default_branch: str = "main"
    actor: str = "alice"
    step_timeout: float = 300.0
    dry_run: bool = False  # evaluate every condition, env and input, execute nothing (but the app-token action)


@dataclass
class StepResult:
    index: int
    name: str
    outcome: str  # success, failure, skipped, cancelled
    exit_code: int | None = None
    output: str = ""  # stdout and stderr, interleaved
    env: dict[str, str] = field(default_factory=dict)  # what the step's process got (run steps)
    inputs: dict[str, str] = field(default_factory=dict)  # evaluated `with:` (uses steps)
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class JobResult:
    ran: bool  # the job's `if:` was true
    concurrency_group: str
    cancel_in_progress: bool
    steps: list[StepResult]
    artifacts: Path
    status: str  # success, failure, cancelled, skipped

    def step(self, name: str) -> StepResult:
        found = [s for s in self.steps if s.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} steps named {name!r}: {[s.name for s in self.steps]}")
        return found[0]


def load_workflow(path: str | Path) -> dict[str, Any]:
    yaml = YAML(typ="safe")
    yaml.version = (1, 2)  # like GitHub: `on` is a key, not a boolean
    doc: dict[str, Any] = yaml.load(Path(path).read_text())
    known = {"name", "on", "permissions", "concurrency", "jobs", "env", "run-name"}
    if set(doc) - known:
        raise Unproven(f"workflow keys the kit does not run: {sorted(set(doc) - known)}")
    if "env" in doc or "run-name" in doc:
        raise Unproven("workflow-level env and run-name are not supported by the kit")
    return doc


def step_name(step: dict[str, Any]) -> str:
    if "name" in step:
        return str(step["name"])
    if "uses" in step:
        return "Run " + str(step["uses"]).split("#")[0].strip()
    return "Run " + str(step.get("run", "")).strip().splitlines()[0]


# --- uses: steps, each replaced by its documented effect -------------------------------------------------------


def _git(cwd: Path, *args: str, env: dict[str, str]) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def use_checkout(inputs: dict[str, str], job: Job, env: dict[str, str], log: list[str]) -> dict[str, str]:
    """actions/checkout: fetch the event's ref from the repository into the workspace with the job token in an
    http.extraheader, check it out, and keep that header in .git/config only when persist-credentials is true."""
    ws = Path(job.workspace)
    ws.mkdir(parents=True, exist_ok=True)
    if any(ws.iterdir()):
        raise Unproven(f"the workspace {ws} is not empty (a runner's is)")
    token = inputs.get("token") or job.secrets.get("GITHUB_TOKEN", "")
    depth = int(inputs.get("fetch-depth") or 1)
    persist = inputs.get("persist-credentials", "true").lower() != "false"
    header = "AUTHORIZATION: basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
    key = f"http.{job.machine.github_url}/.extraheader"
    _git(ws, "init", "-q", env=env)
    _git(ws, "remote", "add", "origin", job.machine.clone_url, env=env)
    _git(ws, "config", "--local", key, header, env=env)  # checkout sets it for its own fetch, then decides
    branch = job.ref.removeprefix("refs/heads/")
    if depth == 0:
        _git(
            ws,
            "fetch",
            "-q",
            "--prune",
            "--no-recurse-submodules",
            "origin",
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
            env=env,
        )
    else:
        _git(
            ws,
            "fetch",
            "-q",
            "--no-tags",
            "--prune",
            "--no-recurse-submodules",
            f"--depth={depth}",
            "origin",
            f"+{job.ref}:refs/remotes/origin/{branch}",
            env=env,
        )
    _git(ws, "checkout", "-q", "--force", "-B", branch, f"refs/remotes/origin/{branch}", env=env)
    if not persist:
        _git(ws, "config", "--local", "--unset-all", key, env=env)
    log.append(
        f"checked out {branch} at {_git(ws, 'rev-parse', 'HEAD', env=env).strip()} "
        f"(fetch-depth {depth}, persist-credentials {str(persist).lower()})"
    )
    return {}


def use_setup_python(inputs: dict[str, str], job: Job, env: dict[str, str], log: list[str]) -> dict[str, str]:
    """actions/setup-python: a fresh interpreter first on PATH. Here a fresh venv of the machine's Python (its
    version must satisfy orch's requires-python; the requested one is reported, not installed)."""
    want = inputs.get("python-version", "")
    if not re.fullmatch(r"3\.\d+", want):
        raise Unproven(f"setup-python: python-version {want!r} is not a plain 3.X")
    venv = Path(job.runner) / "toolcache" / "Python" / want
    res = subprocess.run([job.machine.python, "-m", "venv", str(venv)], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"venv: {res.stderr}")
    have = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    log.append(f"python-version {want} requested; a fresh venv of Python {have} at {venv}")
    return {"python-version": have, "python-path": str(venv / "bin" / "python"), "__path__": str(venv / "bin")}


def use_upload_artifact(inputs: dict[str, str], job: Job, env: dict[str, str], log: list[str]) -> dict[str, str]:
    """actions/upload-artifact: copy `path` (relative to the workspace) into <runner>/artifacts/<name>/."""
    name, path = inputs["name"], inputs["path"]
    if "\n" in path.strip() or any(c in path for c in "*?!"):
        raise Unproven(f"upload-artifact: only a single plain path is supported, not {path!r}")
    source = Path(job.workspace) / path
    target = Path(job.runner) / "artifacts" / name
    if not source.exists():
        mode = inputs.get("if-no-files-found", "warn")
        if mode == "error":
            raise RuntimeError(f"upload-artifact: no files at {path}")
        log.append(f"no files at {path} ({mode})")
        return {}
    hidden = inputs.get("include-hidden-files", "false") != "true"  # upload-artifact >= 4.4 leaves out hidden files
    if hidden and any(part.startswith(".") for part in Path(path).parts if part not in (".", "..")):
        log.append(f"no files at {path}: it is hidden (include-hidden-files is false)")
        return {}
    if source.is_dir():
        shutil.copytree(
            source,
            target,
            symlinks=True,
            ignore=(lambda _d, names: [n for n in names if n.startswith(".")]) if hidden else None,
        )
    else:
        target.mkdir(parents=True)
        shutil.copy2(source, target / source.name)
    log.append(f"uploaded {path} as {name}")
    return {"artifact-id": "1"}


def use_app_token(inputs: dict[str, str], job: Job, env: dict[str, str], log: list[str]) -> dict[str, str]:
    """actions/create-github-app-token: the installation token GitHub would mint for the app (`Machine.apps`:
    app id -> [slug, token], an app the test registered on the emulator); a missing key or unknown app fails."""
    app = job.machine.apps.get(inputs.get("app-id", ""))
    if app is None or not inputs.get("private-key"):
        raise RuntimeError("create-github-app-token: no such app, or no private key")
    log.append(f"installation token for {app[0]}")
    return {"token": app[1], "app-slug": app[0], "installation-id": "1"}


# actions/cache (docs: "Caching dependencies to speed up workflows"; the action's restore/ and save/ and
# @actions/cache). GitHub's cache service is the repository's, so it lives beside the jobs (`Machine.cache_dir`): one
# folder per entry, its key, version and scope in entry.json and what was saved under data/, by its path relative to
# the workspace (as the action's tar does), so it lands in the same place on the next runner.
CACHE_COMPRESSION = "zstd-without-long"  # what @actions/cache adds to the version on a Linux runner with zstd
CACHE_SALT = "1.0"  # @actions/cache's versionSalt


def _cache_path(inputs: dict[str, str], job: Job, env: dict[str, str]) -> tuple[list[str], Path]:
    lines = [line.strip() for line in inputs.get("path", "").splitlines() if line.strip()]
    if len(lines) != 1 or any(c in lines[0] for c in "*?![]{}$"):
        raise Unproven(f"actions/cache: only one plain path is supported, not {inputs.get('path')!r}")
    raw = lines[0]
    where = Path(env["HOME"]) / raw[2:] if raw.startswith("~/") else Path(job.workspace) / raw
    return lines, where


def _cache_version(paths: list[str]) -> str:
    import hashlib

    return hashlib.sha256("|".join([*paths, CACHE_COMPRESSION, CACHE_SALT]).encode()).hexdigest()


def _cache_entries(job: Job) -> list[dict[str, Any]]:
    root = Path(job.machine.cache_dir)
    if not job.machine.cache_dir or not root.is_dir():
        return []
    found = [json.loads((d / "entry.json").read_text()) | {"dir": str(d)} for d in sorted(root.iterdir())]
    return sorted(found, key=lambda e: e["created"], reverse=True)  # the most recently created first


def use_cache_restore(inputs: dict[str, str], job: Job, env: dict[str, str], log: list[str]) -> dict[str, str]:
    """actions/cache/restore: the entry of this version whose key is `key`, else the newest whose key starts with
    `key`, else with each of `restore-keys` in order; first among the entries of the run's ref, then of the default
    branch (a run can restore no other branch's). A miss is not a failure."""
    paths, where = _cache_path(inputs, job, env)
    if not job.machine.cache_dir:
        raise Unproven("actions/cache: the machine has no cache_dir (the repository's cache service)")
    key = inputs.get("key", "")
    prefixes = [line.strip() for line in inputs.get("restore-keys", "").splitlines() if line.strip()]
    version = _cache_version(paths)
    scopes = list(dict.fromkeys([job.ref, f"refs/heads/{job.default_branch}"]))
    entries = [e for e in _cache_entries(job) if e["version"] == version]
    for scope in scopes:
        mine = [e for e in entries if e["scope"] == scope]
        hit = next((e for e in mine if e["key"] == key), None)
        for prefix in [key, *prefixes]:
            hit = hit or next((e for e in mine if e["key"].startswith(prefix)), None)
        if hit is not None:
            target = (Path(job.workspace) / hit["relative"]).resolve()
            source = Path(hit["dir"]) / "data"
            if source.is_dir():
                shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(hit["dir"]) / "data.file", target)
            log.append(f"Cache restored from key: {hit['key']}")
            return {
                "cache-hit": str(hit["key"] == key).lower(),
                "cache-primary-key": key,
                "cache-matched-key": hit["key"],
            }
    log.append(f"Cache not found for input keys: {', '.join([key, *prefixes])}")
    return {"cache-hit": "false", "cache-primary-key": key, "cache-matched-key": ""}


def use_cache_save(inputs: dict[str, str], job: Job, env: dict[str, str], log: list[str]) -> dict[str, str]:
    """actions/cache/save: a new entry in the run's ref's scope. A key already taken there, or a path that does not
    exist, is a warning (the step still succeeds): caches are immutable."""
    paths, where = _cache_path(inputs, job, env)
    if not job.machine.cache_dir:
        raise Unproven("actions/cache: the machine has no cache_dir (the repository's cache service)")
    key, version = inputs.get("key", ""), _cache_version(paths)
    if not where.exists():
        log += [
            "Warning: Path Validation Error: Path(s) specified in the action for caching do(es) not exist, "
            "hence no cache is being saved.",
            "Warning: Cache save failed.",
        ]
        return {}
    entries = _cache_entries(job)
    if any(e["key"] == key and e["version"] == version and e["scope"] == job.ref for e in entries):
        log += [
            f"Warning: Unable to reserve cache with key {key}, another job may be creating this cache.",
            "Warning: Cache save failed.",
        ]
        return {}
    root = Path(job.machine.cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    created = max((e["created"] for e in entries), default=0) + 1
    entry = root / f"{created:06d}"
    entry.mkdir()
    if where.is_dir():
        shutil.copytree(where, entry / "data", symlinks=True)
    else:
        shutil.copy2(where, entry / "data.file")
    relative = os.path.relpath(where, job.workspace)
    meta = {"key": key, "version": version, "scope": job.ref, "created": created, "relative": relative}
    (entry / "entry.json").write_text(json.dumps(meta))
    log.append(f"Cache saved with key: {key}")
    return {}


USES: dict[str, tuple[Callable[..., dict[str, str]], set[str]]] = {
    "actions/cache/restore": (use_cache_restore, {"path", "key", "restore-keys"}),
    "actions/cache/save": (use_cache_save, {"path", "key"}),
    "actions/checkout": (use_checkout, {"fetch-depth", "persist-credentials", "token"}),
    "actions/setup-python": (use_setup_python, {"python-version"}),
    "actions/upload-artifact": (
        use_upload_artifact,
        {"name", "path", "if-no-files-found", "retention-days", "include-hidden-files"},
    ),
    "actions/create-github-app-token": (
        use_app_token,
        {
            "app-id",
            "private-key",
            "permission-contents",
            "permission-issues",
            "permission-pull-requests",
            "permission-metadata",
        },
    ),
}


# --- running a job ------------------------------------------------------------------------------------------------


def _read_file_commands(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT / GITHUB_ENV syntax: name=value lines and name<<DELIM heredocs."""
    out: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            body = []
            i += 1
            while i < len(lines) and lines[i] != delim:
                body.append(lines[i])
                i += 1
            out[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
        i += 1
    return out


class Runner:
    def __init__(
        self,
        job: Job,
        on_step_start: Callable[[StepResult, subprocess.Popen[bytes]], None] | None = None,
        journal: Path | None = None,
        before_step: Callable[[StepResult], None] | None = None,
    ) -> None:
        self.job = job
        self.on_step_start = on_step_start
        self.before_step = before_step
        self.journal = journal
        self.status = Status()
        self.cancels = 0  # how many times the job was cancelled (a step stops on a cancel that comes while it runs)
        self.current: subprocess.Popen[bytes] | None = None
        self.runner = Path(job.runner)

    def record(self, event: str, **data: Any) -> None:
        if self.journal is not None:
            with self.journal.open("a") as f:
                f.write(json.dumps({"event": event, "at": time.time(), **data}) + "\n")

    def machine_env(self) -> dict[str, str]:
        """The runner machine's environment: no GH_TOKEN, no git identity, a fresh HOME; GitHub is the emulator."""
        job, m, r = self.job, self.job.machine, self.runner
        for d in ("home", "temp", "toolcache", "shims", "npm-global/bin", "artifacts", "files"):
            (r / d).mkdir(parents=True, exist_ok=True)
        for name, text in SHIMS.items():
            shim = r / "shims" / name
            shim.write_text(text.replace("{python}", sys.executable))
            shim.chmod(0o755)
        system = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        path = [str(r / "shims"), str(r / "npm-global" / "bin")] + system + [p for p in m.extra_path if p not in system]
        event_path = r / "files" / "event.json"
        event_path.write_text(json.dumps(job.event))
        owner = job.repository.split("/")[0]
        return {
            "PATH": os.pathsep.join(path),
            "HOME": str(r / "home"),
            "LANG": "C.UTF-8",
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "RUNNER_OS": "Linux",
            "RUNNER_ARCH": "X64",
            "RUNNER_NAME": "actionskit",
            "RUNNER_TEMP": str(r / "temp"),
            "RUNNER_TOOL_CACHE": str(r / "toolcache"),
            "GITHUB_WORKSPACE": job.workspace,
            "GITHUB_EVENT_NAME": job.event_name,
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_REPOSITORY": job.repository,
            "GITHUB_REPOSITORY_OWNER": owner,
            "GITHUB_JOB": job.job_id,
            "GITHUB_RUN_ID": str(job.run_id),
            "GITHUB_RUN_NUMBER": str(job.run_id),
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_REF": job.ref,
            "GITHUB_REF_NAME": job.ref.removeprefix("refs/heads/"),
            "GITHUB_REF_TYPE": "branch",
            "GITHUB_ACTOR": job.actor,
            "GITHUB_TRIGGERING_ACTOR": job.actor,
            "GITHUB_WORKFLOW": "orch",
            # the runner's GitHub is the emulator
            "GITHUB_SERVER_URL": m.github_url,
            "GITHUB_API_URL": m.github_url,
            "GITHUB_GRAPHQL_URL": m.github_url + "/graphql",
            # PyPI is the wheelhouse: real pip, offline, this machine's pip.conf ignored
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": " ".join(m.pip_find_links),
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            # for the shims
            "ACTIONSKIT_SHIM_LOG": str(r / "shims.log"),
            "ACTIONSKIT_NODE_PREFIX": m.node_prefix,
            "ACTIONSKIT_NPM_BIN": str(r / "npm-global" / "bin"),
        }

    def run(self) -> JobResult:
        job = self.job
        doc = load_workflow(job.workflow)
        spec = doc["jobs"][job.job_id]
        known = {"if", "runs-on", "timeout-minutes", "env", "steps", "permissions", "concurrency", "name"}
        if set(spec) - known:
            raise Unproven(f"job keys the kit does not run: {sorted(set(spec) - known)}")
        for step in spec["steps"]:
            unknown = set(step) - {"name", "id", "if", "uses", "with", "run", "env"}
            if unknown:
                raise Unproven(f"step {step_name(step)!r}: keys the kit does not run: {sorted(unknown)}")
            if "uses" in step:
                self.action(step)
        machine = self.machine_env()
        github = {
            "event_name": job.event_name,
            "event": job.event,
            "repository": job.repository,
            "repository_owner": job.repository.split("/")[0],
            "run_id": str(job.run_id),
            "run_number": str(job.run_id),
            "run_attempt": "1",
            "ref": job.ref,
            "actor": job.actor,
            "workspace": job.workspace,
            "job": job.job_id,
            "server_url": job.machine.github_url,
            "api_url": job.machine.github_url,
            "token": job.secrets.get("GITHUB_TOKEN", ""),
        }
        secrets = dict(job.secrets)
        contexts: dict[str, Any] = {
            "github": github,
            "secrets": secrets,
            "env": {},
            "steps": {},
            "runner": {"os": "Linux", "arch": "X64", "temp": machine["RUNNER_TEMP"]},
        }
        precheck(doc, contexts)
        conc = doc.get("concurrency") or {}
        group = interpolate(conc.get("group", ""), contexts) if isinstance(conc, dict) else interpolate(conc, contexts)
        cancel = bool(conc.get("cancel-in-progress", False)) if isinstance(conc, dict) else False
        artifacts = self.runner / "artifacts"
        if not condition(spec.get("if"), contexts, self.status, step=False):
            self.record("job-skipped")
            return JobResult(False, group, cancel, [], artifacts, "skipped")
        job_env = {k: interpolate(v, contexts) for k, v in (spec.get("env") or {}).items()}
        contexts["env"] = dict(job_env)
        extra_path: list[str] = []
        steps: list[StepResult] = []
        deadline = time.monotonic() + 60 * float(spec.get("timeout-minutes", 360))
        self.record("job-started", concurrency_group=group)
        for index, step in enumerate(spec["steps"]):
            result = StepResult(index, step_name(step), "skipped")
            steps.append(result)
            contexts["env"] = dict(job_env)
            if not condition(step.get("if"), contexts, self.status, step=True):
                self.record("step-skipped", index=index, name=result.name)
                continue
            if self.before_step is not None:
                self.before_step(result)  # e.g. hold the step until the test lets it start; raising ends the job
            step_env = {k: interpolate(v, contexts) for k, v in (step.get("env") or {}).items()}
            env = {**machine, **job_env, **step_env}
            env["PATH"] = os.pathsep.join(extra_path + [env["PATH"]])
            files = {
                n: self.runner / "files" / f"{n.lower()}-{index}"
                for n in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH")
            }
            for name, f in files.items():
                f.write_text("")
                env[name] = str(f)
            self.record("step-started", index=index, name=result.name)
            t0 = time.monotonic()
            action = self.action(step)[0] if "uses" in step else None
            result.inputs = {k: interpolate(v, contexts) for k, v in (step.get("with") or {}).items()}
            try:
                if job.dry_run and action != "actions/create-github-app-token":
                    result.env, result.outcome = env, "success"
                elif action is not None:
                    result.outputs = self.uses(step, contexts, env, result)
                    path_add = result.outputs.pop("__path__", None)
                    if path_add:
                        extra_path.insert(0, path_add)
                    result.outcome, result.exit_code = "success", 0
                else:
                    result.env = env
                    self.run_script(
                        interpolate(step["run"], contexts),
                        env,
                        result,
                        min(job.step_timeout, max(1.0, deadline - time.monotonic())),
                    )
            except Unproven:
                raise
            except Exception as exc:  # noqa: BLE001 - a failing action fails its step, like on GitHub
                result.outcome, result.output = "failure", result.output + f"\n{type(exc).__name__}: {exc}"
            result.seconds = time.monotonic() - t0
            if result.outcome == "success":
                result.outputs.update(_read_file_commands(files["GITHUB_OUTPUT"]))
                job_env.update(_read_file_commands(files["GITHUB_ENV"]))
                extra_path[:0] = [p for p in reversed(files["GITHUB_PATH"].read_text().splitlines()) if p]
            elif result.outcome == "failure":
                self.status.failed = True
            if "id" in step:
                contexts["steps"][step["id"]] = {
                    "outputs": result.outputs,
                    "outcome": result.outcome,
                    "conclusion": result.outcome,
                }
            self.record(
                "step-finished",
                index=index,
                name=result.name,
                outcome=result.outcome,
                exit_code=result.exit_code,
                seconds=round(result.seconds, 2),
            )
        status = "cancelled" if self.status.cancelled else "failure" if self.status.failed else "success"
        self.record("job-finished", status=status)
        return JobResult(True, group, cancel, steps, artifacts, status)

    @staticmethod
    def action(step: dict[str, Any]) -> tuple[str, Callable[..., dict[str, str]]]:
        """The action a `uses:` step names, checked: pinned by full SHA, known to the kit, only inputs it honours."""
        ref = str(step["uses"]).split("#")[0].strip()
        action, _, sha = ref.partition("@")
        if action not in USES:
            raise Unproven(f"action {action} has no documented effect in the kit")
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise Unproven(f"{ref}: not pinned by full commit SHA")
        fn, allowed = USES[action]
        unknown = set(step.get("with") or {}) - allowed
        if unknown:
            raise Unproven(f"{action}: inputs the kit does not honour: {sorted(unknown)}")
        return action, fn

    def uses(
        self, step: dict[str, Any], contexts: dict[str, Any], env: dict[str, str], result: StepResult
    ) -> dict[str, str]:
        _action, fn = self.action(step)
        log: list[str] = []
        try:
            return fn(result.inputs, self.job, env, log)
        finally:
            result.output = "\n".join(log)

    def run_script(self, script: str, env: dict[str, str], result: StepResult, timeout: float) -> None:
        """A `run:` step: `bash -e {file}` (GitHub's default shell on Linux) in the workspace, in its own group."""
        path = self.runner / "temp" / f"step-{result.index}.sh"
        path.write_text(script)
        log_path = self.runner / "files" / f"step-{result.index}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                ["bash", "-e", str(path)],
                cwd=self.job.workspace,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.current = proc
            self.record("step-process", index=result.index, pid=proc.pid)
            if self.on_step_start is not None:
                self.on_step_start(result, proc)
            try:
                code = self._wait(proc, time.monotonic() + timeout, result)
            finally:
                self.current = None
        result.output += log_path.read_text(errors="replace")
        result.exit_code = code
        if result.outcome != "cancelled":
            result.outcome = "success" if code == 0 else "failure"

    def _wait(self, proc: subprocess.Popen[bytes], deadline: float, result: StepResult) -> int:
        """Wait for the step; past its deadline, or once the job is cancelled while it runs, stop its group as GitHub
        does: SIGINT, then SIGTERM 7.5 s later, then SIGKILL 2.5 s after that. A step that starts after the cancel (an
        always() step) runs to its end unless the job is cancelled again (GitHub's second, forceful cancel)."""
        stopping: list[tuple[float, signal.Signals]] = []
        cancels = self.cancels
        while True:
            try:
                return proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if not stopping and (self.cancels > cancels or now > deadline):
                if self.cancels > cancels:
                    result.outcome = "cancelled"
                else:
                    result.output = "(the step ran past its time limit and was stopped)\n"
                stopping = [(now, signal.SIGINT), (now + 7.5, signal.SIGTERM), (now + 10.0, signal.SIGKILL)]
            while stopping and stopping[0][0] <= now:
                try:
                    os.killpg(proc.pid, stopping.pop(0)[1])
                except ProcessLookupError:
                    pass

    def cancel(self) -> None:
        """Cancel the job (safe from a signal handler): the running step is stopped, then only always() steps run."""
        self.status.cancelled = True
        self.cancels += 1


def run_job(
    job: Job,
    on_step_start: Callable[[StepResult, subprocess.Popen[bytes]], None] | None = None,
    before_step: Callable[[StepResult], None] | None = None,
) -> JobResult:
    return Runner(job, on_step_start, Path(job.runner) / "steps.jsonl", before_step).run()


def job_from_json(path: Path) -> Job:
    data = json.loads(path.read_text())
    data["machine"] = Machine(**data["machine"])
    return Job(**data)


def job_to_json(job: Job, path: Path) -> None:
    path.write_text(json.dumps(asdict(job), indent=2))


def main(argv: list[str]) -> int:
    """`python tests/actionskit.py JOB.json`: run the job; step events go to <runner>/steps.jsonl as they happen,
    the result to <runner>/result.json. Exit 0 when the job succeeded or was skipped, 1 when it failed or was
    cancelled (SIGTERM/SIGINT), 2 when the workflow uses something the kit cannot run."""
    job = job_from_json(Path(argv[0]))
    runner = Runner(job, journal=Path(job.runner) / "steps.jsonl")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: runner.cancel())
    try:
        result = runner.run()
    except Unproven as exc:
        print(f"actionskit: {exc}", file=sys.stderr)
        return 2
    out = asdict(result)
    out["artifacts"] = str(result.artifacts)
    for s in out["steps"]:
        s["env"] = {k: v for k, v in s["env"].items() if k not in job.secrets and v not in job.secrets.values()}
    (Path(job.runner) / "result.json").write_text(json.dumps(out, indent=2))
    return 0 if result.status in ("success", "skipped") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__ = [
    "Evaluator",
    "Job",
    "JobResult",
    "Machine",
    "Runner",
    "StepResult",
    "Unproven",
    "condition",
    "interpolate",
    "job_from_json",
    "job_to_json",
    "load_workflow",
    "run_job",
]
