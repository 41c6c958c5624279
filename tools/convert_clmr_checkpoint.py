#!/usr/bin/python3
"""Test oracle for `clmrd import`: an independent PyTorch implementation of the same conversion.

Users convert checkpoints with `clmrd import` (C, no Python, nothing in the file is executed; see
docs/model-format.md). This script stays because it earns its place as an oracle: it reads the
checkpoints with torch.load, so tests/python/test_import.py compares its output tensor by tensor
with clmrd's own zip/pickle readers on the layouts both understand. It covers fewer layouts (no
conv1..conv11 names, no MLP heads) and never unpickles arbitrary objects: a checkpoint that needs
them (Lightning hyper-parameters) is refused unless --trust-pickle is given (the tests pass it for
files they built themselves), because a full torch.load runs code from the file.

Convert CLMR SampleCNN checkpoints (PyTorch / PyTorch Lightning) to a clmrd model file.

Reads an encoder checkpoint and optionally a separate linear-head checkpoint and writes one
safetensors file with the official tensor names (sequential.<i>.<j>.*, fc.*) and the metadata the
clmrd loader requires (format, sample_rate, chunk_samples, name, tags). Run with Debian's
/usr/bin/python3 (python3-torch). Check the result with `clmrd inspect MODEL`.

Encoder layouts understood (the SampleCNN tensors are found wherever they sit):
  plain state_dict               sequential.<i>.<j>.* [+ fc.*]
  "encoder." prefix              encoder.sequential.* [+ projector.*]  (CLMR ContrastiveLearning)
  Lightning checkpoint           {"state_dict": {model.encoder.sequential.*, model.projector.*}}
  linear-evaluation checkpoint   {"state_dict": {encoder.sequential.*, model.0.{weight,bias}}}
Head (the Linear(512 -> n_tags) tag layer), first match wins:
  --head CKPT                    0.{weight,bias}, model.0.{weight,bias} or fc.{weight,bias}
                                 (plain or under "state_dict"; encoder tensors in it are ignored)
  inside the encoder checkpoint  fc.* next to the encoder tensors, or model.0.* / 0.*
  none                           an encoder-only model (embeddings, no tags)
SimCLR projector tensors (projector.*) are dropped: inference does not use them.

Security: checkpoints are pickles. They are read with torch.load(weights_only=True); a checkpoint
that needs arbitrary objects (e.g. Lightning hyper-parameters) is refused with a pointer to
`clmrd import`, which reads those without running anything, unless --trust-pickle asks for a full
load (which runs code from the file: only for files you made yourself).
"""
import argparse
import json
import os
import pickle
import re
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

MTT_TAGS = [
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice", "weird",
    "country", "metal", "female voice", "choral",
]
PARTS = ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"]
NBT = "1.num_batches_tracked"
SEQ_RE = re.compile(r"^sequential\.(\d+)\.(0\.weight|0\.bias|1\.weight|1\.bias|1\.running_mean|"
                    r"1\.running_var|1\.num_batches_tracked)$")
HEAD_PREFIXES = ["fc.", "model.0.", "0."]
MAX_LAYERS = 16


class ConvertError(Exception):
    pass


def _fmt_keys(keys, limit=8):
    keys = sorted(keys)
    more = " ... (%d more)" % (len(keys) - limit) if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


TRUST_PICKLE = False  # --trust-pickle: fall back to a full torch.load (runs code from the file)


def load_checkpoint(path):
    """The state_dict (name -> tensor) inside a checkpoint file of any supported layout."""
    if not os.path.isfile(path):
        raise ConvertError("%s: no such file" % path)
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if "weights only" not in str(e).lower():
                raise
            if TRUST_PICKLE:
                print("warning: %s contains pickled Python objects; --trust-pickle loads it "
                      "fully, which runs code from the file" % path, file=sys.stderr)
                obj = torch.load(path, map_location="cpu")
            else:
                raise ConvertError("%s contains pickled Python objects, which this oracle never "
                                   "unpickles; use `clmrd import` (it reads them without "
                                   "running anything), or --trust-pickle for a file you made"
                                   % path)
    except ConvertError:
        raise
    except Exception as e:  # not a torch file at all, truncated, or an unknown pickled class
        raise ConvertError("%s: cannot read as a PyTorch checkpoint: %s" % (path, e))
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # PyTorch Lightning
    if not isinstance(obj, dict):
        raise ConvertError("%s: expected a state_dict or a Lightning checkpoint, got %s"
                           % (path, type(obj).__name__))
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def find_encoder_prefix(sd, path):
    prefixes = sorted({k[: -len("sequential.0.0.weight")] for k in sd
                       if k.endswith("sequential.0.0.weight")}, key=len)
    if not prefixes:
        raise ConvertError("%s: no SampleCNN encoder found (no key ending in "
                           "'sequential.0.0.weight'; keys: %s)" % (path, _fmt_keys(sd)))
    if len(prefixes) > 1:
        raise ConvertError("%s: several encoders found (prefixes %s); convert one checkpoint with "
                           "one encoder" % (path, ", ".join(repr(p) for p in prefixes)))
    return prefixes[0]


