"""The deterministic seed catalogue and its images.

The same seed gives the same shops, items and tracks on every first start, and every image is
drawn from its id (no files, no network), so two mocks started from scratch serve identical
catalogues and tests can name `item1` or `track3`.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

import attr


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SeedShop:
    shop_id: str
    name: str
    description: str
    currency: str
    items: tuple[tuple[str, int], ...]  # (title, price in minor units)


SHOPS: tuple[SeedShop, ...] = (
    SeedShop(
        "teahouse",
        "West Lake Tea House",
        "Green and oolong teas from Hangzhou",
        "CNY",
        (
            ("Longjing Green Tea 250g", 16800),
            ("Tieguanyin Oolong 200g", 12800),
            ("Jasmine Pearls 100g", 8800),
            ("Pu'er Cake 357g", 25800),
            ("Celadon Teacup", 6900),
            ("Bamboo Tea Tray", 19900),
            ("Gaiwan Set", 15900),
        ),
    ),
    SeedShop(
        "bookworm",
        "Bookworm Books",
        "Novels, poetry and comics",
        "CNY",
        (
            ("The Three-Body Problem", 9350),
            ("Fortress Besieged", 4200),
            ("Tang Poems, Illustrated", 6800),
            ("Calligraphy Workbook", 2900),
            ("Journey to the West (4 vols)", 19800),
            ("Hangzhou City Guide", 5600),
            ("Linen Bookmark Set", 1500),
        ),
    ),
    SeedShop(
        "stationery",
        "Tokyo Stationery",
        "Pens, notebooks and paper from Japan",
        "JPY",
        (
            ("Fountain Pen, Fine Nib", 3300),
            ("Dot Grid Notebook A5", 1650),
            ("Washi Tape Set", 880),
            ("Brass Pencil Sharpener", 1320),
            ("Letter Paper Pad", 770),
            ("Ink Bottle, Blue-Black", 1100),
        ),
    ),
)

# (title, artist, album, duration in ms)
TRACKS: tuple[tuple[str, str, str, int], ...] = (
    ("Moonlight over the Lotus Pond", "Lin Qing", "Lake Songs", 214000),
    ("Rain on Bamboo", "Lin Qing", "Lake Songs", 187000),
    ("Night Market", "The Hutong Band", "City Lights", 201000),
    ("Slow Train to Suzhou", "The Hutong Band", "City Lights", 245000),
    ("Paper Lanterns", "Mei & the Kites", "Festival", 176000),
    ("Kite Season", "Mei & the Kites", "Festival", 193000),
    ("Tea for Two Strangers", "Zhang Wei Trio", "Jade", 268000),
    ("Jade Mountain", "Zhang Wei Trio", "Jade", 302000),
    ("Last Ferry", "Harbour Lights", "Crossings", 229000),
    ("Morning Dumplings", "Harbour Lights", "Crossings", 158000),
)


def item_id(n: int) -> str:
    return f"item{n}"


def track_id(n: int) -> str:
    return f"track{n}"


# --- images ---------------------------------------------------------------------------------

IMAGE_SIZE = 64
IMAGE_KINDS = ("shop", "item", "track")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_for(kind: str, ident: str) -> bytes:
    """A small PNG drawn from `kind/ident` alone: a colour field with diagonal bands in a second
    colour (tracks get rings, like a record), so each card has a distinct, stable picture."""
    digest = hashlib.sha256(f"{kind}/{ident}".encode()).digest()
    bg, fg = digest[0:3], digest[3:6]
    band = 4 + digest[6] % 8
    size = IMAGE_SIZE
    rows = []
    for y in range(size):
        row = bytearray(b"\x00")  # filter type: none
        for x in range(size):
            if kind == "track":
                dx, dy = x - size // 2, y - size // 2
                on = int((dx * dx + dy * dy) ** 0.5) // band % 2 == 0
            else:
                on = (x + y) // band % 2 == 0
            row += fg if on else bg
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + _chunk(b"IEND", b"")
    )
