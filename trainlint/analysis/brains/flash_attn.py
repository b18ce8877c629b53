"""What trainlint knows about flash-attn: its kernels take a ``dropout_p`` that does not
look at the module's mode."""

from __future__ import annotations

ROOTS = frozenset({"flash_attn"})

_RATE_POSITIONS = {
    "flash_attn_func": 3,
    "flash_attn_qkvpacked_func": 1,
    "flash_attn_kvpacked_func": 2,
    "flash_attn_varlen_func": 7,
    "flash_attn_varlen_qkvpacked_func": 3,
    "flash_attn_varlen_kvpacked_func": 6,
}
# qualname -> (keyword, position) of the dropout rate.
DROPOUT_RATE_ARGUMENTS: dict[str, tuple[str, int]] = {
    f"{prefix}.{name}": ("dropout_p", position)
    for prefix in ("flash_attn", "flash_attn.flash_attn_interface")
    for name, position in _RATE_POSITIONS.items()
}