def extract_head(sd, path, prefixes):
    """(weight, bias) of the linear head under the first matching prefix, or None."""
    for p in prefixes:
        w, b = sd.get(p + "weight"), sd.get(p + "bias")
        if w is None and b is None:
            continue
        if w is None or b is None:
            raise ConvertError("%s: head '%s*' needs both %sweight and %sbias" % (path, p, p, p))
        if p.endswith("0.") and (p[:-2] + "2.weight") in sd:
            raise ConvertError("%s: '%s*' is the first layer of a two-layer (MLP) head; this "
                               "oracle reads linear heads only (use `clmrd import`)" % (path, p))
        if w.dim() != 2 or b.dim() != 1 or b.shape[0] != w.shape[0]:
            raise ConvertError("%s: head %sweight %s / %sbias %s are not a Linear layer"
                               % (path, p, tuple(w.shape), p, tuple(b.shape)))
        return w, b, p
    return None


def extract_encoder(sd, path):
    """({official name: tensor} for the encoder, leftover keys, encoder prefix, depth)."""
    prefix = find_encoder_prefix(sd, path)
    enc, used = {}, set()
    for k, v in sd.items():
        if not k.startswith(prefix):
            continue
        m = SEQ_RE.match(k[len(prefix):])
        if m:
            enc[k[len(prefix):]] = v
            used.add(k)
    idx = sorted({int(SEQ_RE.match(k).group(1)) for k in enc})
    depth = idx[-1] + 1
    if depth > MAX_LAYERS:
        raise ConvertError("%s: %d layers; clmrd supports at most %d" % (path, depth, MAX_LAYERS))
    missing = ["%ssequential.%d.%s" % (prefix, i, p) for i in range(depth) for p in PARTS
               if "sequential.%d.%s" % (i, p) not in enc]
    if missing:
        raise ConvertError("%s: missing keys: %s" % (path, _fmt_keys(missing)))
    if depth < 3:
        raise ConvertError("%s: only %d layers; SampleCNN has at least 3" % (path, depth))
    return enc, set(sd) - used, prefix, depth


def check_shapes(enc, depth, path):
    in_ch = 1
    for i in range(depth):
        w = enc["sequential.%d.0.weight" % i]
        if w.dim() != 3 or w.shape[1] != in_ch or w.shape[2] != 3:
            raise ConvertError("%s: sequential.%d.0.weight has shape %s, expected (out, %d, 3)"
                               % (path, i, tuple(w.shape), in_ch))
        oc = w.shape[0]
        for p in PARTS[1:]:
            t = enc["sequential.%d.%s" % (i, p)]
            if tuple(t.shape) != (oc,):
                raise ConvertError("%s: sequential.%d.%s has shape %s, expected (%d,)"
                                   % (path, i, p, tuple(t.shape), oc))
        in_ch = oc
    return in_ch  # embedding size


