"""Configuration: every contract variable read from the environment, one-line errors, exit 2."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from schemas.settings import Settings, ShopConfig, load_settings

SHOPS = {"12345678": {"test_key": "t", "production_key": "p", "algorithms": ["SHA-1", "HMAC-SHA-256"]}}


def test_contract_defaults() -> None:
    s = Settings()
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.stream == "cvco:events"
    assert s.alert_from == "cvco-ipn@localhost"
    assert (s.session_timeout_s, s.session_grace_s, s.max_tries) == (600, 300, 5)
    assert s.api_token is None and s.smtp_url is None and s.alert_to == []
    assert s.platform_url == "https://sogecommerce.societegenerale.eu/vads-payment/"


def test_every_contract_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "CVCO_REDIS_URL": "redis://r:6380/2",
        "CVCO_SHOPS": json.dumps(SHOPS),
        "CVCO_STREAM": "s",
        "CVCO_SMTP_URL": "smtps://u:p@mail:465",
        "CVCO_ALERT_TO": "ops@shop.fr, cto@shop.fr",
        "CVCO_ALERT_FROM": "ipn@shop.fr",
        "CVCO_SESSION_TIMEOUT_S": "60",
        "CVCO_SESSION_GRACE_S": "5",
        "CVCO_MAX_TRIES": "3",
        "CVCO_API_TOKEN": "tok",
        "CVCO_PLATFORM_URL": "https://example.test/pay",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = load_settings(require_shops=True)
    assert s.redis_url == "redis://r:6380/2" and s.stream == "s"
    assert s.shops["12345678"].key_for("PRODUCTION") == "p"
    assert s.shops["12345678"].algorithms == ("SHA-1", "HMAC-SHA-256")
    assert s.alert_to == ["ops@shop.fr", "cto@shop.fr"] and s.alert_from == "ipn@shop.fr"
    assert (s.session_timeout_s, s.session_grace_s, s.max_tries) == (60, 5, 3)
    assert s.api_token is not None and s.api_token.get_secret_value() == "tok"
    assert s.smtp_url is not None and s.platform_url == "https://example.test/pay"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("CVCO_SHOPS", "{not json", "CVCO_SHOPS: not valid JSON"),
        ("CVCO_SHOPS", "[]", "CVCO_SHOPS: must be a JSON object"),
        ("CVCO_SHOPS", '{"123": {"test_key": "k", "modes": ["TEST"]}}', "not the 8-digit vads_site_id"),
        ("CVCO_SHOPS", '{"12345678": {"test_key": "k"}}', "production_key is missing"),
        (
            "CVCO_SHOPS",
            '{"12345678": {"test_key": "k", "modes": ["TEST"], "algorithms": ["MD5"]}}',
            "algorithms",
        ),
        ("CVCO_MAX_TRIES", "lots", "CVCO_MAX_TRIES:"),
        ("CVCO_SMTP_URL", "mail.example:25", "CVCO_SMTP_URL: must look like smtp://"),
        ("CVCO_REDIS_URL", "localhost:6379", "CVCO_REDIS_URL: must be a redis://"),
        ("CVCO_REDIS_SENTINELS", "sentinel-1", "CVCO_REDIS_SENTINELS: 'sentinel-1' is not host:port"),
        ("CVCO_REDIS_SENTINELS", "s:0", "CVCO_REDIS_SENTINELS: 's:0' is not host:port"),
        ("CVCO_REDIS_CA_FILE", "/no/such/ca.pem", "CVCO_REDIS_CA_FILE: no such file: /no/such/ca.pem"),
        ("CVCO_REDIS_MIN_REPLICAS", "-1", "CVCO_REDIS_MIN_REPLICAS:"),
    ],
)
def test_a_bad_value_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        load_settings()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err


def test_serving_without_shops_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CVCO_SHOPS", raising=False)
    with pytest.raises(SystemExit) as exited:
        load_settings(require_shops=True)
    assert exited.value.code == 2
    assert "CVCO_SHOPS is not set" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["serve", "--port", "eighty"], ["worker", "--nope"], ["failed"], ["bogus"]])
def test_a_bad_flag_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0]


def test_shop_keys_are_trimmed_as_the_platforms_sdk_does() -> None:
    """A key pasted with surrounding spaces verifies as the key itself; a key of spaces only is missing."""
    shop = ShopConfig.model_validate({"test_key": "  k3y-test \t", "production_key": " k3y-prod\n"})
    assert (shop.key_for("TEST"), shop.key_for("PRODUCTION")) == ("k3y-test", "k3y-prod")
    with pytest.raises(ValueError, match="test_key is missing or empty"):
        ShopConfig.model_validate({"test_key": "   ", "modes": ["TEST"]})
