"""Stage specs applied to a model: what is loaded, added, trained and frozen.

=========  =====================================  ============================================
stage      loads / adds                           trains (``stage.train``)
=========  =====================================  ============================================
stage 1    ``init_from``: a model folder made     ``unet`` (spatial layers), ``reference_unet``,
           from SD 1.5 by ``python -m model.init`` ``guiders``
stage 2    ``init_from``: the stage-1 export;     ``motion_modules`` only (by default)
           adds AnimateDiff v2 motion modules
           (``stage.motion_module_weights``)
=========  =====================================  ============================================

The VAE and the CLIP image encoder are frozen in every stage. ReferenceNet parameters that
cannot receive a gradient (after its last recorded self-attention input, see
:meth:`model.composed.AnimationModel.unused_reference_parameters`) are frozen too.

``stage.guiders`` removes guiders from ``init_from``'s model (the paper's Table 4 variants):
they leave the module, the optimizer, the loader's work and the export, whose
``guiders.names`` says which the model has. The model's ``geometry`` and ``preprocessing``
record are set to the training data's (:mod:`train.provenance`), so the export tells inference
which masks and which extractors its guiders learned on.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from model.composed import AnimationModel
from model.extractors import same_extractors
from model.folder import load_model_folder
from model.motion import MOTION_KEY, build_motion_adapter
from model.weights import load_motion_adapter
from train.config import StageSpec
from train.provenance import Provenance

log = logging.getLogger(__name__)


def part_of(name: str) -> str:
    """The :data:`train.config.PARTS` entry (or ``vae`` / ``image_encoder``) of a parameter of
    :class:`AnimationModel`."""
    top = name.split(".", 1)[0]
    if top == "unet":
        return "motion_modules" if MOTION_KEY in f".{name}" else "unet"
    return top


def keep_guiders(model: AnimationModel, names: list[str]) -> None:
    """Remove every guider not in ``names`` from ``model`` (its config follows); ``names``
    empty keeps them all. A guider ``model`` does not have cannot be kept."""
    have = model.guiders.names
    if not names:
        return
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(
            f"stage.guiders asks for {missing}, which init_from has not (its guiders: {have}); "
            "a stage can keep or remove guiders, not add them"
        )
    for name in have:
        if name not in names:
            del model.guiders.guiders[name]
    model.cfg.guiders.names = model.guiders.names
    removed = sorted(set(have) - set(names))
    if removed:
        log.info("guiders %s removed: this model is trained without them", removed)


def load_stage_model(init_from: str, stage: StageSpec, data: Provenance) -> AnimationModel:
    """The model a stage starts from: ``init_from`` (any readable model folder: the record of
    the extractors is replaced by the data's) with the stage's guiders, plus motion modules
    when the stage adds them; its geometry and extractor record set to the dataset's (the
    guiders learn on those masks, maps and poses)."""
    model = load_model_folder(init_from, accept_unrecorded=True)
    if model.cfg.geometry != data.geometry:
        log.warning(
            "init_from geometry %s differs from the dataset's %s: training (and the export) "
            "use the dataset's",
            model.cfg.geometry,
            data.geometry,
        )
    old = model.cfg.preprocessing
    if old.recorded and not same_extractors(old, data.record):
        log.warning(
            "init_from %s was trained on data from other extractors (pose %s, depth %s) than "
            "%s (pose %s, depth %s): the export records the new data's",
            init_from,
            old.backends.get("pose", {}).get("name"),
            old.backends.get("depth", {}).get("name"),
            data.record.data,
            data.record.backends.get("pose", {}).get("name"),
            data.record.backends.get("depth", {}).get("name"),
        )
    model.cfg.geometry = data.geometry
    model.cfg.preprocessing = data.record
    keep_guiders(model, stage.guiders)
    if stage.motion_modules and not model.cfg.motion.enabled:
        if stage.motion_module_weights:
            adapter = load_motion_adapter(stage.motion_module_weights, model.cfg)
        else:
            log.warning(
                "stage.motion_module_weights is empty: fresh motion modules with zeroed "
                "outputs (the paper starts stage 2 from AnimateDiff v2, mm_sd_v15_v2.ckpt)"
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(model.cfg.seed)
                adapter = build_motion_adapter(model.cfg)
        model.add_motion_modules(adapter)
        model.cfg.weights.motion_module = stage.motion_module_weights
    model.cfg.weights.init_from = init_from
    return model


def apply_stage(model: AnimationModel, stage: StageSpec) -> list[str]:
    """Set ``requires_grad`` by the stage's parts; returns the trained parameter names."""
    dead = set(model.unused_reference_parameters())
    trained = []
    for name, param in model.named_parameters():
        train = part_of(name) in stage.train and name not in dead
        param.requires_grad_(train)
        if train:
            trained.append(name)
    if not trained:
        raise ValueError(f"stage {stage.name} trains no parameter (stage.train={stage.train})")
    model.vae.eval()
    model.image_encoder.eval()
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            counts[part_of(name)] = counts.get(part_of(name), 0) + param.numel()
    log.info(
        "stage %s trains %s",
        stage.name,
        ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in sorted(counts.items())),
    )
    return trained


class Denoiser(nn.Module):
    """The part of the model DeepSpeed wraps: ReferenceNet, denoising UNet and guiders.

    The frozen VAE and CLIP encoder are not submodules, so DeepSpeed neither partitions nor
    casts them. ``forward`` is :meth:`AnimationModel.forward` on latents and embeddings the
    trainer computed with the frozen encoders beforehand.
    """

    def __init__(self, model: AnimationModel) -> None:
        super().__init__()
        self.reference_unet = model.reference_unet
        self.unet = model.unet
        self.guiders = model.guiders
        object.__setattr__(self, "model", model)  # not a submodule

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self.model(*args, **kwargs)  # type: ignore[operator]
