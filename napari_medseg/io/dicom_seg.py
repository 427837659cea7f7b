"""DICOM Segmentation (SEG) export of a label map made on a DICOM series, and the matching reader.

Corrected labels go back to the PACS as one DICOM SEG instance (highdicom ``Segmentation``) that
references every slice of the source series. Headless: no Qt, no napari.

Geometry. ``labels`` has shape ``(I, J, K)``, the grid of ``load_series(series_folder, series_uid)``:
``i`` = DICOM column, ``j`` = DICOM row *reversed*, ``k`` = slices sorted along the slice normal (see
:mod:`napari_medseg.io.dicom`). Slice ``k`` is written as the SEG frame of source instance
``sorted_series(...).files[k]`` (the same sorted file list ``load_series`` stacks), as a ``(rows, columns)``
frame ``labels[:, ::-1, k].T``; before writing, every slice's ImagePositionPatient is checked against the
volume affine so a mis-sorted slice can never be exported.

Segments. One segment per non-zero label value present, numbered 1..N in ascending label order (DICOM
requires consecutive segment numbers, so label values such as TotalSegmentator's 1..117 are not used as
segment numbers). Each segment carries:

* SegmentLabel = the class name from ``classes``; a value without a name is exported as ``label <n>``
  (a SEG is still useful without names, and refusing would block every export of an unnamed map),
* SegmentDescription (0062,0006) = ``"<name> (label value <n>)"``, from which :func:`read_dicom_seg`
  restores the original label values,
* property category/type codes: a class name that names a segmentation property type of DICOM's
  tables (PS3.16 CID 7192 anatomical structures, e.g. ``liver``, ``kidney_left``, ``aorta``; CID 7191
  tissues; CID 7194 abnormal structures; CID 7197 body substances; CID 7193 physical objects) gets
  that SNOMED CT type code, the matching category and, for a ``left``/``right`` word, a laterality
  modifier; any other name (e.g. ``Anterior``, ``GTV``) is coded category SCT "Anatomical Structure"
  (91723000) and a type from napari-medseg's private coding scheme :data:`CUSTOM_SCHEME`
  (``99NMEDSEG``; code value ``L<label value>``, meaning = the class name), so segments with different
  names never share one generic code,
* RecommendedDisplayCIELabValue = the colour the viewer paints that label value in
  (:func:`napari_medseg.io.label_colors.label_rgb`), so every segment has its own colour,
* algorithm type MANUAL without ``algorithm``; with ``algorithm`` (a model id) SEMIAUTOMATIC (a model
  proposal corrected by a person, the default) or AUTOMATIC, with an algorithm identification
  (family DCM "Artificial Intelligence", name = the model id, version = the napari-medseg version).

ContentCreatorName (type 2) is always written: ``author``, else :data:`DEFAULT_CONTENT_CREATOR`.

The SEG type is ``BINARY`` (Segmentation Storage, 1 bit per voxel and segment, read by every SEG-capable
PACS/viewer, dciodvfy, dcmqi and pydicom-seg) unless ``segmentation_type="LABELMAP"`` (Label Map
Segmentation Storage, DICOM Supplement 243, 8 or 16 bits per voxel for all segments together): only for
readers that support Sup 243 (highdicom does; dciodvfy 2022, dcmqi and pydicom-seg do not). Sizes
differ by content: a binary SEG takes 1 bit per pixel for every (slice, segment) pair present (33 KB
per 512x512 frame), a label map 1 byte per pixel of every slice with any label. Measured on the
20-slice 512x512 TotalSegmentator CT (``bench/RESULTS.md``, issue 14): one organ 0.67 MB binary vs
5.3 MB label map, four organs 2.1 vs 5.3 MB, all 31 structures 17.3 vs 5.3 MB. Frames without any segment are omitted.

Source UIDs. A SEG must name its study, series and source instances. Anonymised exports sometimes blank
SOPInstanceUID/SOPClassUID in the dataset but keep them in the file meta header; those are taken from
there. A series without StudyInstanceUID or SeriesInstanceUID cannot be referenced and is refused.
"""

from __future__ import annotations

