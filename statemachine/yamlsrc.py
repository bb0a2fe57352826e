"""Reads YAML with ruamel so that every key and item keeps its line:column, and maps key paths back to them."""

from __future__ import annotations

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


def to_plain(node: Any) -> Any:
    """Turn ruamel round-trip containers and scalar subclasses into plain Python values."""
    if isinstance(node, dict):
        return {
            to_plain(str(k)) if not isinstance(k, (int, float, bool)) or k is None else k: to_plain(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [to_plain(v) for v in node]
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

    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        tree = yaml.load(text)
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
    try:
        data = to_plain(tree)
    except RecursionError:  # an anchor that contains its own alias (&a [*a]) at the top level
        raise PolicyError(
            [
                Problem(
                    file,
                    1,
                    1,
                    (),
                    "cannot read YAML: an alias refers to the node that contains it",
                    "remove the recursive anchor",
                )
            ]
        ) from None
    return Document(file=file, tree=tree, data=data)


def load_file(path: Path, display: str | None = None) -> Document:
    from statemachine.errors import PolicyError

    name = display or str(path)
    try:
        raw = path.read_bytes()
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
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyError([Problem(name, line, 1, (), "the file is not UTF-8 text", "save it as UTF-8")]) from None
    import hashlib

    doc = load_text(text, name)
    doc.path = path
    doc.digest = hashlib.sha256(raw).hexdigest()
    return doc
