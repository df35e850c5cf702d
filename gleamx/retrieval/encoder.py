"""The retrieval encoder: one image backbone with shared weights for the satellite tiles and every query view.

The backbone comes from one of three libraries, named by a prefix of the ``encoder`` setting
(:func:`parse_backbone`): ``timm`` (no prefix, as before: ``convnext_base.fb_in22k_ft_in1k_384``),
``open_clip:NAME[:TAG]`` (the image tower of an OpenCLIP model, e.g. ``open_clip:ViT-B-32:laion2b_s34b_b79k``)
and ``hf:ID`` (a Hugging Face vision encoder through ``transformers.AutoModel``: a Hub id such as
``hf:facebook/dinov2-small``, or a bare ``model_type`` such as ``hf:dinov2`` for a random-init model built
from a config). Embeddings are the backbone's pooled features, L2-normalised, so a dot product is a cosine.

The model carries its own learnable logit scale (CLIP-style temperature, initialised at 1/0.07 as in
Sample4Geo) and its preprocessing (mean, std, interpolation; the input side is ``img_size``). Saving, loading
and Hub upload come from ``huggingface_hub.PyTorchModelHubMixin``: ``save_pretrained`` writes ``config.json``
(family, architecture, preprocessing) and ``model.safetensors``, and ``RetrievalEncoder.from_pretrained`` rebuilds
the model offline: an ``hf`` encoder keeps its whole transformers config, so loading never asks the Hub for it.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from gleamx.errors import GleamConfigError, GleamModelError, first_line
from gleamx.sources import hub_access, missing_path

DEFAULT_BACKBONE = "convnext_base.fb_in22k_ft_in1k_384"
"""The paper's GLEAM-C backbone: ConvNeXt-B at 384 px (88.6 M parameters), as in Sample4Geo."""

TINY_BACKBONE = "convnext_atto"
TINY_KWARGS: dict[str, Any] = {"depths": [1, 1, 1, 1], "dims": [16, 32, 64, 128]}
"""A random-init ConvNeXt of the real class, ~0.2 M parameters: tests and CPU demos."""

FAMILIES = ("timm", "open_clip", "hf")
"""Backbone libraries; ``encoder: open_clip:NAME`` / ``hf:NAME`` pick the last two, a bare name is timm."""

IMAGENET_PREPROCESS: dict[str, Any] = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                       "interpolation": "bicubic"}
_INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


def parse_backbone(name: str) -> tuple[str, str]:
    """``(family, name)`` of an ``encoder`` setting: ``open_clip:X`` and ``hf:X`` name their library,
    ``timm:X`` or a bare name is timm."""
    family, sep, rest = name.partition(":")
    if sep and family in FAMILIES:
        if not rest:
            raise GleamConfigError(f"encoder: {name!r} names no model after '{family}:'")
        return family, rest
    return "timm", name


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise GleamConfigError("the retrieval encoder needs timm (a gleamx dependency): pip install timm") from None
    return timm


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError:
        raise GleamConfigError("open_clip backbones need open_clip_torch: pip install 'gleamx[retrieval-backbones]'"
                               ) from None
    return open_clip


def _hf_config(arch: dict[str, Any]) -> Any:
    from transformers import AutoConfig

    arch = dict(arch)
    model_type = arch.pop("model_type", None)
    if not model_type:
        raise GleamModelError("hf backbone: its config has no 'model_type'")
    try:
        return AutoConfig.for_model(model_type, **arch)
    except (ValueError, TypeError, KeyError) as e:
        raise GleamModelError(f"hf backbone {model_type!r}: {first_line(e)}") from None


def _hf_tower_config(config: Any) -> Any:
    """The vision tower's config of a dual-tower model (CLIP, SigLIP), else ``config`` itself."""
    return getattr(config, "vision_config", None) or config


def _open_clip_kwargs(kwargs: dict[str, Any], img_size: int) -> dict[str, Any]:
    """``create_model`` keywords with the tower at ``img_size``: a ``vision_cfg`` given here replaces the model's
    whole one, ``force_image_size`` included, so the size goes into it too."""
    if "vision_cfg" in kwargs:
        return {**kwargs, "vision_cfg": {**kwargs["vision_cfg"], "image_size": img_size}}
    return {**kwargs, "force_image_size": img_size}


