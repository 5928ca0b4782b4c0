"""Write the training reference that tests/test_reference_fits.py compares against.

Run once with the trainer as it stood before the callback redesign (commit
620ae8b plus the linear-probe phase), so the redesigned loop can be checked to
end with the same weights and history values:

    python tests/reference/make_reference.py
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from conftest import InterruptAt, tiny_kwargs  # noqa: E402
from easytl import Phase, TransferClassifier, make_textures  # noqa: E402

HISTORY_KEYS = ("epoch", "phase", "phase_epoch", "lr", "train_loss", "train_accuracy", "val_loss",
                "val_accuracy", "best")

# name: estimator settings on top of the tests' tiny settings (tiny CNN, 32 px, fp32, seed 0);
# lr=0.05 with 30% held out makes the validation loss rise now and then, so early stopping
# and the plateau rule really act.
PROGRESSIVE = dict(schedule="progressive", epochs=None, head="mlp", lr=0.05, val_size=0.3)
CASES = {
    "progressive": PROGRESSIVE,
    "early_stopping": dict(PROGRESSIVE, early_stopping=1),
    # the LR falls by 10x in epochs 7 and 12: the plateau rule acts after warmup, per phase
    "plateau": dict(PROGRESSIVE, lr=0.1, lr_decay="plateau", warmup_epochs=1,
                    schedule=[Phase(8, 0, name="head"), Phase(4, "all", name="all")]),
    # LP-FT: what schedule="auto" planned for these 80 images when the reference was written
    "auto": dict(schedule=[Phase(1, 0, name="probe", probe=True),
                           Phase(12, 3, lr=0.003, backbone_lr_mult=1.0, warmup_epochs=0.5,
                                 name="top3")], epochs=None, head="linear", val_size=0),
}


def data():
    return make_textures(n_per_class=20, size=32, random_state=0)


def fit(case: str, **extra):
    return TransferClassifier(**tiny_kwargs(**CASES[case], **extra)).fit(*data())


def weight_summary(tensor) -> list:
    """Sum, L2 norm and eight evenly spaced values: enough to tell any change apart."""
    flat = tensor.detach().cpu().double().reshape(-1)
    picks = flat[np.linspace(0, len(flat) - 1, 8).round().astype(int)]
    return [float(flat.sum()), float(flat.norm())] + picks.tolist()


def summary(clf) -> dict:
    history = [{k: row.get(k) for k in HISTORY_KEYS} for row in clf.history_]
    weights = {k: weight_summary(v) for k, v in clf.model_.state_dict().items()
               if v.dtype.is_floating_point}
    return {"history": history, "best_epoch": clf.best_epoch_, "weights": weights}


def main():
    out = {case: summary(fit(case)) for case in CASES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            stopped = TransferClassifier(**tiny_kwargs(**CASES["progressive"],
                                                       callbacks=[InterruptAt(6)]))
            stopped.fit(*data(), checkpoint_dir=tmp)
            resumed = TransferClassifier(**tiny_kwargs(**CASES["progressive"]))
            resumed.fit(*data(), checkpoint_dir=tmp, resume=True)
            out["resumed"] = summary(resumed)
    (HERE / "fits.json").write_text(json.dumps(out))
    print({case: len(v["history"]) for case, v in out.items()})


if __name__ == "__main__":
    main()
