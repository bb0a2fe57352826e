"""What one `orch run` loads, loaded once: the daemon's fork server imports this module before it forks any run.

Importing it is its whole purpose (multiprocessing's fork-server preload takes module names, not calls): every
module a run needs to claim, prepare, run an agent, inspect, check, publish and report is imported here, and the
validator classes the run builds are built, so that a run forked from the server starts with all of it in place
(copy-on-write) instead of spending a quarter of a second of CPU importing it again. Nothing here reads a repository,
a policy or a credential: the server is started before any run and serves every repository the daemon serves. The
one question it answers ahead is the machine's: whether bubblewrap can build a jail here (its probe, with the
daemon's ORCH_BWRAP and PATH), which every run would otherwise ask again with two processes. A module missing from
this list costs time, never correctness: the forked run imports it itself
(`test_a_warm_run_imports_nothing_the_server_did_not_load` holds this list to what a run imports).
"""

from __future__ import annotations

import importlib

MODULES = (
    # the command and its lifecycle
    "statemachine.cli",
    "statemachine.commands.step",
    "statemachine.engine",
    "statemachine.registry",
    "statemachine.runtime",
    "statemachine.claims",
    "statemachine.preflight",
    "statemachine.prompting",
    "statemachine.resources",
    "statemachine.policy_cache",
    "statemachine.policy_schema",
    "statemachine.ledger",
    "statemachine.policy_problems",
    "statemachine.yamlsrc",
    "statemachine.images",
    "statemachine.scenario",
    "statemachine.proof",
    "statemachine.proof.checks",
    "statemachine.proof.publication",
    "statemachine.proof.run",
    # the effects
    "statemachine.adapters.agents",
    "statemachine.adapters.agent_base",
    "statemachine.adapters.agent_git",
    "statemachine.adapters.codex",
    "statemachine.adapters.claude",
    "statemachine.adapters.local",
    "statemachine.adapters.github",
    "statemachine.adapters.jail",
    "statemachine.adapters.process",
    "statemachine.adapters.tools",
    "statemachine.adapters.gitrun",
    # what they import lazily
    "ruamel.yaml",  # a policy of the repository's own, parsed when it changed since the policy cache last saw it
    "jsonschema",
    "jsonschema.validators",
    "plumbum",
    "plumbum.cmd",
    "urllib.request",
    "email.parser",
    "difflib",
    "shlex",
    "zipfile",
)


def load() -> list[str]:
    """Import every module of MODULES that this installation has, and build the command line's parser; the names it
    could not import."""
    missing = []
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    from statemachine.cli import build_parser

    build_parser()
    from statemachine.policy_cache import _code_stamp

    _code_stamp()  # the state of orch's own modules, which key the policy cache: read once, not by every run
    from statemachine.runtime import probe_jail

    probe_jail()  # whether bubblewrap can build a jail on this machine (two processes): asked once, not by every run
    return missing


MISSING = load()
