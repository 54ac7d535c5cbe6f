"""napari finds the root napari.yaml from an editable install and from a built wheel."""

import importlib.metadata
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from npe2 import PluginManifest

ROOT = Path(__file__).resolve().parents[1]
HUB_METADATA = [
    "Author: napari-i2i contributors",
    "Classifier: Framework :: napari",
    "Classifier: Intended Audience :: Science/Research",
    "Classifier: License :: OSI Approved :: BSD License",
    "Classifier: Operating System :: OS Independent",
    "Classifier: Programming Language :: Python :: 3.11",
    "Classifier: Programming Language :: Python :: 3.12",
    "Classifier: Topic :: Scientific/Engineering :: Image Processing",
    "Project-URL: Bug Tracker, https://github.com/napari-i2i/napari-i2i/issues",
    "Project-URL: Documentation, https://github.com/napari-i2i/napari-i2i/tree/main/docs",
    "Project-URL: Homepage, https://github.com/napari-i2i/napari-i2i",
    "Project-URL: Source Code, https://github.com/napari-i2i/napari-i2i",
]


def test_installed_manifest_validates_with_imports():
    manifest = PluginManifest.from_distribution("napari-i2i")
    assert manifest.name == "napari-i2i"
    assert all(c.id.startswith("napari-i2i.") for c in manifest.contributions.commands)
    assert {s.key for s in manifest.contributions.sample_data} == {"ihc", "he_reference"}
    npe2 = shutil.which("npe2", path=str(Path(sys.executable).parent))
    done = subprocess.run([npe2, "validate", "napari-i2i", "--imports"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_wheel_carries_the_root_manifest_as_a_file(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path)],
        check=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("napari_i2i-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert archive.read("napari_i2i/napari.yaml") == (ROOT / "napari.yaml").read_bytes()
        assert "engines/munit/engine.py" in names
        # bundled models, although .gitignore skips *.safetensors (pyproject's artifacts)
        bundled = sorted((ROOT / "napari_i2i" / "bundled").glob("*.safetensors"))
        assert "stain_munit.safetensors" in [p.name for p in bundled]
        for path in bundled:
            assert archive.read(f"napari_i2i/bundled/{path.name}") == path.read_bytes()
            assert (archive.getinfo(f"napari_i2i/bundled/{path.name}").external_attr >> 16) & 0o444 == 0o444
        assert "napari_i2i/bundled/README.md" in names and "napari_i2i/frontends/sample_data.py" in names
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        text = archive.read(entry_points).decode()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "napari-i2i = napari_i2i:napari.yaml" in text
    assert "munit = engines.munit" in text
    for line in HUB_METADATA:  # what the napari hub lists and filters on
        assert line in metadata.splitlines(), line

    # installed on its own (as in a fresh venv), the manifest resolves and validates
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, timeout=300)
    (dist,) = [d for d in importlib.metadata.distributions(path=[str(site)])
               if d.metadata["Name"] == "napari-i2i"]
    (entry,) = [e for e in dist.entry_points if e.group == "napari.manifest"]
    package, resource = entry.value.split(":")
    manifest_path = site / package / resource
    assert manifest_path.is_file() and not manifest_path.is_symlink()
    assert PluginManifest.from_file(manifest_path).name == "napari-i2i"
    assert (site / "napari_i2i" / "bundled" / "stain_munit.safetensors").is_file()
