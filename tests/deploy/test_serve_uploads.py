"""``POST /predict`` and ``/explain`` with an empty body, and with bad images among good ones:
each image is answered or refused in its own row (in the app, through FastAPI's TestClient)."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from easytl import TransferClassifier, make_textures

from conftest import tiny_kwargs

pytest.importorskip("httpx", reason="httpx is a dev dependency (TestClient)")
pytest.importorskip("fastapi", reason="easytl serve needs the serve extra")
pytest.importorskip("multipart", reason="easytl serve needs the serve extra")


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served():
    """(TestClient of the app, the classifier, 3 good PNG uploads as (name, bytes))."""
    from fastapi.testclient import TestClient

    from easytl.deploy.serve import create_app
    X, y = make_textures(n_per_class=6, size=32, random_state=0)
    X = (X * 255).astype(np.uint8)
    clf = TransferClassifier(**tiny_kwargs(epochs=1, val_size=0)).fit(X[3:], y[3:])
    good = [(f"good_{i}.png", png(X[i])) for i in range(3)]
    with TestClient(create_app(clf, max_pixels=100_000)) as client:
        yield client, clf, good


def expected_labels(clf, uploads):
    images = np.stack([np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for _, data in uploads])
    return list(clf.predict(images))


NO_IMAGES = "holds no images"


def test_a_request_without_a_body_is_400_no_images(served):
    client, _, _ = served
    for endpoint in ("/predict", "/explain"):
        bare = client.post(endpoint)  # no body, no content type: what `curl -X POST URL` sends
        assert bare.status_code == 400, (endpoint, bare.text)
        assert NO_IMAGES in bare.json()["detail"]
        empty_json = client.post(endpoint, content=b"", headers={"content-type": "application/json"})
        assert empty_json.status_code == 400 and NO_IMAGES in empty_json.json()["detail"]
    # a body of another kind is still refused for its content type
    raw = client.post("/predict", content=b"\x89PNG...", headers={"content-type": "image/png"})
    assert raw.status_code == 415


def test_bad_images_among_good_ones_are_answered_in_their_own_rows(served):
    client, clf, good = served
    sent = [good[0], ("notes.png", b"hello, not an image"), good[1], ("empty.png", b""),
            ("big.png", png(np.zeros((400, 400, 3), np.uint8))), good[2]]
    response = client.post("/predict", files=[("files", item) for item in sent],
                           params={"top_k": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    rows = body["predictions"]
    assert [r["name"] for r in rows] == [name for name, _ in sent]  # in the order sent
    assert body["errors"] == 3
    answered = [rows[i] for i in (0, 2, 5)]
    assert [r["label"] for r in answered] == expected_labels(clf, [good[0], good[1], good[2]])
    assert all(len(r["top_k"]) == 2 and "error" not in r for r in answered)
    for i, status, words in ((1, 400, "is not an image"), (3, 400, "is empty (0 bytes)"),
                             (4, 413, "over this server's limit")):
        assert set(rows[i]) == {"name", "error", "status"}, rows[i]  # no label, no top_k
        assert rows[i]["status"] == status and words in rows[i]["error"]
        assert rows[i]["error"].startswith(rows[i]["name"])


def test_bad_base64_among_good_images_is_answered_in_its_row(served):
    client, clf, good = served
    images = [base64.b64encode(good[0][1]).decode(), "not base64!", 7]
    response = client.post("/predict", json={"images": images})
    assert response.status_code == 200, response.text
    rows = response.json()["predictions"]
    assert rows[0]["label"] == expected_labels(clf, good[:1])[0]
    assert rows[1]["status"] == 400 and "images[1] is not valid base64" in rows[1]["error"]
    assert rows[2]["status"] == 400 and "images[2] must be a base64 string" in rows[2]["error"]


def test_when_no_image_can_be_answered_the_request_fails_with_each_reason(served):
    client, _, _ = served
    big = png(np.zeros((400, 400, 3), np.uint8))
    mixed = client.post("/predict", files=[("files", ("a.png", b"text")), ("files", ("b.png", big))])
    assert mixed.status_code == 400
    body = mixed.json()
    assert "none of the 2 images" in body["detail"]
    assert "a.png is not an image" in body["detail"] and "b.png is 400 x 400" in body["detail"]
    assert [(r["name"], r["status"]) for r in body["predictions"]] == [("a.png", 400), ("b.png", 413)]
    too_big = client.post("/predict", files=[("files", ("b.png", big)), ("files", ("c.png", big))])
    assert too_big.status_code == 413  # one reason for all: its status
    one = client.post("/predict", files=[("files", ("a.png", b""))])
    assert one.status_code == 400 and one.json()["detail"].startswith("a.png is empty (0 bytes)")


def test_explain_refuses_a_bad_image_with_the_message_predict_gives_it(served):
    client, clf, good = served
    bad = ("notes.png", b"hello, not an image")
    row = client.post("/predict", files=[("files", good[0]), ("files", bad)]).json()["predictions"][1]
    refused = client.post("/explain", files=[("files", bad)])
    assert refused.status_code == row["status"] == 400
    assert refused.json()["detail"] == row["error"]
    not_base64 = client.post("/explain", json={"images": ["not base64!"]})
    assert not_base64.status_code == 400 and "not valid base64" in not_base64.json()["detail"]
