"""A DICOMweb client for one PACS (dicomweb-client: QIDO-RS search, WADO-RS retrieve, STOW-RS store).

:class:`PacsClient` wraps :class:`dicomweb_client.DICOMwebClient` with what a hospital network needs:

* credentials from :mod:`napari_medseg.pacs.auth` (never from arguments a shell would record);
* TLS certificate verification on (``ca_bundle`` names a hospital CA file; it cannot be switched off);
* a timeout per request (seconds) and retries with exponential back-off on connection errors and on
  HTTP 429/502/503/504;
* every failure turned into one :class:`~napari_medseg.errors.PacsError` sentence that names the PACS by
  its URL without credentials: down/unreachable, TLS failure, timeout, refused (HTTP 401/403), other HTTP
  errors, and answers that are not DICOM (an HTML login page, a proxy error page...).

Search results are small records (:class:`StudyInfo`, :class:`SeriesInfo`) holding UIDs, dates,
modalities, descriptions and counts; patient names and ids are not copied into them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import pydicom
import requests

from napari_medseg.errors import MedsegError, PacsError
from napari_medseg.pacs.auth import Credentials, check_url, load_credentials, safe_url

#: Default seconds to wait for a PACS answer (per request) and number of retries after the first try.
TIMEOUT_S = 30.0
RETRIES = 2
RETRY_STATUS = (429, 502, 503, 504)
#: Modalities that are 3D image series we can load (others: SEG, RTSTRUCT, SR, PR, KO...).
IMAGE_MODALITIES = ("CT", "MR", "PT", "NM", "US", "CR", "DX", "XA", "OT")

# dicomweb-client logs every request at DEBUG and HTTP warnings at WARNING; neither holds credentials
# (they travel in the session's auth object), but keep its chatter out of the app's log.
logging.getLogger("dicomweb_client").setLevel(logging.ERROR)


@dataclass(frozen=True)
class StudyInfo:
    """One study found by QIDO-RS (no patient name or id)."""

    study_uid: str
    date: str
    description: str
    modalities: tuple[str, ...]
    n_series: int | None
    n_instances: int | None

    def line(self) -> str:
        mods = "/".join(self.modalities) or "?"
        n = f", {self.n_series} series" if self.n_series is not None else ""
        n += f", {self.n_instances} instances" if self.n_instances is not None else ""
        return f"study {self.study_uid}  {self.date or '????????'}  {mods}  '{self.description}'{n}"


@dataclass(frozen=True)
class SeriesInfo:
    """One series of a study found by QIDO-RS."""

    study_uid: str
    series_uid: str
    modality: str
    description: str
    number: int | None
    n_instances: int | None

    @property
    def is_image(self) -> bool:
        return self.modality.upper() in IMAGE_MODALITIES

    def line(self) -> str:
        num = f"#{self.number} " if self.number is not None else ""
        n = f", {self.n_instances} instances" if self.n_instances is not None else ""
        return f"  series {self.series_uid}  {num}{self.modality}  '{self.description}'{n}"


def _dicom_json(items: object) -> list[dict]:
    """QIDO-RS answer as a list of DICOM JSON datasets; ValueError for anything else (e.g. a REST listing)."""
    if not isinstance(items, list) or not all(
        isinstance(it, dict) and all(isinstance(v, dict) for v in it.values()) for it in items
    ):
        raise ValueError("the answer is not a list of DICOM JSON datasets")
    return items


def _value(item: dict, keyword: str) -> object:
    tag = pydicom.datadict.tag_for_keyword(keyword)
    values = item.get(f"{tag:08X}", {}).get("Value") or []
    return values[0] if len(values) == 1 else (tuple(values) if values else None)


def _text(item: dict, keyword: str) -> str:
    v = _value(item, keyword)
    if isinstance(v, dict):  # PN as {"Alphabetic": ...}
        v = v.get("Alphabetic", "")
    return "" if v is None else str(v)


def _int(item: dict, keyword: str) -> int | None:
    v = _value(item, keyword)
    try:
        return int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def parse_date(text: str) -> str:
    """``2024-03-01`` or ``20240301`` → DICOM ``20240301``; PacsError otherwise."""
    t = str(text).strip().replace("-", "")
    try:
        date(int(t[:4]), int(t[4:6]), int(t[6:8]))
        if len(t) != 8:
            raise ValueError
    except ValueError:
        raise PacsError(f"{text!r} is not a date: use YYYY-MM-DD") from None
    return t


class PacsClient:
    """One DICOMweb endpoint, e.g. ``https://pacs.example.org/dicom-web``.

    Args:
        url: DICOMweb base URL (QIDO/WADO/STOW below it), without credentials.
        credentials: from :func:`~napari_medseg.pacs.auth.load_credentials` (default: load them now).
        ca_bundle: PEM file of CAs to trust for ``https`` (default: the system's).
        timeout_s: seconds to wait for each answer.
        retries: retries after a failed attempt (connection error or HTTP 429/502/503/504).
        backoff_ms: first wait between attempts, doubled each time.
    """

    def __init__(
        self,
        url: str,
        credentials: Credentials | None = None,
        *,
        ca_bundle: str | None = None,
        timeout_s: float = TIMEOUT_S,
        retries: int = RETRIES,
        backoff_ms: int = 500,
    ) -> None:
        from dicomweb_client.api import DICOMwebClient

        self.url = check_url(url)
        self.name = safe_url(self.url)
        self.credentials = load_credentials() if credentials is None else credentials
        session = requests.Session()
        session.auth = self.credentials.requests_auth()
        session.verify = ca_bundle if ca_bundle else True
        session.trust_env = False  # no ~/.netrc credentials or proxies picked up behind our back
        self.timeout_s = float(timeout_s)
        self._client = DICOMwebClient(self.url, session=session, timeout=self.timeout_s)
        self._client.set_http_retry_params(
            retry=retries > 0,
            max_attempts=max(1, int(retries) + 1),
            wait_exponential_multiplier=int(backoff_ms),
            retriable_error_codes=RETRY_STATUS,
        )

    # ------------------------------------------------------------------ errors
    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn any failure while doing ``what`` into one PacsError sentence."""
        name = self.name
        try:
            yield
        except MedsegError:
            raise
        except requests.exceptions.SSLError:
            raise PacsError(
                f"the TLS certificate of the PACS at {name} could not be verified while trying to {what} "
                "(give the hospital's CA file with --ca-bundle)"
            ) from None
        except requests.exceptions.Timeout:
            raise PacsError(
                f"the PACS at {name} did not answer within {self.timeout_s:g} s while trying to {what}"
            ) from None
        except requests.exceptions.ConnectionError:
            raise PacsError(
                f"cannot reach the PACS at {name} to {what} (is it running and the URL right?)"
            ) from None
        except requests.exceptions.HTTPError as err:
            code = err.response.status_code if err.response is not None else 0
            reason = (err.response.reason if err.response is not None else "") or ""
            if code in (401, 403):
                raise PacsError(
                    f"the PACS at {name} refused to {what} (HTTP {code} {reason}): check the credentials "
                    f"({self.credentials.describe()})"
                ) from None
            raise PacsError(f"the PACS at {name} could not {what} (HTTP {code} {reason})") from None
        except requests.exceptions.JSONDecodeError:  # also a RequestException: before it
            raise self._not_dicom(what, "not DICOM JSON") from None
        except requests.exceptions.RequestException as err:
            raise PacsError(
                f"the request to the PACS at {name} to {what} failed ({type(err).__name__})"
            ) from None
        except (ValueError, KeyError, TypeError, pydicom.errors.InvalidDicomError, EOFError) as err:
            raise self._not_dicom(what, type(err).__name__) from None

    def _not_dicom(self, what: str, detail: str) -> PacsError:
        return PacsError(
            f"the PACS at {self.name} answered with something that is not DICOM while trying to {what} "
            f"({detail}); is {self.name} a DICOMweb URL?"
        )

    # ------------------------------------------------------------------ QIDO-RS
    def search_studies(
        self, patient_id: str | None = None, modality: str | None = None, since: str | None = None
    ) -> list[StudyInfo]:
        """Studies matching all given filters (``since``: study date ``YYYY-MM-DD`` or later)."""
        filters: dict[str, str] = {}
        if patient_id:
            filters["PatientID"] = patient_id
        if modality:
            filters["ModalitiesInStudy"] = modality.upper()
        if since:
            filters["StudyDate"] = f"{parse_date(since)}-"
        fields = [
            "StudyDescription",
            "ModalitiesInStudy",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
        ]
        with self._errors("search for studies"):
            items = _dicom_json(self._client.search_for_studies(search_filters=filters, fields=fields))
            out = []
            for it in items:
                mods = _value(it, "ModalitiesInStudy")
                mods = (mods,) if isinstance(mods, str) else tuple(mods or ())
                out.append(
                    StudyInfo(
                        study_uid=_text(it, "StudyInstanceUID"),
                        date=_text(it, "StudyDate"),
                        description=_text(it, "StudyDescription"),
                        modalities=mods,
                        n_series=_int(it, "NumberOfStudyRelatedSeries"),
                        n_instances=_int(it, "NumberOfStudyRelatedInstances"),
                    )
                )
        return sorted(out, key=lambda s: (s.date, s.study_uid), reverse=True)

    def search_series(
        self, study_uid: str, modality: str | None = None, series_uid: str | None = None
    ) -> list[SeriesInfo]:
        """The series of one study (optionally only one modality or one series UID)."""
        filters: dict[str, str] = {}
        if modality:
            filters["Modality"] = modality.upper()
        if series_uid:
            filters["SeriesInstanceUID"] = series_uid
        fields = ["SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances"]
        with self._errors(f"list the series of study {study_uid}"):
            items = _dicom_json(
                self._client.search_for_series(
                    study_instance_uid=study_uid, search_filters=filters, fields=fields
                )
            )
            out = [
                SeriesInfo(
                    study_uid=study_uid,
                    series_uid=_text(it, "SeriesInstanceUID"),
                    modality=_text(it, "Modality"),
                    description=_text(it, "SeriesDescription"),
                    number=_int(it, "SeriesNumber"),
                    n_instances=_int(it, "NumberOfSeriesRelatedInstances"),
                )
                for it in items
            ]
        return sorted(out, key=lambda s: (s.number if s.number is not None else 1 << 30, s.series_uid))

    def instance_uids(self, study_uid: str, series_uid: str) -> list[str]:
        """SOPInstanceUIDs of one series (unsorted)."""
        with self._errors(f"list the instances of series {series_uid}"):
            items = _dicom_json(
                self._client.search_for_instances(
                    study_instance_uid=study_uid, series_instance_uid=series_uid, get_remaining=True
                )
            )
            return [_text(it, "SOPInstanceUID") for it in items]

    # ------------------------------------------------------------------ WADO-RS
    def iter_series(self, study_uid: str, series_uid: str) -> Iterator[pydicom.Dataset]:
        """The instances of one series, one dataset at a time as they arrive (WADO-RS)."""
        with self._errors(f"retrieve series {series_uid}"):
            for ds in self._client.iter_series(study_uid, series_uid):
                if not isinstance(ds, pydicom.Dataset) or "SOPInstanceUID" not in ds:
                    raise ValueError("a part of the answer is not a DICOM instance")
                yield ds

    # ------------------------------------------------------------------ STOW-RS
    def store(self, datasets: Sequence[pydicom.Dataset], study_uid: str | None = None) -> pydicom.Dataset:
        """Store instances (STOW-RS); returns the PACS's response dataset.

        Raises:
            PacsError: the PACS refused or failed some of the instances (FailedSOPSequence).
        """
        with self._errors("store the segmentation"):
            response = self._client.store_instances(list(datasets), study_instance_uid=study_uid)
        failed = response.get("FailedSOPSequence") if response is not None else None
        if failed:
            reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
            raise PacsError(
                f"the PACS at {self.name} refused {len(failed)} instance(s) (failure reason {', '.join(reasons)})"
            )
        return response
