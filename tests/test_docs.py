"""docs/plugins.md documents every hook and every contract member, and its code runs as written."""

import re
import types
from pathlib import Path

import click
import pytest

from diffkit import hookspecs
from diffkit.degradation import Degradation
from diffkit.feature_space import FeatureSpace
from diffkit.network import Network
from diffkit.sampler import Sampler

from conftest import ROOT, invoke

DOC = (ROOT / "docs" / "plugins.md").read_text()


def members(cls, base):
    """Public members a contract class defines beyond its base."""
    return {name for name in vars(cls) if not name.startswith("_")} - set(vars(base))


@pytest.mark.parametrize("name", [n for n in vars(hookspecs) if n.startswith("register_")])
def test_every_hook_is_documented(name):
    assert f"`{name}(" in DOC


@pytest.mark.parametrize("cls,base", [(Degradation, object), (Sampler, object), (Network, object),
                                      (FeatureSpace, object)])
def test_every_contract_member_is_documented(cls, base):
    missing = sorted(name for name in members(cls, base) - {"training", "dump_patches", "call_super_init"}
                     if f"`{name}" not in DOC)
    assert not missing, f"not in docs/plugins.md: {missing}"


@pytest.fixture
def doc_plugins(register_plugin):
    """Each Python block of the guide, run as written and registered as a plugin."""
    from diffkit.cli import cli

    blocks = re.findall(r"```python\n(.*?)```", DOC, re.S)
    assert len(blocks) == 6
    cli.list_commands(None)  # the installed plugins' commands first, so that teardown removes only the guide's
    before = set(cli.commands)
    guide = {}  # what the blocks define, as a plugin author's package would hold it
    for i, code in enumerate(blocks):
        namespace = dict(guide)
        exec(compile(code, f"docs/plugins.md block {i}", "exec"), namespace)
        hooks = {k: v for k, v in namespace.items() if k.startswith("register_") and guide.get(k) is not v}
        guide.update(namespace)
        register_plugin(types.SimpleNamespace(**hooks), f"doc-plugin-{i}")
        if "register_commands" in hooks:  # the CLI asked its plugins for commands once already
            hooks["register_commands"](cli=cli)
    yield guide
    for name in set(cli.commands) - before:
        cli.commands.pop(name)


def test_the_guides_plugins_train_sample_and_run_their_command(doc_plugins, runner, tmp_path):
    import json

    doc_plugins["test_the_contracts"]()  # the guide's own test of its plugins, through diffkit.testing
    listed = {c["name"]: c for c in json.loads(invoke(runner, "list", "degradations", "--json").output)}
    floor = {o["name"]: o for o in listed["darken"]["options"]}["floor"]
    assert floor == {"name": "floor", "type": "float", "default": 0.1, "help": "fraction of the image left at t = T"}
    run = tmp_path / "run"
    trained = invoke(runner, "train", "-d", "darken", "--network", "tiny", "--steps", 3, "--batch-size", 8,
                     "--device", "cpu", "--out", run)
    assert trained.exit_code == 0, trained.output
    sampled = invoke(runner, "sample", run, "-n", 6, "--sampler", "shrinking-noise", "-o", "noise=0.1",
                     "--out", tmp_path / "s.npz")
    assert sampled.exit_code == 0, sampled.output
    assert Path(tmp_path / "s.npz").exists()
    again = invoke(runner, "sample", run, "-n", 6, "--sampler", "shrinking-noise", "-o", "noise=0.1",
                   "--out", tmp_path / "s2.npz")
    assert again.exit_code == 0, again.output
    import numpy as np
    assert np.array_equal(np.load(tmp_path / "s.npz")["images"], np.load(tmp_path / "s2.npz")["images"])
    conditional = invoke(runner, "train", "-d", "darken", "--network", "tiny", "--conditional", "--steps", 2,
                         "--batch-size", 8, "--device", "cpu", "--out", tmp_path / "cond")
    guided = invoke(runner, "sample", tmp_path / "cond", "-n", 4, "--sampler", "shrinking-noise", "--steps", 5,
                    "--class", 7, "--guidance", 2, "--out", tmp_path / "g.npz")
    assert conditional.exit_code == 0 and guided.exit_code == 0 and "10 NFE, guidance 2" in guided.output, guided.output
    steps = invoke(runner, "steps", run)
    assert steps.exit_code == 0 and steps.output.strip() == "3"
    bad = invoke(runner, "train", "-d", "darken", "-o", "floor=1.5", "--out", tmp_path / "r2")
    assert bad.exit_code == 1 and "floor must be in [0, 1)" in bad.output
    scored = invoke(runner, "evaluate", tmp_path / "s2.npz", "-n", 6, "--features", "pooled", "--json", tmp_path / "m.json")
    assert scored.exit_code == 1 and "6 samples are too few" in scored.output  # the space ran; 6 is below the floor
    more = invoke(runner, "sample", run, "-n", 12, "--out", tmp_path / "s3.npz")
    scored = invoke(runner, "evaluate", tmp_path / "s3.npz", "--features", "pooled", "--json", tmp_path / "m.json")
    assert scored.exit_code == 0 and more.exit_code == 0, scored.output
    assert json.loads((tmp_path / "m.json").read_text())["spaces"][0]["version"] == "pooled-pixels-v1"


