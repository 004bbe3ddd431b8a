"""The linear start of the additive model recovers a planted target-only direction."""

import numpy as np
import pytest
import torch

from neurocvae.contrastive.linear import (
    contrastive_pca,
    healthy_rest,
    initialise_linear,
    pattern_detail,
    regrid,
    replicated_components,
    replicated_salient_axes,
    salient_detail,
    sparsest_completion,
    split_half_contrasts,
)
from neurocvae.contrastive.nets import ContrastiveNets

SHAPE = (8, 8, 8)
CHECKERBOARD = (np.indices(SHAPE).sum(0) % 2 * 2 - 1).ravel()  # ±1, 0 on every 2-voxel block


class PlantedVolumes:
    """The method of a ContrastiveDataModule that `initialise_linear` reads, over planted
    volumes: backgrounds vary along 3 shared directions; targets too, plus severity × pattern
    (with `overlap`, the first shared direction also moves the pattern's voxels, so the local
    pattern has a share along it; with `detail`, the third is a voxel checkerboard, which
    vanishes on any coarser grid; with `fine_pattern`, the pattern and its overlap vary as a
    checkerboard over their voxels, which averages to their mean on 2-voxel blocks)."""

    def __init__(self, seed: int = 0, pattern: float = 0.03, overlap: float = 0.0,
                 detail: bool = False, fine_pattern: bool = False) -> None:
        rng = np.random.default_rng(seed)
        voxels = int(np.prod(SHAPE))
        self.template = rng.uniform(0.2, 0.8, voxels)
        shared = rng.normal(0, 1, (3, voxels)) * 0.05
        shape = np.ones(20) + (0.8 * CHECKERBOARD[:20] if fine_pattern else 0)
        self.pattern = np.zeros(voxels)
        self.pattern[:20] = pattern * shape
        shared[0, :20] += overlap * shape  # a healthy direction that also moves these voxels
        if detail:
            shared[2] = 0.05 * CHECKERBOARD
        self.severity = rng.uniform(0.5, 1.5, 60)

        def scans(n: int, extra: np.ndarray) -> np.ndarray:
            factors = rng.normal(0, 1, (n, 3))
            noise = rng.normal(0, 0.002, (n, voxels))
            return self.template + factors @ shared + noise + extra

        healthy = scans(60, 0)
        self.volumes = {"target": healthy + self.severity[:, None] * self.pattern,
                        "background": scans(60, 0)}
        self.twins = healthy  # each target without its pattern

    def input_batches(self, split: str, role: str):
        images = torch.tensor(self.volumes[role], dtype=torch.float32).view(-1, 1, *SHAPE)
        return [{"image": images[i:i + 16]} for i in range(0, len(images), 16)]


def test_contrastive_pca_finds_the_direction_only_targets_vary_in():
    data = PlantedVolumes()
    axis = contrastive_pca(data.volumes["target"], data.volumes["background"], 1, 10.0)[:, 0]
    cosine = abs(axis @ data.pattern) / np.linalg.norm(data.pattern)
    assert cosine > 0.95


def test_a_planted_pattern_replicates_and_noise_or_one_unusual_scan_does_not():
    planted = PlantedVolumes()
    assert replicated_components(planted.volumes["target"], planted.volumes["background"], 4,
                                 10.0) == 1
    unpatterned = PlantedVolumes(pattern=0.0)
    target, background = unpatterned.volumes["target"], unpatterned.volumes["background"]
    assert replicated_components(target, background, 4, 10.0) == 0
    # one target far off in a direction of its own: the largest eigenvalue, but no other scan has it
    unusual = target.copy()
    unusual[0, 100:140] += 0.5
    assert replicated_components(unusual, background, 4, 10.0) == 0
    assert replicated_components(target[:3], background, 4, 10.0) == 0



