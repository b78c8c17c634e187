"""How the U-Net's output becomes ε̂ (UNetConfig.parametrisation), checked against an exact oracle."""

import math

import pytest
import torch
import torch.nn.functional as F

from sr3_edu import diffusion
from sr3_edu.checkpoint import load_model, model_file
from sr3_edu.diagnose import noise_estimate_errors
from sr3_edu.images import upscale_bicubic
from sr3_edu.schedule import NoiseSchedule
from sr3_edu.unet import SR3UNet, UNetConfig, eps_from_v, eps_with_mean_head, noise_level_embedding

GAMMAS = (1e-4, 1e-3, 1e-2, 0.1, 0.5)


def photo_pair(seed=0):
    """y_0 exactly the bicubic enlargement of x, so the oracle below is exact."""
    lr = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 1.2 - 0.6
    return upscale_bicubic(lr, 4), lr


def exact_eps(x_lr, y_t, gamma):
    g = torch.as_tensor(gamma).reshape(-1, 1, 1, 1).to(y_t)
    up = F.interpolate(x_lr, size=y_t.shape[-2:], mode="bicubic", align_corners=False)
    return (y_t - g.sqrt() * up) / (1 - g).sqrt()


def v_of(x_lr, y_t, gamma):
    """The exact v = √γ·ε − √(1−γ)·y_0 of the oracle."""
    g = torch.as_tensor(gamma).reshape(-1, 1, 1, 1).to(y_t)
    y0 = F.interpolate(x_lr, size=y_t.shape[-2:], mode="bicubic", align_corners=False)
    return g.sqrt() * exact_eps(x_lr, y_t, gamma) - (1 - g).sqrt() * y0


class VNet(torch.nn.Module):
    """A v-parametrised f_θ whose body is the exact v, optionally blind to image-wide offsets of y_t."""

    def __init__(self, blind=False):
        super().__init__()
        self.blind = blind
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_lr, y_t, gamma):
        gamma = torch.as_tensor(gamma).reshape(-1).expand(y_t.shape[0])
        body_in = y_t - y_t.mean(dim=(2, 3), keepdim=True) if self.blind else y_t
        v = v_of(x_lr, body_in, gamma)
        if self.blind:  # the body then sees (and returns) the photo's own mean only
            y0_mean = F.interpolate(x_lr, size=y_t.shape[-2:], mode="bicubic").mean(dim=(2, 3), keepdim=True)
            v = v - v.mean(dim=(2, 3), keepdim=True) - (1 - gamma.reshape(-1, 1, 1, 1)).sqrt() * y0_mean
        return eps_from_v(v, y_t, gamma)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_v_form_with_the_exact_v_gives_the_exact_noise_estimate(gamma):
    y0, lr = photo_pair()
    eps = torch.randn(y0.shape, generator=torch.Generator().manual_seed(1))
    g = torch.full((2,), gamma)
    y_t = diffusion.q_sample(y0, g, eps)
    assert torch.allclose(eps_from_v(v_of(lr, y_t, g), y_t, g), eps, atol=1e-4)
    assert torch.allclose(VNet()(lr, y_t, g), eps, atol=1e-4)


def test_v_form_blind_to_offsets_still_responds_with_sqrt_one_minus_gamma():
    """The ε-network that ignores offsets has gain 0 (the drift); the v-form's skip term gives √(1−γ) ≈ 1."""
    y0, lr = photo_pair()
    exact = noise_estimate_errors(VNet(), lr, y0, GAMMAS, repeats=1)
    blind = noise_estimate_errors(VNet(blind=True), lr, y0, GAMMAS, repeats=1)
    for e, b in zip(exact, blind):
        assert e["mean_response"] == pytest.approx(e["mean_response_exact"], rel=1e-3)
        assert b["mean_response"] == pytest.approx(math.sqrt(1 - b["gamma"]), rel=1e-3)
    assert all(b["mean_response"] > 0.99 for b in blind[:3])  # γ ≤ 10⁻²: the levels where a chain starts


