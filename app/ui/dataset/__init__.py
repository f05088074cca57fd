"""The Dataset tab: open a folder, see thumbnails and problems, edit captions and tags, auto-caption."""
