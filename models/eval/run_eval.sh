#!/bin/sh
# run_eval.sh MODEL TAG: fit the head on labelled train, evaluate on test (all + per source) and test_opl3
set -e
M=$1; T=$2; L=/work/cache/labelled; C=/work/cache/pretrain/clmrd-eval
cd /work/cache/pretrain/eval
date -u +"%FT%TZ start $T" >> timing.txt
$C fit-head --model $M --labels /work/cache/pretrain/eval/labelled-train-third.jsonl --out $T-head.safetensors --cache embcache --threads 2 --batch 32 --epochs 1000 --json > $T-fit.json 2> $T-fit.err
date -u +"%FT%TZ fitted $T" >> timing.txt
$C eval --model $T-head.safetensors --labels $L/test/manifest.jsonl --cache embcache --threads 2 --json > $T-eval-test.json 2> $T-eval.err
for s in timgm6mb freepats sf_gmbank; do
  $C eval --model $T-head.safetensors --labels $L/test/manifest_$s.jsonl --cache embcache --threads 2 --json > $T-eval-$s.json 2>> $T-eval.err
done
$C eval --model $T-head.safetensors --labels $L/test_opl3/manifest.jsonl --cache embcache --threads 2 --json > $T-eval-opl3.json 2>> $T-eval.err
date -u +"%FT%TZ done $T" >> timing.txt
