"""``easytl serve``: real HTTP requests against the app running on uvicorn, a battery of bad
uploads, dynamic batching, the page in headless Chromium, and the command's arguments."""

import asyncio
import base64
import functools
import io
import socket
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

import easytl
from easytl import TransferClassifier, make_textures
from easytl.deploy.serve.batching import DynamicBatcher
from easytl.deploy.serve.model import Outputs
from easytl.deploy.serve.uploads import UploadError, check_header

from conftest import chromium, tiny_cnn, tiny_kwargs

httpx = pytest.importorskip("httpx", reason="httpx is a dev dependency")
pytest.importorskip("fastapi", reason="easytl serve needs the serve extra")
pytest.importorskip("uvicorn", reason="easytl serve needs the serve extra")
pytest.importorskip("multipart", reason="easytl serve needs the serve extra")

MAX_IMAGES, MAX_PIXELS, MAX_UPLOAD_MB = 4, 1_000_000, 1


# --------------------------------------------------------------------------- helpers

def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@functools.lru_cache(maxsize=1)
def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid 1-bit PNG of width x height black pixels: ~110 KB on disk, 2.7 GB once decoded
    as RGB. Written chunk by chunk, so making it needs no big buffer either."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    packer = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    rows = row * 1000
    data = b"".join(packer.compress(rows) for _ in range(height // 1000)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny CNN fitted on 32 px textures, saved and loaded again; and held-out PNG files."""
    folder = tmp_path_factory.mktemp("serve")
    X, y = make_textures(n_per_class=12, size=32, random_state=0)
    X = (X * 255).astype(np.uint8)
    held_out = np.arange(len(X)) % 6 == 0
    model = TransferClassifier(**tiny_kwargs(epochs=1)).fit(X[~held_out], y[~held_out]).save(
        folder / "model.easytl")
    paths = []
    for i, image in enumerate(X[held_out]):
        paths.append(folder / f"image_{i}.png")
        paths[-1].write_bytes(encode(image))
    return TransferClassifier.load(model, backbone=tiny_cnn()), model, paths


@pytest.fixture(scope="module")
def server(fitted):
    """The app on uvicorn, in a background thread on a free port, with small limits: real HTTP.
    Yields (url, thread)."""
    import uvicorn

    from easytl.deploy.serve import create_app
    clf, _, _ = fitted
    app = create_app(clf, max_images=MAX_IMAGES, max_pixels=MAX_PIXELS, max_upload_mb=MAX_UPLOAD_MB,
                     max_wait_ms=200)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("the server did not start within 60 s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{listening.getsockname()[1]}", thread
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listening.close()


def files_of(paths):
    return [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]


# --------------------------------------------------------------------------- the running server

@pytest.mark.slow
def test_health_and_model_describe_the_served_model(server, fitted):
    url, _ = server
    clf, _, _ = fitted
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and health["forward_passes"] >= 0
    info = httpx.get(url + "/model").json()
    assert info["classes"] == list(clf.classes_)
    assert info["input_size"] == clf.image_size_ == 32
    assert info["backbone"] == "Sequential"  # a custom module: its class name
    assert info["easytl_version"] == easytl.__version__
    assert info["multi_label"] is False and info["reject_unknown"] is True
    assert info["limits"]["max_images"] == MAX_IMAGES and info["limits"]["max_pixels"] == MAX_PIXELS
    # FastAPI's /docs and /redoc pages load scripts from a CDN: not served
    assert httpx.get(url + "/docs").status_code == httpx.get(url + "/redoc").status_code == 404


@pytest.mark.slow
def test_predict_multipart_and_base64_answer_as_predict_proba_does(server, fitted):
    url, _ = server
    clf, _, paths = fitted
    paths = paths[:MAX_IMAGES]
    expected = clf.predict_proba([str(p) for p in paths])
    novelty = clf.novelty_score([str(p) for p in paths])
    multipart = httpx.post(url + "/predict", files=files_of(paths),
                           params={"top_k": 2, "reject_unknown": "true"})
    assert multipart.status_code == 200, multipart.text
    encoded = [base64.b64encode(p.read_bytes()).decode() for p in paths]
    as_json = httpx.post(url + "/predict", json={"images": encoded, "top_k": 2, "reject_unknown": True})
    assert as_json.status_code == 200, as_json.text
    for response in (multipart, as_json):
        rows = response.json()["predictions"]
        assert len(rows) == len(paths)
        for row, proba, score in zip(rows, expected, novelty):
            order = np.argsort(-proba)[:2]
            assert [t["label"] for t in row["top_k"]] == list(clf.classes_[order])
            np.testing.assert_allclose([t["probability"] for t in row["top_k"]], proba[order], atol=1e-4)
            assert row["novelty"] == pytest.approx(float(score), rel=1e-3, abs=1e-3)
            assert row["unknown"] == bool(score > clf.unknown_threshold_)
            assert row["label"] == ("unknown" if row["unknown"] else clf.classes_[order[0]])
    assert [r["name"] for r in multipart.json()["predictions"]] == [p.name for p in paths]


@pytest.mark.slow
def test_concurrent_requests_share_forward_passes(server, fitted):
    url, _ = server
    clf, _, paths = fitted
    n = 12
    expected = clf.predict([str(paths[i % len(paths)]) for i in range(n)])
    before = httpx.get(url + "/health").json()

    def one(i):
        return httpx.post(url + "/predict", files=files_of([paths[i % len(paths)]]), timeout=60)
    with ThreadPoolExecutor(n) as pool:
        responses = list(pool.map(one, range(n)))
    after = httpx.get(url + "/health").json()
    assert [r.status_code for r in responses] == [200] * n
    assert [r.json()["predictions"][0]["label"] for r in responses] == list(expected)
    assert after["images"] - before["images"] == n
    passes = after["forward_passes"] - before["forward_passes"]
    assert 1 <= passes < n, f"{n} concurrent requests took {passes} forward passes"
    assert after["largest_batch"] > 1


@pytest.mark.slow
def test_explain_returns_a_grad_cam_overlay(server, fitted):
    url, _ = server
    clf, _, paths = fitted
    response = httpx.post(url + "/explain", files=files_of(paths[:1]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] == clf.predict([str(paths[0])])[0]
    assert body["overlay"].startswith("data:image/png;base64,")
    picture = Image.open(io.BytesIO(base64.b64decode(body["overlay"].split(",", 1)[1])))
    assert picture.format == "PNG" and picture.size == (224, 224)


def bad_uploads(paths):
    """(what, request keyword arguments, expected status) for every kind of bad upload."""
    good = paths[0].read_bytes()
    jpeg = encode(np.asarray(Image.open(paths[0]).convert("RGB").resize((64, 64))), "JPEG")
    big = encode(np.zeros((1100, 1000, 3), np.uint8))  # 1.1 MP: over --max-pixels, under the MB
    noise = np.random.default_rng(0).integers(0, 256, MAX_UPLOAD_MB * 2 ** 20 + 4096, dtype=np.uint8)
    return [
        ("not an image", dict(files=[("files", ("a.png", b"hello, not an image"))]), 400),
        ("truncated JPEG", dict(files=[("files", ("a.jpg", jpeg[:len(jpeg) // 2]))]), 400),
        ("0 bytes", dict(files=[("files", ("a.png", b""))]), 400),
        ("30,000 x 30,000 PNG bomb", dict(files=[("files", ("bomb.png", png_bomb()))]), 413),
        ("over --max-pixels", dict(files=[("files", ("big.png", big))]), 413),
        ("wrong field name", dict(files=[("image", ("a.png", good))]), 400),
        ("text in the files field", dict(data={"files": "a.png"}, files=[("x", ("", b""))]), 400),
        ("no images", dict(json={"images": []}), 400),
        ("bad base64", dict(json={"images": ["not base64!"]}), 400),
        ("base64 of a non-image", dict(json={"images": [base64.b64encode(b"text").decode()]}), 400),
        ("images not a list", dict(json={"images": "abc"}), 400),
        ("invalid JSON", dict(content=b"{not json", headers={"content-type": "application/json"}), 400),
        ("unknown JSON key", dict(json={"pictures": []}), 400),
        ("too many images", dict(files=files_of([paths[0]] * (MAX_IMAGES + 1))), 413),
        ("too many base64 images",
         dict(json={"images": [base64.b64encode(good).decode()] * (MAX_IMAGES + 1)}), 413),
        ("body over --max-upload-mb", dict(files=[("files", ("n.png", noise.tobytes()))]), 413),
        ("streamed body over --max-upload-mb (no Content-Length)",
         dict(content=iter([b"[" + b" " * 2 ** 16] * (MAX_UPLOAD_MB * 16 + 1)),
              headers={"content-type": "application/json"}), 413),
        ("raw bytes", dict(content=good, headers={"content-type": "image/png"}), 415),
        ("top_k not a number", dict(files=[("files", ("a.png", good))], params={"top_k": "x"}), 422),
        ("top_k 0", dict(files=[("files", ("a.png", good))], params={"top_k": "0"}), 422),
        ("reject_unknown not a flag",
         dict(files=[("files", ("a.png", good))], params={"reject_unknown": "maybe"}), 422),
        ("unknown query parameter", dict(files=[("files", ("a.png", good))], params={"k": "1"}), 400),
    ]


@pytest.mark.slow
def test_every_bad_upload_gets_a_4xx_with_a_message_and_the_server_keeps_serving(server, fitted):
    url, thread = server
    clf, _, paths = fitted
    answers = {}
    for what, request, _ in bad_uploads(paths):
        response = httpx.post(url + "/predict", timeout=60, **request)
        answers[what] = response.status_code, response.json().get("detail")
    expected = {what: status for what, _, status in bad_uploads(paths)}
    assert {what: status for what, (status, _) in answers.items()} == expected
    assert all(isinstance(detail, str) and len(detail) > 10 for _, detail in answers.values())
    assert "30000 x 30000" in answers["30,000 x 30,000 PNG bomb"][1] or \
        "too large" in answers["30,000 x 30,000 PNG bomb"][1]
    assert "'files'" in answers["wrong field name"][1]
    # still serving, with the right answer, in the same process
    response = httpx.post(url + "/predict", files=files_of(paths[:1]))
    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] == clf.predict([str(paths[0])])[0]
    assert thread.is_alive()


@pytest.mark.slow
def test_the_page_shows_the_label_and_grad_cam_in_headless_chromium(server, fitted):
    playwright, browser_path = chromium()
    url, _ = server
    clf, _, paths = fitted
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("requestfailed", lambda request: errors.append(request.url))
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('about').textContent.includes('classes')")
        page.set_input_files("#files", str(paths[0]))
        page.wait_for_selector("img.overlay", timeout=30_000)
        label = page.text_content(".card .label")
        bars = page.locator(".card .bar").count()
        overlay_width = page.evaluate("document.querySelector('img.overlay').naturalWidth")
        remote = page.evaluate("Array.from(document.querySelectorAll('script[src], link[href]'))"
                               ".length")
        browser.close()
    assert label == clf.predict([str(paths[0])])[0]
    assert bars == min(5, len(clf.classes_)) and overlay_width == 224
    assert remote == 0 and errors == []


@pytest.mark.slow
def test_cli_binds_localhost_by_default_and_warns_on_every_interface(fitted, monkeypatch, capsys):
    import uvicorn

    import easytl.deploy.serve
    from easytl.cli import main
    _, model, _ = fitted
    calls, apps = [], []
    monkeypatch.setattr(easytl.deploy.serve, "create_app", lambda path, **limits: apps.append((path, limits)))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    assert main(["serve", str(model)]) == 0
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8000
    assert apps[-1] == (str(model), dict(max_batch=32, max_wait_ms=5.0, max_upload_mb=32.0,
                                         max_images=64, max_pixels=40_000_000))
    assert "warning" not in capsys.readouterr().err
    assert main(["serve", str(model), "--host", "0.0.0.0", "--port", "9001"]) == 0
    assert calls[-1]["host"] == "0.0.0.0" and calls[-1]["port"] == 9001
    assert "easytl: warning: binding 0.0.0.0" in capsys.readouterr().err


@pytest.mark.slow
def test_a_multi_label_model_answers_every_label_as_predict_does(fitted, tmp_path):
    from fastapi.testclient import TestClient

    from easytl.deploy.serve import create_app
    _, _, paths = fitted
    X, y = make_textures(n_per_class=8, size=32, random_state=0)
    tags = [(c,) if i % 3 else (c, "extra") for i, c in enumerate(y)]
    clf = TransferClassifier(**tiny_kwargs(epochs=1)).fit(X, tags)
    expected = clf.predict([str(p) for p in paths[:MAX_IMAGES]])
    with TestClient(create_app(clf)) as client:
        rows = client.post("/predict", files=files_of(paths[:MAX_IMAGES])).json()["predictions"]
        assert client.get("/model").json()["multi_label"] is True
    assert [tuple(r["labels"]) for r in rows] == [tuple(e) for e in expected]
    assert all("label" not in r for r in rows)


# --------------------------------------------------------------------------- parts, no server

def test_header_check_refuses_a_png_bomb_before_decoding_it():
    with pytest.raises(UploadError) as refused:
        check_header(png_bomb(), "bomb.png", max_pixels=40_000_000)
    assert refused.value.status == 413
    with pytest.raises(UploadError) as over:
        check_header(encode(np.zeros((20, 30, 3), np.uint8)), "small.png", max_pixels=599)
    assert over.value.status == 413 and "30 x 20 = 600 pixels" in over.value.message
    check_header(encode(np.zeros((20, 30, 3), np.uint8)), "small.png", max_pixels=600)


def test_batcher_gives_each_caller_its_own_rows_from_shared_forward_passes():
    calls = []

    def forward(images):
        calls.append(len(images))
        proba = images.float().mean(dim=(1, 2, 3)).numpy()[:, None]
        return Outputs(proba, proba[:, 0] * 2)

    async def scenario():
        batcher = DynamicBatcher(forward, max_batch=8, max_wait_ms=50)
        await batcher.start()
        requests = [torch.full((1 + i % 3, 3, 2, 2), i, dtype=torch.uint8) for i in range(10)]
        try:
            return requests, await asyncio.gather(*(batcher.submit(r) for r in requests)), batcher
        finally:
            await batcher.stop()
    requests, answers, batcher = asyncio.run(scenario())
    for request, answer in zip(requests, answers):
        assert answer.proba.shape == (len(request), 1)
        np.testing.assert_array_equal(answer.proba[:, 0], request[:, 0, 0, 0].float().numpy())
        np.testing.assert_array_equal(answer.novelty, answer.proba[:, 0] * 2)
    assert sum(calls) == sum(len(r) for r in requests) == 19
    assert max(calls) <= 8 and len(calls) < 10
    assert batcher.stats.as_dict() == {"requests": 10, "images": 19, "forward_passes": len(calls),
                                       "largest_batch": max(calls)}


def test_create_app_leaves_the_callers_estimator_as_it_was(fitted):
    """Serving a fitted classifier must not move its network (device, channels-last layout,
    train/eval mode) under the caller, who may go on fitting or predicting with it."""
    from easytl.deploy.serve import create_app
    clf, _, _ = fitted
    model = clf.model_
    model.train()  # a caller mid-experiment: the served copy is put in eval mode, not theirs
    before = {name: (t.device, t.stride(), t.data_ptr()) for name, t in model.state_dict().items()}
    try:
        create_app(clf)
        assert clf.model_ is model and model.training
        after = {name: (t.device, t.stride(), t.data_ptr()) for name, t in model.state_dict().items()}
        assert after == before
    finally:
        model.eval()


def test_batcher_stop_answers_every_queued_request():
    """Requests still queued when the server stops get an answer (their outputs, or an error
    saying the server stopped) before ``stop`` returns: none is left waiting for ever."""
    import time as clock

    def slow_forward(images):
        clock.sleep(0.05)
        proba = images.float().mean(dim=(1, 2, 3)).numpy()[:, None]
        return Outputs(proba, None)

    async def scenario():
        batcher = DynamicBatcher(slow_forward, max_batch=1, max_wait_ms=0)
        await batcher.start()
        requests = [asyncio.ensure_future(batcher.submit(torch.full((1, 3, 2, 2), i, dtype=torch.uint8)))
                    for i in range(6)]
        await asyncio.sleep(0.02)  # the first pass is running, the others wait in the queue
        await asyncio.wait_for(batcher.stop(), 10)
        assert all(r.done() for r in requests), "stop returned with requests still waiting"
        return await asyncio.wait_for(asyncio.gather(*requests, return_exceptions=True), 1)
    answers = asyncio.run(scenario())
    for i, answer in enumerate(answers):
        if isinstance(answer, Exception):
            assert isinstance(answer, RuntimeError) and "stopp" in str(answer), answer
        else:
            assert answer.proba[0, 0] == i
    assert not isinstance(answers[0], Exception)  # the pass under way finishes


def test_request_parts_parse_json_and_options_without_a_server():
    from easytl.deploy.serve.requests import Limits, parse_options, read_json
    limits = Limits(max_images=2)
    options = {"top_k": "1"}  # from the query string: it wins over the body's
    png = encode(np.zeros((4, 4, 3), np.uint8))
    images = read_json(b'{"images": ["%s"], "top_k": 3, "reject_unknown": true}'
                       % base64.b64encode(png), options, limits)
    assert images == [("images[0]", png)] and options == {"top_k": "1", "reject_unknown": True}
    assert parse_options(options, n_classes=4, has_novelty=True) == (1, True)
    assert parse_options({"top_k": 9}, n_classes=4, has_novelty=False) == (4, False)
    with pytest.raises(UploadError, match="no novelty statistics"):
        parse_options({"reject_unknown": "yes"}, n_classes=4, has_novelty=False)
    with pytest.raises(UploadError, match="too many images"):
        read_json(b'{"images": ["", "", ""]}', {}, limits)


def test_service_answers_with_the_one_unknown_rule():
    """A row's label, labels and unknown flag come from easytl.trust.unknown.decide."""
    from types import SimpleNamespace

    from easytl.deploy.serve.service import Service
    served = SimpleNamespace(classes=["a", "b", "c"], multi_label=False, thresholds=None,
                             unknown_threshold=2.0, has_novelty=True)
    service = Service(served, batcher=None, limits=None, version="x")
    proba = np.array([0.2, 0.5, 0.3])
    row = service.answer("x.png", proba, 1.5, top_k=2, reject_unknown=True)
    assert row == {"name": "x.png", "label": "b", "novelty": 1.5, "unknown": False,
                   "top_k": [{"label": "b", "probability": 0.5}, {"label": "c", "probability": 0.3}]}
    assert service.answer("x.png", proba, 2.5, 1, True)["label"] == "unknown"
    assert service.answer("x.png", proba, 2.0, 1, True)["unknown"] is False  # strictly above
    served.multi_label, served.thresholds = True, np.array([0.1, 0.6, 0.3])
    assert service.answer("x.png", proba, 0.0, 3, False)["labels"] == ["a", "c"]
    assert service.answer("x.png", proba, 3.0, 3, True)["labels"] == ["unknown"]
