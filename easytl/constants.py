"""Names and defaults that several modules (and the light-weight CLI) share, defined once.

Importing this module imports nothing else, so ``easytl --help`` stays fast.
"""

DEFAULT_BACKBONE = "efficientnet_lite0"

# The built-in schedules (``schedule=`` and ``easytl fit --schedule``); "auto" is planned
# from the data (easytl.adaptive).
SCHEDULE_NAMES = ("auto", "progressive", "fine_tune", "feature_extraction")

# ``easytl export --format`` and easytl.export.export_model.
EXPORT_FORMATS = ("onnx", "torchscript")

# RAM budget of the frozen-feature cache before it spills to disk.
DEFAULT_CACHE_MEMORY = "2GB"

# Evaluation (validation, cache building, inference) needs no gradients, so it runs in
# batches of at least this many images whatever the training batch size.
MIN_EVAL_BATCH = 64


def eval_batch_size(batch_size: int) -> int:
    """The batch size of a pass that computes no gradients."""
    return max(batch_size, MIN_EVAL_BATCH)
