"""One module per subcommand; each exposes a plain function that returns an exit code."""

from __future__ import annotations

import argparse
import importlib

from statemachine.output import Output

# subcommand -> module in this package (explicit, no import strings from user input)
COMMANDS = {
    "lint": "lint",
    "step": "step",
    "run": "step",
    "explain": "explain",
    "graph": "graph",
    "setup": "setup",
    "status": "status",
    "show": "show",
    "prompt": "prompt",
    "demo": "demo",
    "issue": "issue",
    "doctor": "doctor",
    "health": "health",
    "proof": "proof",
    "daemon": "daemon",
    "review": "review",
    "plan": "plan",
    "prs": "prs",
    "clean": "clean",
}


def run(args: argparse.Namespace, out: Output) -> int:
    module = importlib.import_module(f"statemachine.commands.{COMMANDS[args.command]}")
    result: int = module.main(args, out)
    return result
