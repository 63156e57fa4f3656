"""The patch-wise classifier and the dense FCN of the same weights agree where both are
defined (fcnlab.bench.patchwise); the speed ratio is measured by ``python -m fcnlab.bench``."""

import pytest
import torch
from torch import nn

from fcnlab.models.vgg import VGG16Classifier
from fcnlab.bench.patchwise import (
    AFTER, BEFORE, PATCH, DenseClassifier, PatchClassifier, patchwise_per_pixel,
)

W = 1 / 16
K = 5


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    clf = VGG16Classifier(W, num_classes=K).eval()
    with torch.no_grad():  # He-scaled fc layers, so the scores are O(1) and the tolerance means much
        for m in clf.classifier:
            if isinstance(m, nn.Linear):
                m.weight.normal_(0, (2 / m.in_features) ** 0.5)
                m.bias.normal_(0, 0.1)
    return PatchClassifier(clf).eval(), DenseClassifier(clf, W).eval()


def close(actual, expected, rel=1e-4):
    scale = float(expected.abs().max())
    assert scale > 0.1
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale)


def test_patch_geometry():
    # 404 = the receptive field of one fc6 output of VGG16 with valid 3x3 convs and 2x2 pools
    assert PATCH == 404 and (BEFORE, AFTER) == (201, 202)


def test_dense_grid_equals_patchwise_scores(nets):
    patch_net, dense = nets
    torch.manual_seed(1)
    image = torch.randn(1, 3, 40, 70)
    with torch.no_grad():
        grid = dense.pixel_grid(image)  # pixels (32i, 32j)
        assert grid.shape == (1, K, 2, 3)
        pixels = [(32 * i, 32 * j) for i in range(2) for j in range(3)]
        patchwise = patchwise_per_pixel(patch_net, image, pixels, batch=3)
    close(grid[0].permute(1, 2, 0).reshape(-1, K), patchwise)


def test_shift_and_stitch_gives_any_pixel_exactly(nets):
    patch_net, dense = nets
    torch.manual_seed(2)
    image = torch.randn(1, 3, 45, 50)
    dy, dx = 5, 27
    with torch.no_grad():
        grid = dense.pixel_grid(image, dy, dx)  # pixels (32i + 5, 32j + 27)
        patchwise = patchwise_per_pixel(patch_net, image, [(dy, dx), (32 + dy, dx)])
    close(torch.stack([grid[0, :, 0, 0], grid[0, :, 1, 0]]), patchwise)


def test_window_on_a_larger_image(nets):
    """Position (i, j) of the dense map is the patch classifier on the window at (32i, 32j)."""
    patch_net, dense = nets
    torch.manual_seed(3)
    image = torch.randn(2, 3, PATCH + 40, PATCH + 70)
    with torch.no_grad():
        scores = dense(image)
        assert scores.shape == (2, K, 2, 3)
        window = image[..., 32:32 + PATCH, 64:64 + PATCH]
        close(scores[..., 1, 2], patch_net(window))


def test_per_pixel_is_exact_on_the_grid(nets):
    _, dense = nets
    image = torch.randn(1, 3, 40, 70)
    with torch.no_grad():
        full, grid = dense.per_pixel(image), dense.pixel_grid(image)
    assert full.shape == (1, K, 40, 70)
    close(full[..., ::32, ::32], grid, rel=1e-5)


def test_patch_classifier_refuses_other_sizes(nets):
    patch_net, _ = nets
    with pytest.raises(ValueError, match="404"):
        patch_net(torch.randn(1, 3, 224, 224))
