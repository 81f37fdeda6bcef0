"""Errors a person can read: the sentence that matters, with its fix, as the last line; no traceback.

LightningCLI and jsonargparse do the parsing. What they print for a wrong value is 75-90 lines of
nested union alternatives, with the useful sentence in the middle; a misspelt option gets the whole
usage and no hint. :func:`run_for_people` runs a command and turns what a person got wrong (a parse
error, a refused value, a missing or corrupt data file, a checkpoint of the wrong kind) into a few
lines: what is wrong and how to fix it, the sentence last. A misspelt option gets the closest known
name (``difflib``); options are spelt out in full (no prefixes: the parsers use
``allow_abbrev=False``). ``WIDE_LIGHTNING_DEBUG=1`` (or ``--debug``) shows the traceback instead;
anything that is not a user error (a bug) always does.

:func:`check_config_files` reads each ``--config`` file before jsonargparse does, since YAML forgives
what is most likely a mistake: a key given twice keeps its last value silently (a second ``model:``
block, a second ``lr:``), an empty file becomes "Unexpected config:", a tab a parser message.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import os
import re
import sys
from argparse import ArgumentError
from pathlib import Path
from typing import Any, Callable, Sequence

DEBUG_ENV = "WIDE_LIGHTNING_DEBUG"
#: YAML's spellings of the non-finite floats, which jsonargparse parses as floats.
_NON_FINITE = {"nan": ".nan", "inf": ".inf", "+inf": ".inf", "infinity": ".inf", "-inf": "-.inf", "-infinity": "-.inf"}
#: The classes whose options a section of the fit command's options (``--trainer.x``) names.
_SECTION_CLASSES = {
    "trainer": "lightning.pytorch.Trainer",
    "checkpoint": "wide_lightning.checkpoints.BestAndLastCheckpoint",
    "probe": "wide_lightning.cli.ProbeSpec",
}


#: Lightning's refusal of a ``limit_*_batches`` fraction that leaves no batch: value, loader, batches per epoch.
_NO_BATCH = re.compile(r"You requested to check (\S+) of the `(\w+)_dataloader` but \S+ \* (\d+) < 1")
_SPLITS = {"train": "training", "val": "validation", "test": "test", "predict": "prediction"}


class ConfigFileError(ValueError):
    """A ``--config`` file that is empty, not YAML, not a mapping of options, or says one key twice."""


def config_paths(args: Sequence[str]) -> list[str]:
    """The files ``--config``/``-c`` name in ``args`` (values that are not files, e.g. inline YAML, are left out)."""
    paths = []
    for k, token in enumerate(args):
        option, sep, value = token.partition("=")
        if option in ("--config", "-c"):
            value = value if sep else (args[k + 1] if k + 1 < len(args) else "")
            if value and os.path.isfile(value):
                paths.append(value)
    return paths


def _duplicate_keys(node: Any, where: str = "") -> tuple[str, int, int] | None:
    """The first key a YAML mapping (at any depth) gives twice: its dotted name and the two line numbers."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: dict[str, Any] = {}
        for key, value in node.value:
            if key.tag == "tag:yaml.org,2002:merge" or not isinstance(key, yaml.ScalarNode):
                continue  # `<<: *defaults` may be overridden on purpose
            name = f"{where}.{key.value}" if where else key.value
            if key.value in seen:
                return name, seen[key.value].start_mark.line + 1, key.start_mark.line + 1
            seen[key.value] = key
            if (found := _duplicate_keys(value, name)) is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for k, item in enumerate(node.value):
            if (found := _duplicate_keys(item, f"{where}[{k}]")) is not None:
                return found
    return None


