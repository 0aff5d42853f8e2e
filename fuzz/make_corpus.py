#!/usr/bin/env python3
"""Builds the seed corpus of every fuzz target under fuzz/corpus/TARGET/ (Python standard library only).

Sources, each used when present:
- fuzz/seeds/TARGET/ (small files kept in the repo: an mcufit-exported .tflite, two zoo model files, a board file);
- small real files cut from ../shared (MNIST .gz, CIFAR-10 JPEGs, Speech Commands WAVs, MLPerf Tiny .tflite);
- the zoo's model files from an mcufit binary (MCUFIT_BIN, or target/release/mcufit when built);
- crates/mcufit-cost/boards.toml;
- tiny files generated here (IDX, CIFAR records, PNG/BMP/GIF/TIFF, WAV) so every target has seeds without ../shared.

Files already in fuzz/corpus/TARGET (what earlier runs found) are kept.
"""

import gzip
import io
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import wave
import zlib

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
SHARED = os.environ.get("MCUFIT_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
CORPUS = os.path.join(FUZZ, "corpus")
TARGETS = ["idx", "cifar", "image", "wav", "model_json", "boards_toml", "tflite", "onnx"]


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def idx_bytes(magic_dims, dims, data):
    return struct.pack(">I", 0x0800 | magic_dims) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


def seeds_idx():
    put("idx", "synthetic-images", idx_bytes(3, [2, 3, 3], range(18)))
    put("idx", "synthetic-labels", idx_bytes(1, [3], [0, 9, 4]))
    put("idx", "synthetic-images.gz", gzip.compress(idx_bytes(3, [1, 2, 2], [0, 64, 128, 255]), mtime=0))
    mnist = os.path.join(SHARED, "datasets", "mnist")
    for stem, n in [("t10k-images-idx3-ubyte", 2), ("t10k-labels-idx1-ubyte", 16)]:
        p = os.path.join(mnist, stem + ".gz")
        if not os.path.isfile(p):
            continue
        with gzip.open(p) as f:
            ndims = struct.unpack(">I", f.read(4))[0] & 0xFF
            dims = list(struct.unpack(">%dI" % ndims, f.read(4 * ndims)))
            per = 1
            for d in dims[1:]:
                per *= d
            body = f.read(n * per)
        cut = idx_bytes(ndims, [n] + dims[1:], body)
        put("idx", "mnist-" + stem, cut)
        put("idx", "mnist-" + stem + ".gz", gzip.compress(cut, mtime=0))


def seeds_cifar():
    rec = lambda label, k: bytes([label]) + bytes((i * k) & 0xFF for i in range(3072))
    put("cifar", "one-record.bin", rec(3, 1))
    put("cifar", "two-records.bin", rec(0, 7) + rec(9, 13))


def png(w, h, color_type, channels, rows):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def bmp24(w, h):
    row = (w * 3 + 3) & ~3
    pixels = b"".join(bytes((x * 40 + y * 9 + c * 70) & 0xFF for x in range(w) for c in range(3)).ljust(row, b"\0")
                      for y in range(h))
    header = b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


def tiff(w, h, spp):
    pixels = bytes((i * 37) & 0xFF for i in range(w * h * spp))
    entries = [
        (256, 3, 1, w), (257, 3, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2 if spp == 3 else 1),
        (273, 4, 1, 0), (277, 3, 1, spp), (278, 3, 1, h), (279, 4, 1, len(pixels)),
    ]
    ifd_off = 8
    data_off = ifd_off + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if tag == 273:
            value = data_off
        if typ == 3:
            ifd += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, typ, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_off) + ifd + pixels


# The smallest common GIF: 1x1, one colour, as image tools write it.
GIF_1X1 = bytes.fromhex("47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b")


def seeds_image():
    put("image", "grey-4x4.png", png(4, 4, 0, 1, [[x * 60 + y for x in range(4)] for y in range(4)]))
    put("image", "rgb-3x2.png", png(3, 2, 2, 3, [[(x * 80 + c * 30 + y) & 0xFF for x in range(3) for c in range(3)]
                                                  for y in range(2)]))
    put("image", "rgba-2x2.png", png(2, 2, 6, 4, [[200, 10, 10, 255, 10, 200, 10, 128], [0, 0, 0, 0, 1, 2, 3, 4]]))
    put("image", "rgb-3x2.bmp", bmp24(3, 2))
    put("image", "one.gif", GIF_1X1)
    put("image", "rgb-2x2.tif", tiff(2, 2, 3))
    put("image", "grey-3x3.tif", tiff(3, 3, 1))
    test = os.path.join(SHARED, "datasets", "cifar10", "test")
    if os.path.isdir(test):
        for cls in sorted(os.listdir(test))[:4]:
            d = os.path.join(test, cls)
            files = sorted(f for f in os.listdir(d) if f.lower().endswith((".jpg", ".jpeg", ".png")))
            if files:
                shutil.copyfile(os.path.join(d, files[0]), os.path.join(CORPUS, "image", "cifar-" + cls + "-" + files[0]))


