"""The sampler and the network on the test device (SR3_EDU_TEST_DEVICE, default cpu; benchmarks/gpu_check.sh sets
cuda), including the compiled sampling loop: `sample(compile=True)` must give the eager sampler's images."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from sr3_edu.diffusion import refine_step, sample, step_coefficients
from sr3_edu.schedule import NoiseSchedule
from sr3_edu.unet import SR3UNet

DEVICE = torch.device(os.environ.get("SR3_EDU_TEST_DEVICE", "cpu"))
if DEVICE.type == "cuda" and not torch.cuda.is_available():
    raise RuntimeError("SR3_EDU_TEST_DEVICE=cuda, but torch sees no CUDA device")


class SmallNet(torch.nn.Module):
    """f_θ(x, y_t, γ) in two convolutions: small enough that torch.compile takes seconds, not minutes."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1 = torch.nn.Conv2d(6, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 3, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)

    def forward(self, x_lr, y_t, gamma):
        up = F.interpolate(x_lr, size=y_t.shape[-2:], mode="bicubic", align_corners=False)
        h = F.silu(self.conv1(torch.cat([up, y_t], dim=1)))
        return self.conv2(h) * gamma.reshape(-1, 1, 1, 1) + y_t * 0.5


def test_step_coefficients_are_the_paper_update_and_posterior_mean_scalars():
    sched = NoiseSchedule.linear(6, 1e-2, 0.3)
    a, g = sched.alphas.tolist(), sched.gammas.tolist()
    for variance in ("paper", "posterior"):
        k = step_coefficients(sched, variance)
        assert k.shape == (6, 7) and k.dtype == torch.float64
        for t in range(1, 7):
            gp = g[t - 2] if t > 1 else 1.0
            sigma2 = (1 - a[t - 1]) if variance == "paper" else (1 - gp) * (1 - a[t - 1]) / (1 - g[t - 1])
            want = [
                (1 - g[t - 1]) ** 0.5,
                g[t - 1] ** 0.5,
                (1 - a[t - 1]) / (1 - g[t - 1]) ** 0.5,
                a[t - 1] ** 0.5,
                gp**0.5 * (1 - a[t - 1]) / (1 - g[t - 1]),
                a[t - 1] ** 0.5 * (1 - gp) / (1 - g[t - 1]),
                sigma2**0.5 if t > 1 else 0.0,
            ]
            assert k[t - 1].tolist() == pytest.approx(want, rel=1e-12, abs=1e-15)
    with pytest.raises(ValueError, match="variance"):
        step_coefficients(sched, "ddim")


def test_one_refine_step_is_algorithm_2s_update():
    sched = NoiseSchedule.linear(4, 1e-2, 0.3)
    k = step_coefficients(sched, "paper")
    net = SmallNet()
    x, y_t, z = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    t = 3
    a, g = sched.alphas[t - 1].item(), sched.gammas[t - 1].item()
    gamma_t = torch.full((2,), g)
    y, y0_hat = refine_step(net, x, y_t, gamma_t, k[t - 1].float(), z)
    eps = net(x, y_t, gamma_t)
    want = (y_t - (1 - a) / (1 - g) ** 0.5 * eps) / a**0.5 + (1 - a) ** 0.5 * z
    torch.testing.assert_close(y, want)
    torch.testing.assert_close(y0_hat, (y_t - (1 - g) ** 0.5 * eps) / g**0.5)


def test_the_unet_gives_the_same_noise_estimate_on_the_test_device_as_on_the_cpu():
    torch.manual_seed(0)
    model = SR3UNet(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attn_levels=(1,), head_channels=8)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    model.eval()
    x, y, g = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 32, 32), torch.tensor([0.3, 0.9])
    with torch.inference_mode():
        want = model(x, y, g)
        got = model.to(DEVICE)(x.to(DEVICE), y.to(DEVICE), g.to(DEVICE)).cpu()
    # a GPU may use TF32 convolutions: agreement to about 1e-3 there, exact on the CPU
    torch.testing.assert_close(got, want, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("clip_y0", [False, True], ids=["paper-step", "clipped-y0"])
def test_the_compiled_sampling_loop_gives_the_eager_samplers_images(clip_y0, one_thread):
    """One compiled graph per step (a CUDA graph on a GPU) and the step's numbers read from a device table: the
    same chain as the eager loop, to float rounding, trajectory included."""
    net = SmallNet().to(DEVICE).eval()
    sched = NoiseSchedule.linear(2000).respace(6)
    x = torch.rand(3, 3, 5, 7, generator=torch.Generator().manual_seed(1)).to(DEVICE) * 2 - 1
    kw = dict(scale=2, variance="posterior", clip_y0=clip_y0, return_trajectory=2)

    def run(compile: bool):
        gen = torch.Generator(device=DEVICE).manual_seed(7)  # on the device: both loops draw the same noise
        return sample(net, x, sched, generator=gen, compile=compile, **kw)

    eager, eager_steps = run(False)
    compiled, compiled_steps = run(True)
    again, _ = run(True)  # the second call reuses the compiled step
    assert compiled.shape == (3, 3, 10, 14) and compiled.device.type == DEVICE.type
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(again, compiled)
    assert [s.t for s in compiled_steps] == [s.t for s in eager_steps] == [6, 4, 2, 0]
    for c, e in zip(compiled_steps, eager_steps):
        torch.testing.assert_close(c.y_t, e.y_t, atol=1e-4, rtol=1e-4)
        if e.y0_hat is not None:
            torch.testing.assert_close(c.y0_hat, e.y0_hat, atol=1e-4, rtol=1e-4)
    # and it is not the same chain as a different seed's
    other = sample(net, x, sched, generator=torch.Generator(device=DEVICE).manual_seed(8), compile=True, **kw)[0]
    assert (other - compiled).abs().max() > 0.05