def check_config_file(path: str) -> None:
    """Refuse a config file that is not a YAML mapping of options, or that gives one key twice."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return  # jsonargparse says what is wrong with it
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        at_a_tab = mark is not None and text[mark.index:mark.index + 1] == "\t"
        if at_a_tab or "'\\t'" in problem or "tab character" in problem:
            raise ConfigFileError(f"--config {path}{line} has a tab character where YAML accepts only "
                                  f"spaces; replace the tab with spaces.") from None
        raise ConfigFileError(f"--config {path}{line} is not valid YAML ({problem}); correct that line.") from None
    if root is None:
        raise ConfigFileError(f"--config {path} is empty (no options, at most comments); write the options into it "
                              f"(the configs in configs/ show the sections: trainer, model, data) or leave it out.")
    if not isinstance(root, yaml.MappingNode):
        kind = "list" if isinstance(root, yaml.SequenceNode) else "single value"
        raise ConfigFileError(f"--config {path} holds a {kind}, not options; a config is a mapping of sections "
                              f"(trainer:, model:, data:), as the configs in configs/ are.")
    if (duplicate := _duplicate_keys(root)) is not None:
        name, first, second = duplicate
        raise ConfigFileError(f"--config {path} gives {name!r} twice, on lines {first} and {second} (YAML would "
                              f"silently keep only the second); keep one of them.")


def check_config_files(args: Any) -> None:
    """:func:`check_config_file` for each file ``--config`` names in ``args`` (a list of arguments)."""
    if isinstance(args, (list, tuple)):
        for path in config_paths([str(a) for a in args]):
            check_config_file(path)


def user_error_types() -> tuple[type[BaseException], ...]:
    """What a person can get wrong: values, options, files, checkpoints (not bugs)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from wide_lightning.data.base import DatasetFileError
    from wide_lightning.files import DiskFull

    return (ArgumentError, ValueError, DatasetFileError, FileNotFoundError, MisconfigurationException, DiskFull)


def finite_spellings(args: Sequence[str]) -> list[str]:
    """``--x=nan``, ``--x inf``... with YAML's spellings (``.nan``, ``.inf``), so they parse as floats and
    are refused by the same check as a YAML file's ``.nan`` rather than as "Expected a float"."""
    out = list(args)
    for k, token in enumerate(out):
        option, sep, value = token.partition("=")
        if sep and option.startswith("--") and value.lower() in _NON_FINITE:
            out[k] = f"{option}={_NON_FINITE[value.lower()]}"
        elif not sep and token.lower() in _NON_FINITE and k > 0 and out[k - 1].startswith("--") and "=" not in out[k - 1]:
            out[k] = _NON_FINITE[token.lower()]
    return out


def parameter_names(class_path: str) -> list[str]:
    """The keyword arguments a class accepts: its ``__init__``'s and those its ``**kwargs`` pass to its bases."""
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return []
    names: list[str] = []
    for klass in inspect.getmro(cls) if inspect.isclass(cls) else []:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = list(inspect.signature(init).parameters.values())[1:]
        names += [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in names]
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return names


def unknown_option(key: str, class_path: str) -> str:
    """``unknown option 'widht' for ConvClassifier; did you mean 'width'?``"""
    names = parameter_names(class_path)
    owner = class_path.rpartition(".")[2]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if close:
        return f"unknown option {key!r} for {owner}; did you mean {close[0]!r}?"
    return f"unknown option {key!r} for {owner}; its options are {', '.join(names)}." if names else \
        f"unknown option {key!r} for {owner}."


def _unrecognized(arguments: str) -> str:
    """``unrecognized arguments: --trainer.max_epoch=2`` -> one did-you-mean sentence per option."""
    sentences = []
    for token in arguments.split():
        option = token.partition("=")[0]
        parts = option.lstrip("-").split(".")
        if not option.startswith("--"):
            sentences.append(f"unexpected argument {token!r}.")
        elif len(parts) == 2 and parts[0] in _SECTION_CLASSES:
            sentences.append(unknown_option(parts[1], _SECTION_CLASSES[parts[0]]) +
                             " Options are spelt out in full; prefixes are not accepted.")
        else:
            sentences.append(f"unknown option {option!r}; `--help` lists the options.")
    return " ".join(sentences)


def _items(block: list[str]) -> list[list[str]]:
    """The ``- `` items of jsonargparse's ``Errors:`` list, each with its indented continuation lines."""
    items: list[list[str]] = []
    indent = None
    for line in block:
        stripped = line.lstrip()
        depth = len(line) - len(stripped)
        if stripped.startswith("- ") and (indent is None or depth <= indent):
            indent = depth
            items.append([stripped[2:]])
        elif items:
            items[-1].append(line)
    return items


