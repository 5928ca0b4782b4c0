"""Building the frozen-feature cache with and without BatchNorm folded into the convolutions.

    python benchmarks/cache_build.py                       # Lite0, 512 images, 224 px
    python benchmarks/cache_build.py --images 16 --size 64 --repeats 1   # a quick check

Builds :class:`easytl.training.feeds.CachedFeed` over the same images in one
process, alternating folded / unfolded builds (``--repeats`` of each, the
fastest kept), and prints one JSON line: images/s of each, their ratio, the
one-off cost of folding per build (copy + check on two images; it dominates
at a few dozen images), and the largest difference between the two caches
(relative to the largest activation), so a speed-up is never bought with
different features.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--start", type=int, default=None,
                        help="frozen stages cached (default: all but the last)")
    parser.add_argument("--precision", default="auto", choices=["auto", "no", "bf16", "fp16"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args(argv)


def build(feeds, model, feed, start, accelerator, fold: bool):
    """One cache build; ``fold=False`` runs the frozen stages as they are."""
    real = feeds.fold_batchnorm
    if not fold:
        feeds.fold_batchnorm = lambda module, example, *args, **kwargs: module
    try:
        began = time.perf_counter()
        cache = feeds.CachedFeed.build(model, feed, start, 1, False, accelerator)
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        return cache, time.perf_counter() - began
    finally:
        feeds.fold_batchnorm = real


def main(argv=None) -> dict:
    from easytl import make_textures
    from easytl.data.augment import Preprocessor
    from easytl.data.sources import as_image_source
    from easytl.models.adapters import create_backbone
    from easytl.models.device import make_accelerator
    from easytl.models.network import TransferModel
    from easytl.training import feeds

    args = parse_args(argv)
    backbone = create_backbone(args.backbone, "default", image_size=args.size)
    model = TransferModel(backbone, torch.nn.Linear(backbone.num_features, 4))
    model.requires_grad_(False)
    start = len(backbone.stages) - 1 if args.start is None else args.start
    accelerator = make_accelerator(args.device, args.precision)
    model.to(accelerator.device, memory_format=torch.channels_last)
    X, y = make_textures(n_per_class=max(1, args.images // 4), size=args.size, random_state=0)
    source, _ = as_image_source(X, None, size=args.size)
    config = backbone.data_config
    feed = feeds.ImageFeed(source, np.unique(y, return_inverse=True)[1],
                           Preprocessor(args.size, config["mean"], config["std"], augment=None),
                           args.batch_size, accelerator.device)
    build(feeds, model, feed, start, accelerator, fold=True)  # warm-up: allocator, kernels
    seconds = {True: [], False: []}
    caches = {}
    for _ in range(args.repeats):
        for fold in (True, False):
            caches[fold], took = build(feeds, model, feed, start, accelerator, fold)
            seconds[fold].append(took)
    example = next(iter(feed.ordered()))[0][:2]
    prefix = torch.nn.Sequential(*backbone.stages[:start]).eval()
    began = time.perf_counter()
    feeds.fold_batchnorm(prefix, example)
    fold_s = time.perf_counter() - began
    folded, plain = caches[True].all_rows().float(), caches[False].all_rows().float()
    result = {
        "backbone": args.backbone, "images": len(feed), "size": args.size, "start": start,
        "stages": len(backbone.stages), "precision": accelerator.mixed_precision,
        "device": str(accelerator.device),
        "folded_img_s": round(len(feed) / min(seconds[True]), 1),
        "unfolded_img_s": round(len(feed) / min(seconds[False]), 1),
        "fold_s": round(fold_s, 3),
        "max_rel_diff": float((folded - plain).abs().max() / plain.abs().max().clamp_min(1e-12)),
    }
    result["speedup"] = round(result["folded_img_s"] / result["unfolded_img_s"], 2)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