import re
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from napari_medseg.errors import GeometryError, InputError
from napari_medseg.io.atomic import atomic_write_with
from napari_medseg.io.dicom import LPS_TO_RAS, SortedSeries, sorted_series
from napari_medseg.io.label_colors import label_rgb
from napari_medseg.io.validate import label_dtype

SEG_TYPES = ("BINARY", "LABELMAP")
ALGORITHM_TYPES = ("MANUAL", "SEMIAUTOMATIC", "AUTOMATIC")
#: Each slice's ImagePositionPatient must lie this close (in slice spacings) to its position on the grid.
POSITION_TOL_SLICES = 0.25
#: ContentCreatorName when no author is given (DICOM person name: family name "napari-medseg", the trailing caret marks a one-component name).
DEFAULT_CONTENT_CREATOR = "napari-medseg^"
#: Private coding scheme for class names DICOM's tables do not know (PS3.3: private schemes start "99").
CUSTOM_SCHEME = "99NMEDSEG"
_VALUE_RE = re.compile(r"\(label value (\d+)\)\s*$")
_LATERALITY = {"left": "Left", "right": "Right"}
#: DICOM's segmentation property types per category (PS3.16 CID 719x; pydicom's tables), as
#: (CID, category keyword in pydicom's SCT dictionary), searched in this order.
_TYPE_CIDS = (
    (7192, "AnatomicalStructure"),
    (7191, "Tissue"),
    (7194, "MorphologicallyAbnormalStructure"),
    (7197, "BodySubstance"),
    (7193, "PhysicalObject"),
)


@dataclass(frozen=True)
class SegmentInfo:
    """One exported segment: DICOM ``number`` (1..N), original label ``value`` and class ``name``."""

    number: int
    value: int
    name: str


def class_name(value: int, classes: dict[int, str] | None) -> str:
    """The class name of ``value`` from ``classes``, else ``"label <value>"`` (at most 64 characters)."""
    name = str((classes or {}).get(int(value), "") or "").strip()
    return (name or f"label {int(value)}")[:64]


def _camel(words: list[str]) -> str:
    return "".join(w[:1].upper() + w[1:].lower() for w in words if w)


def _in_cid(camel: str, cid: int) -> bool:
    try:  # pydicom's context-group tables are not public API: without them every name is generic
        from pydicom.sr import _cid_dict
    except ImportError:
        return False
    return camel in getattr(_cid_dict, "cid_concepts", {}).get(cid, {}).get("SCT", ())


def segment_codes(name: str, value: int | None = None):  # noqa: ANN201 - (Code, Code, Code | None)
    """(category, type, laterality modifier or None) codes for a class name.

    The name is matched (case-insensitively, ``_``/``-``/space separated, an optional ``left``/``right``
    word removed) against pydicom's tables of DICOM segmentation contexts (SNOMED CT codes). An unknown
    name gives category SCT "Anatomical Structure" and the type ``(L<value>, 99NMEDSEG, <name>)`` of
    :data:`CUSTOM_SCHEME` (``value`` defaults to 0 when not given).
    """
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    words = [w for w in re.split(r"[\s_\-]+", name.strip()) if w]
    side = None
    for i, w in enumerate(words):
        if w.lower() in _LATERALITY and len(words) > 1:
            side = getattr(codes.SCT, _LATERALITY[w.lower()])
            words = words[:i] + words[i + 1 :]
            break
    camel = _camel(words)
    if camel:
        for cid, category in _TYPE_CIDS:
            if _in_cid(camel, cid):
                return getattr(codes.SCT, category), getattr(codes.SCT, camel), side
    custom = Code(value=f"L{int(value or 0)}", scheme_designator=CUSTOM_SCHEME, meaning=name[:64] or "label")
    return codes.SCT.AnatomicalStructure, custom, None


def _check_labels(labels: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"labels have data type {arr.dtype}; a DICOM SEG needs an integer label map")
    if tuple(arr.shape) != tuple(shape):
        raise GeometryError(
            f"label map has shape {tuple(arr.shape)} but the DICOM series has shape {tuple(shape)} (I, J, K)"
        )
    if arr.size and int(arr.min()) < 0:
        raise InputError(f"label map holds negative label values (min {int(arr.min())})")
    if not np.any(arr):
        raise InputError("label map is empty (no non-zero voxel): there is nothing to export")
    return arr


