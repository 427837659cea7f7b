"""Turn errors meant for the user into napari notifications that say what to do."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterator
from contextlib import contextmanager

from napari_medseg.errors import (
    Cancelled,
    CheckpointError,
    LockedError,
    MedsegError,
    StaleSaveError,
    user_message,
)

#: Extra advice per error type, added when the message itself does not say what to do.
HINTS: dict[type, str] = {
    CheckpointError: "choose a model folder in the Predict panel",
    LockedError: "pick another case, or ask the lock owner to release it",
    StaleSaveError: "use 'Save as new version' to keep both",
}


def message_for(err: MedsegError) -> str:
    """The notification text for ``err``: its one-line message, plus a hint when one applies."""
    text = str(err)
    for kind, hint in HINTS.items():
        if isinstance(err, kind) and hint.split()[0] not in text:
            return f"{text} ({hint})"
    return text


def report(err: BaseException) -> None:
    """Show a :class:`MedsegError` or an environment fault (:func:`~napari_medseg.errors.user_message`) as a
    napari notification; anything else is a bug and is re-raised."""
    if isinstance(err, Cancelled):
        info(str(err))
    elif isinstance(err, MedsegError):
        _show_error_once(message_for(err))
    elif user_message(err) is not None:  # disk full, permission denied, busy or damaged store...
        _show_error_once(user_message(err))
    else:
        raise err


def _show_error_once(message: str) -> None:
    """An error stays until the user closes it, but the same error again (Run pressed twice) replaces the
    one on screen instead of stacking a copy over the image."""
    from napari.utils.notifications import show_error

    _dismiss_toasts({message})
    show_error(message)


#: The information messages this app showed lately: their toasts give way to the next one.
_SHOWN_INFO: deque[str] = deque(maxlen=32)


def info(message: str) -> None:
    """Show an information notification; the app's earlier ones still on screen are closed first.

    napari 0.9 leaves an older toast on the canvas for good once a newer one appears within its 4 s (the
    newest stops the others' timers, and closing it does not restart them), and starts no timer while its
    window is not the active one: a day of "saved ..." messages would pile up over the image. Errors and
    warnings are not touched: they stay until the user closes them.
    """
    from napari.utils.notifications import show_info

    _dismiss_toasts(_SHOWN_INFO)
    _SHOWN_INFO.append(message)
    show_info(message)


def _dismiss_toasts(messages: Collection[str]) -> None:
    """Close the napari toasts on screen whose text is one of ``messages``."""
    try:  # napari's toast widget: private, so a napari without it just keeps its own behaviour
        from napari._qt.dialogs.qt_notification import NapariQtNotification
    except ImportError:
        return
    for toast in list(getattr(NapariQtNotification, "_instances", ())):
        try:
            if toast.message.text() in messages:
                toast.close()
        except (AttributeError, RuntimeError):  # another napari layout, or a toast Qt already deleted
            continue


@contextmanager
def reporting() -> Iterator[None]:
    """``with reporting(): ...`` shows user errors raised inside as notifications instead of tracebacks."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - report() re-raises what is not a user-facing fault
        report(err)