def read_tags(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        tags = json.loads(text)
        if not all(isinstance(t, str) for t in tags):
            raise ConvertError("%s: the JSON array must hold strings" % path)
    else:
        tags = [line.strip() for line in text.splitlines() if line.strip()]
    tags = [t.strip() for t in tags]
    if any(not t for t in tags):
        raise ConvertError("%s: empty tag name" % path)
    dup = sorted({t for t in tags if tags.count(t) > 1})
    if dup:
        raise ConvertError("%s: duplicate tag names: %s" % (path, ", ".join(dup)))
    return tags


def convert(encoder, out, head=None, tags_file=None, name=None, log=print):
    sd = load_checkpoint(encoder)
    enc, rest, prefix, depth = extract_encoder(sd, encoder)
    embed = check_shapes(enc, depth, encoder)

    # head: --head file first, then fc.* beside the encoder, then a model.0.* / 0.* head
    found, head_src = None, None
    if head:
        hsd = load_checkpoint(head)
        found = extract_head(hsd, head, HEAD_PREFIXES + ["model.fc."])
        if found is None:
            raise ConvertError("%s: no linear head found (expected 0.weight/0.bias, "
                               "model.0.weight/model.0.bias or fc.weight/fc.bias; keys: %s)"
                               % (head, _fmt_keys(hsd)))
        head_src = head
    inner = extract_head(sd, encoder, [prefix + "fc.", "model.0.", "0."])
    if inner is not None:
        rest -= {inner[2] + "weight", inner[2] + "bias"}
        if found is None:
            found, head_src = inner, encoder
        else:
            log("note: ignoring the head '%s*' in %s (using --head)" % (inner[2], encoder))
    dropped = {k for k in rest if ".projector." in "." + k}
    rest -= dropped
    if rest:
        raise ConvertError("%s: unexpected keys: %s" % (encoder, _fmt_keys(rest)))
    if dropped:
        log("note: dropped %d SimCLR projector tensors" % len(dropped))

    tensors = {}
    for i in range(depth):
        for p in PARTS:
            tensors["sequential.%d.%s" % (i, p)] = enc["sequential.%d.%s" % (i, p)].float().numpy()
        nbt = enc.get("sequential.%d.%s" % (i, NBT))
        tensors["sequential.%d.%s" % (i, NBT)] = np.array(
            int(nbt.item()) if nbt is not None else 0, dtype=np.int64)
    tags = []
    if found is not None:
        w, b, _ = found
        if w.shape[1] != embed:
            raise ConvertError("%s: head weight is %s but the encoder's embedding has %d values"
                               % (head_src, tuple(w.shape), embed))
        tags = read_tags(tags_file) if tags_file else MTT_TAGS
        if len(tags) != w.shape[0]:
            raise ConvertError("the head has %d outputs but there are %d tag names%s"
                               % (w.shape[0], len(tags),
                                  "" if tags_file else " (the default MagnaTagATune list; give --tags)"))
        tensors["fc.weight"] = w.float().numpy()
        tensors["fc.bias"] = b.float().numpy()
    elif tags_file:
        raise ConvertError("--tags given but there is no head (use --head CKPT)")
    for k, v in tensors.items():
        if v.dtype == np.float32 and not np.isfinite(v).all():
            raise ConvertError("%s has non-finite values" % k)

    if not name:
        name = os.path.splitext(os.path.basename(out))[0]
    meta = {"format": "clmr-samplecnn", "sample_rate": "22050", "chunk_samples": str(3 ** (depth - 1)),
            "name": name, "source_encoder": os.path.basename(encoder),
            "converter": "tools/convert_clmr_checkpoint.py"}
    if tags:
        meta["tags"] = json.dumps(tags)
        meta["source_head"] = os.path.basename(head_src)
    tmp = out + ".tmp"
    safetensors_io.write(tmp, tensors, meta)
    os.replace(tmp, out)
    widths = [int(tensors["sequential.%d.0.weight" % i].shape[0]) for i in range(depth)]
    log("wrote %s: %d layers (widths %s), %s" % (
        out, depth, widths, "%d tags" % len(tags) if tags else "encoder only (no tags)"))
    return tensors, meta


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: convert_clmr_checkpoint.py --encoder clmr_checkpoint_10000.pt "
               "--head finetuner_checkpoint_200.pt --out clmr-mtt.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", required=True, metavar="CKPT",
                    help="encoder checkpoint (state_dict, 'encoder.' prefix or Lightning)")
    ap.add_argument("--head", metavar="CKPT", help="separate linear-head checkpoint")
    ap.add_argument("--out", required=True, metavar="MODEL.safetensors", help="output file")
    ap.add_argument("--tags", metavar="FILE",
                    help="tag names in head order: one per line, or a JSON array "
                         "(default: the 50 MagnaTagATune tags in CLMR's order)")
    ap.add_argument("--name", help="model name (default: the output file name without extension)")
    ap.add_argument("--trust-pickle", action="store_true",
                    help="fall back to a full torch.load, which RUNS CODE from the file (tests "
                         "only, on files they built; users run `clmrd import`)")
    args = ap.parse_args(argv)
    global TRUST_PICKLE
    TRUST_PICKLE = args.trust_pickle
    try:
        convert(args.encoder, args.out, args.head, args.tags, args.name,
                log=lambda s: print(s, file=sys.stderr))
    except ConvertError as e:
        print("convert_clmr_checkpoint: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
