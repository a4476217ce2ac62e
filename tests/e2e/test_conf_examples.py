"""Every example config in conf/ is valid, and says where its variables come from.

Each `conf/*.yaml` is checked with the binary under test (`switchyard -t -c FILE`)
in an environment holding a dummy value for each `${VAR}` it needs: variables with
a `:-default` are left unset so their defaults are checked too, and every file a
`*_file:` field names under a variable (`${CREDENTIALS_DIRECTORY}/openai-api-key`)
is written to a temporary directory that the variable then points at. Every
variable an example reads must be explained in one of its comments or in
README.md, and no secret field may hold a literal: a copied example must not carry
a key into production.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, gateway_binary

CONF_DIR = REPO_ROOT / "conf"
EXAMPLES = sorted(CONF_DIR.glob("*.yaml"))
# `${NAME}` or `${NAME:-default}`; `$${` is a literal `${`.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")
FILE_FIELD = re.compile(r"^[\s-]*([a-z_]+_file):\s*(\S+)")
SECRET_FIELD = re.compile(
    r"^[\s-]*(key|api_key|access_key_id|secret_access_key|session_token):\s*(.*)$")


def without_comment(line: str) -> str:
    """The line without its YAML comment (a `#` at the start or after a blank, outside
    quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def comments(text: str) -> str:
    """Every comment of a file, joined."""
    return "\n".join(line[len(without_comment(line)):] for line in text.splitlines())


def used_lines(text: str) -> list[str]:
    """The file's lines without comments: what the gateway reads."""
    return [without_comment(line) for line in text.splitlines()]


def variables(text: str) -> dict[str, bool]:
    """Variable name -> whether every use of it has a default."""
    found: dict[str, bool] = {}
    for line in used_lines(text):
        for name, default in VARIABLE.findall(line):
            found[name] = found.get(name, True) and bool(default)
    return found


def directory_variables(text: str) -> dict[str, list[str]]:
    """Variable -> the file names `*_file:` fields read below it (`${DIR}/name`)."""
    found: dict[str, list[str]] = {}
    for line in used_lines(text):
        field = FILE_FIELD.match(line)
        if not field:
            continue
        path = field.group(2).strip("'\"")
        under = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}/([A-Za-z0-9._-]+)", path)
        assert under, (f"{field.group(1)}: {path}: name the file under a variable "
                       "(`${CREDENTIALS_DIRECTORY}/name`) so the example runs anywhere")
        found.setdefault(under.group(1), []).append(under.group(2))
    return found


def dummy(name: str) -> str:
    """A distinct value of the shape a variable's name asks for."""
    if name.endswith(("_ENDPOINT", "_URL")):
        return "https://example.invalid"
    if name.endswith("_REGION"):
        return "us-east-1"
    return f"dummy-{name.lower().replace('_', '-')}-{secrets.token_hex(8)}"


def example_environment(text: str, workdir: Path) -> dict[str, str]:
    """The environment `-t` runs in: ours without any variable the file reads, plus a
    dummy for each one without a default and a directory of dummy files for each one
    that `*_file:` fields read below."""
    uses = variables(text)
    env = {k: v for k, v in os.environ.items() if k not in uses}
    for name, has_default in uses.items():
        if not has_default:
            env[name] = dummy(name)
    for name, files in directory_variables(text).items():
        directory = workdir / name.lower()
        directory.mkdir()
        for file in files:
            (directory / file).write_text(dummy(file.upper().replace("-", "_")) + "\n")
        env[name] = str(directory)
    return env


def test_the_examples_are_there():
    names = {path.name for path in EXAMPLES}
    assert {"switchyard.yaml", "openai-azure-failover.yaml", "bedrock.yaml",
            "production.yaml"} <= names, names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path, tmp_path: Path):
    binary = gateway_binary()
    if not binary.exists():
        pytest.fail(f"gateway binary {binary} not found: run `cargo build` or set SWITCHYARD_BIN")
    env = example_environment(path.read_text(encoding="utf-8"), tmp_path)
    result = subprocess.run([str(binary), "-t", "-c", str(path)], capture_output=True,
                            text=True, env=env, timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"switchyard -t -c {path.name} failed:\n{output}"
    assert f"configuration {path} is valid" in output, output


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_variable_is_documented(path: Path):
    text = path.read_text(encoding="utf-8")
    # A comment that explains a variable names it outside `${...}` (a commented-out
    # line `# api_key: ${X}` does not explain X).
    explained = VARIABLE.sub("", comments(text))
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in variables(text)
               if not re.search(rf"\b{name}\b", explained)
               and not re.search(rf"\b{name}\b", readme)]
    assert not missing, (f"{path.name} reads variables that neither its comments nor "
                         f"README.md explain: {missing}")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_no_secret_is_written_in_an_example(path: Path):
    for number, line in enumerate(used_lines(path.read_text(encoding="utf-8")), 1):
        field = SECRET_FIELD.match(line)
        if field:
            assert field.group(2).strip().startswith("${"), (
                f"{path.name}:{number}: `{field.group(1)}` holds a literal; "
                "use ${VAR} or a `_file` field")


def test_the_helpers_see_what_the_gateway_reads():
    text = ("# ${IN_COMMENT}\nkey: ${A}  # ${ALSO_COMMENT}\nb: ${B:-x}\nc: $${NOT}\n"
            "d: '#${C}'\n- api_key_file: ${DIR}/one\n")
    assert variables(text) == {"A": False, "B": True, "C": False, "DIR": False}
    assert directory_variables(text) == {"DIR": ["one"]}
    assert "IN_COMMENT" in comments(text) and "ALSO_COMMENT" in comments(text)
