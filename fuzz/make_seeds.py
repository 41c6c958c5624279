#!/usr/bin/python3
"""make_seeds.py - (re)generate the committed libFuzzer seed corpora in fuzz/corpus/<target>/.

Usage: make_seeds.py [OUTDIR]   (default: fuzz/corpus next to this script)

DESIGN: seeds are small valid inputs that reach deep code quickly; the fuzzer mutates from them.
fuzz_decode: 0.1-0.2 s real files of every accepted container/codec made with the ffmpeg CLI
(bit-exact flags) plus a few hand-built edge cases from the bad-audio corpus. fuzz_safetensors:
tiny valid SampleCNN models (3 layers, widths 2-3) with and without a head, a projector tensor,
extra metadata, and a few near-miss files, written with tools/safetensors_io-compatible layout.
fuzz_multipart: "Content-Type value\\n" + body (uploads with every field, quoted boundaries,
preamble/epilogue, bad UTF-8, a missing final boundary; plus tests/http's seeds).
fuzz_json_request: "METHOD URL\\nquery value\\n" + body for every inline route.
fuzz_torch_ckpt: tiny PyTorch checkpoints in every container `clmrd import` reads (torch needed).
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FF = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
BITEXACT = ["-fflags", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]
S = "0.5*sin(2*PI*440*t)"


def decode_seeds(d):
    os.makedirs(d, exist_ok=True)
    gens = [
        ("a.wav", 44100, 2, ["-c:a", "pcm_s16le"]), ("f32.wav", 22050, 1, ["-c:a", "pcm_f32le"]),
        ("u8.wav", 8000, 1, ["-c:a", "pcm_u8"]), ("a.flac", 22050, 1, ["-c:a", "flac"]),
        ("a.mp3", 44100, 2, ["-c:a", "libmp3lame", "-b:a", "32k"]),
        ("a.ogg", 22050, 1, ["-c:a", "libvorbis", "-q:a", "0"]),
        ("a.opus", 48000, 1, ["-c:a", "libopus", "-b:a", "16k"]),
        ("a.m4a", 44100, 1, ["-c:a", "aac", "-b:a", "24k"]),
        ("fast.m4a", 44100, 1, ["-c:a", "aac", "-b:a", "24k", "-movflags", "+faststart"]),
        ("a.aac", 44100, 1, ["-c:a", "aac", "-b:a", "24k", "-f", "adts"]),
        ("a.aiff", 22050, 1, ["-c:a", "pcm_s16be"]), ("a.webm", 48000, 1, ["-c:a", "libopus"]),
        ("a.mka", 22050, 1, ["-c:a", "flac"]), ("a.wv", 22050, 1, ["-c:a", "wavpack"]),
        ("a.au", 8000, 1, ["-c:a", "pcm_mulaw"]), ("a.caf", 22050, 1, ["-c:a", "pcm_s16le"]),
        ("a.w64", 8000, 1, ["-c:a", "pcm_s24le"]),
        ("alac.m4a", 22050, 1, ["-c:a", "alac"]), ("adpcm.wav", 22050, 1, ["-c:a", "adpcm_ima_wav"]),
    ]
    for name, rate, ch, args in gens:
        src = "aevalsrc=%s:s=%d:d=0.15" % ("|".join([S] * ch), rate)
        subprocess.run(FF + ["-f", "lavfi", "-i", src] + args + BITEXACT + [os.path.join(d, name)],
                       check=True)
    bad = os.path.join(ROOT, "tests", "badaudio", "corpus")
    for name in ["lie_data_size_ffffffff.wav", "lie_bits_7.wav", "lie_block_align_0.wav",
                 "chained_rate_channels.ogg", "playlist.m3u8", "list.ffconcat", "clip_10ms.mp3",
                 "float_nan.wav", "wav_header_no_data.wav", "video_only.mp4"]:
        shutil.copy(os.path.join(bad, name), os.path.join(d, name))


def st_bytes(tensors, meta, pad=True):
    """tensors: list of (name, dtype, shape, bytes). Returns a safetensors file."""
    hdr, data = {}, b""
    for name, dt, shape, raw in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta is not None:
        hdr["__metadata__"] = meta
    h = json.dumps(hdr, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


def model(widths, tags, extra_meta=None, projector=False, bad=None):
    ts, ic = [], 1
    for i, oc in enumerate(widths):
        p = "sequential.%d." % i
        w = [((k * 7 + i) % 11 - 5) * 0.1 for k in range(oc * ic * 3)]
        ts += [(p + "0.weight", "F32", [oc, ic, 3], f32(w)), (p + "0.bias", "F32", [oc], f32([0.01] * oc)),
               (p + "1.weight", "F32", [oc], f32([1.0] * oc)), (p + "1.bias", "F32", [oc], f32([0.0] * oc)),
               (p + "1.running_mean", "F32", [oc], f32([0.1] * oc)),
               (p + "1.running_var", "F32", [oc], f32([0.9] * oc)),
               (p + "1.num_batches_tracked", "I64", [1], struct.pack("<q", 100))]
        ic = oc
    if tags:
        ts += [("fc.weight", "F32", [len(tags), ic], f32([0.2] * (len(tags) * ic))),
               ("fc.bias", "F32", [len(tags)], f32([0.0] * len(tags)))]
    if projector:
        ts += [("projector.0.weight", "F32", [2, ic], f32([0.5] * (2 * ic)))]
    meta = {"format": "clmr-samplecnn", "sample_rate": "22050",
            "chunk_samples": str(3 ** (len(widths) - 1)), "name": "seed-%d" % len(widths),
            "tags": json.dumps(tags)}
    meta.update(extra_meta or {})
    if bad == "nan":
        ts[0] = (ts[0][0], ts[0][1], ts[0][2], f32([float("nan")]) + ts[0][3][4:])
    return st_bytes(ts, meta)


def safetensors_seeds(d):
    os.makedirs(d, exist_ok=True)
    w = lambda n, b: open(os.path.join(d, n), "wb").write(b)  # noqa: E731
    w("head3.safetensors", model([2, 2, 3], ["rock", "jazz"]))
    w("encoder4.safetensors", model([3, 2, 2, 2], []))
    w("projector.safetensors", model([2, 2, 2], ["a"], {"note": "x" * 40}, projector=True))
    w("nan_value.safetensors", model([2, 2, 2], [], bad="nan"))
    w("wrong_chunk.safetensors", model([2, 2, 2], [], {"chunk_samples": "10"}))
    w("header_only.safetensors", st_bytes([], {"format": "clmr-samplecnn"}))
    w("short.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    shutil.copy(os.path.join(ROOT, "tests", "fixtures", "models", "tiny.safetensors"),
                os.path.join(d, "tiny.safetensors"))


def multipart_seeds(d):
    os.makedirs(d, exist_ok=True)
    http = os.path.join(ROOT, "tests", "http", "corpus", "multipart")
    if os.path.isdir(http):  # the http engineer's seeds, same input format
        for n in sorted(os.listdir(http)):
            shutil.copy(os.path.join(http, n), os.path.join(d, "http_" + n))
    wav = open(os.path.join(d, "..", "fuzz_decode", "u8.wav"), "rb").read()[:600]

    def part(name, data, filename=None, ctype=None):
        h = b'Content-Disposition: form-data; name="' + name + b'"'
        if filename is not None:
            h += b'; filename="' + filename + b'"'
        h += b"\r\n"
        if ctype:
            h += b"Content-Type: " + ctype + b"\r\n"
        return h + b"\r\n" + data

    def body(ct, bnd, parts, tail=b"--\r\n"):
        out = ct + b"\n"
        for pt in parts:
            out += b"--" + bnd + b"\r\n" + pt + b"\r\n"
        return out + b"--" + bnd + tail

    w = lambda n, b: open(os.path.join(d, n), "wb").write(b)  # noqa: E731
    w("upload_full", body(b"multipart/form-data; boundary=XyZ123", b"XyZ123",
                          [part(b"file", wav, b"song.wav", b"audio/wav"), part(b"title", b"A song"),
                           part(b"artist", b"Someone"), part(b"external_id", b"ext-1")]))
    w("quoted_boundary", body(b'multipart/form-data; boundary="a b:c"; charset=utf-8', b"a b:c",
                              [part(b"file", b"RIFF....", b"x.wav")]))
    w("preamble_epilogue", b"multipart/form-data;boundary=--q\npreamble\r\n" +
      body(b"", b"--q", [part(b"file", b"\r\n--q-not\r\n")])[1:] + b"epilogue")
    w("utf8_bad_title", body(b"multipart/form-data; boundary=b", b"b",
                             [part(b"file", b"x"), part(b"title", b"\xff\xfe\xc3")]))
    w("no_final", body(b"multipart/form-data; boundary=b", b"b", [part(b"file", b"abc")], b"\r\n"))


def json_seeds(d):
    os.makedirs(d, exist_ok=True)
    w = lambda n, b: open(os.path.join(d, n), "wb").write(b)  # noqa: E731
    emb = json.dumps({"embedding": [0.5 * ((i % 5) - 2) for i in range(16)], "k": 3}).encode()
    hexid = b"0123456789abcdef" * 4
    w("search_ok", b"POST /v1/search\n\n" + emb)
    w("search_wrong_len", b"POST /v1/search\n\n" + b'{"embedding":[1,2,3]}')
    w("search_nan", b"POST /v1/search\n\n" + b'{"embedding":[' + b"1e999," * 15 + b'1],"k":1}')
    w("search_dup", b"POST /v1/search\n\n" + b'{"k":1,"k":2,"embedding":[]}')
    w("search_huge_k", b"POST /v1/search\n\n" + b'{"k":99999999999999999999,"embedding":[1]}')
    w("search_nested", b"POST /v1/search\n\n" + b"[" * 200 + b"]" * 200)
    w("search_get", b"GET /v1/search\n\n")
    w("similar", b"GET /v1/tracks/" + hexid + b"/similar\n3\n")
    w("similar_bad_k", b"GET /v1/tracks/" + hexid + b"/similar\n-1\n")
    w("track_get", b"GET /v1/tracks/" + hexid.upper() + b"\n\n")
    w("track_delete", b"DELETE /v1/tracks/" + b"f" * 64 + b"\n\n")
    w("track_bad_id", b"GET /v1/tracks/../../etc/passwd\n\n")
    w("tags", b"GET /v1/tags\n\n")
    w("models", b"GET /v1/models\n\n")
    w("config", b"HEAD /v1/config\n\n")
    w("readyz", b"GET /readyz\n\n")
    w("openapi", b"GET /v1/openapi.json\n\n")
    w("bad_method", b"PUT /v1/tag\n\n")
    w("unknown", b"GET /v1/tracks/" + hexid + b"/x\n\n")


def torch_ckpt_seeds(d):
    """Tiny PyTorch checkpoints (3-layer SampleCNN, widths 2-3) in every container clmrd import
    reads: zip and legacy serialization, a release zip wrapper (deflate) with an _optim.pt, a
    Lightning-shaped dict with a Namespace and optimizer state, float16/bfloat16/float64 tensors,
    strided and offset views, and a pickle that references os.system (never run)."""
    import argparse
    import io
    import pickle
    import zipfile

    import torch

    os.makedirs(d, exist_ok=True)
    torch.manual_seed(0)
    seq = torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3, 3), torch.nn.BatchNorm1d(2), torch.nn.ReLU()),
        torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3, 1, 1), torch.nn.BatchNorm1d(3)),
        torch.nn.Sequential(torch.nn.Conv1d(3, 3, 3, 1, 1), torch.nn.BatchNorm1d(3)))
    sd = {"sequential." + k: v for k, v in seq.state_dict().items()}
    head = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))

    def save(name, obj, legacy=False):
        buf = io.BytesIO()
        torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
        with open(os.path.join(d, name), "wb") as f:
            f.write(buf.getvalue())
        return buf.getvalue()

    plain = save("plain.pt", sd)
    save("legacy.pt", sd, legacy=True)
    save("mlp_head.pt", {"model." + k: v for k, v in head.state_dict().items()})
    save("dtypes.pt", {"a": torch.ones(3, dtype=torch.float16), "b": torch.ones(2, 2).bfloat16(),
                       "c": torch.arange(4, dtype=torch.float64), "d": torch.zeros(2, dtype=torch.long)})
    flat = torch.arange(12, dtype=torch.float32)
    save("views.pt", {"t": flat.view(3, 4).t(), "o": flat[5:9]})
    save("views_legacy.pt", {"t": flat.view(3, 4).t(), "o": flat[5:9]}, legacy=True)
    params = [torch.nn.Parameter(torch.ones(2))]
    opt = torch.optim.Adam(params)
    params[0].sum().backward()
    opt.step()
    save("lightning.ckpt", {"state_dict": {"encoder." + k: v for k, v in sd.items()},
                            "hyper_parameters": argparse.Namespace(lr=3e-4, batch_size=96),
                            "optimizer_states": [opt.state_dict()], "epoch": 10})
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("release.pt", plain)
        z.writestr("release_optim.pt", b"ignored")
    with open(os.path.join(d, "release.zip"), "wb") as f:
        f.write(zbuf.getvalue())

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"x": Evil()}, protocol=4))
    with open(os.path.join(d, "evil.pt"), "wb") as f:
        f.write(zbuf.getvalue())


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    decode_seeds(os.path.join(out, "fuzz_decode"))
    safetensors_seeds(os.path.join(out, "fuzz_safetensors"))
    multipart_seeds(os.path.join(out, "fuzz_multipart"))
    json_seeds(os.path.join(out, "fuzz_json_request"))
    torch_ckpt_seeds(os.path.join(out, "fuzz_torch_ckpt"))


if __name__ == "__main__":
    main()
