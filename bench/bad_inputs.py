#!/usr/bin/env python3
"""The hostile-user table of issue 15, re-runnable: about 200 bad inputs across every command.

    python3 bench/bad_inputs.py [--bin target/release/mcufit] [--md FILE] [--only SUBSTRING] [--keep]

Builds every bad file in a scratch directory (IDX, CIFAR-10 binary, image folders, WAV, decompression
bombs, model files, .tflite, model directories, board files, a full tmpfs when it can mount one), runs
each case and records: exit code, the first line of the message, wall time, max RSS of the process.
A case is flagged when it
  panics     ("panicked" in stderr, or exit 101)
  aborts     (exit 134 / 139, or killed by a signal other than the 5 s timeout's)
  hangs      (still running after 5 s; it is killed)
  rss        (max RSS over 1 GiB)
  modified   (a file or directory that existed before changed, and the command had no --force)
  partial    (it failed and left a temporary file (NAME.partial, .NAME.tmp-PID, NAME.tmp), an output file,
              or an output directory with a file that is not whole: JSON that does not parse, weights
              cut short, a model.json without weights, any exported .tflite/.c/.h)
  json       (it had --json, failed, and stdout is not one JSON object with an "error")
  exit       (the exit code is not the one expected: 2 for an error, 1 for "does not fit", 0 accepted)
Prints the table and the totals; exits 1 when any case is flagged. Python standard library only;
needs a release build of mcufit (`cargo build --release -p mcufit-cli`).
"""

import argparse
import gzip
import hashlib
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

TIMEOUT = 5.0
RSS_LIMIT_KB = 1 << 20  # 1 GiB
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ---------------------------------------------------------------- file makers


def idx(dims, data=b"", magic_type=0x08):
    out = bytes([0, 0, magic_type, len(dims)])
    for d in dims:
        out += struct.pack(">I", d)
    return out + data


def gz(data, level=6):
    return gzip.compress(data, compresslevel=level)


def gz_stream(header, zeros, level=9):
    """gzip of `header` followed by `zeros` zero bytes, built in chunks (a bomb: small file, huge output)."""
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    out = [c.compress(header)]
    chunk = bytes(1 << 20)
    left = zeros
    while left > 0:
        n = min(left, len(chunk))
        out.append(c.compress(chunk[:n]))
        left -= n
    out.append(c.flush())
    return b"".join(out)


def png(w, h, grey=True, rows=None):
    """A PNG of w x h (8-bit grey or RGB), rows of zeros unless given; IDAT compressed in chunks."""
    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    ct = 0 if grey else 2
    ihdr = struct.pack(">IIBBBBB", w, h, 8, ct, 0, 0, 0)
    c = zlib.compressobj(9)
    row = b"\x00" + bytes(w * (1 if grey else 3))
    parts = []
    for y in range(h):
        parts.append(c.compress(rows[y] if rows else row))
    parts.append(c.flush())
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def png_header_only(w, h):
    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))


def bmp(w, h, px=None):
    row = (w * 3 + 3) & ~3
    data = px if px is not None else bytes(row * abs(h))
    head = b"BM" + struct.pack("<IHHI", 54 + len(data), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(data), 2835, 2835, 0, 0)
    return head + info + data


def gif_screen(w, h):
    # Header, logical screen w x h, one 1x1 image.
    return (b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x02\x02\x44\x01\x00\x3b")


def tiff_header(w, h):
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, h), (279, 4, 1, w * h)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
    return b"II*\x00" + struct.pack("<I", 8) + ifd


def wav(samples=16000, rate=16000, channels=1, bits=16, fmt=1, data_len=None, riff_len=None, payload=None):
    block = channels * bits // 8
    data = payload if payload is not None else bytes(samples * block)
    dl = len(data) if data_len is None else data_len
    fmt_chunk = b"fmt " + struct.pack("<IHHIIHH", 16, fmt, channels, rate, rate * block, block, bits)
    body = b"WAVE" + fmt_chunk + b"data" + struct.pack("<I", dl) + data
    rl = len(body) if riff_len is None else riff_len
    return b"RIFF" + struct.pack("<I", rl) + body


def jpeg_bytes():
    """A real baseline JPEG (8x8 grey), hand-assembled so no imaging library is needed."""
    return bytes.fromhex(
        "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c"
        "1912130f141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc00"
        "00b080008000801011100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc4"
        "00b5100002010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1"
        "c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a"
        "636465666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5"
        "b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda00"
        "08010100003f00fbd3ffd9"
    )


# ---------------------------------------------------------------- running


class Case:
    def __init__(self, name, args, expect=(2,), protect=(), outputs=()):
        self.name, self.args, self.expect = name, args, set(expect)
        self.protect, self.outputs = list(protect), list(outputs)


