"""How every Kafka client of the project connects: bootstrap servers plus SASL/TLS settings.

Producers, consumers and admin clients all take their keyword arguments from
:meth:`KafkaConnection.client_args`, so one settings block secures ingest, consumers and admin
alike. Passwords are :class:`~pydantic.SecretStr`: they print as ``**********`` and are only
revealed when a client is built.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from pipeline.errors import KafkaUnavailableError
from pipeline.secret_files import not_both, value_or_file

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class KafkaSecurity(BaseModel):
    """SASL and TLS for the Kafka clients (``security_protocol`` as Kafka names it)."""

    model_config = ConfigDict(extra="forbid")

    protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = Field(None, description="file holding the password (instead of password)")
    ssl_cafile: Path | None = Field(None, description="CA bundle (PEM) that signed the brokers' certificates")
    ssl_certfile: Path | None = Field(None, description="client certificate (PEM), for brokers that ask for one")
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True

    @model_validator(mode="before")
    @classmethod
    def _one_password(cls, data: Any) -> Any:
        return not_both(data, "password", "password_file")

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecurity:
        if self.protocol.startswith("SASL") and (not self.username or (self.password or self.password_file) is None):
            raise ValueError(f"protocol {self.protocol} needs username and password (or password_file)")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: file not found: {path}")
        return self

    def secret(self) -> SecretStr:
        """The password, read from ``password_file`` when a client is built (a rotated secret is picked up)."""
        secret = value_or_file(self.password, self.password_file, "kafka.security.password_file",
                               KafkaUnavailableError)  # fmt: skip
        assert secret is not None  # SASL without either is refused when the settings load
        return secret

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")


class KafkaConnection(BaseModel):
    """Where the cluster is and how to authenticate; ``client_args()`` feeds kafka-python's clients."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap: str = Field(min_length=3, description="host:port[,host:port...]")
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)

    @classmethod
    def of(cls, value: KafkaConnection | str) -> KafkaConnection:
        return value if isinstance(value, KafkaConnection) else cls(bootstrap=value)

    def client_args(self) -> dict[str, Any]:
        s = self.security
        args: dict[str, Any] = {"bootstrap_servers": self.bootstrap.split(","), "security_protocol": s.protocol}
        if s.sasl:
            args |= {"sasl_mechanism": s.sasl_mechanism, "sasl_plain_username": s.username,
                     "sasl_plain_password": s.secret().get_secret_value()}  # fmt: skip
        if s.tls:
            args |= {"ssl_check_hostname": s.ssl_check_hostname}
            args |= {k: str(getattr(s, k)) for k in ("ssl_cafile", "ssl_certfile", "ssl_keyfile") if getattr(s, k)}
        return args

    def describe(self) -> str:
        """For logs and errors: never the password."""
        who = f" as {self.security.username} ({self.security.sasl_mechanism})" if self.security.sasl else ""
        return f"{self.bootstrap} over {self.security.protocol}{who}"


def check_connection(conn: KafkaConnection, timeout_s: float = 30.0) -> None:
    """Fail fast, with one clear line, when the cluster cannot be reached or refuses the credentials.

    kafka-python reports a refused SASL login only in its log and retries until its bootstrap
    times out; this check watches for that report and gives up at the first one.
    """
    from kafka import KafkaAdminClient

    outcome: list[BaseException | None] = []
    done = threading.Event()

    def attempt() -> None:
        admin = None
        try:
            admin = KafkaAdminClient(**conn.client_args(), client_id="sparseinst-check",
                                     request_timeout_ms=int(timeout_s * 1000))  # fmt: skip
            admin.describe_cluster()
            outcome.append(None)
        except Exception as exc:
            outcome.append(exc)
        finally:
            if admin is not None:
                admin.close()
            done.set()

    refused = _LoginFailures(done)
    net_log = logging.getLogger("kafka.net")
    net_log.addHandler(refused)
    try:
        threading.Thread(target=attempt, daemon=True, name="kafka-check").start()
        done.wait(timeout_s + 5)
    finally:
        net_log.removeHandler(refused)
    if refused.first is not None:
        raise KafkaUnavailableError(f"Kafka at {conn.describe()} refused the login: {_first_line(refused.first)}")
    if not outcome:
        raise KafkaUnavailableError(f"Kafka at {conn.describe()} did not answer within {timeout_s:.0f} s")
    if outcome[0] is not None:
        exc = outcome[0]
        raise KafkaUnavailableError(f"Kafka at {conn.describe()}: {type(exc).__name__}: {_first_line(exc)}")


class _LoginFailures(logging.Handler):
    """Notices kafka-python's log records of a refused SASL login.

    The broker answers a wrong password with an authentication error and then closes the
    connection; on a loaded machine the client's TLS transport can see the close first and log a
    plain disconnect. A connection that the broker drops while the client is authenticating
    (TLS and the API handshake done), ``DROPS_MEANING_REFUSED`` times in one check, is a refusal too.
    """

    DROPS_MEANING_REFUSED = 3

    def __init__(self, done: threading.Event) -> None:
        super().__init__(logging.ERROR)
        self.done = done
        self.first: BaseException | None = None
        self.drops = 0

    def emit(self, record: logging.LogRecord) -> None:
        from kafka.errors import SaslAuthenticationFailedError

        if self.first is not None:
            return
        args = record.args if isinstance(record.args, tuple) else ()
        refusal = next((a for a in args if isinstance(a, SaslAuthenticationFailedError)), None)
        if refusal is None and _dropped_while_authenticating(args):
            self.drops += 1
            if self.drops >= self.DROPS_MEANING_REFUSED:
                what = f"the broker closed the connection during SASL authentication {self.drops} times"
                refusal = SaslAuthenticationFailedError(what)
        if refusal is not None:
            self.first = refusal
            self.done.set()


def _dropped_while_authenticating(args: tuple) -> bool:
    """A transport's abort record (transport, error) for a plain disconnect of a connection in its SASL step."""
    from kafka.errors import KafkaConnectionError

    if len(args) != 2 or type(args[1]) is not KafkaConnectionError or not hasattr(args[0], "get_protocol"):
        return False
    conn = args[0].get_protocol()
    return (getattr(conn, "initializing", False) and getattr(conn, "sasl_enabled", False)
            and getattr(conn, "broker_version_data", None) is not None)  # fmt: skip


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
