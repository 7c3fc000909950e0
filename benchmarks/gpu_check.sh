#!/usr/bin/env bash
# The GPU checks in one run: the CUDA tests, then the speed benchmarks on CUDA (the engine; the
# image experiments' training and probing costs, extrapolated to workflow/configs/paper.yaml; the
# curvature's cost).
#
#   bash benchmarks/gpu_check.sh [budget GiB, default 40]
#
# On a GPU machine with the project installed this is all. On the lent
# device machines (python3 with torch, xarray and pytest, but no zarr or
# jsonschema, and no network), first download their wheels into .whl/ here:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux_2_28_x86_64 -d .whl zarr==3.1.6 numcodecs==0.16.6 donfig \
#     google-crc32c jsonschema==4.26.0 jsonschema-specifications referencing rpds-py
#
# and run this script there carrying .whl (about 10 MB); it installs them
# into /tmp/site. Output also goes to $OUT/gpu_check.log when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${1:-40}"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
log="${OUT:-/tmp}/gpu_check.log"
status=0
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.cuda.is_available())"
    python3 -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_tangents.py tests/test_geometry.py \
        tests/test_curvature.py || status=1
    python3 benchmarks/probe_speed.py --devices cuda --budget-gib "$budget" --profile || status=1
    # seconds per CIFAR-10 ResNet34 epoch at batch 1024 (10 batches timed), per MNIST epoch, per probe point
    python3 benchmarks/image_costs.py --device cuda --train-images 10240 --points 64 || status=1
    # the Gaussian curvature on a plane in forward passes a point
    python3 benchmarks/curvature_cost.py --devices cuda || status=1
    exit "$status"
} 2>&1 | tee "$log"
