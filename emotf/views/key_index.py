"""Which batch owns each movie, kept as the batch manifests appear.

``retry-failed`` queues failed movies again in a new batch; only a movie's newest batch
counts, so its rows in older batches leave the session STAR files. The index
``.emotf/star_parts/keys.bin`` holds one (64-bit key hash, batch number) pair per manifest
entry, appended once per manifest (manifests are immutable). A new manifest is checked
against it (a hash hit is confirmed in the other manifest), so the cost of a batch does not
grow with the session. Keys a later batch supersedes are listed per batch in
``dropped/<batch>.json``.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from pathlib import Path

from ..batches import ManifestError, manifest_path, read_manifest
from ..fsutil import atomic_write_json, read_json

INDEX = "keys.bin"
DROPPED = "dropped"
PAIR = 16  # bytes per (hash, batch) pair


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def batch_number(batch: str) -> int:
    return int(batch[1:])


class KeyIndex:
    """The index of a parts folder; ``length`` (bytes) is what the journal recorded, so a
    pair half-appended by a killed writer is cut off."""

    def __init__(self, folder: Path, out_dir: Path, length: int) -> None:
        self.path = folder / INDEX
        self.folder = folder
        self.out_dir = out_dir
        self.pairs = array("Q")
        if length and self.path.is_file():
            with open(self.path, "rb") as handle:
                self.pairs.frombytes(handle.read(length - length % PAIR))
        self.hashes = set(self.pairs[0::2])
        self._keys: dict[int, set[str]] = {}

    @property
    def length(self) -> int:
        return len(self.pairs) * self.pairs.itemsize

    def _manifest_keys(self, number: int) -> set[str]:
        if number not in self._keys:
            try:
                manifest = read_manifest(manifest_path(self.out_dir, f"b{number:06d}"))
                self._keys[number] = {m.key for m in manifest.movies}
            except ManifestError:
                self._keys[number] = set()
        return self._keys[number]

    def _holders(self, hits: set[int]) -> dict[int, set[int]]:
        found: dict[int, set[int]] = {}
        for i in range(0, len(self.pairs), 2):
            if self.pairs[i] in hits:
                found.setdefault(self.pairs[i], set()).add(self.pairs[i + 1])
        return found

    def add(self, batch: str, keys: list[str]) -> dict[str, set[str]]:
        """Index a new manifest's keys; returns {batch: keys it no longer owns}."""
        number = batch_number(batch)
        self._keys[number] = set(keys)
        hashed = {key: key_hash(key) for key in keys}
        hits = {h for h in hashed.values() if h in self.hashes}
        holders = self._holders(hits) if hits else {}
        dropped: dict[str, set[str]] = {}
        for key, h in hashed.items():
            for other in holders.get(h, set()) - {number}:
                if key in self._manifest_keys(other):
                    older = min(other, number)
                    dropped.setdefault(f"b{older:06d}", set()).add(key)
        for h in hashed.values():
            self.pairs.extend((h, number))
            self.hashes.add(h)
        return dropped

    def save(self, old_length: int) -> None:
        """Append the pairs added since ``old_length`` (after cutting a partial tail)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = "r+b" if self.path.exists() else "wb"
        with open(self.path, mode) as handle:
            handle.truncate(old_length)
            handle.seek(old_length)
            handle.write(self.pairs.tobytes()[old_length:])
            handle.flush()
            os.fsync(handle.fileno())


def dropped_path(folder: Path, batch: str) -> Path:
    return folder / DROPPED / f"{batch}.json"


def read_dropped(folder: Path, batch: str) -> set[str]:
    path = dropped_path(folder, batch)
    return set(read_json(path)) if path.is_file() else set()


def add_dropped(folder: Path, batch: str, keys: set[str]) -> int:
    """Add ``keys`` to the batch's superseded keys; returns how many it has now."""
    keys = read_dropped(folder, batch) | keys
    atomic_write_json(dropped_path(folder, batch), sorted(keys))
    return len(keys)
