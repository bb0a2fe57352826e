# Some tests import tests/agentkit.py by its top-level name (pytest puts tests/ on sys.path). mypy can map one file to one
# module name only, so this stub, found through mypy_path in pyproject.toml, gives that top-level name the types of
# tests.agentkit.
from tests.agentkit import *  # noqa: F403
