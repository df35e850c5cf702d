"""Retrieval encoder backbones from timm, OpenCLIP and transformers: built offline from a config, saved with their
preprocessing, loaded back to the same embeddings; the pretrained paths with the downloads stubbed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gleamx.errors import GleamConfigError, GleamModelError

import open_clip  # noqa: E402

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGENET_MEAN = [0.485, 0.456, 0.406]

# Small random configs: the real classes at a size a CPU test builds in well under a second.
OPEN_CLIP_VIT = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8,
                                                 "head_width": 32},
                 "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}}
OPEN_CLIP_CONVNEXT = {"embed_dim": 32,
                      "vision_cfg": {"timm_model_name": "convnext_atto", "timm_model_pretrained": False,
                                     "timm_pool": "", "timm_proj": "linear", "image_size": 32},
                      "text_cfg": OPEN_CLIP_VIT["text_cfg"]}
HF_SMALL = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
            "patch_size": 8, "image_size": 32}


def _images(n: int = 3, side: int = 40):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    return [Image.fromarray((torch.rand(side, side + 8, 3, generator=g) * 255).byte().numpy()) for _ in range(n)]


def _embed(enc, images) -> torch.Tensor:
    tf = enc.transform()
    with torch.no_grad():
        return enc.eval()(torch.stack([tf(im) for im in images]))


@pytest.mark.parametrize(("name", "kwargs", "mean", "family"), [
    ("open_clip:ViT-B-32", OPEN_CLIP_VIT, CLIP_MEAN, "open_clip"),
    ("open_clip:convnext_base", OPEN_CLIP_CONVNEXT, CLIP_MEAN, "open_clip"),
    ("hf:dinov2", HF_SMALL, IMAGENET_MEAN, "hf"),
    ("hf:siglip_vision_model", HF_SMALL, IMAGENET_MEAN, "hf"),
    ("hf:siglip", {"vision_config": HF_SMALL}, IMAGENET_MEAN, "hf"),  # a dual-tower config: its vision tower
    ("convnext_atto", {"depths": [1, 1, 1, 1], "dims": [16, 32, 64, 128]}, IMAGENET_MEAN, "timm"),
])
def test_backbone_round_trips_with_its_preprocessing(tmp_path, name, kwargs, mean, family):
    from gleamx.retrieval.encoder import RetrievalEncoder, load_encoder

    torch.manual_seed(0)
    enc = RetrievalEncoder.create(name, 32, pretrained=False, backbone_kwargs=kwargs)
    assert enc.family == family
    if family == "open_clip":
        assert not hasattr(enc.backbone, "transformer") or "text" not in type(enc.backbone).__name__.lower()
        assert not any(k.startswith("backbone.token_embedding") for k in enc.state_dict())  # no text tower
    images = _images()
    e = _embed(enc, images)
    assert e.shape[0] == 3 and torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    enc.save_pretrained(tmp_path / "enc")
    config = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert config["family"] == family and config["preprocess"]["mean"] == pytest.approx(mean)
    back = load_encoder(str(tmp_path / "enc"), device="cpu")
    assert back.family == family and back.preprocess == enc.preprocess
    assert repr(back.transform()) == repr(enc.transform())  # same preprocessing at embed time
    assert torch.allclose(_embed(back, images), e, atol=1e-6)  # same embeddings


def test_preprocessing_is_the_backbones_own_and_used_at_embed_time():
    from gleamx.retrieval.encoder import RetrievalEncoder

    clip = RetrievalEncoder.create("open_clip:ViT-B-32", 32, pretrained=False, backbone_kwargs=OPEN_CLIP_VIT)
    (norm,) = [t for t in clip.transform().transforms if type(t).__name__ == "Normalize"]
    assert list(norm.mean) == pytest.approx(CLIP_MEAN)
    # a white image normalises with CLIP's statistics, not ImageNet's
    from PIL import Image

    x = clip.transform()(Image.new("RGB", (10, 10), "white"))
    assert x.shape == (3, 32, 32)
    assert x[0, 0, 0].item() == pytest.approx((1 - CLIP_MEAN[0]) / 0.26862954, rel=1e-5)
    # an hf ViT at another size than its config's: position embeddings are interpolated
    vit = RetrievalEncoder.create("hf:siglip_vision_model", 48, pretrained=False, backbone_kwargs=HF_SMALL)
    assert vit(torch.randn(2, 3, 48, 48)).shape == (2, 32)
    ocv = RetrievalEncoder.create("open_clip:ViT-B-32", 48, pretrained=False, backbone_kwargs=OPEN_CLIP_VIT)
    assert ocv(torch.randn(2, 3, 48, 48)).shape == (2, 32)  # OpenCLIP builds the tower at img_size


def test_pretrained_paths_copy_the_librarys_weights_and_preprocessing(monkeypatch):
    """The download itself needs the Hub; here the libraries' loaders are stubbed with seeded random models."""
    import transformers

    from gleamx.retrieval.encoder import RetrievalEncoder

    real = open_clip.create_model
    calls = []

    def fake_create(name, pretrained=None, **kw):
        calls.append(pretrained)
        torch.manual_seed(7)
        model = real(name, pretrained=None, **kw)
        if pretrained:
            model.visual.preprocess_cfg = {**model.visual.preprocess_cfg, "mean": (0.1, 0.2, 0.3),
                                           "interpolation": "bilinear"}
        return model

    monkeypatch.setattr(open_clip, "create_model", fake_create)
    enc = RetrievalEncoder.create("open_clip:ViT-B-32", 32, pretrained=True, backbone_kwargs=OPEN_CLIP_VIT)
    assert calls[0] == open_clip.list_pretrained_tags_by_model("ViT-B-32")[0]  # the first tag OpenCLIP lists
    torch.manual_seed(7)
    src = real("ViT-B-32", pretrained=None, **OPEN_CLIP_VIT).visual  # its vision_cfg is at 32 px already
    assert all(torch.equal(a, b) for a, b in zip(enc.backbone.state_dict().values(), src.state_dict().values()))
    assert enc.preprocess == {"mean": [0.1, 0.2, 0.3], "std": pytest.approx([0.26862954, 0.26130258, 0.27577711]),
                              "interpolation": "bilinear"}
    RetrievalEncoder.create("open_clip:ViT-B-32:openai", 32, pretrained=True, backbone_kwargs=OPEN_CLIP_VIT)
    assert calls[-2:] == ["openai", None]  # the tag asked for, then the random build it is copied into

    # hf: config and processor from the repo, weights through the tower's own class
    cfg = transformers.AutoConfig.for_model("dinov2", **HF_SMALL)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", classmethod(lambda cls, repo, **kw: cfg))

    class Proc:
        image_mean, image_std, resample = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25], 2

    monkeypatch.setattr(transformers.AutoImageProcessor, "from_pretrained", classmethod(lambda cls, repo, **kw: Proc()))
    torch.manual_seed(3)
    weights = transformers.Dinov2Model(cfg)
    monkeypatch.setattr(transformers.Dinov2Model, "from_pretrained", classmethod(lambda cls, repo, **kw: weights))
    hf = RetrievalEncoder.create("hf:facebook/dinov2-small", 32, pretrained=True)
    assert hf.backbone_name == "facebook/dinov2-small" and hf.family == "hf"
    assert all(torch.equal(a, b) for a, b in zip(hf.backbone.state_dict().values(), weights.state_dict().values()))
    assert hf.preprocess == {"mean": [0.5] * 3, "std": [0.25] * 3, "interpolation": "bilinear"}


