"""The demo catalogue: vocabulary, hidden item attributes and the item text.

Every item has a category, a colour, a pattern and a price tier. Category and tier always show in the text (tier through
wording and price); colour and pattern show in the text only for items with ``mentions_look`` set, so for the rest the
image is the only place they can be read from.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: colour name -> RGB used by the renderer
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 40), "orange": (240, 130, 20), "yellow": (240, 210, 40), "green": (40, 150, 60),
    "teal": (20, 150, 150), "blue": (40, 80, 200), "purple": (120, 50, 160), "pink": (240, 130, 180),
    "brown": (120, 75, 40), "black": (25, 25, 25), "white": (245, 245, 245), "grey": (130, 130, 130),
}
PATTERNS: tuple[str, ...] = ("solid", "stripes", "dots", "checks")
#: how a pattern is written in text (also the words that must never leak into the text of a look-hidden item)
PATTERN_WORDS: dict[str, str] = {"solid": "solid", "stripes": "striped", "dots": "polka-dot", "checks": "checked"}
#: words that tell colour or pattern: the text of an item without ``mentions_look`` holds none of them
LOOK_WORDS: frozenset[str] = frozenset(
    set(COLOURS) | {"gray", "solid", "plain", "stripe", "stripes", "striped", "dot", "dots", "dotted", "polka",
                    "check", "checks", "checked", "checkered", "plaid", "gingham"})
TIERS: tuple[str, ...] = ("budget", "standard", "premium")


@dataclass(frozen=True)
class Category:
    name: str
    department: str
    price: tuple[float, float]  # standard-tier price range
    nouns: tuple[str, ...]
    materials: tuple[str, ...]
    features: tuple[str, ...]
    weight: float = 1.0  # share of the catalogue


CATEGORIES: tuple[Category, ...] = (
    Category("t-shirt", "apparel", (12, 30), ("T-shirt", "tee", "crew-neck tee"),
             ("cotton", "organic cotton", "jersey", "linen blend"),
             ("a relaxed fit", "short sleeves", "a ribbed collar", "a soft hand feel"), 1.6),
    Category("dress", "apparel", (35, 90), ("dress", "midi dress", "summer dress"),
             ("viscose", "cotton poplin", "linen", "crepe"),
             ("a flared skirt", "thin straps", "a fitted waist", "side pockets"), 1.4),
    Category("trousers", "apparel", (30, 80), ("trousers", "chinos", "wide-leg trousers"),
             ("cotton twill", "wool blend", "linen", "corduroy"),
             ("a high waist", "belt loops", "a straight leg", "pressed creases"), 1.3),
    Category("socks", "apparel", (4, 12), ("socks", "ankle socks", "crew socks"),
             ("cotton", "merino wool", "bamboo blend"),
             ("a cushioned sole", "a reinforced heel", "a ribbed cuff"), 0.8),
    Category("hat", "apparel", (15, 45), ("hat", "bucket hat", "sun hat"),
             ("cotton canvas", "straw", "felt", "wool"),
             ("a wide brim", "an inner band", "a packable shape"), 0.8),
    Category("sneakers", "footwear", (45, 120), ("sneakers", "trainers", "low-top sneakers"),
             ("canvas", "leather", "suede", "recycled knit"),
             ("a rubber sole", "padded collar", "flat laces", "a cushioned insole"), 1.2),
    Category("bag", "accessories", (25, 110), ("tote bag", "shoulder bag", "handbag"),
             ("canvas", "leather", "nylon", "jute"),
             ("an inner pocket", "a magnetic clasp", "sturdy handles", "a zip top"), 1.0),
    Category("umbrella", "accessories", (15, 40), ("umbrella", "compact umbrella", "walking umbrella"),
             ("polyester canopy", "fibreglass ribs"),
             ("a wind-resistant frame", "an automatic opener", "a curved handle"), 0.6),
    Category("mug", "home", (8, 22), ("mug", "coffee mug", "tea mug"),
             ("stoneware", "porcelain", "ceramic"),
             ("a 350 ml capacity", "a comfortable handle", "a glazed finish", "dishwasher safety"), 0.9),
    Category("lamp", "home", (30, 120), ("table lamp", "desk lamp", "bedside lamp"),
             ("linen shade", "fabric shade", "paper shade"),
             ("a weighted base", "an E27 fitting", "an inline switch", "a warm glow"), 0.7),
    Category("vase", "home", (18, 60), ("vase", "bud vase", "flower vase"),
             ("glazed ceramic", "stoneware", "earthenware"),
             ("a narrow neck", "a watertight glaze", "a rounded body"), 0.6),
    Category("cushion", "home", (15, 45), ("cushion", "throw pillow", "cushion cover"),
             ("cotton", "velvet", "linen", "wool blend"),
             ("a hidden zip", "a feather-filled insert", "piped edges"), 0.8),
)
CATEGORY_BY_NAME: dict[str, Category] = {c.name: c for c in CATEGORIES}

BRANDS: dict[str, tuple[str, ...]] = {
    "apparel": ("Northwind", "Kestrel", "Maple & Moss", "Urbane", "Fieldnote"),
    "footwear": ("Stride Co", "Pavement", "Kestrel"),
    "accessories": ("Carryall", "Harbour", "Fieldnote"),
    "home": ("Hearth", "Nook & Co", "Kiln Studio", "Lumen"),
}
TIER_WORDS: dict[str, tuple[str, ...]] = {
    "budget": ("basic", "everyday", "value", "simple"),
    "standard": ("classic", "modern", "relaxed", "favourite"),
    "premium": ("premium", "handcrafted", "luxury", "designer"),
}
TIER_PRICE: dict[str, float] = {"budget": 0.55, "standard": 1.0, "premium": 2.1}
CLOSINGS: tuple[str, ...] = ("Easy to care for.", "Made to last.", "A reliable pick for every day.",
                             "Designed in our studio.", "Pairs well with the rest of the range.", "")


@dataclass(frozen=True)
class ItemSpec:
    """One catalogue item with its hidden truth (colour, pattern, tier) and its public record."""

    index: int
    item_id: str
    category: str
    colour: str
    pattern: str
    tier: int  # 0 budget, 1 standard, 2 premium
    popularity: float  # Zipf weight, 1 / rank
    mentions_look: bool  # colour and pattern appear in the text
    render_seed: int
    record: dict[str, object]


def item_id_of(i: int) -> str:
    return f"item-{i:05d}"


def _categories_for(rng: random.Random, n: int) -> list[Category]:
    """Every category at least once (when n allows), the rest by category weight, shuffled."""
    cats = list(CATEGORIES[:n])
    rest = max(0, n - len(cats))
    cats += rng.choices(CATEGORIES, weights=[c.weight for c in CATEGORIES], k=rest)
    rng.shuffle(cats)
    return cats


def _text(rng: random.Random, cat: Category, tier: str, colour: str, pattern: str, mentions_look: bool,
          brand: str, material: str) -> tuple[str, str]:
    noun = rng.choice(cat.nouns)
    adj = rng.choice(TIER_WORDS[tier])
    features = rng.sample(cat.features, k=min(2, len(cat.features)))
    if mentions_look:
        look = f"{PATTERN_WORDS[pattern]} {colour}" if pattern != "solid" else f"{colour}"
        title = f"{brand} {adj} {look} {noun}"
        look_sentence = (f" Comes in {colour} with a {pattern.rstrip('s')} pattern." if pattern != "solid"
                         else f" Comes in solid {colour}.")
    else:
        title = f"{brand} {adj} {noun}"
        look_sentence = ""
    desc = (f"{adj.capitalize()} {noun} in {material} with {features[0]}"
            + (f" and {features[1]}." if len(features) > 1 else ".")
            + look_sentence + (" " + rng.choice(CLOSINGS) if rng.random() < 0.7 else ""))
    return title, desc.strip()


def make_catalog(n_items: int, seed: int, *, look_hidden_share: float = 0.5) -> list[ItemSpec]:
    """``n_items`` items; for about ``look_hidden_share`` of them colour and pattern show only in the image."""
    rng = random.Random(f"recsys-demo-catalog-{seed}")
    cats = _categories_for(rng, n_items)
    ranks = list(range(1, n_items + 1))
    rng.shuffle(ranks)
    colours = list(COLOURS)
    items: list[ItemSpec] = []
    for i, cat in enumerate(cats):
        colour = rng.choice(colours)
        pattern = rng.choices(PATTERNS, weights=(0.4, 0.25, 0.2, 0.15))[0]
        tier = rng.choices((0, 1, 2), weights=(0.3, 0.45, 0.25))[0]
        mentions_look = rng.random() >= look_hidden_share
        brand = rng.choice(BRANDS[cat.department])
        material = rng.choice(cat.materials)
        title, desc = _text(rng, cat, TIERS[tier], colour, pattern, mentions_look, brand, material)
        lo, hi = cat.price
        price = round(rng.uniform(lo, hi) * TIER_PRICE[TIERS[tier]], 0) - 0.01
        item_id = item_id_of(i + 1)
        record: dict[str, object] = {
            "item_id": item_id, "title": title, "description": desc, "category": cat.name,
            "price": max(price, 0.99), "in_stock": rng.random() < 0.92, "image": f"images/{i + 1:05d}.png",
            "brand": brand, "material": material, "department": cat.department,
        }
        if mentions_look:
            record["colour"] = colour
            record["pattern"] = pattern
        items.append(ItemSpec(i, item_id, cat.name, colour, pattern, tier, 1.0 / ranks[i], mentions_look,
                              rng.getrandbits(32), record))
    return items
