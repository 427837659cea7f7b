"""napari-medseg: review, correct and retrain 3D medical segmentations.

The package is split into a headless core (``io``, ``store``, ``models``, ``inference``,
``training``, ``evaluation``) that never imports Qt or napari, and thin napari widgets
(``widgets``) plus the npe2 adapters (``_napari``) that wire the core to layers.
"""

from napari_medseg.bundled import resource_path

__version__ = "0.1.0"

#: Folder with the bundled sample cases and default models (package data ``napari_medseg/resources``,
#: found through :func:`napari_medseg.bundled.resource_path`).
RESOURCES_DIR = resource_path()
