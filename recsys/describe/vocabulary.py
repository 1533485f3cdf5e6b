"""Description vocabularies: which facets to read from an image, and how to word them (one file per domain).

A vocabulary is a TOML or JSON file::

    name = "hm"
    sentence = "{colour} {pattern} {garment} {material}"   # facets left out leave no trace
    min_confidence = 0.25                                    # default for every facet

    [facets.colour]
    labels = ["black", "white", "red", ...]

    [facets.pattern]
    labels = ["solid", "striped", ...]
    omit = ["solid"]                     # labels that are scored but add nothing to the sentence
    words = { stripe = "striped" }       # how a label is written in the sentence (default: as it is)

    [facets.garment]
    labels = ["dress", "t-shirt", ...]
    fallback = "garment"                 # written when no label is confident (keeps a noun in the sentence)

    [facets.material]
    labels = ["denim", "knit", ...]
    phrase = "in {}"                     # how a label is worded in the sentence
    prompt = "{}"                        # how a label is put to the text encoder
    field = "attributes.material"        # optional: other items' values of this field are labels too (their
                                         # image neighbours vote; see recsys.describe.transfer)
    probe_weight = 0.5                   # optional, with a field: share of a probe fitted on those items' tower
    probe_features = ["stages", "colour"]  # features (recsys.describe.probe); blocks of the lite towers, "pixels"
    probe_hidden = 512                   # optional: a hidden layer of that width (0: softmax regression)

``neighbours = 30`` (top level; 0: zero-shot only) and ``neighbour_weight = 0.5`` set the vote of facets with a
field.

A label is written when its score reaches ``min_confidence`` and, but where that is 0 ("always the best label"),
beats the facet's uniform share by a quarter (:data:`CHANCE_LIFT`): a facet of n labels scores at least 1/n, so with
few labels ``min_confidence`` alone never held a guess back. A facet needs two labels or more (at most
:data:`MAX_LABELS`); ``omit`` and ``words`` name labels, labels differ in more than case (and in more than "/", "-",
"_" and spaces, as field values are compared), the sentence has no brace outside its ``{facet}`` slots, ``fallback``
and ``words`` are written as they are (no brace; a word is not empty: ``omit`` leaves a label out),
``probe_features`` and ``probe_hidden`` come with ``probe_weight`` (which needs a ``field``), and a key not shown
above is refused with the nearest known one. YAML is not read: write TOML or JSON.

Facets not named in ``sentence`` are still scored and stored with the description's facets. The shipped ones live in
``recsys/describe/vocabularies/`` and are named by their file stem (``generic``, ``hm``).
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.encoders.tagging import MAX_LABELS as MAX_LABELS  # shared with `items tag`, which sits inward
from recsys.encoders.tagging import SHIPPED, check_two, facet_labels, no_repeats
from recsys.errors import ValidationFailed

DEFAULT = "generic"
DEFAULT_MIN_CONFIDENCE = 0.25
DEFAULT_NEIGHBOURS = 30
DEFAULT_NEIGHBOUR_WEIGHT = 0.5
"""Measured on H&M held out: k in (10, 30) x weight in (0.5, 0.7, 1.0); 30 and 0.5 were best for colour and type."""
_SLOT = re.compile(r"\{(\w+)\}")
CHANCE_LIFT = 1.25
"""A label's score must reach this many times 1/n (its facet's n labels' uniform share) as well as min_confidence:
two labels need 0.625, three 0.417, four 0.3125; five or more are unchanged at the default 0.25 (1.25 / 5), as are
all the shipped vocabularies' facets."""
PROBE_BLOCKS = ("stages", "bands", "head", "colour", "pixels")
"""The feature blocks a probe may read (:func:`recsys.describe.probe.feature_columns`)."""
FACET_KEYS = ("labels", "prompt", "phrase", "fallback", "min_confidence", "omit", "words", "field", "probe_weight",
              "probe_features", "probe_hidden")
TOP_KEYS = ("name", "facets", "sentence", "min_confidence", "neighbours", "neighbour_weight")
"""The keys a vocabulary may have: any other is refused ("min_confidance" was silently never applied)."""


