"""Theme "text utils": 20 small string functions, each with a docstring spec and a test (issue #21 workload).

Written for Symphony's teams bench; each ``def name`` is one sub-task (its docstring is the spec an
agent gets, its body our reference) and ``test_name`` right after it is the sub-task's test.
"""


def collapse_spaces(text: str) -> str:
    """Return text with every run of whitespace replaced by one space and the ends stripped."""
    return " ".join(text.split())


def test_collapse_spaces():
    assert collapse_spaces("  a \t b\n\nc ") == "a b c"
    assert collapse_spaces("") == ""


def slugify(title: str) -> str:
    """Lower-case title, keep ASCII letters and digits, join the remaining words with single hyphens."""
    words = "".join(c.lower() if c.isascii() and c.isalnum() else " " for c in title).split()
    return "-".join(words)


def test_slugify():
    assert slugify("Hello, World! 2024") == "hello-world-2024"
    assert slugify("--A--b--") == "a-b"


def is_palindrome(text: str) -> bool:
    """True if text reads the same backwards, ignoring case and every non-alphanumeric character."""
    kept = [c.lower() for c in text if c.isalnum()]
    return kept == kept[::-1]


def test_is_palindrome():
    assert is_palindrome("A man, a plan, a canal: Panama")
    assert not is_palindrome("abca")
    assert is_palindrome("")


def word_counts(text: str) -> dict:
    """Map each lower-cased word (maximal run of letters) to how often it occurs."""
    counts: dict = {}
    word = ""
    for c in text.lower() + " ":
        if c.isalpha():
            word += c
        elif word:
            counts[word] = counts.get(word, 0) + 1
            word = ""
    return counts


def test_word_counts():
    assert word_counts("The cat; the HAT.") == {"the": 2, "cat": 1, "hat": 1}
    assert word_counts("42") == {}


def caesar(text: str, shift: int) -> str:
    """Shift ASCII letters by shift places in the alphabet (wrapping, keeping case); leave others unchanged."""
    out = []
    for c in text:
        if "a" <= c <= "z" or "A" <= c <= "Z":
            base = ord("a") if c.islower() else ord("A")
            out.append(chr(base + (ord(c) - base + shift) % 26))
        else:
            out.append(c)
    return "".join(out)


def test_caesar():
    assert caesar("Hello, Zz!", 1) == "Ifmmp, Aa!"
    assert caesar(caesar("round trip", 7), -7) == "round trip"


def run_length(text: str) -> str:
    """Encode runs as count followed by the character, e.g. 'aaab' -> '3a1b'."""
    out, i = [], 0
    while i < len(text):
        j = i
        while j < len(text) and text[j] == text[i]:
            j += 1
        out.append(f"{j - i}{text[i]}")
        i = j
    return "".join(out)


def test_run_length():
    assert run_length("aaabcc") == "3a1b2c"
    assert run_length("") == ""


def wrap_words(text: str, width: int) -> list:
    """Greedy word wrap: lines of at most width characters; a longer word gets a line of its own."""
    lines: list = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


def test_wrap_words():
    assert wrap_words("the quick brown fox", 10) == ["the quick", "brown fox"]
    assert wrap_words("a verylongword b", 4) == ["a", "verylongword", "b"]


def title_case(text: str) -> str:
    """Capitalize each space-separated word, except 'a', 'an', 'the', 'of' when not the first word."""
    small = {"a", "an", "the", "of"}
    words = text.lower().split(" ")
    return " ".join(w if i and w in small else w[:1].upper() + w[1:] for i, w in enumerate(words))


def test_title_case():
    assert title_case("the lord OF the rings") == "The Lord of the Rings"
    assert title_case("a") == "A"


def anagrams(a: str, b: str) -> bool:
    """True if a and b use the same letters the same number of times, ignoring case and spaces."""
    return sorted(a.replace(" ", "").lower()) == sorted(b.replace(" ", "").lower())


