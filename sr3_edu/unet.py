"""f_θ(x, y_t, γ): the conditional U-Net of SR3 (paper §3, App. A).

The network is the DDPM U-Net with the changes of Song et al. (2021) that SR3 adopts:

* **BigGAN-style residual blocks** (`sr3_edu.blocks`): GroupNorm → SiLU → conv → GroupNorm → FiLM(γ) → SiLU
  → dropout → conv, with down/up-sampling done *inside* the block on both the main path and the skip path;
* **residual sums rescaled by 1/√2**, ``(h + skip)/√2``, so activations keep their variance as
  blocks stack (the U-Net's long skip connections are concatenated, as in DDPM);
* self-attention at chosen levels, more residual blocks and larger channel multipliers.

Conditioning: the low-resolution image x is enlarged to y_t's size with **bicubic interpolation**
and **concatenated** with y_t along channels (3 + 3 = 6 channels for RGB). The noise level γ — a
continuous scalar per example, never the step index t — enters every residual block through a
sinusoidal embedding and an MLP that produce a FiLM scale and shift.

What the network returns is always an estimate ε̂ of the noise, so the paper's loss ‖f_θ − ε‖ (Algorithm 1) and
its sampler (Algorithm 2) use it as written. How the U-Net body's output F becomes ε̂ is `UNetConfig.parametrisation`:

* ``"eps"``: ε̂ = F (DDPM, the paper).
* ``"v"`` (every preset): ε̂ = √γ·F + √(1−γ)·y_t, so F estimates v = √γ·ε − √(1−γ)·y_0 (Salimans & Ho 2022,
  App. D). Why: the body's GroupNorms subtract spatial means, so F barely moves when a constant is added to y_t;
  an exact ε̂ moves by 1/√(1−γ) per unit of such an offset (whatever of y_t the photo x does not explain is
  noise). With ε̂ = F the image-wide mean of a chain from pure noise is an unstable mode and drifts; the skip
  term √(1−γ)·y_t gives the right response, ≈ 1, at the high noise levels where the drift starts.
* ``"mean"``: ε̂ = (F − F̄) + a(γ)·(ȳ_t − √γ·x̄)/√(1−γ) + c(γ), where F̄, ȳ_t and x̄ are the per-channel spatial
  means of F, y_t and the enlarged x, and a, c come from the noise embedding (a starts at 1, c at 0): the
  image-wide mean of ε̂ is taken from a small head that sees the means, the rest from the U-Net.

The paper's loss and Algorithm 2 stay literal with all three: the network still returns ε̂. With "v" the L1 loss
|ε̂ − ε| equals √γ·|F − v|, so it weights the levels differently from an L1 loss on v itself. At equal training budget
"v" is the one whose chain from pure noise lands on the photo ("mean" keeps the colour, but ŷ_0 = (y_t − √(1−γ)ε̂)/√γ
still multiplies the body's per-pixel errors by up to 1/√γ ≈ 150 at the first steps, and its samples stay noisy);
``benchmarks/ablation.py`` prints the comparison.

Levels: level 0 runs at the full output resolution and each further level halves it, so a model
trained on 64×64 crops runs on any image whose sides are divisible by 2^(levels−1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from .blocks import AttnBlock, ResBlock, group_norm

__all__ = [
    "SR3UNet",
    "UNetConfig",
    "PRESETS",
    "PARAMETRISATIONS",
    "noise_level_embedding",
    "eps_from_v",
    "eps_with_mean_head",
    "ResBlock",
    "AttnBlock",
]

PARAMETRISATIONS = ("eps", "v", "mean")
"""The values of `UNetConfig.parametrisation`."""

NOISE_LEVEL_SCALE = 1000.0
"""The embedding sees √γ · 1000 (see `noise_level_embedding`)."""


def noise_level_embedding(gamma: Tensor, dim: int, scale: float = NOISE_LEVEL_SCALE) -> Tensor:
    """Sinusoidal embedding of the noise level: [sin(c·ω_k), cos(c·ω_k)], c = scale·√γ, ω_k = 10⁴^(−k/(dim/2)).

    **What it sees**: √γ, the signal amplitude in ỹ = √γ·y_0 + √(1−γ)·ε (WaveGrad's "noise level"),
    multiplied by 1000. The paper writes f_θ(x, ỹ, γ) without saying how γ is embedded; the
    reference code feeds √γ unscaled, WaveGrad feeds √γ·5000. √γ spreads the levels more evenly than γ,
    and the factor 1000 puts it on the range of DDPM's integer t (0…1000), for which these
    frequencies were chosen: unscaled, √γ ∈ [0, 1] would only move the slowest sinusoids.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=gamma.device) / half)
    c = scale * gamma.float().clamp(min=0).sqrt()
    angles = c[:, None] * freqs[None, :]  # (B, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)  # (B, dim)