def _instance_uids(ds: pydicom.Dataset) -> tuple[str, str]:
    """(SOPClassUID, SOPInstanceUID), falling back to the file meta header when the dataset's are blank."""
    meta = getattr(ds, "file_meta", None) or pydicom.Dataset()
    cls = str(ds.get("SOPClassUID", "") or "") or str(meta.get("MediaStorageSOPClassUID", "") or "")
    inst = str(ds.get("SOPInstanceUID", "") or "") or str(meta.get("MediaStorageSOPInstanceUID", "") or "")
    return cls, inst


def _source_headers(series: SortedSeries) -> list[pydicom.Dataset]:
    """Copies of the sorted headers with usable UIDs; InputError when the series cannot be referenced."""
    name = f"series {series.uid}"
    out = []
    for path, ds in zip(series.files, series.headers, strict=True):
        cls, inst = _instance_uids(ds)
        if not inst or not cls:
            raise InputError(
                f"{path.name} in {name} has no SOP Instance/Class UID, so a SEG cannot reference it"
            )
        ds = deepcopy(ds)
        ds.SOPClassUID, ds.SOPInstanceUID = cls, inst
        out.append(ds)
    for key in ("StudyInstanceUID", "SeriesInstanceUID"):
        values = {str(d.get(key, "") or "") for d in out}
        if "" in values:
            raise InputError(f"{name} has no {key} (anonymised export?), so a DICOM SEG cannot reference it")
        if len(values) > 1:
            raise InputError(f"{name} mixes {len(values)} different {key}s")
    uids = [d.SOPInstanceUID for d in out]
    if len(set(uids)) != len(uids):
        raise InputError(f"{name} holds {len(uids) - len(set(uids))} duplicate SOP Instance UID(s)")
    return out


def _check_slice_positions(series: SortedSeries) -> None:
    """Every slice's ImagePositionPatient must be the grid position of its first stored pixel.

    Pixel (row 0, column 0) of slice ``k`` is voxel ``(0, J - 1, k)``; its LPS position must match the
    file's ImagePositionPatient within :data:`POSITION_TOL_SLICES` slice spacings.
    """
    j_last = series.shape[1] - 1
    affine_lps = LPS_TO_RAS @ series.affine
    spacing = float(np.linalg.norm(series.affine[:3, 2]))
    for k, ds in enumerate(series.headers):
        expected = (affine_lps @ np.array([0.0, j_last, k, 1.0]))[:3]
        actual = np.array([float(v) for v in ds.ImagePositionPatient])
        off = float(np.linalg.norm(expected - actual))
        if off > POSITION_TOL_SLICES * spacing:
            raise GeometryError(
                f"slice {k} of series {series.uid} ({series.files[k].name}) lies {off:.3g} mm off the grid"
            )


def _person_name(author: str) -> str:
    """ContentCreatorName: ``author`` as a DICOM person name (a name without ``^``, such as a login name,
    becomes its family-name component: ``alice`` -> ``alice^``), else :data:`DEFAULT_CONTENT_CREATOR`."""
    name = str(author or "").strip()
    if not name:
        return DEFAULT_CONTENT_CREATOR
    return name if "^" in name else f"{name[:63]}^"


def _segment_descriptions(segments: list[SegmentInfo], algorithm_type: str, algorithm: str | None):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from napari_medseg import __version__

    ident = None
    if algorithm is not None:
        ident = hd.AlgorithmIdentificationSequence(
            name=algorithm[:64],
            family=codes.DCM.ArtificialIntelligence,
            version=__version__,
            source="napari-medseg",
        )
    out = []
    for seg in segments:
        category, prop_type, modifier = segment_codes(seg.name, seg.value)
        desc = hd.seg.SegmentDescription(
            segment_number=seg.number,
            segment_label=seg.name,
            segmented_property_category=category,
            segmented_property_type=prop_type,
            algorithm_type=algorithm_type,
            algorithm_identification=ident,
            display_color=hd.color.CIELabColor.from_rgb(*label_rgb(seg.value)),
        )
        if modifier is not None:
            desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                hd.sr.CodedConcept.from_code(modifier)
            ]
        desc.SegmentDescription = f"{seg.name} (label value {seg.value})"
        out.append(desc)
    return out


