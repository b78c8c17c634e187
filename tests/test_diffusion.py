"""Forward process, loss, and the sampler — including a closed-form check that needs no training."""

import math

import pytest
import torch

from sr3_edu.diffusion import loss, predict_y0, q_sample, sample
from sr3_edu.images import upscale_bicubic
from sr3_edu.schedule import NoiseSchedule
from sr3_edu.unet import SR3UNet


def small_unet(**kw):
    cfg = dict(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, attn_levels=(2,))
    cfg.update(kw)
    return SR3UNet(**cfg)


def test_q_sample_is_sqrt_gamma_y0_plus_sqrt_one_minus_gamma_noise_per_example():
    y0 = torch.randn(2, 3, 4, 4)
    eps = torch.randn(2, 3, 4, 4)
    gamma = torch.tensor([0.9, 0.25])
    y = q_sample(y0, gamma, eps)
    for i, g in enumerate(gamma.tolist()):
        torch.testing.assert_close(y[i], math.sqrt(g) * y0[i] + math.sqrt(1 - g) * eps[i])
    torch.testing.assert_close(predict_y0(y, gamma, eps), y0, atol=1e-5, rtol=1e-5)


class EpsSpy(torch.nn.Module):
    """Returns a fixed guess and records the inputs it was given."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_lr, y_t, gamma):
        self.seen = (x_lr, y_t, gamma)
        return torch.zeros_like(y_t) + self.w


def test_loss_is_the_mean_p_norm_of_the_noise_error():
    model = EpsSpy()
    sched = NoiseSchedule.linear()
    x, y0 = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 8, 8)
    # with ε̂ = 0 the L1 loss is E|ε| = √(2/π) and the L2 loss is E ε² = 1
    l1 = loss(model, x, y0, sched, p=1, generator=torch.Generator().manual_seed(0))
    l2 = loss(model, x, y0, sched, p=2, generator=torch.Generator().manual_seed(0))
    assert l1.item() == pytest.approx(math.sqrt(2 / math.pi), rel=0.15)
    assert l2.item() == pytest.approx(1.0, rel=0.25)
    # the network saw the noisy image at a per-example γ drawn from p(γ)
    _, y_t, gamma = model.seen
    assert gamma.shape == (4,) and gamma.unique().numel() == 4
    g = torch.Generator().manual_seed(0)
    gamma_ref = sched.sample_gamma(4, generator=g)
    eps_ref = torch.randn(y0.shape, generator=g)
    torch.testing.assert_close(y_t, q_sample(y0, gamma_ref, eps_ref))


def test_loss_rejects_other_norms():
    with pytest.raises(ValueError, match="p must be 1"):
        loss(EpsSpy(), torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 4, 4), NoiseSchedule.linear(), p=3)


@pytest.mark.parametrize("scale", [4, 8])
def test_sampler_output_shape_and_dtype_for_odd_sizes(scale):
    model = small_unet().eval()
    x = torch.randn(2, 3, 24, 40)
    y = sample(model, x, NoiseSchedule.linear(3, 1e-3, 0.5), scale=scale, generator=torch.Generator().manual_seed(0))
    assert y.shape == (2, 3, 24 * scale, 40 * scale) and y.dtype == torch.float32


def test_sampler_is_reproducible_from_a_seed_and_differs_across_seeds():
    model = small_unet().eval()
    torch.manual_seed(0)
    for p in model.parameters():  # zero-initialised output layers would make every ε̂ zero
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(1, 3, 8, 8)
    sched = NoiseSchedule.linear(5, 1e-3, 0.5)

    def run(seed):
        return sample(model, x, sched, scale=4, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(1), run(1))
    assert not torch.allclose(run(1), run(2))


def test_sampler_returns_the_trajectory_with_a_stride():
    sched = NoiseSchedule.linear(10, 1e-3, 0.5)
    y, traj = sample(EpsSpy(), torch.zeros(1, 3, 2, 2), sched, scale=2, return_trajectory=5)
    assert [s.t for s in traj] == [10, 5, 0]
    assert torch.equal(traj[-1].y_t, y) and traj[-1].y0_hat is None
    assert traj[0].y0_hat.shape == (1, 3, 4, 4)


def test_sampler_follows_the_paper_update_exactly():
    """One step by hand: y_{t−1} = (y_t − (1−α_t)/√(1−γ_t) ε̂)/√α_t + √(1−α_t) z."""
    sched = NoiseSchedule.from_alphas([0.9, 0.8])

    class Const(torch.nn.Module):
        def forward(self, x_lr, y_t, gamma):
            return torch.full_like(y_t, 0.5)

    x = torch.zeros(1, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    y_T = torch.randn(1, 1, 2, 2, generator=g)
    z = torch.randn(1, 1, 2, 2, generator=g)
    a, gam = sched.alphas.tolist(), sched.gammas.tolist()
    y1 = (y_T - (1 - a[1]) / math.sqrt(1 - gam[1]) * 0.5) / math.sqrt(a[1]) + math.sqrt(1 - a[1]) * z
    y0 = (y1 - (1 - a[0]) / math.sqrt(1 - gam[0]) * 0.5) / math.sqrt(a[0])  # z = 0 at t = 1
    out = sample(Const(), x, sched, scale=2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, y0.float())


def oracle(s: float):
    """The optimal noise predictor for y_0 = bicubic(x) + s·n, n ~ N(0, I).

    y_t = √γ y_0 + √(1−γ) ε, so given x, y_t ~ N(√γ b, (γ s² + 1 − γ) I) and
    E[ε | y_t] = √(1−γ) (y_t − √γ b) / (γ s² + 1 − γ).
    """

    class Oracle(torch.nn.Module):
        def forward(self, x_lr, y_t, gamma):
            b = upscale_bicubic(x_lr, size=y_t.shape[-2:])
            g = gamma.reshape(-1, 1, 1, 1).to(y_t.dtype)
            return (1 - g).sqrt() * (y_t - g.sqrt() * b) / (g * s**2 + 1 - g)

    return Oracle()


@pytest.mark.parametrize("variance", ["paper", "posterior"])
def test_closed_form_gaussian_is_recovered_by_the_sampler_over_2000_steps(variance):
    """Driving the sampler with the exact optimal predictor must reproduce the data distribution:
    y_0 − bicubic(x) has mean ≈ 0 and standard deviation ≈ s. No training involved."""
    s = 0.3
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    y0 = sample(
        oracle(s), x, NoiseSchedule.linear(), scale=4, variance=variance, generator=torch.Generator().manual_seed(0)
    )
    err = y0 - upscale_bicubic(x, 4)
    assert abs(err.mean().item()) < 0.01
    assert err.std().item() == pytest.approx(s, rel=0.03)


def test_closed_form_check_fails_for_a_wrong_sampler():
    """The same check is sharp: an oracle for the wrong s gives the wrong spread."""
    x = torch.zeros(4, 3, 8, 8)
    y0 = sample(oracle(0.6), x, NoiseSchedule.linear(), scale=4, generator=torch.Generator().manual_seed(0))
    assert abs(y0.std().item() - 0.3) > 0.1


def test_sampler_rejects_an_unknown_variance():
    with pytest.raises(ValueError, match="variance"):
        sample(EpsSpy(), torch.zeros(1, 3, 2, 2), NoiseSchedule.linear(2), scale=2, variance="ddim")


def test_clipped_posterior_mean_form_equals_the_paper_step_when_clipping_does_not_bind():
    sched = NoiseSchedule.linear(50, 1e-3, 0.05)
    x = torch.rand(2, 3, 4, 4) * 0.2
    kw = dict(scale=2, variance="posterior")
    plain = sample(oracle(0.05), x, sched, generator=torch.Generator().manual_seed(0), **kw)
    clipped = sample(oracle(0.05), x, sched, generator=torch.Generator().manual_seed(0), clip_y0=True, **kw)
    # for data this narrow the oracle's ŷ_0 = E[y_0 | y_t] stays inside [−1, 1]: the two forms are the same step
    torch.testing.assert_close(plain, clipped, atol=1e-4, rtol=1e-4)
    # at t = 1 the posterior mean is ŷ_0 itself, so with clipping the result always lies in [−1, 1]
    wild = sample(oracle(3.0), x, sched, generator=torch.Generator().manual_seed(0), clip_y0=True, **kw)
    assert wild.abs().max() <= 1.0
    assert sample(oracle(3.0), x, sched, generator=torch.Generator().manual_seed(0), **kw).abs().max() > 1.5


def test_ddim_with_eta_one_is_the_ancestral_chain_with_the_posterior_variance():
    """σ_t = η·σ_posterior: at η = 1 DDIM's update is the posterior mean plus the posterior noise, step for step."""
    sched = NoiseSchedule.linear(50, 1e-3, 0.05)
    x = torch.rand(2, 3, 4, 4) * 2 - 1
    ddim = sample(oracle(0.3), x, sched, scale=2, sampler="ddim", eta=1.0, generator=torch.Generator().manual_seed(0))
    ddpm = sample(oracle(0.3), x, sched, scale=2, variance="posterior", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ddim, ddpm, atol=1e-5, rtol=1e-5)


