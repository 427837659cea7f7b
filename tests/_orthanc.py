"""A real Orthanc PACS for the tests: started on a free loopback port with its DICOMweb plugin.

Debian's ``orthanc`` + ``orthanc-dicomweb`` packages (README test command) provide the server and the
plugin. :class:`Orthanc` writes a JSON configuration into a temporary folder (storage and index there
too), starts ``Orthanc`` with HTTP basic authentication on (a random password for user ``medseg``), waits
until its REST API answers and stops it on :meth:`stop`. Files are uploaded through Orthanc's own REST
API (``POST /instances``) so the upload does not depend on the code under test.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

ORTHANC_BIN = "Orthanc"
#: Where Debian's orthanc-dicomweb package installs the plugin (a link to the versioned .so).
DICOMWEB_PLUGIN_CANDIDATES = (
    Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
    *sorted(Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*")),
)
USER = "medseg"


def dicomweb_plugin() -> Path | None:
    """The DICOMweb plugin library, ``None`` when not installed."""
    return next((p for p in DICOMWEB_PLUGIN_CANDIDATES if p.is_file()), None)


def missing_reason() -> str | None:
    """Why Orthanc cannot be started here (``None`` when it can)."""
    if shutil.which(ORTHANC_BIN) is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb, see the README)"
    if dicomweb_plugin() is None:
        return "Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return None


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM Orthanc when the test process dies (no orphans
    after a killed or timed-out test run); a no-op where prctl is unavailable."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Orthanc:
    """One Orthanc server in ``folder`` (storage, index, config and log)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.password = secrets.token_urlsafe(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def auth(self) -> tuple[str, str]:
        return (USER, self.password)

    def config(self) -> dict:
        return {
            "Name": "medseg-test",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,  # loopback only
            "DicomServerEnabled": False,  # no DIMSE port: DICOMweb and REST only
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: self.password},
            "HttpTimeout": 30,
            "StableAge": 1,
            "Plugins": [str(dicomweb_plugin())],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full"},
        }

    def start(self, timeout_s: float = 60.0) -> Orthanc:
        import requests

        self.folder.mkdir(parents=True, exist_ok=True)
        cfg = self.folder / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=2))
        self._log = open(self.folder / "orthanc.log", "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [ORTHANC_BIN, str(cfg)], stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                if requests.get(f"{self.url}/system", auth=self.auth, timeout=2).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout_s:.0f} s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        path = self.folder / "orthanc.log"
        return path.read_bytes()[-n:].decode(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def upload(self, files: list[Path] | list[bytes]) -> int:
        """Store DICOM files (paths or bytes) through the REST API; return how many were stored."""
        import requests

        n = 0
        for f in files:
            data = f if isinstance(f, bytes) else Path(f).read_bytes()
            r = requests.post(f"{self.url}/instances", data=data, auth=self.auth, timeout=30)
            r.raise_for_status()
            n += 1
        return n

    def upload_folder(self, folder: Path) -> int:
        return self.upload(sorted(p for p in Path(folder).rglob("*.dcm") if p.is_file()))

    def get(self, path: str) -> object:
        import requests

        r = requests.get(f"{self.url}{path}", auth=self.auth, timeout=30)
        r.raise_for_status()
        return r.json()
