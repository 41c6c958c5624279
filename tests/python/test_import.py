"""`clmrd import` (C, no Python at run time) on checkpoints in every published CLMR layout, built
here with Debian's python3-torch from random weights, then `clmrd tag --json` on a real WAV file
compared with PyTorch on the same weights and samples (sigmoid per 59,049-sample chunk, mean over
the non-overlapping chunks, MTT-50 tag order), tolerance 1e-4 absolute.

Layouts: release 2.0 (zip wrapping clmr_checkpoint_10000.pt with encoder.* + projector, plus an
_optim.pt to skip; linear head 0.* in finetuner_checkpoint_200.zip), release 1.0 (legacy pre-1.6
serialization, conv1..conv11 names; linear head 0.*), release 2.1 Lightning .ckpt files (state_dict
with model.encoder.* and encoder.*, argparse.Namespace hyper-parameters, Adam optimizer state;
MLP head model.0 -> ReLU -> model.2), a plain state dict with fc.*, half/bfloat16/float64 weights,
non-contiguous and offset tensor views, and malicious pickles (os.system) that must be refused
without running. Small widths (full depth, so chunks are 59,049 samples) keep the files tiny.
"""
import argparse
import io
import json
import os
import pickle
import subprocess
import sys
import wave
import zipfile

import numpy as np
import pytest
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
import samplecnn_torch as ref  # noqa: E402

BUILD = os.environ.get("CLMRD_BUILD", os.path.join(ROOT, "build"))
CLMRD = os.path.join(BUILD, "clmrd")
WIDTHS = [8, 8, 8, 12, 12, 12, 12, 12, 12, 16, 16]
D = WIDTHS[-1]
CHUNK = 59049
TOL = 1e-4


class AttributeDict(dict):
    """Stands in for Lightning's AttributeDict (pickled by reference to this module: a global
    clmrd must treat as an inert placeholder)."""


def encoder(seed=0, widths=WIDTHS):
    torch.manual_seed(seed)
    m = ref.SampleCNN(widths, 0)
    with torch.no_grad():
        for block in m.sequential:
            conv, bn = block[0], block[1]
            conv.weight.mul_(1.5)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.4)
            bn.running_mean.normal_(0, 0.3)
            bn.running_var.uniform_(0.2, 2.0)
            bn.num_batches_tracked.fill_(17)
    return m.eval()


def linear_head(seed=1, n=50):
    torch.manual_seed(seed)
    h = torch.nn.Sequential(torch.nn.Linear(D, n))
    with torch.no_grad():
        h[0].weight.mul_(4)
    return h.eval()


def mlp_head(seed=2, hidden=D, n=50):
    torch.manual_seed(seed)
    h = torch.nn.Sequential(torch.nn.Linear(D, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n))
    with torch.no_grad():
        h[0].weight.mul_(3)
        h[2].weight.mul_(3)
    return h.eval()


def projector(out=8):
    return torch.nn.Sequential(torch.nn.Linear(D, D, bias=False), torch.nn.ReLU(),
                               torch.nn.Linear(D, out, bias=False)).state_dict()


def prefixed(sd, prefix):
    return {prefix + k: v for k, v in sd.items()}


def conv_names(sd):
    """sequential.<i>.<j>.* -> conv<i+1>.<j>.* (the 1.0-era naming)."""
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        assert parts[0] == "sequential"
        out[".".join(["conv%d" % (int(parts[1]) + 1)] + parts[2:])] = v
    return out


def save(obj, path, legacy=False):
    torch.save(obj, str(path), _use_new_zipfile_serialization=not legacy)
    return path


