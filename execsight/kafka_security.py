"""TLS and SASL for every Kafka client: one source of settings, two client libraries.

Settings come from allow-listed ``EXECSIGHT_KAFKA_*`` variables and/or a Java-style client-properties file
(``EXECSIGHT_KAFKA_CLIENT_PROPERTIES``; a variable beats the same key in the file). ``load_security`` validates
them (a bad value names the variable, or the file and line); the builders turn the result into
librdkafka keys (confluent-kafka: collector, tune, sweep, notify, admin, lag gauge) and into an
``ssl.SSLContext`` plus SASL arguments (aiokafka, and Faust's ``broker_credentials`` for the correlator).

Secrets (SASL password, key password) never appear in ``repr``, ``describe`` or an error message.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PROPERTIES_VAR = "EXECSIGHT_KAFKA_CLIENT_PROPERTIES"

# property key (librdkafka's name) -> the variable that sets it
ENV_OF: dict[str, str] = {
    "security.protocol": "EXECSIGHT_KAFKA_SECURITY_PROTOCOL",
    "sasl.mechanism": "EXECSIGHT_KAFKA_SASL_MECHANISM",
    "sasl.username": "EXECSIGHT_KAFKA_SASL_USERNAME",
    "sasl.password": "EXECSIGHT_KAFKA_SASL_PASSWORD",
    "ssl.ca.location": "EXECSIGHT_KAFKA_SSL_CA_LOCATION",
    "ssl.certificate.location": "EXECSIGHT_KAFKA_SSL_CERTIFICATE_LOCATION",
    "ssl.key.location": "EXECSIGHT_KAFKA_SSL_KEY_LOCATION",
    "ssl.key.password": "EXECSIGHT_KAFKA_SSL_KEY_PASSWORD",
    "ssl.endpoint.identification.algorithm": "EXECSIGHT_KAFKA_SSL_ENDPOINT_IDENTIFICATION",
}

# (variable, default, meaning): rows of execsight.settings.SETTINGS_DOC and the README table
SETTINGS_ROWS: tuple[tuple[str, str, str], ...] = (
    ("EXECSIGHT_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", "Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."),
    ("EXECSIGHT_KAFKA_SASL_MECHANISM", "PLAIN", "Kafka SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."),
    ("EXECSIGHT_KAFKA_SASL_USERNAME", "", "Kafka SASL user (needed with SASL_*)."),
    ("EXECSIGHT_KAFKA_SASL_PASSWORD", "", "Kafka SASL password (never logged)."),
    ("EXECSIGHT_KAFKA_SSL_CA_LOCATION", "", "Kafka TLS: CA bundle (PEM) the broker's certificate is checked "
                                            "against (empty: the system's CAs)."),
    ("EXECSIGHT_KAFKA_SSL_CERTIFICATE_LOCATION", "", "Kafka mTLS: client certificate (PEM)."),
    ("EXECSIGHT_KAFKA_SSL_KEY_LOCATION", "", "Kafka mTLS: client private key (PEM)."),
    ("EXECSIGHT_KAFKA_SSL_KEY_PASSWORD", "", "Kafka mTLS: password of an encrypted client key (never logged)."),
    ("EXECSIGHT_KAFKA_SSL_ENDPOINT_IDENTIFICATION", "https",
     "Kafka TLS: https checks the broker's name against its certificate; none skips that check."),
    (PROPERTIES_VAR, "", "Kafka: client-properties file (key=value: security.protocol, sasl.*, ssl.*, "
                         "sasl.jaas.config); a variable above beats the same key in it."),
)

# keys a Java client-properties file may carry that these clients cannot use, and what to do instead
_JAVA_ONLY = {
    "ssl.truststore.location": "convert the truststore to PEM and set ssl.ca.location",
    "ssl.truststore.password": "convert the truststore to PEM and set ssl.ca.location",
    "ssl.truststore.type": "convert the truststore to PEM and set ssl.ca.location",
    "ssl.keystore.location": "convert the keystore to PEM and set ssl.certificate.location and ssl.key.location",
    "ssl.keystore.password": "convert the keystore to PEM and set ssl.certificate.location and ssl.key.location",
    "ssl.keystore.type": "convert the keystore to PEM and set ssl.certificate.location and ssl.key.location",
    "bootstrap.servers": "set KAFKA_BOOTSTRAP_SERVERS",
    "sasl.client.callback.handler.class": "AWS MSK IAM and OAUTHBEARER are not supported (README: Secure transport)",
    "sasl.login.callback.handler.class": "AWS MSK IAM and OAUTHBEARER are not supported (README: Secure transport)",
}
_ALIASES = {"sasl.mechanisms": "sasl.mechanism"}  # librdkafka's spelling
_JAAS_MODULES = {"org.apache.kafka.common.security.plain.PlainLoginModule",
                 "org.apache.kafka.common.security.scram.ScramLoginModule"}


class KafkaSecurityError(ValueError):
    """A Kafka security setting that cannot be used; the message names the variable or file:line."""


class KafkaCredentialsError(RuntimeError):
    """The broker refused this client's credentials or TLS; the message names the settings to fix."""


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
    check_hostname: bool = True
    # property key -> where its value came from: a variable, or "FILE:LINE (key)"
    origin: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def where(self, key: str) -> str:
        """The setting to name for a property: where it was set, else its variable."""
        return self.origin.get(key, ENV_OF[key])

    def describe(self) -> dict[str, Any]:
        """What a log line may show: no password, no key password."""
        doc: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_sasl:
            doc.update(sasl_mechanism=self.sasl_mechanism, sasl_username=self.sasl_username)
        if self.uses_tls:
            doc.update(ssl_ca=str(self.ssl_ca_location or "(system CAs)"),
                       ssl_client_cert=str(self.ssl_certificate_location or ""), check_hostname=self.check_hostname)
        return doc


