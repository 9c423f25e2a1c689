"""Build the krew archive of `kubectl bgj`, byte for byte the same on every machine.

    .venv/bin/python hack/krew_archive.py [OUT]   # default dist/kubectl-bgj.tar.gz

Prints the archive's sha256, the value plugins/bgj.yaml must carry for the release.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = {"kubectl-bgj": REPO / "plugins" / "krew" / "kubectl-bgj"}


def build() -> bytes:
    """The .tar.gz: fixed order, owner, mode and times; gzip without a timestamp."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in sorted(FILES.items()):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "dist" / "kubectl-bgj.tar.gz"
    data = build()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(hashlib.sha256(data).hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
