"""Bad input, table-driven over every command: exit code ≠ 0, exactly one line on stderr, no traceback, no
bug report from the last-resort handler, and nothing written or changed on disk."""

import json
import shutil
import os
from pathlib import Path

import numpy as np
import pytest

from diffkit.cli import main

from conftest import TINY

TOML = """[compare]
{compare}
[[models]]
name = {name}
network = "cnn"
steps = {steps}
batch_size = {batch}
degradation_options = {{ T = {T} }}
network_options = {{ hidden = [4, 4], time_features = 8 }}
samplers = {samplers}
"""


def toml(compare="samples = 40", name='"m"', steps=2, batch=8, T=10, samplers='[{ name = "ddim", steps = 2 }]'):
    return TOML.format(compare=compare, name=name, steps=steps, batch=batch, T=T, samplers=samplers)


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in args])
    return exited.value.code, capsys.readouterr()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Trained runs and bad files to point the commands at."""
    root = tmp_path_factory.mktemp("world")
    for name, extra in (("run", ["-d", "gaussian", *TINY]),
                        ("cold", ["-d", "blur", "-o", "T=3", "-o", "hidden=4", "-o", "time_features=8", "--batch-size", "8"]),
                        ("cond", ["-d", "blur", "-o", "T=3", "-o", "hidden=4", "-o", "time_features=8", "--batch-size", "8",
                                  "--conditional"])):
        with pytest.raises(SystemExit) as exited:
            main(["train", "--network", "cnn", *extra, "--steps", "2", "--device", "cpu", "--out", str(root / name)])
        assert exited.value.code == 0
    good = np.zeros((20, 28, 28), np.uint8)
    files = {
        "floats.npz": {"images": np.full((20, 28, 28), 0.5, np.float32)},
        "binary.npz": {"images": np.ones((20, 28, 28), np.float64)},
        "complex.npz": {"images": good.astype(np.complex64)},
        "objects.npz": {"images": np.array([None] * 20, dtype=object)},
        "shape.npz": {"images": np.zeros((20, 32, 32), np.uint8)},
        "range.npz": {"images": np.full((20, 28, 28), 300, np.int64)},
        "meta.npz": {"images": good, "meta": np.array("not json")},
        "few.npz": {"images": good[:3]},
        "good.npz": {"images": good},
    }
    for name, arrays in files.items():
        np.savez(root / name, **arrays, allow_pickle=True) if name == "objects.npz" else np.savez(root / name, **arrays)
    data = (root / "good.npz").read_bytes()
    (root / "truncated.npz").write_bytes(data[: len(data) // 2])
    (root / "text.npz").write_text("hello")
    (root / "compile-maybe.toml").write_text('compile = "maybe"\n')
    (root / "precision-16.toml").write_text("precision = 16\n")
    (root / "afile").write_text("x")
    (root / ".blocked.npz.batches").write_text("x")  # where `--out blocked.npz` keeps its finished batches
    (root / "folder.npz").mkdir()
    (root / "folder.png").mkdir()
    (root / "folder.json").mkdir()
    broken = root / "broken"  # a run whose state.json has a wrongly typed config value
    os.system(f"cp -r {root / 'run'} {broken}")
    state_path = broken / "checkpoints" / (broken / "checkpoints" / "latest").read_text().strip() / "state.json"
    state = json.loads(state_path.read_text())
    state["config"]["steps"] = "abc"
    state_path.write_text(json.dumps(state))
    corrupt = root / "corrupt"
    os.system(f"cp -r {root / 'run'} {corrupt}")
    next((corrupt / "checkpoints").glob("step-*/weights.safetensors")).write_bytes(b"garbage")
    nan = root / "nan"
    os.system(f"cp -r {root / 'run'} {nan}")
    from safetensors.torch import load_file, save_file
    weights = next((nan / "checkpoints").glob("step-*/weights.safetensors"))
    tensors = load_file(weights)
    poisoned = {k: v * float("nan") if k.startswith("ema.") and v.is_floating_point() else v for k, v in tensors.items()}
    save_file(poisoned, weights)
    from diffkit.checkpoint import tensors_sha256
    state_file = weights.parent / "state.json"  # a run that trained into NaN records its NaN weights' hash
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), "tensors_sha256": tensors_sha256(poisoned)}))
    for name, text in {"unknown-sampler.toml": toml(samplers='[{ name = "nope" }]'),
                       "name-int.toml": toml(name="123"), "steps-str.toml": toml(steps='"abc"'),
                       "batch-float.toml": toml(batch=4.5), "T-bool.toml": toml(T="true"),
                       "few-samples.toml": toml(compare="samples = 5"), "unknown-key.toml": toml(compare="samples = 40\ncolour = 1"),
                       "duplicate.toml": toml(samplers='[{ name = "ddim", steps = 2 }, { name = "ddim", steps = [2] }]'),
                       "too-many-steps.toml": toml(samplers='[{ name = "ddim", steps = 99 }]'),
                       "bad-option.toml": toml(samplers='[{ name = "ddim", options = { eta = "x" } }]'),
                       "slash-name.toml": toml(name='"../x"'), "syntax.toml": "[compare\nsamples = ",
                       "good.toml": toml(), "sampler-steps-str.toml": toml(samplers='[{ name = "ddim", steps = "2" }]'),
                       "seed-huge.toml": toml(compare="seed = 99999999999"), "lr-nan.toml": toml() + "lr = nan\n",
                       "device.toml": toml(compare='device = "tpu"'),
                       "seeds-str.toml": toml(compare='seeds = "0,1"'), "seeds-twice.toml": toml(compare="seeds = [1, 1]"),
                       "seeds-clash.toml": toml(compare="seeds = [0, 1]") + '\n[[models]]\nname = "m-seed1"\ndegradation = "gaussian"\n',
                       "budgets-zero.toml": toml(compare="samples = 40\nbudgets = [0, 2]"),
                       "features-typo.toml": toml(compare='samples = 40\nfeatures = ["clasifier"]'),
                       "space-option.toml": toml(compare='samples = 40\nspace_options = { classifier = { colour = 1 } }'),
                       "executor-key.toml": toml() + '\n[executor]\ncolour = 1\n',
                       "executor-name.toml": toml() + '\n[executor]\nname = "pbs"\n',
                       "executor-jobs-str.toml": toml() + '\n[executor]\njobs = "2"\n',
                       "ray-train-gpus.toml": toml() + '\n[executor]\nname = "ray"\ntrain_gpus = 2\n',
                       "cold-on-gauss.toml": toml(samplers='[{ name = "cold-naive", steps = 2 }, { name = "direct", options = { x = 1 } }]')}.items():
        (root / name).write_text(text)
    return root


TRAIN = ["train", "-d", "gaussian", "--network", "cnn", *TINY, "--steps", "2", "--device", "cpu"]
CASES = [
    # train: names, options, values, paths
    (TRAIN + ["-d", "nope", "--out", "{new}/r"], "unknown degradation 'nope'"),
    (TRAIN + ["--network", "resnet", "--out", "{new}/r"], "unknown network 'resnet'"),
    (TRAIN + ["-o", "colour=red", "--out", "{new}/r"], "unknown option 'colour'"),
    (TRAIN + ["-o", "T=many", "--out", "{new}/r"], "option T='many': expected int"),
    (TRAIN + ["-o", "schedule=square", "--out", "{new}/r"], "choose one of linear, cosine"),
    (TRAIN + ["-o", "T", "--out", "{new}/r"], "must look like KEY=VALUE"),
    (TRAIN + ["-o", "T=1000000000000", "--out", "{new}/r"], "out of range"),
    (TRAIN + ["-o", "T=0", "--out", "{new}/r"], "T must be between 1 and 100000"),
    (TRAIN + ["-o", "T=200000", "--out", "{new}/r"], "T must be between 1 and 100000"),
    (TRAIN + ["-o", "T=2.5", "--out", "{new}/r"], "expected int"),
    (TRAIN + ["-o", "beta_start=nan", "--out", "{new}/r"], "expected a finite number"),
    (TRAIN + ["-o", "beta_end=inf", "--out", "{new}/r"], "expected a finite number"),
    (TRAIN + ["-o", "hidden=0", "--out", "{new}/r"], "hidden needs 1 to 16 channel counts"),
    (TRAIN + ["-o", "hidden=4,x", "--out", "{new}/r"], "expected int"),
    (TRAIN + ["-o", "kernel_size=4", "--out", "{new}/r"], "kernel_size must be odd"),
    (TRAIN + ["-o", "network.nope=1", "--out", "{new}/r"], "unknown option 'nope'"),
    (["train", "-d", "blur", "--network", "cnn", "-o", "sigma=nan", "--out", "{new}/r"], "expected a finite number"),
    (["train", "-d", "blur", "--network", "cnn", "-o", "sigma=-1", "--out", "{new}/r"], "sigma positive"),
    (["train", "-d", "mask", "--network", "cnn", "-o", "spread=0", "--out", "{new}/r"], "spread must be positive"),
    (["train", "-d", "mask", "--network", "cnn", "-o", "T=5000", "--out", "{new}/r"], "T must be between 1 and 1000"),
    (["train", "-d", "pixelate", "--network", "cnn", "-o", "factor=1", "--out", "{new}/r"], "factor must be above 1"),
    (["train", "--network", "unet", "-o", "base_channels=100000", "--out", "{new}/r"], "base_channels must be in"),
    (["train", "--network", "unet", "-o", "patch_size=3", "--out", "{new}/r"], "not divisible by patch_size"),
    (TRAIN + ["--steps", "0", "--out", "{new}/r"], "steps must be a positive integer, got 0"),
    (TRAIN + ["--batch-size", "-2", "--out", "{new}/r"], "batch-size must be a positive integer, got -2"),
    (TRAIN + ["--batch-size", "1000000", "--out", "{new}/r"], "batch-size must be a positive integer"),
    (TRAIN + ["--lr", "nan", "--out", "{new}/r"], "lr = nan"),
    (TRAIN + ["--lr", "-1", "--out", "{new}/r"], "lr must be positive"),
    (TRAIN + ["--lr", "1e6", "--out", "{new}/r"], "lr must be positive and at most 10"),
    (TRAIN + ["--ema-decay", "1.5", "--out", "{new}/r"], "ema-decay must be in [0, 1)"),
    (TRAIN + ["--seed", "-1", "--out", "{new}/r"], "'--seed': -1 is not in the range 0<=x<=4294967295"),
    (TRAIN + ["--seed", "1000000000000000", "--out", "{new}/r"], "is not in the range 0<=x<=4294967295"),
    (TRAIN + ["--seed", "1e15", "--out", "{new}/r"], "'1e15' is not a valid integer"),
    (TRAIN + ["--steps", "abc", "--out", "{new}/r"], "'abc' is not a valid integer"),
    (TRAIN + ["--precision", "fp64", "--out", "{new}/r"], "'fp64' is not one of"),
    (TRAIN + ["--colour", "red", "--out", "{new}/r"], "No such option '--colour'"),
    (TRAIN, "Missing option '--out'"),
    (TRAIN + ["--preset", "huge", "--out", "{new}/r"], "unknown preset 'huge'"),
    (TRAIN + ["--device", "tpu", "--out", "{new}/r"], "unknown device 'tpu'"),
    (TRAIN + ["--data-root", "{new}/nowhere", "--out", "{new}/r"], "set DIFFKIT_DATA"),
    (TRAIN + ["--out", "{world}/afile"], "is a file"),
    (TRAIN + ["--out", "{world}/afile/run"], "is a file, not a folder"),
    (TRAIN + ["--out", "{world}/run"], "already holds a run"),
    (["train", "--resume", "--out", "{new}/r"], "is not a run directory"),
    (["train", "--resume", "--lr", "0.1", "--out", "{world}/run"], "only --steps may be given"),
    (["train", "--resume", "--steps", "1", "--out", "{world}/run"], "is below the checkpoint's step 2"),
    (["train", "--resume", "--out", "{world}/broken"], "config value steps = 'abc' must be int"),
    # sample
    (["sample", "{new}/missing", "--out", "{new}/s.npz"], "is not a run directory"),
    (["sample", "{world}", "--out", "{new}/s.npz"], "no checkpoint in"),
    (["sample", "{world}/run", "-n", "0", "--out", "{new}/s.npz"], "-n must be a positive integer"),
    (["sample", "{world}/run", "--seed", str(2**63), "--out", "{new}/s.npz"], "is not in the range 0<=x<=4294967295"),
    (["train", "--config", "{world}/compile-maybe.toml", "--out", "{new}/r"], "compile='maybe': expected true or false"),
    (["train", "--config", "{world}/precision-16.toml", "--out", "{new}/r"], "precision must be one of auto, fp32"),
    (["sample", "{world}/run", "--steps", "21", "--out", "{new}/s.npz"], "--steps must be between 1 and T=20"),
    (["sample", "{world}/run", "--steps", "0", "--out", "{new}/s.npz"], "--steps must be between 1 and T=20"),
    (["sample", "{world}/run", "--sampler", "nope", "--out", "{new}/s.npz"], "unknown sampler 'nope'"),
    (["sample", "{world}/run", "--sampler", "ddim", "-o", "eta=-1", "--out", "{new}/s.npz"], "eta must be >= 0"),
    (["sample", "{world}/run", "-o", "colour=1", "--out", "{new}/s.npz"], "unknown option 'colour' for sampler"),
    (["sample", "{world}/cold", "--sampler", "ddim", "--out", "{new}/s.npz"], "does not support degradation 'blur'"),
    (["sample", "{world}/run", "--out", "{new}/s.png"], "--out must be a .npz file"),
    (["sample", "{world}/run", "-n", "10000001", "--out", "{new}/s.npz"], "-n must be a positive integer up to 1,000,000"),
    (["sample", "{world}/run", "--batch-size", "100000000", "--out", "{new}/s.npz"],
     "--batch-size must be a positive integer up to 65,536"),
    (["sample", "{world}/run", "--class", "7", "--out", "{new}/s.npz"], "this one was trained without --conditional"),
    (["sample", "{world}/run", "--guidance", "2", "--out", "{new}/s.npz"], "--guidance needs a class-conditional run"),
    (["sample", "{world}/cond", "--class", "10", "--out", "{new}/s.npz"], "class 10 is not a class of mnist: use 0..9"),
    (["sample", "{world}/cond", "--class", "-1", "--out", "{new}/s.npz"], "class -1 is not a class of mnist"),
    (["sample", "{world}/cond", "--classes", "3,x", "--out", "{new}/s.npz"], "--class must be class numbers like 7"),
    (["sample", "{world}/cond", "--guidance", "-1", "--out", "{new}/s.npz"], "--guidance must be a number in 0..100"),
    (["sample", "{world}/cond", "--guidance", "nan", "--out", "{new}/s.npz"], "--guidance must be a number in 0..100"),
    (["sample", "{world}/cond", "--classes", "none", "--guidance", "1", "--out", "{new}/s.npz"],
     "--guidance needs classes to guide towards"),
    (["train", "--network", "cnn", *TINY, "--conditional", "--cond-dropout", "1", "--out", "{new}/r"],
     "cond-dropout must be in [0, 1), got 1.0"),
    (["train", "--resume", "--conditional", "--out", "{world}/run"], "only --steps may be given"),
    (["evaluate", "{world}/good.npz", "--guidance", "2"], "--guidance applies when SOURCE is a conditional run"),
    (["sample", "{world}/run", "--out", "{world}/folder.npz"], "is a folder"),
    (["sample", "{world}/run", "--out", "{world}/afile/s.npz"], "is a file, not a folder"),
    (["sample", "{world}/run", "--out", "{world}/blocked.npz"], "keeps a sampling's finished batches in a folder"),
    (["sample", "{world}/run", "--out", "{new}/s.npz", "--grid", "{world}/folder.png"], "--grid"),
    (["sample", "{world}/run", "--out", "{new}/s.npz", "--grid", "{new}/g.jpg"], "--grid must be a .png file"),
    (["sample", "{world}/run", "--out", "{new}/s.npz", "--trajectory", "{new}/t.txt"], "--trajectory must be a .png file"),
    (["sample", "{world}/run", "--batch-size", "0", "--out", "{new}/s.npz"], "--batch-size must be a positive integer"),
    (["sample", "{world}/corrupt", "--out", "{new}/s.npz"], "unreadable checkpoint"),
    (["sample", "{world}/broken", "--out", "{new}/s.npz"], "config value steps = 'abc' must be int"),
    (["sample", "{world}/nan", "--out", "{new}/s.npz"], "holds non-finite weights"),
    (["sample", "{world}/run", "--device", "tpu", "--out", "{new}/s.npz"], "unknown device 'tpu'"),
    # degrade
    (["degrade", "-d", "nope", "--grid", "{new}/g.png"], "unknown degradation 'nope'"),
    (["degrade", "-d", "blur", "-n", "100000", "--grid", "{new}/g.png"], "-n must be in 1..1000"),
    (["degrade", "-d", "blur", "--frames", "1", "--grid", "{new}/g.png"], "--frames in 2..1000"),
    (["degrade", "-d", "blur", "--grid", "{world}/folder.png"], "is a folder"),
    (["degrade", "-d", "blur", "--grid", "{new}/g.jpg"], "--grid must be a .png file"),
    (["degrade", "-d", "blur", "-o", "sigma=-1", "--grid", "{new}/g.png"], "sigma positive"),
    (["degrade", "-d", "blur", "-o", "T=true", "--grid", "{new}/g.png"], "expected int"),
    # evaluate
    (["evaluate", "{new}/missing.npz"], "is neither a folder of images nor an .npy/.npz file"),
    (["evaluate", "{new}"], "holds no .png, .jpg or .jpeg images"),
    (["evaluate", "{world}/good.npz", "--range", "0,2"], "--range must be one of 0,1, 0,255, -1,1"),
    (["evaluate", "{world}/good.npz", "--range", "0,1"], "declared --range 0,1"),
    (["evaluate", "{world}/truncated.npz"], "cannot read"),
    (["evaluate", "{world}/text.npz"], "cannot read"),
    (["evaluate", "{world}/objects.npz"], "holds Python objects, which diffkit never unpickles"),
    (["evaluate", "{world}/floats.npz"], "could be in more than one range; say which with --range"),
    (["evaluate", "{world}/binary.npz"], "could be in more than one range; say which with --range"),
    (["evaluate", "{world}/complex.npz"], "images must be integers 0..255 or floats, got complex64"),
    (["evaluate", "{world}/shape.npz"], "takes 28×28 images; these are 32×32"),
    (["evaluate", "{world}/range.npz"], "integer images must be pixels in 0..255"),
    (["evaluate", "{world}/good.npz", "--features", "classifier,nope"], "unknown feature_space 'nope'"),
    (["evaluate", "{world}/good.npz", "--features", "classifier,classifier"], "one or two distinct"),
    (["evaluate", "{world}/good.npz", "--space-option", "weights=x"], "write SPACE.KEY=VALUE"),
    (["evaluate", "{world}/meta.npz"], "'meta' array is not the JSON"),
    (["evaluate", "{world}/few.npz"], "3 samples are too few"),
    (["evaluate", "{world}/good.npz", "--ref", "valid"], "unknown reference split 'valid'"),
    (["evaluate", "{world}/good.npz", "-n", "0"], "-n must be a positive integer"),
    (["evaluate", "{world}/good.npz", "-n", "21"], "-n 21 exceeds the 20 images"),
    (["evaluate", "{world}/good.npz", "--json", "{world}/folder.json"], "is a folder"),
    # compare
    (["compare", "{new}/missing.toml", "--out", "{new}/rep"], "cannot read comparison config"),
    (["compare", "{world}/syntax.toml", "--out", "{new}/rep"], "cannot read comparison config"),
    (["compare", "{world}/unknown-sampler.toml", "--out", "{new}/rep"], "unknown sampler 'nope'"),
    (["compare", "{world}/name-int.toml", "--out", "{new}/rep"], "needs a name of letters"),
    (["compare", "{world}/slash-name.toml", "--out", "{new}/rep"], "needs a name of letters"),
    (["compare", "{world}/steps-str.toml", "--out", "{new}/rep"], "config value steps = 'abc' must be int"),
    (["compare", "{world}/batch-float.toml", "--out", "{new}/rep"], "config value batch_size = 4.5 must be int"),
    (["compare", "{world}/lr-nan.toml", "--out", "{new}/rep"], "config value lr = nan"),
    (["compare", "{world}/T-bool.toml", "--out", "{new}/rep"], "option T=True: expected int"),
    (["compare", "{world}/few-samples.toml", "--out", "{new}/rep"], "samples must be an integer between 10"),
    (["compare", "{world}/seed-huge.toml", "--out", "{new}/rep"], "seed must be an integer"),
    (["compare", "{world}/unknown-key.toml", "--out", "{new}/rep"], "unknown [compare] key 'colour'"),
    (["compare", "{world}/duplicate.toml", "--out", "{new}/rep"], "lists ddim-2 twice with the same options"),
    (["compare", "{world}/too-many-steps.toml", "--out", "{new}/rep"], "--steps must be between 1 and T=10"),
    (["compare", "{world}/sampler-steps-str.toml", "--out", "{new}/rep"], "sampler steps must be integers"),
    (["compare", "{world}/bad-option.toml", "--out", "{new}/rep"], "option eta='x': expected float"),
    (["compare", "{world}/cold-on-gauss.toml", "--out", "{new}/rep"], "unknown option 'x' for sampler 'direct'"),
    (["compare", "{world}/device.toml", "--out", "{new}/rep"], "unknown device 'tpu'"),
    (["compare", "{world}/seeds-str.toml", "--out", "{new}/rep"], "seeds must be a list of distinct integers"),
    (["compare", "{world}/seeds-twice.toml", "--out", "{new}/rep"], "seeds must be a list of distinct integers"),
    (["compare", "{world}/seeds-clash.toml", "--out", "{new}/rep"], "run name 'm-seed1' is used twice"),
    (["compare", "{world}/good.toml", "--out", "{world}/afile"], "is a file"),
    (["compare", "{world}/budgets-zero.toml", "--out", "{new}/rep"], "budgets must be a list of distinct positive step"),
    (["compare", "{world}/features-typo.toml", "--out", "{new}/rep"], "unknown feature_space 'clasifier'"),
    (["compare", "{world}/space-option.toml", "--out", "{new}/rep"], "unknown option 'colour' for feature space 'classifier'"),
    (["compare", "{world}/executor-key.toml", "--out", "{new}/rep"], "unknown [executor] key 'colour'"),
    (["compare", "{world}/executor-name.toml", "--out", "{new}/rep"], "unknown executor 'pbs'"),
    (["compare", "{world}/executor-jobs-str.toml", "--out", "{new}/rep"], "[executor] jobs must be an integer"),
    (["compare", "{world}/ray-train-gpus.toml", "--out", "{new}/rep"], "the ray executor trains a model on one GPU"),
    (["compare", "{world}/good.toml", "--out", "{new}/rep", "--jobs", "0"], "jobs / --jobs must be an integer from 1"),
    # restore
    (["restore", "{world}/cold", "-n", "10", "--steps", "999"], "--steps must be between 1 and T=3, got 999"),
    (["restore", "{world}/cold", "-n", "5"], "-n must be between 10 and 1,000,000"),
    (["restore", "{world}/cold", "--split", "valid"], "unknown split 'valid'"),
    (["restore", "{world}/cold", "-n", "10", "--json", "{world}/folder.json"], "is a folder"),
    (["restore", "{world}/cold", "--sampler", "ddpm"], "does not support degradation 'blur'"),
    # the rest
    (["list", "nothing"], "'nothing' is not one of"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
]


def snapshot(*folders):
    """{path: (size, mtime)} of every file below the folders (the lock file aside: taking it rewrites it)."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for folder in folders for p in Path(folder).rglob("*")
            if p.is_file() and p.name != ".lock"}


