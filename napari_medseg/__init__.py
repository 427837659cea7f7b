"""napari-medseg: review, correct and retrain 3D medical segmentations.

The package is split into a headless core (``io``, ``store``, ``models``, ``inference``,
``training``, ``evaluation``) that never imports Qt or napari, and thin napari widgets
(``widgets``) plus the npe2 adapters (``_napari``) that wire the core to layers.
"""

from pathlib import Path

__version__ = "0.1.0"

#: Folder with the bundled sample cases and default models (``resources/`` at the repository root).
RESOURCES_DIR = Path(__file__).resolve().parent.parent / "resources"
