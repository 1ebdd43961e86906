"""Wan-VAE training: differentiable reconstruction, image VAE + inflation, discriminator, losses, objective,
and a small end-to-end run of the report's recipe (image stage -> inflate -> video stage) on synthetic clips."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import pytest
import torch

from openwan.checkpoint.random_init import TINY_VAE, randomize_
from openwan.configs import VAEConfig
from openwan.errors import InputError
from openwan.models.discriminator import PatchDiscriminator3D
from openwan.models.image_vae import ImageVAE
from openwan.models.vae import CausalConv3d, Resample, WanVAE
from openwan.training import vae_losses
from openwan.training.vae_inflate import inflate_image_vae
from openwan.training.vae_losses import (
    PerceptualLoss,
    adaptive_gan_weight,
    hinge_d_loss,
    hinge_g_loss,
    kl_loss,
    l1_loss,
    mse_loss,
)
from openwan.training.vae_objective import VAELossConfig, VAEObjective

# 4 levels with the official temporal pattern (two temporal down/upsamplers), 8-16 channels: fast on one core.
SMALL = VAEConfig(dim=8, z_dim=8, dim_mult=(1, 2, 2, 2), num_res_blocks=1,
                  latents_mean=(0.0,) * 8, latents_std=(1.0,) * 8)
SMALL_ATTN = replace(SMALL, attn_scales=(0.5,))  # also exercises the encoder/decoder attention blocks


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are too small for a second intra-op thread to help, and on a busy 2-core machine
    two spinning OpenMP threads made this module >10x slower (7 min instead of 25 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def clips(n: int, frames: int = 5, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Synthetic clips [n, 3, frames, size, size] in [-1, 1]: a two-colour linear gradient and one
    soft-edged coloured square moving at constant speed."""
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(n, 3, frames, size, size)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    for i in range(n):
        c0, c1, c2 = (torch.rand(3, 3, generator=g) * 1.6 - 0.8).unbind(0)
        angle = torch.rand(1, generator=g).item() * 2 * math.pi
        ramp = ((xx - size / 2) * math.cos(angle) + (yy - size / 2) * math.sin(angle)) / size + 0.5
        background = c0.view(3, 1, 1) * (1 - ramp) + c1.view(3, 1, 1) * ramp
        side = 8 + 8 * torch.rand(1, generator=g).item()
        pos = torch.rand(2, generator=g) * (size - side)
        vel = (torch.rand(2, generator=g) * 2 - 1) * 2
        for t in range(frames):
            cy, cx = (pos + vel * t + side / 2).tolist()
            mask = torch.sigmoid((side / 2 - (yy - cy).abs()) / 1.5) * torch.sigmoid((side / 2 - (xx - cx).abs()) / 1.5)
            out[i, :, t] = background * (1 - mask) + c2.view(3, 1, 1) * mask
    return out


