"""The annotated field types every config section is built from.

Types and ranges live in the annotations (``Annotated[int, Field(ge=1)]``, ``Literal[...]``)
and pydantic enforces them; the before-validators let ``--set`` strings and YAML scalars
coerce (``"1e6"`` -> 1000000, ``"A,B"`` -> ("A", "B"), ``"null"`` -> None), and a
:class:`Rule` says a field's requirement in words where its constraints alone would say it
badly. Shared by :mod:`fastrl.config` and any settings model validated the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from fastrl.features_long import check_feature_sets

# Every section validates with these settings: no inf/nan in a float, unknown keys refused,
# and a config instance re-checked field by field when validate_config is handed one.
SECTION_RULES = ConfigDict(allow_inf_nan=False, extra="forbid", revalidate_instances="always")


class ConfigError(ValueError):
    """A config value, key, preset or file is invalid; the message names it."""


# Errors of type: the message says which type the key needs.
TYPE_WORDS = {"int_parsing": "needs an integer", "int_from_float": "needs an integer",
               "int_type": "needs an integer", "bool_parsing": "needs true or false",
               "bool_type": "needs true or false", "float_parsing": "needs a number",
               "float_type": "needs a number", "finite_number": "must be finite",
               "string_type": "needs a string", "tuple_type": "needs a list",
               "list_type": "needs a list"}


@dataclass(frozen=True)
class Rule:
    """A field's requirement in words, where its constraints alone would say it badly."""

    text: str


def none_word(value: Any) -> Any:
    """``--set target_kl=none``: the words none/null mean None for a field that allows it."""
    if isinstance(value, str) and value.strip().lower() in ("none", "null"):
        return None
    return value


def integer_text(value: Any) -> Any:
    """``"1e6"`` and ``"200_000"`` are integers too (YAML reads them as strings)."""
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            return float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            return value
    return value


def listify(value: Any) -> Any:
    """A list from a ``--set`` string or a scalar: ``"A,B"`` -> ["A", "B"], ``64`` -> [64]."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return yaml.safe_load(text)
            except yaml.YAMLError:
                return value
        return [part.strip() for part in text.split(",")]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return value


def schedule_points(positive: bool) -> AfterValidator:
    """A piecewise schedule: [step, value] pairs, steps from 0 strictly increasing."""

    def check(points: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        if not points:
            return points
        steps = [step for step, _ in points]
        if steps[0] != 0:
            raise PydanticCustomError("config_rule", "must start at step 0")
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise PydanticCustomError("config_rule", "must have strictly increasing steps")
        if not all(value > 0 if positive else value >= 0 for _, value in points):
            raise PydanticCustomError(
                "config_rule", "values must be finite and " + ("> 0" if positive else ">= 0"))
        return points

    return AfterValidator(check)


Int = Annotated[int, BeforeValidator(integer_text)]
Count = Annotated[Int, Field(ge=1)]
Steps = Annotated[Int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]
Flag = bool
MaybeFlag = Annotated[bool | None, BeforeValidator(none_word)]
MaybePositive = Annotated[Positive | None, BeforeValidator(none_word)]
Points = Annotated[tuple[tuple[float, float], ...], BeforeValidator(listify),
                   Rule("must be a list of [step, value] pairs")]
Preset = Literal["fast", "baseline", "anchored"]


def _feature_sets(sets: tuple[str, ...]) -> tuple[str, ...]:
    try:
        return check_feature_sets(sets)
    except ValueError as error:
        raise PydanticCustomError("config_rule", str(error)) from None


FeatureSets = Annotated[tuple[str, ...], BeforeValidator(listify),
                        AfterValidator(_feature_sets)]
