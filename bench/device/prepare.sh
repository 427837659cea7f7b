#!/usr/bin/env bash
# Prepare the one device run of the GPU checks (bench/device/gpu_checks.sh), here, in the repo root.
#
# The GPU image has torch, scipy, scikit-image, safetensors, einops, tqdm, matplotlib and psutil, but not
# MONAI, nibabel, pydicom or isal: they travel as wheels in .whl/. ../shared does not travel: the data the
# checks read (MSD hippocampus, the TotalSegmentator CT series and its segmentation) is copied to .devdata/.
# Both folders are ignored by git (.git/info/exclude) and named in the run's `carry`; together with the
# tracked tree they stay under the device tool's 64 MiB.
#
#   bash bench/device/prepare.sh            # then, with the device tool:
#   run(command="bash bench/device/gpu_checks.sh", carry=[".whl", ".devdata"], timeout_s=600)
set -euo pipefail
SHARED=${MEDSEG_SHARED_DATA:-../shared/data}
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
for p in /.whl/ /.devdata/; do grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >>"$exclude"; done

rm -rf .whl && mkdir .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl monai==1.6.1 nibabel==5.4.2 pydicom==3.0.2 isal==1.9.1

rm -rf .devdata && mkdir -p .devdata/totalseg-examples
cp -r "$SHARED/msd-hippocampus" .devdata/
cp -r "$SHARED/totalseg-examples/ct_dicom" "$SHARED/totalseg-examples/example_ct.nii.gz" \
  "$SHARED/totalseg-examples/example_seg_dicom.nii.gz" "$SHARED/totalseg-examples/SOURCE.md" \
  .devdata/totalseg-examples/
du -sh .whl .devdata
echo "tracked tree: $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) bytes"