def test_a_boolean_written_as_a_string_in_a_config_means_what_it_says(tmp_path):
    """`compile = "false"` is false (Python's bool("false") is True), and every boolean a config can hold is read
    the same strict way."""
    from diffkit.cli import strict_bool
    from diffkit.config import FIELD_TYPES

    assert [strict_bool(v, "compile") for v in (False, "false", "False", "0", "no", True, "true", "1")] == \
        [False] * 5 + [True] * 3
    boolean_fields = [name for name, kinds in FIELD_TYPES.items() if bool in kinds]
    assert boolean_fields == ["conditional", "compile"]  # component options go through the same convert
    from diffkit.config import RunConfig
    from diffkit.errors import DiffkitError

    with pytest.raises(DiffkitError, match="config value conditional = 'false' must be bool"):
        RunConfig(conditional="false")  # refused, never read as Python's bool("false") == True


def test_the_table_is_long_enough():
    assert len(CASES) >= 60


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(c[0][:3]) + f" #{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_a_non_zero_exit_and_writes_nothing(world, tmp_path, capsys, args, message):
    before = snapshot(world, tmp_path)
    code, out = run_cli([a.format(world=world, new=tmp_path) for a in args], capsys)
    lines = out.err.strip().splitlines()
    assert code not in (0, None), out.err
    assert len(lines) == 1, out.err
    assert lines[0].startswith("Error: ") and message in lines[0], lines[0]
    assert "Traceback" not in out.err + out.out and "DIFFKIT_DEBUG" not in lines[0]
    assert snapshot(world, tmp_path) == before  # nothing written, nothing changed


