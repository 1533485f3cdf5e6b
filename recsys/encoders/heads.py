"""Projection heads: the fitted part of an encoder, from tower features into the shared space.

``mlp`` heads (recsys-lite) standardise the features, then a two-layer MLP plus a linear skip. ``residual`` heads
(open_clip presets, whose towers already share a space) start as the identity and learn a correction, so an unfitted
hub model keeps its pretrained behaviour. Heads are saved with their config and refused on mismatch.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from recsys.errors import IncompatibleArtifact
from recsys.files import atomic_path, write_text_atomic


class Head(nn.Module):
    mu: torch.Tensor
    sigma: torch.Tensor

    basis: torch.Tensor

    def __init__(self, in_dim: int, out_dim: int, kind: str = "mlp", hidden: int = 1024, dropout: float = 0.1,
                 reduce: int = 0) -> None:
        super().__init__()
        self.kind = kind
        self.register_buffer("mu", torch.zeros(in_dim))
        self.register_buffer("sigma", torch.ones(in_dim))
        # Optional fixed PCA basis of the standardised features (wide image features): cheaper fitting.
        self.reduce = reduce if 0 < reduce < in_dim and kind == "mlp" else 0
        width = self.reduce or in_dim
        self.register_buffer("basis", torch.eye(in_dim)[:, :width].clone() if self.reduce else torch.zeros(0))
        self.skip = nn.Linear(width if kind == "mlp" else in_dim, out_dim, bias=False)
        if kind == "mlp":
            self.mlp: nn.Module = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout),
                                                nn.Linear(hidden, out_dim))
        elif kind == "residual":
            if in_dim != out_dim:
                raise ValueError("a residual head keeps the tower's dimension")
            nn.init.zeros_(self.skip.weight)
            self.mlp = nn.Identity()
        else:
            raise ValueError(f"unknown head kind {kind!r} (mlp, residual)")

    def set_stats(self, feats: torch.Tensor) -> None:
        """Standardisation from training features (mlp heads only; residual heads see the raw space)."""
        if self.kind == "mlp":
            self.mu.copy_(feats.mean(0))
            self.sigma.copy_(feats.std(0).clamp_min(1e-4))
            if self.reduce:
                sample = feats[torch.randperm(len(feats), generator=torch.Generator().manual_seed(0))[:4096]]
                z = (sample - self.mu) / self.sigma
                _, _, v = torch.pca_lowrank(z, q=min(self.reduce, *z.shape), center=False, niter=2)
                self.basis.zero_()
                self.basis[:, : v.shape[1]] = v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "residual":
            return x + self.skip(x)
        z = (x - self.mu) / self.sigma
        if self.reduce:
            z = z @ self.basis
        return self.mlp(z) + self.skip(z)


class Heads(nn.Module):
    """The image and text heads of one encoder, with the CLIP temperature."""

    def __init__(self, image_dim: int, text_dim: int, dim: int, kind: str = "mlp", hidden: int = 1024,
                 dropout: float = 0.1, reduce: int = 0) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"image_dim": image_dim, "text_dim": text_dim, "dim": dim, "kind": kind,
                                       "hidden": hidden, "dropout": dropout, "reduce": reduce}
        self.image = Head(image_dim, dim, kind, hidden, dropout, reduce)
        self.text = Head(text_dim, dim, kind, hidden, dropout)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.05)))

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    def save(self, directory: Path, manifest: dict[str, Any]) -> None:
        """Both files synced to disk before the caller switches ``CURRENT`` to them: after a power cut the pointer
        never names an empty file."""
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / "heads.pt") as tmp:
            torch.save(self.state_dict(), tmp)
        write_text_atomic(directory / "manifest.json", json.dumps({**manifest, "heads": self.config}, indent=2,
                                                                  default=str))

    @classmethod
    def load(cls, directory: Path, *, image_dim: int, text_dim: int, towers_id: str) -> tuple[Heads, dict[str, Any]]:
        try:
            manifest = json.loads((directory / "manifest.json").read_text())
            cfg = manifest["heads"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise IncompatibleArtifact(f"the encoder manifest in {directory} is damaged ({e}); run `recsys encoder "
                                       "fit` (or `recsys build --force`) again") from e
        if (cfg["image_dim"], cfg["text_dim"]) != (image_dim, text_dim) or manifest.get("towers") != towers_id:
            raise IncompatibleArtifact(
                f"encoder heads in {directory} were fitted for towers {manifest.get('towers')} "
                f"({cfg['image_dim']}/{cfg['text_dim']} features), not {towers_id} ({image_dim}/{text_dim}: a "
                "local checkpoint replaced, or another RECSYS_ENCODER__RUNTIME); run `recsys encoder fit` again, or "
                "`recsys build`, which also embeds and indexes with the new heads (the served index needs both)"
            )
        try:
            heads = cls(**cfg)
            heads.load_state_dict(torch.load(directory / "heads.pt", map_location="cpu", weights_only=True))
        except (TypeError, KeyError, RuntimeError) as e:  # saved by an older layout of the heads
            raise IncompatibleArtifact(
                f"encoder heads in {directory} do not match this version of recsys ({str(e).splitlines()[0]}); "
                "run `recsys encoder fit` (or `recsys build --force`) again"
            ) from e
        except (EOFError, OSError, pickle.UnpicklingError) as e:  # empty or cut short (EOFError read as "Aborted.")
            raise IncompatibleArtifact(
                f"encoder heads file {directory / 'heads.pt'} is damaged or empty ({type(e).__name__}: {e}); run "
                "`recsys encoder fit` (or `recsys build --force`) again"
            ) from e
        if not all(bool(torch.isfinite(t).all()) for t in heads.state_dict().values() if t.is_floating_point()):
            # they would embed every new item as NaN, and the cache would keep it
            raise IncompatibleArtifact(f"encoder heads in {directory} have non-finite weights (a damaged file?); "
                                       "run `recsys encoder fit` (or `recsys build --force`) again")
        return heads.eval(), manifest
