"""A dataset folder: scanning it (scan, image_check, problems, exclusions), its captions (captions,
caption_store, tag_ops, caption_config for auto-captioning), and finding and reporting what is in it
(filter, report)."""
