"""The notation identities of the schedule, and the WaveGrad/SR3 noise-level distribution p(γ)."""

import json

import pytest
import torch

from sr3_edu.schedule import NoiseSchedule


def test_linear_schedule_has_the_paper_and_textbook_quantities_as_float64():
    s = NoiseSchedule.linear(2000, 1e-6, 1e-2)
    assert s.T == 2000
    for name in ("betas", "alphas", "gammas", "gammas_prev"):
        v = getattr(s, name)
        assert v.dtype == torch.float64 and v.shape == (2000,), name
    # index t−1 holds step t
    assert s.betas[0].item() == pytest.approx(1e-6) and s.betas[-1].item() == pytest.approx(1e-2)


def test_alpha_is_one_minus_beta_and_gamma_is_the_cumulative_product():
    s = NoiseSchedule.linear(1000, 1e-4, 0.02)
    torch.testing.assert_close(s.alphas, 1 - s.betas, rtol=0, atol=0)
    torch.testing.assert_close(s.gammas, torch.cumprod(s.alphas, 0), rtol=0, atol=0)
    assert s.gammas_prev[0].item() == 1.0
    torch.testing.assert_close(s.gammas_prev[1:], s.gammas[:-1], rtol=0, atol=0)


def test_textbook_alpha_bar_equals_paper_gamma():
    # The textbook's code: betas = linspace(1e-4, 0.02, 1000); alphas = 1 - betas; alpha_bars = cumprod(alphas)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alpha_bars = torch.cumprod(1 - betas, dim=0)
    torch.testing.assert_close(NoiseSchedule.linear(1000, 1e-4, 0.02).gammas, alpha_bars)


def test_sample_gamma_covers_every_interval_with_equal_probability_and_stays_inside():
    s = NoiseSchedule.linear(20, 1e-3, 0.3)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    gamma = s.sample_gamma(n, generator=g, dtype=torch.float64)
    assert gamma.shape == (n,)
    # each draw lies in exactly one interval [γ_t, γ_{t−1}]; count draws per interval
    lo, hi = s.gammas, s.gammas_prev
    inside = (gamma[:, None] >= lo[None]) & (gamma[:, None] <= hi[None])
    assert bool(inside.any(1).all()), "a draw fell outside every interval"
    counts = inside.float().sum(0)
    expected = n / s.T
    # binomial std ≈ √(n p (1−p)) ≈ 97; 6σ band
    assert bool(((counts - expected).abs() < 6 * (expected * (1 - 1 / s.T)) ** 0.5).all()), counts
    # within an interval the draw is uniform: its mean position is ≈ 1/2
    t = inside.float().argmax(1)
    pos = (gamma - lo[t]) / (hi[t] - lo[t])
    assert abs(pos.mean().item() - 0.5) < 0.01


def test_sample_gamma_draws_independently_per_example():
    s = NoiseSchedule.linear()
    gamma = s.sample_gamma(64, generator=torch.Generator().manual_seed(1))
    assert gamma.unique().numel() == 64


def test_sample_gamma_is_reproducible_from_a_generator():
    s = NoiseSchedule.linear()
    a = s.sample_gamma(8, generator=torch.Generator().manual_seed(3))
    b = s.sample_gamma(8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_respace_keeps_training_gammas_and_is_a_schedule_of_its_own():
    train = NoiseSchedule.linear()
    fast = train.respace(100)
    assert fast.T == 100
    assert fast.gammas[-1].item() == pytest.approx(train.gammas[-1].item(), rel=1e-12)
    # every kept γ is one of the training γ's
    assert bool(torch.isin(fast.gammas.round(decimals=12), train.gammas.round(decimals=12)).all())
    # α_t = γ_t / γ_{t−1}
    torch.testing.assert_close(fast.alphas, fast.gammas / fast.gammas_prev)


def test_respace_to_all_steps_is_the_identity():
    train = NoiseSchedule.linear(50, 1e-4, 0.05)
    torch.testing.assert_close(train.respace(50).alphas, train.alphas)


def test_truncate_keeps_the_steps_above_a_noise_level():
    s = NoiseSchedule.linear()
    short = s.truncate(0.5)
    assert short.gammas[-1].item() >= 0.5 > s.gammas[short.T].item()


def test_posterior_variance_is_zero_at_step_one_and_below_one_minus_alpha():
    s = NoiseSchedule.linear(1000, 1e-4, 0.02)
    assert s.posterior_variance[0].item() == 0.0
    assert bool((s.posterior_variance <= s.betas + 1e-15).all())


def test_cosine_and_from_alphas_build_valid_schedules():
    c = NoiseSchedule.cosine(100)
    assert c.T == 100 and bool((c.gammas[1:] < c.gammas[:-1]).all())
    a = NoiseSchedule.from_alphas([0.9, 0.8, 0.5])
    torch.testing.assert_close(a.gammas, torch.tensor([0.9, 0.72, 0.36], dtype=torch.float64))


def test_a_schedule_writes_and_reads_its_own_serialised_form():
    linear = NoiseSchedule.linear(500, 1e-5, 2e-2)
    assert linear.to_dict() == {"kind": "linear", "T": 500, "beta_start": 1e-5, "beta_end": 2e-2}
    for s in (linear, linear.respace(7), NoiseSchedule.cosine(20)):
        back = NoiseSchedule.from_dict(json.loads(json.dumps(s.to_dict())))
        torch.testing.assert_close(back.alphas, s.alphas, rtol=0, atol=0)
    assert NoiseSchedule.from_dict({"kind": "linear", "T": 30}).betas[-1].item() == pytest.approx(1e-2)
    with pytest.raises(ValueError, match="unknown noise schedule kind 'sigmoid'"):
        NoiseSchedule.from_dict({"kind": "sigmoid"})


@pytest.mark.parametrize("T, gamma_end", [(25, 1e-2), (100, 1e-3), (50, 4e-5)])
def test_linear_to_reaches_the_asked_noise_level_on_a_linear_beta(T, gamma_end):
    s = NoiseSchedule.linear_to(T, gamma_end)
    assert s.T == T
    assert s.gammas[-1].item() == pytest.approx(gamma_end, rel=1e-9)
    assert s.betas[0].item() == pytest.approx(1e-6)
    steps = s.betas.diff()
    torch.testing.assert_close(steps, steps[:1].expand_as(steps))  # β_t linear in t


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: NoiseSchedule.linear(0), "T must be"),
        (lambda: NoiseSchedule.linear(10, 0.1, 0.01), "start <= end"),
        (lambda: NoiseSchedule.from_alphas([0.5, 1.5]), "α_t must lie"),
        (lambda: NoiseSchedule.linear(10).respace(11), "respace"),
        (lambda: NoiseSchedule.from_gammas([0.5, 0.6]), "decrease"),
        (lambda: NoiseSchedule.linear_to(10, 1.5), "gamma_end"),
        (lambda: NoiseSchedule.linear_to(10, 0.5, start=0.2), "already"),
    ],
)
def test_bad_schedules_are_refused_with_a_clear_message(make, message):
    with pytest.raises(ValueError, match=message):
        make()
