"""The demo's scripted coding agent: really edits the demo project, then writes its completion report."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

FUNCTION = '''

def longest_word(text: str) -> str:
    """Return the longest word in ``text`` (the first one on a tie); "" when there is none."""
    best = ""
    for word in text.split():
        word = word.strip(".,;:!?\\"'()")
        if len(word) > len(best):
            best = word
    return best
'''

TEST = """

class LongestWordTest(unittest.TestCase):
    def test_picks_the_longest(self) -> None:
        self.assertEqual(longest_word("a quick brownish fox"), "brownish")

    def test_first_wins_a_tie_and_punctuation_is_ignored(self) -> None:
        self.assertEqual(longest_word("cat, dog."), "cat")

    def test_empty_text(self) -> None:
        self.assertEqual(longest_word(""), "")
"""


def main() -> int:
    prompt = sys.stdin.read()
    print(f"demo agent: read a prompt of {len(prompt)} characters", flush=True)
    if "longest_word" not in prompt:
        print("demo agent: this scripted agent only knows the demo issue", flush=True)
        return 1
    root = Path.cwd()
    src, tests = root / "textstats.py", root / "test_textstats.py"
    src.write_text(src.read_text() + FUNCTION)
    print("demo agent: added longest_word to textstats.py", flush=True)
    text = tests.read_text().replace(
        "from textstats import count_words", "from textstats import count_words, longest_word"
    )
    tests.write_text(text + TEST)
    print("demo agent: added three tests to test_textstats.py", flush=True)
    report = {
        "status": "completed",
        "summary": "Added textstats.longest_word, which returns the longest word of a text (first one on a tie, "
        "punctuation stripped, empty string for empty text), with three unit tests.",
        "changed_files": ["test_textstats.py", "textstats.py"],
        "validation": [{"command": "python -m unittest", "result": "skipped", "output": "the runner runs the checks"}],
        "residual_risks": ["Words are split on whitespace only."],
    }
    Path(os.environ["ORCH_REPORT_PATH"]).write_text(json.dumps(report, indent=2))
    print("demo agent: wrote the completion report", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
