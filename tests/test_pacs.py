"""The PACS path against a real Orthanc (DICOMweb): list, pull, push, errors, round trip.

The ``orthanc`` fixture (conftest) holds the IBSI STS_001 study: a 59-slice CT series and its RTSTRUCT.
Credentials reach the client only through the environment, as they would in use.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import STS_DICOM

from napari_medseg.cli import main
from napari_medseg.errors import PacsError, StoreError
from napari_medseg.io.dicom import load_series, sorted_series
from napari_medseg.pacs import PacsClient, pull_series, push_version
from napari_medseg.pacs.auth import ENV_PASSWORD, ENV_USER, Credentials, load_credentials
from napari_medseg.pacs.records import read_source
from napari_medseg.store import CaseStore

CT_SERIES = STS_DICOM / "CT" / "image"


@pytest.fixture()
def pacs_env(orthanc, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - the Orthanc server
    user, password = orthanc.auth
    monkeypatch.setenv(ENV_USER, user)
    monkeypatch.setenv(ENV_PASSWORD, password)
    return orthanc


@pytest.fixture()
def client(pacs_env) -> PacsClient:
    return PacsClient(pacs_env.dicomweb_url, retries=0)


@pytest.fixture(scope="module")
def sts_uids() -> tuple[str, str]:
    ds = pydicom.dcmread(str(sorted(CT_SERIES.glob("*.dcm"))[0]), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def _store(tmp_path: Path, name: str = "store") -> CaseStore:
    return CaseStore.init(tmp_path / name, labels={0: "background", 1: "tumour", 2: "other"}, modality="CT")


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_:  # --help
            code = int(exit_.code or 0)
    return code, out.getvalue()


def test_list_shows_the_study_and_its_series_one_line_each(pacs_env, sts_uids):
    study, series = sts_uids
    code, out = _cli(
        "pacs", "list", "--url", pacs_env.dicomweb_url, "--modality", "CT", "--since", "2000-01-01"
    )
    assert code == 0, out
    lines = out.splitlines()
    assert any(line.startswith(f"study {study}") and "CT" in line for line in lines)
    assert any(series in line and "59 instances" in line for line in lines)
    assert any("RTSTRUCT" in line for line in lines)
    code, out = _cli("pacs", "list", "--url", pacs_env.dicomweb_url, "--since", "2100-01-01")
    assert code == 0 and "no study" in out


def test_pull_has_the_geometry_of_the_files_on_disk_and_records_the_uids(client, sts_uids, tmp_path):
    study, series_uid = sts_uids
    store = _store(tmp_path)
    result = pull_series(client, store, study, author="tester")  # picks the CT, not the RTSTRUCT
    assert not result.already and result.case_id.startswith("ct_")
    image = store.load_image(result.case_id)
    disk = load_series(CT_SERIES)
    assert image.shape == disk.shape == (198, 202, 59)
    assert image.array.dtype == disk.array.dtype and np.array_equal(image.array, disk.array)
    np.testing.assert_allclose(image.affine, disk.affine, atol=1e-4)  # NIfTI keeps the affine as float32
    source = read_source(store.root, result.case_id)
    assert (source.study_uid, source.series_uid) == (study, series_uid)
    assert source.sop_uids == [str(d.SOPInstanceUID) for d in sorted_series(CT_SERIES).headers]
    assert [e.kind for e in store.events(result.case_id)][-1] == "pacs_pull"
    again = pull_series(client, store, study, author="tester")
    assert again.already and again.case_id == result.case_id and store.case_ids() == [result.case_id]
    with pytest.raises(PacsError, match="RTSTRUCT series, not an image"):
        rt = [s for s in client.search_series(study) if s.modality == "RTSTRUCT"][0]
        pull_series(client, store, study, rt.series_uid, author="tester")


def test_push_sends_each_version_once_and_a_new_version_as_a_new_series(client, sts_uids, tmp_path):
    study, _ = sts_uids
    store = _store(tmp_path)
    case = pull_series(client, store, study, author="tester").case_id
    with pytest.raises(StoreError, match="no approved version"):
        push_version(client, store, case, author="tester")
    labels = np.zeros(store.load_image(case).shape, np.uint8)
    labels[60:120, 70:130, 20:35] = 1
    store.save_version(case, labels, author="tester")
    store.approve(case, "tester")
    segs_before = {s.series_uid for s in client.search_series(study, modality="SEG")}

    first = push_version(client, store, case, author="tester")
    second = push_version(client, store, case, author="tester")
    assert not first.already and second.already and second.seg_series_uid == first.seg_series_uid
    segs = {s.series_uid for s in client.search_series(study, modality="SEG")} - segs_before
    assert segs == {first.seg_series_uid}
    assert len(client.instance_uids(study, first.seg_series_uid)) == 1

    labels[60:120, 70:130, 36:40] = 2
    store.save_version(case, labels, author="tester")
    third = push_version(client, store, case, 2, author="tester")
    assert third.version == 2 and third.seg_series_uid != first.seg_series_uid
    segs = {s.series_uid for s in client.search_series(study, modality="SEG")} - segs_before
    assert segs == {first.seg_series_uid, third.seg_series_uid}
    pushed = read_source(store.root, case).pushed
    assert set(pushed) == {"1", "2"} and pushed["1"]["seg_series_uid"] == first.seg_series_uid
    assert [e.kind for e in store.events(case)].count("pacs_push") == 2


@pytest.mark.slow
def test_round_trip_pull_predict_edit_approve_push_read_back(client, sts_uids, tmp_path):
    """pull → predict → edit → approve → push → QIDO finds the SEG → highdicom reads the same labels."""
    from napari_medseg.io.dicom_seg import read_dicom_seg
    from napari_medseg.review.session import ReviewSession

    study, series_uid = sts_uids
    store = _store(tmp_path)
    case = pull_series(client, store, study, author="tester").case_id
    store.close()

    # the bundled model (a random tiny pair is no faster here: its noisy uncertainty makes the region
    # search slow); ~45 s on one CPU core for this 198 x 202 x 59 CT
    session = ReviewSession.open(tmp_path / "store", user="radiologist")
    session.open_case(case)
    prediction = session.run_prediction(
        device="cpu", outside_domain=True
    )  # hippocampus model on a CT: plumbing only
    assert prediction.labels.shape == (198, 202, 59)
    session.accept_proposal()
    session.labels[50:110, 60:140, 10:30] = 1  # the reviewer's correction
    session.labels[120:150, 60:90, 40:50] = 2
    edited = session.labels.copy()
    session.save_version(note="corrected")
    session.approve()
    result = push_version(client, session.store, case, author="radiologist")
    session.close(discard=True)

    found = client.search_series(study, modality="SEG", series_uid=result.seg_series_uid)
    assert [s.series_uid for s in found] == [result.seg_series_uid]
    seg = next(client.iter_series(study, result.seg_series_uid))
    assert seg.Modality == "SEG" and seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    seg_path = tmp_path / "from_pacs_seg.dcm"
    seg.save_as(str(seg_path), enforce_file_format=True)
    back = read_dicom_seg(seg_path, CT_SERIES)  # highdicom, onto the grid of the files on disk
    assert back.shape == edited.shape and np.array_equal(back, edited)


def test_errors_are_one_line_and_never_show_the_password(pacs_env, tmp_path, monkeypatch):
    from _orthanc import free_port

    store = _store(tmp_path)
    store.close()
    down = f"http://127.0.0.1:{free_port()}/dicom-web"
    code, out = _cli("pacs", "list", "--url", down, "--retries", "0")
    assert code == 2 and out.strip().count("\n") == 0 and "cannot reach the PACS" in out
    code, out = _cli("pacs", "list", "--url", pacs_env.url, "--retries", "0")  # Orthanc's REST root
    assert code == 2 and "not DICOM" in out and out.strip().count("\n") == 0
    code, out = _cli("pacs", "pull", "--url", pacs_env.dicomweb_url, "--study", "1.2.3.4", tmp_path / "store")
    assert code == 2 and "study 1.2.3.4 is not on the PACS" in out
    monkeypatch.setenv(ENV_PASSWORD, "wrong-" + pacs_env.password)
    code, out = _cli("pacs", "list", "--url", pacs_env.dicomweb_url, "--retries", "0")
    assert code == 2 and "refused" in out and "401" in out and out.strip().count("\n") == 0
    assert pacs_env.password not in out and "wrong-" not in out
    user, password = pacs_env.auth
    code, out = _cli("pacs", "list", "--url", f"http://{user}:{password}@127.0.0.1:{pacs_env.port}/dicom-web")
    assert code == 2 and "do not put credentials in the PACS URL" in out and password not in out


def test_credentials_come_from_env_or_a_private_file_only(tmp_path):
    env = {ENV_USER: "alice", ENV_PASSWORD: "s3cret"}
    cred = load_credentials(environ=env)
    assert cred.kind == "basic" and "s3cret" not in repr(cred) and "s3cret" not in cred.describe()
    assert load_credentials(environ={"MEDSEG_PACS_TOKEN": "tok"}).kind == "bearer"
    with pytest.raises(PacsError, match="set both"):
        load_credentials(environ={ENV_USER: "alice"})
    f = tmp_path / "pacs.json"
    f.write_text(json.dumps({"token": "abc"}))
    os.chmod(f, 0o644)
    with pytest.raises(PacsError, match="readable by other users"):
        load_credentials(f, environ={})
    os.chmod(f, 0o600)
    cred = load_credentials(f, environ={})
    assert cred.kind == "bearer" and "abc" not in str(cred)
    assert load_credentials(environ={}).kind == "none"
    # there is no command-line option for a password or token
    code, out = _cli("pacs", "list", "--help")
    assert code == 0 and "--password" not in out and "--token" not in out


class _Html(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"<html><body>Please log in</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def html_server():  # noqa: ANN201 - (host, port, server)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_login_page_instead_of_dicomweb_is_one_clear_line(html_server):
    client = PacsClient(
        f"http://127.0.0.1:{html_server.server_address[1]}/dicom-web", Credentials(), retries=0
    )
    with pytest.raises(PacsError, match="not DICOM"):
        client.search_studies()
    with pytest.raises(PacsError, match="not DICOM"):
        list(client.iter_series("1.2.3", "1.2.3.4"))


def test_a_pacs_that_never_answers_times_out():
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web"
        client = PacsClient(url, Credentials(), timeout_s=0.5, retries=1, backoff_ms=10)
        with pytest.raises(PacsError, match=r"did not answer within 0.5 s"):
            client.search_studies()


@pytest.mark.skipif(
    shutil.which("openssl") is None, reason="needs the openssl command for a test certificate"
)
def test_tls_certificates_are_verified(html_server, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    html_server.socket = context.wrap_socket(html_server.socket, server_side=True)
    url = f"https://127.0.0.1:{html_server.server_address[1]}/dicom-web"
    with pytest.raises(PacsError, match="TLS certificate .* could not be verified"):
        PacsClient(url, Credentials(), retries=0).search_studies()
    # trusting the certificate explicitly gets past TLS (to the login page, which is not DICOM)
    with pytest.raises(PacsError, match="not DICOM"):
        PacsClient(url, Credentials(), retries=0, ca_bundle=str(cert)).search_studies()


def test_pacs_code_is_headless():
    code = (
        "import sys, napari_medseg.pacs, napari_medseg.commands.pacs\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt5', 'torch')]\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
