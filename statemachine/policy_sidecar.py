"""Writes each bundled policy's ``NAME.parsed.json`` beside it: its data and the digest of the bytes it was parsed
from, once the policy passed every check. statemachine/yamlsrc.py reads it instead of parsing the bundled YAML again
(most of a cold `orch lint`); tests/test_policy_file.py keeps it in sync. Run ``python -m statemachine.policy_sidecar``
after editing a bundled policy."""

from __future__ import annotations

import json
from pathlib import Path


def parsed_sidecar(path: Path) -> str:
    """The text of ``path``'s sidecar; raises PolicyError when the policy has a problem."""
    import hashlib

    from statemachine import catalog, policy
    from statemachine.yamlsrc import load_text

    raw = path.read_bytes()
    data = load_text(raw.decode("utf-8"), path.name).data
    policy.check(data, [load_text(raw.decode("utf-8"), path.name)], catalog.builtin())  # raises on any problem
    from statemachine import resources

    out = {"digest": hashlib.sha256(raw).hexdigest(), "checked_with": resources.policy_checks_digest(), "data": data}
    return json.dumps(out, indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    from statemachine import resources

    for name in resources.bundled_policy_names():
        sidecar = resources.bundled_policy(name).with_suffix(".parsed.json")
        sidecar.write_text(parsed_sidecar(resources.bundled_policy(name)), encoding="utf-8")
        print(f"wrote {sidecar}")


if __name__ == "__main__":
    main()
