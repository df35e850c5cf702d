"""The GLEAM-C encoder: one timm backbone with shared weights for the satellite tiles and every query view.

Embeddings are the backbone's pooled features, L2-normalised, so a dot product is a cosine.
The model carries its own learnable logit scale (CLIP-style temperature, initialised at
1/0.07 as in Sample4Geo). Saving, loading and Hub upload come from
``huggingface_hub.PyTorchModelHubMixin``: ``save_pretrained`` writes ``config.json`` and
``model.safetensors``, and ``GleamCEncoder.from_pretrained(dir_or_repo_id)`` rebuilds the model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from gleamx.errors import GleamConfigError, GleamModelError, first_line

DEFAULT_BACKBONE = "convnext_base.fb_in22k_ft_in1k_384"
"""The paper's GLEAM-C backbone: ConvNeXt-B at 384 px (88.6 M parameters), as in Sample4Geo."""

TINY_BACKBONE = "convnext_atto"
TINY_KWARGS: dict[str, Any] = {"depths": [1, 1, 1, 1], "dims": [16, 32, 64, 128]}
"""A random-init ConvNeXt of the real class, ~0.2 M parameters: tests and CPU demos."""


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise GleamConfigError("GLEAM-C needs timm (a gleamx dependency): pip install timm") from None
    return timm


class GleamCEncoder(nn.Module, PyTorchModelHubMixin, library_name="gleamx",
                    tags=["gleamx", "gleam-c", "cross-view-geo-localization", "image-feature-extraction"]):
    """Shared-weight image encoder: images -> L2-normalised embeddings."""

    def __init__(self, backbone: str = DEFAULT_BACKBONE, img_size: int = 384,
                 backbone_kwargs: dict[str, Any] | None = None, init_temperature: float = 0.07) -> None:
        super().__init__()
        timm = _timm()
        try:
            self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0, **(backbone_kwargs or {}))
        except (RuntimeError, TypeError, ValueError) as e:
            raise GleamModelError(f"backbone {backbone!r}: {first_line(e)}") from None
        self.backbone_name, self.img_size = backbone, img_size
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    @classmethod
    def create(cls, backbone: str = DEFAULT_BACKBONE, img_size: int = 384, *, pretrained: bool = True,
               backbone_kwargs: dict[str, Any] | None = None) -> GleamCEncoder:
        """A new encoder, with the backbone's ImageNet weights from timm when ``pretrained``.

        The weights are copied into a ``pretrained=False`` build, so the saved config never asks
        ``from_pretrained`` to download them again.
        """
        model = cls(backbone=backbone, img_size=img_size, backbone_kwargs=backbone_kwargs)
        if pretrained:
            try:
                src = _timm().create_model(backbone, pretrained=True, num_classes=0, **(backbone_kwargs or {}))
            except Exception as e:  # noqa: BLE001 - timm/hub raise many types; the user needs one line
                raise GleamModelError(f"backbone {backbone!r}: pretrained weights could not be loaded "
                                      f"({first_line(e)})") from None
            model.backbone.load_state_dict(src.state_dict())
        return model

    @classmethod
    def tiny(cls, img_size: int = 64) -> GleamCEncoder:
        """The tiny random-init ConvNeXt (see :data:`TINY_KWARGS`)."""
        return cls(backbone=TINY_BACKBONE, img_size=img_size, backbone_kwargs=TINY_KWARGS)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.backbone(pixel_values).float(), dim=-1)

    def data_config(self) -> dict[str, Any]:
        """timm's preprocessing for this backbone (mean/std/interpolation), at this encoder's size."""
        cfg = _timm().data.resolve_model_data_config(self.backbone)
        cfg["input_size"] = (3, self.img_size, self.img_size)
        return cfg

    def transform(self) -> Any:
        """PIL image -> normalised tensor. Every view is resized to a square ``img_size``
        (panoramas are squeezed), so any mix of views batches together."""
        from torchvision import transforms as T

        cfg = self.data_config()
        return T.Compose([
            T.Lambda(_rgb),
            T.Resize((self.img_size, self.img_size), interpolation=T.InterpolationMode.BICUBIC, antialias=True),
            T.ToTensor(),
            T.Normalize(cfg["mean"], cfg["std"]),
        ])


def _rgb(image: Any) -> Any:  # module level: picklable for DataLoader workers
    return image.convert("RGB")


def load_encoder(name_or_path: str, *, tiny_img_size: int = 64, device: str | torch.device | None = None
                 ) -> GleamCEncoder:
    """A saved encoder (dir or Hub id), or ``"tiny"`` for a fresh tiny random one; on ``device``
    (default: the GPU when there is one)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name_or_path == "tiny":
        return GleamCEncoder.tiny(tiny_img_size).to(device)
    config = Path(name_or_path, "config.json")
    if config.is_file() and "backbone" not in json.loads(config.read_text(encoding="utf-8")):
        # Another model's folder (an MLLM, say) would otherwise load as a random default backbone.
        raise GleamModelError(f"encoder {name_or_path!r}: config.json has no 'backbone' (not a GLEAM-C encoder)")
    try:
        # strict: every weight must match, or the folder is not this encoder
        return GleamCEncoder.from_pretrained(name_or_path, strict=True).to(device)
    except (OSError, ValueError, RuntimeError) as e:
        raise GleamModelError(f"encoder {name_or_path!r}: {first_line(e)}") from None
