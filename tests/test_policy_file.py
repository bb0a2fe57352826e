"""The policy file as users edit it (issue 17, items 3 and 5): the schema of the file as written (derived from the
merged policy's schema, copied by `orch setup` for editors, checked by `orch lint` at the user's line:column), the
loader's limits on hostile or huge YAML, and prompt overrides checked by lint and the pre-commit hook at their line,
a broken symbolic link included."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from statemachine import policy_schema, resources
from statemachine.errors import PolicyError
from statemachine.yamlsrc import MAX_BYTES, MAX_NODES, MAX_VALUES
from tests.test_precommit_hook import Project, project  # noqa: F401  (the pre-commit project fixture)

ROOT = Path(__file__).resolve().parents[1]
POLICY = Path(".orch") / "policy.yaml"


def file_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(resources.schema("policy-file"))


def errors_of(validator: jsonschema.Draft202012Validator, data: Any) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]


def orch(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`orch ARGS` as its own process, as a user or pre-commit runs it (the timeout is only a safety net)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "statemachine", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


# the schema of the file as written --------------------------------------------------------------------------------


def test_the_bundled_policys_parsed_sidecar_is_in_sync_and_trusted_only_as_shipped(tmp_path: Path) -> None:
    from statemachine import policy_sidecar, resources, yamlsrc

    for name in resources.bundled_policy_names():
        path = resources.bundled_policy(name)
        sidecar = path.with_suffix(".parsed.json")
        assert sidecar.read_text(encoding="utf-8") == policy_sidecar.parsed_sidecar(path), (
            f"{sidecar} is stale: run `python -m statemachine.policy_sidecar`"
        )
        raw = path.read_bytes()
        parsed = yamlsrc.load_text(raw.decode("utf-8"), name).data
        doc = yamlsrc.load_file(path)
        assert doc.tree is None and doc.data == parsed  # served from the sidecar, the same data
        assert yamlsrc._parsed_sidecar(path, "0" * 64) is None  # other bytes: the YAML is parsed
        copy = tmp_path / path.name  # the same bytes outside orch's own folder: parsed, never the sidecar
        copy.write_bytes(raw)
        (tmp_path / sidecar.name).write_text(json.dumps({"digest": doc.digest, "data": {"forged": True}}))
        assert yamlsrc.load_file(copy).data == parsed


def test_the_bundled_policy_is_taken_as_checked_only_by_the_orch_that_checked_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linting the bundled policy as shipped runs no check again (its sidecar says this orch's checks passed it); a
    sidecar made with other checks (another schema, catalog or policy_problems.py) is checked afresh, and a policy
    that extends it always is."""
    from statemachine import policy, policy_problems, resources, yamlsrc

    monkeypatch.setenv("ORCH_POLICY_CACHE", "off")
    calls: list[str] = []
    real = policy_problems.schema_problems

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append("schema")
        return real(*args, **kwargs)

    monkeypatch.setattr(policy_problems, "schema_problems", counted)
    path = resources.bundled_policy("default")
    assert yamlsrc.load_file(path).checked
    shipped = policy.load(path)
    assert calls == [] and len(shipped.transitions) > 10
    monkeypatch.setattr(resources, "policy_checks_digest", lambda: "0" * 64)  # as if orch's checks had changed
    assert not yamlsrc.load_file(path).checked
    assert policy.load(path).data == shipped.data and calls == ["schema"]
    monkeypatch.undo()
    monkeypatch.setenv("ORCH_POLICY_CACHE", "off")
    monkeypatch.setattr(policy_problems, "schema_problems", counted)
    user = tmp_path / "policy.yaml"
    user.write_text("version: 1\nextends: default\nlimits:\n  rework_iterations: nine\n")
    with pytest.raises(PolicyError) as caught:
        policy.load(user)
    assert "rework_iterations" in str(caught.value.problems) and calls.count("schema") >= 2


