"""The systemd unit (systemd/switchyard.service) against what the issue asks of it.

The unit is read with a small parser of systemd's own syntax (repeated keys, an
empty value that resets a list, `\\` continuations), not configparser, and checked
directive by directive: notify readiness that a binary upgrade's successor may
take over (NotifyAccess=all), a foreground ExecStart, a reload that validates the
file before it signals, a stop timeout above the config's shutdown_timeout, a file
limit for thousands of streams, a journal that never drops an access-log line,
secrets through LoadCredential= only (in step with conf/production.yaml), and the
sandbox. Then systemd itself judges it: `systemd-analyze verify` on a copy whose
ExecStart is the binary under test (verify checks that the binary exists) must pass
without a word about the unit, and `systemd-analyze security --offline=true` must
rate its exposure 2.0 or lower.

The last two need systemd-analyze (Debian package `systemd`): .ci/run installs it
and fails when it cannot; a developer's machine without it skips them, saying so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, gateway_binary

UNIT_PATH = REPO_ROOT / "systemd" / "switchyard.service"
PRODUCTION_CONFIG = REPO_ROOT / "conf" / "production.yaml"
INSTALLED_BINARY = "/usr/local/bin/switchyard"
INSTALLED_CONFIG = "/etc/switchyard/switchyard.yaml"
CREDENTIALS_SOURCE = "/etc/switchyard/credentials"
# DESIGN.md §2: shutdown_timeout's default.
DEFAULT_SHUTDOWN_TIMEOUT_S = 30.0
MAX_EXPOSURE = 2.0
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None,
    reason="systemd-analyze is not installed (Debian package `systemd`; "
           "`sudo scripts/ensure-deps.sh systemd-analyze`); .ci/run installs it",
)


# --------------------------------------------------------------------------------------
# The unit file
# --------------------------------------------------------------------------------------

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(text: str) -> Unit:
    """Section -> its (key, value) assignments in order, repeated keys kept.

    systemd's syntax: `#` and `;` start comment lines, a line ending in `\\` continues
    on the next one, whitespace around `=` and at both ends of the value is dropped."""
    unit: Unit = {}
    section = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if pending:
            if line.startswith(("#", ";")):  # comments inside a continuation are skipped
                continue
            line = pending + " " + line
            pending = ""
        elif not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.setdefault(section, [])
            continue
        assert section is not None, f"an assignment before any section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {raw!r}"
        unit[section].append((key.strip(), value.strip()))
    assert not pending, "the file ends inside a `\\` continuation"
    return unit


def values(unit: Unit, section: str, key: str) -> list[str]:
    """Every value assigned to `key` in `section`, in order."""
    return [v for k, v in unit.get(section, []) if k == key]


def value(unit: Unit, section: str, key: str) -> str | None:
    """The value in effect for a single-valued key: the last one assigned."""
    found = values(unit, section, key)
    return found[-1] if found else None


def seconds(text: str) -> float:
    """A systemd or Switchyard time span (`45s`, `1min 30s`, `500ms`, `2m`) in seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    assert parts, f"not a time span: {text!r}"
    return sum(float(n) * units[u or "s"] for n, u in parts)


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT_PATH.read_text(encoding="utf-8"))


def test_the_parser_keeps_repeated_keys_and_continuations():
    parsed = parse_unit("# c\n[S]\nA=1\n; c\nA=\nA=2 \\\n  3\nB = x=y\n")
    assert parsed == {"S": [("A", "1"), ("A", ""), ("A", "2 3"), ("B", "x=y")]}


def test_it_is_a_notify_service_whose_successor_may_announce_itself(unit):
    assert value(unit, "Service", "Type") == "notify"
    # A binary upgrade's successor (a child of the main process) sends MAINPID=.
    assert value(unit, "Service", "NotifyAccess") == "all"
    assert value(unit, "Install", "WantedBy") == "multi-user.target"


def test_exec_start_runs_the_gateway_in_the_foreground(unit):
    assert values(unit, "Service", "ExecStart") == [f"{INSTALLED_BINARY} -c {INSTALLED_CONFIG}"]


