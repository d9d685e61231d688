"""`nfc simulate` end to end: reports, inputs (random, arrays, images), saved outputs, compiled
programs, and user errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers_nets import build_net
from onnx import helper
from onnx_builders import make_model, weights
from PIL import Image

from nfc.cli import main
from nfc.inputs import load_image
from nfc.sim.report import compare_outputs


def run_json(capsys, *argv: str) -> dict:
    assert main(["simulate", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def fails(capsys, argv: list[str], message: str) -> str:
    assert main(["simulate", *argv]) == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last.startswith("nfc: error: ") and message in last, err
    assert "Traceback" not in err and err.count("nfc: error") == 1
    return last


@pytest.fixture(scope="module")
def rgb_net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small 3-channel network (input 1x3x8x12, output y 1x10)."""
    folder = tmp_path_factory.mktemp("rgb")
    build_net("conv_pool_linear", folder)
    return folder / "conv_pool_linear.onnx"


@pytest.fixture(scope="module")
def two_in_net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two inputs ``a``, ``b`` (1x2x6x6), two outputs with names unsafe as file names."""
    gen = np.random.default_rng(5)
    nodes = [
        helper.make_node("Add", ["a", "b"], ["s"]),
        helper.make_node("Conv", ["s", "w"], ["out/conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["s"], ["out:relu"]),
    ]
    model = make_model(
        nodes,
        inputs={"a": (1, 2, 6, 6), "b": (1, 2, 6, 6)},
        outputs=("out/conv", "out:relu"),
        inits={"w": weights(gen, 3, 2, 3, 3)},
    )
    path = tmp_path_factory.mktemp("two") / "two.onnx"
    onnx.save(model, path)
    return path


def test_text_report_lenet5(benchmark_dir: Path, capsys):
    assert main(["simulate", str(benchmark_dir / "lenet5.onnx"), "-t", "virtex6", "-i", "random"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("lenet5 on virtex6 (nfc policy, cycle model), input random\n")
    assert "layer" in out and "mem stall" in out and "bp stall" in out and "DRAM rd" in out
    assert "/1/Tanh_output_0" in out and "+ fused /2/AveragePool_output_0" in out
    for part in ("total: 194 passes", "frames/s", "useful GOPS of 163.2 peak", "stalls: memory", "GOPS/W"):
        assert part in out, part
    assert "watts by component: static" in out and "simulated / estimate" in out
    assert "against onnxruntime" in out and "agree (class" in out
    assert "nfc: simulating 194 steps on virtex6" in err


def test_json_report_digits(benchmark_dir: Path, capsys):
    rep = run_json(capsys, str(benchmark_dir / "digits.onnx"), "-t", "tiny", "-i", "random:1")
    assert capsys.readouterr().err == ""  # --json: no progress
    t = rep["totals"]
    assert rep["target"] == "tiny" and rep["model"] == "digits" and rep["input"] == "random:1"
    assert t["cycles"] == sum(lr["cycles"] for lr in rep["layers"]) == sum(p["cycles"] for p in rep["passes"])
    assert t["passes"] == len(rep["passes"]) == sum(lr["passes"] for lr in rep["layers"])
    assert t["host_steps"] == 1 and t["host_layers"] == ["output"]
    assert [lr["where"] for lr in rep["layers"]][-1] == "host"
    assert t["frames_per_s"] == pytest.approx(1e3 / t["latency_ms"])
    assert t["useful_gops"] == pytest.approx(t["grid_ops"] * t["frames_per_s"] / 1e9)
    assert t["stall_cycles"]["configuration"] == t["config_cycles"] > 0
    assert t["cycles"] == t["config_cycles"] + t["stream_cycles"] + t["drain_cycles"]
    assert t["events"]["cycles"] == t["cycles"] and t["estimate_cycles"] > 0
    # busy cycles per operator: the layers' add up to the totals, and no operator is busier than the run
    for unit, n in t["busy"].items():
        assert n == sum(lr.get("busy", {}).get(unit, 0) for lr in rep["layers"]) > 0
        assert 0 < t["busy_share"][unit] <= 1
    assert any(u.startswith("conv:") for u in t["busy"]) and t["events"]["mapper_ops"] == sum(
        n for u, n in t["busy"].items() if u.startswith("map:")
    )
    assert rep["power"]["watts"] > 0 and rep["power"]["gops_per_w"] > 0
    assert rep["power"]["gops"] == pytest.approx(t["useful_gops"])
    assert rep["simulator"]["wall_seconds"] > 0
    (o,) = rep["comparison"]["outputs"]
    assert o["name"] == "output" and o["shape"] == [1, 10] and o["snr_db"] > 20
    assert o["top1"]["agree"] is True


def test_digits_real_image_agrees(benchmark_dir: Path, tmp_path: Path, capsys):
    data = np.load(benchmark_dir / "digits_test.npz")
    x, label = data["X_test"][:4], data["y_test"][:4]
    for i in range(2):  # with and without the batch dimension
        np.save(tmp_path / f"d{i}.npy", x[i] if i else x[i][None])
        rep = run_json(
            capsys, str(benchmark_dir / "digits.onnx"), "-t", "virtex6", "-i", str(tmp_path / f"d{i}.npy")
        )
        (o,) = rep["comparison"]["outputs"]
        assert o["top1"]["agree"] is True and o["top1"]["reference"] == label[i]


def test_random_seed_is_deterministic(benchmark_dir: Path, tmp_path: Path, capsys):
    model = str(benchmark_dir / "face_detector.onnx")
    reps = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        reps.append(run_json(capsys, model, "-i", f"random:{seed}", "--save-outputs", str(tmp_path / name)))
    a, b, c = (np.load(tmp_path / d / "output.npy") for d in "abc")
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert reps[0]["comparison"] == reps[1]["comparison"] != reps[2]["comparison"]
    assert reps[0]["totals"]["cycles"] == reps[2]["totals"]["cycles"]  # timing does not depend on data


def _png(path: Path, size=(20, 14)) -> np.ndarray:
    gen = np.random.default_rng(7)
    pixels = gen.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return pixels


@pytest.mark.parametrize("color", ["rgb", "gray", "yuv"])
def test_image_input(rgb_net: Path, tmp_path: Path, capsys, color):
    _png(tmp_path / "pic.png")
    x = load_image(tmp_path / "pic.png", (1, 3, 8, 12), color)
    assert x.shape == (1, 3, 8, 12) and x.dtype == np.float32  # resized from 20x14 to 12x8
    assert np.allclose(x.mean(axis=(2, 3)), 0, atol=1e-5) and np.allclose(x.std(axis=(2, 3)), 1, atol=1e-4)
    if color == "gray":
        assert np.array_equal(x[0, 0], x[0, 1]) and np.array_equal(x[0, 0], x[0, 2])
    np.save(tmp_path / "pic.npy", x)
    args = ["-t", "tiny", "--color", color, "--save-outputs"]
    rep = run_json(capsys, str(rgb_net), "-i", str(tmp_path / "pic.png"), *args, str(tmp_path / "img"))
    assert rep["input"] == f"{tmp_path / 'pic.png'} (--color {color})"
    run_json(capsys, str(rgb_net), "-i", str(tmp_path / "pic.npy"), *args, str(tmp_path / "npy"))
    assert np.array_equal(np.load(tmp_path / "img" / "y.npy"), np.load(tmp_path / "npy" / "y.npy"))
    assert rep["comparison"]["outputs"][0]["snr_db"] > 20


def test_image_yuv_matches_skimage(tmp_path: Path):
    from skimage.color import rgb2yuv

    pixels = _png(tmp_path / "p.png", (12, 8))  # already the model's size: no resize
    x = load_image(tmp_path / "p.png", (1, 3, 8, 12), "yuv", standardise=False)
    assert np.allclose(x[0].transpose(1, 2, 0), rgb2yuv(pixels), atol=1e-6)
    g = load_image(tmp_path / "p.png", (1, 1, 8, 12), "auto", standardise=False)
    assert np.allclose(g[0, 0], rgb2yuv(pixels)[..., 0], atol=1e-6)


def test_two_inputs_and_save_outputs(two_in_net: Path, tmp_path: Path, capsys):
    b = np.random.default_rng(2).uniform(-1, 1, (2, 6, 6)).astype(np.float32)
    np.save(tmp_path / "b.npy", b)
    out = tmp_path / "outs"
    argv = [str(two_in_net), "-t", "tiny", "-i", "a=random:9", "-i", f"b={tmp_path / 'b.npy'}"]
    rep = run_json(capsys, *argv, "--save-outputs", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["out_conv.npy", "out_relu.npy"]
    assert rep["saved_outputs"] == {
        "out/conv": str(out / "out_conv.npy"),
        "out:relu": str(out / "out_relu.npy"),
    }
    a = np.random.default_rng(9).uniform(-1, 1, (1, 2, 6, 6)).astype(np.float32)
    sess = ort.InferenceSession(str(two_in_net), providers=["CPUExecutionProvider"])
    ref = dict(
        zip(["out/conv", "out:relu"], sess.run(["out/conv", "out:relu"], {"a": a, "b": b[None]}), strict=True)
    )
    for o in rep["comparison"]["outputs"]:
        got = np.load(rep["saved_outputs"][o["name"]])
        assert got.shape == ref[o["name"]].shape and got.dtype == np.float32
        assert float(np.abs(got - ref[o["name"]]).max()) == pytest.approx(o["max_abs_error"])
        noise = float(np.sum((ref[o["name"]].astype(np.float64) - got) ** 2))
        assert o["snr_db"] == pytest.approx(
            10 * math.log10(np.sum(ref[o["name"]].astype(np.float64) ** 2) / noise)
        )
    # one random spec serves both inputs; a single file does not
    assert main(["simulate", str(two_in_net), "-t", "tiny", "-i", "random", "-q", "--no-compare"]) == 0
    capsys.readouterr()
    fails(capsys, [str(two_in_net), "-i", str(tmp_path / "b.npy")], "the model has 2 inputs (a, b)")
    fails(capsys, [str(two_in_net), "-i", "a=random"], "no --input for the model's input b")
    fails(capsys, [str(two_in_net), "-i", "a=random", "-i", "c=random"], "the model has no input 'c'")


def test_compiled_program(benchmark_dir: Path, tmp_path: Path, capsys):
    digits = str(benchmark_dir / "digits.onnx")
    prog = tmp_path / "prog"
    assert main(["compile", digits, "-t", "tiny", "-o", str(prog), "-q"]) == 0
    capsys.readouterr()
    direct = run_json(capsys, digits, "-t", "tiny", "-i", "random:2")
    for where in (prog, prog / "program.nfcp"):
        rep = run_json(capsys, str(where), "--model", digits, "-i", "random:2")
        assert rep["target"] == "tiny" and rep["totals"]["cycles"] == direct["totals"]["cycles"]
        assert [lr["cycles"] for lr in rep["layers"]] == [lr["cycles"] for lr in direct["layers"]]
        assert rep["comparison"] == direct["comparison"]
    # a program without host steps runs alone with --no-compare
    face = benchmark_dir / "face_detector.onnx"
    fprog = tmp_path / "face"
    assert main(["compile", str(face), "-t", "virtex6", "-o", str(fprog), "-q"]) == 0
    capsys.readouterr()
    alone = run_json(capsys, str(fprog), "-i", "random", "--no-compare")
    assert alone["comparison"] is None and alone["layers"][0]["cycles"] > 0
    assert alone["totals"]["cycles"] == sum(lr["cycles"] for lr in alone["layers"])
    assert alone["totals"]["ops_counted"].startswith("2 per useful MAC")
    assert alone["totals"]["cycles"] == run_json(capsys, str(face), "-i", "random")["totals"]["cycles"]
    fails(capsys, [str(fprog), "-i", "random"], "comparing with onnxruntime needs the network: give --model")
    fails(capsys, [str(prog), "-i", "random", "--no-compare"], "has host steps (output)")
    fails(
        capsys,
        [str(prog), "-i", "random", "-t", "virtex6", "--model", digits],
        "compiled for target 'tiny', not 'virtex6'",
    )
    fails(capsys, [str(prog), "-i", "random", "--model", str(face)], "does not match the program")


def test_progress_and_passes(benchmark_dir: Path, capsys):
    argv = ["simulate", str(benchmark_dir / "digits.onnx"), "-t", "tiny", "-i", "random", "--passes", "2"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "pass  kind  layers" in out and "... 340 more passes" in out
    assert "nfc: scheduling (nfc policy)" in err
    assert main([*argv, "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_user_errors(benchmark_dir: Path, tmp_path: Path, capsys):
    digits = str(benchmark_dir / "digits.onnx")
    saved = tmp_path / "saved"
    keep = ["--save-outputs", str(saved)]
    fails(
        capsys, [str(tmp_path / "none.onnx"), "-i", "random", *keep], "none.onnx: no such file or directory"
    )
    fails(
        capsys, [digits, "-i", str(tmp_path / "x.npy"), *keep], "x.npy: no such file; give a .npy/.npz array"
    )
    np.save(tmp_path / "wrong.npy", np.zeros((1, 1, 8, 9), np.float32))
    fails(
        capsys,
        [digits, "-i", str(tmp_path / "wrong.npy"), *keep],
        "an array of shape (1, 1, 8, 9) does not fit the input 'input' of shape (1, 1, 8, 8)",
    )
    fails(
        capsys,
        [digits, "-i", str(benchmark_dir / "digits_test.npz"), *keep],
        "(array 'X_test'): an array of shape (360",
    )
    (tmp_path / "bad.png").write_bytes(b"not a png")
    fails(capsys, [digits, "-i", str(tmp_path / "bad.png"), *keep], "cannot read it as an image")
    _png(tmp_path / "ok.png")
    fails(capsys, [digits, "-i", str(tmp_path / "ok.png"), "--color", "rgb", *keep], "use --color gray")
    fails(capsys, [digits, "-i", "random:x", *keep], "random:SEED needs a whole number SEED, not 'x'")
    fails(capsys, [digits, "-i", "random", "-t", "nope", *keep], "unknown target 'nope'")
    with pytest.raises(SystemExit) as exc:
        main(["simulate", digits, "-i", "random", "--color", "purple"])
    assert exc.value.code == 2 and "invalid choice: 'purple'" in capsys.readouterr().err
    assert not saved.exists()
    (tmp_path / "afile").write_text("x")
    fails(
        capsys,
        [digits, "-i", "random", "--save-outputs", str(tmp_path / "afile")],
        "exists and is not a directory",
    )


def test_compare_outputs_is_plain_json():
    ref = {"logits": np.array([[0.5, 2.0, -1.0]], np.float32), "map": np.ones((1, 2, 3, 3), np.float32)}
    same = compare_outputs(ref, ref)
    json.dumps(same, allow_nan=False)
    for o in same["outputs"]:
        assert o["exact"] is True and o["snr_db"] is None and o["max_abs_error"] == 0.0
    assert same["outputs"][0]["top1"] == {"agree": True, "reference": 1, "simulated": 1}
    assert same["outputs"][1]["top1"] is None
    got = {"logits": np.array([[0.5, 2.0, 2.5]], np.float32), "map": np.full((1, 2, 3, 3), 1.1, np.float32)}
    off = compare_outputs(got, ref)["outputs"]
    assert off[0]["top1"] == {"agree": False, "reference": 1, "simulated": 2}
    assert off[1]["snr_db"] == pytest.approx(20.0) and off[1]["max_abs_error"] == pytest.approx(0.1)
