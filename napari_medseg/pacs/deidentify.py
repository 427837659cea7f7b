"""De-identification of pulled DICOM instances (PS3.15 Annex E, Basic Application Level Confidentiality
Profile), for research stores (``pacs pull --deidentify``).

What is done to every dataset (and, recursively, to every item of its sequences), with pydicom:

* the attributes of the Basic Profile's table (PS3.15 Table E.1-1) that identify the patient, the
  people involved, the institution, the device or the visit are **removed** (action X) or **emptied**
  (Z); :data:`REMOVE` and :data:`EMPTY` list them by keyword;
* as a safety net beyond the table, every other person name (VR ``PN``) is emptied, every date, time and
  date-time (``DA``/``TM``/``DT``) is emptied, and private tags, overlays and curves are removed;
* every instance UID (VR ``UI`` that is not a DICOM-defined UID such as a SOP Class or a transfer syntax)
  is **replaced** (U) by ``2.25.<n>`` derived from the original UID and a secret ``salt``: the same UID
  always maps to the same new UID within one store (a study re-pulled lands on the same case; the
  series, study and frame-of-reference links between instances stay intact), and it cannot be reversed
  without the salt;
* PatientID and PatientName become a pseudonym ``ANON-<hash>`` (salted, per original PatientID) so the
  instances of one patient still group together;
* PatientIdentityRemoved = ``YES``, DeidentificationMethod and its code sequence (DCM 113100, Basic
  Application Confidentiality Profile) are added.

Geometry (ImagePositionPatient, ImageOrientationPatient, PixelSpacing, slice thickness), pixel data
and its rescale are kept, so the de-identified series loads onto exactly the same voxel grid. Burned-in
text in the pixels is not detected (the Basic Profile's "Clean Pixel Data" option is not implemented).
"""

from __future__ import annotations

import hashlib
import hmac

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID_dictionary

METHOD = "PS3.15 E.1 Basic Application Level Confidentiality Profile (napari-medseg)"

#: Basic Profile attributes removed (action X, or X/Z/D where removal is allowed).
REMOVE = (
    "AcquisitionComments",
    "AcquisitionContextSequence",
    "AcquisitionDeviceProcessingDescription",
    "AcquisitionProtocolDescription",
    "ActualHumanPerformersSequence",
    "AdditionalPatientHistory",
    "AdmissionID",
    "AdmittingDiagnosesCodeSequence",
    "AdmittingDiagnosesDescription",
    "Allergies",
    "Arbitrary",
    "AuthorObserverSequence",
    "BranchOfService",
    "CommentsOnThePerformedProcedureStep",
    "ConfidentialityConstraintOnPatientDataDescription",
    "ContributionDescription",
    "CountryOfResidence",
    "CurrentPatientLocation",
    "CustodialOrganizationSequence",
    "DerivationDescription",
    "DeviceSerialNumber",
    "DeviceUID",
    "DischargeDiagnosisDescription",
    "DistributionAddress",
    "DistributionName",
    "EthnicGroup",
    "FrameComments",
    "GantryID",
    "GeneratorID",
    "HumanPerformerName",
    "HumanPerformerOrganization",
    "IconImageSequence",
    "IdentifyingComments",
    "ImageComments",
    "ImagePresentationComments",
    "ImagingServiceRequestComments",
    "Impressions",
    "InstitutionAddress",
    "InstitutionCodeSequence",
    "InstitutionName",
    "InstitutionalDepartmentName",
    "InsurancePlanIdentification",
    "IntendedRecipientsOfResultsIdentificationSequence",
    "InterpretationApproverSequence",
    "InterpretationAuthor",
    "InterpretationDiagnosisDescription",
    "InterpretationIDIssuer",
    "InterpretationRecorder",
    "InterpretationText",
    "InterpretationTranscriber",
    "IssuerOfAdmissionID",
    "IssuerOfPatientID",
    "IssuerOfServiceEpisodeID",
    "LastMenstrualDate",
    "MedicalAlerts",
    "MedicalRecordLocator",
    "MilitaryRank",
    "ModifiedAttributesSequence",
    "ModifyingDeviceID",
    "ModifyingDeviceManufacturer",
    "NameOfPhysiciansReadingStudy",
    "NamesOfIntendedRecipientsOfResults",
    "Occupation",
    "OperatorIdentificationSequence",
    "OperatorsName",
    "OriginalAttributesSequence",
    "OrderCallbackPhoneNumber",
    "OrderEnteredBy",
    "OrderEntererLocation",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "ParticipantSequence",
    "PatientAddress",
    "PatientAge",
    "PatientBirthName",
    "PatientBirthTime",
    "PatientComments",
    "PatientInstitutionResidence",
    "PatientInsurancePlanCodeSequence",
    "PatientMotherBirthName",
    "PatientPrimaryLanguageCodeSequence",
    "PatientPrimaryLanguageModifierCodeSequence",
    "PatientReligiousPreference",
    "PatientSize",
    "PatientState",
    "PatientTelephoneNumbers",
    "PatientTransportArrangements",
    "PatientWeight",
    "PerformedLocation",
    "PerformedProcedureStepDescription",
    "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedStationAETitle",
    "PerformedStationGeographicLocationCodeSequence",
    "PerformedStationName",
    "PerformedStationNameCodeSequence",
    "PerformingPhysicianIdentificationSequence",
    "PerformingPhysicianName",
    "PersonAddress",
    "PersonIdentificationCodeSequence",
    "PersonName",
    "PersonTelephoneNumbers",
    "PhysicianApprovingInterpretation",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence",
    "PlacerOrderNumberImagingServiceRequest",
    "PreMedication",
    "PregnancyStatus",
    "ProtocolName",
    "ReasonForTheImagingServiceRequest",
    "ReasonForStudy",
    "ReferencedDigitalSignatureSequence",
    "ReferencedPatientAliasSequence",
    "ReferencedPatientSequence",
    "ReferencedPerformedProcedureStepSequence",
    "ReferencedSOPInstanceMACSequence",
    "ReferencedStudySequence",
    "ReferringPhysicianAddress",
    "ReferringPhysicianIdentificationSequence",
    "ReferringPhysicianTelephoneNumbers",
    "RegionOfResidence",
    "RequestAttributesSequence",
    "RequestedContrastAgent",
    "RequestedProcedureComments",
    "RequestedProcedureDescription",
    "RequestedProcedureID",
    "RequestedProcedureLocation",
    "RequestingPhysician",
    "RequestingService",
    "ResponsibleOrganization",
    "ResponsiblePerson",
    "ResultsComments",
    "ResultsDistributionListSequence",
    "ResultsIDIssuer",
    "ScheduledHumanPerformersSequence",
    "ScheduledPatientInstitutionResidence",
    "ScheduledPerformingPhysicianIdentificationSequence",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepLocation",
    "ScheduledStationAETitle",
    "ScheduledStationGeographicLocationCodeSequence",
    "ScheduledStationName",
    "ScheduledStationNameCodeSequence",
    "ScheduledStudyLocation",
    "ScheduledStudyLocationAETitle",
    "SeriesDescription",
    "ServiceEpisodeDescription",
    "ServiceEpisodeID",
    "SmokingStatus",
    "SourceImageSequence",
    "SpecialNeeds",
    "StationName",
    "StudyComments",
    "StudyDescription",
    "StudyIDIssuer",
    "TextComments",
    "TextString",
    "TimezoneOffsetFromUTC",
    "TopicAuthor",
    "TopicKeywords",
    "TopicSubject",
    "TopicTitle",
    "VerifyingObserverIdentificationCodeSequence",
    "VerifyingObserverName",
    "VerifyingObserverSequence",
    "VerifyingOrganization",
    "VisitComments",
    "DigitalSignaturesSequence",
    "DataSetTrailingPadding",
)
#: Basic Profile attributes kept but emptied (action Z: type 2 attributes that must be present).
EMPTY = (
    "AccessionNumber",
    "ContentCreatorName",
    "PatientBirthDate",
    "PatientSex",
    "ReferringPhysicianName",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ContentDate",
    "ContentTime",
    "FillerOrderNumberImagingServiceRequest",
)
#: Value representations emptied wherever they occur (names, dates and times).
EMPTY_VRS = ("PN", "DA", "DT", "TM")


