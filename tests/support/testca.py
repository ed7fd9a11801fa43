"""A throwaway certificate authority made with the openssl command, for TLS tests."""
from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Days the test certificates are valid: a test run, with room for a skewed clock.
VALID_DAYS = 2
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]  # fast to make


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Issued:
    certificate: Path  # the certificate alone (chain: just it; the CA is a root)
    key: Path  # its private key alone
    combined: Path  # certificate then key in one PEM, as Icecast 2.4.4 reads it


class TestCA:
    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "fanout test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.certificate = directory / f"{name.replace(' ', '-')}.pem"
        self.key = directory / f"{name.replace(' ', '-')}.key"
        openssl("req", "-x509", *_KEY, "-keyout", self.key, "-out", self.certificate,
                "-days", VALID_DAYS, "-subj", f"/CN={name}", cwd=directory)

    def issue(self, name: str, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Issued:
        """A server certificate for `hosts` (names and addresses), signed by this CA."""
        base = self.directory / name
        names = ",".join(f"IP:{h}" if _is_address(h) else f"DNS:{h}" for h in hosts)
        base.with_suffix(".ext").write_text(f"subjectAltName={names}\n")
        openssl("req", *_KEY, "-keyout", base.with_suffix(".key"), "-out", base.with_suffix(".csr"),
                "-subj", f"/CN={name}", cwd=self.directory)
        openssl("x509", "-req", "-in", base.with_suffix(".csr"), "-CA", self.certificate,
                "-CAkey", self.key, "-CAcreateserial", "-out", base.with_suffix(".pem"),
                "-days", VALID_DAYS, "-extfile", base.with_suffix(".ext"), cwd=self.directory)
        combined = base.with_suffix(".combined.pem")
        combined.write_bytes(base.with_suffix(".pem").read_bytes() + base.with_suffix(".key").read_bytes())
        return Issued(base.with_suffix(".pem"), base.with_suffix(".key"), combined)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
