"""deploy/ agrees with the code: commands, CVCO_* variables, ports, routes, metrics, limits, grace periods.

`tests.deploy_files.render_nginx_conf` is the one way to run deploy/nginx outside its container (used here
for `nginx -t`, and by the load-balancer reliability tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr, ValidationError
from redis.asyncio import Redis

from cli.serve import SHUTDOWN_TIMEOUT_S
from ingest.app import MAX_BODY_BYTES, create_app
from ingest.metrics import OUTCOMES, ReceiverMetrics
from schemas.settings import Settings
from tests.conftest import TEST_REDIS_URL, free_port
from tests.deploy_files import (
    DEPLOY,
    NGINX,
    PLATFORM_TIMEOUT_S,
    cli_invocations,
    compose,
    cvco_services,
    directive,
    directive_lines,
    dockerfile,
    env_file,
    image_command,
    k8s,
    nginx_blocks,
    nginx_bytes,
    nginx_seconds,
    nginx_test,
    parse_cli,
    render_nginx_conf,
    yaml_docs,
)
from workers.metrics import WorkerMetrics
from workers.worker import build_worker, worker_options


def test_every_deploy_file_parses_with_its_format() -> None:
    """Each file under deploy/ is valid YAML, JSON, dotenv, Dockerfile or nginx syntax; none is unknown."""
    for path in (p for p in DEPLOY.rglob("*") if p.is_file()):
        if path.suffix == ".yaml":
            assert yaml_docs(path), path
        elif path.suffix == ".json":
            assert json.loads(path.read_text()), path
        elif path.suffix == ".conf":
            assert any(nginx_blocks(path.read_text()).values()), path
        elif path.name == "Dockerfile":
            assert dockerfile(path.read_text())[0][0] in ("ARG", "FROM"), path
        elif path.name == ".env.example":
            assert env_file(path), path
        else:
            pytest.fail(f"{path} has no parser in this test: add one")


def test_every_cvco_ipn_command_in_deploy_is_accepted_by_the_cli() -> None:
    """Image CMD, compose commands, k8s args and `cvco-ipn ...` in comments all parse with build_parser()."""
    invocations = cli_invocations()
    assert ["serve"] in invocations and ["worker"] in invocations
    assert ["failed", "show", "ID"] in invocations and ["replay", "--all"] in invocations
    refused = [argv for argv in invocations if parse_cli(argv) is None]
    assert not refused
    assert parse_cli(["serve", "--no-such-flag"]) is None  # the check itself can refuse


def test_every_cvco_variable_in_deploy_is_a_settings_field() -> None:
    """A CVCO_* name anywhere in deploy/ is a field of schemas.settings.Settings."""
    fields = {f"CVCO_{name.upper()}" for name in Settings.model_fields}
    used = {
        n for p in DEPLOY.rglob("*") if p.is_file() for n in re.findall(r"\bCVCO_[A-Z0-9_]+", p.read_text())
    }
    assert used and used <= fields, used - fields


def filled_in(value: str) -> str:
    """A placeholder of the example configuration replaced, as an operator does before deploying."""
    return re.sub(r"REPLACE_WITH_\w+", "0123456789abcdef", value)


def test_env_example_documents_every_setting_and_builds_valid_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """.env.example names every Settings field; as shipped its placeholder keys are refused, and once they
    are filled in its active values load."""
    text = (DEPLOY / ".env.example").read_text()
    missing = [n for n in Settings.model_fields if f"CVCO_{n.upper()}=" not in text]
    assert not missing
    for key, value in env_file(DEPLOY / ".env.example").items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match="placeholder"):
        Settings()
    for key, value in env_file(DEPLOY / ".env.example").items():
        monkeypatch.setenv(key, filled_in(value))
    assert list(Settings().shops) == ["12345678"]


def test_k8s_configmap_secret_and_compose_environment_build_valid_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The k8s ConfigMap + Secret (its placeholders filled in; as shipped they are refused), and compose's
    environment, are each a loadable configuration."""
    shipped = {
        **k8s("ConfigMap", "cvco-ipn-config")["data"],
        **k8s("Secret", "cvco-ipn-secrets")["stringData"],
    }
    for key, value in shipped.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match="placeholder"):
        Settings()
    for key, value in shipped.items():
        monkeypatch.setenv(key, filled_in(value))
    assert Settings().shops and Settings().redis_url.startswith("redis://")
    for service in cvco_services().values():
        for key, value in service["environment"].items():
            monkeypatch.setenv(key, str(value))
        assert Settings().smtp_url is not None


