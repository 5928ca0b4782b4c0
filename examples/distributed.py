"""The same fit on one process or many: nothing in this script knows how it is launched.

    python examples/distributed.py                                    # 1 process (CPU or 1 GPU)
    torchrun --nproc_per_node 2 examples/distributed.py               # 2 CPU processes (gloo)
    torchrun --nproc_per_node 4 examples/distributed.py               # 4 GPUs (nccl), one each
    accelerate launch --num_processes 8 examples/distributed.py      # as `accelerate config` says,
                                                                      # also across machines

Under a launcher every process runs this script: each trains on its own shard
of the images, gradients are averaged across processes, metrics are summed, so
all take the same early-stopping and best-epoch decisions; only process 0
prints progress and writes the model file. The batch size is per process.
"""

import argparse
import os

from sklearn.model_selection import train_test_split

from easytl import TransferClassifier, make_textures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="textures.easytl", help="model file (written once)")
    parser.add_argument("--n-per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)

    X, y = make_textures(n_per_class=args.n_per_class, random_state=42)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    clf = TransferClassifier(epochs=args.epochs, image_size=args.image_size, random_state=0,
                             verbose=args.verbose).fit(X_train, y_train)
    clf.save(args.out)
    accuracy = clf.score(X_test, y_test)
    if int(os.environ.get("RANK", 0)) == 0:
        processes = int(os.environ.get("WORLD_SIZE", 1))
        print(f"{processes} process(es): held-out accuracy {accuracy:.3f}; model in {args.out}")
    return accuracy


if __name__ == "__main__":
    main()
