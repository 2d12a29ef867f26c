"""Which dotted config paths exist, so a spec's typo fails when it loads, not as a study of FAIL trials.

    python -c "from search.config_paths import known_paths; print(sorted(known_paths()))"

A path is known when the resolved TrainConfig of at least one model family has it (`model.nhead` exists
for the transformer only, `model.decoder_hidden` for the RNN only).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from core.typed_config import ConfigError, flatten, to_dict
from search.constraints import SpecError


@cache
def known_paths() -> frozenset[str]:
    from models import list_models
    from training.config import load_train_config

    paths: set[str] = set()
    for kind in list_models():
        paths |= set(flatten(to_dict(load_train_config({"model": {"kind": kind}}))))
    return frozenset(paths)


def check_path(where: str, path: str) -> None:
    if path not in known_paths():
        prefix = path.rsplit(".", 1)[0]
        near = sorted(p for p in known_paths() if p.startswith(prefix + "."))
        hint = f"; known under {prefix}: {', '.join(near)}" if near else ""
        raise SpecError(f"{where}: {path!r} is not a config path{hint}")


def resolved_base(base: dict[str, Any]) -> dict[str, Any]:
    """The base config with every default filled in (what a `when:` on an unsearched path reads)."""
    from training.config import load_train_config

    try:
        return to_dict(load_train_config(base))
    except ConfigError as exc:
        raise SpecError(f"base/fixed: {exc}") from None
