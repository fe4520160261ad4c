"""Kafka TLS/SASL settings: validation that names the variable or file:line, the two clients' configs, no secrets."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from execsight.kafka_security import (
    KafkaSecurityError,
    aiokafka_kwargs,
    faust_credentials,
    librdkafka_config,
    load_security,
    parse_properties,
    refusal,
    ssl_context,
)
from execsight.settings import SettingsError, load_settings

SASL = {"EXECSIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "EXECSIGHT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "EXECSIGHT_KAFKA_SASL_USERNAME": "svc", "EXECSIGHT_KAFKA_SASL_PASSWORD": "s3cret-pw"}


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate and its key (as a CA file and as a client pair)."""
    d = tmp_path_factory.mktemp("pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out",
                    "cert.pem", "-days", "1", "-subj", "/CN=t"], cwd=d, check=True, capture_output=True)
    return d


def test_default_is_plaintext_and_adds_nothing_but_the_protocol() -> None:
    sec = load_security({})
    assert sec.protocol == "PLAINTEXT" and librdkafka_config(sec) == {"security.protocol": "plaintext"}
    assert faust_credentials(sec) is None and ssl_context(sec) is None
    assert load_settings({}).kafka_security == sec


def test_sasl_ssl_from_variables_builds_both_clients(pem: Path) -> None:
    sec = load_security({**SASL, "EXECSIGHT_KAFKA_SSL_CA_LOCATION": str(pem / "cert.pem")})
    assert librdkafka_config(sec) == {
        "security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc",
        "sasl.password": "s3cret-pw", "ssl.ca.location": str(pem / "cert.pem"),
        "ssl.endpoint.identification.algorithm": "https"}
    kw = aiokafka_kwargs(sec)
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_username"] == "svc" and kw["sasl_plain_password"] == "s3cret-pw"
    assert isinstance(kw["ssl_context"], ssl.SSLContext) and kw["ssl_context"].check_hostname
    creds = faust_credentials(sec)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert creds.ssl_context is not None


def test_mtls_pair_and_hostname_check_off(pem: Path) -> None:
    sec = load_security({"EXECSIGHT_KAFKA_SECURITY_PROTOCOL": "ssl",
                         "EXECSIGHT_KAFKA_SSL_CERTIFICATE_LOCATION": str(pem / "cert.pem"),
                         "EXECSIGHT_KAFKA_SSL_KEY_LOCATION": str(pem / "key.pem"),
                         "EXECSIGHT_KAFKA_SSL_ENDPOINT_IDENTIFICATION": "none"})
    cfg = librdkafka_config(sec)
    assert cfg["security.protocol"] == "ssl" and cfg["ssl.key.location"] == str(pem / "key.pem")
    assert cfg["ssl.endpoint.identification.algorithm"] == "none"
    ctx = ssl_context(sec)
    assert ctx is not None and not ctx.check_hostname
    assert faust_credentials(sec).protocol.value == "SSL"


@pytest.mark.parametrize(("env", "named"), [
    ({"EXECSIGHT_KAFKA_SECURITY_PROTOCOL": "TLS"}, "EXECSIGHT_KAFKA_SECURITY_PROTOCOL='TLS'"),
    ({**SASL, "EXECSIGHT_KAFKA_SASL_MECHANISM": "AWS_MSK_IAM"}, "EXECSIGHT_KAFKA_SASL_MECHANISM='AWS_MSK_IAM'"),
    ({**SASL, "EXECSIGHT_KAFKA_SASL_PASSWORD": ""}, "needs EXECSIGHT_KAFKA_SASL_PASSWORD"),
    ({"EXECSIGHT_KAFKA_SASL_USERNAME": "svc"}, "EXECSIGHT_KAFKA_SASL_USERNAME is set but"),
    ({"EXECSIGHT_KAFKA_SECURITY_PROTOCOL": "SSL", "EXECSIGHT_KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.pem"},
     "EXECSIGHT_KAFKA_SSL_CA_LOCATION='/nonexistent/ca.pem': no such file"),
    ({"EXECSIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "EXECSIGHT_KAFKA_SASL_USERNAME": "u",
      "EXECSIGHT_KAFKA_SASL_PASSWORD": "p", "EXECSIGHT_KAFKA_SSL_CA_LOCATION": "/x"},
     "EXECSIGHT_KAFKA_SSL_CA_LOCATION is set but"),
    ({"EXECSIGHT_KAFKA_SECURITY_PROTOCOL": "SSL", "EXECSIGHT_KAFKA_SSL_ENDPOINT_IDENTIFICATION": "maybe"},
     "EXECSIGHT_KAFKA_SSL_ENDPOINT_IDENTIFICATION='maybe'"),
])
def test_bad_settings_stop_start_up_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env)


