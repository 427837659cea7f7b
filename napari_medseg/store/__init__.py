"""Case store: MSD dataset folder + SQLite index of versioned, reviewed label maps.

See :mod:`napari_medseg.store.casestore` for the layout and guarantees and
:mod:`napari_medseg.store.workflow` for the review statuses.
"""

from napari_medseg.store.casestore import CaseStore
from napari_medseg.store.records import CaseInfo, Event, VersionInfo
from napari_medseg.store.workflow import ALLOWED as ALLOWED_TRANSITIONS

__all__ = ["ALLOWED_TRANSITIONS", "CaseInfo", "CaseStore", "Event", "VersionInfo"]