def test_the_file_schema_is_derived_from_the_merged_schema_and_in_sync() -> None:
    merged = json.loads((ROOT / "schemas" / "policy.schema.json").read_text(encoding="utf-8"))
    derived = policy_schema.render(policy_schema.derive(merged))
    committed = (ROOT / "schemas" / "policy-file.schema.json").read_text(encoding="utf-8")
    assert committed == derived, "schemas/policy-file.schema.json is stale: run `python -m statemachine.policy_schema`"
    schema = json.loads(committed)
    assert policy_schema.file_schema() == schema  # what the loader validates a file with
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "required" not in schema and set(schema["properties"]) == set(merged["properties"])
    # whatever sits in a list keeps every rule: a transition still needs its trigger, source and dest
    assert schema["$defs"]["transition"] == merged["$defs"]["transition"]


def test_setup_writes_a_starter_the_file_schema_accepts_and_a_copy_for_editors(cli: Any, repo: Path) -> None:
    code, out, err = cli("setup", "--repo", repo)
    assert code == 0, out + err
    text = (repo / POLICY).read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=./policy.schema.json"
    copy = repo / ".orch" / "policy.schema.json"
    assert copy.read_bytes() == (resources.data_dir("schemas") / "policy-file.schema.json").read_bytes()
    editor = jsonschema.Draft202012Validator(json.loads(copy.read_text()))  # what an editor loads
    starter = YAML(typ="safe").load(text)
    assert errors_of(editor, starter) == []
    # the merged schema cannot check it (the reason the file schema exists): the starter leaves sections to the base
    merged = jsonschema.Draft202012Validator(resources.schema("policy"))
    assert len([e for e in merged.iter_errors(starter) if e.validator == "required"]) >= 5
    # a mistyped key, a wrong type and a wrong enum are refused, also under null (null removes a key)
    typo = YAML(typ="safe").load(text.replace("timeout_seconds: 1800", "timout_seconds: 1800"))
    assert errors_of(editor, typo) == ["agent: Additional properties are not allowed ('timout_seconds' was unexpected)"]
    assert errors_of(editor, {**starter, "tracekr": None}) != []
    assert errors_of(editor, {**starter, "agent": {"kind": "codx"}}) != []
    assert errors_of(editor, {**starter, "limits": {"rework_iterations": "two"}}) != []
    # what the merge allows is allowed: null removes a key, a section may hold only the key that differs
    assert errors_of(editor, {**starter, "checks": {"tests": None}, "labels": {"auto": {"name": "go"}}}) == []
    code, out, err = cli("lint", "--repo", repo)
    assert code == 0 and "ok: .orch/policy.yaml" in out, out + err
    code, out, err = cli("setup", "--repo", repo)
    assert code == 0 and "nothing to do" in out, out  # a second run changes nothing


def test_lint_reports_a_key_of_the_file_as_written_once_at_its_place(cli: Any, repo: Path) -> None:
    (repo / ".orch").mkdir()
    (repo / POLICY).write_text(
        "version: 1\nextends: default\ntracekr: null\nagent:\n  kind: codex\n  timout_seconds: 60\n"
        "labels:\n  auto:\n    colour: null\n"
    )
    code, out, err = cli("lint", "--repo", repo)
    assert code == 3, out + err
    lines = out.splitlines()
    # `tracekr: null` and `colour: null` vanish in the merge: only the file as written shows them
    assert ".orch/policy.yaml:3:1: tracekr: unknown key 'tracekr' (did you mean 'tracker'?)" in lines
    assert ".orch/policy.yaml:9:5: labels.auto.colour: unknown key 'colour' (did you mean 'color'?)" in lines
    # the merged policy and the file both have `timout_seconds`: one problem, said once
    assert [line for line in lines if "timout_seconds" in line] == [
        ".orch/policy.yaml:6:3: agent.timout_seconds: unknown key 'timout_seconds' (did you mean 'timeout_seconds'?)"
    ]
    assert lines[-1].startswith("3 problem(s) found")


def test_an_unknown_extends_still_reports_the_file_s_other_problems(cli: Any, repo: Path) -> None:
    (repo / ".orch").mkdir()
    (repo / POLICY).write_text("version: 1\nextends: defualt\nbogus: 1\nagent: {kind: codx}\n")
    code, out, err = cli("lint", "--repo", repo)
    assert code == 3, out + err
    assert ".orch/policy.yaml:2:1: extends: unknown bundled policy 'defualt' (did you mean 'default'?)" in out
    assert ".orch/policy.yaml:3:1: bogus: unknown key 'bogus'" in out
    assert ".orch/policy.yaml:4:9: agent.kind: 'codx' is not one of: command, codex, claude" in out


