"""`orch setup`: write a starter .orch/policy.yaml, the overridable prompts and .gitignore entries; optionally the labels.

Running it twice changes nothing the second time; `--dry-run` prints every planned write and label change.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from statemachine import resources
from statemachine.adapters.git import run_git
from statemachine.errors import EXIT_OK, OrchError
from statemachine.output import Output
from statemachine.runtime import find_repo

IGNORE_LINES = (".orch/state/", ".orch/worktrees/", ".orch/runs/")
# (ecosystem, files that mark it at the repository's root, the caches and build output its tools write): an agent
# that runs the tests leaves these behind, and they are no part of its change
ECOSYSTEMS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "Python",
        ("pyproject.toml", "setup.py", "setup.cfg", "requirements.txt", "Pipfile", "tox.ini"),
        (
            "__pycache__/",
            "*.py[cod]",
            ".pytest_cache/",
            ".mypy_cache/",
            ".ruff_cache/",
            ".hypothesis/",
            ".tox/",
            ".nox/",
            ".venv/",
            "*.egg-info/",
            ".coverage",
            ".coverage.*",
            "htmlcov/",
        ),
    ),
    ("Node", ("package.json",), ("node_modules/", ".eslintcache", "*.tsbuildinfo", ".npm/")),
    ("Rust", ("Cargo.toml",), ("target/",)),
    ("Go", ("go.mod",), ("*.test",)),
    ("Java", ("pom.xml", "build.gradle", "build.gradle.kts"), ("target/", ".gradle/")),
    ("Ruby", ("Gemfile",), (".bundle/",)),
)
PROMPT_FILES = ("implementation", "rework", "review", "proof", "planning", "setup-skill")

STARTER = """\
# yaml-language-server: $schema=./policy.schema.json
# orch policy for this repository. It extends orch's bundled default policy:
# mappings merge key by key, anything else (lists included) replaces, and null removes a key.
# Reference: docs/policy.md. Check it with `orch lint`.
version: 1
extends: default

tracker:
{tracker}
agent:
  kind: codex            # codex (Codex CLI), claude (Claude Code), or command (any executable: prompt on stdin)
  # model: gpt-5-codex
  timeout_seconds: 1800
  idle_timeout_seconds: 600

checks: {{}}
#  tests:
#    command: python -m pytest -q
#    timeout_seconds: 900
"""

_GITHUB_URL = re.compile(
    r"^(?:https?://(?:[^@/]+@)?github\.com/|git@github\.com:|ssh://git@github\.com(?::\d+)?/)([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$"
)


def parse_github_url(url: str) -> tuple[str, str] | None:
    """Owner and repo from a GitHub remote URL, https or ssh form; None for anything else."""
    m = _GITHUB_URL.match(url.strip())
    return (m.group(1), m.group(2)) if m else None


_ANY_URL = re.compile(
    r"^(?:[a-z+]+://(?:[^@/]+@)?[^/]+/|[^@:/]+@[^:]+:)(?:.*/)?([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$"
)


def owner_repo_of(url: str) -> tuple[str, str] | None:
    """Owner and repo from any git remote URL (GitHub Enterprise and other hosts included)."""
    m = _ANY_URL.match(url.strip())
    return (m.group(1), m.group(2)) if m else None


def origin_url(root: Path) -> str:
    return run_git(["remote", "get-url", "origin"], root, check=False).strip()


def base_branch(root: Path) -> str:
    head = run_git(["symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD"], root, check=False).strip()
    if head.startswith("origin/"):
        return head[len("origin/") :]
    return run_git(["symbolic-ref", "--quiet", "--short", "HEAD"], root, check=False).strip()


def tracker_block(owner: str | None, repo: str | None, base: str) -> str:
    if owner and repo:
        return f'  kind: github\n  owner: {owner}\n  repo: {repo}\n  base_branch: "{base}"\n'
    return f'  kind: local            # the embedded tracker (.orch/state/); `orch issue new ...` files issues\n  base_branch: "{base}"\n'


def workflow_agent(root: Path, policy_path: Path | None = None) -> tuple[str, str | None]:
    """The agent kind and model-key variable the workflow is written for: the repository's policy, else the default."""
    from statemachine import policy as policy_mod
    from statemachine import resources, workflow

    path = policy_mod.resolve_path(root, policy_path)
    loaded = policy_mod.load(path) if path.exists() else policy_mod.load(resources.bundled_policy("default"))
    agent = loaded.config.agent
    return agent.kind, workflow.agent_key_env(dict(agent.options))


