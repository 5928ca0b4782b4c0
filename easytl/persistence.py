"""A fitted estimator to one model file and back: JSON manifest + safetensors, no code.

The manifest holds what rebuilds the model without downloading weights (the
backbone name, head spec, classes, input size, data config) and what a user
reads later (history, parameters, version). Custom backbone modules and head
callables are code, so they are passed again at load time.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path, PurePath

import numpy as np

from . import __version__
from .io import ModelFileError, check_writable, load_model_file, save_model_file

# Tensors of the novelty model, stored beside the network's own in the safetensors file.
NOVELTY_KEYS = ("novelty.means", "novelty.precision")


def _typed(value) -> list:
    """``[type tag, JSON value]`` for a label or a path, so that loading gives back its type
    (JSON has no int keys, no numpy scalars and no paths)."""
    if isinstance(value, np.generic):
        return [f"numpy:{value.dtype.str}", value.item()]
    if isinstance(value, PurePath):
        return ["path", str(value)]
    for kind in (bool, int, float, str):  # bool first: True is an int too
        if isinstance(value, kind):
            return [kind.__name__, value]
    return ["str", str(value)]


def _untyped(entry):
    """The value :func:`_typed` described."""
    tag, value = entry
    if tag.startswith("numpy:"):
        return np.dtype(tag[len("numpy:"):]).type(value)
    return Path(value) if tag == "path" else {"bool": bool, "int": int, "float": float,
                                              "str": str}[tag](value)


def _typed_class_weight(class_weight):
    """A ``{label: weight}`` class_weight as ``[[label tag, label, weight], ...]`` (None otherwise:
    "balanced" and None are plain JSON in ``params``)."""
    if not isinstance(class_weight, dict):
        return None
    return [_typed(label) + [float(weight)] for label, weight in class_weight.items()]


def _class_weight_param(manifest: dict, classes: np.ndarray, path):
    """class_weight as it was given. Files from before its typed copy hold it as JSON made it:
    string keys ("0" for the label 0), read back as the classes they name; and a dict with
    numpy keys, which JSON could not hold at all, as "<not stored>"."""
    if manifest.get("class_weight") is not None:
        return {_untyped(entry[:2]): entry[2] for entry in manifest["class_weight"]}
    stored = manifest["params"].get("class_weight")
    if stored == "<not stored>":
        warnings.warn(f"{path} was written by an older easytl that could not store its "
                      "class_weight: the loaded model has class_weight=None; set it again "
                      "(set_params) before refitting.", UserWarning, stacklevel=4)
        return None
    if not isinstance(stored, dict):
        return stored
    by_text = {str(c): c.item() if isinstance(c, np.generic) else c for c in classes}
    return {by_text.get(key, key): weight for key, weight in stored.items()}


def _json_params(estimator) -> dict:
    """The estimator's parameters that JSON can hold; code-valued ones are marked."""
    params = {}
    for key, value in estimator.get_params(deep=False).items():
        try:
            json.dumps(value)
            params[key] = value  # class_weight's int keys become strings: its typed copy is apart
        except TypeError:
            params[key] = None if key in ("callbacks", "augment") else "<not stored>"
    return params


def save_estimator(estimator, path) -> Path:
    """Write a fitted estimator's model file atomically (once, in a distributed run)."""
    from .models.heads import head_spec
    from .plan import phase_dict
    if getattr(estimator, "interrupted_", False) and not estimator.history_:
        raise ValueError("this model was interrupted before its first epoch ended: it is not "
                         "trained, so it is not saved. Fit it again.")
    check_writable(path)
    model = estimator.model_
    weights = estimator.weights
    manifest = {
        "easytl_version": __version__,
        "backbone": model.backbone.name,
        "weights": weights if isinstance(weights, (str, type(None))) else str(weights),
        "head": head_spec(getattr(estimator, "_head_used", estimator.head)),
        "classes": estimator.classes_.tolist(),
        "classes_dtype": estimator.classes_.dtype.str,
        "data_config": model.backbone.data_config,
        "image_size": estimator.image_size_,
        "n_features": estimator.n_features_,
        "best_epoch": estimator.best_epoch_,
        "interrupted": bool(getattr(estimator, "interrupted_", False)),
        "history": list(estimator.history_),
        "plan": getattr(estimator, "plan_", None),
        "params": _json_params(estimator),
        "temperature": np.asarray(getattr(estimator, "temperature_", 1.0)).tolist(),
        "unknown_threshold": getattr(estimator, "unknown_threshold_", None),
        "unknown_threshold_n": getattr(estimator, "unknown_threshold_n_", None),
        "novelty_normalize": bool(getattr(getattr(estimator, "novelty_", None), "normalize", False)),
        "multi_label": bool(getattr(estimator, "multi_label_", False)),
        "label_form": getattr(estimator, "_label_form", "labels"),
        "table_options": {key: value for key, value in getattr(estimator, "_table_options", {}).items()
                          if key != "root"},  # a folder of this machine means nothing elsewhere
        "thresholds": (None if getattr(estimator, "thresholds_", None) is None
                       else np.asarray(estimator.thresholds_).tolist()),
        # what the fit ran and held out: files without these fields load too
        "phases": [phase_dict(phase) for phase in getattr(estimator, "phases_", [])],
        "lr": None if getattr(estimator, "lr_", None) is None else float(estimator.lr_),
        "validation_indices": (None if getattr(estimator, "validation_indices_", None) is None
                               else np.asarray(estimator.validation_indices_).tolist()),
        "skipped_images": [_typed(item) + [reason]
                           for item, reason in getattr(estimator, "skipped_images_", [])],
        "class_weight": _typed_class_weight(estimator.class_weight),
    }
    tensors = dict(model.state_dict())
    novelty = getattr(estimator, "novelty_", None)
    if novelty is not None:
        import torch
        tensors["novelty.means"] = torch.from_numpy(novelty.means)
        tensors["novelty.precision"] = torch.from_numpy(novelty.precision)
    return _save_on_main_process(path, manifest, tensors)