def _build_backbone(family: str, backbone: str, kwargs: dict[str, Any], img_size: int) -> nn.Module:
    """A random-init backbone that returns pooled features (no download)."""
    if family == "timm":
        return _timm().create_model(backbone, pretrained=False, num_classes=0, **kwargs)
    if family == "open_clip":
        name = backbone.split(":")[0]
        # force_image_size: the tower takes img_size inputs (ViT position embeddings are resized to it).
        model = _open_clip().create_model(name, pretrained=None, **_open_clip_kwargs(kwargs, img_size))
        return model.visual  # the text tower is not needed: every view is an image
    if family == "hf":
        from transformers import AutoModel

        return AutoModel.from_config(_hf_tower_config(_hf_config(kwargs)))
    raise GleamConfigError(f"encoder family: expected one of {', '.join(FAMILIES)}, got {family!r}")


class RetrievalEncoder(nn.Module, PyTorchModelHubMixin, library_name="gleamx",
                    tags=["gleamx", "gleam-c", "cross-view-geo-localization", "image-feature-extraction"]):
    """Shared-weight image encoder: images -> L2-normalised embeddings.

    ``backbone_kwargs``: timm/open_clip ``create_model`` keyword arguments, or (``hf``) the transformers
    config as a dict. ``preprocess``: ``{"mean", "std", "interpolation"}``; None resolves timm's for a
    timm backbone (encoders saved before it was stored) and ImageNet's otherwise.
    """

    def __init__(self, backbone: str = DEFAULT_BACKBONE, img_size: int = 384,
                 backbone_kwargs: dict[str, Any] | None = None, init_temperature: float = 0.07,
                 family: str = "timm", preprocess: dict[str, Any] | None = None) -> None:
        super().__init__()
        try:
            self.backbone = _build_backbone(family, backbone, dict(backbone_kwargs or {}), img_size)
        except (RuntimeError, TypeError, ValueError, KeyError) as e:
            raise GleamModelError(f"backbone {backbone!r}: {first_line(e)}") from None
        self.backbone_name, self.img_size, self.family = backbone, img_size, family
        self.preprocess = dict(preprocess) if preprocess else None
        # hf: pass interpolate_pos_encoding when the model takes it (ViT, SigLIP, CLIP), so img_size may differ
        # from the size the position embeddings were trained at.
        self._hf_interpolate = family == "hf" and "interpolate_pos_encoding" in inspect.signature(
            self.backbone.forward).parameters
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    @classmethod
    def create(cls, backbone: str = DEFAULT_BACKBONE, img_size: int = 384, *, pretrained: bool = True,
               backbone_kwargs: dict[str, Any] | None = None, family: str | None = None) -> RetrievalEncoder:
        """A new encoder from a backbone name (``open_clip:``/``hf:`` prefixes pick the library, see
        :func:`parse_backbone`), with the library's pretrained weights when ``pretrained``.

        The weights are copied into a random-init build, so the saved config never asks ``from_pretrained``
        to download them again.
        """
        if family is None:
            family, backbone = parse_backbone(backbone)
        kwargs = dict(backbone_kwargs or {})
        if family == "timm":
            return cls._create_timm(backbone, img_size, pretrained, kwargs)
        if family == "open_clip":
            return cls._create_open_clip(backbone, img_size, pretrained, kwargs)
        if family == "hf":
            return cls._create_hf(backbone, img_size, pretrained, kwargs)
        raise GleamConfigError(f"encoder family: expected one of {', '.join(FAMILIES)}, got {family!r}")

    @classmethod
    def _create_timm(cls, backbone: str, img_size: int, pretrained: bool, kwargs: dict[str, Any]) -> RetrievalEncoder:
        model = cls(backbone=backbone, img_size=img_size, backbone_kwargs=kwargs or None,
                    preprocess=_timm_preprocess(backbone))
        if pretrained:
            try:
                src = _timm().create_model(backbone, pretrained=True, num_classes=0, **kwargs)
            except Exception as e:  # noqa: BLE001 - timm/hub raise many types; the user needs one line
                raise GleamModelError(f"backbone {backbone!r}: pretrained weights could not be loaded "
                                      f"({first_line(e)})") from None
            model.backbone.load_state_dict(src.state_dict())
        return model

    @classmethod
    def _create_open_clip(cls, backbone: str, img_size: int, pretrained: bool, kwargs: dict[str, Any]
                          ) -> RetrievalEncoder:
        open_clip = _open_clip()
        name, _, tag = backbone.partition(":")
        if name not in open_clip.list_models():
            raise GleamModelError(f"backbone 'open_clip:{name}': not an OpenCLIP model name (open_clip.list_models())")
        src = None
        if pretrained:
            tags = open_clip.list_pretrained_tags_by_model(name)
            tag = tag or (tags[0] if tags else "")
            if not tag:
                raise GleamModelError(f"backbone 'open_clip:{name}': OpenCLIP lists no pretrained weights for it")
            try:
                src = open_clip.create_model(name, pretrained=tag, **_open_clip_kwargs(kwargs, img_size))
            except Exception as e:  # noqa: BLE001 - download/checkpoint errors of many types
                raise GleamModelError(f"backbone 'open_clip:{name}:{tag}': pretrained weights could not be loaded "
                                      f"({first_line(e)})") from None
        model = cls(backbone=name, img_size=img_size, backbone_kwargs=kwargs or None, family="open_clip",
                    preprocess=_open_clip_preprocess((src.visual if src is not None else None), name, kwargs, img_size))
        if src is not None:
            model.backbone.load_state_dict(src.visual.state_dict())
        return model

    @classmethod
    def _create_hf(cls, backbone: str, img_size: int, pretrained: bool, kwargs: dict[str, Any]) -> RetrievalEncoder:
        from transformers import AutoConfig

        is_repo = "/" in backbone or Path(backbone).exists()
        if not is_repo and pretrained:
            raise GleamConfigError(f"encoder: 'hf:{backbone}' is a model_type (random init from a config); "
                                   "set pretrained: false, or name a Hub id such as hf:facebook/dinov2-small")
        try:
            if is_repo:
                config = AutoConfig.from_pretrained(backbone, **kwargs)
            else:
                config = AutoConfig.for_model(backbone, **kwargs)
        except Exception as e:  # noqa: BLE001 - Hub/config errors of many types
            raise GleamModelError(f"backbone 'hf:{backbone}': {first_line(e)}") from None
        tower_cfg = _hf_tower_config(config)
        arch = tower_cfg.to_diff_dict()  # the whole architecture: from_pretrained rebuilds it offline
        arch["model_type"] = tower_cfg.model_type
        arch.pop("transformers_version", None)
        model = cls(backbone=backbone, img_size=img_size, backbone_kwargs=arch, family="hf",
                    preprocess=_hf_preprocess(backbone if is_repo else None))
        if pretrained:
            try:
                # The tower's own class loads the tower's weights out of a dual-tower checkpoint (CLIP, SigLIP).
                src = type(model.backbone).from_pretrained(backbone, dtype=torch.float32)
            except Exception as e:  # noqa: BLE001
                raise GleamModelError(f"backbone 'hf:{backbone}': pretrained weights could not be loaded "
                                      f"({first_line(e)})") from None
            model.backbone.load_state_dict(src.state_dict())
        return model

    @classmethod
    def tiny(cls, img_size: int = 64) -> RetrievalEncoder:
        """The tiny random-init ConvNeXt (see :data:`TINY_KWARGS`)."""
        return cls(backbone=TINY_BACKBONE, img_size=img_size, backbone_kwargs=TINY_KWARGS)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.family == "hf":
            kw = {"interpolate_pos_encoding": True} if self._hf_interpolate else {}
            out = self.backbone(pixel_values=pixel_values, **kw)
            pooled = getattr(out, "pooler_output", None)
            feats = pooled if pooled is not None else out.last_hidden_state[:, 0]  # no pooler: the first token
            return F.normalize(feats.flatten(1).float(), dim=-1)
        return F.normalize(self.backbone(pixel_values).float(), dim=-1)

    def data_config(self) -> dict[str, Any]:
        """The preprocessing (mean/std/interpolation) at this encoder's size: the stored one, else timm's
        for a timm backbone, else ImageNet's."""
        if self.preprocess:
            cfg = {**IMAGENET_PREPROCESS, **self.preprocess}
        elif self.family == "timm":
            cfg = _timm().data.resolve_model_data_config(self.backbone)
        else:
            cfg = dict(IMAGENET_PREPROCESS)
        cfg["input_size"] = (3, self.img_size, self.img_size)
        return cfg

    def transform(self) -> Any:
        """PIL image -> normalised tensor. Every view is resized to a square ``img_size``
        (panoramas are squeezed), so any mix of views batches together; mean, std and interpolation are the
        backbone's own."""
        from torchvision import transforms as T

        cfg = self.data_config()
        mode = {"bilinear": T.InterpolationMode.BILINEAR, "nearest": T.InterpolationMode.NEAREST}.get(
            str(cfg.get("interpolation", "bicubic")), T.InterpolationMode.BICUBIC)
        return T.Compose([
            T.Lambda(_rgb),
            T.Resize((self.img_size, self.img_size), interpolation=mode, antialias=True),
            T.ToTensor(),
            T.Normalize(list(cfg["mean"]), list(cfg["std"])),
        ])


