"""The Generate tab: render pictures from a base model (adapters come later)."""
