"""The documentation points at what exists: no file outside the repository, one hooks
folder, the operator commands it names are real, and the "first bad night" is told in
README.md and deploy/OPERATIONS.md with the commands and the alert it needs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from quorumgate import cli

ROOT = Path(__file__).resolve().parents[1]
HOOKS = "/usr/local/libexec/quorumgate/hooks/"


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    return [ROOT / name for name in out if (ROOT / name).exists()]


def test_no_document_points_outside_the_repository() -> None:
    for path in tracked("*.md", "*.py", "*.toml", "*.sh"):
        if path.is_relative_to(ROOT / "tests"):
            continue
        text = path.read_text(errors="replace")
        assert "/work/" not in text, f"{path.relative_to(ROOT)} names a file outside the repo"


def test_one_hooks_folder() -> None:
    for path in tracked("*.md", "deploy/config/*.toml"):
        for line in path.read_text().splitlines():
            for found in re.findall(r"/[\w./-]*quorumgate/hooks/", line):
                assert found == HOOKS, f"{path.relative_to(ROOT)}: {found} (not {HOOKS})"


def test_readme_commands_exist() -> None:
    text = (ROOT / "README.md").read_text()
    using = text[text.index("## Using it"):text.index("## The first bad night")]
    for name in re.findall(r"`quorumgate ([a-z][a-z-]*)", using):
        assert name in cli.COMMANDS, name
    for name in ("retry", "force", "policy", "hold"):
        assert f"`quorumgate {name}" in using


def test_first_bad_night_sections() -> None:
    for doc in ("README.md", "deploy/OPERATIONS.md"):
        text = (ROOT / doc).read_text()
        assert "## The first bad night" in text, doc
        section = text[text.index("## The first bad night"):]
        section = section[:section.index("\n## ", 5)] if "\n## " in section[5:] else section
        for needed in ("quorumgate retry", "quorumgate force", "--yes",
                       'quorumgate_events_at_risk{code="drain_failed"}', "exit code 3",
                       "still drained"):
            assert needed in section, (doc, needed)
