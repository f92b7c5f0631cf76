"""The LongAnimation (ICCV 2025) diffusion colorizer.

planning (which frames each segment makes) -> backend (the common backend
contract) -> pipeline (segments: SketchDiT + DGLM steering CogVideoX1.5,
color consistency fusion) -> weights (strict loading of the release layout);
memory_encoder feeds the DGLM, doctor checks a weights folder. Importing this
package imports no torch.
"""