PLAINTEXT = KafkaSecurity()


# ---- parsing -------------------------------------------------------------------------------------------------

def parse_properties(text: str, path: str) -> dict[str, tuple[str, int]]:
    """A Java-style properties file: ``key=value`` or ``key: value``, ``#``/``!`` comments, ``\\`` continuation.

    Returns key -> (value, line). Anything else (no separator, a key these clients do not take, a key twice)
    raises KafkaSecurityError naming the file and line; a value is never put in a message.
    """
    out: dict[str, tuple[str, int]] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = i + 1
        line = lines[i].strip()
        i += 1
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + lines[i].strip()
            i += 1
        if not line or line[0] in "#!":
            continue
        m = re.match(r"([A-Za-z0-9_.\-]+)\s*[=:]\s*(.*)$", line)
        if m is None:
            raise KafkaSecurityError(f"{path}:{start}: expected key=value")
        key, value = _ALIASES.get(m.group(1), m.group(1)), m.group(2).strip()
        if key in _JAVA_ONLY:
            raise KafkaSecurityError(f"{path}:{start}: {key} is not read by these clients: {_JAVA_ONLY[key]}")
        if key not in ENV_OF and key != "sasl.jaas.config":
            known = ", ".join([*ENV_OF, "sasl.jaas.config"])
            raise KafkaSecurityError(f"{path}:{start}: unknown key {key!r} (execsight takes {known})")
        if key in out:
            raise KafkaSecurityError(f"{path}:{start}: {key} given twice (first on line {out[key][1]})")
        out[key] = (value, start)
    return out


def parse_jaas(value: str, where: str) -> dict[str, str]:
    """username/password of a PlainLoginModule or ScramLoginModule ``sasl.jaas.config`` line."""
    m = re.match(r"\s*([\w.$]+)\s+required\b(.*?);?\s*$", value, re.S)
    if m is None or m.group(1) not in _JAAS_MODULES:
        raise KafkaSecurityError(f"{where}: sasl.jaas.config: expected '<PlainLoginModule|ScramLoginModule> "
                                 "required username=\"...\" password=\"...\";'")
    opts = {k: a or b for k, a, b in re.findall(r"(\w+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')",
                                                                     m.group(2))}
    missing = [k for k in ("username", "password") if k not in opts]
    if missing:
        raise KafkaSecurityError(f"{where}: sasl.jaas.config has no {' and no '.join(missing)}")
    return {"sasl.username": opts["username"], "sasl.password": opts["password"]}


