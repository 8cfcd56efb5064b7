"""KD losses: hand-computed value, zero at equality, padding masked, T² scaling, alignment, annealing."""

import math

import pytest
import torch
import torch.nn.functional as F

from edgekd.kd_losses import align_frames, annealing_mse, annealing_temperature, kd_loss


def test_kd_equals_hand_computed_value():
    s = torch.tensor([[[2.0, 0.0, 0.0]]])  # student logits, one frame
    t = torch.log(torch.tensor([[[0.5, 0.25, 0.25]]]))  # teacher probabilities
    ps = [math.exp(2) / (math.exp(2) + 2), 1 / (math.exp(2) + 2), 1 / (math.exp(2) + 2)]
    pt = [0.5, 0.25, 0.25]
    want = sum(a * math.log(a / b) for a, b in zip(pt, ps))
    assert kd_loss(s, t, torch.tensor([1]), 1.0).item() == pytest.approx(want, rel=1e-5)


def test_kd_zero_when_equal_and_positive_otherwise():
    lp = torch.randn(2, 7, 29).log_softmax(-1)
    lens = torch.tensor([7, 5])
    for temp in (1.0, 2.0, 4.0):
        assert kd_loss(lp, lp, lens, temp).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(torch.randn(2, 7, 29), lp, lens, 2.0).item() > 0


def test_kd_masks_padding():
    s, t = torch.randn(2, 9, 29), torch.randn(2, 9, 29).log_softmax(-1)
    lens = torch.tensor([9, 4])
    base = kd_loss(s, t, lens, 2.0)
    s2 = s.clone()
    s2[1, 4:] = torch.randn(5, 29) * 50  # garbage in padded frames
    assert kd_loss(s2, t, lens, 2.0).item() == pytest.approx(base.item(), rel=1e-6)


def test_t_squared_scaling():
    s, t = torch.randn(1, 20, 29), torch.randn(1, 20, 29).log_softmax(-1)
    lens = torch.tensor([20])
    kl3 = F.kl_div(F.log_softmax(s / 3, -1), F.log_softmax(t / 3, -1), log_target=True, reduction="none").sum(-1).mean()
    assert kd_loss(s, t, lens, 3.0).item() == pytest.approx(9 * kl3.item(), rel=1e-5)


@pytest.mark.parametrize("t_len,n_s,rt,rs", [(100, 25, 100.0, 25.0), (50, 25, 50.0, 25.0), (25, 50, 25.0, 50.0),
                                              (25, 25, 25.0, 25.0), (30, 25, 30.0, 25.0), (24, 25, 25.0, 25.0)])
def test_alignment_shapes_and_distributions(t_len, n_s, rt, rs):
    lp = torch.randn(t_len, 29).log_softmax(-1)
    out = align_frames(lp, n_s, rt, rs)
    assert out.shape == (n_s, 29)
    assert torch.allclose(out.exp().sum(-1), torch.ones(n_s), atol=1e-5)


def test_alignment_pools_in_probability_space():
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).clamp(min=1e-9)
    out = align_frames(p.log(), 1, 50.0, 25.0)
    assert torch.allclose(out.exp(), torch.tensor([[0.5, 0.5]]), atol=1e-6)


def test_annealing_schedule_phases():
    temps = [annealing_temperature(s, 100, 5) for s in range(110)]
    assert temps[0] == 1 and temps[99] == 5 and temps[100] is None and temps[109] is None
    assert all(a <= b for a, b in zip(temps[:100], temps[1:100]))  # non-decreasing 1 -> tau_max
    assert sorted(set(temps[:100])) == [1, 2, 3, 4, 5]
    z = torch.randn(1, 6, 29)
    lp = z.log_softmax(-1)
    lens = torch.tensor([6])
    # at T = tau_max the target is the teacher's own (centred) logits: zero loss for student = teacher
    assert annealing_mse(z, lp, lens, 5, 5).item() == pytest.approx(0.0, abs=1e-6)
    assert annealing_mse(z, lp, lens, 1, 5).item() > 0  # early: a softened target


def test_layer_map_spreads_student_layers_over_the_teacher():
    from edgekd.kd_losses import layer_map

    assert layer_map(6, 12) == [1, 3, 5, 7, 9, 11]  # student i <- teacher 2i (1-based)
    assert layer_map(4, 4) == [0, 1, 2, 3] and layer_map(3, 12)[-1] == 11  # last student <- last teacher
    assert layer_map(12, 6) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_feature_kd_projects_to_teacher_dim_and_learns():
    from edgekd.kd_losses import FeatureProjector, feature_kd_loss

    torch.manual_seed(0)
    s = [torch.randn(2, 7, 96, requires_grad=True) for _ in range(2)]
    t = [torch.randn(2, 7, 192) for _ in range(2)]
    proj = FeatureProjector(96, 192, 2)
    assert [p.shape for p in proj(s)] == [(2, 7, 192)] * 2
    lens = torch.tensor([7, 4])
    loss = feature_kd_loss(s, t, lens, proj)
    loss.backward()
    assert proj.proj[0].weight.grad is not None and s[0].grad[1, 4:].abs().sum() == 0  # padding teaches nothing
    opt = torch.optim.Adam(proj.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        l2 = feature_kd_loss([x.detach() for x in s], t, lens, proj, kind="mse")
        l2.backward()
        opt.step()
    assert l2.item() < feature_kd_loss([x.detach() for x in s], t, lens, FeatureProjector(96, 192, 2), kind="mse").item()


def test_relation_kd_zero_when_equal_and_blind_to_rotation_and_padding():
    from edgekd.kd_losses import relation_kd_loss

    torch.manual_seed(0)
    t = torch.randn(2, 9, 16)
    lens = torch.tensor([9, 6])
    assert relation_kd_loss(t, t, lens).abs().item() < 1e-6
    q, _ = torch.linalg.qr(torch.randn(16, 16))  # a rotation of the student's feature space
    assert relation_kd_loss(3.0 * t @ q, t, lens).abs().item() < 1e-4
    other = torch.randn(2, 9, 8)
    assert relation_kd_loss(other, t, lens).item() > 0.01  # different structure, different loss
    padded = t.clone()
    padded[1, 6:] = 100 * torch.randn(3, 16)  # garbage in the padding changes nothing
    assert torch.allclose(relation_kd_loss(other, padded, lens), relation_kd_loss(other, t, lens))