def uid_from_digest(digest: bytes) -> str:
    """A UID under DICOM's UUID root: ``2.25.<decimal of the digest's first 128 bits>``."""
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def remap_uid(uid: str, salt: bytes) -> str:
    """The de-identified UID for ``uid``: :func:`uid_from_digest` of HMAC-SHA256(salt, uid)."""
    return uid_from_digest(hmac.new(salt, str(uid).encode(), hashlib.sha256).digest())


def pseudonym(patient_id: str, salt: bytes) -> str:
    """``ANON-<12 hex>``, the same for the same PatientID in one store."""
    return "ANON-" + hmac.new(salt, f"patient:{patient_id}".encode(), hashlib.sha256).hexdigest()[:12].upper()


def _is_defined_uid(uid: str) -> bool:
    """A UID DICOM itself defines (SOP class, transfer syntax, coding scheme...), which identifies nobody."""
    return str(uid) in UID_dictionary


def _clean(ds: Dataset, salt: bytes) -> None:
    remove = {pydicom.datadict.tag_for_keyword(k) for k in REMOVE} - {None}
    empty = {pydicom.datadict.tag_for_keyword(k) for k in EMPTY} - {None}
    for elem in list(ds):
        tag = elem.tag
        group = tag.group
        if tag.is_private or 0x5000 <= group <= 0x50FF or (0x6000 <= group <= 0x60FF and group % 2 == 0):
            del ds[tag]  # private tags, curves, overlays
        elif tag in remove:
            del ds[tag]
        elif elem.VR == "SQ":
            for item in elem.value:
                _clean(item, salt)
        elif tag in empty or elem.VR in EMPTY_VRS:
            elem.value = None
        elif elem.VR == "UI" and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            new = [v if _is_defined_uid(v) else remap_uid(v, salt) for v in values]
            elem.value = new if elem.VM > 1 else new[0]


def deidentify(ds: Dataset, salt: bytes) -> Dataset:
    """De-identify ``ds`` in place (see the module docstring) and return it.

    Args:
        ds: one DICOM instance as retrieved (file meta included when present).
        salt: the store's secret (at least 16 bytes); the same salt gives the same UIDs and pseudonyms.
    """
    if len(salt) < 16:
        raise ValueError("the de-identification salt must hold at least 16 bytes")
    patient = pseudonym(str(ds.get("PatientID", "") or ""), salt)
    _clean(ds, salt)
    ds.PatientID = patient
    ds.PatientName = patient
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = [code]
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds
