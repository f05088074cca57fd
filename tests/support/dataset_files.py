"""Generated dataset folders for the tests: good pictures and many kinds of broken ones."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image

from app.core.dataset.problems import ProblemKind


def picture(size=(320, 288), color=(200, 40, 40), mode="RGB") -> Image.Image:
    im = Image.new(mode, size, color)
    # a second colour block so the content is not flat (and hashes differ by colour)
    if mode == "RGB":
        im.paste((color[2], color[0], color[1]), (0, 0, size[0] // 2, size[1] // 2))
    return im


def save(im: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt, **kw)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, side: int = 40000) -> Path:
    """A valid PNG header declaring side×side pixels (1.6 G pixels): Pillow refuses it on open."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )
    return path


def jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def make_good_dataset(
    root: Path, count: int = 3, size=(320, 288), captions: dict[int, str] | None = None, fmt: str = "png"
) -> list[Path]:
    """``count`` distinct pictures img000.<fmt>…; ``captions`` maps an index to its .txt text."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        color = ((37 * i) % 256, (91 * i + 50) % 256, (53 * i + 100) % 256)
        p = save(picture(size, color), root / f"img{i:03d}.{fmt}")
        paths.append(p)
        if captions and i in captions:
            (root / f"img{i:03d}.txt").write_text(captions[i], encoding="utf-8")
    return paths


def make_bad_dataset(root: Path) -> dict[str, ProblemKind | None]:
    """A folder with good files and at least 12 kinds of broken or unusual ones.

    Returns relative path -> the problem kind the scan must report (None: no problem).
    """
    root.mkdir(parents=True, exist_ok=True)
    expect: dict[str, ProblemKind | None] = {}

    save(picture(), root / "good.jpg", quality=90)
    (root / "good.txt").write_text("a red square, solo", encoding="utf-8")
    expect["good.jpg"] = None

    (root / "zero.png").write_bytes(b"")
    expect["zero.png"] = ProblemKind.ZERO_BYTES

    (root / "notes.jpg").write_text("this is a text file, not a picture\n", encoding="utf-8")
    expect["notes.jpg"] = ProblemKind.NOT_AN_IMAGE

    data = jpeg_bytes(picture((400, 400), (10, 200, 30)))
    (root / "cut_jpeg.jpg").write_bytes(data[: len(data) // 2])
    expect["cut_jpeg.jpg"] = ProblemKind.TRUNCATED

    buf = io.BytesIO()
    picture((300, 300), (90, 90, 250)).save(buf, format="PNG")
    (root / "cut_png.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])
    expect["cut_png.png"] = ProblemKind.TRUNCATED

    (root / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage-not-a-chunk" * 8 + png_chunk(b"IEND", b""))
    expect["damaged.png"] = ProblemKind.CORRUPT

    save(picture((120, 90), (1, 2, 3)), root / "tiny.png")
    expect["tiny.png"] = ProblemKind.TOO_SMALL

    bomb_png(root / "bomb.png")
    expect["bomb.png"] = ProblemKind.DECOMPRESSION_BOMB

    save(Image.new("CMYK", (300, 300), (0, 120, 200, 10)), root / "cmyk.jpg")
    expect["cmyk.jpg"] = ProblemKind.UNUSUAL_MODE

    values = bytearray()
    for _y in range(300):
        values += struct.pack("<H", 40000) * 150 + struct.pack("<H", 0) * 150
    sixteen = Image.frombytes("I;16", (300, 300), bytes(values))
    save(sixteen, root / "sixteen.png")
    expect["sixteen.png"] = ProblemKind.UNUSUAL_MODE

    pal = picture((300, 300), (0, 100, 200)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    save(pal, root / "palette.png", transparency=0)
    expect["palette.png"] = ProblemKind.UNUSUAL_MODE

    save(Image.new("RGBA", (300, 300), (255, 0, 0, 128)), root / "alpha.png")
    expect["alpha.png"] = ProblemKind.UNUSUAL_MODE

    rot = picture((400, 300), (220, 220, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    save(rot, root / "rotated.jpg", exif=exif.tobytes())
    expect["rotated.jpg"] = ProblemKind.EXIF_ROTATED

    save(picture((300, 300), (5, 5, 120)), root / "latin1.png")
    (root / "latin1.txt").write_bytes("café, crème brûlée".encode("latin-1"))
    expect["latin1.png"] = ProblemKind.CAPTION_NOT_UTF8

    save(picture((300, 300), (77, 66, 55)), root / "dup_a.png")
    (root / "dup_b.png").write_bytes((root / "dup_a.png").read_bytes())
    expect["dup_a.png"] = None
    expect["dup_b.png"] = ProblemKind.DUPLICATE

    os.symlink(root / "gone-away.jpg", root / "dangling.jpg")
    expect["dangling.jpg"] = ProblemKind.UNREADABLE

    save(picture((300, 300), (150, 0, 150)), root / "really_png.jpg", fmt="PNG")
    expect["really_png.jpg"] = ProblemKind.WRONG_SUFFIX

    save(picture((300, 300), (0, 150, 150)), root / "twin.jpg")
    save(picture((300, 300), (150, 150, 0)), root / "twin.png")
    (root / "twin.txt").write_text("twin", encoding="utf-8")
    expect["twin.jpg"] = ProblemKind.CAPTION_SHARED
    expect["twin.png"] = ProblemKind.CAPTION_SHARED

    frames = [picture((300, 300), (i * 60, 0, 0)) for i in range(3)]
    frames[0].save(root / "anim.webp", save_all=True, append_images=frames[1:], duration=100)
    expect["anim.webp"] = ProblemKind.ANIMATED

    buf = io.BytesIO()
    picture((300, 300), (33, 99, 33)).save(buf, format="WEBP")
    (root / "cut_webp.webp").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    expect["cut_webp.webp"] = ProblemKind.TRUNCATED

    # kohya repeats folder, and a folder whose name ends in .jpg (scanned into, not an image)
    save(picture((300, 300), (1, 250, 1)), root / "10_mychar" / "char.png")
    expect["10_mychar/char.png"] = None
    save(picture((300, 300), (250, 1, 250)), root / "odd.jpg" / "inside.png")
    expect["odd.jpg/inside.png"] = None

    # hidden folders (thumbnail caches, .git) are not part of the dataset
    save(picture((300, 300)), root / ".thumbs" / "hidden.png")
    return expect
