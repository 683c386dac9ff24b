"""MQTT settings: what an installation may write in ``CIVICLOUD_MQTT__*``, and what it is told
when it writes something else. No broker is needed here."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from civicloud.core.config import MqttSettings, Settings
from civicloud.core.mqtt import MqttHub, hub_from_settings, subscription_identifier


def test_mqtt_is_off_by_default_and_named_after_the_machine() -> None:
    settings = MqttSettings()
    assert settings.url == ""
    assert hub_from_settings(settings) is None
    assert settings.client_id.startswith("civicloud-")
    assert settings.client_id.removeprefix("civicloud-")[:3] == socket.gethostname()[:3]


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVICLOUD_MQTT__URL", "mqtt://broker.internal")
    monkeypatch.setenv("CIVICLOUD_MQTT__USERNAME", "civicloud")
    monkeypatch.setenv("CIVICLOUD_MQTT__PASSWORD", "s3cret-pass")
    monkeypatch.setenv("CIVICLOUD_MQTT__CLIENT_ID", "civicloud-a1")
    settings = Settings(_env_file=None).mqtt
    assert settings.password is not None
    assert settings.password.get_secret_value() == "s3cret-pass"
    assert "s3cret" not in repr(settings)
    hub = hub_from_settings(settings)
    assert hub is not None
    assert hub.address == "mqtt://broker.internal:1883"
    assert hub.client_id == "civicloud-a1"
    assert hub.health() == "mqtt not started"


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:1883"),
        ("mqtts://broker.example.org", "mqtts://broker.example.org:8883"),
        ("mqtts://broker.example.org:9883/", "mqtts://broker.example.org:9883"),
        ("mqtt://[::1]:1884", "mqtt://[::1]:1884"),
    ],
)
def test_the_hub_address_follows_the_url(url: str, address: str) -> None:
    assert MqttHub(MqttSettings(url=url)).address == address


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://broker:1883", "mqtt url must be mqtt://HOST:PORT"),
        ("tcp://broker:1883", "got scheme 'tcp'"),
        ("broker:1883", "mqtt url must be"),
        ("mqtt://", "no host"),
        ("mqtt://broker:99999", "bad port"),
        ("mqtt://broker:1883/topic", "without a path"),
        ("mqtt://user:pw@broker", "as username and password"),
    ],
)
def test_a_bad_url_is_refused_with_what_to_write(url: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        MqttSettings(url=url)


@given(st.from_regex(r"[a-z][a-z0-9+.-]{0,9}", fullmatch=True))
def test_only_the_mqtt_schemes_are_accepted(scheme: str) -> None:
    url = f"{scheme}://broker:1883"
    if scheme in ("mqtt", "mqtts"):
        assert MqttSettings(url=url).url == url
    else:
        with pytest.raises(ValidationError, match="mqtt url must be"):
            MqttSettings(url=url)


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    with pytest.raises(ValidationError, match=f"mqtt ca_file not found: {missing}"):
        MqttSettings(url="mqtts://broker", ca_file=missing)


def test_tls_files_need_mqtts_and_come_in_pairs(tmp_path: Path) -> None:
    pem = tmp_path / "file.pem"
    pem.write_text("not read here")
    with pytest.raises(ValidationError, match="need an mqtts:// url"):
        MqttSettings(url="mqtt://broker", ca_file=pem)
    with pytest.raises(ValidationError, match="go together"):
        MqttSettings(url="mqtts://broker", client_cert_file=pem)
    assert MqttSettings(
        url="mqtts://broker", ca_file=pem, client_cert_file=pem, client_key_file=pem
    )


def test_other_inconsistent_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="password given without a username"):
        MqttSettings(url="mqtt://broker", password="x")
    with pytest.raises(ValidationError, match="reconnect_min_seconds is more than"):
        MqttSettings(reconnect_min_seconds=30, reconnect_max_seconds=5)
    with pytest.raises(ValidationError, match="client_id"):
        MqttSettings(client_id="two words")


@pytest.mark.parametrize("bad", ["", "a/#/b", "a/b#", "a/+b", "$share/g", "$share//a", "x\0y"])
def test_a_bad_topic_filter_is_refused(bad: str) -> None:
    hub = MqttHub(MqttSettings(url="mqtt://broker"))
    with pytest.raises(ValueError, match="bad"):
        hub.subscribe(bad, lambda message: None)


def test_subscriptions_are_qos_0_or_1_and_filters_keep_their_identifier() -> None:
    hub = MqttHub(MqttSettings(url="mqtt://broker"))
    with pytest.raises(ValueError, match="qos must be 0"):
        hub.subscribe("a/+", lambda message: None, qos=2)
    hub.subscribe("$share/civicloud/meters/+/co2", lambda message: None, qos=0)
    # The identifier is the filter's, in any process: a resumed session's messages still
    # name the filter they matched.
    assert subscription_identifier("meters/+") == subscription_identifier("meters/+")
    assert 1 <= subscription_identifier("meters/+") <= 268_435_455
