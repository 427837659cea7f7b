"""User-facing error types.

Every error a clinician can trigger (bad file, stale save, missing model...) is a
``MedsegError`` whose message is one readable sentence. The CLI prints ``error: <message>``
and exits with a non-zero code; the napari widgets show it as a notification. Anything
that is *not* a ``MedsegError`` is a bug and keeps its traceback.
"""


class MedsegError(Exception):
    """Base class: ``str(err)`` is a complete, one-line message for the user."""

    exit_code = 2


class InputError(MedsegError):
    """A file, folder or array given by the user cannot be used (corrupt, wrong shape, NaNs...)."""


class GeometryError(InputError):
    """Two volumes that must share a voxel grid do not (shape or affine mismatch)."""


class StoreError(MedsegError):
    """The case store refused an operation (unknown case, invalid id, locked case...)."""


class StaleSaveError(StoreError):
    """A save was based on a label version that is no longer the latest one."""


class LockedError(StoreError):
    """The case is locked by another annotator."""


class CheckpointError(MedsegError):
    """A model checkpoint is missing, tampered with, or does not match its card."""


class Cancelled(MedsegError):
    """A long-running operation was cancelled by the user."""

    exit_code = 130


class PacsError(MedsegError):
    """A PACS could not be reached, refused a request, or answered with something that is not DICOM."""
