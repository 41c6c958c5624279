"""tools/convert_clmr_checkpoint.py on every checkpoint layout, checked tensor by tensor and then
loaded by the C loader through `clmrd inspect --json` (binary at $CLMRD_BUILD/clmrd).

Checkpoints are built here with torch (small widths, full depth, so the files stay tiny) in the
layouts CLMR produces: plain state_dicts with and without fc, the "encoder." prefix with a SimCLR
projector, PyTorch Lightning pretraining checkpoints, linear-evaluation checkpoints and separate
head checkpoints ("0.weight", "model.0.weight", "fc.weight").
"""
import argparse
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
import safetensors_io  # noqa: E402
import samplecnn_torch as ref  # noqa: E402
import convert_clmr_checkpoint as converter  # noqa: E402

CONVERTER = os.path.join(ROOT, "tools", "convert_clmr_checkpoint.py")
BUILD = os.environ.get("CLMRD_BUILD", os.path.join(ROOT, "build"))
CLMRD = os.path.join(BUILD, "clmrd")
WIDTHS = [4, 4, 4, 6, 6, 6, 6, 6, 6, 8, 8]


def small_model(n_tags=50, widths=WIDTHS, seed=0):
    """A SampleCNN with random weights and random BatchNorm statistics (no calibration: fast)."""
    torch.manual_seed(seed)
    m = ref.SampleCNN(widths, n_tags)
    with torch.no_grad():
        for block in m.sequential:
            bn = block[1]
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
            bn.running_mean.normal_(0, 0.5)
            bn.running_var.uniform_(0.2, 3.0)
            bn.num_batches_tracked.fill_(17)
    return m.eval()


def encoder_sd(m):
    return {k: v for k, v in m.state_dict().items() if not k.startswith("fc.")}


def projector(d=8, out=4):
    g = torch.nn.Sequential(torch.nn.Linear(d, d, bias=False), torch.nn.ReLU(),
                            torch.nn.Linear(d, out, bias=False))
    return g.state_dict()


def run_convert(tmp_path, *args, ok=True):
    """The converter's main() in-process (importing torch once per subprocess would make these
    tests ~10x slower); test_help and test_cli_subprocess run it as a real command."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = converter.main(list(args) + ["--trust-pickle"])  # files built by these tests
    p = argparse.Namespace(returncode=rc, stderr=err.getvalue())
    if ok:
        assert p.returncode == 0, p.stderr
    else:
        assert p.returncode != 0, "conversion should have failed: " + p.stderr
    return p


def inspect(path):
    assert os.path.exists(CLMRD), "build clmrd first (%s)" % CLMRD
    p = subprocess.run([CLMRD, "inspect", "--json", path], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def check_model(out, model, tags=ref.MTT_TAGS, head=True, name=None):
    """Tensors equal to model's, metadata right, and the C loader agrees."""
    tensors, meta = safetensors_io.read(out)
    sd = model.state_dict()
    for k, v in sd.items():
        if k.startswith("fc.") and not head:
            continue
        if k.endswith("num_batches_tracked"):
            assert tensors[k].dtype == np.int64 and int(tensors[k]) == int(v)
            continue
        assert tensors[k].dtype == np.float32
        np.testing.assert_array_equal(tensors[k], v.numpy(), err_msg=k)
    expected = set(sd) if head else {k for k in sd if not k.startswith("fc.")}
    assert set(tensors) == expected
    assert meta["format"] == "clmr-samplecnn"
    assert meta["sample_rate"] == "22050"
    assert meta["chunk_samples"] == str(model.chunk)
    assert meta["name"] == (name or os.path.splitext(os.path.basename(out))[0])
    info = inspect(out)
    assert info["widths"] == model.widths
    assert info["n_layers"] == len(model.widths)
    assert info["chunk_samples"] == model.chunk
    assert info["name"] == meta["name"]
    with open(out, "rb") as f:
        assert info["id"] == hashlib.sha256(f.read()).hexdigest()[:16]
    if head:
        assert json.loads(meta["tags"]) == list(tags)
        assert info["tags"] == list(tags)
        assert info["n_tags"] == len(tags)
    else:
        assert "tags" not in meta
        assert info["n_tags"] == 0 and info["tags"] == []
    return info


def test_plain_state_dict_with_fc(tmp_path):
    m = small_model()
    torch.save(m.state_dict(), tmp_path / "sup.pt")
    out = str(tmp_path / "sup.safetensors")
    run_convert(tmp_path, "--encoder", str(tmp_path / "sup.pt"), "--out", out)
    info = check_model(out, m)
    assert info["tags"][0] == "guitar" and info["tags"][-1] == "choral"
    # official names: the file loads back into the PyTorch network with strict=True
    tensors, _ = safetensors_io.read(out)
    back = ref.SampleCNN(WIDTHS, 50)
    back.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, strict=True)
    x = torch.from_numpy(ref.music_like(1, back.chunk, seed=1))
    with torch.no_grad():
        assert torch.equal(back.eval()(x), m(x))
    assert info["param_count"] == sum(p.numel() for p in m.parameters())
    assert info["bn_stat_count"] == sum(v.numel() for k, v in m.state_dict().items()
                                        if k.endswith(("running_mean", "running_var")))


