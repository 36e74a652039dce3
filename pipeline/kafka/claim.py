"""One live process per transactional id: two producers with one id fence each other, so the second refuses.

Two checks, both before the producer initialises transactions (which would fence the first):

- on this host, an exclusive ``flock`` on a file named after the cluster and the id; the kernel
  releases it when the process dies, SIGKILL included, so a dead member never blocks its successor;
- in the group, a member whose client id is the transactional id (the event processor's consumer
  uses it as its client id). A SIGKILLed member stays listed until its session times out, so a
  listed id is looked up again after that before the newcomer gives up.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import IO

from pipeline.errors import ConsumerFatalError
from pipeline.kafka.connection import KafkaConnection

log = logging.getLogger(__name__)


def _lock_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    folder = Path(base) / "sparseinst-members"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class TransactionalIdClaim:
    """Held for the life of one member; :meth:`release` (or process exit) frees the id."""

    def __init__(self, handle: IO[str], path: Path) -> None:
        self._handle, self.path = handle, path

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()


def claim_on_host(bootstrap: str, transactional_id: str) -> TransactionalIdClaim:
    """The host-wide lock of ``transactional_id``; :class:`ConsumerFatalError` if a live process holds it."""
    digest = hashlib.sha1(f"{bootstrap}|{transactional_id}".encode()).hexdigest()[:20]
    path = _lock_dir() / f"{digest}.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConsumerFatalError(f"transactional id {transactional_id!r} is in use by {holder} on this host: give "
                                 "every member its own consumer.member_id (or leave it unset)") from None  # fmt: skip
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return TransactionalIdClaim(handle, path)


def members_using(conn: KafkaConnection, group_id: str, client_id: str) -> list[str]:
    """Hosts of the group's current members whose client id is ``client_id`` (empty if the group is unknown)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**conn.client_args(), client_id="sparseinst-claim")
    try:
        groups = admin.describe_groups([group_id])
    finally:
        admin.close()
    members = (groups.get(group_id) or {}).get("members") or []
    return [str(m.get("client_host", "?")) for m in members if m.get("client_id") == client_id]


def check_group(conn: KafkaConnection, group_id: str, transactional_id: str, *, session_timeout_s: float) -> None:
    """Refuse when a live member of ``group_id`` (on any host) already uses ``transactional_id``."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + session_timeout_s + 3.0
    while True:
        try:
            holders = members_using(conn, group_id, transactional_id)
        except KafkaError as exc:  # the producer's own fencing still protects the group; say so and go on
            log.warning("could not check group %s for transactional id %s: %s", group_id, transactional_id, exc)
            return
        if not holders:
            return
        if time.monotonic() > deadline:
            raise ConsumerFatalError(f"transactional id {transactional_id!r} is in use by a live member of group "
                                     f"{group_id!r} on {', '.join(sorted(set(holders)))}: give every member its own "
                                     "consumer.member_id")  # fmt: skip
        log.info("transactional id %s is still listed in group %s (a member that died?): waiting for its session "
                 "to time out", transactional_id, group_id)  # fmt: skip
        time.sleep(1.0)
