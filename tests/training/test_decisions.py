"""Decisions after the probe: taken in order, applied in one place, recorded in history_ and plan_."""

from easytl import TransferClassifier
from easytl.training import decisions
from easytl.training.decisions import Decision, PlanChange

from conftest import tiny_kwargs


class Fixed(Decision):
    def __init__(self, name, change):
        self.name, self.change, self.asked = name, change, 0

    def decide(self, trainer, row):
        self.asked += 1
        return self.change


def test_decisions_are_taken_in_order_and_none_after_one_that_stops():
    stop = Fixed("a", PlanChange("a", "stop", stop=True))
    later = Fixed("b", PlanChange("b", "later"))
    assert [c.decision for c in decisions.take([Fixed("n", None), stop, later], None, {})] == ["a"]
    assert later.asked == 0
    assert [c.decision for c in decisions.take([later, Fixed("n", None)], None, {})] == ["b"]


def test_a_perfect_probe_stops_and_plan_records_the_decision(textures):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(schedule="auto", epochs=None, val_size=0.25,
                                           augment="light")).fit(X, y)
    probe = clf.history_[0]
    perfect = probe["val_accuracy"] == 1.0
    recorded = [d["decision"] for d in clf.plan_["decisions"]]
    assert recorded == [d["decision"] for d in probe["decisions"]]
    if perfect:  # the tiny model may or may not get every held-out texture right
        assert recorded == ["stop_at_perfect_probe"] and len(clf.phases_) == 1
        assert "fine-tuning skipped" in probe["note"]
    else:
        assert "stop_at_perfect_probe" not in recorded and len(clf.phases_) == 2
    assert clf.plan_["if_probe_weak"]["applied"] == ("go_deeper" in recorded)
