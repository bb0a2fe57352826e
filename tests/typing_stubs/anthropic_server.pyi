# Some tests import tests/anthropic_server.py by its top-level name (pytest puts tests/ on sys.path). mypy can map one file to one
# module name only, so this stub, found through mypy_path in pyproject.toml, gives that top-level name the types of
# tests.anthropic_server.
from tests.anthropic_server import *  # noqa: F403