def test_reload_validates_the_file_before_it_signals(unit):
    # Run in order, and a failing one ends the reload: a broken file fails
    # `systemctl reload` and the gateway never sees the SIGHUP. The check reads the
    # credentials from their source directory (systemd 252 hides $CREDENTIALS_DIRECTORY
    # from the first ExecReload= command, 256 from every one), so it runs as root ("+").
    assert values(unit, "Service", "ExecReload") == [
        f"+/usr/bin/env CREDENTIALS_DIRECTORY={CREDENTIALS_SOURCE} "
        f"{INSTALLED_BINARY} -t -c {INSTALLED_CONFIG}",
        "/bin/kill -HUP $MAINPID",
    ]


def test_restart_and_stop_leave_room_for_the_drain(unit):
    assert value(unit, "Service", "Restart") == "on-failure"
    assert value(unit, "Service", "KillSignal") in (None, "SIGTERM")  # SIGTERM drains
    assert value(unit, "Service", "KillMode") == "mixed"
    stop = seconds(value(unit, "Service", "TimeoutStopSec") or "90s")
    production = re.search(r"^shutdown_timeout:\s*(\S+)",
                           PRODUCTION_CONFIG.read_text(encoding="utf-8"), re.M)
    assert production, "conf/production.yaml sets no shutdown_timeout"
    for drain in (DEFAULT_SHUTDOWN_TIMEOUT_S, seconds(production.group(1))):
        assert stop >= drain + 10, (
            f"TimeoutStopSec ({stop}s) leaves no margin over a {drain}s drain: systemd "
            "would SIGKILL streams the gateway would have ended cleanly")


def test_file_limit_and_journal(unit):
    assert int(value(unit, "Service", "LimitNOFILE") or 0) >= 65536
    # stdout is the access log: journald must never drop one of its lines.
    assert value(unit, "Service", "LogRateLimitIntervalSec") == "0"
    assert value(unit, "Service", "StandardOutput") in (None, "journal")
    assert value(unit, "Service", "StandardError") in (None, "journal")


def credential_references(config_text: str) -> set[str]:
    """The file names a config reads from `${CREDENTIALS_DIRECTORY}/NAME`."""
    return set(re.findall(r"\$\{CREDENTIALS_DIRECTORY\}/([A-Za-z0-9._-]+)", config_text))


def test_credentials_match_the_production_config(unit):
    loaded = {}
    for entry in values(unit, "Service", "LoadCredential"):
        name, _, source = entry.partition(":")
        # The reload check reads CREDENTIALS_SOURCE as $CREDENTIALS_DIRECTORY: each
        # credential must be the file of its own name there.
        assert source == f"{CREDENTIALS_SOURCE}/{name}", entry
        loaded[name] = source
    assert loaded, "no LoadCredential="
    wanted = credential_references(PRODUCTION_CONFIG.read_text(encoding="utf-8"))
    assert wanted, "conf/production.yaml reads nothing from $CREDENTIALS_DIRECTORY"
    assert set(loaded) == wanted, (
        "the unit's LoadCredential= and conf/production.yaml's *_file fields disagree: "
        f"loaded {sorted(loaded)}, read {sorted(wanted)}")
    # Optional, and marked so: a missing file must not stop the service.
    assert values(unit, "Service", "EnvironmentFile") in ([], ["-/etc/switchyard/env"])


SECRET_LOOKING = [
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),                # OpenAI-style keys
    re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{12,}"),            # AWS access key ids
    re.compile(r"\b[0-9a-f]{32}\b"),                      # Azure resource keys
    re.compile(r"[A-Za-z0-9+=_-]{32,}"),                  # long base64-ish tokens
    re.compile(r"(?i)(api[_-]?key|secret|token|password|bearer)\s*[=:]"),
    re.compile(r"(?i)--(api[_-]?key|secret|token|password)"),
]


