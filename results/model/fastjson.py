"""Read a JSON object fast (msgspec), leaving unread the large arrays its reader has no use for."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec

# each top-level value as its JSON text: validated, but not turned into Python objects yet
_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_VALUES = msgspec.json.Decoder(list[Any])
_ARRAY = ord("[")


def loads_object(data: bytes, keep_array: Callable[[str], bool] | None = None) -> Any:
    """json.loads(data.decode("utf-8")), without the top-level arrays `keep_array` rejects.

    vLLM's serving output is mostly per-request arrays (ttfts, itls, generated texts) that no
    record keeps; not building their hundreds of floats makes reading it several times faster.
    The rest is the same as json's: where msgspec refuses the text (NaN, an integer past 64 bits,
    not an object, invalid JSON) json.loads reads it, so values and errors (JSONDecodeError,
    UnicodeDecodeError) are json's own.
    """
    try:
        fields = _FIELDS.decode(data)
        keys: list[str] = []
        values: list[msgspec.Raw] = []
        for key, raw in fields.items():
            if keep_array is None or memoryview(raw)[0] != _ARRAY or keep_array(key):
                keys.append(key)
                values.append(raw)
        # one decoder call for every value kept, not one per value
        return dict(zip(keys, _VALUES.decode(b"[" + b",".join(values) + b"]"), strict=True))
    except (msgspec.DecodeError, UnicodeDecodeError):
        pass  # json says what is wrong, in its own words
    value = json.loads(data.decode("utf-8"))
    if isinstance(value, dict) and keep_array is not None:
        value = {k: v for k, v in value.items() if not isinstance(v, list) or keep_array(k)}
    return value
