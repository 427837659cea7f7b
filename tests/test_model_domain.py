"""Model domain: recorded from training images, and a case outside it is told apart (real data)."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED_DATA

from napari_medseg.io import load_volume
from napari_medseg.models.domain import (
    bundled_sample_domain,
    check_domain,
    domain_from_images,
    image_stats,
    model_domain,
    read_model_domain,
)
from napari_medseg.registry.model_registry import DEFAULT_MODEL_DIR

IBSI = SHARED_DATA / "ibsi-sts-ct"


@pytest.fixture(scope="module")
def ibsi_ct():
    path = IBSI / "imagesTr" / "sts_002.nii.gz"
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    return load_volume(path)


def test_domain_from_training_images_accepts_other_hippocampus_cases(hippo_cases):
    train = [img for img, _ in hippo_cases[:4]]
    domain = domain_from_images(train, {0: "background", 1: "anterior"}, "MRI")
    assert domain["modality"] == "MR" and domain["n_cases"] == 4 and domain["labels"]["1"] == "anterior"
    json.dumps(domain)  # goes into the JSON card as is
    for image, _ in hippo_cases[4:]:
        check = check_domain(image_stats(load_volume(image)), domain, "m")
        assert check.inside, check.message


def test_ct_is_outside_a_hippocampus_mri_domain_with_reasons_in_one_line(ibsi_ct):
    check = check_domain(image_stats(ibsi_ct), bundled_sample_domain(), "hippo")
    assert check.inside is False and check.refused
    text = check.message
    assert "\n" not in text and text.startswith("this case is outside hippo's training domain")
    assert "CT image, trained on MR" in text and "field of view" in text and "intensities down to" in text


def test_bundled_card_records_its_training_domain_and_cards_without_one_are_unknown(tmp_path, ibsi_ct):
    domain, model_id = read_model_domain(DEFAULT_MODEL_DIR)
    assert domain is not None and domain["modality"] == "MR" and domain["source"] == "training images"
    assert domain["n_cases"] == 200
    assert domain["labels"]["1"] == "anterior"
    assert check_domain(image_stats(ibsi_ct), domain, model_id).refused
    assert model_domain({"model_id": "someone-elses", "classes": {"0": "bg"}}, tmp_path) is None
    unknown = check_domain(image_stats(ibsi_ct), None, "someone-elses")
    assert unknown.inside is None and not unknown.refused and "records no training domain" in unknown.message
