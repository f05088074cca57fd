"""The Library tab: local adapters and the Hugging Face Hub (search, card, download, add to mix)."""
