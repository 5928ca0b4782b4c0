import pytest
import torch
from torch import nn

from easytl import FeatureExtraction, FineTune, MLPHead, Phase, ProgressiveUnfreezing, Schedule
from easytl.models.heads import build_head
from easytl.training.schedules import resolve_phases, split_epochs
from easytl.training.learning_rates import Plateau, lr_factor


def test_mlp_head_is_the_notebooks():
    head = build_head("mlp", 1280, 4)
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert (head[0].in_features, head[0].out_features, head[2].p, head[3].out_features) == \
        (1280, 128, 0.3, 4)


def test_head_sizes_are_configurable_and_callables_accepted():
    head = build_head(MLPHead(hidden=(64, 32), dropout=0.1), 10, 3)
    assert [m.out_features for m in head if isinstance(m, nn.Linear)] == [64, 32, 3]
    assert isinstance(build_head("linear", 10, 3), nn.Linear)
    assert build_head(lambda i, n: nn.Linear(i, n, bias=False), 10, 3).bias is None
    with pytest.raises(ValueError, match="unknown head 'big'"):
        build_head("big", 10, 3)
    with pytest.raises(TypeError, match="not an nn.Module"):
        build_head(lambda i, n: 42, 10, 3)


@pytest.mark.parametrize("weights, total", [((4, 3, 3), 10), ((4, 3, 3), 7), ((4, 3, 3), 2),
                                            ((1, 1), 9), ((5,), 3), ((0, 2), 4)])
def test_split_epochs_sums_to_total_in_proportion(weights, total):
    counts = split_epochs(weights, total)
    assert sum(counts) == total
    if total >= len(weights):
        assert min(counts) >= 1


def test_progressive_defaults_follow_the_notebook():
    head, top, every = resolve_phases("progressive", lr=1e-3, backbone_lr_mult=0.1, warmup_epochs=0)
    assert (head.trainable_groups, head.lr) == (0, 1e-3)
    assert top.trainable_groups == 3 and top.lr * top.backbone_lr_mult == pytest.approx(1e-4)
    assert every.trainable_groups == "all"
    assert every.lr * every.backbone_lr_mult == pytest.approx(1e-5)
    assert [p.epochs for p in resolve_phases("progressive", 1e-3, 0.1, 0)] == [4, 4, 2]
    assert [p.epochs for p in resolve_phases("progressive", 1e-3, 0.1, 0, epochs=20)] == [8, 8, 4]


def test_builtin_and_custom_schedules():
    assert resolve_phases(FeatureExtraction(3), 1e-3, 0.1, 0)[0].trainable_groups == 0
    fine = resolve_phases(FineTune(backbone_lr_mult=0.5), 1e-3, 0.1, 2)[0]
    assert (fine.trainable_groups, fine.backbone_lr_mult, fine.warmup_epochs) == ("all", 0.5, 2)

    class HeadThenTop(Schedule):
        def phases(self, lr):
            return [Phase(2, 0, lr), Phase(1, 2, lr / 2)]
    phases = resolve_phases(HeadThenTop(), 1e-2, 0.1, 0)
    assert [(p.epochs, p.trainable_groups, p.lr) for p in phases] == [(2, 0, 1e-2), (1, 2, 5e-3)]
    custom_progressive = resolve_phases(ProgressiveUnfreezing((2, 1, 1), top_groups=1), 1e-2, 0.1, 0)
    assert [p.trainable_groups for p in custom_progressive] == [0, 1, "all"]
    assert custom_progressive[2].lr == pytest.approx(1e-3)
    listed = resolve_phases([Phase(1, 0), Phase(1, "all", lr=1e-5)], 1e-3, 0.1, 0)
    assert [p.lr for p in listed] == [1e-3, 1e-5]
    with pytest.raises(ValueError, match="unknown schedule"):
        resolve_phases("gradual", 1e-3, 0.1, 0)
    with pytest.raises(ValueError, match="trainable_groups"):
        Phase(1, trainable_groups="some")


def test_warmup_is_linear_per_step_then_cosine():
    lrs = [lr_factor(step, total=14, warmup=4, decay="cosine") for step in range(15)]
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:]))  # cosine decay after warmup
    assert lrs[-2] < 0.05 and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert [lr_factor(s, 14, 4, None) for s in (0, 4, 13)] == pytest.approx([0.2, 1.0, 1.0])


def test_lr_factor_equals_torch_warmup_then_cosine_schedulers():
    """The closed form gives the LRs of torch's LinearLR + CosineAnnealingLR chained."""
    from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.3)
    scheduler = SequentialLR(optimizer, [LinearLR(optimizer, 1 / 6, 1.0, total_iters=5),
                                         CosineAnnealingLR(optimizer, T_max=15)], milestones=[5])
    for step in range(20):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.3 * lr_factor(step, 20, 5, "cosine"),
                                                                rel=1e-9, abs=1e-12)
        optimizer.step()
        scheduler.step()


def test_plateau_rule_is_torchs_reduce_on_plateau():
    from torch.optim.lr_scheduler import ReduceLROnPlateau
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = ReduceLROnPlateau(optimizer, factor=0.1, patience=1, eps=0.0)
    ours = Plateau("min", factor=0.1, patience=1)
    for value in [1.0, 0.9, 0.9, 0.95, 0.5, 0.6, 0.7, 0.8, 0.4, 0.4, 0.4]:
        reference.step(value)
        ours.step(value)
        assert ours.scale == pytest.approx(optimizer.param_groups[0]["lr"])
