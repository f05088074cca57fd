"""The base-model family table: one frozen ``FamilySpec`` per family, newest last (read through
``app.core.families``, whose lookups and docstring say how the app uses it). Adding a family
is one entry here (CONTRIBUTING.md, "Add a base-model family")."""

from __future__ import annotations

from app.core.family_spec import BlockLayout, Distilled, Family, FamilySpec

_KOHYA_TE, _KOHYA_TE1, _KOHYA_TE2 = "lora_te", "lora_te1", "lora_te2"
_SD_SCHEDULERS = ("Euler", "Euler a", "DPM++ 2M Karras", "DDIM", "UniPC")

# The LoRA Block Weight extension's full block lists (BLOCKID26 and BLOCKID20 of its
# scripts/lora_block_weight.py; "MID" is its M00): BASE is the text encoder(s), INnn / OUTnn the
# UNet's input / output blocks in the original Stability numbering, MID its middle block.
_UNET_BLOCKS_SD = ("BASE", *(f"IN{i:02}" for i in range(12)), "MID", *(f"OUT{i:02}" for i in range(12)))
_UNET_BLOCKS_SDXL = ("BASE", *(f"IN{i:02}" for i in range(9)), "MID", *(f"OUT{i:02}" for i in range(9)))
# Its BLOCKIDFLUX: the text encoders, the input embedders, 19 double and 38 single blocks, the final layer.
_DIT_BLOCKS_FLUX = ("CLIP", "T5", "IN", *(f"D{i:02}" for i in range(19)), *(f"S{i:02}" for i in range(38)), "OUT")
# Qwen-Image's transformer (its original code is diffusers', so one set of names).
_QWEN_ROOTS = ("transformer_blocks.", "img_in.", "txt_in.", "txt_norm.", "time_text_embed.", "norm_out.", "proj_out.")

_ZIMAGE_ROOTS = ("layers.", "noise_refiner.", "context_refiner.", "t_embedder.", "cap_embedder.")