def test_backbone_names_and_errors_are_one_line():
    from gleamx.retrieval.encoder import RetrievalEncoder, parse_backbone

    assert parse_backbone("convnext_base.fb_in22k_ft_in1k_384") == ("timm", "convnext_base.fb_in22k_ft_in1k_384")
    assert parse_backbone("timm:convnext_atto") == ("timm", "convnext_atto")
    assert parse_backbone("open_clip:ViT-B-32:openai") == ("open_clip", "ViT-B-32:openai")
    assert parse_backbone("hf:facebook/dinov2-small") == ("hf", "facebook/dinov2-small")
    with pytest.raises(GleamConfigError, match=r"^encoder: 'hf:' names no model after 'hf:'$"):
        parse_backbone("hf:")
    with pytest.raises(GleamModelError, match=r"^backbone 'open_clip:NoSuchNet': not an OpenCLIP model name"):
        RetrievalEncoder.create("open_clip:NoSuchNet", 32, pretrained=False)
    with pytest.raises(GleamConfigError, match=r"^encoder: 'hf:dinov2' is a model_type .* set pretrained: false"):
        RetrievalEncoder.create("hf:dinov2", 32, pretrained=True)
    with pytest.raises(GleamModelError, match=r"^backbone 'hf:no_such_type': "):
        RetrievalEncoder.create("hf:no_such_type", 32, pretrained=False)


@pytest.mark.slow
def test_training_with_an_hf_and_an_open_clip_backbone(tmp_path):
    from gleamx.retrieval.config import RetrievalConfig
    from gleamx.retrieval.encoder import load_encoder
    from gleamx.retrieval.train import train_retrieval
    from gleamx.synth import synthesize

    data = tmp_path / "data"
    synthesize(data, n=64, seed=0, image_size=32, difficulty="toy")
    for name, kwargs in (("hf:dinov2", HF_SMALL), ("open_clip:ViT-B-32", OPEN_CLIP_VIT)):
        out = tmp_path / name.replace(":", "-")
        cfg = RetrievalConfig(data=str(data), output_dir=str(out), encoder=name, pretrained=False,
                           encoder_kwargs=json.dumps(kwargs), img_size=32, epochs=1, batch_size=4, eval_split="val",
                           logging_steps=1)
        train_retrieval(cfg)
        enc = load_encoder(str(out), device="cpu")
        assert enc.family == name.split(":")[0]
        assert json.loads((out / "results.json").read_text())["n_query"] > 0
        assert "gleam-c" in (out / "README.md").read_text()
