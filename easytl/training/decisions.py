"""Decisions after the linear probe: each looks at the probe's epoch and may change the fit.

The adaptive plan (:mod:`easytl.training.adaptive`) fixes what to do *if*
the probe shows something; these objects check it once the probe has run, in
order, and each returns a :class:`PlanChange` (or None). The trainer applies a
change in one place (:meth:`easytl.training.trainer.Trainer.apply_change`), records it in
the probe's ``history_`` row (``"decisions"``), and replays it on resume; the
estimator's ``plan_`` is the plan plus its changes (:func:`describe_fit`).
Nothing else changes a plan once it is made.

* :class:`StopAtPerfectProbe`: the probe classifies every held-out image
  correctly: fine-tuning is skipped (nothing left to gain on the held-out data).
* :class:`GoDeeperIfProbeWeak`: the probe's balanced accuracy is under the
  plan's bar: the deeper fine-tuning replaces the planned one.
* :class:`AddSymmetries`: the held-out images show (or do not) that flips,
  turns or mirror images keep their class (:mod:`easytl.training.symmetry`):
  the training augmentation follows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import symmetry


@dataclass(frozen=True)
class PlanChange:
    """What one decision changed.

    Attributes
    ----------
    decision : str
        The decision's name.
    note : str
        What was decided and why, in words (the probe row's note).
    extends_note : bool
        Append ``note`` to the probe row's note instead of replacing it.
    stop : bool
        Training ends after the probe.
    phases, cache_phases : tuple, optional
        The phases that replace every phase after the probe (and whether each is cached).
    augment : str, optional
        The augmentation recipe training uses from now on.
    row : dict
        What the probe's ``history_`` row records besides (the symmetry tests, ...).
    """

    decision: str
    note: str
    extends_note: bool = False
    stop: bool = False
    phases: tuple | None = None
    cache_phases: tuple | None = None
    augment: str | None = None
    row: dict = field(default_factory=dict)

    def record(self) -> dict:
        """JSON-able, for ``history_`` and the checkpoint (enough to replay it)."""
        return {"decision": self.decision, "note": self.note, "stop": self.stop,
                "phases": None if self.phases is None else [p.name for p in self.phases],
                "augment": self.augment, "row": dict(self.row)}


# Taken after training, not after the probe: the best epoch scored below the probe by held-out
# accuracy, and the probe's weights are kept (easytl.training.best_epoch.BestEpoch).
KEEP_PROBE = "keep_probe"


class Decision:
    """Looks at the probe's epoch (``row``, with the trainer for what it must compute)."""

    name = "decision"

    def decide(self, trainer, row: dict) -> PlanChange | None:  # pragma: no cover - interface
        raise NotImplementedError

    def replay(self, plan, record: dict) -> PlanChange:
        """The change a checkpoint recorded, rebuilt from the plan (for a resumed fit)."""
        return PlanChange(self.name, record["note"], stop=record["stop"], augment=record["augment"],
                          row=dict(record.get("row") or {}))


class StopAtPerfectProbe(Decision):
    """Held-out images: the probe gets every one right. None held out (few-shot): the probe
    gets every training image right when each is scored by a probe fitted on the other folds
    (5-fold cross-fitting on the frozen features), so fine-tuning, which nothing could check,
    has nothing to gain either (on drifted photo crops with 5 or 10 per class it lost 1-7
    points against the probe)."""

    name = "stop_at_perfect_probe"

    def decide(self, trainer, row):
        if row.get("val_accuracy") == 1.0:
            return PlanChange(self.name, "the probe classifies every held-out image correctly: "
                              "fine-tuning skipped (nothing left to gain on the held-out data)",
                              stop=True)
        plan = trainer.plan
        sweeping = any(getattr(c, "sweeps_after_probe", False) for c in trainer.callbacks)
        if (plan.n_val == 0 and not plan.multi_label and not sweeping  # (lr_find sweeps anyway)
                and trainer.cross_fitted_probe_is_perfect(plan.seed)):
            return PlanChange(self.name, "nothing held out, and the probe classifies every "
                              "training image correctly when it is left out of the probe's fit "
                              "(5-fold cross-fitting): fine-tuning skipped (nothing it could "
                              "be shown to gain)", stop=True)
        return None


class GoDeeperIfProbeWeak(Decision):
    name = "go_deeper"

    def __init__(self, rule):
        self.rule = rule

    def decide(self, trainer, row):
        score = row.get("val_balanced_accuracy", 1.0)
        if score >= self.rule.below:
            return None
        plan = trainer.plan
        return PlanChange(self.name, self.rule.note(score, plan.image_size, plan.n_val),
                          phases=tuple(self.rule.phases), cache_phases=tuple(self.rule.cache_phases),
                          row={"weak_probe": True})

    def replay(self, plan, record):
        return PlanChange(self.name, record["note"], phases=tuple(self.rule.phases),
                          cache_phases=tuple(self.rule.cache_phases), row={"weak_probe": True})


class AddSymmetries(Decision):
    """The symmetry test on the held-out images; its time counts in the probe's epoch."""

    name = "symmetries"

    def decide(self, trainer, row):
        start = time.perf_counter()
        evidence = "held-out"
        if trainer.plan.n_val >= symmetry.SYMMETRY_MIN_IMAGES:
            # The upright losses are recomputed from the images, not taken from the probe's
            # cached features, so that upright and transformed images go through the same path.
            upright, labels = trainer.held_out_losses()
            moved = {name: trainer.held_out_losses(transform)[0]
                     for name, transform in symmetry.SYMMETRIES.items()}
        else:  # too few held out: the training images, each scored by a probe that never saw it
            evidence = "training (cross-fitted)"
            upright, moved, labels = trainer.cross_fitted_losses(symmetry.SYMMETRIES,
                                                                 trainer.plan.seed)
        names = np.array([str(c) for c in trainer.plan.classes], dtype=object)[labels]  # (notes)
        tests = ([] if upright is None else symmetry.compare_losses(upright, moved, names))
        chosen = symmetry.augmentation_for(tests)
        seconds = round(time.perf_counter() - start, 3)
        extra = {"symmetries": {test.name: test.describe() for test in tests},
                 "symmetry_seconds": seconds, "symmetry_evidence": evidence}
        if chosen is not None:
            extra["augment"] = chosen
        return PlanChange(self.name, symmetry.note(tests, chosen, evidence), extends_note=True,
                          augment=chosen, row=extra)


def after_probe(plan) -> list[Decision]:
    """The decisions the plan asks for after its probe, in the order they are taken."""
    decisions = []
    if plan.stop_if_probe_perfect:
        decisions.append(StopAtPerfectProbe())
    if plan.if_probe_weak is not None:
        decisions.append(GoDeeperIfProbeWeak(plan.if_probe_weak))
    if plan.test_symmetries:
        decisions.append(AddSymmetries())
    return decisions


def take(decisions, trainer, row: dict) -> list[PlanChange]:
    """Each decision in turn (none after one that stops training)."""
    changes = []
    for decision in decisions:
        if any(c.stop for c in changes):
            break
        change = decision.decide(trainer, row)
        if change is not None:
            changes.append(change)
    return changes


def replay(plan, records) -> list[PlanChange]:
    """The changes a checkpoint's history recorded, for a resumed fit."""
    by_name = {d.name: d for d in after_probe(plan)}
    return [by_name[r["decision"]].replay(plan, r) for r in records if r["decision"] in by_name]


def describe_fit(plan, changes, phases_ran, cache_phases_ran, probe_note, given_recipe) -> dict:
    """``plan_``: the plan as made (:meth:`FitPlan.describe`) with what its decisions changed."""
    from ..plan import phase_dict
    described = plan.describe()
    described["decisions"] = [c.record() for c in changes]
    names = {c.decision for c in changes}
    if plan.if_probe_weak is not None:
        described["if_probe_weak"]["applied"] = GoDeeperIfProbeWeak.name in names
    if GoDeeperIfProbeWeak.name in names:  # plan_ describes the fit that ran, the planned phases beside
        described["planned_phases"] = described["phases"]
        described["phases"] = [phase_dict(p) for p in phases_ran]
        described["cache_phases"] = list(cache_phases_ran)
        described["note"] = probe_note
    kept = next((c for c in changes if c.decision == KEEP_PROBE), None)
    if kept is not None:  # the fine-tuned epochs scored below the probe: its weights are kept
        described["kept_probe"] = kept.note
    tested = next((c for c in changes if c.decision == AddSymmetries.name), None)
    if tested is not None:
        described["symmetries"] = {"tests": tested.row.get("symmetries"), "recipe": tested.augment}
    # The recipe the model trained with, by name, for test-time augmentation.
    described["augment"] = (tested.augment if tested is not None and tested.augment
                            else given_recipe)
    return described