def wav_bytes(rate, channels, width, samples):
    b = io.BytesIO()
    with wave.open(b, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples)
    return b.getvalue()


def seeds_wav():
    tone = b"".join(struct.pack("<h", int(8000 * math.sin(i * 0.3))) for i in range(400))
    put("wav", "tone-16k.wav", wav_bytes(16000, 1, 2, tone))
    put("wav", "silence-16k.wav", wav_bytes(16000, 1, 2, b"\0\0" * 64))
    put("wav", "tone-8k.wav", wav_bytes(8000, 1, 2, tone[:200]))
    put("wav", "stereo-16k.wav", wav_bytes(16000, 2, 2, tone[:400]))
    put("wav", "u8-16k.wav", wav_bytes(16000, 1, 1, bytes(range(0, 256, 4))))
    speech = os.path.join(SHARED, "datasets", "speech_commands_v0.02_test")
    if os.path.isdir(speech):
        for word in ["yes", "left", "_silence_", "_background_noise_"]:
            d = os.path.join(speech, word)
            if not os.path.isdir(d):
                continue
            files = sorted(f for f in os.listdir(d) if f.endswith(".wav"))
            if not files:
                continue
            with wave.open(os.path.join(d, files[0]), "rb") as r:
                params = r.getparams()
                frames = r.readframes(min(params.nframes, params.framerate))
            # A quarter second keeps executions fast; one clip stays whole (the 1 s path).
            keep = frames if word == "yes" else frames[: params.framerate // 4 * params.sampwidth * params.nchannels]
            put("wav", "speech-" + word + "-" + files[0],
                wav_bytes(params.framerate, params.nchannels, params.sampwidth, keep))


def seeds_model_json():
    exe = os.environ.get("MCUFIT_BIN", os.path.join(ROOT, "target", "release", "mcufit"))
    if not os.access(exe, os.X_OK):
        return
    try:
        listing = subprocess.run([exe, "zoo"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return
    for line in listing.splitlines():
        name = line.split()[0].removeprefix("zoo:") if line.startswith("zoo:") else None
        if not name:
            continue
        out = subprocess.run([exe, "zoo", "--show", name], capture_output=True, text=True, timeout=60)
        if out.returncode == 0:
            compact = json.dumps(json.loads(out.stdout), separators=(",", ":"))
            put("model_json", "zoo-" + name + ".json", compact.encode())


def seeds_boards():
    with open(os.path.join(ROOT, "crates", "mcufit-cost", "boards.toml"), "rb") as f:
        put("boards_toml", "builtin-boards.toml", f.read())


def seeds_tflite():
    models = os.path.join(SHARED, "models", "mlperf-tiny")
    if os.path.isdir(models):
        for f in sorted(os.listdir(models)):
            p = os.path.join(models, f)
            # The 300 KB ResNet would make every mutation slow; the KWS models cover the same tables.
            if f.endswith(".tflite") and os.path.getsize(p) <= 64 * 1024:
                shutil.copyfile(p, os.path.join(CORPUS, "tflite", "mlperf-" + f))


def main():
    for t in TARGETS:
        os.makedirs(os.path.join(CORPUS, t), exist_ok=True)
        kept = os.path.join(FUZZ, "seeds", t)
        if os.path.isdir(kept):
            for f in os.listdir(kept):
                shutil.copyfile(os.path.join(kept, f), os.path.join(CORPUS, t, "seed-" + f))
    seeds_idx()
    seeds_cifar()
    seeds_image()
    seeds_wav()
    seeds_model_json()
    seeds_boards()
    seeds_tflite()
    for t in TARGETS:
        d = os.path.join(CORPUS, t)
        n = len(os.listdir(d))
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print(f"corpus {t}: {n} files, {size} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
