"""Exit codes and messages as the contract says, through the real CLI: a bad flag or configuration exits 2
with one line, Redis down is one line, and `--version` answers."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.cli_process import SHOPS_JSON, Ran, cli_env, run_cli
from tests.conftest import free_port

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def assert_one_line(ran: Ran, status: int, *words: str) -> None:
    assert ran.status == status, ran
    assert len(ran.err_lines) == 1, ran.err
    assert "Traceback" not in ran.err
    for word in words:
        assert word in ran.err, (word, ran.err)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_version_names_the_package_and_its_version() -> None:
    ran = run_cli("--version")
    assert ran.status == 0
    assert ran.out.startswith("cvco-ipn 0.") and len(ran.out.splitlines()) == 1


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_serve_refuses_a_port_that_is_not_one(port: str) -> None:
    ran = run_cli("serve", "--port", port, env=cli_env(CVCO_SHOPS=SHOPS_JSON))
    assert_one_line(ran, 2, "--port", "not a port number")


def test_serve_on_a_port_in_use_exits_2_with_one_line(taken_port: int) -> None:
    ran = run_cli(
        "serve", "--host", "127.0.0.1", "--port", str(taken_port), env=cli_env(CVCO_SHOPS=SHOPS_JSON)
    )
    assert ran.status == 2
    assert "Traceback" not in ran.err
    assert ran.err_lines[-1].startswith(f"cvco-ipn: cannot listen on 127.0.0.1:{taken_port}: ")
    assert "in use" in ran.err_lines[-1]


def test_worker_metrics_port_in_use_exits_2_with_one_line(taken_port: int) -> None:
    ran = run_cli("worker", "--burst", "--metrics-port", str(taken_port), env=cli_env(CVCO_SHOPS=SHOPS_JSON))
    assert_one_line(ran, 2, "--metrics-port", f":{taken_port}")


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("CVCO_IPN_ALLOWLIST", "10.0.0.0/33", ("CVCO_IPN_ALLOWLIST:", "'10.0.0.0/33' is not a network")),
        ("CVCO_TRUSTED_PROXIES", "10.0.0.1/8", ("CVCO_TRUSTED_PROXIES:", "host bits set")),
        ("CVCO_ALERT_TO", "ops@example.com,nobody", ("CVCO_ALERT_TO:", "'nobody' is not an e-mail address")),
        ("CVCO_ALERT_FROM", "cvco ipn", ("CVCO_ALERT_FROM:", "not an e-mail address")),
        ("CVCO_STREAM", "", ("CVCO_STREAM:",)),
        ("CVCO_QUEUE_NAME", "", ("CVCO_QUEUE_NAME:",)),
        ("CVCO_PLATFORM_URL", "ftp://example.com/pay", ("CVCO_PLATFORM_URL:", "not an http:// or https://")),
        ("CVCO_PLATFORM_URL", "sogecommerce.example", ("CVCO_PLATFORM_URL:",)),
        ("CVCO_SMTP_URL", "smtp://mail.example.com", ("CVCO_SMTP_URL:", "smtp://host:port")),
        ("CVCO_SMTP_URL", "smtp://mail.example.com:port", ("CVCO_SMTP_URL:",)),
        ("CVCO_API_TOKEN", "REPLACE_WITH_A_LONG_RANDOM_TOKEN", ("CVCO_API_TOKEN:", "placeholder")),
        (
            "CVCO_SHOPS",
            '{"12345678": {"test_key": "REPLACE_WITH_TEST_KEY", "production_key": "k"}}',
            ("CVCO_SHOPS[12345678.test_key]:", "placeholder"),
        ),
    ],
)
def test_a_value_that_cannot_work_is_refused_at_start(
    variable: str, value: str, words: tuple[str, ...]
) -> None:
    """Each would start and then fail at the first mail, form or job: refused at once, by its name."""
    environment = cli_env(CVCO_SHOPS=SHOPS_JSON)
    environment[variable] = value  # set even when empty, which cli_env would unset
    for command in (["serve", "--port", str(free_port())], ["worker", "--burst"]):
        ran = run_cli(*command, env=environment)
        assert_one_line(ran, 2, "cvco-ipn: bad configuration:", *words)


def test_an_unknown_cvco_variable_is_named_in_one_warning_line() -> None:
    """A typo such as CVCO_MAXTRIES is ignored by the settings: said once, and the command still runs."""
    ran = run_cli("failed", "list", env=cli_env(CVCO_MAXTRIES="3"))
    assert ran.status == 0
    assert ran.err_lines == [
        "cvco-ipn: warning: CVCO_MAXTRIES is not a setting of cvco-ipn (a typo?); ignored"
    ]


@pytest.mark.parametrize(
    "command",
    [
        ["worker", "--burst"],
        ["payment", "show", "CMD-1"],
        ["failed", "list"],
        ["replay", "--all"],
        ["events", "tail", "--count", "1"],
        ["rejected", "list"],
        ["demo"],
    ],
)
def test_redis_down_is_one_line_naming_it(command: list[str]) -> None:
    ran = run_cli(*command, env=cli_env(CVCO_SHOPS=SHOPS_JSON, CVCO_REDIS_URL=UNREACHABLE_REDIS))
    assert ran.status == 1, ran
    assert ran.err_lines[-1].startswith(
        f"cvco-ipn: cannot reach Redis at {UNREACHABLE_REDIS} (CVCO_REDIS_URL)"
    )
    assert "Traceback" not in ran.err