@dataclass(frozen=True)
class Facet:
    name: str
    labels: tuple[str, ...]
    prompt: str = "{}"
    phrase: str = "{}"
    omit: frozenset[str] = frozenset()
    fallback: str = ""
    min_confidence: float | None = None
    words: tuple[tuple[str, str], ...] = ()
    """Label -> how the sentence words it (e.g. "stripe" -> "striped"); a label not here is written as it is."""
    field: str | None = None
    """A catalogue field (``category``, ``attributes.<key>``) whose values on other items are this facet's labels."""
    probe_weight: float = 0.0
    """Share of the supervised probe on raw tower features in the facet's score (needs ``field``; 0: no probe)."""
    probe_features: tuple[str, ...] = ()
    """Feature blocks the probe reads (recsys-lite: stages, bands, head, colour; any towers: pixels, the photo's
    CIELAB colour statistics); empty: all tower features."""
    probe_hidden: int = 0
    """Width of the probe's hidden layer (0: softmax regression)."""

    def word(self, label: str) -> str:
        return self.phrase.format(dict(self.words).get(label, label))

    def prompts(self) -> list[str]:
        return [self.prompt.format(label) for label in self.labels]


@dataclass(frozen=True)
class Vocabulary:
    name: str
    facets: tuple[Facet, ...]
    sentence: str
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    neighbours: int = DEFAULT_NEIGHBOURS
    neighbour_weight: float = DEFAULT_NEIGHBOUR_WEIGHT

    def threshold(self, facet: Facet, override: float | None = None) -> float:
        """The confidence a label of ``facet`` needs: ``override`` (the command's option) first, then the facet's,
        raised to :data:`CHANCE_LIFT` / n for a facet of few labels (where a guess would clear it); 0 stays 0."""
        if override is not None:
            wanted = override
        else:
            wanted = facet.min_confidence if facet.min_confidence is not None else self.min_confidence
        return 0.0 if wanted <= 0 else min(1.0, max(wanted, CHANCE_LIFT / len(facet.labels)))

    @property
    def writes_labels(self) -> bool:
        """Whether any description can be composed: the sentence names a facet with a label it does not omit."""
        return any(set(f.labels) - f.omit for f in self.facets if "{" + f.name + "}" in self.sentence)

    def compose(self, chosen: dict[str, str | None]) -> str:
        """The sentence from each facet's confident label (None: not confident); "" when no facet of the sentence
        has a confident label worth writing."""
        by_name = {f.name: f for f in self.facets}
        said = [f for f in self.facets if "{" + f.name + "}" in self.sentence]
        if not any(chosen.get(f.name) not in (None, *f.omit) for f in said):
            return ""  # a fallback alone ("Item.") says nothing

        def slot(m: re.Match[str]) -> str:
            f = by_name.get(m.group(1))
            if f is None:
                return ""
            label = chosen.get(f.name)
            if label is None or label in f.omit:
                return f.fallback
            return f.word(label)

        words = " ".join(_SLOT.sub(slot, self.sentence).split())
        words = re.sub(r"\s+([,.;:])", r"\1", words).strip(" ,;:")
        if not re.search(r"\w", words):
            return ""
        text = words[0].upper() + words[1:]
        return text if text.endswith((".", "!", "?")) else text + "."