def test_orch_never_reads_the_editors_copy_of_the_schema(cli: Any, repo: Path, tmp_path: Path) -> None:
    (repo / ".orch").mkdir()
    (repo / POLICY).write_text("version: 1\nextends: default\n")
    # anyone who can commit could write it: a schema that refuses everything, or no JSON at all, changes nothing
    (repo / ".orch" / "policy.schema.json").write_text('{"not": {}}')
    code, out, err = cli("lint", "--repo", repo)
    assert code == 0, out + err
    (repo / ".orch" / "policy.schema.json").write_text("not json")
    (repo / POLICY).write_text("version: 1\nextends: default\nbogus: 1\n")
    code, out, err = cli("lint", "--repo", repo)
    assert code == 3 and ".orch/policy.yaml:3:1: bogus: unknown key 'bogus'" in out, out + err
    # setup updates a stale regular copy, but never writes through a symbolic link someone committed there
    (repo / ".orch" / "policy.schema.json").unlink()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (repo / ".orch" / "policy.schema.json").symlink_to(victim)
    code, out, err = cli("setup", "--repo", repo)
    assert code == 0 and victim.read_text() == "keep me\n", out + err
    (repo / ".orch" / "policy.schema.json").unlink()
    (repo / ".orch" / "policy.schema.json").write_text("{}")
    code, out, err = cli("setup", "--repo", repo)
    assert code == 0 and "update the policy file's JSON Schema" in out, out
    packaged = resources.data_dir("schemas") / "policy-file.schema.json"
    assert (repo / ".orch" / "policy.schema.json").read_bytes() == packaged.read_bytes()


# hostile or huge YAML ----------------------------------------------------------------------------------------------


