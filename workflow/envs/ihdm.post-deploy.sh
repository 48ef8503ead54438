#!/usr/bin/env bash
# Run by Snakemake inside the freshly created environment of workflow/envs/ihdm.yaml, from
# the workflow's working directory. Installs the ihdm package (the `ihdm` command the rules
# call) without touching the dependencies the environment file pinned.
set -euo pipefail
src="${IHDM_SOURCE:-$PWD}"
if [ ! -f "$src/pyproject.toml" ] || ! grep -q '^name = "ihdm"' "$src/pyproject.toml"; then
    echo "ihdm post-deploy: $src is not the ihdm repository; run snakemake from the repository root or set IHDM_SOURCE to it" >&2
    exit 1
fi
python -m pip install --no-deps -e "$src"
