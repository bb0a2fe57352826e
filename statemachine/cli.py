"""Argument parsing only; every subcommand lives in commands/ and returns an exit code."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence

from statemachine import __version__

TYPE_CHECKING = False  # mypy reads it as True; `typing` itself costs `orch --help` a few milliseconds
if TYPE_CHECKING:  # imported once the arguments parsed: `orch --help` and `--version` need none of them
    import pathlib

    from statemachine.errors import OrchError
    from statemachine.output import Output


def Path(text: str) -> pathlib.Path:  # noqa: N802 (argparse names the type in an error message: "invalid Path value")
    """``pathlib.Path``, imported when an argument needs one."""
    import pathlib

    return pathlib.Path(text)


def repo_folder(text: str) -> pathlib.Path:
    """``--repo``: a folder (a usage error when it names a file, before anything is opened)."""
    import os

    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is a file, not a folder: give the repository's folder (or any folder inside it)"
        )
    return Path(text)


ISSUE_MAX = 2**31 - 1  # GitHub's issue numbers are GraphQL Ints (32 bits); SQLite holds them too


def issue_number(text: str) -> int:
    """An issue number as the command line writes it: a whole number from 1 to ISSUE_MAX (a usage error otherwise,
    before anything is opened)."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= ISSUE_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not an issue number: write a whole number from 1 to {ISSUE_MAX}")
    return number


