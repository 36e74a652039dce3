"""Model control restricted to who holds a key: Triton's restricted-API options and the header that opens them.

With the key set, Triton answers the model-repository API (index, load, unload) only to requests that
carry the header; inference, health and metadata stay open to every client. The rollout commands
send it; ingest never needs it.
"""

from __future__ import annotations

from pydantic import SecretStr

CONTROL_HEADER = "sparseinst-control-key"  # lower case: gRPC metadata keys must be


def restricted_api_args(key: SecretStr) -> list[str]:
    """The tritonserver options that restrict model control on both protocols to holders of ``key``."""
    grant = f"model-repository:{CONTROL_HEADER}={key.get_secret_value()}"
    return [f"--http-restricted-api={grant}", f"--grpc-restricted-protocol={grant}"]


def control_headers(key: SecretStr | None) -> dict[str, str]:
    """Headers for model-control requests (none when the server is not restricted)."""
    return {CONTROL_HEADER: key.get_secret_value()} if key is not None else {}