def test_a_second_subtype_is_kept_unless_small_beside_the_first():
    """40 targets carry one pattern, 20 another of 0.6× or 0.3× its amplitude. Rank 2 is kept
    when its held-out contrast reaches REPLICATION × the leading axis's (18 % at 0.6×); at 0.3×
    (3 %) it recurs, yet starts silent: the small target-only variation beside a strong one."""
    planted = PlantedVolumes()
    second = np.zeros(planted.pattern.size)
    second[200:220] = 0.03
    first_subtype = np.arange(60)[:, None] < 40
    background = planted.volumes["background"]

    def targets(amplitude: float) -> np.ndarray:
        patterns = np.where(first_subtype, planted.pattern, amplitude * second)
        return planted.twins + planted.severity[:, None] * patterns

    assert replicated_components(targets(0.6), background, 4, 10.0) == 2
    assert replicated_components(targets(0.3), background, 4, 10.0) == 1
    held_out = split_half_contrasts(targets(0.3), background, 4, 10.0)[1]
    assert np.median(held_out, 0)[1] > 0


def test_the_salient_axes_are_the_replicated_contrastive_axes_outside_the_healthy_ones():
    """With a pattern that also moves a healthy direction, the one salient axis lies outside the
    backgrounds' top principal axes, along the pattern's part there; without a pattern the
    salient space starts silent."""
    data = PlantedVolumes(overlap=0.05)
    axes, healthy = replicated_salient_axes(data.volumes["target"], data.volumes["background"],
                                            3, 4, 10.0)
    assert axes.shape == (data.pattern.size, 1) and healthy.shape == (data.pattern.size, 3)
    assert np.abs(healthy.T @ axes).max() < 1e-8
    rest = data.pattern - healthy @ (healthy.T @ data.pattern)
    assert abs(axes[:, 0] @ rest) / np.linalg.norm(rest) > 0.95
    unpatterned = PlantedVolumes(pattern=0.0).volumes
    silent, _ = replicated_salient_axes(unpatterned["target"], unpatterned["background"], 3, 4,
                                        10.0)
    assert silent.shape == (data.pattern.size, 0)

def test_the_initialised_nets_encode_severity_and_reconstruct_the_pattern():
    data = PlantedVolumes()
    nets = ContrastiveNets(input_shape=SHAPE, shared_dim=3, salient_dim=2, decoder="additive",
                           projection_voxels=512, channels=(4, 8), hidden=16, norm="group",
                           output="none")
    initialise_linear(nets, data)
    nets.eval()
    targets = torch.tensor(data.volumes["target"], dtype=torch.float32).view(-1, 1, *SHAPE)
    backgrounds = torch.tensor(data.volumes["background"],
                               dtype=torch.float32).view(-1, 1, *SHAPE)
    with torch.no_grad():
        salient = nets.salient_encoder(targets)[0]
        shared = nets.shared_encoder(targets)[0]
        background_salient = nets.salient_encoder(backgrounds)[0]
        reconstruction = nets.decode(shared, salient)
        pattern = (reconstruction - nets.decode(shared)).flatten(1).numpy()
    r = np.corrcoef(salient[:, 0].numpy(), data.severity)[0, 1]
    assert abs(r) > 0.95
    assert background_salient[:, 0].square().mean() < 0.1 * salient[:, 0].square().mean()
    residual = ((reconstruction - targets) ** 2).sum()
    explained = 1 - residual / ((targets - targets.mean(0)) ** 2).sum()
    assert explained > 0.9
    # the salient images carry the planted pattern at each patient's severity
    fitted = pattern @ data.pattern / (data.pattern @ data.pattern)
    assert np.corrcoef(fitted, data.severity)[0, 1] > 0.95


def test_without_a_target_only_pattern_the_salient_space_starts_silent():
    """No axis recurs in held-out scans: every salient code starts at the prior (μ 0, σ 1)
    and the decoder's salient images at 0."""
    data = PlantedVolumes(pattern=0.0)
    nets = ContrastiveNets(input_shape=SHAPE, shared_dim=3, salient_dim=2, decoder="additive",
                           projection_voxels=512, channels=(4, 8), hidden=16, norm="group",
                           output="none")
    initialise_linear(nets, data)
    targets = torch.tensor(data.volumes["target"], dtype=torch.float32).view(-1, 1, *SHAPE)
    with torch.no_grad():
        mu, logvar = nets.eval().salient_encoder(targets)
    assert mu.abs().max() == 0 and logvar.abs().max() == 0
    assert nets.decoder.salient_linear.weight.abs().max() == 0