def write_dicom_seg(
    labels: np.ndarray,
    series_folder: str | Path,
    out_path: str | Path,
    classes: dict[int, str] | None = None,
    *,
    series_uid: str | None = None,
    author: str = "",
    algorithm: str | None = None,
    algorithm_type: str | None = None,
    series_description: str = "napari-medseg segmentation",
    segmentation_type: str = "BINARY",
    seg_series_uid: str | None = None,
    seg_instance_uid: str | None = None,
) -> Path:
    """Write ``labels`` as a DICOM SEG referencing the series it was drawn on; return ``out_path``.

    Args:
        labels: integer (or bool) label map, shape ``(I, J, K)`` = the grid of
            ``load_series(series_folder, series_uid)`` (i = column, j = row reversed, k = sorted slice).
        series_folder: folder (sub-folders included) holding the source DICOM series.
        out_path: the ``.dcm`` file to write, atomically (a temporary file renamed into place).
        classes: ``{label value: class name}``; values without a name are exported as ``label <n>``.
        series_uid: the series to reference when the folder holds several.
        author: person who made or corrected the labels (ContentCreatorName, DICOM person name such
            as ``Doe^Jane``; a name without ``^`` is taken as the family name); empty =
            :data:`DEFAULT_CONTENT_CREATOR`.
        algorithm: model id that proposed the labels; ``None`` = drawn by hand.
        algorithm_type: ``MANUAL`` / ``SEMIAUTOMATIC`` / ``AUTOMATIC``; default MANUAL without
            ``algorithm``, SEMIAUTOMATIC (a corrected proposal) with one.
        series_description: SeriesDescription of the new SEG series (at most 64 characters).
        segmentation_type: ``BINARY`` (default, widest support) or ``LABELMAP`` (for readers that
            support Sup 243; see the module docstring).
        seg_series_uid, seg_instance_uid: SeriesInstanceUID / SOPInstanceUID of the SEG (default: new
            random UIDs); a caller that must write the same SEG twice (PACS push) passes fixed ones.

    Raises:
        GeometryError: ``labels`` is not on the series grid (shape, or a slice off its position).
        InputError: non-integer, negative or empty labels; unreadable or unreferenceable series;
            invalid options.
    """
    import highdicom as hd

    from napari_medseg import __version__

    seg_type = str(segmentation_type).upper()
    if seg_type not in SEG_TYPES:
        raise InputError(
            f"segmentation type must be one of {', '.join(SEG_TYPES)}, not {segmentation_type!r}"
        )
    if algorithm is not None and not str(algorithm).strip():
        algorithm = None
    algo_type = (
        str(algorithm_type).upper() if algorithm_type else ("SEMIAUTOMATIC" if algorithm else "MANUAL")
    )
    if algo_type not in ALGORITHM_TYPES:
        raise InputError(
            f"algorithm type must be one of {', '.join(ALGORITHM_TYPES)}, not {algorithm_type!r}"
        )
    if (algo_type == "MANUAL") != (algorithm is None):
        raise InputError("give a model id (algorithm) exactly when the algorithm type is not MANUAL")
    if len(series_description) > 64:
        raise InputError("the SEG series description must be at most 64 characters")

    series = sorted_series(series_folder, series_uid)
    arr = _check_labels(labels, series.shape)
    _check_slice_positions(series)
    sources = _source_headers(series)

    uniq, index = np.unique(arr, return_inverse=True)
    values = [int(v) for v in uniq if v != 0]
    segments = [SegmentInfo(n + 1, v, class_name(v, classes)) for n, v in enumerate(values)]
    # segment number of every voxel: rank among the non-zero values (1..N), 0 = background
    numbers = index.reshape(arr.shape) + (0 if uniq[0] == 0 else 1)
    numbers = numbers.astype(np.uint8 if len(values) < 256 else np.uint16)
    # (I, J, K) -> (K, rows, columns): frame k is labels[:, ::-1, k].T, for source instance k
    frames = np.ascontiguousarray(numbers[:, ::-1, :].transpose(2, 1, 0))

    src_number = sources[0].get("SeriesNumber", None)
    try:
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=frames,
            segmentation_type=seg_type,
            segment_descriptions=_segment_descriptions(segments, algo_type, algorithm),
            series_instance_uid=seg_series_uid or hd.UID(),
            series_number=min(int(src_number or 0), 2**30) + 1000,  # the source series' number + 1000
            sop_instance_uid=seg_instance_uid or hd.UID(),
            instance_number=1,
            manufacturer="napari-medseg",
            manufacturer_model_name="napari-medseg",
            software_versions=__version__,
            device_serial_number="0",
            content_label="MEDSEG",
            content_description=f"{len(segments)} segments from napari-medseg",
            content_creator_name=_person_name(author),
            series_description=series_description,
            omit_empty_frames=True,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as err:  # malformed source headers
        raise InputError(f"cannot build a DICOM SEG for series {series.uid} ({err})") from None
    if any(
        item.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == CUSTOM_SCHEME
        for item in seg.SegmentSequence
    ):  # a private coding scheme is declared in the SOP Common module (PS3.3 C.12.1.1.2)
        scheme = pydicom.Dataset()
        scheme.CodingSchemeDesignator = CUSTOM_SCHEME
        scheme.CodingSchemeName = "napari-medseg class names"
        scheme.CodingSchemeResponsibleOrganization = "napari-medseg"
        seg.CodingSchemeIdentificationSequence = [scheme]
    out = Path(out_path)
    atomic_write_with(out, lambda tmp: seg.save_as(str(tmp), enforce_file_format=True))
    return out


