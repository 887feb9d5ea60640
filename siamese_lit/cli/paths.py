"""Positional paths on a Hydra command line (`compare a.png b.png`, `search index_path=I x.png dir/`):
turned into one override whose values read back exactly as the paths, never interpolated."""

from __future__ import annotations

import re

from siamese_lit.utils.errors import ConfigError

#: Hydra's command-line flags that take a value (that value is not a positional path).
VALUE_FLAGS = {
    "-cp",
    "--config-path",
    "-cn",
    "--config-name",
    "-cd",
    "--config-dir",
    "-c",
    "--cfg",
    "-p",
    "--package",
}


def quote_path(path: str) -> str:
    """A path as a quoted Hydra override value that reads back as exactly `path`: spaces, commas and
    brackets kept, `${` escaped for OmegaConf (a file named `${oc.env:HOME}.png` is read as itself,
    never interpolated), backslashes doubled where Hydra's grammar reads them (before a quote, at
    the end) and where OmegaConf does (before `${`)."""
    text = re.sub(r"(\\*)\$\{", lambda m: "\\" * (2 * len(m[1]) + 1) + "${", path)
    text = re.sub(r"(\\*)'", lambda m: "\\" * (2 * len(m[1])) + "\\'", text)
    return "'" + re.sub(r"(\\+)$", lambda m: m[1] * 2, text) + "'"


def positional_paths(argv: list[str], key: str) -> list[str]:
    """The command line with its positional paths (no `=`, not a flag or a flag's value) turned into
    the override `key=[...]`; ConfigError when `key=` is given as well."""
    rest, paths = [], []
    for i, arg in enumerate(argv):
        positional = "=" not in arg and not arg.startswith("-") and (i == 0 or argv[i - 1] not in VALUE_FLAGS)
        (paths if positional else rest).append(arg)
    if not paths:
        return rest
    if any(a.startswith((f"{key}=", f"+{key}=")) for a in rest):
        raise ConfigError(f"give the paths either as positional arguments or as {key}=[...], not both.")
    return [*rest, f"{key}=[" + ",".join(quote_path(p) for p in paths) + "]"]