def test_half_an_mtls_pair_is_refused(pem: Path) -> None:
    with pytest.raises(KafkaSecurityError, match="EXECSIGHT_KAFKA_SSL_CERTIFICATE_LOCATION is set without "
                                                 "EXECSIGHT_KAFKA_SSL_KEY_LOCATION"):
        load_security({"EXECSIGHT_KAFKA_SECURITY_PROTOCOL": "SSL",
                       "EXECSIGHT_KAFKA_SSL_CERTIFICATE_LOCATION": str(pem / "cert.pem")})


def test_properties_file_java_style_with_jaas_and_variables_winning(tmp_path: Path, pem: Path) -> None:
    f = tmp_path / "client.properties"
    f.write_text("# Confluent-style\n! another comment\n\nsecurity.protocol = SASL_SSL\nsasl.mechanisms=PLAIN\n"
                 "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\\n"
                 "    username='KEY' password='SECRET';\n"
                 f"ssl.ca.location: {pem / 'cert.pem'}\n")
    sec = load_security({"EXECSIGHT_KAFKA_CLIENT_PROPERTIES": str(f)})
    assert (sec.protocol, sec.sasl_mechanism, sec.sasl_username, sec.sasl_password) == (
        "SASL_SSL", "PLAIN", "KEY", "SECRET")
    assert sec.where("sasl.password") == f"{f}:6 (sasl.jaas.config)"
    assert sec.where("ssl.ca.location") == f"{f}:8 (ssl.ca.location)"
    over = load_security({"EXECSIGHT_KAFKA_CLIENT_PROPERTIES": str(f), "EXECSIGHT_KAFKA_SASL_PASSWORD": "other"})
    assert over.sasl_password == "other" and over.where("sasl.password") == "EXECSIGHT_KAFKA_SASL_PASSWORD"


@pytest.mark.parametrize(("text", "error"), [
    ("security.protocol=SSL\njust words\n", ":2: expected key=value"),
    ("security.protocol=SSL\nacks=all\n", ":2: unknown key 'acks'"),
    ("ssl.truststore.location=/x.jks\n", ":1: ssl.truststore.location is not read by these clients: convert"),
    ("security.protocol=SSL\nsecurity.protocol=SASL_SSL\n", ":2: security.protocol given twice (first on line 1)"),
    ("security.protocol=SASL_SSL\nsasl.jaas.config=com.example.Login required user=\"x\";\n",
     ":2: sasl.jaas.config: expected"),
    ("security.protocol=SASL_SSL\nsasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
     "required username=\"x\";\n", ":2: sasl.jaas.config has no password"),
    ("security.protocol=PLAINTEXT\nsasl.password=hunter2\n", ":2 (sasl.password) is set but"),
])
def test_a_bad_properties_line_is_named_by_file_and_line(tmp_path: Path, text: str, error: str) -> None:
    f = tmp_path / "bad.properties"
    f.write_text(text)
    with pytest.raises(SettingsError) as exc:
        load_settings({"EXECSIGHT_KAFKA_CLIENT_PROPERTIES": str(f)})
    assert str(exc.value).startswith(str(f)) and error in str(exc.value), str(exc.value)
    assert "hunter2" not in str(exc.value)


def test_a_missing_properties_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"EXECSIGHT_KAFKA_CLIENT_PROPERTIES='.*nope': cannot read it"):
        load_settings({"EXECSIGHT_KAFKA_CLIENT_PROPERTIES": str(tmp_path / "nope")})


def test_secrets_stay_out_of_repr_logs_and_messages(pem: Path) -> None:
    from confluent_kafka import KafkaError

    sec = load_security({**SASL, "EXECSIGHT_KAFKA_SSL_CERTIFICATE_LOCATION": str(pem / "cert.pem"),
                         "EXECSIGHT_KAFKA_SSL_KEY_LOCATION": str(pem / "key.pem"),
                         "EXECSIGHT_KAFKA_SSL_KEY_PASSWORD": "keypw-9"})
    settings = load_settings({**SASL})
    for text in (repr(sec), str(sec.describe()), repr(settings), repr(faust_credentials(load_security(SASL))),
                 str(refusal(sec, KafkaError._AUTHENTICATION, "SASL authentication error"))):
        assert "s3cret-pw" not in text and "keypw-9" not in text, text
    msg = refusal(sec, KafkaError._AUTHENTICATION, "Authentication failed")
    assert msg is not None and "EXECSIGHT_KAFKA_SASL_PASSWORD" in msg and "'svc'" in msg
    tls = refusal(sec, KafkaError._SSL, "SSL handshake failed: certificate verify failed")
    assert tls is not None and "EXECSIGHT_KAFKA_SSL_CA_LOCATION" in tls
    assert refusal(sec, KafkaError._TRANSPORT, "Connection refused") is None  # not reachable: waited for


def test_parse_properties_keeps_line_numbers_through_continuations() -> None:
    got = parse_properties("sasl.username=1\nsasl.password=x\\\n  y\nsecurity.protocol=SSL", "f")
    assert got == {"sasl.username": ("1", 1), "sasl.password": ("xy", 2), "security.protocol": ("SSL", 4)}