def test_the_sparsest_completion_restores_a_local_pattern_seen_outside_healthy_directions():
    rng = np.random.default_rng(0)
    healthy, _ = np.linalg.qr(rng.normal(0, 1, (512, 8)))  # dense healthy directions
    pattern = np.zeros(512)
    pattern[100:120] = 1.0
    seen = pattern - healthy @ (healthy.T @ pattern)  # what contrastive PCA sees of it
    completed = sparsest_completion(seen, healthy)
    assert np.abs(completed - pattern).max() < 1e-3 * np.abs(pattern).max()
    assert np.allclose(completed - healthy @ (healthy.T @ completed), seen)


def test_a_pattern_that_moves_a_healthy_direction_stays_out_of_the_targets_shared_code():
    """With `pattern_share`, a target's shared code is the encoder's less what its salient code
    moves it by: it stays where its healthy twin's is, a background's is the encoder's, and the
    salient image carries the whole pattern, its healthy-direction share included."""
    data = PlantedVolumes(pattern=0.3, overlap=0.3)
    targets = torch.tensor(data.volumes["target"], dtype=torch.float32).view(-1, 1, *SHAPE)
    backgrounds = torch.tensor(data.volumes["background"],
                               dtype=torch.float32).view(-1, 1, *SHAPE)

    def initialised(pattern_share: bool) -> ContrastiveNets:
        nets = ContrastiveNets(input_shape=SHAPE, shared_dim=3, salient_dim=2,
                               decoder="additive", projection_voxels=512, channels=(4, 8),
                               hidden=16, norm="group", output="none",
                               pattern_share=pattern_share)
        initialise_linear(nets, data)
        return nets.eval()

    def shift(shared: torch.Tensor, nets: ContrastiveNets) -> float:
        """Mean squared distance of the targets' shared codes from their twins'."""
        return float((shared - nets.code_means(twins, "background")[0]).square().sum(1).mean())

    twins = torch.tensor(data.twins, dtype=torch.float32).view(-1, 1, *SHAPE)
    with torch.no_grad():
        plain, corrected = initialised(False), initialised(True)
        leaked = shift(plain.code_means(targets)[0], plain)
        shared, salient = corrected.code_means(targets)
        assert leaked > 0.1 and shift(shared, corrected) < 0.3 * leaked
        assert torch.equal(corrected.code_means(backgrounds, "background")[0],
                           corrected.shared_encoder(backgrounds)[0])
        pattern = (corrected.decode(shared, salient) - corrected.decode(shared)).flatten(1)
        residual = ((corrected.decode(shared, salient) - targets) ** 2).sum()
    fitted = pattern.numpy() @ data.pattern / (data.pattern @ data.pattern)
    assert np.corrcoef(fitted, data.severity)[0, 1] > 0.95
    assert abs(np.median(fitted / data.severity) - 1) < 0.2  # the whole pattern, not a part
    assert 1 - residual / ((targets - targets.mean(0)) ** 2).sum() > 0.9


def test_a_shared_projection_on_the_linear_grid_sees_healthy_detail_the_coarse_grid_misses():
    """Backgrounds vary in a voxel checkerboard, which averages to 0 on the projection grid
    (stride 2). A shared projection there cannot see it; one on the decoder's grid can, and its
    images are its own axes, so a background far beyond the training scans is decoded as well
    as its projection onto them. The salient code still reads the pattern's severity."""
    data = PlantedVolumes(detail=True)
    backgrounds = torch.tensor(data.volumes["background"],
                               dtype=torch.float32).view(-1, 1, *SHAPE)
    extreme = data.template + 8 * (backgrounds[0].flatten().numpy() - data.template)
    targets = torch.tensor(data.volumes["target"], dtype=torch.float32).view(-1, 1, *SHAPE)

    def initialised(shared_projection: str) -> ContrastiveNets:
        nets = ContrastiveNets(input_shape=SHAPE, shared_dim=3, salient_dim=2,
                               decoder="additive", projection_voxels=64, channels=(4, 8),
                               hidden=16, norm="group", output="none", pattern_share=True,
                               shared_projection=shared_projection)
        initialise_linear(nets, data)
        return nets.eval()

    def explained(nets: ContrastiveNets, scans: torch.Tensor) -> float:
        with torch.no_grad():
            decoded = nets.decode(nets.code_means(scans, "background")[0])
        total = ((scans - torch.from_numpy(data.template).float().view(1, 1, *SHAPE)) ** 2).sum()
        return float(1 - ((decoded - scans) ** 2).sum() / total)

    coarse, fine = initialised("coarse"), initialised("linear")
    assert fine.shared_encoder.linear.stride == 1 and coarse.shared_encoder.linear.stride == 2
    far = torch.tensor(extreme, dtype=torch.float32).view(1, 1, *SHAPE)
    assert explained(coarse, backgrounds) < 0.9 < 0.99 < explained(fine, backgrounds)
    assert explained(coarse, far) < 0.95 < 0.99 < explained(fine, far)
    with torch.no_grad():
        salient = fine.salient_encoder(targets)[0]
    assert abs(np.corrcoef(salient[:, 0].numpy(), data.severity)[0, 1]) > 0.95