def test_the_reliability_page_lists_every_bad_input_case():
    from test_bad_input import CASES

    page = (ROOT / "docs" / "reliability.md").read_text()
    assert page.count("\n| `diffkit ") == len(CASES) and f" {len(CASES)} cases" in page
    missing = [message for _, message in CASES if f"| `{message}` |" not in page]
    assert not missing, missing


def test_the_compare_reference_lists_every_key_and_its_example_reads(tmp_path):
    import dataclasses

    from diffkit.config import RunConfig
    from diffkit_eval import compare, executors

    page = (ROOT / "docs" / "compare.md").read_text()
    keys = {f.name for f in dataclasses.fields(RunConfig)} | set(compare.SETTINGS) | compare.MODEL_KEYS \
        | compare.SAMPLER_KEYS | compare.IMPORTED_KEYS | set(executors.KEYS)
    missing = sorted(k for k in keys if f"| `{k}` |" not in page)
    assert not missing, f"not in docs/compare.md: {missing}"
    example = re.findall(r"```toml\n(.*?)```", page, re.S)[0]
    folder = tmp_path
    (folder / "external" / "ddpm-pytorch").mkdir(parents=True)
    (folder / "c.toml").write_text(example)
    settings, runs, pairs = compare.read_config(folder / "c.toml")
    assert settings["samples"] == 1000 and set(runs) == {"ddpm", "ddpm-seed1", "blur", "blur-seed1", "digits",
                                                         "digits-seed1"}
    assert [p.label for p in pairs if p.model == "digits"] == ["digits / heun-5 w=0", "digits / heun-5 w=1",
                                                               "digits / heun-5 w=2"]


def test_the_readmes_code_runs(tmp_path, monkeypatch, capsys):
    """Every Python block of the README, run as written in an empty folder; its TOML blocks parse."""
    import tomllib

    import os

    readme = (ROOT / "README.md").read_text()
    monkeypatch.setenv("DIFFKIT_DATA", str(Path(os.environ["DIFFKIT_DATA"]).resolve()))  # CI gives a relative path
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) == 2
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md block {i}", "exec"), {})
    fid, nfe = capsys.readouterr().out.strip().splitlines()[-1].rsplit(" ", 1)
    assert float(fid.split(" ± ")[0]) > 0 and nfe == "32"  # heun × 10 in log-SNR, guided: 16 NFE × 2
    assert (tmp_path / "s.npz").exists() and (tmp_path / "runs" / "cond" / "config.json").exists()
    for block in re.findall(r"```toml\n(.*?)```", readme, re.S):
        tomllib.loads(block)


def diffkit_commands(text):
    """The argument lists of every `diffkit` command in a text's bash blocks (after `&&`, through torchrun or
    .venv/bin too); commands elided with `...` are left out."""
    import shlex

    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("#")[0].split("&&"):
                words = shlex.split(part)
                if "-m" in words and "diffkit" in words:  # torchrun ... -m diffkit ARGS
                    words = words[words.index("-m") + 1:]
                if words and words[0].endswith("diffkit") and "..." not in words:
                    found.append(words[1:])
    return found


@pytest.mark.parametrize("page", ["README.md", "docs/report.md", "docs/plugins.md"])
def test_every_diffkit_command_in_the_docs_parses(page):
    """Each command line the docs show names real commands and options with valid values (parsed by the CLI
    itself, not run: many take minutes)."""
    from diffkit.cli import cli

    commands = diffkit_commands((ROOT / page).read_text())
    assert commands
    for args in commands:
        parse(cli, args)
    with pytest.raises(click.UsageError, match="No such option '--colour'"):
        parse(cli, ["train", "--preset", "quick", "--colour", "red", "--out", "run"])


def parse(cli, args):
    """Parse a `diffkit` argument list down to its command, as the CLI would, without running it."""
    ctx, command, rest = click.Context(cli, info_name="diffkit"), cli, list(args)
    while isinstance(command, click.Group):
        name, rest = rest[0], rest[1:]
        command = command.get_command(ctx, name)
        assert command is not None, f"no command {name!r} in {args}"
        ctx = click.Context(command, info_name=name, parent=ctx)
    command.make_context(ctx.info_name, rest, parent=ctx.parent)


def test_the_readme_is_read_in_a_few_screens():
    assert len((ROOT / "README.md").read_text().splitlines()) < 250