def test_receiver_ports_match_the_serve_port_everywhere() -> None:
    """Dockerfile EXPOSE/HEALTHCHECK, compose upstreams and k8s ports/probes all use the port `serve` listens on."""
    port = parse_cli(image_command()[1:]).port
    assert port == parse_cli(["serve"]).port == 8080
    instructions = dict(dockerfile((DEPLOY / "Dockerfile").read_text()))
    assert instructions["EXPOSE"] == str(port) and f"127.0.0.1:{port}/healthz" in instructions["HEALTHCHECK"]
    services = cvco_services()
    for line in directive_lines(NGINX / "upstream.conf"):
        host, upstream_port = line[1].split(":")
        assert parse_cli(services[host]["command"]).port == int(upstream_port)
    receiver = k8s("Deployment", "cvco-ipn-receiver")["spec"]["template"]
    container = receiver["spec"]["containers"][0]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named == {"http": parse_cli(container["args"]).port}
    assert receiver["metadata"]["annotations"]["prometheus.io/port"] == str(named["http"])
    assert (
        container["readinessProbe"]["httpGet"]["port"] in named
        and container["livenessProbe"]["httpGet"]["port"] in named
    )
    assert k8s("Service", "cvco-ipn-receiver")["spec"]["ports"][0]["targetPort"] in named


