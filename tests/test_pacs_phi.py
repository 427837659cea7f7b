"""No patient data where it does not belong: a PHI-laden study pulled from Orthanc, then everything the
store and the commands wrote is searched for it; ``--deidentify`` also removes the PACS's UIDs."""

from __future__ import annotations

import gzip
import hashlib
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import STS_DICOM

from napari_medseg.cli import main
from napari_medseg.pacs.auth import ENV_PASSWORD, ENV_USER
from napari_medseg.pacs.deidentify import deidentify
from napari_medseg.pacs.records import read_source
from napari_medseg.store import CaseStore

PHI = {
    "PatientName": "Smithfield^Marjorie^Quinn",
    "PatientID": "MRN-55501234",
    "PatientBirthDate": "19410723",
    "PatientAddress": "12 Elmwood Lane, Springfield",
    "OtherPatientNames": "Jonesworth^Marjorie",
    "PatientTelephoneNumbers": "555-0199-321",
    "InstitutionName": "St Placebo General Hospital",
    "ReferringPhysicianName": "Hibbertson^Julius",
    "AccessionNumber": "ACC99881234",
    "OperatorsName": "Operatorov^Ivana",
    "PatientComments": "lives with daughter Beatrix",
    "StudyDescription": "CT thorax for Mrs Smithfield",
    "SeriesDescription": "Smithfield axial 3mm",
}
PRIVATE_TEXT = "Smithfield private note"
NEEDLES = [v.split("^")[0] for v in PHI.values()] + ["19410723", "Beatrix", PRIVATE_TEXT]


def _uid(kind: str, old: str) -> str:
    return "2.25." + str(int(hashlib.sha256(f"phi-test|{kind}|{old}".encode()).hexdigest()[:30], 16))


@pytest.fixture(scope="module")
def phi_study(orthanc) -> dict[str, object]:
    """A copy of the STS CT series with new UIDs and patient data in many tags, uploaded to Orthanc."""
    blobs, sop_uids = [], []
    for path in sorted((STS_DICOM / "CT" / "image").glob("*.dcm")):
        ds = pydicom.dcmread(str(path))
        for key, value in PHI.items():
            setattr(ds, key, value)
        ds.add_new(0x00110010, "LO", "MEDSEG TEST")
        ds.add_new(0x00111001, "LO", PRIVATE_TEXT)
        for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            setattr(ds, key, _uid(key, str(ds.get(key, "") or "")))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        sop_uids.append(ds.SOPInstanceUID)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        blobs.append(buf.getvalue())
    orthanc.upload(blobs)
    return {
        "study": ds.StudyInstanceUID,
        "series": ds.SeriesInstanceUID,
        "sop_uids": sop_uids,
        "sample": blobs[0],
    }


@pytest.fixture()
def env(orthanc, monkeypatch):  # noqa: ANN201 - the server
    monkeypatch.setenv(ENV_USER, orthanc.auth[0])
    monkeypatch.setenv(ENV_PASSWORD, orthanc.auth[1])
    return orthanc


def _cli(*argv: object) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        code = main([str(a) for a in argv])
    return code, out.getvalue()


