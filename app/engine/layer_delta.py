"""One adapter's change to one layer, from the tensors a file stores for it (``split_key`` names their roles).

The ΔW math of LoRA/LoCon, LoHa, LoKr and DoRA comes from lycoris-lora's functional API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from app.engine import lycoris_weights

Rows = tuple[tuple[int, int], ...]  # row ranges of a file layer's ΔW, concatenated in order


@dataclass(frozen=True)
class Piece:
    """One model layer (``path`` inside its part) made of ``rows`` of a file layer's ΔW: a file
    that fuses several layers into one (Flux's q/k/v) changes each by a row range of its ΔW."""

    path: str
    rows: Rows


def place_rows(out: torch.Tensor, rows: Rows, m: torch.Tensor, cols: slice = slice(None)) -> None:
    """Write ``m``'s rows, in order, into the row ranges ``rows`` (and columns ``cols``) of ``out``."""
    start = 0
    for a, b in rows:
        out[a:b, cols] = m[start : start + b - a]
        start += b - a


def fuse_factors(
    total_rows: int, pieces: list[tuple[Rows, torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(up, down) of one fused layer from its pieces' (rows, up, down), scales folded into the ups:
    downs stacked, each up in its own columns and rows, so up·down has each piece's ΔW in its
    rows exactly (the "sparse" kohya q/k/v that diffusers' converter splits back)."""
    ups = [up.reshape(up.shape[0], -1) for _, up, _ in pieces]
    up = torch.zeros(total_rows, sum(u.shape[1] for u in ups), dtype=ups[0].dtype, device=ups[0].device)
    col = 0
    for (rows, _, _), u in zip(pieces, ups):
        place_rows(up, rows, u, slice(col, col + u.shape[1]))
        col += u.shape[1]
    return up, torch.cat([d.reshape(d.shape[0], -1) for _, _, d in pieces], dim=0)


# Longest suffixes first: "<module>.<suffix>" -> role.
_ROLES = sorted(
    {
        ".lora_down.weight": "down",
        ".lora_up.weight": "up",
        ".lora_mid.weight": "mid",
        ".lora_A.weight": "down",
        ".lora_B.weight": "up",
        ".lora_A.default.weight": "down",
        ".lora_B.default.weight": "up",
        ".lora.down.weight": "down",
        ".lora.up.weight": "up",
        ".lora_linear_layer.down.weight": "down",
        ".lora_linear_layer.up.weight": "up",
        ".down.weight": "down",
        ".up.weight": "up",  # attention-processor keys (to_q_lora.down.weight)
        ".alpha": "alpha",
        ".dora_scale": "dora",
        # peft's magnitude is always one value per output channel, whatever its shape.
        ".lora_magnitude_vector": "magnitude",
        ".lora_magnitude_vector.weight": "magnitude",
        ".lora_magnitude_vector.default.weight": "magnitude",
        ".lora_magnitude_vector.default": "magnitude",
        ".hada_w1_a": "hada_w1_a",
        ".hada_w1_b": "hada_w1_b",
        ".hada_w2_a": "hada_w2_a",
        ".hada_w2_b": "hada_w2_b",
        ".hada_t1": "hada_t1",
        ".hada_t2": "hada_t2",
        ".lokr_w1": "lokr_w1",
        ".lokr_w1_a": "lokr_w1_a",
        ".lokr_w1_b": "lokr_w1_b",
        ".lokr_w2": "lokr_w2",
        ".lokr_w2_a": "lokr_w2_a",
        ".lokr_w2_b": "lokr_w2_b",
        ".lokr_t2": "lokr_t2",
        ".diff": "diff",
        ".diff_b": "diff_b",
        ".set_weight": "set_weight",
        ".weight": "weight",
        ".on_input": "on_input",  # (IA)³
        ".a1.weight": "a1",
        ".a2.weight": "a2",
        ".b1.weight": "b1",
        ".b2.weight": "b2",  # GLoRA
        ".oft_blocks": "oft_blocks",
        ".rescale": "rescale",  # OFT / BOFT
        ".w_norm": "?w_norm",
        ".b_norm": "?b_norm",  # LyCORIS norm layers: not applied (named in the report)
    }.items(),
    key=lambda kv: -len(kv[0]),
)


def split_key(key: str) -> tuple[str, str]:
    """``lora_unet_x.lora_down.weight`` -> (``lora_unet_x``, ``down``); unknown tensors get role ``?``."""
    for suffix, role in _ROLES:
        if key.endswith(suffix):
            return key[: -len(suffix)], role
    module, _, last = key.rpartition(".")
    return (module or key), f"?{last}"


# ---------------------------------------------------------------- one layer's change


@dataclass
class LayerDelta:
    """The change one adapter makes to one layer, kept as the file's factors (dense ΔW on demand)."""

    kind: str  # "lora" | "loha" | "lokr" | "full" | "set" | one of lycoris_weights.KINDS
    tensors: dict[str, torch.Tensor]
    alpha: float | None
    dora: torch.Tensor | None = None
    dora_on_out: bool | None = None  # None: decide from the magnitude's shape (see dora_axis)
    # Set: this layer is these rows of the file layer's ΔW (a fused layer, see Piece); exact,
    # as (B·A)[rows] = B[rows]·A. Kinds whose ΔW depends on W0 are never split (see splittable).
    rows: Rows | None = None

    @property
    def rank(self) -> int:
        t = self.tensors
        if self.kind == "lora":
            return int(t["down"].shape[0])
        if self.kind == "loha":
            return int(t["hada_w1_b"].shape[0])
        if self.kind == "lokr":
            if "lokr_t2" in t:  # tucker: lokr_w2_a is (rank, out/factor), the core is (rank, rank, k, k)
                return int(t["lokr_t2"].shape[0])
            for name in ("lokr_w1_a", "lokr_w2_a"):
                if name in t:
                    return int(t[name].shape[1])
            return 0  # full Kronecker factors: no rank, scale 1 (LyCORIS ignores alpha then)
        if self.kind in lycoris_weights.KINDS:
            return lycoris_weights.rank(self.kind, t)
        return 0

    def pick_rows(self, t: torch.Tensor) -> torch.Tensor:
        """``t``'s rows that belong to this layer (all of them unless it is a piece of a fused layer)."""
        if self.rows is None:
            return t
        return torch.cat([t[a:b] for a, b in self.rows]) if len(self.rows) > 1 else t[self.rows[0][0] : self.rows[0][1]]

    @property
    def splittable(self) -> bool:
        """Whether row ranges of this change are the changes of the layers a fused one stands for:
        not for DoRA (its norm spans the fused rows) or W0-dependent kinds (OFT …)."""
        return self.dora is None and self.kind not in lycoris_weights.KINDS

    def scale(self) -> float:
        """alpha / rank, the kohya convention (no alpha means alpha = rank)."""
        rank = self.rank
        if self.alpha is None or not rank:
            return 1.0
        return self.alpha / rank

    def raw_delta(self) -> torch.Tensor:
        """ΔW at strength 1 without DoRA, in the file's own (possibly flattened) shape."""
        t = self.tensors
        if self.kind == "lora":
            from lycoris.functional import locon

            up = self.pick_rows(t["up"])  # a fused layer's rows: only B's rows are needed
            return locon.diff_weight(t["down"], up, t.get("mid"), gamma=self.scale(), backend="torch")
        if self.kind == "loha":
            from lycoris.functional import loha

            return self.pick_rows(
                loha.diff_weight(
                    t["hada_w1_b"],
                    t["hada_w1_a"],
                    t["hada_w2_b"],
                    t["hada_w2_a"],
                    t.get("hada_t1"),
                    t.get("hada_t2"),
                    gamma=self.scale(),
                    backend="torch",
                )
            )
        if self.kind == "lokr":
            from lycoris.functional import lokr

            # kron_weight with our own scale: lycoris' diff_weight takes the rank from
            # lokr_w2_a.shape[1], which is the factor width, not the rank, for tucker files.
            return self.pick_rows(
                lokr.kron_weight(
                    t.get("lokr_w1"),
                    t.get("lokr_w1_a"),
                    t.get("lokr_w1_b"),
                    t.get("lokr_w2"),
                    t.get("lokr_w2_a"),
                    t.get("lokr_w2_b"),
                    t.get("lokr_t2"),
                    scale=self.scale(),
                    backend="torch",
                )
            )
        return self.pick_rows(t["diff"])

    def delta(self, w0: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """ΔW at ``strength`` in float32 and ``w0``'s shape.

        Types whose change depends on W0 get it here: DoRA's rescale (at strength w it is
        W0 + w·(W_DoRA − W0), as ComfyUI does), a ``set_weight`` replacement, and those of
        :mod:`app.engine.lycoris_weights`.
        """
        if self.kind in lycoris_weights.KINDS:
            return lycoris_weights.delta(self.kind, self.tensors, self.alpha, w0, strength)
        if self.kind == "set":
            return (self.pick_rows(self.tensors["set_weight"]).float().reshape(w0.shape) - w0.float()) * strength
        d = self.raw_delta().float().reshape(w0.shape)
        if self.dora is not None:
            from lycoris.functional import weight_decompose

            base = w0.float()
            on_out = self.dora_axis(tuple(w0.shape))
            out = w0.shape[0]
            shape = (out,) + (1,) * (w0.dim() - 1) if on_out else (1, w0.shape[1]) + (1,) * (w0.dim() - 2)
            d = weight_decompose(base + d, self.dora.float().reshape(shape), 1, on_out, backend="torch") - base
        return d if strength == 1.0 else d * strength

    def bias_delta(self, strength: float = 1.0) -> torch.Tensor | None:
        """The change to the layer's bias (a LyCORIS full ``diff_b``), or None."""
        diff_b = self.tensors.get("diff_b")
        return None if diff_b is None else self.pick_rows(diff_b.float().reshape(-1)) * strength

    def dora_axis(self, shape: tuple[int, ...]) -> bool | None:
        """True: one magnitude per output row; False: per input column; None: it fits neither.

        Decided from the magnitude's whole shape: LyCORIS writes (out, 1[, 1, 1]) or
        (1, in[, 1, 1]), peft (out,) or (1, out, 1, 1) for a conv (marked by its key).
        """
        if self.dora is None:
            return None
        if self.dora_on_out is not None:
            return self.dora_on_out if self.dora.numel() == shape[0] else None
        dims, n = tuple(self.dora.shape), self.dora.numel()
        out, inp = shape[0], (shape[1] if len(shape) > 1 else -1)
        if len(dims) >= 2 and dims[0] == out == n:
            return True
        if len(dims) >= 2 and dims[0] == 1 and dims[1] == inp == n:
            return False
        if n == out:
            return True
        return False if n == inp else None

    def lora_factors(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(up, down) with the scale folded into up, shaped for a layer of ``shape``; None if not a plain LoRA."""
        if self.kind != "lora" or "mid" in self.tensors or self.dora is not None:
            return None
        up = self.pick_rows(self.tensors["up"]).float() * self.scale()
        down = self.tensors["down"].float()
        r = down.shape[0]
        if len(shape) == 4:
            kernel = tuple(shape[2:])
            if down.dim() == 2:
                down = down.reshape(r, -1, *([1] * 2))
            if tuple(down.shape[2:]) != kernel and math.prod(down.shape[1:]) == math.prod(shape[1:]):
                down = down.reshape(r, *shape[1:])
            up = up.reshape(up.shape[0], r, 1, 1)
        else:
            up = up.reshape(up.shape[0], r)
            down = down.reshape(r, -1)
        return up, down

    def to(self, device: torch.device) -> LayerDelta:
        self.tensors = {k: v.to(device) for k, v in self.tensors.items()}
        if self.dora is not None:
            self.dora = self.dora.to(device)
        return self
