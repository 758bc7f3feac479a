"""Model folders (model/folder.py) and ``python -m model.init`` on the tiny preset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model import init
from model.components import build_image_encoder, build_unet, build_vae
from model.config import preset_config
from model.folder import load_model_folder, read_model_config, save_model_folder
from model.motion import build_motion_adapter
from tests.model.helpers import conditions, inputs, perturb_, tiny_model
from tests.model.test_motion import expected_diffusers_key, original_checkpoint


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("motion", [False, True])
@torch.no_grad()
def test_round_trip_reproduces_the_model(tmp_path: Path, motion: bool) -> None:
    model = tiny_model(motion=motion, seed=2)
    perturb_(model.guiders, scale=0.05)  # so the guiders' weights matter in the comparison
    folder = save_model_folder(model, tmp_path / "m")
    files = sorted(p.name for p in folder.iterdir())
    expected = {"config.yaml", "unet.safetensors", "reference_unet.safetensors"}
    expected |= {"guiders.safetensors", "vae.safetensors", "image_encoder.safetensors"}
    expected |= {"motion_modules.safetensors"} if motion else set()
    assert set(files) == expected
    assert read_model_config(folder) == model.cfg
    loaded = load_model_folder(folder)
    _same_state(loaded, model)
    x, cond = inputs(1, 2), conditions(1, 2)
    assert torch.equal(loaded(**x, conditions=cond), model(**x, conditions=cond))


def test_parts_carry_the_public_libraries_key_names(tmp_path: Path) -> None:
    model = tiny_model(motion=True)
    folder = save_model_folder(model, tmp_path / "m")
    cfg = model.cfg
    # Each part loads strictly into the stock class on its own.
    build_unet(cfg).load_state_dict(load_file(str(folder / "unet.safetensors")))
    build_unet(cfg).load_state_dict(load_file(str(folder / "reference_unet.safetensors")))
    build_vae(cfg).load_state_dict(load_file(str(folder / "vae.safetensors")))
    build_image_encoder(cfg).load_state_dict(load_file(str(folder / "image_encoder.safetensors")))
    build_motion_adapter(cfg).load_state_dict(load_file(str(folder / "motion_modules.safetensors")))


def test_dtype_on_save_and_on_load(tmp_path: Path) -> None:
    folder = save_model_folder(tiny_model(), tmp_path / "m", dtype=torch.float16)
    assert all(
        t.dtype == torch.float16 for t in load_file(str(folder / "unet.safetensors")).values()
    )
    model = load_model_folder(folder, dtype=torch.float32)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_incomplete_folders_are_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.init"):
        load_model_folder(tmp_path)
    folder = save_model_folder(tiny_model(motion=True), tmp_path / "m")
    (folder / "motion_modules.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"motion_modules\.safetensors"):
        load_model_folder(folder)


def test_init_tiny_is_random_seeded_and_loadable(tmp_path: Path) -> None:
    assert init.main(["--preset", "tiny", "--out", str(tmp_path / "a"), "--seed", "1"]) == 0
    assert init.main(["--preset", "tiny", "--out", str(tmp_path / "b"), "--seed", "1"]) == 0
    assert init.main(["--preset", "tiny", "--out", str(tmp_path / "c"), "--seed", "2"]) == 0
    a, b, c = (load_file(str(tmp_path / n / "unet.safetensors")) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    model = load_model_folder(tmp_path / "a")
    assert model.cfg.preset == "tiny" and not model.cfg.motion.enabled
    # Both UNets start from the same weights.
    _same_state(model.unet, model.reference_unet)


def test_init_stage2_and_overrides(tmp_path: Path) -> None:
    out = tmp_path / "s2"
    argv = [
        "--preset",
        "tiny",
        "--out",
        str(out),
        "--stage",
        "2",
        "guiders.block_out_channels=[4,8,8,16]",
    ]
    assert init.main(argv) == 0
    cfg = read_model_config(out)
    assert cfg.motion.enabled and cfg.guiders.block_out_channels == [4, 8, 8, 16]
    assert type(load_model_folder(out).unet).__name__ == "UNetMotionModel"


def test_init_from_public_format_weights(tmp_path: Path) -> None:
    cfg = preset_config("tiny", motion=True)
    root = tmp_path / "sd"
    torch.manual_seed(11)
    build_unet(cfg).save_pretrained(root / "unet")
    build_vae(cfg).save_pretrained(root / "vae")
    build_image_encoder(cfg).save_pretrained(tmp_path / "variations" / "image_encoder")
    original = original_checkpoint(cfg.unet.block_out_channels, seed=3)
    torch.save(original, tmp_path / "mm.ckpt")
    out = tmp_path / "model"
    argv = ["--preset", "tiny", "--out", str(out), "--unet", str(root), "--vae", str(root)]
    argv += [
        "--image-encoder",
        str(tmp_path / "variations"),
        "--motion-module",
        str(tmp_path / "mm.ckpt"),
    ]
    assert init.main(argv) == 0
    source_unet = load_file(str(root / "unet" / "diffusion_pytorch_model.safetensors"))
    for part in ("unet", "reference_unet"):
        written = load_file(str(out / f"{part}.safetensors"))
        assert written.keys() == source_unet.keys()
        assert all(torch.equal(written[k], source_unet[k]) for k in written), part
    motion = load_file(str(out / "motion_modules.safetensors"))
    assert all(
        torch.equal(motion[expected_diffusers_key(k)], v)
        for k, v in original.items()
        if expected_diffusers_key(k) is not None
    )
    image_encoder = load_file(str(tmp_path / "variations" / "image_encoder" / "model.safetensors"))
    written = load_file(str(out / "image_encoder.safetensors"))
    assert all(torch.equal(written[k], v) for k, v in image_encoder.items())
    cfg_out = read_model_config(out)
    assert cfg_out.weights.unet == str(root) and cfg_out.motion.enabled


def test_assembled_unets_are_separate_copies() -> None:
    model = init.assemble(preset_config("tiny"))
    first = next(model.unet.parameters())
    with torch.no_grad():
        first.add_(1.0)
    assert not torch.equal(first, next(model.reference_unet.parameters()))


def test_sd15_without_weights_says_what_to_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert init.main(["--preset", "sd15", "--out", str(tmp_path / "x")]) == 2
    assert "--unet" in caplog.text and "--image-encoder" in caplog.text
    assert not (tmp_path / "x").exists()
    assert init.main(["--preset", "tiny", "--out", str(tmp_path / "y"), "unet.nope=1"]) == 2
    assert "nope" in caplog.text
