"""Theme files (TOML) into ``textual.theme.Theme`` objects.

Themes are data, not code (posting does the same): the shipped ones live in ``themes/`` and a
user adds or overrides one by dropping a file in ``<config dir>/themes``. A broken file is
skipped with a one-sentence reason the app shows as a notification; it never stops vtmon.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
from textual.color import Color, ColorParseError
from textual.theme import Theme

import vtmon

DEFAULT_THEME = "vtmon-dark"

_COLOR_KEYS = (
    "primary",
    "secondary",
    "warning",
    "error",
    "success",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)
_OTHER_KEYS = {"name", "dark", "luminosity_spread", "text_alpha", "variables"}

# Extra CSS variables vtmon's widgets use. Themes may set them; otherwise they are derived
# from the theme's own colours (see ``chart_defaults``), so Textual's built-in themes work too.
CHART_VARIABLES = ("chart-1", "chart-2", "chart-3", "chart-4", "chart-target")


class ThemeError(Exception):
    """A theme file that cannot be used; the message is one sentence for the user."""


@dataclass
class LoadedThemes:
    themes: dict[str, Theme] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # one sentence per skipped file


def theme_dirs() -> list[Path]:
    """Shipped themes first, then the user's, so a user file can override a shipped one."""
    pkg = Path(vtmon.__file__).resolve().parent
    installed = pkg / "themes"  # a wheel force-includes themes/ inside the package
    shipped = installed if installed.is_dir() else pkg.parent / "themes"  # editable install
    return [shipped, user_theme_dir()]


def user_theme_dir() -> Path:
    return Path(platformdirs.user_config_dir("vtmon")) / "themes"


def load_theme_file(path: Path) -> Theme:
    """Read one theme file; raises ThemeError saying what is wrong and where."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ThemeError(f"Theme file {path} is not valid TOML ({e}); fix it or remove it.") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ThemeError(f"Theme file {path} cannot be read ({e}).") from e
    return theme_from_dict(data, source=str(path), default_name=path.stem)


def theme_from_dict(data: dict, *, source: str = "theme", default_name: str = "") -> Theme:
    unknown = set(data) - set(_COLOR_KEYS) - _OTHER_KEYS
    if unknown:
        raise ThemeError(
            f"Theme file {source} has unknown keys {', '.join(sorted(unknown))}; "
            f"use {', '.join(_COLOR_KEYS)}, dark and [variables]."
        )
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise ThemeError(f"Theme file {source} needs a name (a non-empty string).")
    if "primary" not in data:
        raise ThemeError(f"Theme file {source} needs a primary colour.")
    colors: dict[str, str] = {}
    for key in _COLOR_KEYS:
        if key in data:
            colors[key] = _color(data[key], key, source)
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        raise ThemeError(f"Theme file {source}: [variables] must map names to strings.")
    for key in CHART_VARIABLES:
        if key in variables:
            _color(variables[key], f"variables.{key}", source)
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ThemeError(f"Theme file {source}: dark must be true or false, not {dark!r}.")
    # Every key was checked above against what Theme takes and the type it wants.
    kwargs: dict[str, Any] = dict(colors)
    for key in ("luminosity_spread", "text_alpha"):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ThemeError(f"Theme file {source}: {key} must be a number, not {value!r}.")
            kwargs[key] = float(value)
    theme = Theme(name=name.strip(), dark=dark, variables=dict(variables), **kwargs)
    try:
        # Textual checks colours lazily, at the first switch; find mistakes now instead.
        theme.to_color_system().generate()
    except Exception as e:  # any failure here means the file is unusable
        raise ThemeError(f"Theme file {source} cannot be used by Textual ({e}).") from e
    return theme


def _color(value: object, key: str, source: str) -> str:
    if not isinstance(value, str):
        raise ThemeError(f"Theme file {source}: {key} must be a colour string, not {value!r}.")
    try:
        Color.parse(value)
    except ColorParseError as e:
        raise ThemeError(f"Theme file {source}: {key} = {value!r} is not a colour.") from e
    return value


def load_themes(dirs: Iterable[Path] | None = None) -> LoadedThemes:
    """Every ``*.toml`` theme in ``dirs`` (later directories override earlier ones by name)."""
    out = LoadedThemes()
    for d in theme_dirs() if dirs is None else dirs:
        if not d.is_dir():
            continue
        for path in sorted(d.glob("*.toml")):
            try:
                theme = load_theme_file(path)
            except ThemeError as e:
                out.problems.append(str(e))
                continue
            out.themes[theme.name] = theme
    return out


def chart_defaults(theme: Theme) -> dict[str, str]:
    """Values for the chart variables a theme does not set, taken from its own colours."""
    fallback = {
        "chart-1": theme.primary,
        "chart-2": theme.accent or theme.warning or theme.primary,
        "chart-3": theme.secondary or theme.error or theme.primary,
        "chart-4": theme.success or theme.primary,
        "chart-target": theme.error or "#ff0000",
    }
    return {k: v for k, v in fallback.items() if k not in theme.variables and v}


def chart_colors(theme: Theme) -> dict[str, tuple[int, int, int]]:
    """The chart colours of ``theme`` as RGB triples (plotext takes RGB, not CSS)."""
    merged = {**chart_defaults(theme), **theme.variables}
    out: dict[str, tuple[int, int, int]] = {}
    for key in CHART_VARIABLES:
        try:
            out[key] = Color.parse(merged[key]).rgb
        except (KeyError, ColorParseError):
            out[key] = Color.parse(theme.primary).rgb
    fg = theme.foreground or ("#e0e0e0" if theme.dark else "#202020")
    out["text"] = Color.parse(fg).rgb
    # Axes a step back from the text, so data lines stand out against the frame.
    bg = Color.parse(theme.background or ("#000000" if theme.dark else "#ffffff"))
    out["axes"] = bg.blend(Color.parse(fg), 0.45).rgb
    return out
