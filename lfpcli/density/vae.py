"""Per-class convolutional VAE as a plausibility term (the seed paper's WaterBirds autoencoder penalty).

One VAE per class ``t`` is trained on that class's clean images only. The plausibility of ``x'`` for class ``t``
is minus its reconstruction error through that class's autoencoder, using the encoder MEAN (no sampling)::

    log_prob(x', t) = -|| x' - AE_t(x') ||^2,      AE_t(x') = decoder_t( mu_t(x') )

summed over all ``C*H*W`` values. It is a score, not a normalised density (``normalized = False``): with
pcfe-l0's ``- tau * P(x', t)`` the solver's ``tau`` is the paper's ``theta`` in ``theta * ||x' - AE_t(x')||^2``.

Shapes: images are ``(N, C, H, W)`` with pixels in ``[0, 1]`` (the decoder ends in a sigmoid); ``log_prob`` takes
them flat ``(N, C*H*W)`` or unflattened and returns ``(N,)``. Architecture, sized from ``(C, H, W)``:

- encoder: stride-2 3x3 convolutions (padding 1, so each halves a side, rounding up) with LeakyReLU, repeated
  until both sides are at most 7 (at least one layer): 224 -> 112 -> 56 -> 28 -> 14 -> 7, 28 -> 14 -> 7, 8 -> 4.
  Channel widths ``width * 2**i`` capped at ``8 * width`` (32, 64, 128, 256, 256 at the default 32). No batch
  norm: a sample's score must not depend on the rest of its batch.
- flatten -> linear to ``mu`` and ``logvar`` of size ``latent``; default ``default_latent``:
  ``min(512, max(16, C*H*W // 64))`` (512 at 3x224x224 as in the paper's code, 36 at 3x28x28, 16 at 1x8x8).
- decoder: linear -> the mirrored transposed convolutions, with per-side ``output_padding`` so odd sizes come
  back exactly (7 -> 14 -> 28, 8 -> 15 -> 30), sigmoid output.

Training (per class, Adam): loss per sample ``||x - dec(z)||^2 + kl_weight * KL(q(z|x) || N(0, I))`` with the
reparameterised ``z = mu + sigma * eps``. Sum of squared errors rather than BCE so that training minimises the
very quantity ``log_prob`` reports; ``kl_weight`` is then ``2 sigma^2`` of a Gaussian decoder, and its small
default (0.01, i.e. sigma ~ 0.07 per pixel) keeps the model from collapsing to the class-mean image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lfpcli.density.base import ClassDensity, check_positive_int, class_generator, prepare_fit_data
from lfpcli.errors import ArtifactError, ConfigError
from lfpcli.progress import Progress

__all__ = ["PerClassVAE", "ConvVAE", "encoder_sizes", "default_latent", "default_widths"]

# The encoder stops halving once both spatial sides are at most this.
MAX_SIDE = 7
_LOGVAR_RANGE = (-30.0, 20.0)  # exp() of logvar stays finite in float32


def encoder_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Spatial sizes through the encoder, input first: each stride-2 layer maps a side ``s`` to ``ceil(s / 2)``;
    layers are added while a side exceeds ``MAX_SIDE`` (always at least one)."""
    sizes = [(int(height), int(width))]
    while len(sizes) == 1 or max(sizes[-1]) > MAX_SIDE:
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def default_latent(input_shape: Sequence[int]) -> int:
    """``min(512, max(16, C*H*W // 64))``: 512 at 3x224x224 (the paper's code), fewer for small images."""
    return min(512, max(16, math.prod(input_shape) // 64))


def default_widths(input_shape: Sequence[int], width: int = 32) -> list[int]:
    """Channels of the encoder's conv layers: ``width * 2**i`` capped at ``8 * width``."""
    layers = len(encoder_sizes(input_shape[1], input_shape[2])) - 1
    return [min(width * 2**i, 8 * width) for i in range(layers)]


class ConvVAE(nn.Module):
    """One class's VAE on ``(C, H, W)`` images; ``widths`` gives the channels of each stride-2 conv layer."""

    def __init__(self, input_shape: Sequence[int], latent: int, widths: Sequence[int]) -> None:
        super().__init__()
        c, h, w = (int(v) for v in input_shape)
        sizes = encoder_sizes(h, w)
        if len(widths) != len(sizes) - 1:
            raise ConfigError(f"vae: input {h}x{w} needs {len(sizes) - 1} conv widths, got {list(widths)}")
        self.input_shape = (c, h, w)
        self.latent = int(latent)
        self.widths = [int(v) for v in widths]
        chans = [c, *self.widths]
        enc: list[nn.Module] = []
        for cin, cout in zip(chans, chans[1:], strict=False):
            enc += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        self._bottom = (chans[-1], *sizes[-1])
        flat = math.prod(self._bottom)
        self.to_mu = nn.Linear(flat, self.latent)
        self.to_logvar = nn.Linear(flat, self.latent)
        self.from_latent = nn.Linear(self.latent, flat)
        dec: list[nn.Module] = []
        for i in range(len(chans) - 1, 0, -1):
            # A transposed 3x3/stride-2/padding-1 conv gives 2s - 1 + output_padding: pad by one where the
            # encoder's side was even, so the output is exactly the encoder's input size.
            (th, tw) = sizes[i - 1]
            pad = (1 - th % 2, 1 - tw % 2)
            dec.append(nn.ConvTranspose2d(chans[i], chans[i - 1], 3, stride=2, padding=1, output_padding=pad))
            dec.append(nn.LeakyReLU(0.2) if i > 1 else nn.Sigmoid())
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, C, H, W)`` -> ``mu``, ``logvar`` ``(N, latent)``."""
        hidden = self.encoder(x)
        return self.to_mu(hidden), self.to_logvar(hidden).clamp(*_LOGVAR_RANGE)

    def decode(self, z: Tensor) -> Tensor:
        """``(N, latent)`` -> ``(N, C, H, W)`` in ``(0, 1)``."""
        hidden = nn.functional.leaky_relu(self.from_latent(z), 0.2)
        return self.decoder(hidden.view(-1, *self._bottom))

    def reconstruct(self, x: Tensor) -> Tensor:
        """``AE(x) = decode(mu(x))``: deterministic, each sample independent of the others."""
        return self.decode(self.encode(x)[0])


class PerClassVAE(ClassDensity):
    """Per-class VAE reconstruction score ``-||x - AE_t(x)||^2`` (unnormalised; see the module docstring).

    ``vaes`` is an ``nn.ModuleList`` of ``num_classes`` ``ConvVAE``; its parameters are the fitted state (frozen:
    ``requires_grad`` is off, so a solver's backward pass computes gradients for ``x`` only). ``log_prob`` runs
    in the modules' dtype (float32) on the modules' device and returns values in ``x``'s dtype and device.
    """

    kind = "vae"
    normalized = False

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        *,
        latent: int | None = None,
        widths: Sequence[int] | None = None,
        fit_info: dict[str, Any] | None = None,
        vaes: Sequence[ConvVAE] | None = None,
    ) -> None:
        shape = _check_shape(input_shape)
        super().__init__(num_classes, math.prod(shape))
        self.input_shape = shape
        self.latent = default_latent(shape) if latent is None else check_positive_int("vae", "latent", latent)
        if widths is None:
            widths = default_widths(shape)
        self.widths = [check_positive_int("vae", "widths", w) for w in widths]
        self.fit_info = dict(fit_info or {})
        if vaes is None:
            vaes = [ConvVAE(shape, self.latent, self.widths) for _ in range(self.num_classes)]
        elif len(vaes) != self.num_classes or not all(
            isinstance(v, ConvVAE) and v.input_shape == shape and v.latent == self.latent and v.widths == self.widths
            for v in vaes
        ):
            raise ConfigError(f"vae: need {self.num_classes} ConvVAE modules of input {shape}, latent {self.latent}")
        self.vaes = nn.ModuleList(vaes)
        self.vaes.requires_grad_(False)
        self.eval()

    # ------------------------------------------------------------------------------------------------- fit
    @classmethod
    def fit(
        cls,
        x: Tensor,
        y: Tensor,
        num_classes: int,
        *,
        seed: int = 0,
        input_shape: Sequence[int] | None = None,
        latent: int | None = None,
        epochs: int = 20,
        lr: float = 1e-3,
        batch_size: int = 64,
        kl_weight: float = 0.01,
        width: int = 32,
        device: str | torch.device | None = None,
        progress: Progress | None = None,
        store: Any = None,
    ) -> PerClassVAE:
        """Train class ``k``'s VAE on the images with ``y == k`` for ``epochs`` passes of shuffled minibatches.

        ``x``: ``(N, C, H, W)`` images in ``[0, 1]``, or ``(N, D)`` (any ``(N, ...)``) with ``input_shape``
        ``(C, H, W)`` and ``D = C*H*W``. ``latent``: default ``default_latent(input_shape)``; ``width``: channels
        of the first conv layer. ``epochs`` default 20: about 7 s per class of 500 3x28x28 images on one CPU
        thread; 224x224 data wants a GPU (``device="cuda"``). ``device``: where to train (default ``x``'s); the
        fitted modules stay there, in float32. ``progress(f"vae class {k}", epoch, epochs, loss=...)`` after each
        epoch (``loss``: the epoch's mean loss per image).
        Class ``k``'s initialisation, shuffling and noise come from ``class_generator(seed, k)``-derived seeds, so
        the global RNG is untouched and the same seed gives the same fit.
        ``store`` (``has(name)``, ``load(name)``, ``save(name, dict)``, e.g. an ``lfpcli.artifacts.resume.Sidecar``)
        keeps each class's trained VAE as it is finished; classes already there are loaded instead of trained,
        which gives the same fit, since each class's training depends on its own seed alone.
        """
        x = torch.as_tensor(x).detach()
        if x.ndim < 2:
            raise ConfigError(f"vae: x must be (N, C, H, W) images or (N, D) with input_shape, got {tuple(x.shape)}")
        if input_shape is None:
            if x.ndim != 4:
                raise ConfigError(
                    f"vae: x of shape {tuple(x.shape)} is not (N, C, H, W); pass input_shape=(C, H, W) for flat x"
                )
            shape = tuple(int(v) for v in x.shape[1:])
        else:
            shape = _check_shape(input_shape)
            if math.prod(x.shape[1:]) != math.prod(shape):
                raise ConfigError(
                    f"vae: x has {math.prod(x.shape[1:])} values per sample, "
                    f"input_shape {shape} needs {math.prod(shape)}"
                )
        # Checks labels and class counts on a one-column stand-in: prepare_fit_data's float64 copy of the images
        # would double a 224x224 training set in memory; the images are checked and cast batch by batch instead.
        _, ys, _ = prepare_fit_data("vae", torch.zeros(x.shape[0], 1), y, num_classes)
        check_positive_int("vae", "epochs", epochs)
        check_positive_int("vae", "batch_size", batch_size)
        check_positive_int("vae", "width", width)
        check_positive_int("vae", "latent", latent, allow_none=True)
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"vae: lr must be a positive number, got {lr!r}")
        if not (isinstance(kl_weight, (int, float)) and math.isfinite(kl_weight) and kl_weight >= 0):
            raise ConfigError(f"vae: kl_weight must be a number >= 0, got {kl_weight!r}")
        if progress is not None and not callable(progress):
            raise ConfigError(f"vae: progress must be callable, got {type(progress).__name__}")
        try:
            dev = x.device if device is None else torch.device(device)
            torch.empty(0, device=dev)
        except (RuntimeError, TypeError, ValueError) as err:
            raise ConfigError(f"vae: cannot use device {device!r}: {err}") from None
        x = x.reshape(x.shape[0], *shape)
        if x.dtype.is_floating_point:
            for s in range(0, x.shape[0], 4096):
                if not bool(torch.isfinite(x[s : s + 4096]).all()):
                    raise ConfigError("vae: training images contain NaN or infinite values")
        ys = ys.to(x.device)

        latent = default_latent(shape) if latent is None else latent
        widths = default_widths(shape, width)
        trained, final_loss, final_recon = [], [], []
        for k in range(num_classes):
            gen = class_generator(seed, k)
            init_seed = int(torch.randint(2**62, (1,), generator=gen))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(init_seed)
                vae = ConvVAE(shape, latent, widths)
            vae = vae.to(dev).train()
            unit = f"vae-class-{k}"
            if store is not None and store.has(unit):
                kept = store.load(unit)
                vae.load_state_dict(kept["state"])
                loss, recon = float(kept["loss"]), float(kept["recon"])
            else:
                members = (ys == k).nonzero().flatten()
                loss, recon = _train_one(
                    vae,
                    x,
                    members,
                    gen,
                    epochs,
                    float(lr),
                    batch_size,
                    float(kl_weight),
                    dev,
                    progress,
                    f"vae class {k}",
                )
                if store is not None:
                    store.save(unit, {"state": vae.state_dict(), "loss": loss, "recon": recon})
            final_loss.append(loss)
            final_recon.append(recon)
            trained.append(vae)
        info = {
            "seed": int(seed),
            "epochs": epochs,
            "lr": float(lr),
            "batch_size": batch_size,
            "kl_weight": float(kl_weight),
            "width": width,
            "reconstruction": "sum of squared errors",
            "final_loss": final_loss,
            "final_recon": final_recon,
        }
        return cls(num_classes, shape, latent=latent, widths=widths, fit_info=info, vaes=trained)

    # ------------------------------------------------------------------------------------------- evaluate
    def _log_prob(self, x: Tensor, t: Tensor) -> Tensor:
        ref = next(self.vaes.parameters())
        shape = self.input_shape

        def one_class(k: int, xk: Tensor) -> Tensor:
            rec = self.vaes[k].reconstruct(xk.to(device=ref.device, dtype=ref.dtype).view(-1, *shape))
            diff = xk - rec.flatten(1).to(device=xk.device, dtype=xk.dtype)
            return -(diff * diff).sum(1)

        # Grouping by class: one batched forward pass per class present, rather than every class on every sample.
        return self._grouped(x, t, one_class)

    # ---------------------------------------------------------------------------------------------- state
    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """``(tensors, params)``: the modules' parameters, keyed as ``vaes.<class>.<layer>.<weight|bias>`` (float32
        CPU tensors), and the architecture plus ``fit_info`` in ``params``."""
        tensors = {name: v.detach().to("cpu", torch.float32).clone() for name, v in self.state_dict().items()}
        params: dict[str, Any] = {
            "kind": self.kind,
            "num_classes": self.num_classes,
            "dim": self.dim,
            "normalized": self.normalized,
        }
        params.update(self._hyper_params())
        return tensors, params

    @classmethod
    def from_state(cls, tensors: Mapping[str, Any], params: Mapping[str, Any]) -> PerClassVAE:
        """Rebuild from ``state()``; ArtifactError when parameters or tensors are missing, extra or misshapen."""
        kind = params.get("kind", cls.kind)
        if kind != cls.kind:
            raise ArtifactError(f"density state is of kind {kind!r}, expected {cls.kind!r}")
        for key in ("num_classes", "dim", "input_shape", "latent", "widths"):
            if key not in params:
                raise ArtifactError(f"vae density state lacks parameter {key!r}")
        try:
            return cls._from_state(dict(tensors), dict(params))
        except (ConfigError, TypeError, ValueError) as err:
            raise ArtifactError(f"inconsistent vae density state: {err}") from err

    @classmethod
    def _from_state(cls, tensors: dict[str, Any], params: dict[str, Any]) -> PerClassVAE:
        # The random initial weights are overwritten below; forking keeps loading from consuming the global RNG.
        with torch.random.fork_rng(devices=[]):
            density = cls(
                int(params["num_classes"]),
                params["input_shape"],
                latent=int(params["latent"]),
                widths=[int(w) for w in params["widths"]],
                fit_info=params.get("fit_info"),
            )
        if density.dim != int(params["dim"]):
            raise ConfigError(
                f"input_shape {density.input_shape} gives {density.dim} values, params say {params['dim']}"
            )
        want = density.state_dict()
        missing = sorted(set(want) - set(tensors))
        extra = sorted(set(tensors) - set(want))
        if missing or extra:
            raise ArtifactError(
                f"vae density state lacks tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}"
                if missing
                else f"vae density state has unexpected tensors {extra[:5]}"
            )
        loaded = {}
        for name, ref in want.items():
            raw = tensors[name]
            value = raw if isinstance(raw, Tensor) else torch.as_tensor(np.asarray(raw))
            if tuple(value.shape) != tuple(ref.shape) or not value.dtype.is_floating_point:
                raise ArtifactError(
                    f"vae density tensor {name!r} has shape {tuple(value.shape)} {value.dtype}, expected "
                    f"{tuple(ref.shape)} floating point"
                )
            if not bool(torch.isfinite(value).all()):
                raise ArtifactError(f"vae density tensor {name!r} holds NaN or infinite values")
            loaded[name] = value.to(torch.float32)
        density.load_state_dict(loaded, strict=True)
        return density

    def _hyper_params(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "latent": self.latent,
            "widths": list(self.widths),
            "fit_info": self.fit_info,
        }


# ------------------------------------------------------------------------------------------------- helpers
def _check_shape(input_shape: Any) -> tuple[int, int, int]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in shape)
    if len(shape) != 3 or not ints or min(shape) < 1:
        raise ConfigError(f"vae: input_shape must be three positive integers (C, H, W), got {input_shape!r}")
    return tuple(int(v) for v in shape)  # type: ignore[return-value]


def _train_one(
    vae: ConvVAE,
    x: Tensor,
    members: Tensor,
    gen: torch.Generator,
    epochs: int,
    lr: float,
    batch_size: int,
    kl_weight: float,
    dev: torch.device,
    progress: Progress | None,
    stage: str,
) -> tuple[float, float]:
    """Adam on ``x[members]`` (kept where it lies; each batch is moved to ``dev`` and cast to float32).
    Returns the last epoch's mean loss and mean squared reconstruction error per image."""
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    n = members.numel()
    loss_mean = recon_mean = math.nan
    for epoch in range(1, epochs + 1):
        perm = members[torch.randperm(n, generator=gen).to(members.device)]
        loss_sum = recon_sum = 0.0
        for idx in torch.split(perm, batch_size):
            xb = x.index_select(0, idx).to(device=dev, dtype=torch.float32)
            mu, logvar = vae.encode(xb)
            # Noise from the class generator (on CPU, then moved) so the fit does not read the global RNG.
            eps = torch.randn(mu.shape, generator=gen).to(dev)
            rec = vae.decode(mu + eps * (0.5 * logvar).exp())
            sse = (rec - xb).pow(2).flatten(1).sum(1)
            kl = 0.5 * (mu * mu + logvar.exp() - 1.0 - logvar).sum(1)
            loss = (sse + kl_weight * kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * idx.numel()
            recon_sum += float(sse.detach().sum())
        loss_mean, recon_mean = loss_sum / n, recon_sum / n
        if progress is not None:
            progress(stage, epoch, epochs, loss=loss_mean)
    return loss_mean, recon_mean