def test_paths_with_rich_markup_are_printed_as_they_are(world, tmp_path, capsys):
    out = tmp_path / "[/x]" / "[bold]s.npz"
    code, printed = run_cli(["sample", world / "run", "-n", 3, "--steps", 2, "--device", "cpu", "--out", out], capsys)
    assert code == 0 and out.exists(), printed.err
    assert str(out) in printed.err.replace("\n", "")


def test_an_unexpected_error_is_one_line_that_says_how_to_see_the_traceback(monkeypatch, tmp_path, capsys):
    import diffkit.run

    monkeypatch.setattr(diffkit.run.Run, "load", classmethod(lambda *a, **k: 1 / 0))
    code, out = run_cli(["sample", tmp_path, "--out", tmp_path / "s.npz"], capsys)
    assert code == 1 and out.err.strip() == ("Error: unexpected ZeroDivisionError: division by zero (a bug in diffkit "
                                             "or a plugin; run with DIFFKIT_DEBUG=1 for the traceback)")


def test_a_corrupt_reference_cache_is_rebuilt(world, capsys):
    from diffkit_eval.reference import cache_dir

    reference = next((cache_dir() / "references").glob("diffkit-mnist-v1-mnist-test-*.safetensors"), None)
    if reference is None:  # first evaluation in this cache: make it
        run_cli(["evaluate", world / "good.npz"], capsys)
        reference = next((cache_dir() / "references").glob("diffkit-mnist-v1-mnist-test-*.safetensors"))
    reference.write_bytes(b"corrupt")
    code, out = run_cli(["evaluate", world / "good.npz"], capsys)
    assert code == 0, out.err
    assert reference.stat().st_size > 1000


