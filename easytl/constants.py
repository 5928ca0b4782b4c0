"""Names and defaults that several modules (and the light-weight CLI) share, defined once.

Importing this module imports nothing heavy, so ``easytl --help`` stays fast.
"""

import numbers
import re

DEFAULT_BACKBONE = "efficientnet_lite0"

# The built-in schedules (``schedule=`` and ``easytl fit --schedule``); "auto" is planned
# from the data (easytl.training.adaptive).
SCHEDULE_NAMES = ("auto", "progressive", "fine_tune", "feature_extraction")

# ``easytl export --format`` and easytl.export.export_model.
EXPORT_FORMATS = ("onnx", "torchscript", "openvino")

# RAM budget of the frozen-feature cache before it spills to disk.
DEFAULT_CACHE_MEMORY = "2GB"

# Evaluation (validation, cache building, inference) needs no gradients, so it runs in
# batches of at least this many images whatever the training batch size.
MIN_EVAL_BATCH = 64


def eval_batch_size(batch_size: int) -> int:
    """The batch size of a pass that computes no gradients."""
    return max(batch_size, MIN_EVAL_BATCH)


def parse_bytes(value, name: str = "value") -> int:
    """A byte count from an int or a string such as "500MB" or "2GB" (binary units)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0:
        return int(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?I?B)\s*", value.upper())
        if match:
            return int(float(match.group(1)) * _UNITS[match.group(2).replace("IB", "B")])
    raise ValueError(f"{name} must be a number of bytes or a size such as '500MB' or '2GB', "
                     f"got {value!r}.")


_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