def _preprocess(mean: Any, std: Any, interpolation: Any) -> dict[str, Any]:
    interp = str(interpolation or "bicubic").lower()
    return {"mean": [float(x) for x in mean], "std": [float(x) for x in std],
            "interpolation": interp if interp in _INTERPOLATIONS else "bicubic"}


def _timm_preprocess(backbone: str) -> dict[str, Any] | None:
    """timm's pretrained config of the name (its tag's, or the default tag's), read without building a model."""
    cfg = _timm().get_pretrained_cfg(backbone)
    if cfg is None:
        return None  # unknown name: the constructor reports it in one line; or no cfg: timm resolves at use
    return _preprocess(cfg.mean, cfg.std, cfg.interpolation)


def _open_clip_preprocess(visual: Any, name: str, kwargs: dict[str, Any], img_size: int) -> dict[str, Any]:
    """OpenCLIP's preprocessing config of the tower (the pretrained tag's when loaded, else the model's)."""
    cfg = getattr(visual, "preprocess_cfg", None)
    if cfg is None:
        model = _open_clip().create_model(name, pretrained=None, **_open_clip_kwargs(kwargs, img_size))
        cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    return _preprocess(cfg.get("mean", IMAGENET_PREPROCESS["mean"]), cfg.get("std", IMAGENET_PREPROCESS["std"]),
                       cfg.get("interpolation"))