def damaged_copy(world, tmp_path, edit_state=None, edit_tensors=None):
    """A copy of the world's run whose newest checkpoint was edited (its tensor hash kept consistent)."""
    from safetensors.torch import load_file, save_file

    from diffkit.checkpoint import tensors_sha256

    run = tmp_path / "damaged"
    shutil.copytree(world / "run", run)
    folder = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    state = json.loads((folder / "state.json").read_text())
    if edit_tensors:
        tensors = edit_tensors(load_file(folder / "weights.safetensors"))
        save_file(tensors, folder / "weights.safetensors")
        state["tensors_sha256"] = tensors_sha256(tensors)
    if edit_state:
        edit_state(state)
    (folder / "state.json").write_text(json.dumps(state))
    return run


@pytest.mark.parametrize("edit_state,edit_tensors,args,message", [
    (lambda s: s.pop("optimizer"), None, ["train", "--resume", "--steps", "4"], "lacks the optimizer state"),
    (lambda s: s.update(train_seconds="abc"), None, ["train", "--resume", "--steps", "4"], "numeric train_seconds"),
    (lambda s: s["config"]["network_options"].update(hidden=[8, 8]), None, ["train", "--resume", "--steps", "4"],
     "does not fit this run's network or optimizer"),
    (None, lambda t: {k: v for k, v in t.items() if not k.startswith("optimizer.0.")}, ["train", "--resume", "--steps",
     "4"], "the optimizer state lacks"),
    (lambda s: s["config"]["network_options"].update(hidden=[4, None]), None, ["config", "show"], "TOML cannot write"),
])
def test_a_damaged_checkpoint_is_one_line(world, tmp_path, capsys, edit_state, edit_tensors, args, message):
    run = damaged_copy(world, tmp_path, edit_state, edit_tensors)
    target = ["--out", run] if args[0] == "train" else [run]
    code, out = run_cli([*args[:1], *([args[1]] if args[0] == "config" else []), *target,
                         *(args[1:] if args[0] == "train" else [])], capsys)
    lines = out.err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and message in lines[0] and "unexpected" not in lines[0], out.err


