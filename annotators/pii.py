"""PII in transcripts: phone numbers, e-mail addresses (written and spoken) and payment card numbers.

Precision matters as much as recall here: a false flag silently takes clean speech out of the training set.
- Phone numbers: Google's libphonenumber (`phonenumbers`) finds and *validates* numbers against the
  numbering plan of a region guessed from the language (plus any number written with a `+` prefix), so
  years, counts, prices, times and version numbers are not numbers anyone can dial.
- Cards: 13-19 digits that pass the Luhn check and start with an issuer prefix of a card network.
- E-mail: written `user@domain.tld`, or spoken `user at domain dot tld` with a known top-level domain. A
  spoken address also needs evidence that it is one (a structured user part such as "john dot smith", a
  mail provider's domain, or a cue word like "email" shortly before), so "look at google dot com" or
  "he arrived at noon. Then" are not addresses.
Speakers say numbers digit by digit ("five five five, one two three four"): single spoken digits are
turned into digits first, in the languages below. This small table is written here because the number
parsers (text2num) rewrite whole phrases without keeping word positions, and the positions give the
time span of each finding.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

KINDS = ("phone_number", "card_number", "email")

# region hint per language for numbers written without a country code
REGIONS = {
    "en": "US", "de": "DE", "fr": "FR", "es": "ES", "it": "IT", "pt": "BR", "nl": "NL", "ja": "JP", "ko": "KR",
    "zh": "CN", "ru": "RU", "pl": "PL", "sv": "SE", "da": "DK", "no": "NO", "fi": "FI", "tr": "TR", "hi": "IN",
}

DIGIT_WORDS = {
    "en": {"zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
           "eight": 8, "nine": 9},
    "de": {"null": 0, "eins": 1, "zwei": 2, "zwo": 2, "drei": 3, "vier": 4, "fünf": 5, "sechs": 6, "sieben": 7,
           "acht": 8, "neun": 9},
    "fr": {"zéro": 0, "un": 1, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "six": 6, "sept": 7, "huit": 8,
           "neuf": 9},
    "es": {"cero": 0, "uno": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7, "ocho": 8,
           "nueve": 9},
    "it": {"zero": 0, "uno": 1, "due": 2, "tre": 3, "quattro": 4, "cinque": 5, "sei": 6, "sette": 7, "otto": 8,
           "nove": 9},
    "pt": {"zero": 0, "um": 1, "dois": 2, "três": 3, "quatro": 4, "cinco": 5, "seis": 6, "sete": 7, "oito": 8,
           "nove": 9},
}
TEXT2NUM_LANGS = {"en", "fr", "es", "pt", "de", "nl", "it", "da"}
AT_WORDS = {"at", "@", "arobase", "arroba", "chiocciola", "klammeraffe", "ät"}
DOT_WORDS = {"dot", "punkt", "point", "punto", "ponto", "punt"}
JOIN_WORDS = {"underscore": "_", "dash": "-", "hyphen": "-", "minus": "-", "bindestrich": "-", "tiret": "-",
              "guion": "-", "trattino": "-"}
EMAIL_CUES = {"email", "e-mail", "mail", "mailen", "courriel", "correo", "adresse", "address", "indirizzo",
              "endereço", "dirección", "write", "schreiben", "écrivez", "escribe", "scrivi", "contact", "reach"}
MAIL_PROVIDERS = {"gmail", "googlemail", "yahoo", "hotmail", "outlook", "live", "icloud", "me", "aol", "gmx",
                  "web", "protonmail", "proton", "mail", "orange", "free", "laposte", "libero", "virgilio",
                  "yandex", "qq", "163", "t-online", "wanadoo", "fastmail", "zoho"}
# Top-level domains accepted in addresses: the generic ones in wide use and the country codes of the
# languages above (a spoken "dot" followed by an ordinary word is not an address).
TLDS = {
    "com", "org", "net", "edu", "gov", "mil", "int", "info", "biz", "io", "co", "ai", "app", "dev", "me", "tv",
    "us", "uk", "de", "fr", "es", "it", "pt", "br", "nl", "be", "ch", "at", "ca", "au", "nz", "ie", "jp", "kr",
    "cn", "ru", "pl", "se", "dk", "no", "fi", "tr", "in", "mx", "ar", "eu", "online", "email", "xyz", "org.uk",
}

WRITTEN_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.([A-Za-z]{2,})(?![\w-])")
CARD_RUN = re.compile(r"(?<![\d])\d(?:[ -]?\d){12,18}(?![\d])")
CARD_PREFIXES = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|6011|65|64[4-9]|62|35)")


@dataclass(frozen=True)
class Finding:
    kind: str
    first_word: int  # index of the first word of the finding
    last_word: int


def _core(word: str) -> str:
    """The word without surrounding punctuation, lower case (NFKC)."""
    w = unicodedata.normalize("NFKC", word).strip().lower()
    return w.strip(" ,;:!?\"'()[]{}«»„“”…").rstrip(".")


def _digit_words(language: str | None) -> dict[str, int]:
    table = dict(DIGIT_WORDS["en"])
    table.update(DIGIT_WORDS.get((language or "").split("-")[0], {}))
    return table


def _spoken_number(core: str, digits: dict[str, int], language: str | None) -> str | None:
    """A word said as part of a number: a digit word, or (via text2num) a two-digit number word such as
    "douze" or "trente-quatre" (French numbers are said in pairs); None for any other word."""
    if core in digits:
        return str(digits[core])
    lang = (language or "").split("-")[0]
    if lang in TEXT2NUM_LANGS and re.fullmatch(r"[^\W\d_]+(?:-[^\W\d_]+)*", core):
        from text_to_num import text2num

        try:
            value = text2num(core, lang)
        except ValueError:
            return None
        return str(value) if 10 <= value <= 99 else None
    return None


def _render(words: list[str], language: str | None) -> tuple[str, list[int]]:
    """Join the words into one string with spoken numbers as digits; owner[i] = word index of char i.

    Consecutive spoken digits are written together ("five five five" → "555"); a pause mark (a comma
    or full stop after a word) between them becomes a space, as digit groups are written.
    """
    digits = _digit_words(language)
    text, owner = "", []
    prev_digit = False
    for i, word in enumerate(words):
        token = _spoken_number(_core(word), digits, language)
        if token is not None:
            sep = "" if prev_digit else (" " if text else "")
            prev_digit = not word.rstrip().endswith((",", ".", ";", ":"))
        else:
            token, sep, prev_digit = word.strip(), " " if text else "", False
        text += sep + token
        owner += [i] * (len(sep) + len(token))
    return text, owner


def _span(owner: list[int], start: int, end: int) -> tuple[int, int]:
    return owner[start], owner[max(start, end - 1)]


def _luhn(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _cards(text: str, owner: list[int]) -> list[tuple[Finding, tuple[int, int]]]:
    out = []
    for m in CARD_RUN.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and CARD_PREFIXES.match(digits) and _luhn(digits):
            out.append((Finding("card_number", *_span(owner, *m.span())), m.span()))
    return out


def _phones(text: str, owner: list[int], language: str | None, taken: list[tuple[int, int]]):
    import phonenumbers

    region = REGIONS.get((language or "").split("-")[0], "US")
    out = []
    for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
        if any(a < m.end and m.start < b for a, b in taken):
            continue
        out.append(Finding("phone_number", *_span(owner, m.start, m.end)))
    return out


def _written_emails(text: str, owner: list[int]):
    out = []
    for m in WRITTEN_EMAIL.finditer(text):
        if m.group(1).lower() in TLDS:
            out.append((Finding("email", *_span(owner, *m.span())), m.span()))
    return out


def _spoken_emails(words: list[str]) -> list[Finding]:
    """`user [dot|underscore user]* at label [dot label]* dot tld`, with evidence that it is an address."""
    cores = [_core(w) for w in words]
    out = []
    for at, word in enumerate(cores):
        if word not in AT_WORDS or at == 0 or "@" in words[at - 1]:
            continue
        # the user part, read backwards from "at": label (joiner label)*
        start = at - 1
        if not _label(cores[start]):
            continue
        structured = any(ch.isdigit() for ch in cores[start])
        while start >= 2 and (cores[start - 1] in DOT_WORDS or cores[start - 1] in JOIN_WORDS) \
                and _label(cores[start - 2]):
            start -= 2
            structured = True
        # the domain: label (dot label)* with the last label a known TLD
        k, labels = at + 1, []
        while k < len(cores) and _label(cores[k]):
            labels.append(cores[k])
            if k + 2 < len(cores) and cores[k + 1] in DOT_WORDS and _label(cores[k + 2]):
                k += 2
                continue
            break
        if len(labels) < 2 or labels[-1] not in TLDS:
            continue
        # a pause mark between the parts means separate phrases ("at noon. Then")
        if any(words[i].rstrip().endswith((".", ",", ";", "?", "!")) for i in range(start, k)):
            continue
        cue = any(c in EMAIL_CUES for c in cores[max(0, start - 6): start])
        if structured or cue or labels[0] in MAIL_PROVIDERS:
            out.append(Finding("email", start, k))
    return out


def _label(word: str) -> bool:
    return bool(word) and bool(re.fullmatch(r"[\w-]+", word)) and word not in AT_WORDS and word not in DOT_WORDS


def find_pii(words: list[str], language: str | None = None) -> list[Finding]:
    """Every finding in a transcript given as its words (in order), each with its word span."""
    if not words:
        return []
    text, owner = _render(words, language)
    emails = _written_emails(text, owner)
    cards = _cards(text, owner)
    taken = [span for _, span in emails + cards]
    findings = [f for f, _ in emails + cards] + _phones(text, owner, language, taken)
    for f in _spoken_emails(words):
        if not any(g.kind == "email" and g.first_word <= f.last_word and f.first_word <= g.last_word
                   for g in findings):
            findings.append(f)
    return sorted(findings, key=lambda f: (f.first_word, f.kind))


def find_pii_in_text(text: str, language: str | None = None) -> list[Finding]:
    return find_pii(text.split(), language)
