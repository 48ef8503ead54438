#!/usr/bin/env bash
# Run by Snakemake inside the freshly created environment of workflow/envs/ihdm.yaml.
# Installs the ihdm package (the `ihdm` command the rules call) as a regular, non-editable
# copy of the workflow's own source tree: IHDM_SOURCE, which the Snakefile sets to the
# folder above workflow/ (a user may set it to another checkout of the same version).
# The environment is keyed by Snakemake on this file's text, so the version below makes
# every release get its own environment, also under a shared --conda-prefix; a source of
# another version is refused. Dependencies are the environment file's pins (--no-deps).
set -euo pipefail
IHDM_VERSION="0.1.0"
src="${IHDM_SOURCE:-}"
if [ -z "$src" ] || [ ! -f "$src/pyproject.toml" ] || ! grep -q '^name = "ihdm"' "$src/pyproject.toml"; then
    echo "ihdm post-deploy: IHDM_SOURCE='$src' is not the ihdm source tree; set IHDM_SOURCE to it" >&2
    exit 1
fi
if ! grep -q "^version = \"$IHDM_VERSION\"" "$src/pyproject.toml"; then
    echo "ihdm post-deploy: $src/pyproject.toml is not version $IHDM_VERSION, the version this environment is for" >&2
    exit 1
fi
python -m pip install --no-deps --no-cache-dir "$src"
installed="$(python -c 'import ihdm; print(ihdm.__version__)')"
if [ "$installed" != "$IHDM_VERSION" ]; then
    echo "ihdm post-deploy: installed ihdm $installed, expected $IHDM_VERSION" >&2
    exit 1
fi
echo "ihdm post-deploy: installed ihdm $installed from $src ($(git -C "$src" rev-parse HEAD 2>/dev/null || echo 'no git revision'))"