def wrap_zip(path, members, compress=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(str(path), "w", compress) as z:
        for name, src in members:
            z.write(str(src), name)
    return path


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    """3 full chunks + a tail that must be dropped, 16-bit PCM mono 22,050 Hz (decoded exactly)."""
    d = tmp_path_factory.mktemp("audio")
    n = 3 * CHUNK + 20000
    x = ref.music_like(1, n, seed=5)[0]
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    path = d / "music.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(pcm.tobytes())
    return path, pcm.astype(np.float32) / 32768.0


def torch_scores(enc, head, samples):
    n = len(samples) // CHUNK
    x = torch.from_numpy(samples[: n * CHUNK].reshape(n, CHUNK).copy())
    with torch.no_grad():
        h = enc.float().embed(x)
        p = torch.sigmoid(head.float()(h))
    return p.mean(0).numpy()


def run(*args, ok=True):
    r = subprocess.run([CLMRD] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=300)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def import_and_tag(tmp_path, wav, *args, name="m"):
    out = tmp_path / (name + ".safetensors")
    r = run("import", *args, "--out", out, "--json")
    summary = json.loads(r.stdout)
    t = run("tag", "--precision", "fp32", "--model", out, "--json", wav[0])
    tags = json.loads(t.stdout.splitlines()[0])
    got = {e["tag"]: e["score"] for e in tags["tags"]}
    return summary, r.stderr, np.array([got[t] for t in ref.MTT_TAGS]), tags


def check(got, want):
    err = float(np.max(np.abs(got - want)))
    assert err < TOL, "max |clmrd - torch| = %g" % err
    # the scores must mean something: not all equal, so a wrong tag order would fail
    assert np.ptp(want) > 0.05


def test_release_2_0_zip_wrappers(tmp_path, wav):
    enc, head = encoder(), linear_head()
    sd = prefixed(enc.state_dict(), "encoder.")
    sd.update(prefixed(projector(8), "projector."))
    pt = save(sd, tmp_path / "clmr_checkpoint_10000.pt")
    optim = save({"state": {}, "param_groups": [{"lr": 3e-4}]},
                 tmp_path / "clmr_checkpoint_10000_optim.pt")
    rel = wrap_zip(tmp_path / "clmr_checkpoint_10000.zip",
                   [("clmr_checkpoint_10000.pt", pt), ("clmr_checkpoint_10000_optim.pt", optim)])
    hpt = save(head.state_dict(), tmp_path / "finetuner_checkpoint_200.pt")
    hzip = wrap_zip(tmp_path / "finetuner_checkpoint_200.zip",
                    [("finetuner_checkpoint_200.pt", hpt)], zipfile.ZIP_STORED)
    s, rep, got, _ = import_and_tag(tmp_path, wav, "--encoder", rel, "--head", hzip)
    assert s["head_type"] == "linear" and s["n_tags"] == 50 and s["n_layers"] == 11
    assert "clmr_checkpoint_10000.pt" in rep and "release zip" in rep
    assert "projection to 8 dimensions" in rep  # P read from the shape
    check(got, torch_scores(enc, head[0], wav[1]))


def test_release_1_0_legacy_conv_names(tmp_path, wav):
    enc, head = encoder(seed=3), linear_head(seed=4)
    pt = save(conv_names(enc.state_dict()), tmp_path / "clmr_checkpoint_1550.pt", legacy=True)
    hpt = save(head.state_dict(), tmp_path / "finetuner_checkpoint_20.pt", legacy=True)
    with open(pt, "rb") as f:
        assert f.read(2) != b"PK"  # really the legacy format
    s, rep, got, _ = import_and_tag(tmp_path, wav, "--encoder", pt, "--head", hpt)
    assert "legacy" in rep and "conv1..convN" in rep
    check(got, torch_scores(enc, head[0], wav[1]))


def lightning(sd, hparams, with_optimizer=True):
    params = [torch.nn.Parameter(v.clone().float()) for v in list(sd.values())[:4]
              if v.dtype.is_floating_point]
    ckpt = {"epoch": 10000, "global_step": 123456, "pytorch-lightning_version": "1.2.3",
            "state_dict": sd, "hyper_parameters": hparams, "hparams_name": "args",
            "callbacks": {}, "lr_schedulers": []}
    if with_optimizer:
        opt = torch.optim.Adam(params, lr=3e-4)
        sum(p.sum() for p in params).backward()
        opt.step()
        ckpt["optimizer_states"] = [opt.state_dict()]
    return ckpt


def test_release_2_1_lightning_mlp(tmp_path, wav):
    enc, head = encoder(seed=5), mlp_head(seed=6)
    esd = enc.state_dict()
    sd = prefixed(esd, "model.encoder.")
    sd.update(prefixed(projector(4), "model.projector."))
    sd.update(prefixed(esd, "encoder."))
    ns = argparse.Namespace(batch_size=96, learning_rate=3e-4, projection_dim=4,
                            dataset="magnatagatune", checkpoint_path="")
    ck = save(lightning(sd, ns), tmp_path / "clmr_epoch=10000.ckpt")
    hsd = prefixed(esd, "encoder.")
    hsd.update(prefixed(head.state_dict(), "model."))
    hck = save(lightning(hsd, AttributeDict(hidden_dim=D, output_dim=50)),
               tmp_path / "mlp_epoch=34-step=2589.ckpt")
    rel = wrap_zip(tmp_path / "clmr_magnatagatune_mlp.zip", [("mlp_epoch=34-step=2589.ckpt", hck)])
    s, rep, got, _ = import_and_tag(tmp_path, wav, "--encoder", ck, "--head", rel)
    assert s["head_type"] == "mlp" and s["n_tags"] == 50
    assert "Lightning" in rep and "optimizer_states" in rep and "hyper_parameters" in rep
    assert "identical" in rep  # encoder.* and model.encoder.* compared
    check(got, torch_scores(enc, head, wav[1]))
    # inspect describes the MLP head
    r = run("inspect", "--json", tmp_path / "m.safetensors")
    info = json.loads(r.stdout)
    assert info["head"] == {"type": "mlp", "hidden": D} and info["n_tags"] == 50


def test_lightning_checkpoint_alone_is_encoder_only(tmp_path, wav):
    enc = encoder(seed=7)
    sd = prefixed(enc.state_dict(), "model.encoder.")
    sd.update(prefixed(projector(4), "model.projector."))
    ck = save(lightning(sd, argparse.Namespace(lr=1.0)), tmp_path / "clmr_epoch=10000.ckpt")
    out = tmp_path / "enc.safetensors"
    r = run("import", "--encoder", ck, "--out", out, "--json")
    s = json.loads(r.stdout)
    assert s["n_tags"] == 0 and s["head_type"] == "none"
    # embeddings still match torch
    t = json.loads(run("tag", "--precision", "fp32", "--model", out, "--json", "--embedding", wav[0]).stdout)
    n = len(wav[1]) // CHUNK
    with torch.no_grad():
        e = enc.embed(torch.from_numpy(wav[1][: n * CHUNK].reshape(n, CHUNK).copy())).mean(0)
    e = (e / e.norm()).numpy()
    assert np.max(np.abs(np.array(t["embedding"]) - e)) < TOL


def test_plain_state_dict_with_fc_and_dtypes(tmp_path, wav):
    for dt in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        enc, head = encoder(seed=8), linear_head(seed=9)
        sd = {k: (v.to(dt) if v.dtype.is_floating_point else v) for k, v in enc.state_dict().items()}
        sd["fc.weight"] = head[0].weight.detach().to(dt)
        sd["fc.bias"] = head[0].bias.detach().to(dt)
        pt = save(sd, tmp_path / ("plain_%s.pt" % str(dt)[6:]))
        # torch reference on the same rounded weights
        enc.load_state_dict({k: v.float() if v.dtype.is_floating_point else v
                             for k, v in sd.items() if not k.startswith("fc.")})
        head[0].weight.data = sd["fc.weight"].float()
        head[0].bias.data = sd["fc.bias"].float()
        s, rep, got, _ = import_and_tag(tmp_path, wav, "--encoder", pt, name=str(dt)[6:])
        assert s["head_type"] == "linear"
        assert {torch.float16: "float16", torch.bfloat16: "bfloat16",
                torch.float64: "float64", torch.float32: "float32"}[dt] in rep
        check(got, torch_scores(enc, head[0], wav[1]))


def test_strided_and_offset_views(tmp_path, wav):
    """Tensors that are views: transposed (non-contiguous strides) and slices of one flat storage
    (non-zero storage offsets). torch.save keeps them as views of shared storages."""
    enc, head = encoder(seed=10), linear_head(seed=11)
    sd = dict(enc.state_dict())
    flat = torch.cat([v.reshape(-1) for k, v in sd.items() if v.dtype == torch.float32])
    off = 0
    for k, v in list(sd.items()):
        if v.dtype == torch.float32:
            sd[k] = flat[off:off + v.numel()].view(v.shape)
            off += v.numel()
    sd["fc.weight"] = head[0].weight.detach().t().contiguous().t()  # strides (1, 50)
    assert not sd["fc.weight"].is_contiguous()
    sd["fc.bias"] = torch.cat([torch.zeros(7), head[0].bias.detach()])[7:]
    for legacy in (False, True):
        pt = save(sd, tmp_path / ("views_%d.pt" % legacy), legacy=legacy)
        s, rep, got, _ = import_and_tag(tmp_path, wav, "--encoder", pt, name="v%d" % legacy)
        check(got, torch_scores(enc, head[0], wav[1]))


class Evil:
    def __reduce__(self):
        return (os.system, ("touch %s" % Evil.marker,))


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_refused_without_effect(tmp_path, legacy):
    marker = tmp_path / "pwned"
    Evil.marker = marker
    sd = prefixed(encoder().state_dict(), "encoder.")
    sd["extra"] = Evil()
    pt = save(sd, tmp_path / "evil.pt", legacy=legacy)
    assert not marker.exists()
    out = tmp_path / "evil.safetensors"
    r = run("import", "--encoder", pt, "--out", out, ok=False)
    assert r.returncode == 1
    assert "unsafe_checkpoint" in r.stderr and ("posix.system" in r.stderr or
                                                "os.system" in r.stderr), r.stderr
    assert not marker.exists() and not out.exists()


def test_eval_and_subprocess_globals_reported(tmp_path):
    class EvalIt:
        def __reduce__(self):
            return (eval, ("1+1",))

    class Popen:
        def __reduce__(self):
            return (subprocess.Popen, (["true"],))

    # protocol 2 writes GLOBAL with Python 2 names (__builtin__.eval, commands.Popen), protocol 4
    # STACK_GLOBAL + MEMOIZE with the Python 3 ones
    for proto in (2, 4):
        for obj, names in ((EvalIt(), ("builtins.eval", "__builtin__.eval")),
                           (Popen(), ("subprocess.Popen", "commands.Popen"))):
            raw = pickle.dumps({"x": obj}, protocol=proto)
            pt = tmp_path / "p.pt"
            with zipfile.ZipFile(str(pt), "w", zipfile.ZIP_STORED) as z:
                z.writestr("archive/data.pkl", raw)
            r = run("import", "--encoder", pt, "--out", tmp_path / "x.safetensors", ok=False)
            assert r.returncode == 1 and "unsafe_checkpoint" in r.stderr, r.stderr
            assert any(n in r.stderr for n in names), r.stderr


def test_two_layer_head_never_a_linear_head(tmp_path, wav):
    enc, head = encoder(seed=12), mlp_head(seed=13, hidden=D, n=50)
    pt = save(enc.state_dict(), tmp_path / "enc.pt")
    # a plain nn.Sequential state dict: 0.* [D, D] and 2.* [50, D]
    hpt = save(head.state_dict(), tmp_path / "mlp_head.pt")
    s, rep, got, _ = import_and_tag(tmp_path, wav, "--encoder", pt, "--head", hpt)
    assert s["head_type"] == "mlp"
    check(got, torch_scores(enc, head, wav[1]))
    # the first layer alone is square: refused with a message that says why
    only0 = save({"model.0.weight": head[0].weight.detach(), "model.0.bias": head[0].bias.detach()},
                 tmp_path / "half.pt")
    r = run("import", "--encoder", pt, "--head", only0, "--out", tmp_path / "h.safetensors",
            ok=False)
    assert r.returncode == 1 and "second layer is missing" in r.stderr, r.stderr


def test_custom_tags_and_name(tmp_path, wav):
    enc, head = encoder(seed=14), linear_head(seed=15, n=3)
    pt = save(enc.state_dict(), tmp_path / "enc.pt")
    hpt = save(prefixed(head.state_dict(), "model."), tmp_path / "head.pt")
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps(["a", "b", "c"]))
    out = tmp_path / "c.safetensors"
    run("import", "--encoder", pt, "--head", hpt, "--tags", tags, "--name", "mine", "--out", out)
    info = json.loads(run("inspect", "--json", out).stdout)
    assert info["name"] == "mine" and info["tags"] == ["a", "b", "c"]
    assert info["head"] == {"type": "linear"}
    # the default MTT-50 names do not fit a 3-output head
    r = run("import", "--encoder", pt, "--head", hpt, "--out", out, ok=False)
    assert r.returncode == 1 and "3 outputs but 50 tag names" in r.stderr


