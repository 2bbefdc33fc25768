"""The crash loop's power cut: a disk that keeps only what was fsynced (`--power-cut`).

A SIGKILL cannot lose an unsynced write: the kernel still holds it and writes it. A power cut
can. The daemon runs under an LD_PRELOAD shim (`power_cut.c`, compiled with the machine's C
compiler at first use into the user's cache directory, never shipped as a binary) that copies a
state file's content into a durable image at each of its fsyncs, and records the directory's
entries at each fsync of the directory. The cut is then: SIGKILL, and every state file replaced
by its image (a file never fsynced is gone; the -shm index is dropped, SQLite rebuilds it).

That is the most pessimistic outcome a cut may legally have: nothing that was not fsynced
reached the disk. It does not model torn or reordered partial writes of the unsynced tail;
SQLite's WAL frame checksums and salts make recovery stop at the first frame that is not whole,
so those outcomes lose a suffix of the unsynced commits, a subset of what this model loses
(docs/SECURITY.md, "Crash loop").
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from chargepin.core.errors import ChargepinError

SOURCE = "power_cut.c"
FILE_VARIABLE = "CHARGEPIN_POWER_CUT_FILE"
IMAGE_VARIABLE = "CHARGEPIN_POWER_CUT_IMAGE"
ENTRIES = "entries"
"""The image's list of the names a directory fsync made durable (one a line)."""

DROPPED_SUFFIXES = ("-shm",)
"""Files a cut never keeps: SQLite's WAL index lives in shared memory and is rebuilt."""


class PowerCutError(ChargepinError):
    """The power-cut shim could not be built or its image is unusable."""


def cache_directory() -> Path:
    """Where the compiled shim lives: $XDG_CACHE_HOME/chargepin, or ~/.cache/chargepin."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "chargepin"


def shim_library() -> Path:
    """The shim compiled for this machine, built once per version of its source.

    Named by the source's hash, so an edited shim is rebuilt; written under a temporary name and
    renamed, so parallel test workers never load a half-written library.
    """
    source = resources.files("chargepin.lab.crash_loop").joinpath(SOURCE).read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    directory = cache_directory()
    library = directory / f"power-cut-{digest}.so"
    if library.exists():
        return library
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise PowerCutError(
            "the power-cut mode compiles a small C shim and found no C compiler; install gcc "
            "(Debian: apt-get install gcc) or set CC"
        )
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as work:
        source_path = Path(work) / SOURCE
        source_path.write_bytes(source)
        built = Path(work) / library.name
        command = [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror"]
        try:
            result = subprocess.run(
                [*command, "-o", str(built), str(source_path), "-ldl", "-lpthread"],
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError as error:
            raise PowerCutError(
                f"cannot run the C compiler {compiler} ({error}); install gcc or set CC to one"
            ) from None
        if result.returncode != 0:
            raise PowerCutError(
                f"{compiler} could not build the power-cut shim:\n{result.stderr.strip()}"
            )
        built.replace(library)
    return library


@dataclass(frozen=True)
class DurableImage:
    """What a disk holds of the database at `state` after a cut: its files as last fsynced."""

    state: Path
    image: Path

    @classmethod
    def beside(cls, state: Path) -> DurableImage:
        """An image in a directory next to the database (its name must not start like it)."""
        state = state.resolve()
        return cls(state, state.parent / f"durable-image-{state.stem}")

    def files(self) -> list[Path]:
        """The database and its sidecar files as they are now."""
        return sorted(p for p in self.state.parent.glob(f"{self.state.name}*") if p.is_file())

    def seed(self) -> None:
        """Take the files as they are now as durable (a daemon about to start on them: they are
        what the last cut left, or a provisioned file whose creation was synced)."""
        shutil.rmtree(self.image, ignore_errors=True)
        self.image.mkdir()
        names = []
        for path in self.files():
            if not path.name.endswith(DROPPED_SUFFIXES):
                shutil.copyfile(path, self.image / path.name)
                names.append(path.name)
        (self.image / ENTRIES).write_text("".join(f"{name}\n" for name in names))

    def environment(self, library: Path) -> dict[str, str]:
        """The daemon's environment: the shim preloaded and told what to watch."""
        preload = " ".join(filter(None, [str(library), os.environ.get("LD_PRELOAD", "")]))
        return {
            **os.environ,
            "LD_PRELOAD": preload,
            FILE_VARIABLE: str(self.state),
            IMAGE_VARIABLE: str(self.image),
        }

    def cut(self) -> dict[str, dict[str, int | bool | None]]:
        """Replace the files by their images (the daemon must be dead); say what each kept.

        Returns, per file there before the cut or after it: its bytes before and after (None:
        no such file), and whether the cut changed it (took back unsynced writes).
        """
        listed = set((self.image / ENTRIES).read_text().split())
        kept = {
            name
            for name in listed
            if not name.endswith(DROPPED_SUFFIXES) and (self.image / name).is_file()
        }
        files: dict[str, dict[str, int | bool | None]] = {}
        for path in self.files():
            saved = self.image / path.name
            same = path.name in kept and filecmp.cmp(path, saved, shallow=False)
            files[path.name] = {"before": path.stat().st_size, "after": None, "changed": not same}
            path.unlink()
        for name in sorted(kept):
            saved = self.image / name
            shutil.copyfile(saved, self.state.parent / name)
            entry = files.setdefault(name, {"before": None, "changed": True})
            entry["after"] = saved.stat().st_size
        return dict(sorted(files.items()))


def lost_writes(files: Mapping[str, Mapping[str, int | bool | None]]) -> bool:
    """Whether a cut took anything back: a file (other than the dropped index) it changed."""
    return any(
        bool(entry["changed"])
        for name, entry in files.items()
        if not name.endswith(DROPPED_SUFFIXES)
    )
