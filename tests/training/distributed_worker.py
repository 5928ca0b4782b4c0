"""One process of the 2-process data-parallel test (launched by torchrun from test_distributed.py).

Each rank gets the same images in a different order, so the ranks can only end
with identical weights if their gradients were all-reduced.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for conftest

from conftest import tiny_kwargs  # noqa: E402
from easytl import Phase, TransferClassifier, make_textures  # noqa: E402
import easytl.persistence  # noqa: E402

SCHEDULE = [Phase(2, 0), Phase(2, 1), Phase(2, "all")]


def main(out: Path, extra: dict) -> None:
    rank = int(os.environ.get("RANK", 0))
    X, y = make_textures(n_per_class=20, size=32, random_state=0)
    X_test, y_test = make_textures(n_per_class=10, size=32, random_state=1)
    order = np.random.default_rng(rank).permutation(len(X))

    write = easytl.persistence.save_model_file

    def counted_write(*args, **kwargs):  # record which ranks write the model file
        with open(out / "writes.log", "a") as log:
            log.write(f"{rank}\n")
        return write(*args, **kwargs)

    easytl.persistence.save_model_file = counted_write
    n_val = extra.pop("n_val", None)  # a validation set of n images, split unevenly over ranks
    validation = {} if n_val is None else {"X_val": X_test[:n_val], "y_val": y_test[:n_val]}
    clf = TransferClassifier(**tiny_kwargs(schedule=SCHEDULE, epochs=None, early_stopping=None,
                                           **extra))
    clf.fit(X[order], y[order], **validation)
    clf.save(out / "model.easytl")
    np.savez(out / f"weights_{rank}.npz",
             **{k: v.float().numpy() for k, v in clf.model_.state_dict().items()})
    with open(out / f"result_{rank}.json", "w") as f:
        json.dump({"accuracy": clf.score(X_test, y_test), "history": clf.history_,
                   "world": int(os.environ.get("WORLD_SIZE", 1))}, f)


if __name__ == "__main__":
    main(Path(sys.argv[1]), json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