def plan(
    root: Path,
    owner: str | None,
    repo: str | None,
    actions: bool = False,
    policy_path: Path | None = None,
    package: str | None = None,
) -> list[tuple[Path, str, str]]:
    """Return (path, new content, what) for every file setup would write; empty when nothing changes."""
    writes = []
    if actions:
        from statemachine import workflow

        target = root / workflow.WORKFLOW_PATH
        if not target.exists():
            kind, key = workflow_agent(root, policy_path)
            source = "as given"
            if not package:
                package, source = workflow.install_spec()
            if not package:
                raise OrchError(
                    f"the workflow must install this orch on GitHub's runners, but this orch was {source}",
                    "say what the runners install, pinned: --orch-package 'orch @ git+https://github.com/OWNER/orch@COMMIT' "
                    "or a wheel URL ending in #sha256=DIGEST (docs/daemon.md, Running on GitHub Actions)",
                )
            writes.append(
                (
                    target,
                    workflow.render(agent_kind=kind, api_key_env=key, package=package),
                    f"write the GitHub Actions workflow (agent: {kind}; installs {package}, {source})",
                )
            )
    policy = root / ".orch" / "policy.yaml"
    if not policy.exists():
        writes.append(
            (policy, STARTER.format(tracker=tracker_block(owner, repo, base_branch(root))), "write the starter policy")
        )
    schema = root / ".orch" / "policy.schema.json"  # for editors only: orch validates with its own copy
    packaged = (resources.data_dir("schemas") / "policy-file.schema.json").read_text(encoding="utf-8")
    if not schema.is_symlink() and not schema.exists():
        writes.append((schema, packaged, "write the policy file's JSON Schema (for editors)"))
    elif not schema.is_symlink() and schema.is_file() and schema.read_text(errors="replace") != packaged:
        writes.append((schema, packaged, "update the policy file's JSON Schema to this orch's (for editors)"))
    for name in PROMPT_FILES:
        target = root / ".orch" / "prompts" / f"{name}.md"
        if not target.exists():
            writes.append((target, resources.prompt_template(name).read_text(), f"copy the {name} prompt"))
    ignore = root / ".gitignore"
    current = ignore.read_text() if ignore.exists() else ""
    writes += ignore_writes(root, ignore, current)
    return writes


def _same(line: str) -> str:
    """A .gitignore line as compared for "already there": `/node_modules`, `node_modules/` and `**/node_modules`
    are one line."""
    text = line.strip().removeprefix("**/").strip("/")
    return text


def detected_ecosystems(root: Path) -> list[tuple[str, tuple[str, ...]]]:
    """The ecosystems whose marker files sit at the repository's root, with the ignore lines of each."""
    return [(name, lines) for name, markers, lines in ECOSYSTEMS if any((root / m).is_file() for m in markers)]


def ignore_writes(root: Path, ignore: Path, current: str) -> list[tuple[Path, str, str]]:
    """The .gitignore write (one at most): orch's own state, and the caches and build output of the detected
    ecosystems, each line only when the file does not have it yet."""
    present = {_same(line) for line in current.splitlines() if line.strip() and not line.lstrip().startswith("#")}
    blocks, shown = [], []
    missing = [line for line in IGNORE_LINES if _same(line) not in present]
    if missing:
        blocks.append("# orch's local state\n" + "\n".join(missing) + "\n")
        shown += missing
    ecosystems = detected_ecosystems(root)
    tool_lines: list[str] = []
    for _name, lines in ecosystems:
        tool_lines += [line for line in lines if _same(line) not in present and line not in tool_lines]
    if tool_lines:
        names = ", ".join(name for name, _lines in ecosystems)
        blocks.append(f"# caches and build output of {names} tools (orch setup)\n" + "\n".join(tool_lines) + "\n")
        shown += tool_lines
    if not blocks:
        return []
    sep = "" if not current or current.endswith("\n") else "\n"
    return [(ignore, current + sep + "\n".join(blocks), "ignore " + ", ".join(shown))]


def prepare_labels(
    root: Path, args: argparse.Namespace, writes: list[tuple[Path, str, str]], notes: list[str]
) -> list[dict[str, Any]]:
    """Create or update the policy's labels on the tracker; with --dry-run only say what would change. On a tracker
    runners share, also learn who orch acts as there (kept in the store, so runs need not ask again) and say it."""
    from statemachine import policy as policy_mod
    from statemachine.runtime import open_runtime

    policy_path = policy_mod.resolve_path(root, args.policy)
    if not policy_path.exists():
        planned = next((c for p, c, _w in writes if p == policy_path), None)
        if planned is None:
            raise OrchError(f"{policy_path} does not exist", "run `orch setup` without --prepare-labels first")
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            temp = Path(tmp) / "policy.yaml"
            temp.write_text(planned)
            rt = open_runtime(root, temp)
    else:
        rt = open_runtime(root, args.policy)
    try:
        ensure = rt.tracker.ensure_label if rt.tracker.capabilities.label_list else None
        results = []
        for role, spec in rt.policy.config.labels.items():
            if ensure is None:
                results.append(
                    {
                        "role": role,
                        "name": spec.name,
                        "result": "unchanged",
                        "note": "the local tracker keeps no label list",
                    }
                )
                continue
            outcome = ensure(spec.name, spec.color, spec.description, dry_run=args.dry_run)
            results.append({"role": role, "name": spec.name, "result": outcome})
        if rt.tracker.capabilities.fleet:
            me = rt.tracker.identity()
            notes.append(f"orch acts as {me} on {rt.tracker.kind}: only what {me} writes counts as orch's")
        return results
    finally:
        rt.close()


