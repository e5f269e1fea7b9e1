"""Readers of deploy/: the files parsed into what the deploy tests compare with the code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from cli.main import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
NGINX = DEPLOY / "nginx"
PLATFORM_TIMEOUT_S = 10.0
_TIME_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}


def render_nginx_conf(dest: Path, upstreams: Sequence[str], listen_port: int, internal_port: int) -> Path:
    """A runnable copy of deploy/nginx in `dest`: receivers at `upstreams` ("127.0.0.1:8001"), plain HTTP on
    127.0.0.1:`listen_port`, /metrics on 127.0.0.1:`internal_port`. Run it with
    `nginx -p dest -c <returned path> -g "pid dest/nginx.pid;"`."""
    parameters = shipped_upstream_parameters()
    shutil.copytree(NGINX, dest, dirs_exist_ok=True)
    (dest / "upstream.conf").write_text("".join(f"server {address} {parameters};\n" for address in upstreams))
    (dest / "listen.conf").write_text(f"listen 127.0.0.1:{listen_port};\n")
    (dest / "listen-internal.conf").write_text(f"listen 127.0.0.1:{internal_port};\n")
    return dest / "nginx.conf"


def shipped_upstream_parameters() -> str:
    """The per-server parameters of deploy/nginx/upstream.conf (max_fails, fail_timeout), kept when rendering."""
    for line in (NGINX / "upstream.conf").read_text().splitlines():
        if line.startswith("server "):
            return line.strip().removesuffix(";").split(None, 2)[2]
    raise RuntimeError("deploy/nginx/upstream.conf has no server line")


def nginx_test(prefix: Path, conf: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` of a rendered configuration (nginx is installed by `scripts/setup --test`)."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    command = [nginx, "-t", "-p", str(prefix), "-c", str(conf), "-g", f"pid {prefix}/nginx.pid;"]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


# --- parsing --------------------------------------------------------------------------------------------


def nginx_blocks(text: str) -> dict[str, list[list[str]]]:
    """Directives by enclosing block path ("http/server#1/location = /ipn"); raises on unbalanced braces."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|[{};]|[^\s{};]+', re.sub(r"(?m)#.*$", "", text))
    blocks: dict[str, list[list[str]]] = {"": []}
    stack, current, servers = [""], list[str](), 0
    for token in tokens:
        if token == "{":
            servers += current == ["server"]
            name = " ".join(current) + (f"#{servers}" if current == ["server"] else "")
            stack.append(f"{stack[-1]}/{name}".lstrip("/"))
            blocks.setdefault(stack[-1], [])
            current = []
        elif token == "}":
            assert not current and len(stack) > 1, f"unbalanced brace near {current}"
            stack.pop()
        elif token == ";":
            blocks[stack[-1]].append(current)
            current = []
        else:
            current.append(token.strip('"'))
    assert stack == [""] and not current, "unterminated block or directive"
    return blocks


def directive(block: list[list[str]], name: str) -> list[str]:
    """The arguments of the one `name` directive of a block."""
    found = [args[1:] for args in block if args[0] == name]
    assert len(found) == 1, f"{name}: {len(found)} directives"
    return found[0]


def nginx_seconds(value: str) -> float:
    """An nginx (or compose) duration: 1500ms, 7s, 1m."""
    number, unit = re.findall(r"^(\d+)(ms|s|m)?$", value)[0]
    return int(number) * _TIME_UNITS[unit or "s"]


def nginx_bytes(value: str) -> int:
    """An nginx size: 65536, 64k, 1m."""
    number, unit = re.findall(r"^(\d+)([km]?)$", value.lower())[0]
    return int(number) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit]


def dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", re.sub(r"(?m)^\s*#.*\n", "", text))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in joined.splitlines()
        if line.strip()
    ]


def env_file(path: Path) -> dict[str, str]:
    """The active KEY=value lines of a dotenv file, quotes removed."""
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return {key: value.strip("'\"") for key, value in pairs}


def yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_objects() -> Iterator[dict[str, Any]]:
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        yield from (doc for doc in yaml_docs(path) if "apiVersion" in doc and "kind" in doc)


def k8s(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return document


def cvco_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if s.get("image") == "cvco-ipn:local"}


def parse_cli(argv: Sequence[str]) -> Any:
    """The parsed arguments of `cvco-ipn argv`; None when argv is refused (`--help` counts as valid)."""
    try:
        return build_parser().parse_args(list(argv))
    except SystemExit as exit_:
        return {"help": True} if exit_.code == 0 else None


def image_command() -> list[str]:
    """What the image runs by default: ENTRYPOINT + CMD."""
    instructions = dict(dockerfile((DEPLOY / "Dockerfile").read_text()))
    command: list[str] = json.loads(instructions["ENTRYPOINT"]) + json.loads(instructions["CMD"])
    return command


def cli_invocations() -> list[list[str]]:
    """Every cvco-ipn command line deploy/ runs or tells an operator to run."""
    invocations = [image_command()[1:]]
    invocations += [service["command"] for service in cvco_services().values()]
    invocations += [
        c["args"]
        for o in k8s_objects()
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    ]
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            invocations += [line.split() for line in re.findall(r"`cvco-ipn ([^`]+)`", path.read_text())]
    return invocations


# --- the tests ------------------------------------------------------------------------------------------


def directive_lines(path: Path) -> list[list[str]]:
    return nginx_blocks(path.read_text())[""]