def test_anagrams():
    assert anagrams("Dormitory", "dirty room")
    assert not anagrams("abc", "abd")


def longest_common_prefix(words: list) -> str:
    """The longest string that every word in words starts with ('' for an empty list)."""
    if not words:
        return ""
    prefix = words[0]
    for w in words[1:]:
        while not w.startswith(prefix):
            prefix = prefix[:-1]
    return prefix


def test_longest_common_prefix():
    assert longest_common_prefix(["flower", "flow", "flight"]) == "fl"
    assert longest_common_prefix([]) == ""


def vowel_count(text: str) -> int:
    """How many of text's characters are vowels a, e, i, o, u (either case)."""
    return sum(c in "aeiouAEIOU" for c in text)


def test_vowel_count():
    assert vowel_count("Symphony ORCHESTRA") == 4
    assert vowel_count("") == 0


def snake_to_camel(name: str) -> str:
    """Convert snake_case to camelCase; leading and repeated underscores are dropped."""
    parts = [p for p in name.split("_") if p]
    return parts[0].lower() + "".join(p.capitalize() for p in parts[1:]) if parts else ""


def test_snake_to_camel():
    assert snake_to_camel("parse_http_header") == "parseHttpHeader"
    assert snake_to_camel("__x__y") == "xY"


def camel_to_snake(name: str) -> str:
    """Convert camelCase or PascalCase to snake_case: an underscore before each upper-case letter but the first."""
    out = []
    for i, c in enumerate(name):
        if c.isupper() and i:
            out.append("_")
        out.append(c.lower())
    return "".join(out)


def test_camel_to_snake():
    assert camel_to_snake("parseHttpHeader") == "parse_http_header"
    assert camel_to_snake("Id") == "id"


def truncate(text: str, limit: int) -> str:
    """text if it has at most limit characters, else its first limit - 3 characters followed by '...'."""
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def test_truncate():
    assert truncate("hello world", 8) == "hello..."
    assert truncate("short", 5) == "short"


def count_substring(text: str, sub: str) -> int:
    """How many times sub occurs in text, overlapping occurrences included; 0 for an empty sub."""
    if not sub:
        return 0
    return sum(text.startswith(sub, i) for i in range(len(text)))


def test_count_substring():
    assert count_substring("aaaa", "aa") == 3
    assert count_substring("abc", "") == 0


def reverse_words(text: str) -> str:
    """The words of text (split on whitespace) in reverse order, joined by single spaces."""
    return " ".join(reversed(text.split()))


def test_reverse_words():
    assert reverse_words("  one two  three ") == "three two one"


def mask_digits(text: str, keep: int) -> str:
    """Replace every digit but the last keep digits with '#', leaving other characters as they are."""
    total = sum(c.isdigit() for c in text)
    out, seen = [], 0
    for c in text:
        if c.isdigit():
            seen += 1
            out.append(c if seen > total - keep else "#")
        else:
            out.append(c)
    return "".join(out)


def test_mask_digits():
    assert mask_digits("1234-5678", 4) == "####-5678"
    assert mask_digits("ab", 2) == "ab"


def first_unique_char(text: str) -> int:
    """Index of the first character occurring exactly once in text, or -1."""
    for i, c in enumerate(text):
        if text.count(c) == 1:
            return i
    return -1


def test_first_unique_char():
    assert first_unique_char("swiss") == 1
    assert first_unique_char("aabb") == -1


def balanced_brackets(text: str) -> bool:
    """True if the brackets ()[]{} in text are balanced and properly nested; other characters are ignored."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for c in text:
        if c in "([{":
            stack.append(c)
        elif c in pairs:
            if not stack or stack.pop() != pairs[c]:
                return False
    return not stack


def test_balanced_brackets():
    assert balanced_brackets("f(a[1]) {x}")
    assert not balanced_brackets("(]")
    assert not balanced_brackets("((")


def levenshtein(a: str, b: str) -> int:
    """The edit distance between a and b: fewest single-character insertions, deletions, substitutions."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
