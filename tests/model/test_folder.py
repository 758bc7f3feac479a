"""Model folders (model/folder.py) and ``python -m model.init`` on the tiny preset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from model import animate, init
from model import folder as folder_module
from model.components import build_image_encoder, build_unet, build_vae
from model.config import preset_config
from model.folder import (
    MODEL_FORMAT_VERSION,
    ModelFormatError,
    load_model_folder,
    read_model_config,
    save_model_folder,
)
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


def _set_version(folder: Path, version: object) -> None:
    """Rewrite the folder's config.yaml with ``format_version`` set (None: removed)."""
    path = folder / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data.pop("format_version")
    if version is not None:
        data = {"format_version": version, **data}
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_folders_record_their_format_version(tmp_path: Path) -> None:
    folder = save_model_folder(tiny_model(), tmp_path / "m")
    first = (folder / "config.yaml").read_text().splitlines()[0]
    assert first == f"format_version: {MODEL_FORMAT_VERSION}" and MODEL_FORMAT_VERSION == 2
    assert read_model_config(folder) == tiny_model().cfg


@pytest.mark.parametrize(
    ("version", "says"),
    [
        (None, ["no format_version", "python -m model.init", "re-export", "--resume"]),
        (0, ["format version 0 is older", "python -m model.init", "re-export"]),
        (
            1,
            [
                "version 1 does not record which pose and depth",
                "re-export",
                "--resume",
                "accept_unrecorded=true",
                "--accept-unrecorded",
            ],
        ),
        (3, ["format version 3 is newer", "upgrade mcanim"]),
        ("one", ["'one' is not a number"]),
    ],
)
def test_other_format_versions_are_refused_with_what_to_do(
    tmp_path: Path, version: object, says: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    folder = save_model_folder(tiny_model(), tmp_path / "m")
    _set_version(folder, version)
    for read in (read_model_config, load_model_folder):
        with pytest.raises(ModelFormatError) as info:
            read(folder)
        message = str(info.value)
        assert str(folder) in message, message
        assert "this code reads model folder format version 2" in message, message
        for text in says:
            assert text in message, (text, message)
    # The entry points turn it into a clear error (exit 2), not a traceback.
    argv = ["--checkpoint", str(folder), "--reference", "r.png", "--driving", "d.npy"]
    assert animate.main([*argv, "--out", str(tmp_path / "o.mp4")]) == 2
    assert "model folder format version 2" in caplog.text


def test_a_failed_write_leaves_the_old_folder_and_no_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = save_model_folder(tiny_model(seed=1), tmp_path / "m")
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    calls = []

    def failing_save(
        tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None = None
    ) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        save_file(tensors, path, metadata=metadata)

    save_file = folder_module.save_file
    monkeypatch.setattr(folder_module, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_model_folder(tiny_model(seed=2), tmp_path / "m")
    assert [p.name for p in tmp_path.iterdir()] == ["m"], "a temporary folder was left"
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before


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