def test_v_form_blind_to_offsets_keeps_a_chain_from_pure_noise_on_the_photo_where_the_eps_form_drifts():
    lr = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.6
    y0 = upscale_bicubic(lr, 4)
    schedule = NoiseSchedule.linear().respace(50)

    def colour_error(net):
        out = diffusion.sample(net, lr, schedule, scale=4, generator=torch.Generator().manual_seed(0))
        return (out.mean(dim=(2, 3)) - y0.mean(dim=(2, 3))).abs().max().item()

    class BlindEps(torch.nn.Module):  # the same blindness in the ε-form: ε̂'s mean never follows y_t's
        def forward(self, x_lr, y_t, gamma):
            eps = exact_eps(x_lr, y_t, gamma)
            return eps - eps.mean(dim=(2, 3), keepdim=True)

    assert colour_error(VNet()) < 1e-3
    assert colour_error(VNet(blind=True)) < 0.05  # the mean of y_T's noise (1/64 per channel), never amplified
    assert colour_error(BlindEps()) > 0.2


def test_mean_head_with_a_one_and_c_zero_gives_the_exact_image_wide_mean_whatever_the_body_says():
    y0, lr = photo_pair()
    g = torch.tensor([1e-3, 0.3])
    eps = torch.randn(y0.shape, generator=torch.Generator().manual_seed(2))
    y_t = diffusion.q_sample(y0, g, eps)
    body = torch.randn(y0.shape) + 5.0  # any body output, far off in its mean
    ones, zeros = torch.ones(2, 3, 1, 1), torch.zeros(2, 3, 1, 1)
    out = eps_with_mean_head(body, y_t, upscale_bicubic(lr, 4), g, ones, zeros)
    assert torch.allclose(out.mean(dim=(2, 3)), eps.mean(dim=(2, 3)), atol=1e-4)
    # the spatial detail is the body's
    detail = out - out.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(detail, body - body.mean(dim=(2, 3), keepdim=True), atol=1e-5)


@pytest.mark.parametrize("kind", ["eps", "v", "mean"])
def test_unet_applies_its_parametrisation_to_the_body_output(kind):
    torch.manual_seed(0)
    model = SR3UNet(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, attn_levels=(), parametrisation=kind)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    body = {}
    model.conv_out.register_forward_hook(lambda m, i, o: body.setdefault("F", o))
    x, y_t, g = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 32, 32), torch.tensor([0.01, 0.6])
    with torch.no_grad():
        out = model(x, y_t, g)
        if kind == "eps":
            want = body["F"]
        elif kind == "v":
            want = eps_from_v(body["F"], y_t, g)
        else:
            emb = model.noise_mlp(noise_level_embedding(g, 16))
            a, c = model.mean_head(emb)[:, :, None, None].chunk(2, dim=1)
            want = eps_with_mean_head(body["F"], y_t, upscale_bicubic(x, 4), g, 1 + a, c)
    assert torch.allclose(out, want, atol=1e-5)


def test_unknown_parametrisation_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="eps, v, mean"):
        UNetConfig(parametrisation="x0")


def test_a_model_file_without_the_field_loads_as_the_eps_network(tmp_path):
    model = SR3UNet(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, attn_levels=())
    obj = model_file(model, objective="sr3", scale=4)
    del obj["unet"]["parametrisation"]  # as written before the field existed
    torch.save(obj, tmp_path / "old.pt")
    loaded, info = load_model(tmp_path / "old.pt")
    assert loaded.config.parametrisation == "eps"
    assert info.parametrisation == "eps"


def test_offset_noise_adds_one_constant_per_image_and_channel_to_the_training_noise():
    """A network that answers 0 has E|ε|² = 1 + s² under offset noise of strength s (p = 2)."""
    zero = lambda x, y_t, g: torch.zeros_like(y_t)  # noqa: E731
    y0, lr = torch.zeros(64, 3, 16, 16), torch.zeros(64, 3, 4, 4)
    sched = NoiseSchedule.linear()
    plain = diffusion.loss(zero, lr, y0, sched, p=2, generator=torch.Generator().manual_seed(0))
    offset = diffusion.loss(zero, lr, y0, sched, p=2, generator=torch.Generator().manual_seed(0), offset_noise=1.0)
    assert plain.item() == pytest.approx(1.0, abs=0.02)
    assert offset.item() == pytest.approx(2.0, abs=0.35)
    with pytest.raises(ValueError, match="offset_noise"):
        diffusion.loss(zero, lr, y0, sched, offset_noise=-0.1)


def test_the_regression_baseline_takes_the_unet_output_as_is_whatever_the_preset_says():
    from sr3_edu.train import ConfigError, TrainConfig

    assert TrainConfig.preset("tiny", objective="regression").unet_config().parametrisation == "eps"
    with pytest.raises(ConfigError, match="only for sr3"):
        TrainConfig.preset("tiny", objective="regression", unet_overrides={"parametrisation": "v"})