def eps_from_v(v: Tensor, y_t: Tensor, gamma: Tensor) -> Tensor:
    """ε̂ = √γ·v̂ + √(1−γ)·y_t: the noise estimate of a network whose body estimates v = √γ·ε − √(1−γ)·y_0.

    Exact for an exact v̂: with y_t = √γ·y_0 + √(1−γ)·ε, √γ·v + √(1−γ)·y_t = γ·ε + (1−γ)·ε = ε (Salimans & Ho 2022,
    App. D). An offset δ added to y_t that v̂ does not see moves ε̂ by √(1−γ)·δ, close to the exact 1/√(1−γ)·δ
    wherever γ is small, that is at high noise. ``gamma``: (B,) or a scalar.
    """
    g = torch.as_tensor(gamma, device=y_t.device, dtype=y_t.dtype).reshape(-1, 1, 1, 1)
    return g.sqrt() * v + (1 - g).sqrt() * y_t


def eps_with_mean_head(f: Tensor, y_t: Tensor, x_up: Tensor, gamma: Tensor, a: Tensor, c: Tensor) -> Tensor:
    """ε̂ = (F − F̄) + a·(ȳ_t − √γ·x̄)/√(1−γ) + c, bars the per-channel spatial means, a and c of shape (B, C, 1, 1).

    With a = 1, c = 0 and x̄ = ȳ_0 the mean part is exact: ȳ_t = √γ·ȳ_0 + √(1−γ)·ε̄ solved for ε̄. So the
    image-wide mean of ε̂ comes from this head, whatever the U-Net body F does with means; the network learns a, c
    (from the noise embedding) to correct for x̄ ≠ ȳ_0 and for how much of ȳ_t's offset is noise.
    """
    g = torch.as_tensor(gamma, device=y_t.device, dtype=y_t.dtype).reshape(-1, 1, 1, 1)
    y_mean = y_t.mean(dim=(2, 3), keepdim=True)
    x_mean = x_up.mean(dim=(2, 3), keepdim=True)
    return f - f.mean(dim=(2, 3), keepdim=True) + a * (y_mean - g.sqrt() * x_mean) / (1 - g).sqrt() + c


