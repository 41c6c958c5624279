#!/bin/sh
# run-service.sh BIN MODEL [ARGS...] - start the service on the default model, or say exactly
# what is missing. Used by `make run`.
set -eu
bin=$1 model=$2
shift 2
if ! "$bin" --help 2>/dev/null | grep -q '^  serve '; then
  echo "make run: this build of clmrd has no 'serve' command yet (the HTTP service, issue 3)." >&2
  echo "make run: 'clmrd tag FILE...' works now; see README.md." >&2
  exit 1
fi
if [ ! -f "$model" ] && [ -z "${CLMRD_MODEL:-}" ]; then
  echo "make run: no default model at $model and CLMRD_MODEL is not set." >&2
  echo "make run: import the official CLMR checkpoints with build/clmrd import (see README)" >&2
  echo "          and run 'make run MODEL=path/to/model.safetensors'." >&2
  exit 1
fi
[ -f "$model" ] && set -- --model "$model" "$@"
exec "$bin" serve --data-dir "${CLMRD_DATA_DIR:-./data}" "$@"
