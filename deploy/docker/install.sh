#!/bin/sh
# The broker image's install step, also run by the test suite in a temporary venv so that it
# cannot rot: install the gpuherd wheel found in WHEEL_DIR with the [kubernetes] extra, from
# binary wheels only (the image has no compiler, and this keeps it so), then drop the wheel.
# The image sets PIP_NO_CACHE_DIR=1 so no download cache stays in a layer.
#
#   install.sh WHEEL_DIR [PYTHON]
#
# GPUHERD_EXTRAS overrides the extras ("" for none): the test suite installs the base set to
# stay fast, and checks the [kubernetes] default on its own.
set -eu
dir=$1
python=${2:-python3}
extras=${GPUHERD_EXTRAS-[kubernetes]}
wheel=$(ls "$dir"/gpuherd-*-py3-none-any.whl)
"$python" -m pip install --disable-pip-version-check --only-binary=:all: \
    "gpuherd$extras @ file://$wheel"
rm -f "$wheel"
"$python" -m gpuherd --version