def test_ddim_with_eta_zero_is_a_deterministic_map_from_y_T():
    sched = NoiseSchedule.linear().respace(10)
    x = torch.rand(2, 3, 4, 4) * 2 - 1
    y_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    kw = dict(scale=2, sampler="ddim", eta=0.0, y_T=y_T)
    a = sample(oracle(0.3), x, sched, generator=torch.Generator().manual_seed(0), **kw)
    b = sample(oracle(0.3), x, sched, generator=torch.Generator().manual_seed(99), **kw)
    assert torch.equal(a, b)
    c = sample(oracle(0.3), x, sched, generator=torch.Generator().manual_seed(99), **{**kw, "eta": 0.5})
    assert (a - c).abs().max() > 0.01


def test_ddim_recovers_the_closed_form_gaussian_at_100_steps():
    """The same no-training check as for Algorithm 2, with the deterministic sampler on a respaced schedule."""
    s = 0.3
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    sched = NoiseSchedule.linear().respace(100)
    y0 = sample(oracle(s), x, sched, scale=4, sampler="ddim", eta=0.0, generator=torch.Generator().manual_seed(0))
    err = y0 - upscale_bicubic(x, 4)
    assert abs(err.mean().item()) < 0.01
    assert err.std().item() == pytest.approx(s, rel=0.06)


@pytest.mark.parametrize("kw", [dict(sampler="ddim", eta=1.5), dict(sampler="ddim", eta=-0.1), dict(sampler="plms")])
def test_sampler_rejects_an_unknown_sampler_or_an_eta_outside_0_1(kw):
    with pytest.raises(ValueError, match="eta|sampler"):
        sample(EpsSpy(), torch.zeros(1, 3, 2, 2), NoiseSchedule.linear(2), scale=2, **kw)
