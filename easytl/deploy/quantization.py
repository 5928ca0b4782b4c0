"""Post-training int8 quantization of exported graphs (``export_model(..., quantize="int8")``).

Only the backbone is quantized: it holds nearly all of the compute, and
EfficientNet-Lite was designed for int8 (ReLU6, no squeeze-excite). The
preprocessing (a resize of whole pixel values), the head (a few thousand
multiply-adds), the temperature, the softmax and the novelty score stay fp32,
so what the graph adds around the network is exact and the novelty distances,
which a threshold cuts, are not rounded a second time.

Calibration images enter through the graph's own input, uint8 (N, H, W, 3), so
the ranges are those of real inputs after the graph's own resize and
normalisation. ONNX: ONNX Runtime's static QDQ quantization, int8 weights per
output channel (7 bits used: ``reduce_range``, see :func:`int8_nodes`), int8
activations, min/max ranges; the first convolution stays fp32. OpenVINO: NNCF's
``nncf.quantize`` on the model converted from the ONNX export, with its full
(not fast) bias correction.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np

CALIBRATION_BATCH = 16


def calibration_batches(calibration, image_size: int, n_images: int = 300,
                        random_state: int = 0) -> list[np.ndarray]:
    """``calibration`` (any form ``predict`` takes) → uint8 (n, H, W, 3) batches of at most
    ``n_images`` images (a seeded random subset when there are more)."""
    from ..data.sources import as_image_source, batches
    if calibration is None:
        raise ValueError("quantize='int8' needs calibration images: pass calibration=X with a few "
                         "hundred training images (an array, a list of files or a folder; "
                         "`easytl export --calibration DIR`). A fitted classifier does not keep "
                         "its training or held-out images.")
    if int(n_images) < 1:
        raise ValueError(f"n_calibration must be at least 1, got {n_images}.")
    source, _ = as_image_source(calibration, None, size=image_size, name="calibration")
    if len(source) > n_images:
        rng = np.random.default_rng(random_state)
        source = source.subset(np.sort(rng.choice(len(source), int(n_images), replace=False)))
    return [images.permute(0, 2, 3, 1).contiguous().numpy()
            for images, _ in batches(source, None, CALIBRATION_BATCH, num_workers="auto")]


def quantize_onnx(fp32_path: str, out_path: str, batches: list[np.ndarray]) -> None:
    """Write the int8 (QDQ) version of the fp32 export ``fp32_path`` to ``out_path``."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    class Reader(CalibrationDataReader):
        """The batches, one range at a time (``set_range``: ONNX Runtime's strided calibration)."""

        def __init__(self):
            self.set_range(0, len(batches))

        def __len__(self):
            return len(batches)

        def set_range(self, start_index: int, end_index: int):
            self.batches = iter(batches[start_index:end_index])

        def get_next(self):
            images = next(self.batches, None)
            return None if images is None else {"images": images}

    model = onnx.load(fp32_path)
    quantized = int8_nodes(model)
    excluded = [node.name for node in model.graph.node if node.name not in quantized]
    # quant_pre_process (symbolic shape inference) fails on the antialiased Resize, and the
    # quantizer then logs, twice, on the root logger, that it was not run: not the user's to act on.
    with _without_log_lines("Please consider"):
        quantize_static(fp32_path, out_path, Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=excluded,
                        # ranges merged after every batch: the calibrator otherwise keeps every
                        # intermediate tensor of every batch in memory (GBs at 224 px)
                        extra_options={"CalibStridedMinMax": 1})


@contextlib.contextmanager
def _without_log_lines(prefix: str):
    """Drop root-logger records whose message starts with ``prefix`` inside the block."""
    class Drop(logging.Filter):
        def filter(self, record):
            return not str(record.msg).startswith(prefix)
    drop = Drop()
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)


MIN_CLASS_IMAGES = 10  # calibration images a class needs for a threshold of its own


def int8_unknown_thresholds(threshold: float, novelty32: np.ndarray, novelty8: np.ndarray,
                            labels: np.ndarray, n_classes: int,
                            per_class: bool) -> tuple[float, list | None]:
    """The novelty thresholds of the int8 model: overall, and per predicted class.

    int8 rounding adds noise to the pooled features, which the Mahalanobis
    distance weighs in every low-variance direction, and how much depends on the
    image: on the textures, images of uniform noise scored ~150 in int8 against
    ~15 in fp32, stripes ~35 against ~12. The int8 threshold is the int8 score at
    the rank the fp32 threshold takes among the fp32 scores of the same
    calibration images (:func:`matched_threshold`), both scores the exported
    graph's own ``novelty`` output: the classifier's novelty model, the scorer
    the threshold is applied with. So int8 calls unknown the share of images fp32
    calls unknown, whichever images calibrate (training images score lower than
    new ones, and both scores move together). Novelty models refitted on the
    ~300 calibration images (cross-fitted, as easytl did before) score on
    another scale (another shrinkage, fewer images), so the fp32 threshold's rank
    among their scores meant nothing. One threshold for all classes would be
    pulled up by the noisiest class and let drifted images of the others through,
    so single-label models get one per predicted class (classes with fewer than
    ``MIN_CLASS_IMAGES`` calibration images: the overall one).
    """
    overall = matched_threshold(threshold, novelty32, novelty8)
    if not per_class:
        return overall, None
    labels = np.asarray(labels)
    return overall, [matched_threshold(threshold, novelty32[labels == k], novelty8[labels == k])
                     if np.sum(labels == k) >= MIN_CLASS_IMAGES else overall
                     for k in range(n_classes)]


