"""``easytl serve`` under load: 16 concurrent clients, 1,000 requests, against the command itself.

    python benchmarks/serve_load.py [--requests 1000] [--clients 16] [--model model.easytl]
    python benchmarks/serve_load.py --quick        # 50 requests at 64 px: proves the script works

Starts ``easytl serve`` in a subprocess on a free port (default batching: --max-batch 32,
--max-wait-ms 5), sends one JPEG per request (multipart) from ``--clients`` asyncio tasks
over one httpx client, and reports: errors (must be 0), p50/p95/max latency, requests/s,
forward passes (from /health), the server's resident memory after start, after a warm-up
and after the load (growth), and the in-process ``predict`` throughput on the same image
files for comparison. Without ``--model`` it fits a pretrained EfficientNet-Lite0 linear
probe on the synthetic textures at ``--image-size`` (224 px; 64 with --quick) first.
Exit code 1 when any request failed. The client runs on the same machine as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def cpu_features() -> str:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown CPU"
    found = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    return ", ".join(found) or "no AVX2"


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (from /proc; psutil where /proc is missing)."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import psutil
    return psutil.Process(pid).memory_info().rss / 2 ** 20


def fit_model(folder: Path, image_size: int) -> Path:
    from easytl import Phase, TransferClassifier, make_textures
    X, y = make_textures(n_per_class=40, size=image_size, random_state=0)
    clf = TransferClassifier("efficientnet_lite0", image_size=image_size, head="linear",
                             schedule=[Phase(1, 0, probe=True, name="probe")], val_size=0.25,
                             random_state=0, verbose=0)
    return clf.fit(X, y).save(folder / "model.easytl")


def request_images(folder: Path, n: int, side: int) -> list[Path]:
    """``n`` distinct JPEG files (textures drawn at ``side`` px, as a camera would send them)."""
    from PIL import Image

    from easytl import make_textures
    X, _ = make_textures(n_per_class=max(1, -(-n // 4)), size=side, random_state=1)
    paths = []
    for i, image in enumerate(X[:n]):
        path = folder / f"request_{i}.jpg"
        Image.fromarray((image * 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, args) -> subprocess.Popen:
    import httpx
    command = [sys.executable, "-m", "easytl", "serve", str(model), "--port", str(port),
               "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"easytl serve exited with {process.returncode}:\n"
                               f"{process.stderr.read()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("easytl serve did not answer /health within 300 s")


async def load(url: str, payloads: list[tuple[str, bytes]], n_requests: int, n_clients: int):
    """Send ``n_requests`` from ``n_clients`` concurrent tasks; (latencies in s, errors, wall s)."""
    import httpx
    latencies, errors = [], []
    counter = iter(range(n_requests))

    async def client(http):
        for i in counter:
            name, data = payloads[i % len(payloads)]
            start = time.perf_counter()
            try:
                response = await http.post(url + "/predict", files=[("files", (name, data, "image/jpeg"))])
                if response.status_code != 200 or "predictions" not in response.json():
                    errors.append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - start)
    limits = httpx.Limits(max_connections=n_clients, max_keepalive_connections=n_clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(n_clients)))
        wall = time.perf_counter() - start
    return np.array(latencies), errors, wall


def in_process(model: Path, paths: list[Path], n_images: int) -> float:
    """images/s of ``predict`` on the same files, in this process (one call, its batching)."""
    from easytl import TransferClassifier
    clf = TransferClassifier.load(model)
    clf.verbose = 0
    files = [str(paths[i % len(paths)]) for i in range(n_images)]
    clf.predict(files[:8])  # warm-up: the first call pays one-off setup
    start = time.perf_counter()
    clf.predict(files)
    return n_images / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--model", type=Path, default=None,
                        help="a saved model (default: fit a Lite0 probe on the textures)")
    parser.add_argument("--image-size", type=int, default=224, help="when fitting the model")
    parser.add_argument("--request-side", type=int, default=640, help="side of the JPEGs sent")
    parser.add_argument("--distinct", type=int, default=64, help="distinct request images")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true",
                        help="50 requests, 64 px model, 128 px images: proves the script works")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.image_size, args.request_side, args.distinct = 50, 64, 128, 16
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model or fit_model(folder, args.image_size)
        paths = request_images(folder, args.distinct, args.request_side)
        payloads = [(p.name, p.read_bytes()) for p in paths]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(model, port, args)
        try:
            rss_start = rss_mb(server.pid)
            warm, warm_errors, _ = asyncio.run(load(url, payloads, min(64, args.requests),
                                                    args.clients))
            rss_warm = rss_mb(server.pid)
            before = httpx.get(url + "/health").json()
            latencies, errors, wall = asyncio.run(load(url, payloads, args.requests, args.clients))
            after = httpx.get(url + "/health").json()
            rss_after = rss_mb(server.pid)
            alive = server.poll() is None
        finally:
            server.terminate()
            server.wait(timeout=60)
        predict_rate = in_process(model, paths, args.requests)

    errors = warm_errors + errors
    passes = after["forward_passes"] - before["forward_passes"]
    result = {
        "requests": args.requests, "clients": args.clients, "errors": len(errors),
        "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
        "p95_ms": round(1000 * float(np.percentile(latencies, 95)), 1),
        "max_ms": round(1000 * float(latencies.max()), 1),
        "requests_per_s": round(args.requests / wall, 1),
        "predict_images_per_s": round(predict_rate, 1),
        "forward_passes": passes, "mean_batch": round(args.requests / max(passes, 1), 2),
        "rss_start_mb": round(rss_start, 1), "rss_warm_mb": round(rss_warm, 1),
        "rss_after_mb": round(rss_after, 1), "rss_growth_mb": round(rss_after - rss_warm, 1),
        "server_alive": alive, "image_size": args.image_size, "request_side": args.request_side,
        "cpu": f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores; {cpu_features()})",
    }
    print("| requests | clients | errors | p50 ms | p95 ms | requests/s | in-process predict "
          "images/s | mean batch | server RSS after warm-up → after load (MB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    print(f"| {result['requests']} | {result['clients']} | {result['errors']} | {result['p50_ms']} | "
          f"{result['p95_ms']} | {result['requests_per_s']} | {result['predict_images_per_s']} | "
          f"{result['mean_batch']} | {result['rss_warm_mb']} → {result['rss_after_mb']} |")
    print(json.dumps(result))
    for error in errors[:5]:
        print("error:", error, file=sys.stderr)
    return 1 if errors or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