def test_bad_inputs(tmp_path):
    enc = encoder()
    good = save(enc.state_dict(), tmp_path / "good.pt")
    data = good.read_bytes()
    cases = {
        "empty": b"",
        "random": os.urandom(4096),
        "truncated": data[: len(data) // 2],
        "text": b"not a checkpoint\n",
    }
    for name, blob in cases.items():
        p = tmp_path / (name + ".pt")
        p.write_bytes(blob)
        r = run("import", "--encoder", p, "--out", tmp_path / "o.safetensors", ok=False)
        assert r.returncode == 1 and "bad_checkpoint" in r.stderr, (name, r.stderr)
    two = wrap_zip(tmp_path / "two.zip", [("a.pt", good), ("b.pt", good)])
    r = run("import", "--encoder", two, "--out", tmp_path / "o.safetensors", ok=False)
    assert r.returncode == 1 and "'a.pt', 'b.pt'" in r.stderr
    sd = dict(enc.state_dict())
    sd["sequential.3.1.running_mean"] = torch.zeros(5)
    bad = save(sd, tmp_path / "shape.pt")
    r = run("import", "--encoder", bad, "--out", tmp_path / "o.safetensors", ok=False)
    assert r.returncode == 1 and "sequential.3.1.running_mean" in r.stderr
    r = run("import", "--out", tmp_path / "o.safetensors", ok=False)
    assert r.returncode == 2
    assert not (tmp_path / "o.safetensors").exists()


def test_matches_python_oracle(tmp_path):
    """tools/convert_clmr_checkpoint.py (torch.load based, the test oracle) and `clmrd import`
    (own zip/pickle readers) write the same tensors, bit for bit, on layouts both read: release
    2.0 (encoder. + projector, linear 0.* head) and a Lightning state_dict without pickled
    objects; the oracle refuses MLP heads instead of misreading them as 16-tag linear heads."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import safetensors_io
    oracle = os.path.join(ROOT, "tools", "convert_clmr_checkpoint.py")
    enc, head = encoder(seed=20), linear_head(seed=21)
    sd = prefixed(enc.state_dict(), "encoder.")
    sd.update(prefixed(projector(8), "projector."))
    cases = {
        "r20": (save(sd, tmp_path / "clmr_checkpoint_10000.pt"),
                save(head.state_dict(), tmp_path / "finetuner_checkpoint_200.pt")),
        "lightning": (save({"state_dict": prefixed(enc.state_dict(), "model.encoder."),
                            "epoch": 3}, tmp_path / "l.ckpt"),
                      save({"state_dict": prefixed(head.state_dict(), "model.")},
                           tmp_path / "lh.ckpt")),
    }
    for name, (e, h) in cases.items():
        a, b = tmp_path / (name + "_c.safetensors"), tmp_path / (name + "_py.safetensors")
        run("import", "--encoder", e, "--head", h, "--out", a, "--name", "x")
        p = subprocess.run([sys.executable, oracle, "--encoder", str(e), "--head", str(h),
                            "--out", str(b), "--name", "x", "--trust-pickle"],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        ta, ma = safetensors_io.read(str(a))
        tb, mb = safetensors_io.read(str(b))
        assert set(ta) == set(tb) and json.loads(ma["tags"]) == json.loads(mb["tags"])
        for k in ta:
            if not k.endswith("num_batches_tracked"):
                assert ta[k].dtype == tb[k].dtype and np.array_equal(ta[k], tb[k]), (name, k)
    mlp = save(prefixed(mlp_head().state_dict(), "model."), tmp_path / "mlp.pt")
    p = subprocess.run([sys.executable, oracle, "--encoder", str(cases["r20"][0]), "--head",
                        str(mlp), "--out", str(tmp_path / "o.safetensors")],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "two-layer" in p.stderr, p.stderr
