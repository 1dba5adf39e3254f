import pytest
import torch

from seedling.model.rope import Rope3D, apply_rope, image_positions


def _scores(rope, q, k, pq, pk):
    cq, sq = rope(pq)
    ck, sk = rope(pk)
    return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum(-1)


def test_relative_position_property():
    torch.manual_seed(0)
    rope = Rope3D((16, 24, 24))
    q, k = torch.randn(1, 1, 5, 64), torch.randn(1, 1, 5, 64)
    pq, pk = torch.randint(0, 20, (5, 3)).float(), torch.randint(0, 20, (5, 3)).float()
    shift = torch.tensor([3.0, -7.0, 11.0])
    a = _scores(rope, q, k, pq, pk)
    b = _scores(rope, q, k, pq + shift, pk + shift)
    assert torch.allclose(a, b, atol=1e-4)


def test_image_index_is_distinguished():
    torch.manual_seed(0)
    rope = Rope3D((16, 24, 24))
    q, k = torch.randn(1, 1, 1, 64), torch.randn(1, 1, 1, 64)
    same = _scores(rope, q, k, torch.tensor([[0.0, 2, 3]]), torch.tensor([[0.0, 2, 3]]))
    other = _scores(rope, q, k, torch.tensor([[0.0, 2, 3]]), torch.tensor([[16.0, 2, 3]]))
    assert (same - other).abs().item() > 1e-3


def test_rotation_preserves_norm():
    rope = Rope3D((16, 24, 24))
    x = torch.randn(2, 4, 64, 64)
    cos, sin = rope(image_positions(3, 8, 8))
    assert torch.allclose(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1), atol=1e-4)


def test_image_positions_layout():
    p = image_positions(5, 2, 3)
    assert p.shape == (6, 3)
    assert p[:, 0].eq(5).all()
    assert p[4].tolist() == [5.0, 1.0, 1.0]


def test_full_frame_box_is_todays_positions():
    from seedling.model.rope import box_positions

    for rows, cols in [(8, 8), (4, 6)]:
        assert torch.equal(box_positions(3, rows, cols, (0, 0, 1, 1), rows, cols), image_positions(3, rows, cols))


def test_box_positions_land_inside_the_box():
    from seedling.model.rope import box_positions

    # an 8x8 reference placed in the right half of an 8x8 output: columns span 4..8 token widths
    p = box_positions(17, 8, 8, (0.5, 0.0, 1.0, 1.0), 8, 8)
    assert torch.all(p[:, 0] == 17)
    assert p[:, 2].min().item() == pytest.approx(4 - 0.25) and p[:, 2].max().item() == pytest.approx(7.25)
    assert p[:, 1].min().item() == pytest.approx(0.0) and p[:, 1].max().item() == pytest.approx(7.0)
    # the left-half box does not overlap it
    q = box_positions(18, 8, 8, (0.0, 0.0, 0.5, 1.0), 8, 8)
    assert q[:, 2].max() < p[:, 2].min()
    # a small reference into a big output: its centre maps onto the box centre
    s = box_positions(17, 4, 4, (0.25, 0.25, 0.75, 0.75), 16, 16)
    assert s[:, 1:].mean(0).tolist() == pytest.approx([7.5, 7.5])


def test_box_is_checked():
    from seedling.model.rope import box_positions

    for bad in [(0.5, 0, 0.5, 1), (-0.1, 0, 1, 1), (0, 0, 1, 1.2), (0.8, 0, 0.2, 1)]:
        with pytest.raises(ValueError, match="fractions of the output"):
            box_positions(0, 4, 4, bad, 4, 4)
