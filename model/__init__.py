"""The animation model (docs/design.md §5): guiders, ReferenceNet + reference attention, the denoising
UNet with AnimateDiff motion modules, public-weight loaders, model folders and inference.

Importing the package is light; the submodules pull in torch, diffusers and transformers.
See docs/model.md.
"""
