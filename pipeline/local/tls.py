"""A throw-away certificate authority and a loopback server certificate (tests, local TLS brokers).

Made with the ``openssl`` command line; the server file holds the PKCS#8 key and the certificate
chain in PEM, the form Kafka reads with ``ssl.keystore.type=PEM``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.local.process import ServiceError


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # clients trust this
    server: Path  # private key + certificate (for 127.0.0.1 and localhost), signed by the CA


def make_loopback_certificates(folder: Path, days: int = 2) -> TlsFiles:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ServiceError("the openssl command is needed to make test certificates (apt-get install openssl)")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, crt = (folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.crt"))
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")

    def run(*args: str) -> None:
        done = subprocess.run([openssl, *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise ServiceError(f"openssl {args[0]} failed: {done.stderr.strip()[-500:]}")

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", str(days),
        "-subj", "/CN=sparseinst-local-ca")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(crt),
        "-days", str(days), "-extfile", str(ext))  # fmt: skip
    server = folder / "server.pem"
    server.write_text(key.read_text() + crt.read_text() + ca.read_text())
    server.chmod(0o600)
    return TlsFiles(ca=ca, server=server)