def test_salient_images_on_a_coarser_grid_are_the_block_averages_of_those_on_the_shared_grid():
    """`salient_linear_voxels` puts the salient images alone on a coarser grid (stride 2 here):
    the template, the shared images, both projections and the pattern share are those of nets
    with one grid, and the salient images are the block averages of theirs."""
    data = PlantedVolumes(detail=True)

    def initialised(salient_voxels: int | None) -> ContrastiveNets:
        nets = ContrastiveNets(input_shape=SHAPE, shared_dim=3, salient_dim=2,
                               decoder="additive", projection_voxels=64, channels=(4, 8),
                               hidden=16, norm="group", output="none", pattern_share=True,
                               shared_projection="linear", salient_linear_voxels=salient_voxels)
        initialise_linear(nets, data)
        return nets

    one_grid, split = initialised(None), initialised(64)
    assert split.decoder.salient_linear.coarse == (4, 4, 4)
    assert split.decoder.shared_linear.coarse == one_grid.decoder.salient_linear.coarse == SHAPE
    expected = one_grid.state_dict()
    for name, value in split.state_dict().items():  # the parts the linear start sets
        if name.startswith(("decoder.template", "decoder.shared_linear", "pattern_share")) or (
                "encoder.linear" in name):
            torch.testing.assert_close(value, expected[name], msg=name)
    fine = one_grid.decoder.salient_linear.images().view(2, 1, *SHAPE)
    torch.testing.assert_close(split.decoder.salient_linear.images(),
                               torch.nn.functional.avg_pool3d(fine, 2).flatten(1))
    with torch.no_grad():
        assert split.decode(torch.zeros(1, 3), torch.ones(1, 2)).shape == (1, 1, *SHAPE)
    with pytest.raises(ValueError, match="salient_linear_voxels=512 exceeds linear_voxels=64"):
        ContrastiveNets(input_shape=SHAPE, decoder="additive", linear_voxels=64,
                        salient_linear_voxels=512)


def test_the_salient_detail_is_the_part_of_a_pattern_the_coarse_grid_cannot_hold():
    """A pattern = a part constant on 2-voxel blocks + a voxel checkerboard (0 in every block
    average): the detail found from the targets is the checkerboard alone."""
    rng = np.random.default_rng(0)
    blocks = regrid(rng.normal(0, 0.5, (1, 64)), SHAPE, 2, 1)[0]
    checkerboard = 0.5 * CHECKERBOARD
    severity = rng.uniform(0.5, 1.5, 60)
    background = 1 + rng.normal(0, 0.01, (60, 512))
    target = 1 + rng.normal(0, 0.01, (60, 512)) + severity[:, None] * (blocks + checkerboard)
    rest = healthy_rest(target, background, 2)
    detail = salient_detail(rest, severity[:, None], SHAPE, (2, 1), 1e-3)[0]
    assert abs(detail @ checkerboard) / (np.linalg.norm(detail) * np.linalg.norm(
        checkerboard)) > 0.99
    assert np.linalg.norm(detail - checkerboard) < 0.15 * np.linalg.norm(checkerboard)


