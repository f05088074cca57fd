"""ΔW of the LyCORIS network types whose change depends on the base weight W0.

(IA)³, GLoRA, diagonal OFT and BOFT are all exact as weight patches, as ComfyUI applies
them: each one's ΔW is a function of W0 and the file's tensors. OFT and BOFT come from
lycoris-lora's functional API; (IA)³ and GLoRA have none there, so their one-line
formulas (the same as lycoris-lora's modules) are here. The strength is part of each
formula because for BOFT it is not a plain factor: lycoris-lora moves every butterfly
stage toward the identity, so ΔW(w) ≠ w·ΔW(1).

The ``alpha`` an OFT/BOFT file stores is the constraint per output row; lycoris-lora
multiplies it by the number of rows before using it.
"""

from __future__ import annotations

import torch

KINDS = ("ia3", "glora", "oft", "boft")


def kind_of(tensors: dict[str, torch.Tensor]) -> str | None:
    """The network type a layer's tensors (by role) make up, if one of :data:`KINDS`."""
    names = set(tensors)
    if {"weight", "on_input"} <= names:
        return "ia3"
    if {"a1", "a2", "b1", "b2"} <= names:
        return "glora"
    if "oft_blocks" in names:
        return "boft" if tensors["oft_blocks"].dim() == 4 else "oft"
    return None


def rank(kind: str, tensors: dict[str, torch.Tensor]) -> int:
    return int(tensors["b2"].shape[0]) if kind == "glora" else 0


def delta(
    kind: str, tensors: dict[str, torch.Tensor], alpha: float | None, w0: torch.Tensor, strength: float
) -> torch.Tensor:
    """ΔW at ``strength``, in float32 and ``w0``'s shape."""
    base = w0.float()
    if kind == "ia3":
        scale = tensors["weight"].float().reshape(-1) * strength
        if bool(tensors["on_input"].reshape(-1)[0]):
            return base * scale.reshape(1, -1, *([1] * (base.dim() - 2)))
        return base * scale.reshape(-1, *([1] * (base.dim() - 1)))
    if kind == "glora":
        t = {k: v.float() for k, v in tensors.items()}
        r = rank(kind, tensors)
        gamma = (alpha if alpha is not None else r) / r
        wa1 = t["a1"].reshape(t["a1"].shape[0], -1)
        wa2 = t["a2"].reshape(t["a2"].shape[0], -1)
        if "bm" in t:  # tucker: b1 (out, r, 1, 1), b2 (r, in, 1, 1), bm (r, r, k, k), as lycoris rebuilds it
            from lycoris.functional import tucker_weight_from_conv

            wb = tucker_weight_from_conv(t["b1"], t["b2"], t["bm"])
        else:
            wb = (t["b1"].reshape(t["b1"].shape[0], -1) @ t["b2"].reshape(t["b2"].shape[0], -1)).reshape(base.shape)
        if base.dim() > 2:
            wa = torch.einsum("o i ..., i j -> o j ...", torch.einsum("o i ..., i j -> o j ...", base, wa1), wa2)
        else:
            wa = base @ wa1 @ wa2
        return (wb + wa) * gamma * strength
    constraint = float(alpha or 0.0) * base.shape[0]
    blocks = tensors["oft_blocks"].float()
    rescale = tensors.get("rescale")
    rescale = rescale.float() if rescale is not None else None
    if kind == "oft":
        from lycoris.functional import diag_oft

        d = diag_oft.diff_weight(base, blocks, None, constraint=constraint, backend="torch").reshape(base.shape)
        d = d * strength  # the rotation's change is linear in the strength, the rescale is not
        return d if rescale is None else rescale * d + (rescale - 1) * base
    from lycoris.functional import boft

    return boft.diff_weight(base, blocks, rescale, constraint=constraint, scale=strength, backend="torch").reshape(
        base.shape
    )


def problem(kind: str, tensors: dict[str, torch.Tensor], shape: tuple[int, ...]) -> str | None:
    """Why the tensors cannot belong to a layer of ``shape`` (None: they fit)."""
    out, inp = shape[0], (shape[1] if len(shape) > 1 else 1)
    if kind == "ia3":
        n = tensors["weight"].numel()
        want = inp if bool(tensors["on_input"].reshape(-1)[0]) else out
        return None if n == want else f"(IA)³ scales {n} channels, the layer has {want}"
    if kind == "glora":
        b1, b2, a1, a2 = (tensors[k] for k in ("b1", "b2", "a1", "a2"))
        bm = tensors.get("bm")
        b_in = b2[0].numel() if bm is None else b2.shape[1] * torch.Size(bm.shape[2:]).numel()
        fits = (
            b1.shape[0] == out and b_in == torch.Size(shape[1:]).numel() and a1.shape[0] == inp and a2.shape[1] == inp
        )
        return None if fits else f"GLoRA factors {tuple(b1.shape)}/{tuple(b2.shape)} do not fit"
    blocks = tensors["oft_blocks"]
    rows = blocks.shape[-3] * blocks.shape[-1]
    return None if rows == out else f"OFT blocks cover {rows} rows, the layer has {out}"
