"""SD 2.x: OpenCLIP ViT-H text encoder (1024 wide, pads with "!"), linear proj_in/out.

The 768 px models predict velocity (v-prediction); the trainer reads that from the model's
scheduler config, so nothing here differs for it.
"""

from app.core.families import Family
from app.engine.families.base import StableDiffusion, TinyTextEncoder

ENGINE = StableDiffusion(
    Family.SD2,
    tiny_text_encoders=(TinyTextEncoder(width=48, act="gelu", pad="!"),),
    tiny_unet={"attention_head_dim": (2, 4), "cross_attention_dim": 48, "use_linear_projection": True},
)
