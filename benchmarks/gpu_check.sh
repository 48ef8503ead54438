#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run (for a session lent a GPU machine).
#
#   make gpu-wheels                     # here, with internet: wheels the GPU image lacks
#   bash benchmarks/gpu_check.sh OUT    # there, from the repository root
#
# Runs the CUDA tests (heat operator on CUDA, CUDA-graph replay against eager, IHDM
# sampling with graphs) and `ihdm bench` on CUDA only: heat operator, training images/s
# and peak memory of the default and the paper's networks in fp32 and bf16, sampling with
# and without CUDA graphs. Writes OUT/pytest.txt and OUT/bench_{heat,train,sample}.{json,txt}.
# Needs a python3 with a CUDA build of torch, numpy, scipy, pyyaml and pytest; the other
# imports of `ihdm bench` (jsonschema, tqdm, Pillow) come from .gpu-wheels/ when the image
# lacks them (pass it to the device run in `carry`: it is not tracked). A failing test
# does not stop the bench, and each bench section writes its own JSON, so a crash in one
# keeps the others; the exit status is the first failure's.
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_check.sh OUTDIR}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! "$py" -c "import jsonschema, tqdm, PIL" 2>/dev/null; then
    [ -d .gpu-wheels ] || { echo "jsonschema/tqdm/Pillow missing and no .gpu-wheels/ (make gpu-wheels)" >&2; exit 2; }
    "$py" -m pip install -q --no-index --find-links .gpu-wheels --target .gpu-site jsonschema tqdm pillow || exit 2
    export PYTHONPATH="$PYTHONPATH:$PWD/.gpu-site"
fi
"$py" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())" | tee "$out/device.txt" || exit 2
status=0
"$py" -m pytest -q -p no:cacheprovider -o addopts="" tests/test_heat.py tests/test_unet.py \
    -k "cuda" 2>&1 | tee "$out/pytest.txt" || status=$?
for section in heat train sample; do
    "$py" -m ihdm.cli bench config/config.yaml --devices cuda --sections "$section" \
        --out "$out/bench_$section.json" 2>&1 | tee "$out/bench_$section.txt" || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }
done
exit "$status"
