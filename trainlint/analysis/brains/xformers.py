"""What trainlint knows about xformers: ``memory_efficient_attention(q, k, v, attn_bias, p)``
drops attention weights with rate ``p`` whatever the module's mode."""

from __future__ import annotations

ROOTS = frozenset({"xformers"})

# qualname -> (keyword, position) of the dropout rate.
DROPOUT_RATE_ARGUMENTS: dict[str, tuple[str, int]] = {
    f"{prefix}.memory_efficient_attention": ("p", 4) for prefix in ("xformers.ops", "xformers.ops.fmha")
}
