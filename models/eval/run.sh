#!/bin/sh
# run.sh - the runs behind the model card's tables (tools/eval/paper_table.py), as they were made.
#
#   LABELLED=DIR WORK=DIR [CLMRD=build/clmrd] models/eval/run.sh RANDOM_INIT.safetensors PRETRAINED.safetensors
#
# LABELLED: make_labelled.py output (train, test, test_opl3) plus make_real.py's under real/
# (check it with `cd $LABELLED && sha256sum -c models/eval/labelled/SHA256SUMS`). WORK keeps every
# model, embedding cache and JSON output; steps whose output exists are skipped, so an interrupted
# run resumes. The card's runs used 2 threads; (c) at 1 % and 10 % gets 30 epochs, at 100 % only 8
# epochs (its compute budget: 34 min on the shared machine), batch 16 at 1 % (43 crops), else 48.
set -e
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${LABELLED:?set LABELLED to the labelled sets folder}" "${WORK:?set WORK to a work folder}"
CLMRD=${CLMRD:-$root/build/clmrd}
table() {
  nice -n 10 /usr/bin/python3 "$root/tools/eval/paper_table.py" --clmrd "$CLMRD" \
    --train "$LABELLED/train/manifest.jsonl" --tags "$root/models/eval/tags.txt" \
    --test test="$LABELLED/test/manifest.jsonl" --test timgm6mb="$LABELLED/test/manifest_timgm6mb.jsonl" \
    --test freepats="$LABELLED/test/manifest_freepats.jsonl" --test sf_gmbank="$LABELLED/test/manifest_sf_gmbank.jsonl" \
    --test opl3="$LABELLED/test_opl3/manifest.jsonl" --test real="$LABELLED/real/manifest.jsonl" \
    --work "$WORK" --threads 2 "$@"
}
table --encoder a="$1" --out "$WORK/out-a"                       # (a) random init, linear head
table --encoder b="$2" --out "$WORK/out-b"                       # (b) CLMR pretrained, linear head
table --supervised --fractions 1 --out "$WORK/out-c1" --supervised-args "--batch 16 --epochs 30 --patience 5"
table --supervised --fractions 10 --out "$WORK/out-c10" --supervised-args "--batch 48 --epochs 30 --patience 5"
table --supervised --fractions 100 --out "$WORK/out-c100" --supervised-args "--batch 48 --epochs 8 --patience 5"
/usr/bin/python3 "$root/tools/eval/card_tables.py" "$WORK" --per-tag c-f100
