"""Command-line flags that mirror the fields of a settings dataclass (a kind's grid, the training settings), so a
field and its flag cannot drift apart. Below every door: the CLI and each kind's flag module build on it."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SettingsFlags:
    """CLI flags that mirror fields of a settings dataclass, so a field and its flag cannot drift apart.

    ``helps`` lists the fields that have a flag (in the order ``--help`` shows them); ``without_flag``
    says why each other field has none. tests/test_cli.py fails when a field is in neither.
    """

    settings: type
    helps: dict[str, str]
    flags: dict[str, str] = field(default_factory=dict)  # field -> flag where it is not --field-name
    without_flag: dict[str, str] = field(default_factory=dict)  # field -> why it has no flag
    defaults: dict = field(default_factory=dict)  # field -> the flag's default where it is not None
    text: bool = False  # flags take text (comma lists the engine parses), not the field's type

    def __post_init__(self) -> None:
        names = {f.name for f in dataclasses.fields(self.settings)}
        unknown = (set(self.helps) | set(self.flags) | set(self.defaults) | set(self.without_flag)) - names
        if unknown:  # a renamed or removed field: fail when the parser is built, not when a user runs it
            raise TypeError(f"{self.settings.__name__} has no field(s) {', '.join(sorted(unknown))}")

    def flag(self, name: str) -> str:
        return self.flags.get(name, "--" + name.replace("_", "-"))

    def dest(self, name: str) -> str:
        return self.flag(name)[2:].replace("-", "_")

    def add_to(self, parser) -> None:
        hints = {} if self.text else typing.get_type_hints(self.settings)
        for name, help_text in self.helps.items():
            kind = str if self.text else _scalar_type(hints[name])
            parser.add_argument(self.flag(name), type=kind, default=self.defaults.get(name), help=help_text)

    def given(self, args) -> dict:
        """field -> value of every flag that has one (given, or a default that is not None)."""
        values = {name: getattr(args, self.dest(name)) for name in self.helps}
        return {name: value for name, value in values.items() if value is not None}


def _scalar_type(hint) -> type:
    """int for ``int`` and ``int | None``; str for anything not int or float."""
    options = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    return options[0] if options[0] in (int, float) else str