def _number(value: Any) -> bool:
    """A TOML/JSON number: ``true`` is an int to Python, and ``min_confidence = true`` a typo, not 1.0."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unknown_keys(raw: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    """Refuse a key the vocabulary does not read, with the nearest known one (``where`` names the file/facet)."""
    for key in raw:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f"; keys are {', '.join(known)}"
            raise ValidationFailed(f"vocabulary {where}: unknown key {key!r}{hint}")


def _labels(name: str, raw: dict[str, Any], where: str) -> tuple[str, ...]:
    from recsys.describe.transfer import normalise

    out = facet_labels(name, raw.get("labels"), where)  # the checks `items tag` makes too
    same: dict[str, str] = {}
    for label in out:  # a field value matches both: only the last one ever got a neighbour's vote
        first = same.setdefault(normalise(label), label)
        if first != label:
            raise ValidationFailed(f"vocabulary {where}: facet {name!r}: labels {first!r} and {label!r} are the "
                                   "same label (field values are compared lower-cased, with / - _ as spaces); keep "
                                   "one")
    return out


def _named(name: str, key: str, given: list[str], labels: tuple[str, ...], where: str) -> None:
    """``omit``/``words`` entries must be labels: a typo ("Plain" for "plain") was silently never applied."""
    for entry in given:
        if entry not in labels:
            near = [x for x in labels if x.casefold() == entry.casefold()]
            hint = f" (did you mean {near[0]!r}?)" if near else f"; labels are {list(labels)}"
            raise ValidationFailed(f"vocabulary {where}: facet {name!r}: {key} {entry!r} is not one of its "
                                   f"labels{hint}")


def _wordings(name: str, words: dict[str, str], where: str) -> None:
    """``words`` values are written into the sentence as they are: an empty one left nothing of the label (an item
    whose only label it was lost its description) and a brace stayed a brace."""
    for label, word in words.items():
        if not word.strip():
            raise ValidationFailed(f"vocabulary {where}: facet {name!r}: words {label!r} = {word!r} writes nothing "
                                   f"for the label (items saying only it would lose their description); to leave it "
                                   f"out of the sentence write omit = [{label!r}], else give its wording")
        if re.search(r"[{}]", word):
            raise ValidationFailed(f"vocabulary {where}: facet {name!r}: words {label!r} = {word!r} has a brace, "
                                   "written into the sentence as it is; write the wording itself (for a template "
                                   "of every label, use phrase)")


def _templates(name: str, raw: dict[str, Any], where: str) -> dict[str, str]:
    strings = {k: raw.get(k, d) for k, d in (("prompt", "{}"), ("phrase", "{}"), ("fallback", ""))}
    for key, value in strings.items():
        if not isinstance(value, str) or (key != "fallback" and "{}" not in value):
            raise ValidationFailed(f"vocabulary {where}: facet {name!r}: {key} must be a string"
                                   + ("" if key == "fallback" else " with {} for the label"))
        if key == "fallback" and re.search(r"[{}]", value):  # no label goes in: "{}" was written as it is
            raise ValidationFailed(f"vocabulary {where}: facet {name!r}: fallback {value!r} has a brace, but it is "
                                   "written into the sentence as it is (no label goes in it); write the noun itself, "
                                   "e.g. fallback = \"item\", or leave fallback out")
        if key == "fallback":
            continue
        try:  # checked now, not after minutes of scoring: "{kind}" or a lone "{" failed only when written
            value.format("label")
        except (KeyError, IndexError, ValueError) as e:
            raise ValidationFailed(f"vocabulary {where}: facet {name!r}: {key} {value!r} is not a template with one "
                                   f"{{}} ({type(e).__name__}: {e}); write a literal brace as {{{{ or }}}}") from e
    return strings


def _facet(name: str, raw: Any, where: str) -> Facet:
    if not re.fullmatch(r"\w+", name):  # the sentence names facets as {name}: "{main colour}" was stored as text
        raise ValidationFailed(f"vocabulary {where}: facet name {name!r} must be one word (letters, digits, _)")
    if isinstance(raw, list):
        raw = {"labels": raw}
    if not isinstance(raw, dict):
        raise ValidationFailed(f"vocabulary {where}: facet {name!r} must be a table with labels, or a list of labels")
    _unknown_keys(raw, FACET_KEYS, f"{where}: facet {name!r}")
    labels = _labels(name, raw, where)
    strings = _templates(name, raw, where)
    conf = raw.get("min_confidence")
    if conf is not None and not (_number(conf) and 0 <= conf <= 1):
        raise ValidationFailed(f"vocabulary {where}: facet {name!r}: min_confidence must be a number within 0 and 1, "
                               f"not {conf!r}")
    omit = raw.get("omit", [])
    if not isinstance(omit, list) or not all(isinstance(x, str) for x in omit):
        raise ValidationFailed(f"vocabulary {where}: facet {name!r}: omit must be a list of labels")
    words = raw.get("words", {})
    if not isinstance(words, dict) or not all(isinstance(v, str) for v in words.values()):
        raise ValidationFailed(f"vocabulary {where}: facet {name!r}: words must map labels to strings")
    omit, words = [x.strip() for x in omit], {str(k).strip(): v for k, v in words.items()}
    _named(name, "omit", omit, labels, where)
    _named(name, "words key", list(words), labels, where)
    _wordings(name, words, where)
    source = raw.get("field")
    if source is not None and not (isinstance(source, str) and re.fullmatch(r"category|title|attributes\.\w+", source)):
        raise ValidationFailed(f"vocabulary {where}: facet {name!r}: field must be category, title or attributes.<key>")
    pw, blocks = raw.get("probe_weight", 0.0), raw.get("probe_features", [])
    if not (_number(pw) and 0 <= pw <= 1) or (pw and source is None):
        raise ValidationFailed(f"vocabulary {where}: facet {name!r}: probe_weight must be a number within 0 and 1, "
                               f"with a field, not {pw!r}")
    if not isinstance(blocks, list) or not all(isinstance(b, str) and b in PROBE_BLOCKS for b in blocks):
        raise ValidationFailed(f"vocabulary {where}: facet {name!r}: probe_features must be a list of block names "
                               f"({', '.join(PROBE_BLOCKS)})")
    hidden = raw.get("probe_hidden", 0)
    if not (isinstance(hidden, int) and not isinstance(hidden, bool) and 0 <= hidden <= 4096):
        raise ValidationFailed(f"vocabulary {where}: facet {name!r}: probe_hidden must be an integer 0..4096, "
                               f"not {hidden!r}")
    for key, value in (("probe_features", blocks), ("probe_hidden", hidden)):
        if value and not pw:  # only a probe reads them: without probe_weight they were silently ignored
            raise ValidationFailed(f"vocabulary {where}: facet {name!r}: {key} = {value!r} is read only by a probe, "
                                   "and the facet has none; add probe_weight (a number within 0 and 1)"
                                   f"{' and a field' if source is None else ''}, or remove {key}")
    check_two(name, labels, where)
    return Facet(name, labels, strings["prompt"], strings["phrase"], frozenset(omit), strings["fallback"],
                 None if conf is None else float(conf), tuple(words.items()), source, float(pw), tuple(blocks), hidden)


def parse_vocabulary(data: dict[str, Any], where: str) -> Vocabulary:
    _unknown_keys(data, TOP_KEYS, where)
    facets_raw = data.get("facets")
    if not isinstance(facets_raw, dict) or not facets_raw:
        raise ValidationFailed(f"vocabulary {where}: needs a [facets] table with at least one facet")
    facets = tuple(_facet(str(n), r, where) for n, r in facets_raw.items())
    names = [f.name for f in facets]
    sentence = data.get("sentence", " ".join("{" + n + "}" for n in names))
    if not isinstance(sentence, str):
        raise ValidationFailed(f"vocabulary {where}: sentence must be a string")
    slots = _SLOT.findall(sentence)
    unknown = [s for s in slots if s not in names]
    if unknown:
        raise ValidationFailed(f"vocabulary {where}: sentence names unknown facets {unknown}; facets are {names}")
    if not slots:  # forgotten braces: every item would say nothing, and a re-run would withdraw every description
        example = " ".join("{" + n + "}" for n in names)
        raise ValidationFailed(f"vocabulary {where}: sentence {sentence!r} names no facet; put the facets to write "
                               f"in braces, e.g. sentence = {example!r}")
    if re.search(r"[{}]", _SLOT.sub("", sentence)):  # written into every description as it is: "Red {."
        raise ValidationFailed(f"vocabulary {where}: sentence {sentence!r} has a brace outside a {{facet}} slot; "
                               "braces are for facet names only")
    conf = data.get("min_confidence", DEFAULT_MIN_CONFIDENCE)
    if not (_number(conf) and 0 <= conf <= 1):
        raise ValidationFailed(f"vocabulary {where}: min_confidence must be a number within 0 and 1, not {conf!r}")
    k, w = data.get("neighbours", DEFAULT_NEIGHBOURS), data.get("neighbour_weight", DEFAULT_NEIGHBOUR_WEIGHT)
    if not (isinstance(k, int) and not isinstance(k, bool) and k >= 0) or not (_number(w) and 0 <= w <= 1):
        raise ValidationFailed(f"vocabulary {where}: neighbours must be an integer >= 0 and neighbour_weight a "
                               f"number within 0 and 1, not {k!r} and {w!r}")
    vocabulary = Vocabulary(str(data.get("name") or Path(where).stem), facets, sentence, float(conf),
                            neighbours=k, neighbour_weight=float(w))
    if not vocabulary.writes_labels:
        raise ValidationFailed(f"vocabulary {where}: every facet the sentence names omits all its labels, so no "
                               "description could be written; take a label out of omit, or name another facet")
    return vocabulary


def load_vocabulary(spec: str | Path | None = None) -> Vocabulary:
    """A vocabulary file (``.toml`` or ``.json``), or a shipped one by name (None: the generic default)."""
    path = Path(spec) if spec is not None else SHIPPED / f"{DEFAULT}.toml"
    if spec is not None and not path.exists() and (SHIPPED / f"{spec}.toml").is_file():
        path = SHIPPED / f"{spec}.toml"
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        shipped = ", ".join(sorted(p.stem for p in SHIPPED.glob("*.toml")))
        raise ValidationFailed(f"cannot read vocabulary {path}: {e.strerror}; give a file, or one of: {shipped}") from e
    except UnicodeDecodeError as e:
        raise ValidationFailed(f"vocabulary {path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as "
                               "UTF-8") from e
    if path.suffix.lower() in (".yaml", ".yml"):  # parsed as TOML, it failed with "Expected '=' after a key"
        raise ValidationFailed(f"vocabulary {path}: YAML is not supported; write TOML or JSON (see "
                               f"{SHIPPED / (DEFAULT + '.toml')})")
    try:
        data = json.loads(raw, object_pairs_hook=no_repeats(str(path))) if path.suffix.lower() == ".json" \
            else tomllib.loads(raw)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValidationFailed(f"vocabulary {path} cannot be parsed: {e}") from e
    if not isinstance(data, dict):
        raise ValidationFailed(f"vocabulary {path}: expected a table at the top")
    return parse_vocabulary(data, str(path))
