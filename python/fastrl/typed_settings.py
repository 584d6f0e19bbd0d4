"""Typed settings of the commands that record them (a study, a walk-forward run).

Each is a frozen pydantic model validated like :class:`fastrl.config.TrainConfig`: unknown
keys are refused, no float may be inf or nan, and a bad value raises
:class:`fastrl.config.ConfigError` naming the key and the value as given (the commands turn
it into exit 2). ``to_dict`` is the JSON the settings are recorded as; ``parse`` reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from fastrl.config_types import TYPE_WORDS, ConfigError

# TrainConfig's words for type errors, plus what a whole recorded mapping can get wrong
_WORDS = {**TYPE_WORDS, "dict_type": "needs a mapping", "missing": "is missing",
          "extra_forbidden": "is not a known key", "finite_number": "must be a finite number"}


def error_words(error: dict[str, Any]) -> str:
    """One pydantic error in the words TrainConfig's messages use."""
    kind, ctx = error["type"], error.get("ctx") or {}
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit}"
    if kind == "value_error" and ctx.get("error") is not None:  # a model's own check
        return str(ctx["error"])
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    return _WORDS.get(kind, f"is invalid ({error['msg']})")


class Settings(BaseModel):
    """A command's recorded settings: frozen, unknown keys refused, no inf/nan."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)
    # what the error messages call one key ("study setting", "walk-forward setting")
    label: ClassVar[str] = "setting"

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> Any:
        """The settings in ``values`` (a recorded or a built mapping), validated; a
        ConfigError naming the first bad key otherwise."""
        if isinstance(values, cls):
            return values
        if not isinstance(values, Mapping):
            raise ConfigError(f"{cls.label}s must be a mapping of keys to values, got "
                              f"{type(values).__name__}")
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            key = ".".join(str(part) for part in error["loc"])
            shown = f", got {error['input']!r}" if error["type"] != "missing" else ""
            raise ConfigError(f"{cls.label} {key!r} {error_words(error)}{shown}") from None

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values (what is recorded)."""
        return self.model_dump(mode="json")

    def replaced(self, **changes: Any) -> Any:
        """A copy with ``changes`` applied, validated."""
        return type(self).parse({**self.to_dict(), **changes})


__all__ = ["Settings", "error_words"]