def tree_hash(path):
    if not os.path.lexists(path):
        return None
    h = hashlib.sha256()
    if os.path.isdir(path) and not os.path.islink(path):
        for d, dirs, files in sorted(os.walk(path)):
            dirs.sort()
            h.update(os.path.relpath(d, path).encode())
            for f in sorted(files):
                p = os.path.join(d, f)
                h.update(f.encode())
                if os.path.isfile(p):
                    with open(p, "rb") as fh:
                        h.update(fh.read())
    else:
        with open(path, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def temporaries(path):
    found = []
    for d, dirs, files in os.walk(path):
        for n in dirs + files:
            if n.endswith(".partial") or ".tmp-" in n or n.endswith(".tmp") or n.endswith(".safetensors.tmp"):
                found.append(os.path.join(d, n))
    return found


def whole(path):
    """Whether an output a failed command left is whole: not a single output file (a .tflite must not
    survive a failure), and in a directory every JSON parses, every weights file is complete, every
    model.json has its weights, and no exported model or C file (those are written all or nothing)."""
    if not os.path.isdir(path):
        return False
    for d, _, files in os.walk(path):
        if "model.json" in files and "weights.safetensors" not in files:
            return False
        for f in files:
            p = os.path.join(d, f)
            if f.endswith((".c", ".h", ".tflite")):
                return False
            try:
                with open(p, "rb") as fh:
                    b = fh.read()
                if f.endswith(".json"):
                    json.loads(b)
                elif f.endswith(".safetensors"):
                    n = struct.unpack("<Q", b[:8])[0]
                    h = json.loads(b[8:8 + n])
                    end = max([t["data_offsets"][1] for k, t in h.items() if k != "__metadata__"] or [0])
                    if 8 + n + end != len(b):
                        return False
            except (ValueError, struct.error, KeyError, TypeError):
                return False
    return True


def limit_child():
    # Beyond what any case may use: a runaway allocation fails here instead of swapping the machine.
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


def run_case(binary, case, cwd):
    before = {p: tree_hash(os.path.join(cwd, p)) for p in case.protect}
    existed = {p: os.path.lexists(os.path.join(cwd, p)) for p in case.outputs}
    t0 = time.monotonic()
    p = subprocess.Popen([binary] + case.args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=limit_child,
                         env=dict(os.environ, RUST_BACKTRACE="0"))
    out, err = [], []
    readers = [threading.Thread(target=lambda: out.append(p.stdout.read())),
               threading.Thread(target=lambda: err.append(p.stderr.read()))]
    for r in readers:
        r.start()
    hung = threading.Event()

    def kill():
        hung.set()
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    timer = threading.Timer(TIMEOUT, kill)
    timer.start()
    _, status, ru = os.wait4(p.pid, 0)
    timer.cancel()
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    stdout, stderr = out[0].decode("utf-8", "replace"), err[0].decode("utf-8", "replace")
    code = p.returncode
    flags = []
    if "panicked" in stderr or code == 101:
        flags.append("panic")
    if code in (134, 139) or (code < 0 and not hung.is_set()):
        flags.append("abort")
    if hung.is_set():
        flags.append("hang")
    if ru.ru_maxrss > RSS_LIMIT_KB:
        flags.append("rss")
    if "--force" not in case.args:
        for path, h in before.items():
            if h is not None and tree_hash(os.path.join(cwd, path)) != h:
                flags.append("modified")
                break
    if code != 0:
        left = [o for o in case.outputs if not existed[o] and os.path.lexists(os.path.join(cwd, o))]
        if temporaries(cwd) or any(not whole(os.path.join(cwd, o)) for o in left):
            flags.append("partial")
    if "--json" in case.args and code != 0:
        try:
            v = json.loads(stdout)
            # An error is {"error": ...}; "does not fit" (exit 1) is the normal result, also JSON.
            if not isinstance(v, dict) or (code != 1 and "error" not in v):
                raise ValueError
        except ValueError:
            flags.append("json")
    if code not in case.expect and not hung.is_set():
        flags.append("exit")
    msg = ""
    if code != 0 and "--json" in case.args:
        try:
            msg = json.loads(stdout)["error"]
        except (ValueError, KeyError, TypeError):
            pass
    if not msg:
        lines = [l.strip() for l in stderr.splitlines() if l.strip()]
        errors = [l for l in lines if l.startswith("error")]
        msg = (errors or lines or [""])[0]
    if not msg:
        msg = (stdout.strip().splitlines() or [""])[0]
    return code, msg, wall, ru.ru_maxrss, flags


# ---------------------------------------------------------------- fixtures


def w(path, data, mode="wb"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str) and mode == "wb":
        data = data.encode()
    with open(path, mode) as f:
        f.write(data)


def idx_set(d, n=20, test_n=10, hw=8, labels=None, test_hw=None):
    os.makedirs(d, exist_ok=True)
    lb = labels if labels is not None else bytes(i % 10 for i in range(n))
    w(f"{d}/train-images-idx3-ubyte", idx([n, hw, hw], bytes(range(256)) * (n * hw * hw // 256 + 1))[: 16 + n * hw * hw])
    w(f"{d}/train-labels-idx1-ubyte", idx([n], lb))
    th = test_hw or hw
    w(f"{d}/t10k-images-idx3-ubyte", idx([test_n, th, th], bytes(test_n * th * th)))
    w(f"{d}/t10k-labels-idx1-ubyte", idx([test_n], bytes(i % 10 for i in range(test_n))))


def cifar_set(d, labels=(0, 1, 2)):
    os.makedirs(d, exist_ok=True)
    rec = lambda l: bytes([l]) + bytes(3072)
    for b in range(1, 6):
        w(f"{d}/data_batch_{b}.bin", b"".join(rec(l) for l in labels))
    w(f"{d}/test_batch.bin", b"".join(rec(l) for l in (3, 4, 5)))


def image_set(d, classes=("a", "b"), n=12, side="", size=4):
    for c in classes:
        for i in range(n):
            w(os.path.join(d, side, c, f"{i}.png"), png(size, size))


def speech_set(d, words=("yes", "no"), n=30, make=None):
    # One clip per speaker, 30 speakers a word: the speaker split fills train, validation and test.
    for word in words:
        for i in range(n):
            w(f"{d}/{word}/{i * 7919 + 17:08x}_nohash_0.wav", make() if make else wav())
    w(f"{d}/_background_noise_/noise.wav", wav(samples=32000))


def model_json(nodes, name="m", version=1, fmt="mcufit-model"):
    return json.dumps({"format": fmt, "version": version, "name": name, "nodes": nodes})


def conv_model(filters=4, shape=(8, 8, 1), extra=None, kernel=(3, 3)):
    conv = {"name": "c", "op": "conv2d", "inputs": ["input"], "filters": filters, "kernel": list(kernel)}
    conv.update(extra or {})
    return model_json([
        {"name": "input", "op": "input", "shape": list(shape)}, conv,
        {"name": "g", "op": "global_avg_pool", "inputs": ["c"]},
        {"name": "d", "op": "dense", "inputs": ["g"], "units": 10},
    ])


def build(work, binary, tmpfs):
    """Writes every fixture under `work`; returns the cases."""
    D = lambda *p: os.path.join(work, *p)
    cases = []
    add = lambda *a, **k: cases.append(Case(*a, **k))
    train = lambda spec: ["train", "zoo:mnist-ds", "--data", spec, "--epochs", "1", "--limit", "40",
                          "--threads", "1", "--out", "out"]

    # A trained model directory, its .tflite and C export: what eval / export / compress --from take.
    model = D("model")
    subprocess.run([binary, "train", "zoo:mnist-ds", "--epochs", "1", "--limit", "100", "--threads", "1",
                    "--out", model], check=True, capture_output=True)
    subprocess.run([binary, "export", model, "--format", "tflite", "--out", D("model.tflite")], check=True,
                   capture_output=True)
    real_tflite = open(D("model.tflite"), "rb").read()

    # ---- IDX (mnist:DIR, fashion-mnist:DIR)
    def idx_case(name, mutate, kind="mnist", expect=(2,)):
        d = D("idx", name.replace(" ", "_"))
        idx_set(d)
        mutate(d)
        add(f"idx: {name}", train(f"{kind}:{d}"), expect=expect, outputs=["out"])
    T = "train-images-idx3-ubyte"
    L = "train-labels-idx1-ubyte"
    os.makedirs(D("idx", "empty"), exist_ok=True)
    add("idx: empty folder", train(f"mnist:{D('idx', 'empty')}"), outputs=["out"])
    idx_case("valid (control)", lambda d: None, expect=(0,))
    idx_case("labels missing", lambda d: os.remove(f"{d}/{L}"))
    idx_case("images truncated", lambda d: w(f"{d}/{T}", open(f"{d}/{T}", "rb").read()[:500]))
    idx_case("labels truncated", lambda d: w(f"{d}/{L}", open(f"{d}/{L}", "rb").read()[:12]))
    idx_case("images wrong magic", lambda d: w(f"{d}/{T}", b"\x00\x00\x08\x01" + open(f"{d}/{T}", "rb").read()[4:]))
    idx_case("labels wrong magic", lambda d: w(f"{d}/{L}", b"\x12\x34\x56\x78" + open(f"{d}/{L}", "rb").read()[4:]))
    idx_case("float IDX type", lambda d: w(f"{d}/{T}", idx([20, 8, 8], bytes(1280), magic_type=0x0D)))
    idx_case("header declares 60000x100000x100000", lambda d: w(f"{d}/{T}", idx([60000, 100000, 100000], bytes(100))))
    idx_case("header dims overflow u64", lambda d: w(f"{d}/{T}", idx([0xFFFFFFFF] * 3, bytes(100))))
    idx_case("gz bomb: header declares 1.68 TB, 256 MiB of zeros",
             lambda d: (os.remove(f"{d}/{T}"), w(f"{d}/{T}.gz", gz_stream(idx([60000, 5292, 5292]), 256 << 20))))
    idx_case("gz bomb: header declares 1280 B, 1 GiB of zeros",
             lambda d: (os.remove(f"{d}/{T}"), w(f"{d}/{T}.gz", gz_stream(idx([20, 8, 8]), 1 << 30))))
    idx_case("gz truncated", lambda d: (w(f"{d}/{T}.gz", gz(open(f"{d}/{T}", "rb").read())[:40]), os.remove(f"{d}/{T}")))
    idx_case("gz bad CRC", lambda d: (w(f"{d}/{T}.gz", gz(open(f"{d}/{T}", "rb").read())[:-8] + b"\0" * 8),
                                      os.remove(f"{d}/{T}")))
    idx_case("gz of garbage", lambda d: (w(f"{d}/{T}.gz", gz(os.urandom(5000))), os.remove(f"{d}/{T}")))
    idx_case("gz header only", lambda d: (w(f"{d}/{T}.gz", b"\x1f\x8b"), os.remove(f"{d}/{T}")))
    idx_case("label count != image count", lambda d: w(f"{d}/{L}", idx([15], bytes(range(10)) + bytes(5))))
    idx_case("label 200", lambda d: w(f"{d}/{L}", idx([20], bytes([200]) + bytes(19))))
    idx_case("zero images", lambda d: (w(f"{d}/{T}", idx([0, 8, 8])), w(f"{d}/{L}", idx([0]))))
    idx_case("image height 0", lambda d: w(f"{d}/{T}", idx([20, 0, 8])))
    idx_case("trailing bytes", lambda d: w(f"{d}/{T}", open(f"{d}/{T}", "rb").read() + b"junk"))
    idx_case("empty files", lambda d: (w(f"{d}/{T}", b""), w(f"{d}/{L}", b"")))
    idx_case("test images 9x9, train 8x8", lambda d: idx_set(d, test_hw=9))
    idx_case("single class labels", lambda d: w(f"{d}/{L}", idx([20], bytes([3]) * 20)))
    idx_case("255 dims", lambda d: w(f"{d}/{T}", bytes([0, 0, 8, 255]) + bytes(1020)))
    idx_case("images file is a directory", lambda d: (os.remove(f"{d}/{T}"), os.makedirs(f"{d}/{T}")))
    idx_case("images file -> /dev/zero", lambda d: (os.remove(f"{d}/{T}"), os.symlink("/dev/zero", f"{d}/{T}")))
    idx_case("images file -> itself (link loop)", lambda d: (os.remove(f"{d}/{T}"), os.symlink(f"{d}/{T}", f"{d}/{T}")))
    idx_case("sparse 10 GB images file", lambda d: os.truncate(f"{d}/{T}", 10 << 30))
    idx_case("random bytes", lambda d: w(f"{d}/{T}", os.urandom(1 << 20)))
    idx_case("fashion-mnist, labels truncated", lambda d: w(f"{d}/{L}", open(f"{d}/{L}", "rb").read()[:9]),
             kind="fashion-mnist")

    # ---- CIFAR-10 binary (cifar10:DIR)
    def cifar_case(name, mutate, expect=(2,)):
        d = D("cifar", name.replace(" ", "_"))
        cifar_set(d)
        mutate(d)
        add(f"cifar: {name}", train(f"cifar10:{d}"), expect=expect, outputs=["out"])
    B = "data_batch_1.bin"
    os.makedirs(D("cifar", "empty"), exist_ok=True)
    add("cifar: empty folder", train(f"cifar10:{D('cifar', 'empty')}"), outputs=["out"])
    cifar_case("valid (control)", lambda d: None, expect=(0,))
    cifar_case("test batch missing", lambda d: os.remove(f"{d}/test_batch.bin"))
    cifar_case("length not a multiple of 3073", lambda d: w(f"{d}/{B}", open(f"{d}/{B}", "rb").read() + b"xyz"))
    cifar_case("truncated mid-record", lambda d: w(f"{d}/{B}", open(f"{d}/{B}", "rb").read()[:5000]))
    cifar_case("label 10", lambda d: w(f"{d}/{B}", b"\x0a" + open(f"{d}/{B}", "rb").read()[1:]))
    cifar_case("label 255", lambda d: w(f"{d}/{B}", b"\xff" + open(f"{d}/{B}", "rb").read()[1:]))
    cifar_case("empty batch file", lambda d: w(f"{d}/{B}", b""))
    cifar_case("sparse 10 GB batch", lambda d: os.truncate(f"{d}/{B}", 10 << 30))
    cifar_case("batch -> /dev/zero", lambda d: (os.remove(f"{d}/{B}"), os.symlink("/dev/zero", f"{d}/{B}")))
    cifar_case("batch is a directory", lambda d: (os.remove(f"{d}/{B}"), os.makedirs(f"{d}/{B}")))
    cifar_case("meta: 3 class names", lambda d: w(f"{d}/batches.meta.txt", "a\nb\nc\n", "w"))
    cifar_case("meta: 100000 class names", lambda d: w(f"{d}/batches.meta.txt", "x\n" * 100000, "w"))
    cifar_case("meta: binary garbage", lambda d: w(f"{d}/batches.meta.txt", os.urandom(1 << 20)))
    cifar_case("single class", lambda d: cifar_set(d, labels=(7, 7, 7)))

    # ---- image folders (images:DIR)
    def img_case(name, mutate, expect=(2,), classes=("a", "b")):
        d = D("img", name.replace(" ", "_").replace("/", "_"))
        image_set(d, classes)
        mutate(d)
        add(f"images: {name}", train(f"images:{d}"), expect=expect, outputs=["out"])
    os.makedirs(D("img", "empty"), exist_ok=True)
    add("images: empty folder", train(f"images:{D('img', 'empty')}"), outputs=["out"])
    img_case("valid (control)", lambda d: None, expect=(0,))
    img_case("one class folder", lambda d: None, classes=("a",))
    img_case("empty class folder", lambda d: os.makedirs(f"{d}/c"))
    img_case("2000 empty class folders", lambda d: [os.makedirs(f"{d}/e{i}") for i in range(2000)])
    jpg = jpeg_bytes()
    img_case("real JPEG (control)", lambda d: w(f"{d}/a/x.jpg", jpg), expect=(0,))
    img_case("truncated JPEG", lambda d: w(f"{d}/a/x.jpg", jpg[: len(jpg) - 20]))
    img_case("JPEG without end marker", lambda d: w(f"{d}/a/x.jpg", jpg[:-2]))
    img_case("truncated PNG", lambda d: w(f"{d}/a/x.png", png(64, 64, rows=[bytes([0]) + os.urandom(64) for _ in range(64)])[:3000]))
    img_case("PNG with bad CRC", lambda d: w(f"{d}/a/x.png", png(4, 4)[:-20] + b"\0" * 20))
    img_case("text file named .png", lambda d: w(f"{d}/a/x.png", b"hello, I am not a PNG\n"))
    img_case("zero-byte .jpg", lambda d: w(f"{d}/a/x.jpg", b""))
    img_case("PNG header says 20000x20000 (small file)", lambda d: w(f"{d}/a/x.png", png_header_only(20000, 20000)))
    img_case("PNG bomb: real 20000x20000 grey", lambda d: w(f"{d}/a/x.png", png(20000, 20000)))
    img_case("PNG 8193x1 (over the 8192 side)", lambda d: w(f"{d}/a/x.png", png(8193, 1)))
    img_case("PNG 4000x4000 (under the limits)", lambda d: w(f"{d}/a/x.png", png(4000, 4000)), expect=(0,))
    img_case("PNG header 0x0", lambda d: w(f"{d}/a/x.png", png_header_only(0, 0)))
    img_case("GIF logical screen 65535x65535", lambda d: w(f"{d}/a/x.gif", gif_screen(65535, 65535)))
    img_case("GIF truncated", lambda d: w(f"{d}/a/x.gif", gif_screen(4, 4)[:20]))
    img_case("BMP header 100000x100000", lambda d: w(f"{d}/a/x.bmp", bmp(100000, 100000, px=b"")))
    img_case("BMP negative height (top-down, valid)", lambda d: w(f"{d}/a/x.bmp", bmp(4, -4)), expect=(0,))
    img_case("BMP height -2^31", lambda d: w(f"{d}/a/x.bmp", bmp(4, -(1 << 31), px=b"")))
    img_case("BMP truncated", lambda d: w(f"{d}/a/x.bmp", bmp(16, 16)[:100]))
    img_case("TIFF header 65535x65535", lambda d: w(f"{d}/a/x.tif", tiff_header(65535, 65535)))
    img_case("TIFF garbage", lambda d: w(f"{d}/a/x.tiff", b"II*\x00" + os.urandom(2000)))
    img_case("image -> /dev/zero", lambda d: os.symlink("/dev/zero", f"{d}/a/zero.png"))
    img_case("image -> /dev/urandom", lambda d: os.symlink("/dev/urandom", f"{d}/a/rand.jpg"))
    img_case("dangling link", lambda d: os.symlink(f"{d}/nowhere.png", f"{d}/a/gone.png"))
    img_case("non-UTF-8 file name", lambda d: w(os.fsencode(f"{d}/a/") + b"\xff\xfe.png", png(4, 4)), expect=(0,))
    img_case("nested folder in a class", lambda d: w(f"{d}/a/sub/deep.png", png(4, 4)), expect=(0,))
    img_case("JPEG named .png (control)", lambda d: w(f"{d}/a/y.png", jpg), expect=(0,))
    img_case("1x1 images (control)", lambda d: [w(f"{d}/{c}/{i}.png", png(1, 1)) for c in "ab" for i in range(12)],
             expect=(0,))

    def split_case(name, test_classes, expect=(2,)):
        d = D("img", "split_" + name.replace(" ", "_"))
        image_set(d, ("a", "b"), side="train")
        image_set(d, test_classes, side="test")
        add(f"images: official split, {name}", train(f"images:{d}"), expect=expect, outputs=["out"])
    split_case("valid (control)", ("a", "b"), expect=(0,))
    split_case("test lacks a class", ("a",))
    split_case("test has an extra class", ("a", "b", "c"))
    w(D("img", "a_file"), b"x")
    add("images: DIR is a file", train(f"images:{D('img', 'a_file')}"), outputs=["out"])

    # ---- Speech Commands (speech-commands:DIR)
    def sp_case(name, make=None, mutate=None, expect=(2,), words=("yes", "no")):
        d = D("speech", name.replace(" ", "_"))
        speech_set(d, words, make=make)
        if mutate:
            mutate(d)
        args = ["train", "zoo:ds-cnn", "--data", f"speech-commands:{d}", "--epochs", "1", "--limit", "20",
                "--threads", "1", "--out", "out"]
        add(f"speech: {name}", args, expect=expect, outputs=["out"])
    os.makedirs(D("speech", "empty"), exist_ok=True)
    add("speech: empty folder", ["train", "zoo:ds-cnn", "--data", f"speech-commands:{D('speech', 'empty')}",
                                 "--epochs", "1", "--out", "out"], outputs=["out"])
    sp_case("valid (control)", expect=(0,))
    sp_case("8 kHz", make=lambda: wav(rate=8000, samples=8000))
    sp_case("stereo", make=lambda: wav(channels=2))
    sp_case("8-bit", make=lambda: wav(bits=8))
    sp_case("32-bit float", make=lambda: wav(bits=32, fmt=3))
    sp_case("truncated data", make=lambda: wav()[:3000])
    sp_case("header declares 2^31 samples", make=lambda: wav(samples=100, data_len=0xFFFFFFFE))
    sp_case("RIFF size 0xFFFFFFFF (data chunk right)", make=lambda: wav(riff_len=0xFFFFFFFF), expect=(0, 2))
    sp_case("zero-byte file", make=lambda: b"")
    sp_case("garbage", make=lambda: os.urandom(4000))
    sp_case("fmt chunk size 2^32-1", make=lambda: b"RIFF\xff\xff\xff\xffWAVEfmt \xff\xff\xff\xff" + bytes(64))
    sp_case("clip -> /dev/zero", mutate=lambda d: os.symlink("/dev/zero", f"{d}/yes/deadbeef_nohash_9.wav"))
    sp_case("clip is a directory", mutate=lambda d: os.makedirs(f"{d}/yes/cafebabe_nohash_1.wav"))
    sp_case("10-minute clip", mutate=lambda d: w(f"{d}/yes/0badc0de_nohash_0.wav", wav(samples=16000 * 600)),
            expect=(0,))

    # ---- model files (analyze / train / compress)
    def mf(name, text, cmds=("analyze",), expect=(2,)):
        p = D("models", name.replace(" ", "_").replace("/", "_") + ".json")
        w(p, text if isinstance(text, bytes) else text.encode())
        for c in cmds:
            args = {"analyze": ["analyze", p],
                    "train": ["train", p, "--epochs", "1", "--limit", "40", "--threads", "1", "--out", "out"],
                    "compress": ["compress", p, "--size", "2KiB", "--epochs", "3", "--limit", "40", "--threads",
                                 "1", "--out", "out"]}[c]
            add(f"model {c}: {name}", args, expect=expect, outputs=["out"])
    mf("valid (control)", conv_model(), cmds=("analyze",), expect=(0,))
    mf("typo 'strides'", conv_model(extra={"strides": [2, 2]}), cmds=("analyze", "train"))
    mf("unknown op 'lstm'", model_json([{"name": "input", "op": "input", "shape": [8, 8, 1]},
                                        {"name": "l", "op": "lstm", "inputs": ["input"]}]))
    mf("1e9 filters", conv_model(filters=1000000000), cmds=("analyze", "train", "compress"))
    mf("100000x100000 input", conv_model(shape=(100000, 100000, 1)), cmds=("analyze", "train", "compress"))
    mf("u64::MAX filters", conv_model(filters=18446744073709551615), cmds=("analyze", "train", "compress"))
    mf("filters 2^64", conv_model(filters=18446744073709551616))
    mf("negative filters", conv_model(filters=-4))
    mf("0 filters", conv_model(filters=0))
    mf("filters 4.5", conv_model(filters=4.5))
    mf("filters as string", conv_model(filters="4"))
    mf("kernel 0", conv_model(kernel=(0, 0)))
    mf("kernel 9x9 on 8x8 (valid padding)", conv_model(extra={"padding": "valid"}, kernel=(9, 9)))
    mf("stride 0", conv_model(extra={"stride": [0, 0]}))
    mf("stride u32::MAX (a 1x1 output, valid)", conv_model(extra={"stride": [4294967295, 4294967295]}), expect=(0,))
    mf("padding 'foo'", conv_model(extra={"padding": "foo"}))
    mf("groups 3 on 1 channel", conv_model(extra={"groups": 3}))
    mf("cycle a->b->a", model_json([{"name": "input", "op": "input", "shape": [8, 8, 1]},
                                    {"name": "a", "op": "relu", "inputs": ["b"]},
                                    {"name": "b", "op": "relu", "inputs": ["a"]}]))
    mf("self loop", model_json([{"name": "input", "op": "input", "shape": [8, 8, 1]},
                                {"name": "a", "op": "relu", "inputs": ["a"]}]))
    mf("input names a missing node", model_json([{"name": "input", "op": "input", "shape": [8, 8, 1]},
                                                 {"name": "a", "op": "relu", "inputs": ["ghost"]}]))
    mf("duplicate node names", model_json([{"name": "input", "op": "input", "shape": [8, 8, 1]},
                                           {"name": "a", "op": "relu", "inputs": ["input"]},
                                           {"name": "a", "op": "relu", "inputs": ["input"]}]))
    mf("no input node", model_json([{"name": "a", "op": "relu", "inputs": []}]))
    mf("two input nodes", model_json([{"name": "input", "op": "input", "shape": [8, 8, 1]},
                                      {"name": "i2", "op": "input", "shape": [8, 8, 1]},
                                      {"name": "a", "op": "add", "inputs": ["input", "i2"]}]))
    mf("no nodes", model_json([]))
    mf("input shape [0,8,1]", conv_model(shape=(0, 8, 1)))
    mf("input shape of 2 dims", model_json([{"name": "input", "op": "input", "shape": [8, 8]}]))
    mf("dense 0 units", model_json([{"name": "input", "op": "input", "shape": [1, 1, 8]},
                                    {"name": "d", "op": "dense", "inputs": ["input"], "units": 0}]))
    mf("concat of different sizes", model_json([{"name": "input", "op": "input", "shape": [8, 8, 1]},
                                                {"name": "p", "op": "max_pool2d", "inputs": ["input"], "pool": [2, 2]},
                                                {"name": "c", "op": "concat", "inputs": ["input", "p"]}]))
    mf("add of different shapes", model_json([{"name": "input", "op": "input", "shape": [8, 8, 1]},
                                              {"name": "p", "op": "max_pool2d", "inputs": ["input"], "pool": [2, 2]},
                                              {"name": "c", "op": "add", "inputs": ["input", "p"]}]))
    mf("batch_norm eps 1e98", model_json([{"name": "input", "op": "input", "shape": [8, 8, 1]},
                                          {"name": "b", "op": "batch_norm", "inputs": ["input"], "eps": 1e98}]))
    mf("batch_norm eps NaN literal", b'{"format":"mcufit-model","version":1,"name":"m","nodes":[{"name":"input",'
       b'"op":"input","shape":[8,8,1]},{"name":"b","op":"batch_norm","inputs":["input"],"eps":NaN}]}')
    mf("version 99", model_json([{"name": "input", "op": "input", "shape": [8, 8, 1]}], version=99))
    mf("format 'onnx'", model_json([{"name": "input", "op": "input", "shape": [8, 8, 1]}], fmt="onnx"))
    mf("top-level array", "[1, 2, 3]")
    mf("empty file", "")
    mf("truncated JSON", conv_model()[:60])
    mf("UTF-8 BOM", "\ufeff" + conv_model())
    mf("invalid UTF-8", b"\xff\xfe" + conv_model().encode())
    mf("100000-deep nesting", "[" * 100000 + "]" * 100000)
    mf("1 MB node name (valid)", model_json([{"name": "x" * (1 << 20), "op": "input", "shape": [8, 8, 1]}]),
       expect=(0,))
    mf("20 MB of whitespace (valid)", " " * (20 << 20) + conv_model(), expect=(0,))
    branches = [{"name": "input", "op": "input", "shape": [16, 16, 8]}]
    branches += [{"name": f"b{i}", "op": "conv2d", "inputs": ["input"], "filters": 8, "kernel": [3, 3]}
                 for i in range(40)]
    branches += [{"name": "cat", "op": "concat", "inputs": [f"b{i}" for i in range(40)]}]
    mf("40 parallel branches joined by a concat", model_json(branches), expect=(0,))
    wide = [{"name": "input", "op": "input", "shape": [16, 16, 8]}]
    wide += [{"name": f"b{i}", "op": "conv2d", "inputs": ["input"], "filters": 8, "kernel": [3, 3]}
             for i in range(200)]
    wide += [{"name": "cat", "op": "concat", "inputs": [f"b{i}" for i in range(200)]}]
    mf("200 parallel branches joined by a concat", model_json(wide), expect=(0,))
    chain = [{"name": "input", "op": "input", "shape": [8, 8, 4]}]
    chain += [{"name": f"r{i}", "op": "relu", "inputs": ["input" if i == 0 else f"r{i - 1}"]} for i in range(20000)]
    mf("chain of 20000 relus", model_json(chain), expect=(0,))
    os.makedirs(D("models", "a_dir.json"), exist_ok=True)
    add("model: path is a directory without model.json", ["analyze", D("models", "a_dir.json")])
    add("model: path does not exist", ["analyze", D("models", "nope.json")])
    add("model: zoo:unknown", ["analyze", "zoo:lenet-9000"])
    add("model: zoo: (empty name)", ["analyze", "zoo:"])

    # ---- .tflite
    w(D("garbage.tflite"), os.urandom(4096))
    w(D("truncated.tflite"), real_tflite[: len(real_tflite) // 2])
    w(D("empty.tflite"), b"")
    w(D("tflite_named.json"), real_tflite)
    huge_off = bytearray(real_tflite)
    huge_off[0:4] = struct.pack("<I", 0xFFFFFFF0)
    w(D("bad_root.tflite"), bytes(huge_off))
    for f in ["garbage.tflite", "truncated.tflite", "empty.tflite", "bad_root.tflite"]:
        add(f"tflite analyze: {f}", ["analyze", D(f)])
        add(f"tflite eval: {f}", ["eval", D(f)])
    add("tflite analyze: real export (control)", ["analyze", D("model.tflite")], expect=(0, 2))
    add("tflite analyze: .tflite bytes named .json", ["analyze", D("tflite_named.json")])
    add("tflite export: MODEL_DIR is a .tflite", ["export", D("garbage.tflite"), "--format", "c", "--out", "o"],
        outputs=["o"])

    # ---- model directories that are not (eval / export / analyze / compress --from)
    def mdir(name, mutate):
        d = D("mdirs", name.replace(" ", "_"))
        shutil.copytree(model, d, ignore=shutil.ignore_patterns("last", "best"))
        mutate(d)
        return d
    mdirs = [
        ("empty dir", lambda d: [os.remove(os.path.join(d, f)) for f in os.listdir(d)]),
        ("only model.json", lambda d: [os.remove(os.path.join(d, f)) for f in os.listdir(d) if f != "model.json"]),
        ("weights truncated", lambda d: w(f"{d}/weights.safetensors", open(f"{d}/weights.safetensors", "rb").read()[:3000])),
        ("weights header length u64::MAX", lambda d: w(f"{d}/weights.safetensors", b"\xff" * 8 + b"{}")),
        ("weights header garbage", lambda d: w(f"{d}/weights.safetensors", struct.pack("<Q", 10) + b"not json!!")),
        ("weights of another model", lambda d: w(f"{d}/model.json", conv_model())),
        ("data.json garbage", lambda d: w(f"{d}/data.json", b"{nope")),
        ("data.json names a missing data set", lambda d: w(f"{d}/data.json", b'{"spec":"mnist:/nowhere","seed":1}')),
        ("model.json empty", lambda d: w(f"{d}/model.json", b"")),
    ]
    for name, mutate in mdirs:
        d = mdir(name, mutate)
        add(f"model dir eval: {name}", ["eval", d])
        add(f"model dir export: {name}", ["export", d, "--format", "tflite", "--out", "o.tflite"], outputs=["o.tflite"])
        add(f"model dir compress --from: {name}", ["compress", "zoo:mnist-ds", "--from", d, "--size", "8KiB",
                                                   "--epochs", "3", "--limit", "40", "--threads", "1", "--out",
                                                   "out"], outputs=["out"],
            expect=(0, 2) if name == "data.json names a missing data set" else (2,))
    add("model dir analyze: empty dir", ["analyze", D("mdirs", "empty_dir")])
    add("eval: not there", ["eval", D("nowhere")])
    add("eval: a regular file", ["eval", D("model.tflite")])

    # ---- numeric flags
    az = lambda *f: ["analyze", "zoo:ds-cnn"] + list(f)
    for flag, val, expect in [
        ("--ram", "-5", 2), ("--ram", "99999999999999999999", 2), ("--ram", "inf", 2), ("--ram", "nan", 2),
        ("--ram", "0", 2), ("--ram", "1e3", 2), ("--ram", "64XB", 2), ("--ram", "", 2), ("--ram", "1.5KiB", 1),
        ("--ram", "2GiB", 0), ("--ram", "1G", 0), ("--ram", "18446744073709551616", 2), ("--flash", "-1", 2),
        ("--flash", "1e400", 2), ("--peak", "-1", 2), ("--size", "nan", 2), ("--macs", "-1", 2),
        ("--macs", "1e400", 2), ("--macs", "5M", 0), ("--macs", "0", 2), ("--latency-ms", "inf", 2),
        ("--latency-ms", "nan", 2), ("--latency-ms", "-1", 2), ("--latency-ms", "0", 2),
        ("--latency-ms", "5", 2), ("--stack", "10G", 0), ("--stack", "-1", 2), ("--board", "nonexistent", 2),
        ("--target", "foo", 2),
    ]:
        add(f"flag analyze {flag} {val!r}", az(flag, val), expect=(expect,))
    add("flag analyze --latency-ms 5 --board nucleo-f411re (control)",
        az("--latency-ms", "5", "--board", "nucleo-f411re"), expect=(0, 1))
    tr = lambda *f: ["train", "zoo:mnist-ds", "--limit", "40", "--threads", "1", "--out", "out"] + list(f)
    for flags in [("--epochs", "0"), ("--epochs", "-1"), ("--epochs", "99999999999999999999"), ("--batch", "0"),
                  ("--batch", "-1"), ("--lr", "nan"), ("--lr", "-1"), ("--lr", "inf"), ("--lr", "0"),
                  ("--weight-decay", "nan"), ("--weight-decay", "-1"), ("--limit", "0"), ("--seed", "-1"),
                  ("--max-steps", "0"), ("--threads", "99999"), ("--optimizer", "rmsprop"),
                  ("--epochs", "1", "--batch", "99999999999"), ("--data", "mnist:"), ("--data", "images:/dev/null"),
                  ("--data", "nosuch:/tmp"), ("--data", "")]:
        add(f"flag train {' '.join(flags)!s}", tr(*flags), outputs=["out"],
            expect=(0, 2) if flags[0] in ("--threads",) or flags[-1] == "99999999999" or flags == ("--data", "")
            else (2,))
    ex = lambda *f: ["export", model, "--format", "tflite", "--out", "o.tflite"] + list(f)
    for flags in [("--calibration", "0"), ("--calibration", "-1"), ("--verify-inputs", "0"), ("--format", "onnx"),
                  ("--ram", "-5"), ("--seed", "99999999999999999999")]:
        add(f"flag export {' '.join(flags)}", ex(*flags), outputs=["o.tflite"],
            expect=(0, 2) if flags == ("--verify-inputs", "0") else (2,))
    cp = lambda *f: ["compress", "zoo:mnist-ds", "--limit", "40", "--threads", "1", "--out", "out"] + list(f)
    for flags in [("--size", "8KiB", "--epochs", "0"), ("--size", "8KiB", "--warmup-epochs", "99", "--epochs", "3"),
                  ("--size", "8KiB", "--finetune-epochs", "-1"), ("--size", "8KiB", "--distill", "nan"),
                  ("--size", "8KiB", "--distill", "-1"), ("--size", "1"), ("--size", "8KiB", "--method", "magic"),
                  ("--size", "8KiB", "--head", "ds:0"), ("--size", "8KiB", "--salience", "random"), ()]:
        add(f"flag compress {' '.join(flags) or '(no budget)'}", cp(*flags), outputs=["out"],
            expect=(1, 2) if flags == ("--size", "1") else (2,))
    fi = lambda *f: ["fit", "zoo:mnist-ds", "--board", "nucleo-g031k8", "--out", "fo", "--no-verify"] + list(f)
    for flags in [("--time-budget", "0"), ("--time-budget", "-5m"), ("--time-budget", "1e400h"),
                  ("--time-budget", "soon"), ("--epochs", "0,0,0"), ("--epochs", "a,b,c"), ("--epochs", "1,2")]:
        add(f"flag fit {' '.join(flags)}", fi(*flags), outputs=["fo"])
    add("fit: no budget", ["fit", "zoo:mnist-ds", "--out", "fo"], outputs=["fo"])

    # ---- resume
    os.makedirs(D("resume", "empty"), exist_ok=True)
    add("resume: train --resume on an empty dir", ["train", "zoo:mnist-ds", "--epochs", "2", "--out",
                                                   D("resume", "empty"), "--resume"])
    add("resume: train --resume on a dir that does not exist",
        ["train", "zoo:mnist-ds", "--out", D("resume", "none"), "--resume"], outputs=[D("resume", "none")])
    add("resume: compress --resume with nothing", ["compress", "zoo:mnist-ds", "--size", "8KiB", "--out",
                                                   D("resume", "empty"), "--resume"])
    shutil.copytree(model, D("resume", "other"))
    add("resume: train --resume with another model", ["train", "zoo:mnist-cnn", "--limit", "40", "--out",
                                                      D("resume", "other"), "--resume"], protect=[D("resume", "other")])
    add("resume: train --resume with other data", ["train", "zoo:mnist-ds", "--data", f"images:{D('img', 'valid_(control)')}",
                                                   "--out", D("resume", "other"), "--resume"],
        protect=[D("resume", "other")])
    shutil.copytree(model, D("resume", "bad_state"))
    w(D("resume", "bad_state", "last", "state.json"), b"{\"epoch\": ")
    add("resume: corrupt last/state.json", ["train", "zoo:mnist-ds", "--epochs", "2", "--limit", "100", "--out",
                                            D("resume", "bad_state"), "--resume"])
    shutil.copytree(model, D("resume", "tmp_only"))
    os.rename(D("resume", "tmp_only", "last"), D("resume", "tmp_only", "last.tmp"))
    add("resume: only last.tmp (kill between renames)", ["train", "zoo:mnist-ds", "--epochs", "2", "--limit", "100",
                                                         "--threads", "1", "--out", D("resume", "tmp_only"), "--resume"],
        expect=(0,))
    shutil.copytree(model, D("resume", "partial_only"))
    shutil.rmtree(D("resume", "partial_only", "last"))
    for f in ["model.json", "weights.safetensors", "report.json"]:
        os.remove(D("resume", "partial_only", f))
    w(D("resume", "partial_only", "last.partial", "state.json"), b"{\"ep")
    add("resume: only a half-written last.partial", ["train", "zoo:mnist-ds", "--epochs", "2", "--out",
                                                     D("resume", "partial_only"), "--resume"])

    # ---- existing outputs (no --force)
    shutil.copytree(model, D("exist", "model"))
    add("existing: train --out over a trained model", ["train", "zoo:mnist-cnn", "--epochs", "1", "--out",
                                                       D("exist", "model")], protect=[D("exist", "model")])
    w(D("exist", "file.txt"), b"precious\n")
    add("existing: train --out is a regular file", ["train", "zoo:mnist-ds", "--epochs", "1", "--out",
                                                    D("exist", "file.txt")], protect=[D("exist", "file.txt")])
    add("existing: export --out over a file", ["export", model, "--format", "tflite", "--out", D("exist", "file.txt")],
        protect=[D("exist", "file.txt")])
    os.makedirs(D("exist", "cdir"), exist_ok=True)
    w(D("exist", "cdir", "mine.c"), b"int main(void) { return 0; }\n")
    add("existing: export --format c --out over a dir", ["export", model, "--format", "c", "--out", D("exist", "cdir")],
        protect=[D("exist", "cdir")])
    add("existing: export --out its own model dir", ["export", model, "--format", "c", "--out", model],
        protect=[model])
    add("existing: compress --out over a trained model", ["compress", "zoo:mnist-ds", "--size", "8KiB", "--epochs",
                                                          "3", "--out", D("exist", "model")],
        protect=[D("exist", "model")])
    w(D("exist", "report.json"), b"{\"mine\": true}\n")
    add("existing: export --report over a file", ["export", model, "--format", "tflite", "--out", "o.tflite",
                                                  "--report", D("exist", "report.json")],
        protect=[D("exist", "report.json")], outputs=["o.tflite"])
    w(D("exist", "copy.tflite"), real_tflite)
    add("existing: export --force over a file (allowed)", ["export", model, "--format", "tflite", "--out",
                                                            D("exist", "copy.tflite"), "--force"], expect=(0,))
    add("existing: report on a dir without fit.json", ["report", model], protect=[model])
    add("existing: report on a file", ["report", D("exist", "file.txt")], protect=[D("exist", "file.txt")])

    # ---- board files
    def board(body, name="x"):
        return f'[boards.{name}]\ntitle = "t"\nmcu = "m"\nsource = "s"\n' + body

    def bf(name, text, expect=(2,)):
        p = D("boards", name.replace(" ", "_") + ".toml")
        w(p, text if isinstance(text, bytes) else text.encode())
        add(f"boards: {name}", ["boards", "--boards", p], expect=expect)
    bf("garbage", os.urandom(2000))
    bf("not TOML", "this is = not [ toml")
    bf("sram 0", board('core = "cortex-m4"\nsram_bytes = 0\nflash_bytes = 1024\nclock_mhz = 64\n'))
    bf("clock nan", board('core = "cortex-m4"\nsram_bytes = 1\nflash_bytes = 1024\nclock_mhz = nan\n'))
    bf("clock -inf", board('core = "cortex-m4"\nsram_bytes = 1\nflash_bytes = 1024\nclock_mhz = -inf\n'))
    bf("unknown core", board('core = "z80"\nsram_bytes = 1\nflash_bytes = 1024\nclock_mhz = 4\n'))
    bf("sram -1", board('core = "cortex-m4"\nsram_bytes = -1\nflash_bytes = 1024\nclock_mhz = 4\n'))
    bf("sram 2^64", board('core = "cortex-m4"\nsram_bytes = 18446744073709551616\nflash_bytes = 1\nclock_mhz = 4\n'))
    bf("typo 'sram_byte'", board('core = "cortex-m4"\nsram_byte = 1\nflash_bytes = 1024\nclock_mhz = 4\n'))
    bf("invalid UTF-8", b"\xff\xfe[boards]")
    bf("empty (control)", "", expect=(0,))
    bf("valid board (control)", board('core = "cortex-m4"\nsram_bytes = 1\nflash_bytes = 1024\nclock_mhz = 4\n'),
       expect=(0,))
    bf("20000 boards", "".join(board('core = "cortex-m4"\nsram_bytes = 1024\nflash_bytes = 1024\nclock_mhz = 4\n',
                                     f"b{i}") for i in range(20000)), expect=(0,))
    add("boards: file does not exist", ["boards", "--boards", D("boards", "nope.toml")])
    add("boards: analyze with a bad board file", ["analyze", "zoo:ds-cnn", "--board", "x", "--boards",
                                                  D("boards", "garbage.toml")])

    # ---- --json variants
    for name, args, expect in [
        ("analyze unknown model", ["analyze", "zoo:nope", "--json"], 2),
        ("analyze --ram -5", ["analyze", "zoo:ds-cnn", "--ram", "-5", "--json"], 2),
        ("analyze does not fit", ["analyze", "zoo:resnet-8", "--ram", "16KiB", "--json"], 1),
        ("train bad data", ["train", "zoo:mnist-ds", "--data", f"mnist:{D('idx', 'empty')}", "--json", "--out", "out"], 2),
        ("train --epochs 0", ["train", "zoo:mnist-ds", "--epochs", "0", "--json", "--out", "out"], 2),
        ("eval not a model dir", ["eval", D("nowhere"), "--json"], 2),
        ("zoo --show unknown", ["zoo", "--show", "nope", "--json"], 2),
        ("boards bad file", ["boards", "--boards", D("boards", "garbage.toml"), "--json"], 2),
        ("compress infeasible", ["compress", "zoo:mnist-ds", "--peak", "100", "--json", "--out", "out"], 1),
        ("export to an existing file", ["export", model, "--format", "tflite", "--out", D("exist", "file.txt"), "--json"], 2),
        ("unknown flag", ["analyze", "zoo:ds-cnn", "--frobnicate", "--json"], 2),
        ("invalid enum value", ["analyze", "zoo:ds-cnn", "--target", "foo", "--json"], 2),
        ("missing argument", ["analyze", "--json"], 2),
    ]:
        add(f"json: {name}", args, expect=(expect,), outputs=["out"])

    # ---- misc
    add("misc: no arguments", [])
    add("misc: unknown command", ["frobnicate"])
    add("misc: zoo --show unknown", ["zoo", "--show", "nope"])
    add("misc: report on a missing dir", ["report", D("nowhere")])
    add("misc: eval --data unknown spec", ["eval", model, "--data", "nosuch:/x"])
    add("misc: analyze --cuts on a chain", ["analyze", "zoo:mnist-ds", "--cuts"], expect=(0,))

    # ---- full disk: a 16 KiB tmpfs (outputs need more), or skipped when it cannot be mounted.
    if tmpfs:
        add("full disk: train --out", ["train", "zoo:mnist-ds", "--epochs", "1", "--limit", "100", "--threads", "1",
                                       "--out", os.path.join(tmpfs, "t")], outputs=[os.path.join(tmpfs, "t")])
        add("full disk: export tflite", ["export", model, "--format", "tflite", "--out", os.path.join(tmpfs, "m.tflite")],
            outputs=[os.path.join(tmpfs, "m.tflite")])
        add("full disk: export c", ["export", model, "--format", "c", "--out", os.path.join(tmpfs, "c")],
            outputs=[os.path.join(tmpfs, "c")])
        add("full disk: compress --out", ["compress", "zoo:mnist-ds", "--size", "8KiB", "--epochs", "3", "--limit",
                                          "100", "--threads", "1", "--out", os.path.join(tmpfs, "cp")],
            outputs=[os.path.join(tmpfs, "cp")])
        add("full disk: fit --out", ["fit", "zoo:mnist-ds", "--board", "nucleo-g031k8", "--epochs", "1,1,1", "--no-verify",
                                     "--out", os.path.join(tmpfs, "f")], outputs=[os.path.join(tmpfs, "f")])
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "mcufit"))
    ap.add_argument("--md", help="also write the table as Markdown to this file")
    ap.add_argument("--only", help="run the cases whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} not found: cargo build --release -p mcufit-cli")
    work = tempfile.mkdtemp(prefix="mcufit-bad-")
    tmpfs = os.path.join(work, "full")
    os.makedirs(tmpfs)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", tmpfs],
                             capture_output=True).returncode == 0
    if not mounted:
        print("note: cannot mount a tmpfs (needs root): the full-disk cases are skipped", file=sys.stderr)
    t_build = time.monotonic()
    try:
        cases = build(work, binary, tmpfs if mounted else None)
        print(f"{len(cases)} cases (fixtures built in {time.monotonic() - t_build:.1f} s)", file=sys.stderr)
        rows = []
        for i, c in enumerate(cases):
            if a.only and a.only not in c.name:
                continue
            cwd = os.path.join(work, "run", str(i))
            os.makedirs(cwd)
            code, msg, wall, rss, flags = run_case(binary, c, cwd)
            rows.append((c, code, msg, wall, rss, flags))
            shutil.rmtree(cwd, ignore_errors=True)
            if mounted:
                for n in os.listdir(tmpfs):  # each full-disk case starts from the same empty tmpfs
                    p = os.path.join(tmpfs, n)
                    shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    finally:
        if mounted:
            subprocess.run(["umount", tmpfs])
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"scratch kept in {work}", file=sys.stderr)

    def cell(s):
        s = s.replace("|", "\\|").replace(work, "…")
        return s if len(s) <= 150 else s[:147] + "…"
    lines = ["| # | case | exit | time | max RSS | flags | first line of the message |",
             "|---|---|---|---|---|---|---|"]
    for i, (c, code, msg, wall, rss, flags) in enumerate(rows, 1):
        lines.append(f"| {i} | {cell(c.name)} | {code} | {wall:.2f} s | {rss / 1024:.0f} MB | "
                     f"{' '.join(flags) or 'clean'} | {cell(msg)} |")
    kinds = ["panic", "abort", "hang", "rss", "modified", "partial", "json", "exit"]
    counts = {k: sum(k in r[5] for r in rows) for k in kinds}
    codes = {}
    for r in rows:
        codes[r[1]] = codes.get(r[1], 0) + 1
    clean = sum(not r[5] for r in rows)
    worst_t = max(rows, key=lambda r: r[3])
    worst_m = max(rows, key=lambda r: r[4])
    total = (f"**{len(rows)} cases: {clean} clean**; " + ", ".join(f"{counts[k]} {k}" for k in kinds)
             + f". Exit codes: " + ", ".join(f"{k}: {v}" for k, v in sorted(codes.items()))
             + f". Slowest {worst_t[3]:.2f} s ({worst_t[0].name}); largest RSS {worst_m[4] / 1024:.0f} MB "
             + f"({worst_m[0].name}); all cases {sum(r[3] for r in rows):.0f} s."
             + ("" if mounted else " Full-disk cases skipped (no tmpfs)."))
    table = "\n".join(lines) + "\n\n" + total + "\n"
    print(table)
    if a.md:
        with open(a.md, "w") as f:
            f.write(table)
    sys.exit(1 if clean < len(rows) else 0)


if __name__ == "__main__":
    main()
