"""The Generate tab: render pictures from a base model and a mix of adapters."""