def _segment_values(seg) -> dict[int, int]:  # noqa: ANN001 - highdicom Segmentation
    """``{segment number: original label value}`` (from SegmentDescription, else the segment number)."""
    out = {}
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        if number == 0:  # LABELMAP background
            continue
        match = _VALUE_RE.search(str(item.get("SegmentDescription", "") or ""))
        out[number] = int(match.group(1)) if match else number
    return out


def read_dicom_seg(
    seg_path: str | Path, series_folder: str | Path, series_uid: str | None = None
) -> np.ndarray:
    """Map a DICOM SEG back onto its series grid.

    Frames are placed by their referenced SOP Instance UIDs (highdicom
    ``get_pixels_by_source_instance``), so the result does not depend on frame order in the file.

    Returns:
        Label map ``(I, J, K)`` on the grid of ``load_series(series_folder, series_uid)`` (i = column,
        j = row reversed, k = sorted slice), holding the original label values (from the segment
        descriptions :func:`write_dicom_seg` writes; other SEGs give segment numbers), 0 = background;
        uint8/uint16/int32 as :func:`napari_medseg.io.validate.label_dtype`.

    Raises:
        InputError: not a readable DICOM SEG, it references another series or instances that are not
            in it, or overlapping segments.
    """
    import highdicom as hd

    seg_path = Path(seg_path)
    if not seg_path.is_file():
        raise InputError(f"file not found: {seg_path}")
    try:
        seg = hd.seg.segread(str(seg_path))
    except Exception as err:  # noqa: BLE001 - pydicom/highdicom raise many types; the user needs one line
        raise InputError(f"{seg_path.name} is not a readable DICOM SEG ({err})") from None
    series = sorted_series(series_folder, series_uid)
    sources = _source_headers(series)
    uids = [d.SOPInstanceUID for d in sources]
    referenced = {sop for _, _, sop in seg.get_source_image_uids()}
    if not referenced or not referenced <= set(uids):
        raise InputError(
            f"{seg_path.name} references {len(referenced - set(uids))} instance(s) that are not in "
            f"series {series.uid}"
        )
    try:
        frames = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids,
            combine_segments=True,
            assert_missing_frames_are_empty=True,
        )
    except (ValueError, RuntimeError, KeyError) as err:
        raise InputError(f"cannot map {seg_path.name} onto series {series.uid} ({err})") from None
    mapping = _segment_values(seg)
    lut = np.zeros(max(mapping, default=0) + 1, dtype=np.int64)
    for number, value in mapping.items():
        lut[number] = value
    dtype = label_dtype(int(lut.max()))
    values = lut[frames.astype(np.int64)].astype(dtype)  # (K, rows, columns)
    return np.ascontiguousarray(values.transpose(2, 1, 0)[:, ::-1, :])
