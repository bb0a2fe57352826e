"""The policy's settings, typed: built once when a policy loads, read everywhere as attributes.

Defaults come only from the bundled policy (policies/default.yaml): a key the merged policy lacks (deleted with
``null``, or a policy that does not extend ``default``) takes the bundled policy's value. The exceptions are the keys
whose absence means something: ``rules`` (none), ``gates.max_binary_file_bytes`` and ``gates.max_changed_bytes``
(``null``: no limit), and the optional ones the bundled policy does not set (``gates.tdd``, ``proof.app``, ...).
Pure: no I/O; policy.load passes the bundled policy's data in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from statemachine.ports import AgentRequest

# settings the bundled policy does not set (it has no checks and no daemon section): their one place
CHECK_TIMEOUT_SECONDS = 900.0  # a check or a TDD run without timeout_seconds
DEFAULT_REMOTE = "origin"  # tracker.remote
DEFAULT_LABEL_COLOR = "ededed"  # a label without a color (in a policy that does not extend default)


@dataclass(frozen=True)
class Label:
    name: str
    color: str = DEFAULT_LABEL_COLOR
    description: str = ""


@dataclass(frozen=True)
class TrackerSettings:
    kind: str
    base_branch: str
    claim_lease_seconds: float
    remote: str = DEFAULT_REMOTE
    claim_settle_seconds: float = 0.0
    owner: str | None = None
    repo: str | None = None
    api_url: str | None = None
    runner_login: str | None = None
    app_slug: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The set keys, as runtime.open_github reads them."""
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class AgentSettings:
    kind: str
    timeout_seconds: float
    idle_timeout_seconds: float
    command: str | None = None
    model: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # the whole section, timeouts filled: for the adapters

    def timeouts(self) -> dict[str, float]:
        """The timeouts as a run's agent fact records them."""
        return {"timeout_seconds": self.timeout_seconds, "idle_timeout_seconds": self.idle_timeout_seconds}

    def request(
        self,
        prompt: str,
        workdir: Path,
        evidence_dir: Path,
        report_path: Path,
        workspace: Mapping[str, Path],
        extra_env: dict[str, str] | None = None,
        read_only: bool = False,
    ) -> AgentRequest:
        """One agent run's request with the policy's timeouts; ``workspace`` is jail.workspace_extras' answer."""
        return AgentRequest(
            prompt=prompt,
            workdir=workdir,
            evidence_dir=evidence_dir,
            report_path=report_path,
            timeout_seconds=float(self.timeout_seconds),
            idle_timeout_seconds=float(self.idle_timeout_seconds),
            extra_env=dict(extra_env or {}),
            gitdir=workspace.get("gitdir"),
            lock=workspace["lock"],
            read_only=read_only,
        )


@dataclass(frozen=True)
class Selector:
    """An agent.select entry: issues carrying any of ``labels`` (when given) of one of ``kinds`` (when given)."""

    profile: str
    labels: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentChoice:
    """The agent that runs an issue: the policy's own (profile None) or one of agent.profiles, and why."""

    profile: str | None
    agent: AgentSettings
    why: str

    @property
    def name(self) -> str:
        return self.profile or "default"


@dataclass(frozen=True)
class Check:
    command: str
    timeout_seconds: float = CHECK_TIMEOUT_SECONDS


@dataclass(frozen=True)
class GateSettings:
    blocked_paths: tuple[str, ...]
    require_changes: bool
    allow_actions: tuple[str, ...]
    allow_test_deletion: bool
    require_test_changes: bool
    review: bool
    max_binary_file_bytes: int | None = None  # None: no limit
    max_changed_bytes: int | None = None
    max_changed_files: int | None = None
    max_changed_lines: int | None = None
    test_globs: tuple[str, ...] | None = None  # None: gates.DEFAULT_TEST_GLOBS
    tdd: Check | None = None  # {tests} in its command: the changed test files
    ignore_untracked: tuple[str, ...] = ()  # .gitignore lines the capture adds: tool caches are not the agent's change

    def as_dict(self) -> dict[str, Any]:
        """The set keys as the policy spells them (what a snapshot carries)."""
        out: dict[str, Any] = {}
        for key, value in vars(self).items():
            if isinstance(value, Check):
                value = {"command": value.command, "timeout_seconds": value.timeout_seconds}
            elif isinstance(value, tuple):
                value = list(value)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class ProofSettings:
    labels: tuple[str, ...]
    paths: tuple[str, ...]
    when_acceptance_criteria: bool
    app: Mapping[str, Any] | None = None  # proof.app as written (scenario.app_spec reads it)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "labels": list(self.labels),
            "paths": list(self.paths),
            "when_acceptance_criteria": self.when_acceptance_criteria,
        }
        if self.app is not None:
            out["app"] = dict(self.app)
        return out


