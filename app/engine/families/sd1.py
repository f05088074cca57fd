"""SD 1.x: CLIP ViT-L text encoder (768 wide), conv proj_in/out."""

from app.core.families import Family
from app.engine.families.base import StableDiffusion, TinyTextEncoder

ENGINE = StableDiffusion(Family.SD1, tiny_text_encoders=(TinyTextEncoder(width=32),))
