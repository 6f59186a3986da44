"""Every Kafka error a role can meet, classified once: fatal (stop with one line) or transient (back off, carry on).

Fatal means the deployment is wrong and waiting cannot fix it: bad client configuration, failed authentication,
a denied ACL. Everything else the network or a restarting broker can cause (connection refused or reset, no
leader, coordinator moved, request timed out, node not ready, a socket error) is transient: the caller backs off,
`/readyz` answers 503 and `visionstream_kafka_up` is 0 until a call succeeds again, and the process lives on.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable

from kafka.errors import (
    AuthorizationError,
    IllegalSaslStateError,
    IncompatibleBrokerVersion,
    KafkaConfigurationError,
    KafkaError,
    SaslAuthenticationFailedError,
    SecurityDisabledError,
    UnacceptableCredentialError,
    UnrecognizedBrokerVersion,
    UnsupportedSaslMechanismError,
)

from visionstream.metrics import KAFKA_ERRORS, KAFKA_UP

log = logging.getLogger(__name__)

FATAL_KAFKA_ERRORS: tuple[type[BaseException], ...] = (
    KafkaConfigurationError,
    AuthorizationError,  # topic, group, cluster, transactional id and delegation-token ACL denials
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
    UnacceptableCredentialError,
    SecurityDisabledError,
    IncompatibleBrokerVersion,
    UnrecognizedBrokerVersion,
    ssl.SSLCertVerificationError,  # an untrusted CA or a wrong host name does not heal by waiting
)

# What a Kafka call can raise besides KafkaError: the client lets socket errors through in places.
KAFKA_CALL_ERRORS: tuple[type[BaseException], ...] = (KafkaError, OSError)


class KafkaFatalError(RuntimeError):
    """A Kafka error that retrying cannot fix; the message is one line that says what to change."""


def is_fatal(exc: BaseException) -> bool:
    """True for configuration, authentication and authorisation errors, also when wrapped by the client."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, FATAL_KAFKA_ERRORS):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


MAX_DESCRIBED_CHARS = 300


def describe(exc: BaseException) -> str:
    """`ErrorClass: message` on one line, cut at 300 characters (the client's messages can span lines and quote
    whole requests)."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    line = f"{name}: {text}" if text and not text.startswith(name) else (text or name)
    return line if len(line) <= MAX_DESCRIBED_CHARS else line[: MAX_DESCRIBED_CHARS - 3] + "..."


def fatal_error(exc: BaseException, role: str, operation: str) -> KafkaFatalError:
    hint = "check the kafka.* security settings and the broker's ACLs"
    if isinstance(exc, KafkaConfigurationError):
        hint = "check the kafka.* settings"
    return KafkaFatalError(f"Kafka refused the {role}'s {operation} ({describe(exc)}); {hint}")


class BrokerHealth:
    """Whether this role's last Kafka calls reached the brokers; the gauge and /readyz follow it.

    `failed()` raises KafkaFatalError for fatal errors and returns for transient ones (after counting them), so a
    caller decides only how to retry. Thread-safe: a role's loop and its runner thread both report.
    """

    def __init__(self, role: str) -> None:
        self.role = role
        # Read on every /readyz: the client's own view of the brokers, for when the role's thread is busy (a
        # batch waiting for acks) and cannot report. Set by the role once its client exists.
        self.probe: Callable[[], bool] = lambda: True
        self._lock = threading.Lock()
        self._up = True
        self.last_error = ""
        self.fatal: KafkaFatalError | None = None
        KAFKA_UP.labels(role=role).set(1)

    @property
    def up(self) -> bool:
        """The last call succeeded and the client is connected (marks the gauge down when the probe says not)."""
        if self._up and not self.probe():
            self.down("the client lost its connection to the brokers")
        return self._up

    def ok(self) -> None:
        if self._up:
            return
        with self._lock:
            if not self._up:
                self._up = True
                KAFKA_UP.labels(role=self.role).set(1)
                log.info("Kafka reachable again role=%s", self.role)

    def down(self, reason: str) -> None:
        with self._lock:
            self.last_error = reason
            if self._up:
                self._up = False
                KAFKA_UP.labels(role=self.role).set(0)
                log.warning("Kafka unreachable role=%s: %s", self.role, reason)

    def record(self, operation: str, exc: BaseException) -> None:
        """Count `exc` and mark the brokers unreachable (for callbacks on the client's threads: never raises;
        a fatal error is kept in `fatal` for the role's own thread to raise)."""
        KAFKA_ERRORS.labels(role=self.role, operation=operation, error=type(exc).__name__).inc()
        if is_fatal(exc) and self.fatal is None:
            self.fatal = fatal_error(exc, self.role, operation)
        self.down(f"{operation}: {describe(exc)}")

    def failed(self, operation: str, exc: BaseException) -> None:
        """Count `exc`; raise KafkaFatalError if it is fatal, else mark the brokers unreachable and return."""
        if is_fatal(exc):
            KAFKA_ERRORS.labels(role=self.role, operation=operation, error=type(exc).__name__).inc()
            raise fatal_error(exc, self.role, operation) from exc
        self.record(operation, exc)

    def status(self) -> dict[str, object]:
        up = self.up
        return {"kafka_up": up, **({"kafka_error": self.last_error} if not up else {})}