@dataclass(frozen=True)
class PlanSettings:
    max_children: int
    child_concurrency: int
    integration_branch_template: str


@dataclass(frozen=True)
class SandboxSettings:
    mode: str
    read_only: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    agent_hosts: tuple[str, ...] = ()
    check_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class DaemonSettings:
    priority_labels: tuple[str, ...] = ()
    unscoped_parallel: bool = False
    retry_base_seconds: float = 5.0
    retry_cap_seconds: float = 300.0
    shutdown_deadline_seconds: float = 60.0
    workers: str = "warm"
    start_spacing_seconds: float = 0.1


@dataclass(frozen=True)
class BudgetSettings:
    """limits.budget: caps on what agent runs spend, per issue and per UTC day (None: no limit)."""

    tokens_per_issue: int | None = None
    tokens_per_day: int | None = None
    agent_minutes_per_issue: float | None = None
    agent_minutes_per_day: float | None = None
    agent_runs_per_issue: int | None = None
    agent_runs_per_day: int | None = None
    price_per_million_tokens: float | None = None
    currency: str = "USD"

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Settings:
    tracker: TrackerSettings
    labels: Mapping[str, Label]
    branch_template: str
    pr_title_template: str
    rules: str
    agent: AgentSettings
    checks: Mapping[str, Check]
    gates: GateSettings
    proof: ProofSettings
    rework_iterations: int  # limits.rework_iterations
    idle_workspaces: int  # limits.idle_workspaces: worktrees kept for reuse
    sandbox: SandboxSettings
    secret_env: tuple[str, ...]  # secrets.env
    plan: PlanSettings
    daemon: DaemonSettings
    agent_profiles: Mapping[str, AgentSettings] = field(default_factory=dict)  # agent.profiles
    agent_select: tuple[Selector, ...] = ()  # agent.select
    budget: BudgetSettings = field(default_factory=BudgetSettings)  # limits.budget

    def agent_for(self, labels: Iterable[str]) -> AgentChoice:
        """Which agent runs an issue carrying ``labels``: the first agent.select entry that matches, else the policy's
        own agent. The labels are the maintainers' (only people who can label issues choose)."""
        names = set(labels)
        kind = (
            "child"
            if self.labels["child"].name in names
            else "parent"
            if self.labels["plan_auto"].name in names
            else "plain"
        )
        for i, sel in enumerate(self.agent_select):
            hit = sorted(names & set(sel.labels))
            if (sel.labels and not hit) or (sel.kinds and kind not in sel.kinds):
                continue
            why = " and ".join(
                x
                for x in (
                    f"the issue carries {', '.join(hit)}" if hit else "",
                    f"it is a {kind} issue" if sel.kinds else "",
                )
                if x
            )
            return AgentChoice(
                sel.profile, self.agent_profiles[sel.profile], f"agent.select[{i}]: {why or 'any issue'}"
            )
        why = "no agent.select entry matches" if self.agent_select else "the policy's agent section"
        return AgentChoice(None, self.agent, why)

    def snapshot(self) -> dict[str, Any]:
        """The plain, JSON-ready part that guards read from a snapshot."""
        return {
            "gates": self.gates.as_dict(),
            "limits": {"rework_iterations": self.rework_iterations, "budget": self.budget.as_dict()},
            "proof": self.proof.as_dict(),
            "checks": sorted(self.checks),
            "plan": {
                "max_children": self.plan.max_children,
                "child_concurrency": self.plan.child_concurrency,
                "integration_branch_template": self.plan.integration_branch_template,
            },
        }