def test_plain_state_dict_without_fc(tmp_path):
    m = small_model()
    torch.save(encoder_sd(m), tmp_path / "enc.pt")
    out = str(tmp_path / "enc.safetensors")
    run_convert(tmp_path, "--encoder", str(tmp_path / "enc.pt"), "--out", out)
    check_model(out, m, head=False)


def test_encoder_prefix_with_projector(tmp_path):
    m = small_model()
    sd = {"encoder." + k: v for k, v in encoder_sd(m).items()}
    sd.update({"projector." + k: v for k, v in projector().items()})
    torch.save(sd, tmp_path / "cl.pt")
    out = str(tmp_path / "cl.safetensors")
    p = run_convert(tmp_path, "--encoder", str(tmp_path / "cl.pt"), "--out", out, "--name", "pre")
    assert "projector" in p.stderr
    check_model(out, m, head=False, name="pre")


def lightning(sd):
    # a Lightning checkpoint also holds training state and hyper-parameters (plain objects here)
    return {"epoch": 3, "global_step": 120, "pytorch-lightning_version": "1.3.8",
            "state_dict": sd, "hyper_parameters": {"learning_rate": 3e-4},
            "optimizer_states": [], "lr_schedulers": []}


def test_lightning_pretrain_plus_separate_heads(tmp_path):
    m = small_model()
    sd = {"model.encoder." + k: v for k, v in encoder_sd(m).items()}
    sd.update({"model.projector." + k: v for k, v in projector().items()})
    torch.save(lightning(sd), tmp_path / "clmr_checkpoint.ckpt")
    enc = str(tmp_path / "clmr_checkpoint.ckpt")
    out = str(tmp_path / "l.safetensors")
    run_convert(tmp_path, "--encoder", enc, "--out", out)
    check_model(out, m, head=False)

    fc = m.state_dict()
    heads = {
        "plain0": {"0.weight": fc["fc.weight"], "0.bias": fc["fc.bias"]},
        "model0": lightning({"model.0.weight": fc["fc.weight"], "model.0.bias": fc["fc.bias"],
                             **{"encoder." + k: v for k, v in encoder_sd(m).items()}}),
        "fc": {"fc.weight": fc["fc.weight"], "fc.bias": fc["fc.bias"]},
    }
    for name, h in heads.items():
        torch.save(h, tmp_path / (name + ".pt"))
        out = str(tmp_path / (name + ".safetensors"))
        run_convert(tmp_path, "--encoder", enc, "--head", str(tmp_path / (name + ".pt")),
                    "--out", out, "--name", "clmr-" + name)
        check_model(out, m, name="clmr-" + name)


def test_lightning_linear_eval_checkpoint(tmp_path):
    # LinearEvaluation module: encoder.* + model.0.* (the head) in one Lightning checkpoint
    m = small_model()
    sd = {"encoder." + k: v for k, v in encoder_sd(m).items()}
    sd["model.0.weight"] = m.state_dict()["fc.weight"]
    sd["model.0.bias"] = m.state_dict()["fc.bias"]
    torch.save(lightning(sd), tmp_path / "finetuner.ckpt")
    out = str(tmp_path / "ft.safetensors")
    run_convert(tmp_path, "--encoder", str(tmp_path / "finetuner.ckpt"), "--out", out)
    check_model(out, m)


def test_custom_tags_and_depth(tmp_path):
    # 5 layers (chunk 81) and a 3-tag head: depth and widths come from the shapes
    m = small_model(n_tags=3, widths=[4, 5, 6, 7, 8])
    torch.save(m.state_dict(), tmp_path / "m.pt")
    (tmp_path / "tags.txt").write_text("rock\njazz\n\nélectronique\n", encoding="utf-8")
    out = str(tmp_path / "m.safetensors")
    run_convert(tmp_path, "--encoder", str(tmp_path / "m.pt"), "--out", out,
                "--tags", str(tmp_path / "tags.txt"))
    info = check_model(out, m, tags=["rock", "jazz", "électronique"])
    assert info["chunk_samples"] == 81
    (tmp_path / "tags.json").write_text('["a", "b", "c"]')
    run_convert(tmp_path, "--encoder", str(tmp_path / "m.pt"), "--out", out,
                "--tags", str(tmp_path / "tags.json"))
    check_model(out, m, tags=["a", "b", "c"])


@pytest.mark.parametrize("case", ["missing", "unexpected", "tag_count", "no_encoder", "dup_tags",
                                  "bad_head", "head_dim", "not_torch"])