def _written_text(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (gzip members decompressed), by relative path."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        out[str(path.relative_to(root))] = data
    return out


def _leaks(texts: dict[str, bytes], needles: list[str]) -> list[str]:
    return [
        f"{name}: {needle}"
        for name, data in texts.items()
        for needle in needles
        if needle.lower().encode() in data.lower()
    ]


def test_pulled_store_and_command_output_hold_no_patient_data(env, phi_study, tmp_path):
    CaseStore.init(tmp_path / "store", labels={0: "background", 1: "tumour"}, modality="CT").close()
    url = env.dicomweb_url
    code, pull_out = _cli(
        "pacs", "pull", "--url", url, "--study", phi_study["study"], tmp_path / "store", "--author", "rad1"
    )
    assert code == 0, pull_out
    with CaseStore.open(tmp_path / "store") as store:
        (case,) = store.case_ids()
        labels = np.zeros(store.load_image(case).shape, np.uint8)
        labels[60:100, 60:100, 10:30] = 1
        store.save_version(case, labels, author="rad1")
        store.approve(case, "rad1")
        assert read_source(store.root, case).sop_uids  # UIDs are recorded ...
    code, push_out = _cli("pacs", "push", tmp_path / "store", case, "--author", "rad1")
    assert code == 0, push_out
    _, history_out = _cli("store", "history", tmp_path / "store", case)
    assert "pacs_pull" in history_out and "pacs_push" in history_out

    texts = _written_text(tmp_path / "store")
    texts.update({"<pull output>": pull_out.encode(), "<push output>": push_out.encode()})
    assert any(phi_study["series"].encode() in t for t in texts.values())  # ... patient data is not
    assert len(_leaks({"uploaded": phi_study["sample"]}, NEEDLES)) == len(NEEDLES)  # the search finds PHI
    assert _leaks(texts, NEEDLES) == []


def test_deidentified_pull_keeps_the_grid_and_drops_the_pacs_uids(env, phi_study, tmp_path):
    CaseStore.init(tmp_path / "plain", labels={0: "background", 1: "tumour"}, modality="CT").close()
    CaseStore.init(tmp_path / "research", labels={0: "background", 1: "tumour"}, modality="CT").close()
    url, study = env.dicomweb_url, phi_study["study"]
    assert _cli("pacs", "pull", "--url", url, "--study", study, tmp_path / "plain")[0] == 0
    code, out = _cli("pacs", "pull", "--url", url, "--study", study, "--deidentify", tmp_path / "research")
    assert code == 0 and "de-identified" in out
    code, again = _cli("pacs", "pull", "--url", url, "--study", study, "--deidentify", tmp_path / "research")
    assert code == 0 and "already in the store" in again  # UIDs are remapped the same way every time

    with CaseStore.open(tmp_path / "plain") as plain, CaseStore.open(tmp_path / "research") as research:
        (case_p,), (case_r,) = plain.case_ids(), research.case_ids()
        assert case_p != case_r
        a, b = plain.load_image(case_p), research.load_image(case_r)
        assert np.array_equal(a.array, b.array) and np.array_equal(a.affine, b.affine)
        source = read_source(research.root, case_r)
        assert source.deidentified and source.study_uid.startswith("2.25.")
        labels = np.zeros(b.shape, np.uint8)
        labels[60:100, 60:100, 10:30] = 1
        research.save_version(case_r, labels, author="rad1")
        research.approve(case_r, "rad1")
    code, out = _cli("pacs", "push", "--url", url, tmp_path / "research", case_r)
    assert code == 2 and "de-identified" in out and out.strip().count("\n") == 0

    texts = _written_text(tmp_path / "research")
    texts.update({"<pull output>": out.encode() + again.encode()})
    original_uids = [phi_study["study"], phi_study["series"], *phi_study["sop_uids"]]
    assert _leaks(texts, NEEDLES + original_uids) == []


def test_deidentify_basic_profile_on_one_instance():
    path = sorted((STS_DICOM / "CT" / "image").glob("*.dcm"))[0]
    ds = pydicom.dcmread(str(path))
    for key, value in PHI.items():
        setattr(ds, key, value)
    ds.add_new(0x00111001, "LO", PRIVATE_TEXT)
    geometry = (list(ds.ImagePositionPatient), list(ds.ImageOrientationPatient), list(ds.PixelSpacing))
    pixels = ds.pixel_array.copy()
    salt = b"0123456789abcdef0123"
    out = deidentify(pydicom.dcmread(str(path)), salt)
    again = deidentify(ds, salt)
    text = str(again).lower()
    assert all(n.lower() not in text for n in NEEDLES)
    assert again.PatientIdentityRemoved == "YES" and again.PatientID.startswith("ANON-")
    assert again.SeriesInstanceUID == out.SeriesInstanceUID != pydicom.dcmread(str(path)).SeriesInstanceUID
    assert again.SOPClassUID == pydicom.dcmread(str(path)).SOPClassUID  # DICOM-defined UIDs are kept
    assert again.file_meta.MediaStorageSOPInstanceUID == again.SOPInstanceUID
    assert (
        list(again.ImagePositionPatient),
        list(again.ImageOrientationPatient),
        list(again.PixelSpacing),
    ) == geometry
    assert np.array_equal(again.pixel_array, pixels)
    assert (
        deidentify(pydicom.dcmread(str(path)), b"another salt, 16+ bytes").SeriesInstanceUID
        != out.SeriesInstanceUID
    )
