"""Calibration: a temperature is applied only where held-out validation log-loss shows it helps."""

import json

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from easytl import TransferClassifier, make_textures
from easytl.trust.statistics import (
    choose_binary_temperatures, choose_temperature, expected_calibration_error, fit_binary_temperatures,
    fit_temperature, log_loss, softmax)

from conftest import tiny_cnn, tiny_kwargs


def calibrated_logits(n, scale=1.0, seed=0, classes=4):
    """Logits of a perfectly calibrated model (labels drawn from its own softmax), times ``scale``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (n, classes))
    proba = softmax(logits)
    labels = np.array([rng.choice(classes, p=row) for row in proba])
    return logits * scale, labels


@pytest.mark.parametrize("seed", range(5))
def test_a_temperature_fitted_on_noise_is_not_applied(seed):
    logits, labels = calibrated_logits(40, seed=seed)
    # the plain fit finds some temperature in the noise of 40 images ...
    assert fit_temperature(logits, labels) != pytest.approx(1.0, abs=0.02)
    temperature, decision = choose_temperature(logits, labels, seed=0)
    assert temperature == 1.0  # ... which is not shown to help, so none is applied
    assert decision["kept"] is False and decision["temperature"] == 1.0
    assert decision["fitted"] == pytest.approx(fit_temperature(logits, labels))
    assert decision["n_images"] == 40
    assert decision["gain"] <= decision["standard_error"]
    assert "not shown to help" in decision["reason"]
    json.dumps(decision)  # goes into history_ and the model file


def test_clear_overconfidence_is_fitted_and_improves_the_log_loss():
    logits, labels = calibrated_logits(500, scale=3.0, seed=1)
    temperature, decision = choose_temperature(logits, labels, seed=0)
    assert decision["kept"] is True
    assert temperature == pytest.approx(3.0, rel=0.15)
    assert temperature == decision["temperature"] == pytest.approx(fit_temperature(logits, labels))
    assert decision["gain"] > decision["standard_error"] > 0
    assert log_loss(softmax(logits, temperature), labels) < log_loss(softmax(logits), labels)
    assert "shown to help" in decision["reason"]


def test_no_error_and_too_few_images_keep_one():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    logits = rng.normal(0, 1, (60, 3))
    logits[np.arange(60), labels] += 4  # every prediction right
    temperature, decision = choose_temperature(logits, labels)
    assert temperature == 1.0 and decision["kept"] is False and "no validation error" in decision["reason"]
    logits, labels = calibrated_logits(12, scale=5.0)
    temperature, decision = choose_temperature(logits, labels)
    assert temperature == 1.0 and "too few" in decision["reason"]
    temperature, decision = choose_temperature(np.zeros((0, 3)), np.zeros(0, int))
    assert temperature == 1.0 and decision["n_images"] == 0


def test_multi_label_temperatures_follow_the_same_rule_per_class():
    rng = np.random.default_rng(0)
    n = 500
    z = rng.normal(0, 2.0, (n, 3))
    targets = (rng.random((n, 3)) < 1 / (1 + np.exp(-z))).astype(float)  # calibrated per class
    z[:, 0] *= 3.0  # class 0 over-confident; 1 and 2 calibrated
    few = slice(0, 40)
    temperatures, decision = choose_binary_temperatures(z, targets, seed=0)
    assert decision["kept"] == [True, False, False]
    assert temperatures[0] == pytest.approx(3.0, rel=0.2)
    np.testing.assert_array_equal(temperatures[1:], [1.0, 1.0])
    np.testing.assert_allclose(decision["fitted"], fit_binary_temperatures(z, targets))
    json.dumps(decision)
    temperatures, decision = choose_binary_temperatures(z[few, 1:], targets[few, 1:], seed=0)
    np.testing.assert_array_equal(temperatures, [1.0, 1.0])


def test_a_fit_records_its_calibration_decision(tmp_path):
    X, y = make_textures(n_per_class=20, size=32, random_state=0)
    clf = TransferClassifier(**tiny_kwargs(val_size=0.3, epochs=1)).fit(X, y)
    decision = clf.history_[-1]["calibration"]
    assert decision["temperature"] == clf.temperature_
    assert decision["n_images"] == len(clf.validation_indices_)
    assert decision["kept"] == (clf.temperature_ != 1.0)
    assert isinstance(decision["reason"], str) and decision["reason"]
    loaded = TransferClassifier.load(clf.save(tmp_path / "m.easytl"), backbone=tiny_cnn())
    assert loaded.history_[-1]["calibration"] == decision
    off = TransferClassifier(**tiny_kwargs(val_size=0.3, epochs=1, calibrate=False)).fit(X, y)
    assert off.history_[-1]["calibration"]["reason"] == "calibrate=False"
    none = TransferClassifier(**tiny_kwargs(val_size=0, epochs=1)).fit(X, y)
    assert none.history_[-1]["calibration"]["reason"] == "no validation split"


def test_temperature_scaling_undoes_known_overconfidence():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 2000)
    clean = rng.normal(0, 1, (2000, 4))
    clean[np.arange(2000), labels] += 1.5
    true_t = fit_temperature(clean, labels)
    overconfident = clean * 3.0  # the same model, logits three times too large
    assert fit_temperature(overconfident, labels) == pytest.approx(3.0 * true_t, rel=0.02)
    before = expected_calibration_error(softmax(overconfident), labels)
    after = expected_calibration_error(softmax(overconfident, fit_temperature(overconfident, labels)),
                                       labels)
    assert after < before / 3


@pytest.mark.parametrize("data, settings", [
    # a tiny network trained hard at a high LR: no validation error, so no temperature
    ("textures", dict(schedule="progressive", epochs=None, head="mlp", lr=0.05)),
    # a weak, over-confident tiny network: a temperature shown to help on 126 validation images
    pytest.param("digits", dict(epochs=15, lr=0.005, head="mlp", augment=None), marks=pytest.mark.slow)])
def test_a_temperature_is_applied_only_where_it_helps_and_never_changes_a_label(data, settings, digits):
    if data == "textures":
        X, y = make_textures(n_per_class=40, size=32, random_state=0)
    else:
        X, y = digits
        X, y = X[:600], y[:600]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y,
                                                        random_state=0)
    clf = TransferClassifier(**tiny_kwargs(val_size=0.3, **settings)).fit(X_train, y_train)
    result = clf.report(X_test, y_test)["calibration"]
    decision = clf.history_[-1]["calibration"]
    assert decision["kept"] == (data == "digits")
    if decision["kept"]:  # held-out log-loss (what the rule tests on validation images) falls
        assert clf.temperature_ == decision["temperature"] != 1.0
        assert result["log_loss_after"] < result["log_loss_before"]
    else:
        assert clf.temperature_ == 1.0 and "no validation error" in decision["reason"]
        assert result["ece_after"] == result["ece_before"]
    uncalibrated = softmax(clf._run(X_test, lambda model, x: model(x).float()))
    np.testing.assert_array_equal(clf.predict_proba(X_test).argmax(1), uncalibrated.argmax(1))


def test_calibration_can_be_switched_off_and_needs_validation(textures):
    X, y = textures
    assert TransferClassifier(**tiny_kwargs(calibrate=False)).fit(X, y).temperature_ == 1.0
    assert TransferClassifier(**tiny_kwargs(val_size=0)).fit(X, y).temperature_ == 1.0


def test_a_temperature_needs_errors_to_rest_on():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 40)
    logits = rng.normal(0, 1, (40, 3))
    logits[np.arange(40), labels] += 4  # every prediction right
    assert np.all(logits.argmax(1) == labels)
    assert fit_temperature(logits, labels) == 1.0
    targets = rng.integers(0, 2, (40, 2))
    assert np.all(fit_binary_temperatures(np.where(targets, 3.0, -3.0), targets) == 1.0)