def test_errors(tmp_path, case):
    m = small_model()
    sd = dict(m.state_dict())
    args = []
    want = None
    if case == "missing":
        del sd["sequential.3.1.running_var"]
        want = "missing keys: sequential.3.1.running_var"
    elif case == "unexpected":
        sd["decoder.weight"] = torch.zeros(3)
        want = "unexpected keys: decoder.weight"
    elif case == "tag_count":
        (tmp_path / "t.txt").write_text("a\nb\n")
        args = ["--tags", str(tmp_path / "t.txt")]
        want = "the head has 50 outputs but there are 2 tag names"
    elif case == "no_encoder":
        sd = {"fc.weight": sd["fc.weight"]}
        want = "no SampleCNN encoder found"
    elif case == "dup_tags":
        (tmp_path / "t.txt").write_text("a\nb\na\n")
        args = ["--tags", str(tmp_path / "t.txt")]
        want = "duplicate tag names: a"
    elif case == "bad_head":
        torch.save({"classifier.weight": torch.zeros(50, 8)}, tmp_path / "h.pt")
        args = ["--head", str(tmp_path / "h.pt")]
        sd = encoder_sd(m)
        want = "no linear head found"
    elif case == "head_dim":
        torch.save({"0.weight": torch.zeros(50, 9), "0.bias": torch.zeros(50)}, tmp_path / "h.pt")
        args = ["--head", str(tmp_path / "h.pt")]
        sd = encoder_sd(m)
        want = "embedding has 8 values"
    if case == "not_torch":
        (tmp_path / "c.pt").write_bytes(b"not a checkpoint")
        want = "cannot read as a PyTorch checkpoint"
    else:
        torch.save(sd, tmp_path / "c.pt")
    out = tmp_path / "o.safetensors"
    p = run_convert(tmp_path, "--encoder", str(tmp_path / "c.pt"), "--out", str(out), *args,
                    ok=False)
    assert want in p.stderr, p.stderr
    assert not out.exists()


def test_help():
    p = subprocess.run([sys.executable, CONVERTER, "--help"], capture_output=True, text=True)
    assert p.returncode == 0
    for word in ["--encoder", "--head", "--out", "--tags", "--name", "Lightning"]:
        assert word in p.stdout


def test_cli_subprocess(tmp_path):
    # the script as a process: a Lightning checkpoint with a pickled argparse.Namespace is refused
    # (the oracle never unpickles objects; `clmrd import` reads it, tests/python/test_import.py),
    # the same tensors without it convert, and a missing file exits 1 with the message
    m = small_model()
    ck = lightning({"model.encoder." + k: v for k, v in encoder_sd(m).items()})
    ck["hyper_parameters"] = argparse.Namespace(batch_size=48)
    torch.save(ck, tmp_path / "ns.ckpt")
    out = str(tmp_path / "ns.safetensors")
    p = subprocess.run([sys.executable, CONVERTER, "--encoder", str(tmp_path / "ns.ckpt"),
                        "--out", out], capture_output=True, text=True)
    assert p.returncode == 1 and "clmrd import" in p.stderr, p.stderr
    assert not os.path.exists(out)
    p = subprocess.run([sys.executable, CONVERTER, "--encoder", str(tmp_path / "ns.ckpt"),
                        "--out", out, "--trust-pickle"], capture_output=True, text=True)
    assert p.returncode == 0 and "runs code from the file" in p.stderr, p.stderr
    check_model(out, m, head=False)
    del ck["hyper_parameters"]
    torch.save(ck, tmp_path / "plain.ckpt")
    p = subprocess.run([sys.executable, CONVERTER, "--encoder", str(tmp_path / "plain.ckpt"),
                        "--out", out], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    check_model(out, m, head=False)
    p = subprocess.run([sys.executable, CONVERTER, "--encoder", str(tmp_path / "nothing.pt"),
                        "--out", out], capture_output=True, text=True)
    assert p.returncode == 1 and "no such file" in p.stderr


def test_inspect_rejects_bad_model(tmp_path):
    # the C loader's message reaches the user through clmrd inspect
    m = small_model()
    tensors = {k: v.numpy() for k, v in m.state_dict().items()}
    meta = ref.metadata(m, "x", ref.MTT_TAGS)
    meta["sample_rate"] = "44100"
    safetensors_io.write(str(tmp_path / "bad.safetensors"), tensors, meta)
    p = subprocess.run([CLMRD, "inspect", str(tmp_path / "bad.safetensors")], capture_output=True,
                       text=True)
    assert p.returncode == 1
    assert "sample_rate" in p.stderr and "22050" in p.stderr
    p = subprocess.run([CLMRD, "inspect"], capture_output=True, text=True)
    assert p.returncode == 2


def test_inspect_text_output():
    p = subprocess.run([CLMRD, "inspect", os.path.join(ROOT, "tests/fixtures/models/tiny.safetensors")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "tiny-random" in p.stdout and "parameters:  5434 (+ 256 BatchNorm" in p.stdout
    assert "1 -> 8 -> 8 -> 8 -> 12" in p.stdout and "choral" in p.stdout