def _raw_values(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Property key -> value and -> origin, from the properties file (if any) overlaid by the variables."""
    values: dict[str, str] = {}
    origin: dict[str, str] = {}
    path = env.get(PROPERTIES_VAR, "").strip()
    if path:
        p = Path(path).expanduser()
        try:
            text = p.read_text()
        except OSError as exc:
            raise KafkaSecurityError(f"{PROPERTIES_VAR}={path!r}: cannot read it ({exc.strerror})") from None
        for key, (value, line) in parse_properties(text, str(p)).items():
            where = f"{p}:{line} ({key})"
            if key == "sasl.jaas.config":
                for k, v in parse_jaas(value, f"{p}:{line}").items():
                    values.setdefault(k, v)
                    origin.setdefault(k, f"{p}:{line} (sasl.jaas.config)")
            else:
                values[key], origin[key] = value, where  # an explicit key beats the JAAS line
    for key, var in ENV_OF.items():
        if env.get(var, "") != "":
            values[key], origin[key] = env[var], var
    return values, origin


def _readable_file(value: str, where: str) -> Path:
    p = Path(value).expanduser()
    if not p.is_file():
        raise KafkaSecurityError(f"{where}={value!r}: no such file")
    if not os.access(p, os.R_OK):
        raise KafkaSecurityError(f"{where}={value!r}: not readable by this user")
    return p


def load_security(env: Mapping[str, str]) -> KafkaSecurity:
    """Validated Kafka security settings from the environment (and the properties file it names)."""
    values, origin = _raw_values(env)

    def where(key: str) -> str:
        return origin.get(key, ENV_OF[key])

    protocol = values.get("security.protocol", "PLAINTEXT").strip().upper()
    if protocol not in PROTOCOLS:
        raise KafkaSecurityError(f"{where('security.protocol')}={values['security.protocol']!r}: "
                                 f"expected one of {', '.join(PROTOCOLS)}")
    sasl = protocol.startswith("SASL_")
    tls = protocol in ("SSL", "SASL_SSL")
    sasl_keys = ("sasl.mechanism", "sasl.username", "sasl.password")
    ssl_keys = ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location", "ssl.key.password")
    for key in (sasl_keys if not sasl else ()) + (ssl_keys if not tls else ()):
        if key in values:  # set for nothing: most likely the protocol was forgotten
            raise KafkaSecurityError(f"{where(key)} is set but {where('security.protocol')}={protocol} does not "
                                     f"use it")
    mechanism = username = password = None
    if sasl:
        mechanism = values.get("sasl.mechanism", "PLAIN").strip().upper()
        if mechanism not in MECHANISMS:
            raise KafkaSecurityError(f"{where('sasl.mechanism')}={mechanism!r}: expected one of "
                                     f"{', '.join(MECHANISMS)} (AWS MSK IAM, OAUTHBEARER, GSSAPI: not supported, "
                                     "see README: Secure transport)")
        for key in ("sasl.username", "sasl.password"):
            if not values.get(key):
                raise KafkaSecurityError(f"{where('security.protocol')}={protocol} needs {ENV_OF[key]} "
                                         f"(or {key} in the {PROPERTIES_VAR} file)")
        username, password = values["sasl.username"], values["sasl.password"]
    ca = cert = key_file = None
    key_password = None
    check_hostname = True
    if tls:
        if values.get("ssl.ca.location"):
            ca = _readable_file(values["ssl.ca.location"], where("ssl.ca.location"))
        if values.get("ssl.certificate.location"):
            cert = _readable_file(values["ssl.certificate.location"], where("ssl.certificate.location"))
        if values.get("ssl.key.location"):
            key_file = _readable_file(values["ssl.key.location"], where("ssl.key.location"))
        if (cert is None) != (key_file is None):
            given, other = ("ssl.certificate.location", "ssl.key.location") if cert else (
                "ssl.key.location", "ssl.certificate.location")
            raise KafkaSecurityError(f"{where(given)} is set without {ENV_OF[other]} (mTLS needs both)")
        key_password = values.get("ssl.key.password") or None
        if key_password and key_file is None:
            raise KafkaSecurityError(f"{where('ssl.key.password')} is set without {ENV_OF['ssl.key.location']}")
        algo = values.get("ssl.endpoint.identification.algorithm", "https").strip().lower()
        if algo not in ("https", "none", ""):
            raise KafkaSecurityError(f"{where('ssl.endpoint.identification.algorithm')}={algo!r}: "
                                     "expected https or none")
        check_hostname = algo == "https"
    return KafkaSecurity(protocol, mechanism, username, password, ca, cert, key_file, key_password,
                         check_hostname, origin)


_env_cache: tuple[tuple[str, ...], KafkaSecurity] | None = None
_env_lock = threading.Lock()


def from_environment() -> KafkaSecurity:
    """The process's own settings, for helpers given only a bootstrap address (execsight status, admin calls).

    Validated by load_settings at start-up already; re-read only when one of the variables changes.
    """
    global _env_cache
    names = (*ENV_OF.values(), PROPERTIES_VAR)
    key = tuple(os.environ.get(n, "") for n in names)
    with _env_lock:
        if _env_cache is None or _env_cache[0] != key:
            _env_cache = (key, load_security(os.environ))
        return _env_cache[1]


# ---- builders ------------------------------------------------------------------------------------------------

def librdkafka_config(sec: KafkaSecurity) -> dict[str, str]:
    """The librdkafka (confluent-kafka) keys: merge into any Producer/Consumer/AdminClient config."""
    cfg = {"security.protocol": sec.protocol.lower()}
    if sec.uses_sasl:
        cfg.update({"sasl.mechanism": str(sec.sasl_mechanism), "sasl.username": str(sec.sasl_username),
                    "sasl.password": str(sec.sasl_password)})
    if sec.uses_tls:
        cfg["ssl.endpoint.identification.algorithm"] = "https" if sec.check_hostname else "none"
        if sec.ssl_ca_location:
            cfg["ssl.ca.location"] = str(sec.ssl_ca_location)
        if sec.ssl_certificate_location and sec.ssl_key_location:
            cfg["ssl.certificate.location"] = str(sec.ssl_certificate_location)
            cfg["ssl.key.location"] = str(sec.ssl_key_location)
        if sec.ssl_key_password:
            cfg["ssl.key.password"] = sec.ssl_key_password
    return cfg


def ssl_context(sec: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context aiokafka (and Faust) use; None without TLS. Same CA, client pair and hostname check."""
    if not sec.uses_tls:
        return None
    ctx = ssl.create_default_context(cafile=str(sec.ssl_ca_location) if sec.ssl_ca_location else None)
    if sec.ssl_certificate_location and sec.ssl_key_location:
        try:
            ctx.load_cert_chain(str(sec.ssl_certificate_location), str(sec.ssl_key_location),
                                password=sec.ssl_key_password)
        except ssl.SSLError:
            raise KafkaSecurityError(
                f"{sec.where('ssl.certificate.location')} / {sec.where('ssl.key.location')}: the client "
                f"certificate and key do not load (wrong pair, or {sec.where('ssl.key.password')} wrong)") from None
    if not sec.check_hostname:
        ctx.check_hostname = False
    return ctx


def aiokafka_kwargs(sec: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for aiokafka's AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
    kw: dict[str, Any] = {"security_protocol": sec.protocol}
    ctx = ssl_context(sec)
    if ctx is not None:
        kw["ssl_context"] = ctx
    if sec.uses_sasl:
        kw.update(sasl_mechanism=sec.sasl_mechanism, sasl_plain_username=sec.sasl_username,
                  sasl_plain_password=sec.sasl_password)
    return kw


def faust_credentials(sec: KafkaSecurity) -> Any:
    """Faust's ``broker_credentials`` (None for PLAINTEXT): its consumer, producer and admin client use them."""
    from faust.auth import SASLCredentials, SSLCredentials

    if sec.uses_sasl:
        return SASLCredentials(username=sec.sasl_username, password=sec.sasl_password,
                               ssl_context=ssl_context(sec), mechanism=sec.sasl_mechanism)
    if sec.uses_tls:
        return SSLCredentials(ssl_context(sec))
    return None


# ---- start-up check ------------------------------------------------------------------------------------------

def refusal(sec: KafkaSecurity, code: int, text: str) -> str | None:
    """A message naming the settings to fix when an error means the broker refused these settings."""
    from confluent_kafka import KafkaError

    if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
        return (f"kafka refused the SASL {sec.sasl_mechanism} login of user {sec.sasl_username!r}: check "
                f"{sec.where('sasl.password')} and {sec.where('sasl.username')}")
    # a broker that rejects the client's certificate (or its absence) shows as a transport error with a TLS alert
    tls_alert = code == KafkaError._TRANSPORT and "SSL" in text and ("alert" in text or "certificate" in text)
    if code == KafkaError._SSL or tls_alert:
        if "verify" in text:  # the broker's certificate is not trusted, or its name does not match
            hint = f"{sec.where('ssl.ca.location')} (or {sec.where('ssl.endpoint.identification.algorithm')})"
        elif "certificate" in text or sec.ssl_certificate_location:  # the broker wants a client certificate
            hint = f"{sec.where('ssl.certificate.location')} and {sec.where('ssl.key.location')}"
        else:
            hint = f"{sec.where('security.protocol')} and {sec.where('ssl.ca.location')}"
        return f"kafka TLS handshake failed ({_first_reason(text)}): check {hint}"
    return None


def _first_reason(text: str) -> str:
    """librdkafka's reason without the broker list (short, and no value of a setting in it)."""
    return text.split(": ", 1)[-1][:200]


def check_broker(bootstrap: str, sec: KafkaSecurity, timeout_s: float = 15.0) -> bool:
    """Asks the brokers for metadata with these settings. True: answered; False: not reachable in time.

    Raises KafkaCredentialsError, naming the settings, when the broker refuses the login or the TLS handshake
    fails: retrying would never help, so a service stops at start-up instead of waiting forever.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    refused: list[str] = []

    def on_error(err: KafkaError) -> None:
        msg = refusal(sec, err.code(), err.str())
        if msg is not None:
            refused.append(msg)

    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, **librdkafka_config(sec), "error_cb": on_error,
                            "socket.timeout.ms": 5000, "log_level": 0, "logger": logging.getLogger("librdkafka.check")}
    client = AdminClient(conf)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            md = client.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            if md.brokers:
                return True
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError):
                msg = refusal(sec, err.code(), err.str())
                if msg is not None:
                    refused.append(msg)
        client.poll(0)  # serves error_cb
        if refused:
            raise KafkaCredentialsError(refused[0])
        if time.monotonic() >= deadline:
            return False