def matched_threshold(threshold: float, reference: np.ndarray, scores: np.ndarray) -> float:
    """The value ``scores`` take at the rank ``threshold`` has among ``reference`` (two scores
    of the same images), interpolated between neighbouring ranks; beyond the largest (or
    smallest) reference score, ``threshold`` moved in quadrature as that extreme moves
    (``sqrt(t² + s_max² - r_max²)``). Exact whenever ``scores`` are any increasing function
    of ``reference``."""
    reference, scores = np.sort(np.asarray(reference, np.float64)), np.sort(np.asarray(scores, np.float64))
    k = int(np.searchsorted(reference, threshold, side="right"))  # reference scores <= threshold
    if k in (0, len(reference)):
        i = 0 if k == 0 else -1
        return float(np.sqrt(max(threshold ** 2 + scores[i] ** 2 - reference[i] ** 2, 0.0)))
    low, high = reference[k - 1], reference[k]
    weight = (threshold - low) / (high - low) if high > low else 0.5
    return float(scores[k - 1] + weight * (scores[k] - scores[k - 1]))


def graph_outputs(run, batches: list[np.ndarray]) -> list[np.ndarray]:
    """``run(images) -> [probabilities, novelty, features]`` over the calibration batches,
    each concatenated."""
    parts = [run(images) for images in batches]
    return [np.concatenate([np.asarray(p[i], dtype=np.float64) for p in parts])
            for i in range(len(parts[0]))]


def int8_nodes(model) -> set[str]:
    """The ONNX nodes int8 quantizes: the backbone but its first convolution (the stem).

    The stem sees the raw image, whose sharp edges int8 rounds worst, for ~3% of
    the compute. With it in int8, and without ``reduce_range`` (7-bit weights,
    which keep the int16 sums of x86 CPUs without VNNI from saturating), a Lite0
    probe on scikit-learn digits at 64 px agreed with fp32 on 74% of held-out
    images on an AVX2 machine; with both, 94%.
    """
    backbone = backbone_nodes(model)
    stem = next((node.name for node in model.graph.node
                 if node.op_type == "Conv" and node.name in backbone), None)
    return backbone - {stem}


def backbone_nodes(model) -> set[str]:
    """Names of the ONNX nodes that compute the backbone (what int8 quantizes).

    torch's exporter records each node's module path (metadata ``namespace``);
    without it, the nodes from the first convolution up to the pooled features:
    descendants of the first Conv that are neither in the novelty-only part nor
    after the last Conv's pooling (head, softmax).
    """
    nodes = list(model.graph.node)
    by_namespace = {node.name for node in nodes
                    if "model.backbone" in {p.key: p.value for p in node.metadata_props}.get(
                        "namespace", "")}
    if by_namespace:
        return by_namespace
    convs = [i for i, node in enumerate(nodes) if node.op_type == "Conv"]
    if not convs:
        return set()
    last = max(convs)
    pooled = next((i for i in range(last + 1, len(nodes))
                   if nodes[i].op_type in ("ReduceMean", "GlobalAveragePool")), last)
    reached = set(nodes[convs[0]].output)
    chosen = set()
    for node in nodes[convs[0]:pooled + 1]:
        if node is nodes[convs[0]] or reached.intersection(node.input):
            chosen.add(node.name)
            reached.update(node.output)
    return chosen


def quantize_openvino(model, onnx_model_path: str, batches: list[np.ndarray]):
    """The int8 version (NNCF) of the OpenVINO model ``model`` converted from ``onnx_model_path``;
    the ops outside the backbone are left fp32."""
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    backbone = int8_nodes(onnx.load(onnx_model_path, load_external_data=False))
    # OpenVINO names each op after the ONNX node it came from ("node_Conv_12", and
    # "node_Conv_12/WithoutBiases" for the convolution split from its bias)
    ignored = [op.get_friendly_name() for op in model.get_ops()
               if op.get_type_name() not in ("Parameter", "Result", "Constant")
               and op.get_friendly_name().split("/")[0] not in backbone]
    # NNCF gathers statistics image by image (its recommendation for batch-norm-free ranges)
    images = [image[None] for batch in batches for image in batch]
    logger = logging.getLogger("nncf")  # one INFO line per node otherwise
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        # 7-bit weights in every layer, as reduce_range for ONNX: CPUs without VNNI saturate
        # (7-bit in the first layer only: 92% agreement with fp32 on digits instead of 95%).
        # fast_bias_correction=False: NNCF's full bias correction, which re-fits each layer's
        # bias on the calibration images with the layers below it already int8; on digits
        # (Lite0 probe, 64 px) int8 lost 0.2 point against PyTorch fp32 instead of 1.1 (97%
        # label agreement instead of 95%), for a slower export and the same graph to run.
        return nncf.quantize(model, nncf.Dataset(images), subset_size=len(images),
                             fast_bias_correction=False,
                             ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
                             advanced_parameters=AdvancedQuantizationParameters(
                                 overflow_fix=OverflowFix.ENABLE))
    finally:
        logger.setLevel(level)