def _explain_lines(lines: list[str], class_path: str | None = None, key: str | None = None) -> list[str]:
    """Sentences for a (nested) jsonargparse message; ``class_path``/``key`` are where it applies."""
    text = "\n".join(lines)
    match = re.search(r"Problem with given class_path '([\w.]+)'", text)
    if match:
        class_path = match.group(1)
    options = re.findall(r"Option '(\w+)' is not accepted|[Kk]ey ['\"]([\w.]+)['\"] is not expected", text)
    if options and class_path:
        return [unknown_option((a or b).split(".")[-1], class_path) for a, b in options]
    for k, line in enumerate(lines):
        if line.strip() == "Errors:":
            keys = re.findall(r'Parser key "([\w.]+)"', "\n".join(lines[:k]))
            sentences: list[str] = []
            for item in _items(lines[k + 1:]):
                if re.match(r"Expected a (<class 'NoneType'>|typing\.Literal)", item[0]) and len(item) == 1:
                    continue  # the alternative of an optional or literal type: never what went wrong
                sentences += _explain_lines(item, class_path, keys[-1] if keys else key)
            given = re.search(r"^\s*Given value: (.*)$", text, re.M)
            if sentences and all(s.startswith("Expected a") for s in sentences) and given:
                kinds = " or ".join(s.removeprefix("Expected a ").strip() for s in sentences)
                return [f"{keys[-1] if keys else key or 'a value'} must be {kinds}, got {given.group(1)!r}."]
            return sentences
    first = lines[0].strip() if lines else ""
    return [first] if first else []


def explain(error: BaseException) -> str:
    """The sentences a person needs for ``error`` (a user error), most specific first, in a few lines."""
    text = str(error).strip()
    match = _NO_BATCH.search(text)
    if match:
        value, loader, batches = match.group(1), match.group(2), int(match.group(3))
        least = math.ceil(10_000 / batches) / 10_000  # >= 1 / batches, rounded up to 4 decimals
        return (f"--trainer.limit_{loader}_batches={value} leaves no {_SPLITS.get(loader, loader)} batch: an epoch "
                f"has {batches} batches and {value} of them is less than one; give --trainer.limit_{loader}_batches="
                f"{least:g} or more, or a whole number of batches (e.g. 1).")
    match = re.search(r"unrecognized arguments: (.*)", text)
    if match:
        return _unrecognized(match.group(1))
    if "Errors:" in text or "is not accepted" in text or "is not expected" in text:
        sentences = list(dict.fromkeys(_explain_lines(text.splitlines())))  # unique, in order
        if sentences:
            return " ".join(sentences)
    return text


def _program(argv: Sequence[str] | None) -> str:
    return os.path.basename(sys.argv[0]) if argv is None and sys.argv and sys.argv[0] else "wide-lightning"


def debug_requested(args: list[str]) -> bool:
    """``--debug`` in ``args`` (removed from them) or ``WIDE_LIGHTNING_DEBUG`` set: show tracebacks."""
    if "--debug" in args:
        args.remove("--debug")
        return True
    return os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def run_for_people(command: Callable[[list[str]], Any], args: Sequence[str] | None, program: str,
                   rewrite: Callable[[str], str] | None = None) -> Any:
    """``command(args)``; a user error ends in a short message on stderr and exit status 2.

    ``args`` default to ``sys.argv[1:]``; ``rewrite`` adapts a message to the command (e.g. the flag
    that names the data folder).
    """
    args = finite_spellings(list(sys.argv[1:] if args is None else args))
    debug = debug_requested(args)
    try:
        return command(args)
    except user_error_types() as error:
        if debug:
            raise
        message = explain(error)
        if rewrite is not None:
            message = rewrite(message)
        sys.stderr.write(f"{program}: error ({DEBUG_ENV}=1 or --debug shows the traceback):\n{message}\n")
        raise SystemExit(2) from None