def test_workers_expose_their_metrics_port_to_prometheus_only() -> None:
    """k8s and compose run workers with --metrics-port; the pods' annotation, container port and network
    policy name the same port, which is what the "no worker alive" alert depends on."""
    worker = k8s("Deployment", "cvco-ipn-worker")["spec"]["template"]
    container = worker["spec"]["containers"][0]
    port = parse_cli(container["args"]).metrics_port
    assert port and worker["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": port}
    [rule] = k8s("NetworkPolicy", "cvco-ipn-worker")["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == ["metrics"]
    assert parse_cli(cvco_services()["worker"]["command"]).metrics_port == port


def test_every_path_deploy_routes_or_probes_is_a_receiver_route(settings: Settings) -> None:
    """Probe paths, nginx locations and ingress paths exist in create_app(settings) (with /forms enabled)."""
    app = create_app(settings.model_copy(update={"api_token": SecretStr("token")}))
    routes = {route.resource.canonical for route in app.router.routes() if route.resource is not None}
    receiver = k8s("Deployment", "cvco-ipn-receiver")["spec"]["template"]
    container = receiver["spec"]["containers"][0]
    paths = {container["readinessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"]}
    paths.add(receiver["metadata"]["annotations"]["prometheus.io/path"])
    paths |= {
        p["path"] for rule in k8s("Ingress", "cvco-ipn")["spec"]["rules"] for p in rule["http"]["paths"]
    }
    paths |= {b.split()[-1] for b in nginx_blocks((NGINX / "nginx.conf").read_text()) if "/location = " in b}
    healthcheck = dict(dockerfile((DEPLOY / "Dockerfile").read_text()))["HEALTHCHECK"]
    paths |= set(re.findall(r"127\.0\.0\.1:\d+(/\w+)", healthcheck))
    assert {"/ipn", "/forms", "/healthz", "/readyz", "/metrics"} <= paths
    assert paths <= routes, paths - routes


async def test_every_metric_in_alerts_and_dashboard_is_exposed_by_the_receiver(redis: Redis) -> None:
    """Metric names of the alert rules and the Grafana dashboard are in the receiver's or a worker's
    /metrics text."""
    text = (await ReceiverMetrics().render(redis, "cvco:queue", 2.0)).decode()
    text += generate_latest(WorkerMetrics().registry).decode()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exposed = {f.name + s for f in text_string_to_metric_families(text) for s in suffixes.get(f.type, ("",))}
    rules = [
        r["expr"] for g in yaml_docs(DEPLOY / "prometheus" / "alerts.yaml")[0]["groups"] for r in g["rules"]
    ]
    dashboard = json.loads((DEPLOY / "prometheus" / "grafana-dashboard.json").read_text())
    exprs = rules + [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bcvco_[a-z0-9_]+", expr)}
    assert len(used) >= 9 and used <= exposed, used - exposed
    assert {o for expr in exprs for o in re.findall(r'outcome="(\w+)"', expr)} <= set(OUTCOMES)
    queue_age = next(e for e in rules if "oldest_age" in e)
    assert float(queue_age.split(">")[-1]) == Settings().queue_age_alert_s


def test_nginx_limits_and_timeouts_fit_the_receiver_and_the_platform() -> None:
    """Body limit = the receiver's 64 KiB; a retried notification still answers within the platform's 10 s."""
    blocks = nginx_blocks((NGINX / "nginx.conf").read_text())
    http = blocks["http"]
    assert nginx_bytes(directive(http, "client_max_body_size")[0]) == MAX_BODY_BYTES
    ingress = k8s("Ingress", "cvco-ipn")["metadata"]["annotations"]
    assert nginx_bytes(ingress["nginx.ingress.kubernetes.io/proxy-body-size"]) == MAX_BODY_BYTES
    connect, read, retry_window = (
        nginx_seconds(directive(http, d)[0])
        for d in ("proxy_connect_timeout", "proxy_read_timeout", "proxy_next_upstream_timeout")
    )
    assert retry_window + connect + read < PLATFORM_TIMEOUT_S
    assert directive(http, "proxy_next_upstream_tries") == ["2"] and directive(
        http, "proxy_request_buffering"
    ) == ["on"]
    assert {"error", "timeout", "http_503", "non_idempotent"} <= set(
        directive(blocks["http/server#1/location = /ipn"], "proxy_next_upstream")
    )
    assert ["X-Forwarded-For", "$proxy_add_x_forwarded_for"] in [
        a[1:] for a in http if a[0] == "proxy_set_header"
    ]
    assert directive(blocks["http/upstream cvco_receivers"], "include") == ["upstream.conf"]
    public = [b for b in blocks if b.startswith("http/server#1/location")]
    assert (
        not [b for b in public if "/metrics" in b]
        and ["deny", "all"] in blocks["http/server#2/location = /metrics"]
    )


def test_trusted_proxies_of_the_receivers_cover_the_load_balancer() -> None:
    """compose: nginx's fixed address is in its network and in the receivers' CVCO_TRUSTED_PROXIES."""
    nginx_address = compose()["services"]["nginx"]["networks"]["lb"]["ipv4_address"]
    subnet = compose()["networks"]["lb"]["ipam"]["config"][0]["subnet"]
    assert ip_address(nginx_address) in ip_network(subnet)
    for name, service in cvco_services().items():
        trusted = Settings(trusted_proxies=service["environment"]["CVCO_TRUSTED_PROXIES"])
        assert any(ip_address(nginx_address) in n for n in trusted.trusted_proxies), name


def test_k8s_trusts_no_private_range_and_only_the_ingress_and_prometheus_reach_the_receivers() -> None:
    """CVCO_TRUSTED_PROXIES is narrower than 10.0.0.0/8, and a NetworkPolicy admits to the receivers' port
    only the pods it names (each source has a pod selector: no whole namespace, no address block)."""
    trusted = Settings(trusted_proxies=k8s("ConfigMap", "cvco-ipn-config")["data"]["CVCO_TRUSTED_PROXIES"])
    assert trusted.trusted_proxies and all(network.prefixlen >= 16 for network in trusted.trusted_proxies)
    for component in ("receiver", "worker"):
        deployment = k8s("Deployment", f"cvco-ipn-{component}")
        policy = k8s("NetworkPolicy", f"cvco-ipn-{component}")["spec"]
        assert policy["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert policy["policyTypes"] == ["Ingress"]
        sources = [source for rule in policy["ingress"] for source in rule["from"]]
        assert sources and all("podSelector" in s and "ipBlock" not in s for s in sources)
    receiver_rules = k8s("NetworkPolicy", "cvco-ipn-receiver")["spec"]["ingress"]
    assert [rule["ports"] for rule in receiver_rules] == [[{"port": "http", "protocol": "TCP"}]]
    assert "networkpolicy.yaml" in (DEPLOY / "k8s" / "kustomization.yaml").read_text()


def test_grace_periods_exceed_the_app_shutdown_times(settings: Settings) -> None:
    """Receiver: preStop + aiohttp shutdown_timeout < grace; worker: job timeout + completion wait < grace."""
    receiver = k8s("Deployment", "cvco-ipn-receiver")["spec"]["template"]["spec"]
    pre_stop = float(receiver["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pre_stop + SHUTDOWN_TIMEOUT_S < receiver["terminationGracePeriodSeconds"]
    options = worker_options(settings)
    worker_needs = options["job_timeout"] + options["job_completion_wait"]
    assert (
        worker_needs
        < k8s("Deployment", "cvco-ipn-worker")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    )
    services = compose()["services"]
    assert nginx_seconds(services["receiver-1"]["stop_grace_period"]) > SHUTDOWN_TIMEOUT_S
    assert worker_needs < nginx_seconds(services["worker"]["stop_grace_period"])


async def test_worker_probe_reads_the_health_key_arq_writes(settings: Settings, redis: Redis) -> None:
    """The worker's exec probe (k8s and compose alike), `cvco-ipn worker --check`, exits 0 only while
    arq's health-check key exists."""
    probe = k8s("Deployment", "cvco-ipn-worker")["spec"]["template"]["spec"]["containers"][0][
        "livenessProbe"
    ]["exec"]["command"]
    assert (
        compose()["services"]["worker"]["healthcheck"]["test"][1:]
        == probe
        == ["cvco-ipn", "worker", "--check"]
    )
    env = {
        "CVCO_REDIS_URL": TEST_REDIS_URL,
        "CVCO_QUEUE_NAME": settings.queue_name,
        "PATH": str(Path(sys.executable).parent),
    }

    def probe_status() -> int:
        argv = [str(Path(sys.executable).parent / probe[0]), *probe[1:]]
        return subprocess.run(argv, env=env, cwd=DEPLOY.parent, timeout=30, check=False).returncode

    assert probe_status() == 1
    await redis.set(build_worker(settings).health_check_key, "alive")
    assert probe_status() == 0


def test_shipped_nginx_config_passes_nginx_t_with_tls(tmp_path: Path) -> None:
    """deploy/nginx as shipped (TLS listener; a throwaway certificate at the mounted paths) passes `nginx -t`."""
    shutil.copytree(NGINX, tmp_path, dirs_exist_ok=True)
    key, cert = tmp_path / "tls.key", tmp_path / "tls.crt"
    openssl = [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
    ]
    subprocess.run(
        [*openssl, "-keyout", str(key), "-out", str(cert)], capture_output=True, timeout=60, check=True
    )
    listen = tmp_path / "listen.conf"
    listen.write_text(listen.read_text().replace("/etc/nginx/certs/", f"{tmp_path}/"))
    (tmp_path / "upstream.conf").write_text("server 127.0.0.1:1;\n")
    result = nginx_test(tmp_path, tmp_path / "nginx.conf")
    assert result.returncode == 0, result.stderr


def test_rendered_nginx_config_passes_nginx_t_and_a_broken_one_does_not(tmp_path: Path) -> None:
    """render_nginx_conf gives a config nginx accepts; with no receiver listed, nginx refuses it."""
    conf = render_nginx_conf(tmp_path / "ok", ["127.0.0.1:8001", "127.0.0.1:8002"], free_port(), free_port())
    result = nginx_test(tmp_path / "ok", conf)
    assert result.returncode == 0, result.stderr
    broken = render_nginx_conf(tmp_path / "broken", [], free_port(), free_port())
    assert nginx_test(tmp_path / "broken", broken).returncode != 0


async def test_nginx_refuses_a_21st_concurrent_request_from_one_address_with_a_one_line_429(
    tmp_path: Path,
) -> None:
    """deploy/nginx with loopback left out of unlimited.conf: 20 requests held mid-body by one address
    are let through, the 21st is 429 at once, in one line; the platform's addresses are never limited."""
    conf = render_nginx_conf(tmp_path, ["127.0.0.1:1"], free_port(), free_port())
    assert "127.0.0.0/8 0;" in (tmp_path / "unlimited.conf").read_text()
    (tmp_path / "unlimited.conf").write_text("")
    port = int((tmp_path / "listen.conf").read_text().split(":")[1].rstrip(";\n"))
    directives = f"pid {tmp_path}/nginx.pid; daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    process = await asyncio.create_subprocess_exec(
        nginx,
        "-e",
        "stderr",
        "-p",
        str(tmp_path),
        "-c",
        str(conf),
        "-g",
        directives,
        stderr=subprocess.DEVNULL,
    )
    held: list[asyncio.StreamWriter] = []
    try:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        head = b"POST /ipn HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        for _ in range(20):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head + b"vads_site_id=1")
            await writer.drain()
            held.append(writer)
        await asyncio.sleep(0.2)  # nginx has read each request's headers
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    finally:
        for writer in held:
            writer.close()
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 429 Too Many Requests"
    assert rest.endswith(b"\r\n\r\ntoo many requests from this address, try again later\n")