def psnr(vae: WanVAE, video: torch.Tensor) -> float:
    """PSNR (dB, peak-to-peak 2) of the posterior-mean reconstruction, as inference would decode it."""
    with torch.no_grad():
        recon, _, _ = vae.reconstruct(video, sample=False)
    return 10 * math.log10(4 / (recon.clamp(-1, 1) - video).square().mean().item())


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-zero biases and norm gains everywhere, so no equality holds by accident of a zero init."""
    return randomize_(model, seed, std=0.1)


# ---- differentiable reconstruction -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny() -> WanVAE:
    return randomize_(WanVAE(TINY_VAE), 1).eval()


def test_reconstruct_matches_inference_under_no_grad(tiny):
    video = clips(2, frames=9)
    with torch.no_grad():
        recon, mu, logvar = tiny.reconstruct(video, sample=False)
    ref_mu, ref_logvar = tiny.encode_distribution(video)
    torch.testing.assert_close(mu, ref_mu, rtol=0, atol=0)
    torch.testing.assert_close(logvar, ref_logvar, rtol=0, atol=0)
    decoded = tiny.decode(tiny.normalize(ref_mu))
    assert recon.shape == decoded.shape == video.shape
    assert (recon.clamp(-1, 1) - decoded).abs().max() <= 1e-5  # reconstruct is unclamped, decode clamps
    assert recon.std() > 0.1  # a live output


def test_reconstruct_is_differentiable_and_matches_grad_mode(tiny):
    vae = randomize_(WanVAE(TINY_VAE), 1)
    video = clips(1, frames=9).requires_grad_(True)
    recon, _, logvar = vae.reconstruct(video, sample=True, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mean_recon, _, _ = tiny.reconstruct(video, sample=False)
    recon_mean, _, _ = vae.reconstruct(video, sample=False)
    assert (recon_mean - mean_recon).abs().max() <= 1e-5  # autograd path == in-place inference path
    (recon.square().mean() + logvar.mean()).backward()
    for name, p in vae.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert torch.isfinite(video.grad).all()


def test_reconstruct_gradients_are_causal_and_cross_chunks(tiny):
    video = clips(1, frames=9).requires_grad_(True)
    recon, _, _ = tiny.reconstruct(video, sample=False)
    # the last chunk's output depends on the first frames through the feature cache ...
    grad_late, = torch.autograd.grad(recon[:, :, 5:].sum(), video, retain_graph=True)
    assert grad_late[:, :, :5].abs().sum() > 0
    # ... and the first chunk's output on no later frame
    grad_early, = torch.autograd.grad(recon[:, :, :5].sum(), video)
    assert grad_early[:, :, :5].abs().sum() > 0 and grad_early[:, :, 5:].abs().sum() == 0


def test_gradient_checkpointing_gives_the_same_gradients():
    vae = randomize_(WanVAE(SMALL_ATTN), 2)
    video = clips(2, frames=5)

    def grads() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        vae.zero_grad(set_to_none=True)
        recon, mu, logvar = vae.reconstruct(video, sample=True, generator=torch.Generator().manual_seed(3))
        (l1_loss(recon, video) + kl_loss(mu, logvar)).backward()
        return recon.detach(), {n: p.grad.clone() for n, p in vae.named_parameters()}

    plain_out, plain = grads()
    vae.gradient_checkpointing = True
    ckpt_out, ckpt = grads()
    torch.testing.assert_close(ckpt_out, plain_out, rtol=0, atol=1e-6)
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-4, atol=1e-7, msg=name)


def test_reconstruct_sampling_and_input_checks(tiny):
    video = clips(1, frames=5)
    with torch.no_grad():
        a, _, _ = tiny.reconstruct(video, sample=True, generator=torch.Generator().manual_seed(5))
        b, _, _ = tiny.reconstruct(video, sample=True, generator=torch.Generator().manual_seed(5))
        c, _, _ = tiny.reconstruct(video, sample=False)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 1e-3
    with pytest.raises(InputError, match="6 frames"):
        tiny.reconstruct(clips(1, frames=6), sample=False)


# ---- image VAE and inflation -----------------------------------------------------------------------------------------

def image_vs_inflated(image_vae: ImageVAE, images: torch.Tensor) -> float:
    video_vae = inflate_image_vae(image_vae)
    with torch.no_grad():
        flat, flat_mu, _ = image_vae.reconstruct(images, sample=False)
        inflated, inflated_mu, _ = video_vae.reconstruct(images.unsqueeze(2), sample=False)
    assert inflated.shape[2] == 1 and flat.abs().max() > 0.5
    torch.testing.assert_close(inflated_mu[:, :, 0], flat_mu, rtol=0, atol=1e-5)
    return (inflated[:, :, 0] - flat).abs().max().item()


def test_inflated_vae_reconstructs_an_image_like_the_image_vae():
    image_vae = randomized(ImageVAE(SMALL_ATTN), 4)
    assert image_vs_inflated(image_vae, clips(3, frames=1)[:, :, 0]) <= 1e-5
    # the image stage trains only what it uses: 2D kernels, no temporal layers
    video_params = sum(p.numel() for p in WanVAE(SMALL_ATTN).parameters())
    assert sum(p.numel() for p in image_vae.parameters()) < 0.5 * video_params
    assert not any("time_conv" in k for k in image_vae.state_dict())


def test_inflation_places_kernels_in_the_current_frame_slice():
    image_vae = randomized(ImageVAE(SMALL), 5)
    vae = inflate_image_vae(image_vae)
    flat = image_vae.state_dict()
    assert set(vae.state_dict()) - set(flat) == {k for k in vae.state_dict() if ".time_conv." in k}
    for name, m in vae.named_modules():
        if isinstance(m, CausalConv3d) and "time_conv" not in name:
            assert m.weight.shape[2] == 3 and (m.weight[:, :, :2] == 0).all(), name
            torch.testing.assert_close(m.weight[:, :, 2], flat[name + ".weight"], rtol=0, atol=0)
    # On a clip, each causal conv sees one frame and the temporal resamplers keep the newest frame of
    # each pair, then repeat it: latent k encodes frame 4k alone and decodes to 4 copies of its image.
    video = clips(1, frames=9, seed=3)
    with torch.no_grad():
        mu, _ = vae.encode_distribution(video)
        recon, _, _ = vae.reconstruct(video, sample=False)
        for k in range(3):
            image_mu, _ = image_vae.encode_distribution(video[:, :, 4 * k])
            torch.testing.assert_close(mu[:, :, k], image_mu, rtol=0, atol=1e-5)
            image_recon, _, _ = image_vae.reconstruct(video[:, :, 4 * k], sample=False)
            for t in range(max(0, 4 * k - 3), 4 * k + 1):
                torch.testing.assert_close(recon[:, :, t], image_recon, rtol=0, atol=1e-5)


def test_inflation_still_exact_after_image_training():
    torch.manual_seed(0)
    image_vae = ImageVAE(SMALL_ATTN)
    objective = VAEObjective(image_vae, VAELossConfig())
    opt = torch.optim.Adam(image_vae.parameters(), 3e-3)
    data = clips(8, frames=1, seed=1)
    before = {k: v.clone() for k, v in image_vae.state_dict().items()}
    for step in range(5):
        out = objective.generator_step(data[2 * (step % 4): 2 * (step % 4) + 2], step)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert all((image_vae.state_dict()[k] != v).any() for k, v in before.items() if k.endswith("weight"))
    assert image_vs_inflated(image_vae, clips(3, frames=1, seed=9)[:, :, 0]) <= 1e-5


def test_inflated_vae_keeps_training_on_video():
    torch.manual_seed(0)
    vae = inflate_image_vae(ImageVAE(SMALL))
    objective = VAEObjective(vae, VAELossConfig(sample_posterior=False))
    opt = torch.optim.Adam(vae.parameters(), 2e-3)
    video = clips(2, frames=5, seed=4)
    losses = []
    for step in range(15):
        out = objective.generator_step(video, step)
        opt.zero_grad()
        out.loss.backward()
        if step == 0:  # the temporal parts the image stage never had get gradients
            # (slice 1 sees the previous frame; with 2 latent frames, slice 0 of the latent-rate convs sees only
            # padding)
            temporal = [m.weight for n, m in vae.named_modules()
                        if isinstance(m, CausalConv3d) and "time_conv" not in n]
            assert all(w.grad[:, :, 1].abs().sum() > 0 for w in temporal)
            assert all(m.time_conv.weight.grad.abs().sum() > 0 for m in vae.modules() if isinstance(m, Resample)
                       and hasattr(m, "time_conv"))
        opt.step()
        losses.append(out.logs["l1"])
    print(f"video L1 on a fixed batch: {losses[0]:.4f} -> {losses[-1]:.4f}")
    assert losses[-1] < 0.8 * losses[0]


def test_image_vae_input_checks():
    image_vae = ImageVAE(SMALL)
    with pytest.raises(InputError, match=r"\[batch, 3, height, width\]"):
        image_vae.reconstruct(torch.zeros(1, 3, 1, 32, 32), sample=False)
    with pytest.raises(InputError, match="height 30"):
        image_vae.reconstruct(torch.zeros(1, 3, 30, 32), sample=False)
    with pytest.raises(InputError, match="single frames"):
        VAEObjective(image_vae).generator_step(clips(1, frames=5), 0)


# ---- the recipe end to end -------------------------------------------------------------------------------------------

def test_recipe_improves_held_out_reconstruction():
    """Image stage (single frames) -> inflate -> video stage, plain Adam, default losses (sampled posterior)."""
    torch.manual_seed(0)
    train, held_out = clips(256, seed=1), clips(16, seed=123)
    g = torch.Generator().manual_seed(0)
    image_vae = ImageVAE(SMALL)
    psnr_init = psnr(inflate_image_vae(image_vae), held_out)
    start = time.perf_counter()

    objective = VAEObjective(image_vae, VAELossConfig())
    opt = torch.optim.Adam(image_vae.parameters(), 1e-3)
    for step in range(250):
        idx = torch.randint(0, len(train), (8,), generator=g)
        frame = int(torch.randint(0, train.shape[2], (), generator=g))
        out = objective.generator_step(train[idx, :, frame : frame + 1], step, generator=g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    vae = inflate_image_vae(image_vae)
    psnr_image_stage = psnr(vae, held_out)

    objective = VAEObjective(vae, VAELossConfig())
    opt = torch.optim.Adam(vae.parameters(), 1e-3)
    for step in range(60):
        out = objective.generator_step(train[torch.randint(0, len(train), (4,), generator=g)], step, generator=g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    psnr_final = psnr(vae, held_out)
    print(f"held-out PSNR: init {psnr_init:.2f} dB -> image stage {psnr_image_stage:.2f} dB -> video stage "
          f"{psnr_final:.2f} dB ({time.perf_counter() - start:.1f} s)")
    assert psnr_final >= psnr_init + 5.0
    assert psnr_final >= psnr_image_stage - 1.0  # the video stage builds on the image stage


# ---- discriminator ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["group", "spectral"])
def test_discriminator_shapes(norm):
    disc = PatchDiscriminator3D(3, base=8, layers=3, norm=norm)
    assert disc(torch.randn(2, 3, 5, 32, 32)).shape == (2, 1, 1, 2, 2)
    assert disc(torch.randn(2, 3, 1, 32, 32)).shape == (2, 1, 1, 2, 2)  # an image
    assert disc(torch.randn(1, 3, 17, 48, 64)).shape == (1, 1, 3, 4, 6)
    shallow = PatchDiscriminator3D(3, base=4, layers=1, norm=norm)
    assert shallow(torch.randn(1, 3, 1, 8, 8)).shape == (1, 1, 1, 2, 2)
    with pytest.raises(InputError, match=">= 24"):
        disc(torch.randn(1, 3, 5, 16, 32))
    with pytest.raises(InputError, match="frames"):
        disc(torch.randn(1, 3, 32, 32))


def test_discriminator_scores_patches_locally():
    disc = PatchDiscriminator3D(3, base=8, layers=3, norm="spectral").eval()  # GroupNorm would mix globally
    x = torch.randn(1, 3, 1, 64, 64)
    y = x.clone()
    y[..., :8, :8] += 1.0  # change the top-left corner only
    with torch.no_grad():
        diff = (disc(x) - disc(y)).abs()[0, 0, 0]
    assert diff[0, 0] > 0 and diff[-1, -1] == 0


# ---- losses ----------------------------------------------------------------------------------------------------------

def test_losses_on_hand_values():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    # relu(1 - real) = [0, .5, 2] -> 5/6; relu(1 + fake) = [0, 1, 2] -> 1
    torch.testing.assert_close(hinge_d_loss(real, fake), torch.tensor(0.5 * (5 / 6 + 1)))
    torch.testing.assert_close(hinge_g_loss(fake), torch.tensor(1 / 3))
    # KL of N(1, 1) and N(0, 2) to N(0, 1): 0.5 * (1) + 0.5 * (2 - 1 - ln 2); summed, then averaged over 2 samples
    mu = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2)], [0.0, math.log(2)]])
    torch.testing.assert_close(kl_loss(mu, logvar), torch.tensor(0.5 + 0.5 * (1 - math.log(2))))
    assert kl_loss(torch.zeros(3, 4, 2, 2), torch.zeros(3, 4, 2, 2)) == 0
    torch.testing.assert_close(l1_loss(torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.0])), torch.tensor(0.75))
    torch.testing.assert_close(mse_loss(torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.0])), torch.tensor(0.625))
    with pytest.raises(InputError, match="differ in shape"):
        l1_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(InputError, match="differ in shape"):
        mse_loss(torch.zeros(2), torch.zeros(3))


def test_l2_term_enters_the_generator_loss_with_its_weight():
    torch.manual_seed(0)
    vae = WanVAE(SMALL)
    video = clips(1, frames=5)
    out = VAEObjective(vae, VAELossConfig(l1=0.5, l2=5.0, sample_posterior=False)).generator_step(video, 0)
    expected = 0.5 * out.logs["l1"] + 5.0 * out.logs["l2"] + 1e-6 * out.logs["kl"]
    assert abs(out.logs["loss"] - expected) < 1e-5 * max(1.0, expected)
    assert "l2" not in VAEObjective(vae, VAELossConfig()).generator_step(video, 0).logs
    assert VAELossConfig(l1=0.0, l2=1.0).l2 == 1.0  # MSE alone is a reconstruction term


def test_adaptive_gan_weight_is_the_gradient_norm_ratio():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    a, b = torch.tensor([3.0, 4.0]), torch.tensor([0.6, 0.8])
    weight = adaptive_gan_weight((w * a).sum(), (w * b).sum(), w)  # grads a (norm 5) and b (norm 1)
    torch.testing.assert_close(weight, torch.tensor(5 / (1 + 1e-4)))
    assert not weight.requires_grad
    assert adaptive_gan_weight((w * a).sum(), (w * b * 0).sum(), w) == 1e4  # clamped


# ---- the objective and the GAN stage ---------------------------------------------------------------------------------

def test_gan_stage_updates_each_model_only_in_its_own_step():
    torch.manual_seed(0)
    vae = WanVAE(SMALL)
    objective = VAEObjective(vae, VAELossConfig(gan=0.5, gan_start_step=2, disc_base=8, disc_layers=3))
    assert isinstance(objective.discriminator, PatchDiscriminator3D)
    opt = torch.optim.Adam(objective.parameters(), 1e-3)  # one optimizer over both: the steps must keep apart
    video = clips(2, frames=5)

    def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in module.parameters()]

    def changed(module: torch.nn.Module, before: list[torch.Tensor]) -> list[bool]:
        return [bool((p != b).any()) for p, b in zip(module.parameters(), before)]

    for step in range(4):
        vae_before, disc_before = snapshot(vae), snapshot(objective.discriminator)
        out = objective.generator_step(video, step)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        assert all(p.grad is None for p in objective.discriminator.parameters())
        opt.step()
        assert not any(changed(objective.discriminator, disc_before))
        assert any(changed(vae, vae_before))
        assert ("g_loss" in out.logs) == (step >= 2)
        assert not out.recon.requires_grad and out.recon.shape == video.shape

        vae_before, disc_before = snapshot(vae), snapshot(objective.discriminator)
        d_loss, d_logs = objective.discriminator_step(video, out.recon, step)
        if step < 2:  # before gan_start_step: nothing to do
            assert d_loss is None and d_logs == {}
            continue
        opt.zero_grad(set_to_none=True)
        d_loss.backward()
        assert all(p.grad is None for p in vae.parameters())
        opt.step()
        assert not any(changed(vae, vae_before))
        # every weight moves (the last bias gets no hinge gradient while all logits are inside the margin)
        names = [n for n, _ in objective.discriminator.named_parameters()]
        assert all(c for n, c in zip(names, changed(objective.discriminator, disc_before)) if n.endswith("weight"))
        assert 0 <= d_logs["d_loss"] and 0 < out.logs["gan_weight"] <= 1e4


def test_gan_generator_term_and_weight():
    torch.manual_seed(0)
    vae = WanVAE(SMALL)
    video = clips(1, frames=5)
    base = VAELossConfig(gan=0.5, disc_base=8, sample_posterior=False)
    fixed = VAEObjective(vae, replace(base, adaptive_gan_weight=False))
    out = fixed.generator_step(video, 0)
    expected = out.logs["l1"] + 1e-6 * out.logs["kl"] + 0.5 * 1.0 * out.logs["g_loss"]
    assert out.logs["gan_weight"] == 1.0 and abs(out.logs["loss"] - expected) < 1e-5
    adaptive = VAEObjective(vae, base)
    adaptive.discriminator.load_state_dict(fixed.discriminator.state_dict())
    out = adaptive.generator_step(video, 0)
    assert out.logs["gan_weight"] != 1.0
    expected = out.logs["l1"] + 1e-6 * out.logs["kl"] + 0.5 * out.logs["gan_weight"] * out.logs["g_loss"]
    assert abs(out.logs["loss"] - expected) < 1e-4 * max(1.0, abs(expected))
    no_gan = VAEObjective(vae, VAELossConfig())
    assert no_gan.discriminator is None and no_gan.discriminator_step(video, video, 10**6) == (None, {})


def test_loss_config_checks():
    with pytest.raises(InputError, match="unknown VAE loss settings"):
        VAELossConfig.from_dict({"l1": 1.0, "gan_weight": 0.1})
    assert VAELossConfig.from_dict({"gan": 0.1, "gan_start_step": 5}).gan_start_step == 5
    with pytest.raises(InputError, match="kl"):
        VAELossConfig(kl=-1.0)
    with pytest.raises(InputError, match="reconstruction term"):
        VAELossConfig(l1=0.0)
    with pytest.raises(InputError, match="l2"):
        VAELossConfig(l2=-1.0)
    with pytest.raises(InputError, match="gan_start_step"):
        VAELossConfig(gan_start_step=-1)


# ---- perceptual loss -------------------------------------------------------------------------------------------------

def test_perceptual_loss_without_weights_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no torchvision VGG16 in the hub cache
    monkeypatch.setattr(vae_losses, "_lpips_package_dir", lambda: None)  # as if lpips were not installed
    how = r"pip install lpips.*vgg16-397923af\.pth|vgg16-397923af\.pth.*pip install lpips"
    with pytest.raises(InputError, match=how) as e:
        VAEObjective(WanVAE(SMALL), VAELossConfig(perceptual=1.0))
    assert "lpips package is not installed" in str(e.value) and "perceptual_weights" in str(e.value)
    with pytest.raises(InputError, match="does not exist"):
        VAEObjective(WanVAE(SMALL), VAELossConfig(perceptual=1.0, perceptual_weights=str(tmp_path / "nope.pth")))
    VAEObjective(WanVAE(SMALL), VAELossConfig(perceptual=0.0))  # off: nothing is needed


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory):
    """A random LPIPS-VGG saved the way users have it: torchvision's VGG16 file + lpips' linear layers."""
    torch.manual_seed(0)
    model = PerceptualLoss()
    with torch.no_grad():
        for lin in model.lins:
            lin.weight.abs_()  # LPIPS' learned channel weights are non-negative
    folder = tmp_path_factory.mktemp("lpips")
    state = model.state_dict()
    vgg = {k: v for k, v in state.items() if k.startswith("features.")}
    vgg["classifier.0.weight"] = torch.zeros(4, 4)  # torchvision's file also has the classifier
    torch.save(vgg, folder / "vgg16-397923af.pth")
    torch.save({f"lin{i}.model.1.weight": state[f"lins.{i}.weight"] for i in range(5)}, folder / "vgg.pth")
    return model, folder


def test_perceptual_loss_loads_local_weights(lpips_files):
    model, folder = lpips_files
    loaded = PerceptualLoss.from_pretrained(folder)
    x, y = clips(2, frames=1, seed=1)[:, :, 0], clips(2, frames=1, seed=2)[:, :, 0]
    torch.testing.assert_close(loaded(x, y), model(x, y), rtol=0, atol=0)
    assert loaded(x, y) > 0 and loaded(x, x) == 0
    assert not any(p.requires_grad for p in loaded.parameters())
    loaded.train()
    assert not loaded.training  # a fixed metric
    # videos are scored frame by frame
    vx, vy = clips(2, frames=3, seed=1), clips(2, frames=3, seed=2)
    per_frame = torch.stack([loaded(vx[:, :, t], vy[:, :, t]) for t in range(3)]).mean()
    torch.testing.assert_close(loaded(vx, vy), per_frame, rtol=1e-5, atol=1e-7)
    # only the linear layers: says which part is missing
    with pytest.raises(InputError, match="VGG16 trunk"):
        PerceptualLoss.from_pretrained(folder / "vgg.pth")


def test_objective_uses_perceptual_loss(lpips_files):
    _, folder = lpips_files
    torch.manual_seed(0)
    vae = WanVAE(SMALL)
    objective = VAEObjective(vae, VAELossConfig(perceptual=0.5, perceptual_weights=str(folder), sample_posterior=False))
    out = objective.generator_step(clips(1, frames=5), 0)
    assert out.logs["perceptual"] > 0
    assert abs(out.logs["loss"] - (out.logs["l1"] + 0.5 * out.logs["perceptual"] + 1e-6 * out.logs["kl"])) < 1e-5
    out.loss.backward()
    assert vae.last_decoder_weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in objective.perceptual.parameters())
