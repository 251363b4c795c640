"""deploy/Dockerfile: every package installed, dependencies cached before the sources,
non-root, and .dockerignore lets in what it copies."""

from __future__ import annotations

import json
import tomllib

from tests.deploy.common import (
    DEPLOY,
    ROOT,
)

# ------------------------------------------------------------------ Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_installs_every_package_as_non_root() -> None:
    steps = dockerfile_instructions()
    froms = [rest for word, rest in steps if word == "FROM"]
    args = dict(rest.split("=", 1) for word, rest in steps if word == "ARG" and "=" in rest)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms) and len(froms) == 2
    last_stage = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM"):]
    user = [rest for word, rest in last_stage if word == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert json.loads(next(r for w, r in last_stage if w == "ENTRYPOINT")) == ["quorumgate"]

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"][
        "include"]}
    copied = [rest.split()[0] for word, rest in steps if word == "COPY" and "--from" not in rest]
    assert packages <= set(copied), f"the image misses {packages - set(copied)}"
    assert "pyproject.toml" in copied and pyproject["project"]["readme"] in copied
    # cache: dependencies are installed before any source is copied
    first_source = min(i for i, (w, r) in enumerate(steps) if w == "COPY" and
                       r.split()[0] in packages)
    pip = [i for i, (w, r) in enumerate(steps) if w == "RUN" and "pip install -r" in r]
    assert pip and pip[0] < first_source
    for src in copied:
        assert (ROOT / src).exists(), src

    # .dockerignore is an allow-list: everything copied must be allowed back in
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert {src.split("/")[0] for src in copied} <= allowed

    # the test bed (the compose demo's emulator) is copied whole, and optional
    assert "testbed" in copied
    assert args.get("TESTBED") == "1"