@dataclass
class UNetConfig:
    """Architecture of `SR3UNet` (stored in every checkpoint so a model rebuilds itself)."""

    in_channels: int = 3
    """Image channels (3 for RGB); the network's input has twice this (x enlarged ‖ y_t)."""
    base_channels: int = 64
    """Channels at level 0 (the paper's "channel dim")."""
    channel_mults: tuple[int, ...] = (1, 2, 4, 8)
    """Channels at level i = base_channels · channel_mults[i] (the paper's "depth multipliers")."""
    num_res_blocks: int = 2
    """Residual blocks per level on the way down (one more on the way up)."""
    attn_levels: tuple[int, ...] = (3,)
    """Levels (0 = full resolution) with self-attention after each residual block."""
    dropout: float = 0.0
    """Dropout inside residual blocks (the paper: 0.2 for 16→128, none otherwise)."""
    head_channels: int = 32
    """Channels per attention head."""
    parametrisation: str = "eps"
    """How the body's output F becomes ε̂: "eps" (ε̂ = F, the paper), "v" (ε̂ = √γ·F + √(1−γ)·y_t) or "mean" (F's
    spatial mean replaced by a head on the means of y_t and x); see the module docstring. Model files from before
    this field have none and load as "eps"."""

    def __post_init__(self) -> None:
        self.channel_mults = tuple(int(m) for m in self.channel_mults)
        self.attn_levels = tuple(int(a) for a in self.attn_levels)
        if any(a < 0 or a >= len(self.channel_mults) for a in self.attn_levels):
            raise ValueError(f"attn_levels {self.attn_levels} must be within 0..{len(self.channel_mults) - 1}")
        if self.parametrisation not in PARAMETRISATIONS:
            raise ValueError(
                f"parametrisation must be one of {', '.join(PARAMETRISATIONS)}, got {self.parametrisation!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


# Every preset is v-parametrised: at equal budget it is the form whose chain from pure noise lands on the photo
# (benchmarks/ablation.py; the README's "SR3 itself"). UNetConfig's own default stays "eps", the paper's, which is
# also what model files from before the field was added are.
PRESETS: dict[str, UNetConfig] = {
    # A few MB; trains on a laptop CPU on 64×64 crops (levels 64, 32, 16, 8; attention at 8×8).
    "tiny": UNetConfig(
        base_channels=32, channel_mults=(1, 2, 2, 4), num_res_blocks=1, attn_levels=(3,), parametrisation="v"
    ),
    # A middle size for a single consumer GPU.
    "small": UNetConfig(
        base_channels=64, channel_mults=(1, 2, 4, 8), num_res_blocks=2, attn_levels=(3,), parametrisation="v"
    ),
    # Paper App. A, Table A.1, 16→128 faces: channel 128, {1,2,4,8,8}, 3 blocks, dropout 0.2;
    # attention at 16×16 (level 3 of 128×128) as in DDPM, since the paper does not say where.
    "sr3_16_128": UNetConfig(
        base_channels=128,
        channel_mults=(1, 2, 4, 8, 8),
        num_res_blocks=3,
        attn_levels=(3,),
        dropout=0.2,
        parametrisation="v",
    ),
}


class SR3UNet(nn.Module):
    """f_θ(x, y_t, γ) → ε̂. Call as ``model(x_lr, y_t, gamma)``.

    x_lr: (B, C, h, w) low-resolution image in [−1, 1]; y_t: (B, C, H, W) noisy high-resolution
    image; gamma: (B,) noise levels (or a scalar). Returns ε̂ with y_t's shape.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        channel_mults: tuple[int, ...] = (1, 2, 4, 8),
        num_res_blocks: int = 2,
        attn_levels: tuple[int, ...] = (3,),
        dropout: float = 0.0,
        head_channels: int = 32,
        parametrisation: str = "eps",
    ):
        super().__init__()
        self.config = UNetConfig(
            in_channels,
            base_channels,
            tuple(channel_mults),
            num_res_blocks,
            tuple(attn_levels),
            dropout,
            head_channels,
            parametrisation,
        )
        emb_dim = 4 * base_channels
        self.emb_dim = base_channels
        self.noise_mlp = nn.Sequential(
            nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim), nn.SiLU()
        )
        self.conv_in = nn.Conv2d(2 * in_channels, base_channels, 3, padding=1)
        chans = [base_channels * m for m in self.config.channel_mults]
        self.down, skips = self._down_path(chans, emb_dim)
        ch = skips[-1]
        self.mid = nn.ModuleList(
            [ResBlock(ch, ch, emb_dim, dropout), AttnBlock(ch, head_channels), ResBlock(ch, ch, emb_dim, dropout)]
        )
        self.up, ch = self._up_path(chans, skips, emb_dim)
        self._output_layers(ch, emb_dim)
        self.multiple = 2 ** (len(chans) - 1)
        # Activation checkpointing (training only): keep each stage's input, recompute its activations in the
        # backward pass. Same gradients, about one more forward pass of compute, far less memory: what lets the
        # paper-size model train at a useful batch on one GPU. Not part of `config`: it changes no weight or output.
        self.activation_checkpointing = False

    def _down_path(self, chans: list[int], emb_dim: int) -> tuple[nn.ModuleList, list[int]]:
        """The stages of the way down and the channels of every output kept for a skip (the last: where it ends)."""
        cfg = self.config
        down = nn.ModuleList()
        skips = [cfg.base_channels]
        ch = cfg.base_channels
        for i, c in enumerate(chans):
            for _ in range(cfg.num_res_blocks):
                down.append(self._stage(ch, c, emb_dim, attn=i in cfg.attn_levels))
                ch = c
                skips.append(ch)
            if i < len(chans) - 1:
                down.append(nn.ModuleList([ResBlock(ch, ch, emb_dim, cfg.dropout, resample="down")]))
                skips.append(ch)
        return down, skips

    def _up_path(self, chans: list[int], skips: list[int], emb_dim: int) -> tuple[nn.ModuleList, int]:
        """The stages of the way up, each taking its mirror's skip on the way down; and the channels it ends with."""
        cfg = self.config
        skips = list(skips)
        ch = skips[-1]
        up = nn.ModuleList()
        for i, c in reversed(list(enumerate(chans))):
            for _ in range(cfg.num_res_blocks + 1):
                up.append(self._stage(ch + skips.pop(), c, emb_dim, attn=i in cfg.attn_levels))
                ch = c
            if i > 0:
                up.append(nn.ModuleList([ResBlock(ch, ch, emb_dim, cfg.dropout, resample="up")]))
        return up, ch

    def _output_layers(self, ch: int, emb_dim: int) -> None:
        """GroupNorm → SiLU → conv to the image's channels (zero at the start), and the "mean" head where it is used."""
        in_channels = self.config.in_channels
        self.norm_out = group_norm(ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        if self.config.parametrisation == "mean":
            # a(γ) − 1 and c(γ) per channel from the embedding; zero at the start, so a = 1 and c = 0
            self.mean_head = nn.Linear(emb_dim, 2 * in_channels)
            nn.init.zeros_(self.mean_head.weight)
            nn.init.zeros_(self.mean_head.bias)

    def _stage(self, c_in: int, c_out: int, emb_dim: int, attn: bool) -> nn.ModuleList:
        blocks = [ResBlock(c_in, c_out, emb_dim, self.config.dropout)]
        if attn:
            blocks.append(AttnBlock(c_out, self.config.head_channels))
        return nn.ModuleList(blocks)

    @classmethod
    def from_config(cls, config: UNetConfig | dict) -> SR3UNet:
        d = config.to_dict() if isinstance(config, UNetConfig) else dict(config)
        return cls(**d)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> SR3UNet:
        """Build a named architecture: ``"tiny"`` (CPU), ``"small"``, ``"sr3_16_128"`` (the paper's 16→128)."""
        if name not in PRESETS:
            raise ValueError(f"unknown U-Net preset {name!r}; choose one of {', '.join(PRESETS)}")
        d = PRESETS[name].to_dict()
        d.update(overrides)
        return cls(**d)

    @staticmethod
    def _run_stage(blocks: nn.ModuleList, h: Tensor, emb: Tensor) -> Tensor:
        for block in blocks:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
        return h

    def _run(self, blocks: nn.ModuleList, h: Tensor, emb: Tensor) -> Tensor:
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            # use_reentrant=False with the saved RNG state: the recomputation draws the same dropout masks
            return torch.utils.checkpoint.checkpoint(self._run_stage, blocks, h, emb, use_reentrant=False)
        return self._run_stage(blocks, h, emb)

    def forward(self, x_lr: Tensor, y_t: Tensor, gamma: Tensor) -> Tensor:
        """ε̂ = f_θ(x, y_t, γ), (B, C, H, W): the U-Net body's output F turned into ε̂ by `_to_eps`."""
        B, C, H, W = y_t.shape
        if H % self.multiple or W % self.multiple:
            raise ValueError(
                f"y_t is {H}×{W}, but this U-Net needs sides divisible by {self.multiple} "
                f"(2^(levels−1)); pad the image (sr3_edu.upscale pads and crops back for you)"
            )
        if x_lr.shape[:2] != (B, C):
            raise ValueError(
                f"x_lr has shape {tuple(x_lr.shape)} but y_t has {tuple(y_t.shape)}: batch and channels must match"
            )
        gamma = torch.as_tensor(gamma, device=y_t.device, dtype=torch.float32).reshape(-1).expand(B)
        emb = self.noise_mlp(noise_level_embedding(gamma, self.emb_dim).to(y_t.dtype))  # (B, 4·base)

        # Condition on x: bicubic enlargement to y_t's size, then channel concatenation.
        x_up = F.interpolate(x_lr, size=(H, W), mode="bicubic", align_corners=False)
        h = self.conv_in(torch.cat([x_up, y_t], dim=1))  # (B, base, H, W)

        # Down: each stage keeps or halves the size, (B, base·m_l, H/2^l, W/2^l) at level l; every output is kept
        # for the skip connection of the matching up stage.
        hs = [h]
        for blocks in self.down:
            h = self._run(blocks, h, emb)
            hs.append(h)
        h = self._run(self.mid, h, emb)  # (B, base·m_last, H/2^(L−1), W/2^(L−1)): the lowest level, with attention
        # Up: a stage maps h ‖ its skip (their channels added) to its level's channels; an "up" block doubles H, W.
        for blocks in self.up:
            if isinstance(blocks[0], ResBlock) and blocks[0].resample == "up":
                h = self._run(blocks, h, emb)  # (B, c, h, w) → (B, c, 2h, 2w)
            else:
                h = self._run(blocks, torch.cat([h, hs.pop()], dim=1), emb)  # (B, c + c_skip, h, w) → (B, c_out, h, w)
        out = self.conv_out(F.silu(self.norm_out(h)))  # F: (B, C, H, W)
        return self._to_eps(out, x_up, y_t, gamma, emb)

    def _to_eps(self, out: Tensor, x_up: Tensor, y_t: Tensor, gamma: Tensor, emb: Tensor) -> Tensor:
        """The body's output F → ε̂ by `UNetConfig.parametrisation` (float32 under autocast too; y_t's dtype out)."""
        kind = self.config.parametrisation
        if kind == "eps":
            return out  # ε̂ = F
        if kind == "v":
            return eps_from_v(out.float(), y_t.float(), gamma).to(y_t.dtype)
        a, c = self.mean_head(emb).float()[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        return eps_with_mean_head(out.float(), y_t.float(), x_up.float(), gamma, 1 + a, c).to(y_t.dtype)
