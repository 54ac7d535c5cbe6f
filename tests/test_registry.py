"""Engine plugins load through entry points, each in isolation."""

import importlib
import sys
import textwrap

import pytest

from napari_i2i.frontends import cli
from napari_i2i.contract.registry import DuplicateEngineError, EngineRegistry, UnknownEngineError, default_registry

ECHO_ENGINE = '''
from napari_i2i import hookimpl
from napari_i2i.contract.engine_api import Capabilities, Engine, StyleMode, TranslationModel


class EchoModel(TranslationModel):
    def __init__(self, config):
        super().__init__()
        self.config = dict(config)

    @property
    def capabilities(self):
        return Capabilities(directions={{"x2y": (1, 1)}}, style_modes=(StyleMode.NONE,))

    def condition(self, request):
        return None

    def translate(self, images, conditioning):
        return images


class EchoEngine(Engine):
    name = "{name}"
    description = "returns its input"
    presets = {{"small": {{}}}}

    def build(self, config):
        return EchoModel(config)
'''


def make_distribution(root, dist_name, plugins):
    """A real installed distribution on sys.path: dist-info + modules + entry points."""
    info = root / f"{dist_name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 1.0\n")
    lines = ["[napari_i2i.engines]"]
    for entry_name, (module, source) in plugins.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
        lines.append(f"{entry_name} = {module}")
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    good = ECHO_ENGINE.format(name="echo") + (
        "\n@hookimpl\ndef i2i_register_engines(registry):\n    registry.add(EchoEngine())\n"
    )
    duplicate = ECHO_ENGINE.format(name="munit") + (
        "\n@hookimpl\ndef i2i_register_engines(registry):\n    registry.add(EchoEngine())\n"
    )
    half_broken = ECHO_ENGINE.format(name="halfway") + (
        "\n@hookimpl\ndef i2i_register_engines(registry):\n"
        "    registry.add(EchoEngine())\n    raise RuntimeError('database offline')\n"
    )
    make_distribution(
        tmp_path,
        "fake-i2i-plugins",
        {
            "echo": ("i2i_echo_plugin", good),
            "broken_import": ("i2i_broken_plugin", "import module_that_does_not_exist\n"),
            "copycat": ("i2i_duplicate_plugin", duplicate),
            "halfway": ("i2i_halfway_plugin", half_broken),
            "no_hook": ("i2i_nohook_plugin", "VALUE = 1\n"),
            "wrong_args": (
                "i2i_wrongargs_plugin",
                "from napari_i2i import hookimpl\n\n@hookimpl\n"
                "def i2i_register_engines(registry, extra):\n    pass\n",
            ),
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    for name in list(sys.modules):
        if name.startswith("i2i_"):
            del sys.modules[name]


def test_builtin_engine_comes_through_the_entry_point():
    registry = EngineRegistry()
    registry.load_plugins()
    assert "munit" in registry
    source = registry.source("munit")
    assert source.entry_point == "munit" and source.module == "engines.munit"
    assert source.distribution == "napari-i2i"


def test_each_plugin_loads_in_isolation(plugin_site):
    registry = EngineRegistry()
    registry.load_plugins()
    assert "echo" in registry and "munit" in registry
    errors = {e.source.entry_point: e.message for e in registry.load_errors}
    assert set(errors) == {"broken_import", "copycat", "halfway", "no_hook", "wrong_args"}
    assert "module_that_does_not_exist" in errors["broken_import"]
    assert "database offline" in errors["halfway"]
    assert "implements no napari_i2i hook" in errors["no_hook"]
    assert "extra" in errors["wrong_args"]
    # the duplicate names both sources
    assert "'munit'" in errors["copycat"] and "engines.munit" in errors["copycat"]
    assert "i2i_duplicate_plugin" in str(
        next(e for e in registry.load_errors if e.source.entry_point == "copycat")
    )
    # a plugin that failed half-way keeps none of its engines
    assert "halfway" not in registry
    # the built-in engine is still the original
    assert registry.get("munit").description.startswith("MUNIT")


def test_engines_command_lists_engines_and_errors(plugin_site, capsys):
    default_registry.cache_clear()
    try:
        assert cli.main(["engines"]) == 0
    finally:
        default_registry.cache_clear()
    out = capsys.readouterr().out
    assert "munit: MUNIT" in out and "echo: returns its input" in out
    assert "styles: random, reference" in out
    assert "load error: plugin 'broken_import'" in out
    assert "Traceback" not in out
    default_registry.cache_clear()
    try:
        assert cli.main(["engines", "--traceback"]) == 0
    finally:
        default_registry.cache_clear()
    assert "ModuleNotFoundError: No module named 'module_that_does_not_exist'" in capsys.readouterr().out


def test_direct_registration_and_lookup_errors(munit_engine):
    registry = EngineRegistry()
    registry.add(munit_engine)
    with pytest.raises(DuplicateEngineError, match="munit"):
        registry.add(munit_engine)
    with pytest.raises(UnknownEngineError, match="available: munit"):
        registry.get("cyclegan")
    with pytest.raises(TypeError):
        registry.add(object())
