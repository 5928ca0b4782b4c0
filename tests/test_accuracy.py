"""End-to-end accuracy with the defaults and the offline pretrained backbone (224 px)."""

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from easytl import TransferClassifier, make_textures


@pytest.mark.slow
def test_defaults_reach_95_percent_on_held_out_textures():
    X, y = make_textures(n_per_class=30, random_state=42)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                        random_state=0)
    clf = TransferClassifier(random_state=0, verbose=0).fit(X_train, y_train)
    assert clf.model_.backbone.name == "efficientnet_lite0"
    # 22 images per class: nothing held out; the probe is perfect in cross-fitting, so the fit
    # ends there (fine-tuning could not be shown to gain anything)
    phases = [row["phase"] for row in clf.history_]
    assert phases == ["probe"] and clf.validation_indices_ is None
    assert clf.plan_["decisions"][0]["decision"] == "stop_at_perfect_probe"
    assert clf.image_size_ == 224  # 64 px images: x6 is more than the pretrained size
    assert np.mean(clf.predict(X_test) == y_test) >= 0.95