def _common(json_flag: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--repo", type=repo_folder, default=None, help="the target repository (default: the current one)")
    p.add_argument("--policy", type=Path, default=None, help="policy file (default: REPO/.orch/policy.yaml)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print one versioned JSON object")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more to stderr")
    return p


@functools.cache  # parsing never changes it: built once per process (a warm daemon run forks with it built)
def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="orch",
        description="Turn labelled issues into isolated coding-agent runs that end as draft pull requests.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 invalid policy, 4 nothing can fire, 5 blocked, 70 internal error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"orch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("lint", parents=[common], help="check policy files")
    p.add_argument("files", nargs="*", type=Path, help="policy files (default: the repository's policy)")
    p.add_argument("--list", action="store_true", help="list the registered guards and actions with their parameters")

    for name, helptext in (
        ("step", "fire exactly one transition"),
        ("run", "step until the issue rests"),
        ("explain", "show every guard's verdict for the current state; changes nothing"),
    ):
        p = sub.add_parser(name, parents=[common], help=helptext)
        p.add_argument("--issue", type=issue_number, required=True, metavar="N")

    p = sub.add_parser("graph", parents=[common], help="draw the lifecycle (Mermaid or Graphviz dot)")
    p.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")

    p = sub.add_parser(
        "setup", parents=[common], help="write a starter policy, the prompts, .gitignore entries; labels"
    )
    p.add_argument("--dry-run", action="store_true", help="print every planned write and label change; change nothing")
    p.add_argument("--github-owner", default=None, metavar="O", help="GitHub owner (default: from origin)")
    p.add_argument("--github-repo", default=None, metavar="R", help="GitHub repository (default: from origin)")
    p.add_argument("--prepare-labels", action="store_true", help="create or update the policy's labels on the tracker")
    p.add_argument(
        "--tracker",
        choices=("local", "github"),
        default=None,
        help="the tracker the starter policy names (default: github when origin is a GitHub repository, else local)",
    )
    p.add_argument(
        "--actions", action="store_true", help="also write .github/workflows/orch.yml (GitHub Actions as the fleet)"
    )
    p.add_argument(
        "--orch-package",
        default=None,
        metavar="SPEC",
        help="with --actions: what the runners pip-install, pinned (default: where this orch came from)",
    )

    p = sub.add_parser("status", parents=[common], help="each labelled issue, its state, and why it cannot run")
    p.add_argument("--dry-run", action="store_true", help="accepted for compatibility: status never changes anything")

    p = sub.add_parser("daemon", parents=[common], help="serve eligible issues until stopped, or once")
    p.add_argument("--once", action="store_true", help="start what is eligible now, wait for it, then exit")
    p.add_argument(
        "--interval-seconds", type=float, default=30.0, metavar="S", help="seconds between polls (default 30)"
    )
    p.add_argument("--max-runs", type=int, default=None, metavar="N", help="stop after starting N runs")
    p.add_argument("--concurrency", type=int, default=1, metavar="K", help="issues at once (default 1)")
    p.add_argument(
        "--first",
        type=int,
        default=None,
        metavar="N",
        help="serve issue N before the others when it is eligible (the Actions workflow: its event's issue)",
    )
    p.add_argument(
        "--poll-cursor",
        default=None,
        metavar="FILE",
        help="carry where the last poll stopped in FILE, for a runner whose state does not last (the Actions workflow)",
    )
    p.add_argument(
        "--shutdown-deadline",
        type=float,
        default=None,
        metavar="S",
        help="on SIGINT/SIGTERM, seconds running issues may finish before they are stopped (default 60)",
    )
    p.add_argument("--http", default=None, metavar="HOST:PORT", help="serve the live state as JSON and a web page")

    sub.add_parser(
        "doctor", parents=[common], help="check the policy, origin, token, labels, base branch and agent CLI"
    )
    sub.add_parser("health", parents=[common], help="orch's version, Python, dependencies and agent CLIs found")

    p = sub.add_parser("show", parents=[common], help="an issue's run history and where its evidence is")
    p.add_argument("--issue", type=issue_number, required=True, metavar="N")

    p = sub.add_parser("prompt", parents=[common], help="print a rendered prompt for an issue; runs nothing")
    p.add_argument("--issue", type=issue_number, required=True, metavar="N")
    p.add_argument(
        "--template", default="implementation", choices=("implementation", "rework", "review", "proof", "planning")
    )

    p = sub.add_parser("demo", parents=[common], help="run one issue end to end in a temporary repository")
    p.add_argument("--keep", action="store_true", help="keep the temporary repository (its path is printed)")
    p.add_argument("--dir", type=Path, default=None, help="make the demo repository here instead of a temp folder")

    p = sub.add_parser("plan", parents=[common], help="a parent's plan and the state of its child issues")
    p.add_argument("--issue", type=issue_number, required=True, metavar="N")

    p = sub.add_parser("review", parents=[common], help="review an issue's draft pull request on the local tracker")
    p.add_argument("--issue", type=issue_number, required=True, metavar="N")
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument(
        "--request-changes", default=None, metavar="TEXT", help="request changes: the issue goes back to rework"
    )
    kind.add_argument(
        "--comment", default=None, metavar="TEXT", help="a review comment (with --file: on a line of the diff)"
    )
    kind.add_argument("--approve", action="store_true", help="approve (orch still never merges)")
    p.add_argument("--file", default=None, metavar="PATH", help="attach the text as an inline comment on this file")
    p.add_argument("--line", type=int, default=None, metavar="L", help="the line of --file")
    p.add_argument("--as", dest="author", default=None, metavar="LOGIN", help="reviewer (default: the local user)")

    p = sub.add_parser("proof", help="rerun acceptance proof on an issue's candidate, outside the lifecycle")
    psub = p.add_subparsers(dest="proof_command", metavar="TARGET")
    psub.required = True
    q = psub.add_parser(
        "auto", parents=[common], help="rerun the whole proof: the proof agent, the runner's browser run, every check"
    )
    q.add_argument("--issue", type=issue_number, required=True, metavar="N")
    q = psub.add_parser(
        "browser", parents=[common], help="run a browser scenario on the candidate and check what the runner captured"
    )
    q.add_argument("--issue", type=issue_number, required=True, metavar="N")
    q.add_argument(
        "--scenario", type=Path, default=None, metavar="F", help="scenario JSON (default: the run's last scenario.json)"
    )
    q.add_argument(
        "--base-url", default=None, metavar="U", help="an app already running there (default: start it from proof.app)"
    )
    for target in ("android", "ios"):
        psub.add_parser(target, parents=[common], help=f"{target} proof (not supported on this machine)").add_argument(
            "--issue", type=issue_number, required=True, metavar="N"
        )

    p = sub.add_parser("issue", help="the embedded local tracker")
    isub = p.add_subparsers(dest="issue_command", metavar="ACTION")
    isub.required = True
    q = isub.add_parser("new", parents=[common], help="file an issue")
    q.add_argument("title")
    body = q.add_mutually_exclusive_group()
    body.add_argument("--body", default=None)
    body.add_argument("--body-file", type=Path, default=None)
    q.add_argument("--label", action="append", default=[], metavar="L")
    isub.add_parser("list", parents=[common], help="list issues").add_argument(
        "--all", action="store_true", help="closed ones too"
    )
    isub.add_parser("show", parents=[common], help="show an issue").add_argument("number", type=issue_number)
    q = isub.add_parser("label", parents=[common], help="add (+L) or remove (-L) labels")
    q.add_argument("number", type=issue_number)
    q.add_argument("changes", nargs="*", metavar="+L|-L")  # -L is collected in main(): argparse reads it as an option
    q = isub.add_parser("comment", parents=[common], help="comment on an issue")
    q.add_argument("number", type=issue_number)
    q.add_argument("text")
    q.add_argument("--as", dest="author", default=None, metavar="LOGIN", help="author (default: the local user)")
    q = isub.add_parser("edit", parents=[common], help="edit an issue's title or body (who edited is recorded)")
    q.add_argument("number", type=issue_number)
    q.add_argument("--title", default=None)
    body = q.add_mutually_exclusive_group()
    body.add_argument("--body", default=None)
    body.add_argument("--body-file", type=Path, default=None)
    q.add_argument("--as", dest="author", default=None, metavar="LOGIN", help="editor (default: the local user)")
    q = isub.add_parser("close", parents=[common], help="close an issue")
    q.add_argument("number", type=issue_number)
    q = isub.add_parser("reopen", parents=[common], help="reopen an issue")
    q.add_argument("number", type=issue_number)

    p = sub.add_parser("prs", help="the local tracker's draft pull requests")
    psub = p.add_subparsers(dest="prs_command", metavar="ACTION")
    psub.required = True
    psub.add_parser("list", parents=[common], help="list open pull requests").add_argument(
        "--all", action="store_true", help="closed ones too"
    )
    psub.add_parser("show", parents=[common], help="a pull request and its diff stat").add_argument(
        "number", type=int, metavar="N"
    )
    psub.add_parser("close", parents=[common], help="close a pull request (its branch is kept)").add_argument(
        "number", type=int, metavar="N"
    )

    p = sub.add_parser("clean", parents=[common], help="remove worktrees and branches that finished runs left")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    return parser


def dispatch(args: argparse.Namespace, out: Output) -> int:
    from statemachine import commands

    return commands.run(args, out)


def _failed(out: Output, exc: OrchError) -> int:
    """Print an error the user can fix (and its JSON object with --json); its exit code."""
    if out.as_json:
        out.emit("error", {"error": exc.message, "hint": exc.hint, "exit_code": exc.exit_code})
    sys.stderr.write(f"orch: error: {exc}\n")
    return exc.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "issue_command", None) == "label":  # `orch issue label 3 -agent:review`: -L removes a label
        args.changes, extra = [*args.changes, *extra], []
        if not args.changes:
            parser.error("orch issue label: give at least one +LABEL to add or -LABEL to remove")
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    import logging  # after parsing: `--help`, `--version` and usage errors need none of these

    from statemachine.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, OrchError, PolicyError, disk_full
    from statemachine.output import Output

    out = Output(getattr(args, "json", False))

    level = logging.WARNING - 10 * min(getattr(args, "verbose", 0), 2)
    logging.basicConfig(level=level, format="orch: %(message)s", stream=sys.stderr)
    import signal

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    if hasattr(signal, "SIGTERM"):
        try:
            signal.signal(signal.SIGTERM, on_term)
        except ValueError:  # not the main thread (embedded use)
            pass
    try:
        return dispatch(args, out)
    except PolicyError as exc:
        if out.as_json:
            out.emit(
                "error",
                {"error": exc.message, "exit_code": exc.exit_code, "problems": [p.as_json() for p in exc.problems]},
            )
        sys.stderr.write(f"{exc}\n")
        return exc.exit_code
    except OrchError as exc:
        return _failed(out, exc)
    except KeyboardInterrupt:
        sys.stderr.write("orch: interrupted; run the same command again to resume\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:
        full = disk_full(exc)  # a full disk is the user's to fix, not a bug
        if full is not None:
            return _failed(out, full)
        import os
        import tempfile
        import time
        import traceback

        fd, path = tempfile.mkstemp(prefix=f"orch-crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log")
        with os.fdopen(fd, "w") as fh:
            fh.write(f"orch {__version__}, Python {sys.version.split()[0]}, argv: {sys.argv}\n\n")
            fh.write(traceback.format_exc())
        sys.stderr.write(
            f"orch: internal error (a bug in orch). The details are in {path}; "
            "please attach that file to a bug report.\n"
        )
        return EXIT_INTERNAL