FAMILIES: tuple[FamilySpec, ...] = (
    FamilySpec(
        id=Family.SD1,
        label="SD 1.x",
        base_version="sd_v1",
        base_versions_read=("sd_v1",),
        ss_v2=False,
        architecture="stable-diffusion-v1/lora",
        architecture_v_prediction=None,
        architecture_prefix="stable-diffusion-v1",
        implementation="diffusers",
        text_widths=(768,),
        te_prefixes=(_KOHYA_TE,),
        cross_width=768,
        size_conditioning=False,
        stacked_transformers=False,
        transformer_denoiser=False,
        pipeline_classes=("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
        variants=("sd15",),
        default_steps=20,
        default_size=(512, 512),
        default_guidance=7.0,
        default_scheduler="Euler",
        schedulers=_SD_SCHEDULERS,
        flow_matching=False,
        guidance_distilled=False,
        size_presets=((512, 512), (512, 768), (768, 512)),
        color="#1e88e5",
        hub_bases=(
            "runwayml/stable-diffusion-v1-5",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "CompVis/stable-diffusion-v1-4",
            "CompVis/stable-diffusion-v1-5",
        ),
        hub_name_pattern=r"(stable-diffusion-v?1|sd-?1|v1-5)",
        blocks=_UNET_BLOCKS_SD,
        text_blocks=("BASE",),
        block_layout=BlockLayout.SD_UNET,
    ),
    FamilySpec(
        id=Family.SD2,
        label="SD 2.x",
        base_version="sd_v2",
        base_versions_read=("sd_v2",),
        ss_v2=True,
        architecture="stable-diffusion-v2-512/lora",
        architecture_v_prediction="stable-diffusion-v2-768-v/lora",
        architecture_prefix="stable-diffusion-v2",
        implementation="diffusers",
        text_widths=(1024,),
        te_prefixes=(_KOHYA_TE,),
        cross_width=1024,
        size_conditioning=False,
        stacked_transformers=False,
        transformer_denoiser=False,
        pipeline_classes=("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
        variants=("sd21", "sd21-base"),
        default_steps=20,
        default_size=(512, 512),
        default_guidance=7.0,
        default_scheduler="Euler",
        schedulers=_SD_SCHEDULERS,
        flow_matching=False,
        guidance_distilled=False,
        size_presets=((768, 768), (512, 512)),
        color="#00897b",
        hub_bases=(
            "stabilityai/stable-diffusion-2-1",
            "stabilityai/stable-diffusion-2-1-base",
            "stabilityai/stable-diffusion-2",
            "stabilityai/stable-diffusion-2-base",
        ),
        hub_name_pattern=r"(stable-diffusion-2|sd-?2)",
        blocks=_UNET_BLOCKS_SD,
        text_blocks=("BASE",),
        block_layout=BlockLayout.SD_UNET,
    ),
    FamilySpec(
        id=Family.SDXL,
        label="SDXL",
        base_version="sdxl_base_v1-0",
        base_versions_read=("sdxl_base_v1-0",),
        ss_v2=False,
        architecture="stable-diffusion-xl-v1-base/lora",
        architecture_v_prediction=None,
        architecture_prefix="stable-diffusion-xl",
        implementation="https://github.com/Stability-AI/generative-models",
        text_widths=(768, 1280),
        te_prefixes=(_KOHYA_TE1, _KOHYA_TE2),
        cross_width=2048,
        size_conditioning=True,
        stacked_transformers=True,
        transformer_denoiser=False,
        pipeline_classes=("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"),
        variants=("sdxl",),
        default_steps=20,
        default_size=(1024, 1024),
        default_guidance=7.0,
        default_scheduler="Euler",
        schedulers=_SD_SCHEDULERS,
        flow_matching=False,
        guidance_distilled=False,
        size_presets=((1024, 1024), (832, 1216), (1216, 832), (896, 1152), (1152, 896), (768, 1344)),
        color="#8e24aa",
        hub_bases=("stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-xl-refiner-1.0"),
        # A name word "xl", or sdxl / xl- / -xl, or the SDXL fine-tune lines Pony and Illustrious.
        hub_name_pattern=r"(^|[^a-z0-9])xl([^a-z0-9]|$)|(sdxl|xl[-_]|[-_]xl|pony|illustrious)",
        blocks=_UNET_BLOCKS_SDXL,
        text_blocks=("BASE", "BASE"),
        block_layout=BlockLayout.SD_UNET,
        hub_tags=("stable-diffusion-xl",),
    ),
    FamilySpec(
        id=Family.FLUX1,
        label="Flux.1",
        # sd-scripts' Flux LoRAs (what ComfyUI and Forge load) say "flux1" and "flux-1-dev/lora".
        base_version="flux1",
        base_versions_read=("flux1", "flux", "flux.1"),
        ss_v2=False,
        architecture="flux-1-dev/lora",
        architecture_v_prediction=None,
        architecture_prefix="flux-1",
        implementation="https://github.com/black-forest-labs/flux",
        # CLIP ViT-L (pooled) and T5-XXL; kohya names them lora_te1_ and lora_te3_.
        text_widths=(768, 4096),
        te_prefixes=(_KOHYA_TE1, "lora_te3"),
        cross_width=4096,  # joint attention reads the T5 features
        size_conditioning=False,
        stacked_transformers=False,
        transformer_denoiser=True,
        pipeline_classes=("FluxPipeline", "FluxImg2ImgPipeline"),
        variants=("flux1-dev", "flux1-schnell"),
        default_steps=28,  # [dev]; [schnell] is distilled to 4 steps without guidance
        default_size=(1024, 1024),
        default_guidance=3.5,  # the distilled guidance [dev] was trained with, not CFG
        default_scheduler="Euler",  # flow-matching Euler
        # Flow-matching Euler, its stochastic form and UniPC in flow mode; Karras sigmas on a flow
        # turn NaN and DDIM has no flow form (checked on the tiny Flux).
        schedulers=("Euler", "Euler a", "UniPC"),
        flow_matching=True,
        guidance_distilled=True,
        size_presets=((1024, 1024), (832, 1216), (1216, 832), (896, 1152), (1152, 896), (768, 1344), (1344, 768)),
        color="#f4511e",
        hub_bases=("black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-schnell"),
        hub_name_pattern=r"flux",
        blocks=_DIT_BLOCKS_FLUX,
        text_blocks=("CLIP", "T5"),
        block_layout=BlockLayout.FLUX_DIT,
        hub_tags=("flux",),
        original_roots=(
            "double_blocks.",
            "single_blocks.",
            "final_layer.",
            "img_in.",
            "txt_in.",
            "time_in.",
            "vector_in.",
            "guidance_in.",
        ),  # fmt: skip
        diffusers_roots=(
            "transformer_blocks.",
            "single_transformer_blocks.",
            "x_embedder.",
            "context_embedder.",
            "norm_out.",
        ),  # fmt: skip
        adapter_markers=(r"(^|[._])(double_blocks|single_blocks|single_transformer_blocks)[._]",),
        # FLUX.1 [schnell]: 4 steps, no guidance embedding (its transformer config says
        # guidance_embeds = false), T5 prompts of 256 tokens.
        distilled=Distilled(
            label="Flux.1 [schnell]", steps=4, guidance=0.0, hub_base="black-forest-labs/FLUX.1-schnell"
        ),
    ),
    FamilySpec(
        id=Family.CHROMA,
        label="Chroma",
        # sd-scripts (library/flux_utils.py MODEL_VERSION_CHROMA, library/sai_model_spec.py
        # ARCH_FLUX_1_CHROMA / IMPL_CHROMA) write "chroma" and "chroma/lora".
        base_version="chroma",
        base_versions_read=("chroma",),
        ss_v2=False,
        architecture="chroma/lora",
        architecture_v_prediction=None,
        architecture_prefix="chroma/",  # not sd-scripts' "chroma-radiance" (a pixel-space model)
        implementation="https://huggingface.co/lodestones/Chroma",
        text_widths=(4096,),  # T5-XXL only (no CLIP); sd-scripts names it lora_te3_ as for Flux.1
        te_prefixes=("lora_te3",),
        cross_width=4096,
        size_conditioning=False,
        stacked_transformers=False,
        transformer_denoiser=True,
        pipeline_classes=("ChromaPipeline", "ChromaImg2ImgPipeline", "ChromaInpaintPipeline"),
        variants=("chroma1-hd",),
        default_steps=35,  # ChromaPipeline.__call__'s defaults: 35 steps, real CFG 5.0
        default_size=(1024, 1024),
        default_guidance=5.0,
        default_scheduler="Euler",
        schedulers=("Euler", "Euler a", "UniPC"),
        flow_matching=True,
        guidance_distilled=False,  # de-distilled from [schnell]: classifier-free guidance with a negative prompt
        size_presets=((1024, 1024), (832, 1216), (1216, 832), (896, 1152), (1152, 896), (768, 1344), (1344, 768)),
        color="#d81b60",
        hub_bases=("lodestones/Chroma1-HD", "lodestones/Chroma1-Base", "lodestones/Chroma"),
        hub_name_pattern=r"chroma",
        blocks=(),
        text_blocks=(),
        block_layout=BlockLayout.NONE,
        hub_tags=("chroma",),
        # BFL's Flux names without the modulation layers, plus the approximator that replaces them.
        original_roots=(
            "double_blocks.",
            "single_blocks.",
            "final_layer.",
            "img_in.",
            "txt_in.",
            "distilled_guidance_layer.",
        ),
        diffusers_roots=(
            "transformer_blocks.",
            "single_transformer_blocks.",
            "x_embedder.",
            "context_embedder.",
            "distilled_guidance_layer.",
        ),  # fmt: skip
        adapter_markers=(r"(^|[._])distilled_guidance_layer[._]",),
        looks_like=Family.FLUX1,
        checkpoint_marker="distilled_guidance_layer.in_proj.bias",  # diffusers' CHECKPOINT_KEY_NAMES["chroma"]
    ),
    FamilySpec(
        id=Family.QWENIMAGE,
        label="Qwen-Image",
        # musubi-tuner writes modelspec "Qwen-Image/lora" (implementation QwenLM/Qwen-Image);
        # ai-toolkit's and musubi's files say ss_base_model_version "qwen_image".
        base_version="qwen_image",
        base_versions_read=("qwen_image", "qwen-image", "qwenimage"),
        ss_v2=False,
        architecture="Qwen-Image/lora",
        architecture_v_prediction=None,
        architecture_prefix="Qwen-Image",
        implementation="https://github.com/QwenLM/Qwen-Image",
        # Qwen2.5-VL-7B-Instruct's language model (never trained here; kohya prefix for completeness).
        text_widths=(3584,),
        te_prefixes=("lora_te",),
        cross_width=3584,  # the transformer's txt_in reads the Qwen2.5-VL features
        size_conditioning=False,
        stacked_transformers=False,
        transformer_denoiser=True,
        pipeline_classes=("QwenImagePipeline", "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline"),
        variants=("qwen-image",),
        default_steps=50,  # QwenImagePipeline's default
        default_size=(1328, 1328),  # Qwen's own 1:1 size (the model card's aspect-ratio table)
        default_guidance=4.0,  # true_cfg_scale: real classifier-free guidance with a negative prompt
        default_scheduler="Euler",
        schedulers=("Euler", "Euler a", "UniPC"),
        flow_matching=True,
        guidance_distilled=False,
        # The model card's sizes: 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3.
        size_presets=((1328, 1328), (1664, 928), (928, 1664), (1472, 1140), (1140, 1472), (1584, 1056), (1056, 1584)),
        color="#5e35b1",
        hub_bases=("Qwen/Qwen-Image",),
        hub_name_pattern=r"qwen[-_ ]?image",
        blocks=(),
        text_blocks=(),
        block_layout=BlockLayout.NONE,
        hub_tags=("qwen-image",),
        # Qwen-Image's original code is diffusers': kohya / ComfyUI files use the same paths.
        original_roots=_QWEN_ROOTS,
        diffusers_roots=_QWEN_ROOTS,
        # Its blocks' own layer names (img_mod / txt_mlp…), or a block index past SD 3.5 large's 38.
        adapter_markers=(
            r"(^|[._])transformer_blocks[._]\d+[._](img|txt)_(mod|mlp)[._]",
            r"(^|[._])transformer_blocks[._](3[89]|[45]\d)[._]",
        ),
    ),
    FamilySpec(
        id=Family.SD3,
        label="SD 3.x",  # SD 3 Medium and SD 3.5 Medium / Large / Large Turbo
        # sd-scripts' sd3_train_network.py writes the MMDiT's model type as ss_base_model_version
        # ("5-large", "5-medium", "medium" for SD 3 Medium) and "stable-diffusion-3-" + it as the
        # modelspec architecture (sai_model_spec.py); the engine writes the one of the trained model.
        base_version="5-large",
        base_versions_read=("5-large", "5-medium", "medium", "sd3", "sd3.5"),
        ss_v2=False,
        architecture="stable-diffusion-3-5-large/lora",
        architecture_v_prediction=None,
        architecture_prefix="stable-diffusion-3",
        implementation="https://github.com/Stability-AI/sd3.5",
        # CLIP ViT-L and OpenCLIP ViT-bigG (kohya lora_te1_ / lora_te2_); T5-XXL (lora_te3_) is
        # not trained by LoRA tools and not read here.
        text_widths=(768, 1280),
        te_prefixes=(_KOHYA_TE1, _KOHYA_TE2),
        cross_width=4096,  # joint attention reads the T5 features (CLIP's padded to 4096)
        size_conditioning=False,
        stacked_transformers=False,
        transformer_denoiser=True,
        pipeline_classes=("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline"),
        variants=("sd35-medium", "sd35-large"),
        # SD 3.5 Large's model card: 28 steps, CFG 3.5 (Medium's: 40 steps, CFG 4.5).
        default_steps=28,
        default_size=(1024, 1024),
        default_guidance=3.5,  # real classifier-free guidance, with a negative prompt
        default_scheduler="Euler",  # flow-matching Euler with the fixed shift 3.0
        schedulers=("Euler", "Euler a", "UniPC"),
        flow_matching=True,
        guidance_distilled=False,
        size_presets=((1024, 1024), (832, 1216), (1216, 832), (896, 1152), (1152, 896), (768, 1344), (1344, 768)),
        color="#3949ab",
        hub_bases=(
            "stabilityai/stable-diffusion-3.5-large",
            "stabilityai/stable-diffusion-3.5-medium",
            "stabilityai/stable-diffusion-3.5-large-turbo",
            "stabilityai/stable-diffusion-3-medium-diffusers",
            "stabilityai/stable-diffusion-3-medium",
        ),
        hub_name_pattern=r"(sd-?3|stable-diffusion-3|sd35)",
        blocks=(),
        text_blocks=(),
        block_layout=BlockLayout.NONE,
        hub_tags=("sd3", "sd3.5", "stable-diffusion-3"),
        # Stability's MMDiT code (sd-scripts' lora_unet_…, ComfyUI's diffusion_model.…).
        original_roots=(
            "joint_blocks.",
            "x_embedder.",
            "t_embedder.",
            "y_embedder.",
            "context_embedder.",
            "final_layer.",
        ),  # fmt: skip
        diffusers_roots=(
            "transformer_blocks.",
            "pos_embed.",
            "context_embedder.",
            "time_text_embed.",
            "norm_out.",
            "proj_out.",
        ),  # fmt: skip
        # diffusers' names of an SD 3 block are Flux's double block's; SD 3's own are Stability's
        # joint_blocks / x_block / context_block, 3.5 Medium's dual attention (attn2 directly in a
        # top-level transformer block) and blocks 19 and up (Flux has 19 double blocks, 0-18).
        # A diffusers-named file on blocks 0-18 only, without attn2, stays Flux's.
        adapter_markers=(
            r"(^|[._])(joint_blocks|x_block|context_block)[._]",
            r"^(transformer[._]|base_model[._]model[._]|lora_transformer_|lycoris_)?transformer_blocks[._]\d+[._]attn2[._]",
            r"^(transformer[._]|base_model[._]model[._]|lora_transformer_|lycoris_)?transformer_blocks[._](19|[2-9]\d)[._]",
        ),
    ),
    FamilySpec(
        id=Family.ZIMAGE,
        label="Z-Image",
        # musubi-tuner (utils/sai_model_spec.py) writes modelspec.architecture "Z-Image/lora" and this
        # implementation URL; its architecture id "z_image" (short "zi") is our ss_base_model_version.
        base_version="z_image",
        base_versions_read=("z_image", "zimage", "zi", "z-image", "z_image_turbo", "zimage_turbo"),
        ss_v2=False,
        architecture="Z-Image/lora",
        architecture_v_prediction=None,
        architecture_prefix="Z-Image",
        implementation="https://github.com/Tongyi-MAI/Z-Image",
        text_widths=(2560,),  # Qwen3-4B (its second-to-last hidden state); frozen
        te_prefixes=(_KOHYA_TE,),
        cross_width=2560,  # cap_embedder reads the Qwen3 features
        size_conditioning=False,
        stacked_transformers=False,
        transformer_denoiser=True,
        pipeline_classes=("ZImagePipeline", "ZImageImg2ImgPipeline"),
        variants=("zimage-turbo", "zimage"),
        # Z-Image (the base): 50 steps, real CFG 4 with a negative prompt (its model card); Turbo below.
        default_steps=50,
        default_size=(1024, 1024),
        default_guidance=4.0,
        default_scheduler="Euler",
        schedulers=("Euler", "Euler a", "UniPC"),
        flow_matching=True,
        guidance_distilled=False,  # classifier-free guidance and a negative prompt
        size_presets=((1024, 1024), (1152, 896), (896, 1152), (1248, 832), (832, 1248), (1280, 720), (720, 1280)),
        color="#6d4c41",
        hub_bases=("Tongyi-MAI/Z-Image-Turbo", "Tongyi-MAI/Z-Image"),
        hub_name_pattern=r"z[-_ ]?image",
        blocks=(),
        text_blocks=(),
        block_layout=BlockLayout.NONE,
        hub_tags=("z-image", "z-image-turbo"),
        # The original code's (and ComfyUI's) top-level modules, then ZImageTransformer2DModel's.
        original_roots=(*_ZIMAGE_ROOTS, "x_embedder.", "final_layer."),
        diffusers_roots=(*_ZIMAGE_ROOTS, "all_x_embedder.", "all_final_layer."),
        # The refiners are Z-Image's own; its main blocks are layers.N.attention / feed_forward (text
        # encoders' are self_attn / mlp), with any layout's separator.
        adapter_markers=(
            r"(^|[._])(noise|context)_refiner[._]\d",
            r"(^|[._])layers[._]\d+[._](attention[._](to_[qkv]|to_out|qkv|out)|feed_forward[._]w[123])([._]|$)",
        ),
        # Z-Image-Turbo: 8 steps (8 transformer calls since diffusers 0.37), guidance 0 (no CFG).
        distilled=Distilled(label="Z-Image-Turbo", steps=8, guidance=0.0, hub_base="Tongyi-MAI/Z-Image-Turbo"),
    ),
)
