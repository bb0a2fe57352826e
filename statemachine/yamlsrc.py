"""Reads YAML with ruamel so that every key and item keeps its line:column, and maps key paths back to them."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from statemachine.errors import Problem

Path_ = tuple[str | int, ...]


@dataclass
class Document:
    """A parsed YAML file: the plain data and the round-trip tree that knows positions."""

    file: str
    tree: Any  # ruamel CommentedMap / CommentedSeq / scalar
    data: Any  # plain dict / list / scalar
    path: Path | None = None  # the file it was read from (load_file)
    digest: str = ""  # the SHA-256 of the bytes parsed (load_file): what the policy cache keys on
    checked: bool = False  # a bundled policy as shipped, which passed every check of this orch (its sidecar says)

    def position(self, path: Path_) -> tuple[int, int, int] | None:
        """Return (depth matched, line, column), 1-based, of the deepest node on ``path``."""
        node = self.tree
        best: tuple[int, int, int] | None = (0, 1, 1)
        for depth, part in enumerate(path, start=1):
            try:
                if isinstance(part, int) and isinstance(node, list):  # ruamel's CommentedSeq keeps .lc
                    line, col = node.lc.item(part)  # type: ignore[attr-defined]
                    node = node[part]
                elif isinstance(node, dict) and part in node:
                    line, col = node.lc.key(part)  # type: ignore[attr-defined]
                    node = node[part]
                else:
                    return best
            except (AttributeError, KeyError, IndexError, TypeError):
                return best
            best = (depth, line + 1, col + 1)
        return best


# Limits on what is parsed: ruamel's pure-Python parser takes about 0.1 ms per YAML node, so these keep the worst
# file orch accepts to a second or two (`orch lint` must answer, also for a hostile file). The bundled default policy
# is about 17 KiB, 1,150 nodes (keys and values) and 760 values.
MAX_BYTES = 128 * 1024  # refused before parsing
MAX_NODES = 10_000  # keys, values and aliases as written: refused while parsing
MAX_VALUES = 100_000  # values after aliases are expanded ("billion laughs"): refused while converting


class _Unreadable(Exception):
    """Raised while converting: the YAML cannot become plain data (``path``: where, in the tree)."""

    def __init__(self, path: Path_, message: str, hint: str) -> None:
        super().__init__(message)
        self.path, self.message, self.hint = path, message, hint


@dataclass
class _Budget:
    left: int
    seen: set[int]  # containers converted once: meeting one again is an alias
    active: set[int]  # containers being converted: meeting one of them is an alias inside its own anchor


class _TooManyNodes(Exception):
    def __init__(self, line: int, column: int) -> None:
        super().__init__(f"more than {MAX_NODES} nodes")
        self.line, self.column = line, column


def _counting_composer() -> Any:
    """ruamel's composer, stopping after MAX_NODES nodes (each key, value and alias), at the node's position."""
    from ruamel.yaml.composer import Composer

    class Counting(Composer):
        nodes = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.nodes += 1
            if self.nodes > MAX_NODES:
                mark = self.parser.peek_event().start_mark
                raise _TooManyNodes(mark.line + 1, mark.column + 1)
            return super().compose_node(parent, index)

    return Counting


def to_plain(node: Any, limit: int = MAX_VALUES) -> Any:
    """Turn ruamel round-trip containers and scalar subclasses into plain Python values. Aliases are expanded (an
    alias shares its anchor's node); more than ``limit`` values in all, or an alias inside its own anchor, raise
    _Unreadable instead of running out of time or memory (the "billion laughs")."""
    return _plain(node, _Budget(limit, set(), set()), (), None)


def _plain(node: Any, budget: _Budget, path: Path_, alias: Path_ | None) -> Any:
    budget.left -= 1
    if budget.left < 0:
        raise _Unreadable(
            alias or path,
            f"the YAML expands to more than {MAX_VALUES} values"
            + (" through aliases (*name repeats what its &name anchor holds)" if alias else ""),
            "a policy needs only a few aliases: write the values out, or remove the aliases that repeat others",
        )
    if isinstance(node, (dict, list)):
        key = id(node)
        if key in budget.active:
            raise _Unreadable(
                path, "cannot read YAML: an alias refers to the node that contains it", "remove the recursive anchor"
            )
        if key in budget.seen and alias is None:
            alias = path
        budget.seen.add(key)
        budget.active.add(key)
        try:
            if isinstance(node, dict):
                return {
                    _scalar(str(k)) if not isinstance(k, (int, float, bool)) or k is None else k: _plain(
                        v, budget, path + (str(k),), alias
                    )
                    for k, v in node.items()
                }
            return [_plain(v, budget, path + (i,), alias) for i, v in enumerate(node)]
        finally:
            budget.active.discard(key)
    return _scalar(node)


def _scalar(node: Any) -> Any:
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):  # "\ud83d\ude00" escapes (JSON style) arrive as surrogates: pair them, replace strays
        return str(node).encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return str(node)


def load_text(text: str, file: str) -> Document:
    """Parse YAML text; a syntax error becomes a located PolicyError."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    from statemachine.errors import PolicyError

    if len(text) * 4 > MAX_BYTES and len(raw := text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise PolicyError([_too_big(file, raw, len(raw))])
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    yaml.Composer = _counting_composer()
    try:
        tree = yaml.load(text)
    except _TooManyNodes as exc:
        raise PolicyError(
            [
                Problem(
                    file,
                    exc.line,
                    exc.column,
                    (),
                    f"the YAML holds more than {MAX_NODES:,} keys, values and aliases; orch stopped reading here",
                    "keep only what differs from the bundled default: a policy holds a few hundred",
                )
            ]
        ) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise PolicyError(
            [Problem(file, line, col, (), f"YAML syntax error: {what}", "fix the YAML syntax at that position")]
        ) from None
    except YAMLError as exc:
        raise PolicyError([Problem(file, 1, 1, (), f"YAML error: {exc}", "fix the YAML syntax")]) from None
    except (ValueError, RecursionError, TypeError, AttributeError) as exc:  # e.g. bad unicode escapes, absurd nesting,
        # and ruamel's own failures on a recursive merge key (&a {<<: *a}) or a sequence inside a key ([[a]]: 1)
        raise PolicyError([Problem(file, 1, 1, (), f"cannot read YAML: {exc}", "fix the YAML syntax")]) from None
    doc = Document(file=file, tree=tree, data=None)
    try:
        doc.data = to_plain(tree)
    except _Unreadable as exc:  # too many values (aliases) or an alias inside its own anchor
        raise PolicyError([_located(doc, exc.path, exc.message, exc.hint)]) from None
    except RecursionError:  # absurd nesting
        raise PolicyError(
            [Problem(file, 1, 1, (), "cannot read YAML: it nests too deeply", "flatten the structure")]
        ) from None
    return doc


def _located(doc: Document, path: Path_, message: str, hint: str) -> Problem:
    """A problem at ``path``, the node an alias stands for: placed at its key, or at the list holding it (an alias
    item's own position is its anchor's)."""
    pos = doc.position(path[:-1] if path and isinstance(path[-1], int) else path) or (0, 1, 1)
    return Problem(doc.file, pos[1], pos[2], path, message, hint)


def _too_big(name: str, raw: bytes, size: int) -> Problem:
    """The file is over MAX_BYTES: placed where the limit is crossed (nothing was parsed)."""
    start = raw.rfind(b"\n", 0, MAX_BYTES) + 1
    line = raw.count(b"\n", 0, start) + 1
    return Problem(
        name,
        line,
        MAX_BYTES - start + 1,
        (),
        f"the file is {size:,} bytes, over orch's limit of {MAX_BYTES:,} bytes ({MAX_BYTES // 1024} KiB) for a policy; "
        "it was not read",
        "keep only what differs from the bundled default: a policy is a few kilobytes",
    )


def load_file(path: Path, display: str | None = None) -> Document:
    from statemachine.errors import PolicyError

    name = display or str(path)
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as fh:  # a FIFO: no wait
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise PolicyError(
                    [Problem(name, 1, 1, (), "not a regular file", "name the policy file itself (a YAML file)")]
                )
            raw = fh.read(MAX_BYTES + 1)
            size = max(os.fstat(fh.fileno()).st_size, len(raw))
    except FileNotFoundError:
        raise PolicyError(
            [
                Problem(
                    name,
                    1,
                    1,
                    (),
                    "file not found",
                    "run `orch setup` to write a starter policy, or pass --policy PATH",
                )
            ]
        ) from None
    except OSError as exc:
        raise PolicyError(
            [Problem(name, 1, 1, (), f"cannot read the file: {exc.strerror}", "check its permissions")]
        ) from None
    if len(raw) > MAX_BYTES:
        raise PolicyError([_too_big(name, raw, size)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyError([Problem(name, line, 1, (), "the file is not UTF-8 text", "save it as UTF-8")]) from None
    import hashlib

    digest = hashlib.sha256(raw).hexdigest()
    sidecar = _parsed_sidecar(path, digest)
    if sidecar is not None:  # a bundled policy as shipped: its data, checked when orch was built
        from statemachine import resources

        checked = sidecar.get("checked_with") == resources.policy_checks_digest()
        return Document(name, None, sidecar["data"], path, digest, checked)
    doc = load_text(text, name)
    doc.path = path
    doc.digest = digest
    return doc


def _parsed_sidecar(path: Path, digest: str) -> dict[str, Any] | None:
    """The sidecar (its ``data``, and the ``checked_with`` digest of the checks it passed) of a bundled policy from the ``NAME.parsed.json`` shipped beside it, when that was made from exactly
    these bytes (``python -m statemachine.policy_sidecar`` writes it; tests/test_policy_file.py keeps it in sync): the
    positioned YAML parse of the bundled policy is most of a cold `orch lint`. Only orch's own bundled folder is
    trusted for it; a digest that differs (an edited install) parses the YAML as usual. The sidecar carries no
    positions: a problem is located in the user's file, which is parsed as always."""
    import json

    from statemachine import resources

    try:
        if path.parent.resolve() != resources.data_dir("policies").resolve():
            return None
        sidecar = json.loads(path.with_suffix(".parsed.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(sidecar, dict) and sidecar.get("digest") == digest and "data" in sidecar
    return sidecar if ok else None
