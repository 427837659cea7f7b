"""The hospital path: DICOMweb PACS search, pull into a case store, push reviewed DICOM SEG back.

Headless (no Qt/napari). Modules: :mod:`~.auth` (credentials from env/file, URL checks), :mod:`~.client`
(QIDO/WADO/STOW with timeouts, retries and one-line errors), :mod:`~.pull`, :mod:`~.push`,
:mod:`~.deidentify` (PS3.15 basic profile) and :mod:`~.records` (what was pulled/pushed, UIDs only).
"""

from napari_medseg.pacs.auth import Credentials, load_credentials
from napari_medseg.pacs.client import PacsClient, SeriesInfo, StudyInfo
from napari_medseg.pacs.pull import PullResult, pull_series
from napari_medseg.pacs.push import PushResult, push_version

__all__ = [
    "Credentials",
    "PacsClient",
    "PullResult",
    "PushResult",
    "SeriesInfo",
    "StudyInfo",
    "load_credentials",
    "pull_series",
    "push_version",
]