def existing_tracker(policy: Path) -> tuple[str, str | None, str | None] | None:
    """The tracker kind, owner and repository an existing policy file names; None when there is no such file."""
    from statemachine.errors import PolicyError
    from statemachine.yamlsrc import load_file

    if not policy.is_file():
        return None
    try:
        data = load_file(policy).data
    except (PolicyError, OSError):
        data = None
    tracker = data.get("tracker") if isinstance(data, dict) else None
    if not isinstance(tracker, dict):
        return "local", None, None
    owner, repo = tracker.get("owner"), tracker.get("repo")
    return (
        str(tracker.get("kind") or "local"),
        None if owner is None else str(owner),
        None if repo is None else str(repo),
    )


def choose_tracker(url: str, args: argparse.Namespace) -> tuple[str | None, str | None, str]:
    """The GitHub owner and repository the starter policy names (both None: the local tracker), and where that
    choice came from, as setup prints it."""
    chosen = getattr(args, "tracker", None)
    given = bool(args.github_owner) or bool(args.github_repo)
    if chosen == "local":
        if given:
            raise OrchError(
                "--tracker local takes no --github-owner or --github-repo", "drop them, or pass --tracker github"
            )
        return None, None, "--tracker local" + (f"; origin is {url}" if url else "")
    inferred = parse_github_url(url) if url else None
    if bool(args.github_owner) != bool(args.github_repo) and not inferred:
        raise OrchError(
            "--github-owner and --github-repo go together", "pass both, or neither to infer them from origin"
        )
    owner = args.github_owner or (inferred[0] if inferred else None)
    repo = args.github_repo or (inferred[1] if inferred else None)
    if owner and repo:
        how = "from --github-owner/--github-repo" if given else f"inferred from origin {url}"
        return owner, repo, how + ("; --tracker github" if chosen else "")
    if chosen == "github":
        raise OrchError(
            f"--tracker github needs the GitHub repository, and origin ({url or 'none'}) does not name one",
            "pass --github-owner O --github-repo R",
        )
    return None, None, f"origin {url} is not on GitHub" if url else "no origin remote"


def main(args: argparse.Namespace, out: Output) -> int:
    root = find_repo(args.repo)
    url = origin_url(root)
    owner, repo, source = choose_tracker(url, args)
    notes = []
    if url and not parse_github_url(url) and not (owner and repo):
        notes.append(f"origin ({url}) is not a GitHub repository: configured the local tracker")
    writes = plan(
        root,
        owner,
        repo,
        actions=getattr(args, "actions", False),
        policy_path=getattr(args, "policy", None),
        package=getattr(args, "orch_package", None),
    )
    if not args.dry_run:
        for path, content, _what in writes:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    labels = prepare_labels(root, args, writes, notes) if args.prepare_labels else []
    verb = "would" if args.dry_run else "did"
    tracker = "github" if owner and repo else "local"
    existing = existing_tracker(root / ".orch" / "policy.yaml")
    if existing is not None:  # setup never rewrites a policy: say what the one there names
        tracker, owner, repo = existing
        source = "as the existing .orch/policy.yaml says; setup leaves it alone"
    lines = [f"tracker: {tracker}" + (f" {owner}/{repo}" if owner and repo else "") + f" ({source})"]
    lines += [f"{verb}: {what} ({path.relative_to(root)})" for path, _c, what in writes]
    for lab in labels:
        result = lab["result"] if not args.dry_run or lab["result"] == "unchanged" else f"would be {lab['result']}"
        lines.append(f"label {lab['name']}: {result}")
    if not writes and not labels:
        lines.append("nothing to do: already set up")
    lines += notes
    if writes and not args.dry_run:
        lines.append("next: review .orch/policy.yaml, commit .orch/, run `orch lint` and `orch doctor`")
    out.emit(
        "setup",
        {
            "repo": str(root),
            "dry_run": args.dry_run,
            "tracker": tracker,
            "owner": owner,
            "github_repo": repo,
            "tracker_source": source,
            "ecosystems": [name for name, _lines in detected_ecosystems(root)],
            "writes": [{"path": str(p.relative_to(root)), "what": w} for p, _c, w in writes],
            "labels": labels,
            "notes": notes,
        },
        "\n".join(lines),
    )
    return EXIT_OK
