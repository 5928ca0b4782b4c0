"""augment="turns", "flips" and "no_mirror": the light recipe plus a random symmetry of the
square, or a random vertical flip, or without its mirror images."""

import pytest
import torch

from easytl import TransferClassifier
from easytl.data.augment import Preprocessor, square_symmetries, vertical_flips


def _d4(image: torch.Tensor) -> list[torch.Tensor]:
    turns = [torch.rot90(image, k, dims=(-2, -1)) for k in range(4)]
    return turns + [t.flip(-1) for t in turns]


def test_square_symmetries_draw_each_of_the_eight_per_image():
    x = torch.arange(3 * 4 * 4, dtype=torch.float32).reshape(1, 3, 4, 4).repeat(400, 1, 1, 1)
    out = square_symmetries(x, torch.Generator().manual_seed(0))
    candidates = _d4(x[0])
    which = [next(k for k, c in enumerate(candidates) if torch.equal(o, c)) for o in out]
    assert sorted(set(which)) == list(range(8))  # every image is one of them, and all occur
    assert torch.equal(square_symmetries(x, torch.Generator().manual_seed(0)), out)  # seeded


def test_vertical_flips_flip_about_half_of_the_images_each_on_its_own():
    x = torch.arange(3 * 4 * 4, dtype=torch.float32).reshape(1, 3, 4, 4).repeat(400, 1, 1, 1)
    out = vertical_flips(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, x[0].flip(-2)) for o in out])
    assert all(torch.equal(o, x[0]) or f for o, f in zip(out, flipped))  # upright or upside down
    assert 150 < int(flipped.sum()) < 250
    assert torch.equal(vertical_flips(x, torch.Generator().manual_seed(0)), out)  # seeded
    image = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    image[..., :4, :] = 255  # a bright bar along the top edge: flips put it at the bottom only
    trained = Preprocessor(32, [0, 0, 0], [1, 1, 1], augment="flips")(
        image.repeat(64, 1, 1, 1), train=True, generator=torch.Generator().manual_seed(0))
    top, bottom = trained[:, 0, :4, :].mean((1, 2)), trained[:, 0, -4:, :].mean((1, 2))
    assert (top > bottom).any() and (bottom > top).any()


def test_turns_recipe_turns_training_images_and_never_prediction_images():
    image = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    image[..., :4, :] = 255  # a bright bar along the top edge
    batch = image.repeat(64, 1, 1, 1)
    preprocess = Preprocessor(32, [0, 0, 0], [1, 1, 1], augment="turns")
    trained = preprocess(batch.clone(), train=True, generator=torch.Generator().manual_seed(0))
    edges = torch.stack([trained[:, 0, :4, :].mean((1, 2)), trained[:, 0, -4:, :].mean((1, 2)),
                         trained[:, 0, :, :4].mean((1, 2)), trained[:, 0, :, -4:].mean((1, 2))], 1)
    assert set(edges.argmax(1).tolist()) == {0, 1, 2, 3}  # the bar ends up on every side
    plain = preprocess(batch.clone(), train=False)
    assert torch.equal(plain, plain[:1].expand_as(plain)) and plain[0, 0, :4].min() == 1.0


def test_no_mirror_recipe_never_mirrors_a_training_image_and_light_does():
    image = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    image[..., :, :4] = 255  # a bright bar along the left edge: a mirror image puts it right
    batch = image.repeat(64, 1, 1, 1)

    def right_side_brighter(recipe):
        trained = Preprocessor(32, [0, 0, 0], [1, 1, 1], augment=recipe)(
            batch.clone(), train=True, generator=torch.Generator().manual_seed(0))
        return trained[:, 0, :, -8:].mean((1, 2)) > trained[:, 0, :, :8].mean((1, 2))
    assert not right_side_brighter("no_mirror").any()
    assert right_side_brighter("light").any()


@pytest.mark.parametrize("recipe", ["turns", "no_mirror"])
def test_the_symmetry_recipes_are_accepted_options_and_cli_choices(recipe):
    from easytl.cli import build_parser
    from easytl.params import validate_params
    validate_params(TransferClassifier(augment=recipe).get_params(deep=False))
    with pytest.raises(ValueError, match=recipe):
        validate_params(TransferClassifier(augment=recipe[:-1]).get_params(deep=False))
    args = build_parser().parse_args(["fit", "data/", "--out", "m.easytl", "--augment", recipe])
    assert args.augment == recipe
