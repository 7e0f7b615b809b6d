import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffkit.checkpoint import read_state

import diffkit.plugins as plugins
from diffkit import hookimpl
from diffkit.degradation import Degradation
from diffkit.errors import DiffkitError

from conftest import BUILTINS, ROOT


class Fake(Degradation):
    pass


class DuplicateGaussian:
    @staticmethod
    @hookimpl
    def register_degradations(register):
        register(Fake, name="gaussian")


class NotADegradation:
    @staticmethod
    @hookimpl
    def register_degradations(register):
        register(dict, name="dict")


def test_builtins_come_from_the_diffkit_distribution():
    found = plugins.components("degradations")["gaussian"]
    assert (found.plugin, found.distribution, found.version) == ("gaussian", "diffkit", "0.1.0")
    assert {"ddpm", "ddim"} <= set(plugins.components("samplers"))
    assert {"cnn", "unet"} <= set(plugins.components("networks"))


def test_duplicate_component_names_are_refused_naming_both_plugins(register_plugin):
    register_plugin(DuplicateGaussian, "dup-plugin")
    with pytest.raises(DiffkitError, match="'gaussian' is registered by both plugin 'gaussian' and plugin 'dup-plugin'"):
        plugins.components("degradations")


def test_registering_a_non_component_is_refused(register_plugin):
    register_plugin(NotADegradation, "bad-type")
    with pytest.raises(DiffkitError, match="not a subclass of Degradation"):
        plugins.components("degradations")


def test_unknown_component_lists_the_known_ones():
    with pytest.raises(DiffkitError, match="unknown network 'resnet'; known networks: cnn, unet"):
        plugins.get_component("networks", "resnet")


def test_a_broken_plugin_is_reported_and_skipped(monkeypatch, capsys):
    real = list(importlib.metadata.entry_points(group="diffkit"))
    broken = importlib.metadata.EntryPoint(name="broken", value="diffkit_no_such_module", group="diffkit")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [broken, *real])
    monkeypatch.setenv("DIFFKIT_PLUGINS", f"{BUILTINS},broken")
    monkeypatch.setattr(plugins, "_manager", None)
    monkeypatch.setattr(plugins, "failed_plugins", [])
    assert "gaussian" in plugins.components("degradations")  # the rest still works
    assert "plugin 'broken' (unknown) failed to load and was skipped: ModuleNotFoundError" in capsys.readouterr().err
    status = {row["name"]: row["status"] for row in plugins.plugin_table()}
    assert status["broken"].startswith("failed: ModuleNotFoundError") and status["gaussian"] == "loaded"