_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def _hf_preprocess(repo: str | None) -> dict[str, Any]:
    """The repo's image processor's mean/std/resample; ImageNet's for a model built from a config alone
    (processor classes' own defaults are not the checkpoints': DINOv2's says CLIP's mean, its repos ImageNet's)."""
    if repo is None:
        return dict(IMAGENET_PREPROCESS)
    try:
        from transformers import AutoImageProcessor

        proc = AutoImageProcessor.from_pretrained(repo)
    except Exception:  # noqa: BLE001 - a repo without an image processor: ImageNet's, as for a config
        return dict(IMAGENET_PREPROCESS)
    if getattr(proc, "image_mean", None) is None or getattr(proc, "image_std", None) is None:
        return dict(IMAGENET_PREPROCESS)
    return _preprocess(proc.image_mean, proc.image_std, _interpolation_name(getattr(proc, "resample", None)))


def _interpolation_name(resample: Any) -> str | None:
    """A processor's ``resample`` (PIL's integer code, its enum, or a torchvision mode) as a name."""
    if resample is None:
        return None
    try:
        return _PIL_RESAMPLE.get(int(resample))
    except (TypeError, ValueError):
        return str(getattr(resample, "value", resample)).lower()


def _rgb(image: Any) -> Any:  # module level: picklable for DataLoader workers
    return image.convert("RGB")


def load_encoder(name_or_path: str, *, tiny_img_size: int = 64, device: str | torch.device | None = None
                 ) -> RetrievalEncoder:
    """A saved encoder (dir or Hub id), or ``"tiny"`` for a fresh tiny random one; on ``device``
    (default: the GPU when there is one)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name_or_path == "tiny":
        return RetrievalEncoder.tiny(tiny_img_size).to(device)
    if not Path(name_or_path).expanduser().exists():  # a Hub id, or a mistyped path: said at once
        missing = missing_path(name_or_path)
        problem = missing or hub_access(name_or_path, "model")[0]
        if problem:
            raise GleamModelError(f"encoder: {problem}" if missing else f"encoder {name_or_path!r}: {problem}")
    config = Path(name_or_path, "config.json")
    if config.is_file() and "backbone" not in json.loads(config.read_text(encoding="utf-8")):
        # Another model's folder (an MLLM, say) would otherwise load as a random default backbone.
        raise GleamModelError(f"encoder {name_or_path!r}: config.json has no 'backbone' (not a retrieval encoder)")
    try:
        # strict: every weight must match, or the folder is not this encoder
        return RetrievalEncoder.from_pretrained(name_or_path, strict=True).to(device)
    except (OSError, ValueError, RuntimeError) as e:
        raise GleamModelError(f"encoder {name_or_path!r}: {first_line(e)}") from None