def test_no_secret_on_a_command_line_or_in_the_unit(unit):
    exec_lines = [(k, v) for k, v in unit["Service"] if k.startswith("Exec")]
    assert exec_lines
    checked = exec_lines + [(k, v) for k, v in unit["Service"]
                            if k in ("Environment", "PassEnvironment")]
    for key, text in checked:
        for pattern in SECRET_LOOKING:
            assert not pattern.search(text), f"{key}={text} looks like it carries a secret"
    # Secrets embedded in the unit itself would be readable by anyone on the host.
    for key in ("SetCredential", "SetCredentialEncrypted"):
        assert not values(unit, "Service", key), f"{key}= in the unit: use LoadCredential="


HARDENING = {
    "DynamicUser": "yes",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "DevicePolicy": "closed",
    "PrivateUsers": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "SystemCallArchitectures": "native",
    "MemoryDenyWriteExecute": "yes",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "UMask": "0077",
    "RemoveIPC": "yes",
}


def test_the_sandbox(unit):
    wrong = {key: value(unit, "Service", key) for key, want in HARDENING.items()
             if value(unit, "Service", key) != want}
    assert not wrong, f"hardening directives missing or weakened: {wrong}"
    families = values(unit, "Service", "RestrictAddressFamilies")
    assert len(families) == 1 and set(families[0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    filters = values(unit, "Service", "SystemCallFilter")
    assert filters and filters[0] == "@system-service", filters
    assert any(f.startswith("~") for f in filters[1:]), f"no deny list after the allow list: {filters}"
    # An IP allow list would cut the gateway off from providers whose addresses change.
    assert not values(unit, "Service", "IPAddressDeny")


def test_the_upgrade_socket_is_in_the_runtime_directory(unit):
    assert value(unit, "Service", "RuntimeDirectory") == "switchyard"
    sock = re.search(r"^\s+upgrade_sock:\s*(\S+)", PRODUCTION_CONFIG.read_text(encoding="utf-8"),
                     re.M)
    assert sock and sock.group(1) == "/run/switchyard/upgrade.sock"


# --------------------------------------------------------------------------------------
# systemd's own verdict
# --------------------------------------------------------------------------------------

@pytest.fixture
def testable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart/ExecReload pointing at the binary under test, since
    `systemd-analyze verify` refuses a unit whose binary does not exist."""
    binary = gateway_binary()
    if not binary.exists():
        pytest.fail(f"gateway binary {binary} not found: run `cargo build` or set SWITCHYARD_BIN")
    text = UNIT_PATH.read_text(encoding="utf-8").replace(INSTALLED_BINARY, str(binary))
    path = tmp_path / UNIT_PATH.name
    path.write_text(text, encoding="utf-8")
    return path


def analyze(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C.UTF-8"}
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, env=env,
                          timeout=60)


@needs_analyze
def test_systemd_analyze_verify_accepts_the_unit(testable_unit: Path):
    result = analyze("verify", str(testable_unit))
    output = result.stdout + result.stderr
    # Only lines about this unit count: verify also loads its dependencies (the
    # network-online target and what pulls in) from the host.
    about_unit = [line for line in output.splitlines()
                  if testable_unit.name in line or str(testable_unit.parent) in line]
    assert result.returncode == 0, output
    assert not about_unit, "systemd-analyze verify warns:\n" + "\n".join(about_unit)


@needs_analyze
def test_security_exposure_is_low(testable_unit: Path):
    threshold = int(MAX_EXPOSURE * 10)  # the tool counts exposure in tenths
    result = analyze("security", "--offline=true", f"--threshold={threshold}",
                     str(testable_unit))
    output = result.stdout + result.stderr
    found = re.search(rf"Overall exposure level for {re.escape(testable_unit.name)}:"
                      r"\s*(\d+(?:\.\d+)?)", output)
    assert found, f"no overall exposure level in:\n{output}"
    exposure = float(found.group(1))
    failing = "\n".join(line for line in output.splitlines() if "✗" in line)
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}:\n{failing}"
    assert result.returncode == 0, output
