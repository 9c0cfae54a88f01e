"""Which zones a benchmark serves: ``--zone [ORIGIN=]FILE`` arguments, the
``[[zone]]`` entries of an xdpdns configuration file, or the example zone
that `xdpdns serve` loads by default.  Every server of a run (xdpdns and its
peers) is given the same files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass(frozen=True)
class ZoneFile:
    origin: str  # absolute, with the trailing dot
    path: Path


class ZoneArgumentError(ValueError):
    """A zone argument or file that cannot be served; the message says which."""


def resolve(zone_args: Sequence[str] | None, config: str | None) -> list[ZoneFile]:
    """The zones to serve.  ``--zone`` arguments win over the configuration
    file's list, as they do for `xdpdns serve`; with neither, the example
    zone."""
    from xdpdns.config import ConfigError, load_config
    from xdpdns.plugins import load_plugins

    try:
        cfg = load_config(load_plugins(), config, zones=list(zone_args) if zone_args else None)
    except ConfigError as exc:
        raise ZoneArgumentError(str(exc)) from None
    zones = [
        ZoneFile(z.origin.to_text(), Path(z.file).resolve())
        for z in cfg.zones
        if z.file is not None
    ]
    if not zones:
        raise ZoneArgumentError(
            f"{config}: no [[zone]] entries; the peers and the query generator need zone "
            "files (give --zone [ORIGIN=]FILE)"
        )
    for zone in zones:
        if not zone.path.is_file():
            raise ZoneArgumentError(f"zone file {zone.path}: no such file")
    return zones