def billion_laughs() -> str:
    lines = ["version: 1", "extends: default", "rules: ok", "lol:", '  a: &a ["lol", "lol", "lol", "lol", "lol"]']
    prev = "a"
    for name in "bcdefghij":
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
        prev = name
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_policy_is_refused_at_once(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(billion_laughs())
    res = orch(tmp_path, "lint", str(policy))
    assert res.returncode == 3, res.stdout + res.stderr
    # where the expansion crosses the limit: the first alias of `f:` on line 10 (e's 61,111 values after 67,900)
    assert (
        f"{policy}:10:3: lol.f[0]: the YAML expands to more than {MAX_VALUES} values through aliases" in res.stdout
    ), res.stdout
    assert "write the values out, or remove the aliases that repeat others" in res.stdout
    assert "Traceback" not in res.stderr


def test_a_huge_policy_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    head, padding = "version: 1\nextends: default\n", "# a comment line, one of very many\n"
    with policy.open("w") as fh:
        fh.write(head)
        fh.write(padding * (20 * 1024 * 1024 // len(padding)))  # 20 MiB
    res = orch(tmp_path, "lint", str(policy))
    assert res.returncode == 3, res.stdout + res.stderr
    line = 2 + (MAX_BYTES - len(head)) // len(padding) + 1  # where the limit is crossed
    m = re.search(
        rf"^{re.escape(str(policy))}:(\d+):(\d+): \(top level\): the file is ([\d,]+) bytes", res.stdout, re.M
    )
    assert m and int(m.group(1)) == line, res.stdout
    assert int(m.group(3).replace(",", "")) == policy.stat().st_size
    assert f"over orch's limit of {MAX_BYTES:,} bytes ({MAX_BYTES // 1024} KiB) for a policy; it was" in res.stdout
    # just under the limit is still read: comment lines, and one long line
    policy.write_text(head + padding * ((MAX_BYTES - len(head)) // len(padding)))
    res = orch(tmp_path, "lint", str(policy))
    assert res.returncode == 0 and f"ok: {policy}" in res.stdout, res.stdout + res.stderr
    policy.write_text(head + "#" * (MAX_BYTES - len(head) - 1) + "\n")
    res = orch(tmp_path, "lint", str(policy))
    assert res.returncode == 0 and f"ok: {policy}" in res.stdout, res.stdout + res.stderr


def test_a_policy_of_too_many_nodes_is_refused_while_it_is_parsed(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    head = "version: 1\nextends: default\nagent:\n  env:\n"
    policy.write_text(head + "".join(f"    V{i}: x\n" for i in range(MAX_NODES)))  # two nodes a line
    assert policy.stat().st_size < MAX_BYTES
    res = orch(tmp_path, "lint", str(policy))
    assert res.returncode == 3, res.stdout + res.stderr
    # nodes: the top mapping, version, 1, extends, default, agent, its mapping, env, its mapping: 9; then 2 a line,
    # so the one over the limit is the value `x` of the line below
    line = 4 + (MAX_NODES + 1 - 9 + 1) // 2
    column = len(f"    V{line - 5}: ") + 1
    assert (
        f"{policy}:{line}:{column}: (top level): the YAML holds more than {MAX_NODES:,} keys, values and aliases; "
        "orch stopped reading here"
    ) in res.stdout, res.stdout
    policy.write_text(head + "".join(f"    V{i}: x\n" for i in range(MAX_NODES // 4)))
    res = orch(tmp_path, "lint", str(policy))
    assert res.returncode == 0, res.stdout + res.stderr


def test_an_alias_inside_its_own_anchor_is_located(cli: Any, repo: Path) -> None:
    (repo / ".orch").mkdir()
    (repo / POLICY).write_text("&root\nversion: 1\nextends: default\nself: *root\n")
    code, out, err = cli("lint", "--repo", repo)
    assert code == 3, out + err
    assert ".orch/policy.yaml:4:1: self: cannot read YAML: an alias refers to the node that contains it" in out


def test_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "policy.yaml"
    os.mkfifo(fifo)
    res = orch(tmp_path, "lint", str(fifo), timeout=30)
    assert res.returncode == 3 and f"{fifo}:1:1: (top level): not a regular file" in res.stdout, res.stdout


# prompt overrides --------------------------------------------------------------------------------------------------


def test_lint_checks_prompt_overrides_at_their_line(cli: Any, repo: Path) -> None:
    prompts = repo / ".orch" / "prompts"
    prompts.mkdir(parents=True)
    (repo / POLICY).write_text("version: 1\nextends: default\n")
    (prompts / "implementation.md").write_text("# Task\n\nFix $issue_title.\nRead ${isue_body} first; it costs $5.\n")
    (prompts / "rewrk.md").write_text("a typo orch would silently ignore\n")
    (prompts / "setup-skill.md").write_text("a guide: $5 is fine here\n")
    (prompts / "notes.md").write_text("unrelated notes: $5\n")
    code, out, err = cli("lint", "--repo", repo)
    assert code == 3, out + err
    assert out.splitlines()[:-1] == [
        ".orch/prompts/implementation.md:4:6: $isue_body: unknown template variable $isue_body "
        "(did you mean $issue_body?)",
        ".orch/prompts/implementation.md:4:35: $: invalid placeholder (a lone $) in '$5.' "
        "(write $$ for a literal dollar sign)",
        ".orch/prompts/rewrk.md:1:1: (top level): orch renders no prompt named 'rewrk': this file is never used "
        "(name it rework.md)",
    ]
    code, data = cli.json("lint", "--repo", str(repo))
    (entry,) = data["files"]
    assert [(p["file"], p["line"], p["column"]) for p in entry["problems"]][:2] == [
        (".orch/prompts/implementation.md", 4, 6),
        (".orch/prompts/implementation.md", 4, 35),
    ]
    (prompts / "implementation.md").write_bytes(b"Fix $issue_title\ncaf\xe9\n")
    code, out, err = cli("lint", "--repo", repo)
    assert ".orch/prompts/implementation.md:2:4: (top level): the prompt template is not UTF-8 text" in out, out
    (prompts / "implementation.md").write_text("Fix $issue_title, costs $$5.\n")
    (prompts / "rewrk.md").unlink()
    code, out, err = cli("lint", "--repo", repo)
    assert code == 0 and out.strip() == f"ok: .orch/policy.yaml ({_transitions()} transitions)", out


def _transitions() -> int:
    data = YAML(typ="safe").load(resources.bundled_policy("default").read_text())
    return len(data["lifecycle"]["transitions"])


def test_lint_takes_a_prompt_file_as_argument(repo: Path) -> None:
    prompts = repo / ".orch" / "prompts"
    prompts.mkdir(parents=True)
    good, bad = prompts / "review.md", prompts / "proof.md"
    good.write_text("Review #$issue_number\n")
    bad.write_text("Prove\n\n  $acceptance_criterio\n")
    (prompts / "README.md").write_text("Our prompts cost $5 of tokens each.\n")
    args = ("review.md", "README.md", "proof.md", "setup-skill.md", "reveiw.md")
    res = orch(repo, "lint", *[f".orch/prompts/{a}" for a in args])
    assert res.returncode == 3, res.stdout + res.stderr
    assert res.stdout.splitlines() == [
        "ok: .orch/prompts/review.md (prompt template)",
        "ok: .orch/prompts/README.md (not a prompt orch renders; not checked)",
        ".orch/prompts/proof.md:3:3: $acceptance_criterio: unknown template variable $acceptance_criterio "
        "(did you mean $acceptance_criteria?)",
        ".orch/prompts/setup-skill.md:1:1: (top level): file not found (name an existing prompt file)",
        ".orch/prompts/reveiw.md:1:1: (top level): file not found (name an existing prompt file)",
        "3 problem(s) found; fix them and run `orch lint` again",
    ]


def test_a_broken_symlink_override_is_an_error_not_the_bundled_prompt(cli: Any, repo: Path) -> None:
    prompts = repo / ".orch" / "prompts"
    prompts.mkdir(parents=True)
    (repo / POLICY).write_text("version: 1\nextends: default\ntracker:\n  kind: local\n")
    (prompts / "implementation.md").symlink_to("shared/implementation.md")  # the target is missing
    code, out, err = cli("lint", "--repo", repo)
    assert code == 3
    assert (
        ".orch/prompts/implementation.md:1:1: (top level): the prompt override is a symbolic link to "
        "shared/implementation.md, which does not exist (or is not a file) "
        "(restore its target, or remove the link to use orch's bundled prompt)"
    ) in out, out
    assert cli("issue", "new", "--repo", repo, "Task", "--label", "agent:auto")[0] == 0
    code, out, err = cli("prompt", "--repo", repo, "--issue", "1")
    assert code == 1 and out == "", out
    assert "orch: error: .orch/prompts/implementation.md: the prompt override is a symbolic link to" in err, err
    code, out, err = cli("run", "--repo", repo, "--issue", "1", "--json")  # stopped before the claim, not after
    assert code == 4 and "the prompt override is a symbolic link to" in out, out + err
    code, shown = cli.json("issue", "show", "1", "--repo", repo)
    assert shown["lifecycle_state"] == "queued" and "agent:running" not in shown["labels"]
    (prompts / "shared").mkdir()
    (prompts / "shared" / "implementation.md").write_text("Do #$issue_number\n")
    code, out, err = cli("prompt", "--repo", repo, "--issue", "1")
    assert code == 0 and out.startswith("Do #1"), out + err


# the pre-commit hook -----------------------------------------------------------------------------------------------


def test_the_hook_checks_prompt_overrides(project: Project) -> None:  # noqa: F811
    project.write(".orch/policy.yaml", "version: 1\nextends: default\n")
    project.write(".orch/prompts/rework.md", "Rework $issue_number\n\nfindings: $findngs\n")
    project.write("prompts/rework.md", "not under .orch: $nothing\n")
    res = project.pre_commit(".orch/prompts/rework.md", "prompts/rework.md")
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert re.search(r"^orch lint\.+Failed$", res.stdout, re.M), out
    assert "- exit code: 3" in res.stdout, out
    assert ".orch/prompts/rework.md:3:11: $findngs: unknown template variable $findngs" in res.stdout, out
    assert "$nothing" not in out
    project.write(".orch/prompts/rework.md", "Rework $issue_number\n\nfindings: $findings\n")
    res = project.pre_commit(".orch/prompts/rework.md", ".orch/policy.yaml")
    assert res.returncode == 0, res.stdout + res.stderr