def test_garbage_in_latest_falls_back_and_runs_shows_damaged_numbers_blank(world, tmp_path, capsys):
    run = damaged_copy(world, tmp_path, lambda s: s.update(train_seconds="abc"))
    (run / "checkpoints" / "latest").write_bytes(bytes(range(200, 256)))
    code, out = run_cli(["sample", run, "-n", 2, "--out", tmp_path / "s.npz"], capsys)
    assert code in (0, None) and "latest names (unreadable)" in " ".join(out.err.split())
    code, out = run_cli(["runs", tmp_path, "--json"], capsys)
    assert code in (0, None) and json.loads(out.out)[0]["train_seconds"] is None


def test_the_python_api_refuses_what_the_command_line_refuses(world, tmp_path):
    import diffkit
    from diffkit.errors import DiffkitError

    with pytest.raises(DiffkitError, match="options must be a dict"):
        diffkit.train(tmp_path / "r", options="T=5")
    with pytest.raises(DiffkitError, match="run_dir must be a path"):
        diffkit.load(None)
    run = diffkit.load(world / "run", device="cpu")
    with pytest.raises(DiffkitError, match="--seed must be an integer"):
        run.sample(2, seed="a")
    with pytest.raises(DiffkitError, match="--seed must be an integer"):
        run.sample(2, seed=2**70)
    samples = run.sample(2)
    with pytest.raises(DiffkitError, match="a .npz file, not .* \\(a folder\\)"):
        samples.save(tmp_path)
    with pytest.raises(DiffkitError, match="takes a Samples, an array or tensor"):
        diffkit.evaluate([samples])


def test_resume_refuses_a_precision_change(world, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(world / "run", run)
    code, out = run_cli(["train", "--out", run, "--resume", "--steps", "3", "--precision", "bf16"], capsys)
    assert code == 1 and "--precision bf16 cannot change it" in out.err and "precision fp32" in out.err
