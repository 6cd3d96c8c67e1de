"""What day-two commands never print: the spec's environment values, the alert webhook, and record fields
that look like secrets.

A dead letter carries a user's record and an error message a handler wrote, either of which may quote a
password, a token or the environment a handler read it from. Shown records are therefore masked field by
field (a key whose words name a secret: password, token, secret, authorization, cookie, `..._key`, ...),
and every text shown (records, errors, events, identities) is scrubbed of the spec's environment values and `alerts.webhook` (the webhook's URL
is itself a credential: whoever has it can post alerts). Environment values shorter than six characters are
scrubbed only when their variable's name looks secret, so `CURRENCY: USD` does not blank out every "USD".
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
MIN_SCRUBBED = 6  # a non-secret-looking environment value shorter than this is too common a word to scrub
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "passphrase", "secret", "secrets", "token", "tokens", "apikey", "authorization", "auth",
    "credential", "credentials", "cookie", "cookies", "session", "signature", "privatekey", "sas", "jwt", "bearer",
})


def words(name: str) -> list[str]:
    """A field or variable name's words: `apiKey`, `API_KEY` and `api-key` all give ['api', 'key']."""
    return [w.lower() for w in _WORDS.findall(name)]


def secret_name(name: str) -> bool:
    """Whether a field or variable name says it holds a secret (`password`, `x-api-key`, `ClientSecret`, `aws_secret_access_key`)."""
    found = words(name)
    joined = "".join(found)
    return bool(found) and (any(w in SECRET_WORDS for w in found) or found[-1] == "key" or joined in SECRET_WORDS)


class Masker:
    """Scrubs the spec's secrets from text and masks secret-looking fields of records."""

    def __init__(self, environment: Iterable[tuple[str, str]] = (), webhook: str | None = None) -> None:
        values = {value for name, value in environment if value and (len(value) >= MIN_SCRUBBED or (secret_name(name) and len(value) >= 3))}
        if webhook:
            values.add(webhook)
        # Longest first, so a value that contains another is scrubbed whole.
        self.values = sorted(values, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in self.values)) if self.values else None

    @classmethod
    def for_spec(cls, spec: Any) -> Masker:
        """Every stage's environment and the alert webhook of a `PipelineSpec`."""
        pairs = [(name, value) for stage in spec.stages for name, value in stage.environment.items()]
        return cls(pairs, spec.alerts.webhook)

    def text(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None and text else text

    def value(self, value: Any) -> Any:
        """A JSON value with secret-looking fields masked and every string scrubbed, at any depth."""
        if isinstance(value, dict):
            return {str(k): (MASK if secret_name(str(k)) and v not in (None, "") else self.value(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def scrub(self, value: Any) -> Any:
        """A JSON value the platform wrote (an event, a record's identity) with every string scrubbed; its field names
        (an object's `key`, a partition `key`) are the platform's, not secrets, so nothing is masked by name."""
        if isinstance(value, dict):
            return {str(k): self.scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(item) for item in value]
        return self.text(value) if isinstance(value, str) else value

    def record(self, data: bytes | None) -> tuple[str, Any]:
        """A record's bytes as shown: ("json", masked value), ("text", scrubbed text) or ("base64", text) when binary."""
        if data is None:
            return "none", None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return "base64", base64.b64encode(data).decode("ascii")
        try:
            parsed = json.loads(text)
        except ValueError:
            return "text", self.text(text)
        return "json", self.value(parsed)


def shorten(text: str, limit: int) -> str:
    """A one-line preview: newlines shown as ⏎, cut to `limit` characters with the full length said."""
    flat = text.replace("\r", "").replace("\n", "⏎")
    return flat if len(flat) <= limit else f"{flat[: max(limit - 1, 1)]}… ({len(text):,} chars)"
