"""The LongAnimation (ICCV 2025) diffusion colorizer.

planning (which frames each segment makes) -> backend (the common backend
contract) -> pipeline (segments: SketchDiT + DGLM steering CogVideoX1.5,
color consistency fusion) -> weights (strict loading of the release layout).
resolution maps frames to the trained size and back; lineart_network turns
every frame into the sketch the model was trained on; the DGLM's memory is
Video-XL's key/value cache (videoxl_config, videoxl) over frames kept by
memory_store, wired in memory_encoder; residency decides which parts sit on the
GPU in each phase (offload=model) and moves them between phases; doctor checks a
weights folder. Importing this package imports no torch.
"""