# building ------------------------------------------------------------------------------------


class _Section:
    """A section of the merged policy over the same section of the bundled one."""

    def __init__(self, data: Mapping[str, Any], bundled: Mapping[str, Any], name: str) -> None:
        own, base = data.get(name), bundled.get(name)
        self.own: Mapping[str, Any] = own if isinstance(own, Mapping) else {}
        self.base: Mapping[str, Any] = base if isinstance(base, Mapping) else {}

    def __getitem__(self, key: str) -> Any:
        """The policy's value, else the bundled policy's (which sets every key read this way)."""
        return self.own[key] if key in self.own else self.base[key]

    def get(self, key: str) -> Any:
        """An optional key: the policy's value or None."""
        return self.own.get(key)


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _agent(spec: Mapping[str, Any], base: Mapping[str, Any]) -> AgentSettings:
    """An agent.profiles entry: its own keys, and the agent section's timeouts where it sets none."""
    options = {k: v for k, v in spec.items() if k not in ("profiles", "select")}
    for key in ("timeout_seconds", "idle_timeout_seconds"):
        options.setdefault(key, base[key])
    return AgentSettings(
        kind=str(options["kind"]),
        timeout_seconds=options["timeout_seconds"],
        idle_timeout_seconds=options["idle_timeout_seconds"],
        command=_opt_str(options.get("command")),
        model=_opt_str(options.get("model")),
        options=options,
    )


def _check(spec: Mapping[str, Any]) -> Check:
    timeout = spec.get("timeout_seconds")
    return Check(str(spec["command"]), CHECK_TIMEOUT_SECONDS if timeout is None else timeout)


