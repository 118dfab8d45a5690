#!/usr/bin/env bash
# Refreshes docs/screenshots/ (the README's Dashboard section shows them): runs the browser
# tests (tests/browser/, which need chromium) with their screenshots in a temporary folder, then
# copies the main pages here as 1280x800 PNGs, quantised to 256 colours to keep the repository
# small (Pillow, when it is installed; else as taken).
#   bash scripts/screenshots.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shots=$(mktemp -d /tmp/omium-screenshots.XXXXXX)
OMIUM_SCREENSHOTS=$shots python3 -m pytest -q -p no:cacheprovider tests/browser "$@"
mkdir -p docs/screenshots
python3 - "$shots" docs/screenshots login executions execution workflows llm <<'PY'
import shutil
import sys
from pathlib import Path

source, target, *names = sys.argv[1:]
for name in names:
    src, dst = Path(source) / f"{name}.png", Path(target) / f"{name}.png"
    try:
        from PIL import Image
    except ImportError:
        shutil.copyfile(src, dst)
    else:
        with Image.open(src) as im:
            im.convert("RGB").quantize(256).save(dst, optimize=True)
    print(f"{dst}: {dst.stat().st_size // 1024} KiB")
PY