def test_regrid_reads_each_cell_over_the_input_voxels_coarse_pool_averages_it_from():
    """On a grid the stride does not divide (40 voxels, cells of 3: 14 cells, the last cut
    short), each input voxel i takes cell i // 3's value, as `coarse_pool` pooled it, and
    pooling that image again gives the cells back (the last one diluted by the padding, as a
    scan's is); a grid of stride 2 averages the input voxels of its own cells. Stretching 14
    cells over 40 voxels would put voxel 20 in cell 7."""
    shape = (40, 5, 4)
    cells = np.random.default_rng(0).normal(size=(2, 14 * 2 * 2))
    fine = regrid(cells, shape, 3, 1).reshape(2, *shape)
    index = np.indices(shape) // 3
    expected = cells.reshape(2, 14, 2, 2)[:, index[0], index[1], index[2]]
    np.testing.assert_array_equal(fine, expected)
    pooled = regrid(fine.reshape(2, -1), shape, 1, 3).reshape(2, 14, 2, 2)
    np.testing.assert_allclose(pooled[:, :13, 0, 0], cells.reshape(2, 14, 2, 2)[:, :13, 0, 0])
    np.testing.assert_allclose(pooled[:, 13, 0, 0], cells.reshape(2, 14, 2, 2)[:, 13, 0, 0] / 3)
    half = regrid(cells, shape, 3, 2).reshape(2, 20, 3, 2)
    assert half[0, 9, 0, 0] == fine[0, 18, 0, 0] == fine[0, 19, 0, 0]  # both in cell 6
    assert half[0, 10, 0, 0] == pytest.approx((fine[0, 20, 0, 0] + fine[0, 21, 0, 0]) / 2)  # 6, 7


def test_a_patterns_detail_is_fitted_only_where_the_pattern_lies():
    """A local pattern (a 4-voxel cube: a part constant on 2-voxel blocks + a checkerboard) and,
    elsewhere, a checkerboard that the targets carry in rough proportion to their codes: the
    pattern's detail is the pattern's checkerboard and nothing outside the cube, where the
    unrestricted `salient_detail` also takes the other checkerboard."""
    rng = np.random.default_rng(0)
    cube = np.zeros(SHAPE, dtype=bool)
    cube[:4, :4, :4] = True
    cube = cube.ravel()
    blocks = regrid(rng.normal(0, 0.5, (1, 64)), SHAPE, 2, 1)[0] * cube
    checkerboard = 0.5 * CHECKERBOARD * cube
    other = 0.3 * CHECKERBOARD * ~cube  # not the pattern, but it follows the targets' codes
    severity = rng.uniform(0.5, 1.5, 60)
    background = 1 + rng.normal(0, 0.01, (60, 512))
    target = (1 + rng.normal(0, 0.01, (60, 512)) + severity[:, None] * (blocks + checkerboard)
              + (severity + rng.normal(0, 0.3, 60))[:, None] * other)
    rest = healthy_rest(target, background, 2)
    detail = pattern_detail(blocks[None], rest, severity[:, None], 0.05, SHAPE, (2, 1), 1e-3)[0]
    assert np.all(detail[~cube] == 0)
    assert np.linalg.norm(detail - checkerboard) < 0.1 * np.linalg.norm(checkerboard)
    unrestricted = salient_detail(rest, severity[:, None], SHAPE, (2, 1), 1e-3)[0]
    assert np.linalg.norm(unrestricted[~cube]) > 0.5 * np.linalg.norm(other)


def test_the_pattern_share_counts_the_detail_finer_than_the_salient_grid():
    """A pattern whose voxels vary as a checkerboard, along a healthy direction that moves them
    the same way, with the salient projection on 2-voxel blocks and the shared one on the
    voxels: the shared axes see part of the checkerboard, the coarse pattern share none. With
    the pattern's detail the targets' shared codes come back to their twins'."""
    data = PlantedVolumes(pattern=0.3, overlap=0.1, fine_pattern=True)
    targets = torch.tensor(data.volumes["target"], dtype=torch.float32).view(-1, 1, *SHAPE)
    twins = torch.tensor(data.twins, dtype=torch.float32).view(-1, 1, *SHAPE)

    def shift(share_detail: float | None) -> float:
        """Mean squared distance of the targets' shared codes from their twins'."""
        nets = ContrastiveNets(input_shape=SHAPE, shared_dim=3, salient_dim=2,
                               decoder="additive", projection_voxels=64, channels=(4, 8),
                               hidden=16, norm="group", output="none", pattern_share=True,
                               shared_projection="linear")
        initialise_linear(nets, data, share_detail=share_detail)
        with torch.no_grad():
            shared = nets.eval().code_means(targets)[0]
            return float((shared - nets.code_means(twins, "background")[0]).square().sum(1)
                         .mean())

    coarse, detailed = shift(None), shift(0.05)
    assert coarse > 0.2 and detailed < 0.25 * coarse