def build(data: Mapping[str, Any], bundled: Mapping[str, Any]) -> Settings:
    """The settings of a merged, valid policy ``data``; ``bundled`` is policies/default.yaml's data."""
    tracker, agent = _Section(data, bundled, "tracker"), _Section(data, bundled, "agent")
    profiles = agent.own.get("profiles") or {}
    agent_options = {k: v for k, v in agent.own.items() if k not in ("profiles", "select")}
    agent_options.update(kind=agent["kind"])
    agent_options.update(timeout_seconds=agent["timeout_seconds"], idle_timeout_seconds=agent["idle_timeout_seconds"])
    gates = _Section(data, bundled, "gates")
    proof, plan, limits = (_Section(data, bundled, n) for n in ("proof", "plan", "limits"))
    tdd = gates.get("tdd")
    globs = gates.get("test_globs")
    labels: Mapping[str, Any] = data["labels"] if isinstance(data.get("labels"), Mapping) else bundled["labels"]
    daemon = data.get("daemon") or {}
    top = {k: data[k] if k in data else bundled[k] for k in ("branch_template", "pr_title_template")}
    return Settings(
        tracker=TrackerSettings(
            kind=str(tracker["kind"]),
            base_branch=str(tracker["base_branch"]),
            claim_lease_seconds=tracker["claim_lease_seconds"],
            remote=str(tracker.get("remote") or DEFAULT_REMOTE),
            claim_settle_seconds=float(tracker.get("claim_settle_seconds") or 0),
            owner=_opt_str(tracker.get("owner")),
            repo=_opt_str(tracker.get("repo")),
            api_url=_opt_str(tracker.get("api_url")),
            runner_login=_opt_str(tracker.get("runner_login")),
            app_slug=_opt_str(tracker.get("app_slug")),
        ),
        labels={
            role: Label(str(v["name"]), str(v.get("color", DEFAULT_LABEL_COLOR)), str(v.get("description", "")))
            for role, v in labels.items()
        },
        branch_template=str(top["branch_template"]),
        pr_title_template=str(top["pr_title_template"]),
        rules=str(data.get("rules") or ""),  # deleted: no rules
        agent=AgentSettings(
            kind=str(agent["kind"]),
            timeout_seconds=agent["timeout_seconds"],
            idle_timeout_seconds=agent["idle_timeout_seconds"],
            command=_opt_str(agent.get("command")),
            model=_opt_str(agent.get("model")),
            options=agent_options,
        ),
        agent_profiles={name: _agent(spec, agent_options) for name, spec in profiles.items()},
        agent_select=tuple(
            Selector(str(e["profile"]), _strs(e.get("labels")), _strs(e.get("kinds")))
            for e in agent.own.get("select") or ()
        ),
        checks={name: _check(spec) for name, spec in (data.get("checks") or {}).items()},
        gates=GateSettings(
            blocked_paths=_strs(gates["blocked_paths"]),
            require_changes=bool(gates["require_changes"]),
            allow_actions=_strs(gates["allow_actions"]),
            allow_test_deletion=bool(gates["allow_test_deletion"]),
            require_test_changes=bool(gates["require_test_changes"]),
            review=bool(gates["review"]),
            max_binary_file_bytes=gates.get("max_binary_file_bytes"),  # null deletes the limit
            max_changed_bytes=gates.get("max_changed_bytes"),
            max_changed_files=gates.get("max_changed_files"),
            max_changed_lines=gates.get("max_changed_lines"),
            test_globs=_strs(globs) if globs else None,
            tdd=_check(tdd) if isinstance(tdd, Mapping) else None,
            ignore_untracked=_strs(gates["ignore_untracked"]),
        ),
        proof=ProofSettings(
            labels=_strs(proof["labels"]),
            paths=_strs(proof["paths"]),
            when_acceptance_criteria=bool(proof["when_acceptance_criteria"]),
            app=proof.get("app"),
        ),
        rework_iterations=int(limits["rework_iterations"]),
        idle_workspaces=int(limits["idle_workspaces"]),
        budget=_budget(limits.get("budget") or {}),
        sandbox=_sandbox(data.get("sandbox") if "sandbox" in data else bundled["sandbox"], bundled["sandbox"]),
        secret_env=_strs(_Section(data, bundled, "secrets")["env"]),
        plan=PlanSettings(
            max_children=int(plan["max_children"]),
            child_concurrency=int(plan["child_concurrency"]),
            integration_branch_template=str(plan["integration_branch_template"]),
        ),
        daemon=DaemonSettings(
            priority_labels=_strs(daemon.get("priority_labels")),
            unscoped_parallel=bool(daemon.get("unscoped_parallel", DaemonSettings.unscoped_parallel)),
            retry_base_seconds=float(daemon.get("retry_base_seconds", DaemonSettings.retry_base_seconds)),
            retry_cap_seconds=float(daemon.get("retry_cap_seconds", DaemonSettings.retry_cap_seconds)),
            workers=str(daemon.get("workers", DaemonSettings.workers)),
            start_spacing_seconds=float(daemon.get("start_spacing_seconds", DaemonSettings.start_spacing_seconds)),
            shutdown_deadline_seconds=float(
                daemon.get("shutdown_deadline_seconds", DaemonSettings.shutdown_deadline_seconds)
            ),
        ),
    )


def _budget(raw: Mapping[str, Any]) -> BudgetSettings:
    """limits.budget; the schema has checked the shape."""
    known = {f.name for f in fields(BudgetSettings)}
    return BudgetSettings(**{k: v for k, v in raw.items() if k in known and v is not None})


def _sandbox(raw: Any, bundled: Mapping[str, Any]) -> SandboxSettings:
    """``sandbox: none`` is ``mode: none``; the schema has checked the shape."""
    if not isinstance(raw, Mapping):
        return SandboxSettings(mode=str(raw or bundled["mode"]))
    net = raw.get("network") or {}
    return SandboxSettings(
        mode=str(raw.get("mode") or bundled["mode"]),
        read_only=_strs(raw.get("read_only")),
        writable=_strs(raw.get("writable")),
        env=_strs(raw.get("env")),
        agent_hosts=_strs(net.get("agent")),
        check_hosts=_strs(net.get("checks")),
    )
