"""Secondary zones on disk, so that a restart serves them at once, without
their primaries: each as an image of that zone alone (ORIGIN.image, the
format the engine validates on load) and its timers (ORIGIN.timers, JSON:
the serial, when it was last refreshed, and the SOA's timers then), in
[server] storage; a catalog zone also its content (ORIGIN.catalog, JSON:
xdpdns/secondary/catalog.py), from which its members are known at once.
A zone signed on load keeps there the serial it was last served with
(ORIGIN.serial), so that a restart never serves an older one.
Each is written whole to a temporary file and renamed into place, so a
crash leaves the old version or the new one.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import dns.name

from xdpdns.engine import Image

log = logging.getLogger("xdpdns.secondary")


@dataclass(frozen=True)
class Timers:
    serial: int
    refreshed: float  # UNIX time of the last transfer or SOA check that agreed
    refresh: int  # the SOA's REFRESH, RETRY and EXPIRE, seconds
    retry: int
    expire: int


def _stem(origin: dns.name.Name) -> str:
    text = origin.to_text(omit_final_dot=True)
    return text if text else "root"  # "." would be a hidden file


class ZoneStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def prepare(self, owner: tuple[int, int] | None = None) -> None:
        """Creates the directory, owned by ``owner`` (uid, gid) when given;
        OSError naming it when it cannot be written."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if owner is not None:
                os.chown(self.directory, *owner)
            probe = self.directory / ".xdpdns-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"[server] storage {self.directory}: secondary zones cannot be kept there: "
                f"{exc.strerror or exc}",
            ) from None

    def image_path(self, origin: dns.name.Name) -> Path:
        return self.directory / f"{_stem(origin)}.image"

    def timers_path(self, origin: dns.name.Name) -> Path:
        return self.directory / f"{_stem(origin)}.timers"

    def catalog_path(self, origin: dns.name.Name) -> Path:
        return self.directory / f"{_stem(origin)}.catalog"

    def load_catalog(self, origin: dns.name.Name):
        """A catalog's content as save_catalog kept it (JSON), None when
        there is none or it cannot be read (logged)."""
        return _read(self.catalog_path(origin), json.loads, f"catalog {origin}: the content")

    def save_catalog(self, origin: dns.name.Name, content) -> None:
        _write(self.catalog_path(origin), json.dumps(content).encode())

    def serial_path(self, origin: dns.name.Name) -> Path:
        return self.directory / f"{_stem(origin)}.serial"

    def load_serials(self, origins) -> dict[dns.name.Name, int]:
        """The serials kept of those zones that have one that reads."""
        out = {}
        for origin in origins:
            serial = _read(self.serial_path(origin), int, f"zone {origin}: the serial")
            if serial is not None and 0 <= serial < 1 << 32:
                out[origin] = serial
        return out

    def save_serial(self, origin: dns.name.Name, serial: int) -> None:
        _write(self.serial_path(origin), str(serial).encode())

    def load(self, origin: dns.name.Name) -> tuple[Image, Timers] | None:
        """The zone as last kept, None when there is none or it cannot be
        used (logged: the zone is then transferred as if new)."""
        path = self.image_path(origin)
        if not path.exists():
            return None
        try:
            image = Image.from_file(path)
            data = json.loads(self.timers_path(origin).read_text())
            timers = Timers(
                int(data["serial"]),
                float(data["refreshed"]),
                int(data["refresh"]),
                int(data["retry"]),
                int(data["expire"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("zone %s: the copy kept in %s cannot be used: %s", origin, path, exc)
            return None
        if image.zone_serial(origin) != timers.serial:
            log.warning(
                "zone %s: the copy kept in %s does not hold serial %d", origin, path, timers.serial
            )
            image.close()
            return None
        return image, timers

    def save(self, origin: dns.name.Name, image: Image | None, timers: Timers | None) -> None:
        """Keeps the zone's image, its timers, or both."""
        if image is not None:
            _write(self.image_path(origin), image.to_bytes())
        if timers is not None:
            _write(self.timers_path(origin), json.dumps(asdict(timers)).encode())

    def remove(self, origin: dns.name.Name) -> None:
        for path in (self.image_path(origin), self.timers_path(origin), self.catalog_path(origin)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def _read(path: Path, parse, what: str):
    """parse(the file's text), None when there is no file or it cannot be
    used (logged, naming what it is)."""
    try:
        return parse(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s kept in %s cannot be used: %s", what, path, exc)
        return None


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