@pytest.fixture(scope="session")
def installed_example(tmp_path_factory):
    """The example plugin really installed (pip, non-editable) into a folder put on PYTHONPATH."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT / "plugins" / "example-rowcol")], check=True)
    return target


def test_example_plugin_is_discovered_through_its_entry_point(installed_example):
    env = {**os.environ, "PYTHONPATH": str(installed_example), "DIFFKIT_PLUGINS": f"{BUILTINS},rowcol"}
    out = subprocess.run([sys.executable, "-m", "diffkit", "plugins", "--json"], env=env,
                         capture_output=True, text=True, check=True).stdout
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["rowcol"]["distribution"] == "diffkit-example-rowcol"
    assert rows["rowcol"]["version"] == "0.3.0"
    assert rows["rowcol"]["degradations"] == ["rowcol"] and rows["rowcol"]["samplers"] == ["cold-2m"]
    assert Path(installed_example, "diffkit_rowcol").is_dir()


def test_example_plugin_trains_and_samples_from_its_prior(installed_example, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed_example), "DIFFKIT_PLUGINS": f"{BUILTINS},rowcol"}
    run = [sys.executable, "-m", "diffkit"]
    subprocess.run([*run, "train", "-d", "rowcol", "--network", "cnn", "-o", "hidden=4,4", "-o", "time_features=8",
                    "-o", "components=5", "--steps", "3", "--batch-size", "8", "--conditional", "--out",
                    str(tmp_path / "run")], env=env, check=True, capture_output=True)
    state = read_state(tmp_path / "run")
    assert state["versions"]["degradation:rowcol"].startswith("diffkit-example-rowcol 0.3.0 source ")
    assert state["config"]["sampler"] == "cold"  # the default for a cold degradation
    subprocess.run([*run, "sample", str(tmp_path / "run"), "-n", "6", "--out", str(tmp_path / "s.npz")], env=env,
                   check=True, capture_output=True)
    import numpy as np
    data = np.load(tmp_path / "s.npz")
    assert data["images"].shape == (6, 28, 28)
    assert json.loads(str(data["meta"]))["nfe"] == 28
    # the plugin's own sampler, guided towards one class: two evaluations a step
    subprocess.run([*run, "sample", str(tmp_path / "run"), "-n", "4", "--sampler", "cold-2m", "--steps", "5",
                    "--class", "3", "--guidance", "1.5", "--out", str(tmp_path / "g.npz")], env=env, check=True,
                   capture_output=True)
    data = np.load(tmp_path / "g.npz")
    assert data["labels"].tolist() == [3] * 4 and json.loads(str(data["meta"]))["nfe"] == 10


def test_the_example_two_step_sampler_restores_exactly_with_a_perfect_denoiser():
    sys.path.insert(0, str(ROOT / "plugins" / "example-rowcol"))
    from diffkit_rowcol import RowColAverage, RowColOptions, TwoStepCold

    from diffkit.denoiser import Denoiser

    d = RowColAverage(RowColOptions(noise=0.5))
    x0 = torch.rand(3, 1, 28, 28) * 2 - 1
    x_T = d.degrade(x0, torch.full((3,), d.T), torch.Generator().manual_seed(0))
    # the two estimates agree, so the extrapolation 1.5·x̂0 − 0.5·x̂0 is x̂0 itself, and Algorithm 2 lands on x0
    out = TwoStepCold().sample(Denoiser(lambda x, t: x0, d), x_T, 7)
    assert torch.allclose(out, x0, atol=1e-5)


def test_diffkit_plugins_loads_only_the_named_plugins(installed_example):
    env = {**os.environ, "PYTHONPATH": str(installed_example)}
    def listed(allow):
        out = subprocess.run([sys.executable, "-m", "diffkit", "plugins", "--json"], capture_output=True, text=True,
                             env={**env, "DIFFKIT_PLUGINS": allow}, check=True)
        return {row["name"] for row in json.loads(out.stdout)}, out.stderr
    names, _ = listed("gaussian,networks,rowcol")
    assert names == {"gaussian", "networks", "rowcol"}
    names, err = listed("gaussian,nosuch")
    assert names == {"gaussian"} and "DIFFKIT_PLUGINS names nosuch, which no installed plugin provides" in err
    names, err = listed(" , ")
    assert names == set() and "DIFFKIT_PLUGINS is set but names no plugin" in err


class BrokenInsideItsHook:
    @staticmethod
    @hookimpl
    def register_degradations(register):
        import diffkit_no_such_module  # noqa: F401 - the docs recommend importing inside hooks; this one fails


class ReturnsInsteadOfRegistering:
    @staticmethod
    @hookimpl
    def register_samplers(register):
        return [Fake]


def test_a_plugin_whose_hook_raises_fails_alone(register_plugin, runner, capsys):
    from conftest import invoke

    register_plugin(BrokenInsideItsHook, "broken-hook")
    listed = invoke(runner, "list", "degradations", "--json")
    assert listed.exit_code == 0 and "gaussian" in {c["name"] for c in json.loads(listed.stdout)}
    assert "plugin 'broken-hook' failed in register_degradations and was skipped: ModuleNotFoundError" in listed.stderr
    table = {r["name"]: r for r in json.loads(invoke(runner, "plugins", "--json").stdout)}
    assert "failed in register_degradations" in table["broken-hook"]["status"] and table["gaussian"]["status"] == "loaded"


def test_a_hook_that_returns_its_classes_instead_of_registering_is_warned_about(register_plugin, runner):
    from conftest import invoke

    register_plugin(ReturnsInsteadOfRegistering, "returns")
    result = invoke(runner, "list", "samplers")
    assert result.exit_code == 0
    assert "plugin 'returns''s register_samplers returned a value instead of calling register" in result.stderr


def test_an_edited_plugin_resamples_its_own_pairs_and_only_those(tmp_path, monkeypatch, register_plugin):
    """A sampler plugin whose source changes between two compares: its pair is sampled again, the built-in
    sampler's pair is reused, and the page of each pair says which."""
    from click.testing import CliRunner

    from diffkit.plugins import source_sha256

    from conftest import invoke

    package = tmp_path / "src" / "edited_sampler"
    package.mkdir(parents=True)
    source = '''
from diffkit import hookimpl
from diffkit.sampler import Sampler


class Direct(Sampler):
    fixed_steps = 1
    SCALE = 1.0

    def step(self, denoiser, x, t, s, state, generator=None, params=None):
        return denoiser(x, t) * self.SCALE


@hookimpl
def register_samplers(register):
    register(Direct, name="edited")
'''
    (package / "__init__.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    import importlib

    module = importlib.import_module("edited_sampler")
    register_plugin(module, "edited-sampler")
    config = tmp_path / "c.toml"
    config.write_text('[compare]\nsamples = 20\nfeatures = ["classifier"]\n[[models]]\nname = "m"\ndegradation = "blur"\n'
                      'network = "cnn"\nsteps = 2\nbatch_size = 8\ndegradation_options = { T = 3 }\n'
                      'network_options = { hidden = [4], time_features = 8 }\n'
                      'samplers = [{ name = "direct" }, { name = "edited" }]\n')
    report = tmp_path / "report"
    first = invoke(CliRunner(), "compare", config, "--out", report)
    assert first.exit_code == 0, first.output
    (package / "__init__.py").write_text(source.replace("SCALE = 1.0", "SCALE = 0.5"))
    source_sha256.cache_clear()
    importlib.reload(module)
    result = invoke(CliRunner(), "compare", config, "--out", report)
    assert result.exit_code == 0, result.output
    compact = "".join(result.output.split())  # rich wraps long paths anywhere
    assert "reusing5finishedcell(s)of7" in compact and ";2torun" in compact  # the edited pair's sample and score
    assert "sampleedited×1" in compact and "sampledirect" not in compact and "m__edited-1.npz(the" not in compact
    pages = {p.stem: p.read_text() for p in (report / "pairs").glob("*.md")}
    assert '"samples_reused": true' in pages["m__direct-1"] and '"samples_reused": false' in pages["m__edited-1"]


def test_a_redeclared_option_keeps_its_base_choices_unless_it_declares_new_ones():
    from dataclasses import dataclass
    from typing import Literal

    from diffkit.options import describe, parse_options
    from diffkit_cold.cold import ColdOptions

    @dataclass
    class Restated(ColdOptions):
        loss: str = "l2"  # only a new default: the choices stay l1|l2

    @dataclass
    class Widened(ColdOptions):
        loss: Literal["l1", "l2", "huber"] = "huber"  # new choices, declared

    @dataclass
    class Broken(ColdOptions):
        loss: str = "l3"  # a default outside the inherited choices

    assert parse_options(Restated, {}).loss == "l2"
    with pytest.raises(DiffkitError, match=r"option loss='l5': choose one of l1, l2"):
        parse_options(Restated, {"loss": "l5"})
    assert {row[0]: row[1] for row in describe(Restated)}["loss"] == "l1|l2"
    assert parse_options(Widened, {"loss": "huber"}).loss == "huber"
    with pytest.raises(DiffkitError, match=r"darken: option loss='l3': choose one of l1, l2"):
        parse_options(Broken, {}, "darken")


def test_diffkit_new_plugin_writes_a_package_that_installs_and_passes_its_own_test(runner, tmp_path):
    from conftest import invoke

    result = invoke(runner, "new", "plugin", "elastic-warp", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    package = tmp_path / "diffkit-elastic-warp"
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(package)], check=True)
    env = {**os.environ, "PYTHONPATH": str(site), "DIFFKIT_PLUGINS": f"{BUILTINS},elastic-warp"}
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
                            env=env, capture_output=True, text=True, cwd=tmp_path)
    assert tested.returncode == 0 and "1 passed" in tested.stdout, tested.stdout + tested.stderr
    out = subprocess.run([sys.executable, "-m", "diffkit", "plugins", "--json"], env=env, capture_output=True,
                         text=True, check=True).stdout
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["elastic-warp"]["distribution"] == "diffkit-elastic-warp"
    assert rows["elastic-warp"]["degradations"] == ["elastic-warp"]
    again = invoke(runner, "new", "plugin", "elastic-warp", "--out", tmp_path)
    assert again.exit_code == 1 and "already exists" in again.output
    bad = invoke(runner, "new", "plugin", "Elastic_Warp", "--out", tmp_path)
    assert bad.exit_code == 1 and "use lowercase letters and digits" in bad.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diffkit-elastic-warp", "site"]
