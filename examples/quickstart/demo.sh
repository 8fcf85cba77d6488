#!/usr/bin/env bash
# vvstore quickstart: add three small real models to a fresh store, list them, read them back
# and check every byte. Runs from any directory:
#
#     bash examples/quickstart/demo.sh
#
# Uses `vvstore` from PATH. Works on a copy of this example in a temp directory, with a fresh
# temp store unless VVSTORE_HOME is already set (then that store is used and kept).
# Exits non-zero if any command fails or any byte read back differs from the original.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v vvstore >/dev/null 2>&1; then
    echo "demo.sh: vvstore is not on PATH (install it: pip install -e . from the repo root)" >&2
    exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/vvstore-quickstart.XXXXXX")"
cleanup() { rm -rf -- "$work"; }
trap cleanup EXIT

if [[ -z "${VVSTORE_HOME:-}" ]]; then
    export VVSTORE_HOME="$work/store"   # removed with $work at exit
fi

# A fresh copy of the example project, so the demo never touches the repository.
project="$work/project"
mkdir -p "$project"
cp -R "$here/models" "$project/models"
cd "$project"

step() { printf '\n$ %s\n' "$*"; "$@"; }

# `cmp` a model file read back from the store with the original; fail loudly if they differ.
check_same() {  # check_same WHAT GOT ORIGINAL
    if ! cmp -s -- "$2" "$3"; then
        echo "demo.sh: MISMATCH: $1 differs from $3" >&2
        exit 1
    fi
    echo "ok: $1 is byte-identical to $3"
}

echo "project: $project"
echo "store:   $VVSTORE_HOME"

step vvstore init
step vvstore add models/mlp.onnx --tag vision
step vvstore add models/tiny-bert --name acme/tiny-bert --version 1.0
step vvstore add models/linear-probe.safetensors --tag nlp
step vvstore ls
step vvstore show acme/tiny-bert

# Read bytes back three ways and compare them with the originals.
printf '\n$ vvstore cat acme/tiny-bert@1.0/model.safetensors > %s\n' "$work/cat.out"
vvstore cat acme/tiny-bert@1.0/model.safetensors > "$work/cat.out"
check_same "vvstore cat acme/tiny-bert@1.0/model.safetensors" "$work/cat.out" models/tiny-bert/model.safetensors

printf '\n$ vvstore path mlp\n'
blob="$(vvstore path mlp)"
echo "$blob"
check_same "vvstore path mlp" "$blob" models/mlp.onnx

printf '\n$ vvstore path acme/tiny-bert/config.json\n'
blob="$(vvstore path acme/tiny-bert/config.json)"
echo "$blob"
check_same "vvstore path acme/tiny-bert/config.json" "$blob" models/tiny-bert/config.json

vvstore cat linear-probe > "$work/probe.out"
check_same "vvstore cat linear-probe" "$work/probe.out" models/linear-probe.safetensors

n_models="$(vvstore --json ls | grep -c '"ref"' || true)"
echo
echo "SUCCESS: ${n_models} models stored in ${VVSTORE_HOME}; every byte read back matches the originals."
