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