def _save_on_main_process(path, manifest: dict, tensors: dict) -> Path:
    """In a distributed run only process 0 writes; the others wait until the file is complete."""
    import torch.distributed as dist
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if not distributed or dist.get_rank() == 0:
        path = save_model_file(path, manifest, tensors)
    if distributed:
        dist.barrier()
    return Path(path)


def load_estimator(cls, path, backbone=None, head=None):
    """Rebuild a fitted ``cls`` from its model file; no download, no unpickling."""
    from .models.adapters import create_backbone
    from .models.heads import build_head, head_from_spec
    from .training.history import History
    from .models.network import TransferModel
    from .trust.statistics import NoveltyModel
    manifest, tensors = load_model_file(path)
    novelty = {key: tensors.pop(key) for key in NOVELTY_KEYS if key in tensors}
    try:
        name = manifest["backbone"]
        classes = np.asarray(manifest["classes"], dtype=np.dtype(manifest["classes_dtype"]))
        if name == "custom" and backbone is None:
            raise ModelFileError(f"{path} was fitted on a custom backbone module: pass the same "
                                 "architecture as load(path, backbone=module).")
        head_factory = head if head is not None else (
            head_from_spec(manifest["head"]) if manifest["head"] else None)
        if head_factory is None:
            raise ModelFileError(f"{path} was fitted with a custom head: pass the same callable "
                                 "as load(path, head=callable).")
        net = create_backbone(backbone if name == "custom" else name, weights=None,
                              image_size=manifest["image_size"])
        net.data_config = dict(manifest["data_config"])
        model = TransferModel(net, build_head(head_factory, manifest["n_features"], len(classes)))
        model.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"{path} does not match the model it describes: "
                             f"{type(exc).__name__}: {exc}") from None
    params = {k: v for k, v in manifest["params"].items()
              if k in cls._get_param_names() and v != "<not stored>"}
    params["class_weight"] = _class_weight_param(manifest, classes, path)
    params["backbone"] = backbone if name == "custom" else name
    if head is not None:
        params["head"] = head
    estimator = cls(**params)
    estimator.model_ = model.eval()
    estimator.classes_ = classes
    estimator.history_ = History(manifest["history"])
    estimator.best_epoch_ = manifest["best_epoch"]
    estimator.plan_ = manifest.get("plan")
    estimator.interrupted_ = bool(manifest.get("interrupted", False))
    estimator.n_features_ = manifest["n_features"]
    estimator.image_size_ = manifest["image_size"]
    estimator._head_used = head_factory
    # Files from before calibration and novelty statistics existed load without them.
    temperature = manifest.get("temperature", 1.0)
    estimator.temperature_ = (np.asarray(temperature, dtype=np.float64) if isinstance(temperature, list)
                              else float(temperature))
    estimator.multi_label_ = bool(manifest.get("multi_label", False))
    estimator._label_form = manifest.get("label_form", "labels")
    estimator._table_options = manifest.get("table_options", {})
    thresholds = manifest.get("thresholds")
    estimator.thresholds_ = None if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    estimator.unknown_threshold_ = manifest.get("unknown_threshold")
    estimator.unknown_threshold_n_ = manifest.get("unknown_threshold_n")
    estimator.novelty_ = (NoveltyModel(novelty["novelty.means"].numpy(),
                                       novelty["novelty.precision"].numpy(),
                                       normalize=manifest.get("novelty_normalize", False))
                          if len(novelty) == len(NOVELTY_KEYS) else None)
    _restore_fit_record(estimator, manifest)
    return estimator


def _restore_fit_record(estimator, manifest: dict) -> None:
    """phases_, lr_, validation_indices_ and skipped_images_. Older files held only the plan,
    which records the phases that ran and the LR; what they never held is left unset rather
    than made up (None would claim that nothing was held out)."""
    from dataclasses import fields

    from .training.schedules import Phase
    plan = manifest.get("plan") or {}
    phases = manifest.get("phases", plan.get("phases"))
    if phases is not None:
        names = {field.name for field in fields(Phase)}
        estimator.phases_ = [Phase(**{k: v for k, v in phase.items() if k in names}) for phase in phases]
    lr = manifest.get("lr", plan.get("lr"))
    if isinstance(lr, (int, float)):
        estimator.lr_ = float(lr)
    if "validation_indices" in manifest:
        indices = manifest["validation_indices"]
        estimator.validation_indices_ = None if indices is None else np.asarray(indices, dtype=np.int64)
    if "skipped_images" in manifest:
        estimator.skipped_images_ = [(_untyped(entry[:2]), entry[2])
                                     for entry in manifest["skipped_images"]]
