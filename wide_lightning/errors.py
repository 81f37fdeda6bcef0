"""Errors a person can read: the sentence that matters, with its fix, as the last line; no traceback.

LightningCLI and jsonargparse do the parsing. What they print for a wrong value is 75-90 lines of
nested union alternatives, with the useful sentence in the middle; a misspelt option gets the whole
usage and no hint. :func:`run_for_people` runs a command and turns what a person got wrong (a parse
error, a refused value, a missing or corrupt data file, a checkpoint of the wrong kind) into a few
lines: what is wrong and how to fix it, the sentence last. A misspelt option gets the closest known
name (``difflib``); options are spelt out in full (no prefixes: the parsers use
``allow_abbrev=False``). A value of the wrong type names its key (``model.init_args.width``), the value
and what to give; a misspelt class path the closest known ones; and either names the ``--config`` file
that gave the value, found by reading the files the command names. ``WIDE_LIGHTNING_DEBUG=1`` (or ``--debug``) shows the traceback instead;
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
from typing import Any, Callable, NoReturn, Sequence

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
    from wide_lightning.run_folder import RunFolderInUse

    return (ArgumentError, ValueError, DatasetFileError, FileNotFoundError, MisconfigurationException, DiskFull,
            RunFolderInUse)


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


# -- where a value came from ------------------------------------------------------------------------------

#: The subcommands, whose section a config given before them (``--config X fit``) names its options under.
_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def _flatten(node: Any, prefix: str) -> list[tuple[str, Any]]:
    """``{"model": {"init_args": {"width": 1.5}}}`` -> ``[("model.init_args.width", 1.5)]``."""
    if isinstance(node, dict):
        pairs: list[tuple[str, Any]] = []
        for key, value in node.items():
            pairs += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return pairs
    return [(prefix, node)] if prefix else []


def _normal(key: str) -> str:
    """A key as jsonargparse reads it: ``model.init_args.width`` and ``model.width`` are the same option."""
    return ".".join(part for part in key.split(".") if part != "init_args")


def _settings(args: Sequence[str]) -> list[tuple[str, str | None, Any]]:
    """What ``args`` set, in the order jsonargparse reads it: (key without ``init_args``, the ``--config`` file
    that set it or ``None`` for an option on the command line, value)."""
    import yaml

    settings: list[tuple[str, str | None, Any]] = []
    k = 0
    while k < len(args):
        token = str(args[k])
        option, sep, value = token.partition("=")
        if not option.startswith("-") or option == "--":
            k += 1
            continue
        if not sep:
            has_value = k + 1 < len(args) and not str(args[k + 1]).startswith("--")
            value = str(args[k + 1]) if has_value else ""
            k += has_value
        k += 1
        if option in ("--config", "-c"):
            try:
                root = yaml.safe_load(Path(value).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                continue
            if isinstance(root, dict):
                pairs = _flatten(root, "")
                for subcommand in _SUBCOMMANDS:
                    pairs += _flatten(root.get(subcommand), "")
                settings += [(_normal(key), value, found) for key, found in pairs]
        elif option.startswith("--"):
            parsed: Any = value
            if value.lstrip().startswith("{"):
                try:
                    parsed = yaml.safe_load(value)
                except yaml.YAMLError:
                    pass
            settings += [(_normal(key), None, found) for key, found in _flatten(parsed, option[2:])]
    return settings


def _same(found: Any, given: str | None) -> bool:
    """Whether a value read from a config (or an option) is the value jsonargparse reports, ``given``."""
    import yaml

    if given is None or str(found) == given:
        return True
    try:
        as_yaml = yaml.safe_load(given)
    except yaml.YAMLError:
        return False
    if as_yaml == found:
        return True
    both = (found, as_yaml)
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in both) and \
        all(math.isnan(v) for v in both)


def _matches(setting: str, found: Any, key: str) -> bool:
    """``model: X`` (and ``--model X``) set ``model.class_path`` too."""
    return setting == key or (key.endswith(".class_path") and setting == key.removesuffix(".class_path")
                              and isinstance(found, str))


def config_file_of(args: Sequence[str], key: str, given: str | None = None) -> str | None:
    """The ``--config`` file that set ``key`` (dotted: ``model.init_args.width``) to the value refused, ``given``:
    the first of ``args`` to set it to that value, since jsonargparse checks each file as it reads it (a later
    option does not save a wrong value in a file); ``None`` when that is an option on the command line, or none."""
    key = _normal(key)
    for setting, path, found in _settings(args):
        if _matches(setting, found, key) and _same(found, given):
            return path
    return None


def _in_file(args: Sequence[str], key: str | None, given: str | None) -> str:
    """`` (in --config FILE)`` when that file set ``key``, else nothing."""
    path = config_file_of(args, key, given) if key else None
    return f" (in --config {path})" if path else ""


def _key_named(args: Sequence[str], name: str, given: str) -> str | None:
    """The one dotted key ending in ``name`` that ``args`` set to ``given`` (a class's own check names only
    ``lr``), or ``None`` when none or several."""
    keys = {setting for setting, _, found in _settings(args)
            if setting.rpartition(".")[2] == name and _same(found, given)}
    return keys.pop() if len(keys) == 1 else None


# -- what jsonargparse says -----------------------------------------------------------------------------

#: How a type reads in a sentence, and what to give instead.
_KINDS = {"int": ("an integer", "a whole number"), "float": ("a number", "a number"),
          "bool": ("true or false", "true or false"), "str": ("a string", "a string"), "NoneType": ("null", "null")}


def _kind(type_text: str) -> tuple[str, str]:
    """``<class 'int'>`` -> ("an integer", "a whole number"); ``typing.Literal['1/width']`` -> "'1/width'"."""
    match = re.fullmatch(r"<class '(?:[\w.]+\.)?(\w+)'>", type_text.strip())
    if match:
        name = match.group(1)
        return _KINDS.get(name, (f"a {name}", f"a {name}"))
    match = re.fullmatch(r"typing\.Literal\[(.*)\]", type_text.strip())
    if match:
        words = " or ".join(part.strip() for part in match.group(1).split(","))
        return words, words
    return type_text.strip(), type_text.strip()


def _shown(given: str | None) -> str:
    """A value as a person wrote it: ``1.5``, ``'abc'``."""
    import yaml

    if given is None:
        return "?"
    nested = re.fullmatch(r"NestedArg\(key='[\w.]*', val='(.*)'\)", given)
    if nested:
        given = nested.group(1)
    try:
        value = yaml.safe_load(given)
    except yaml.YAMLError:
        value = given
    return given if isinstance(value, (int, float, bool)) else repr(given)


def _wrong_type(key: str | None, kinds: list[str], given: str | None, args: Sequence[str]) -> str:
    """``model.init_args.width must be an integer, got 1.5 (in --config w.yaml); give a whole number instead.``"""
    words = [_kind(kind) for kind in kinds]
    what = " or ".join(dict.fromkeys(w for w, _ in words))
    fix = " or ".join(dict.fromkeys(f for _, f in words))
    nested = re.fullmatch(r"NestedArg\(key='[\w.]*', val='(.*)'\)", given or "")
    raw = nested.group(1) if nested else given
    return f"{key or 'a value'} must be {what}, got {_shown(raw)}{_in_file(args, key, raw)}; give {fix} instead."


def _tree(lines: list[str]) -> list[tuple[str, list]]:
    """jsonargparse's indented message as (line, the lines indented under it) nodes; ``- `` items are lines."""
    rows = []
    for line in lines:
        stripped = line.strip()
        if stripped:
            rows.append((len(line) - len(line.lstrip()), stripped[2:] if stripped.startswith("- ") else stripped))

    def under(k: int, indent: int) -> tuple[list[tuple[str, list]], int]:
        nodes: list[tuple[str, list]] = []
        while k < len(rows) and rows[k][0] > indent:
            own, text = rows[k]
            children, k = under(k + 1, own)
            nodes.append((text, children))
        return nodes, k

    return under(0, -1)[0]


_NOISE = ("Given value", "Subtypes:", "Does not validate against any of the Union subtypes", "Expected a path but ")


def _sentences(nodes: list[tuple[str, list]], key: str | None, given: str | None, args: Sequence[str]) -> list[str]:
    """The sentences of a message's nodes; ``key`` is the dotted option they are about, ``given`` its value."""
    given = next((text.partition(": ")[2] for text, _ in nodes if text.startswith("Given value: ")), given)
    errors = next((children for text, children in nodes if text == "Errors:"), None)
    if errors is not None:  # a union: each alternative's error, less the optional's (null) and literals'
        alternatives = [(t, c) for t, c in errors if not (t == "Expected a <class 'NoneType'>" and not c)]
        expected = [re.fullmatch(r"Expected a (.+)", t) for t, c in alternatives if not c and ". Got value" not in t]
        if alternatives and len(expected) == len(alternatives) and all(expected):
            return [_wrong_type(key, [m.group(1) for m in expected], given, args)]
        sentences = []
        for text, children in alternatives:
            if not (text.startswith("Expected a typing.Literal") and not children):
                sentences += _sentences([(text, children)], key, given, args)
        return sentences
    sentences = []
    for text, children in nodes:
        join = (lambda part: f"{key}.{part}" if key else part)
        if text.startswith(_NOISE) or text == "Errors:":
            continue
        if (match := re.fullmatch(r'Parser key "([\w.]+)":', text)):
            sentences += _sentences(children, join(match.group(1)), None, args)
        elif re.fullmatch(r"Problem with given class_path '[\w.]+':", text):
            sentences += _sentences(children, join("init_args"), None, args)
        elif (match := re.fullmatch(r"Expected a (.+?)\. Got value: (.*)", text)):
            sentences.append(_wrong_type(key, [match.group(1)], match.group(2), args))
        else:
            sentences += [text] if not children else (_sentences(children, key, given, args) or [text])
    return sentences


def _known_classes(base_path: str | None, given: str) -> tuple[dict[str, Any], bool]:
    """The classes a section accepts, by the name a person would write: those ``wide_lightning`` exports (by
    their short name when ``given`` is one) and those importable from ``given``'s module; and whether that
    module imports."""
    import wide_lightning

    try:
        module_name, _, _ = base_path.rpartition(".") if base_path else ("", "", "")
        base = getattr(importlib.import_module(module_name), base_path.rpartition(".")[2]) if base_path else None
    except (ImportError, AttributeError, ValueError):
        base = None
    earlier = set(getattr(wide_lightning, "EARLIER_NAMES", []))

    def fits(obj: Any) -> bool:
        return inspect.isclass(obj) and (base is None or (issubclass(obj, base) and obj is not base))

    known: dict[str, Any] = {}
    module_name = given.rpartition(".")[0]
    imports = False
    if module_name:
        try:
            module = importlib.import_module(module_name)
            imports = True
        except (ImportError, ValueError):
            module = None
        for name in dir(module) if module is not None else []:
            if not name.startswith("_") and name not in earlier and fits(getattr(module, name, None)):
                known[f"{module_name}.{name}"] = getattr(module, name)
    prefix = "wide_lightning." if module_name else ""
    for name in wide_lightning.__all__:
        obj = getattr(wide_lightning, name, None)
        if name not in earlier and fits(obj) and obj not in known.values():
            known[prefix + name] = obj
    return known, imports


def _closest(given: str, known: dict[str, Any], by_name: bool) -> list[str]:
    """The known class paths closest to ``given`` (by the class name, or the whole path when its module does
    not import), the best first, those nearly as close after it."""
    def part(path: str) -> str:
        return path.rpartition(".")[2] if by_name else path

    target = part(given)
    scored = sorted(((difflib.SequenceMatcher(None, target, part(path)).ratio(), path) for path in known), reverse=True)
    scored = [(score, path) for score, path in scored if score >= 0.6]
    return [path for score, path in scored if score >= scored[0][0] - 0.1][:3] if scored else []


def _unknown_class(text: str, args: Sequence[str]) -> str | None:
    """``unknown class path 'wide_lightning.ConvClasifier' for model (in --config x.yaml); did you mean ...?``"""
    section = re.match(r'Parser key "([\w.]+)":', text)
    base = re.search(r"Subtypes: \[<class '([\w.]+)'>", text)
    missing = re.search(r"Problem with given class_path '([\w.]+)':\s*\n\s*(module '[\w.]+' has no attribute|"
                        r"No module named)", text) or re.search(r"Expected a dot import path string: (\S+)", text)
    not_a_subclass = re.search(r"Import path does not correspond to a subclass of (\w+)", text)
    given = re.search(r"^\s*Given value: (.*)$", text, re.M)
    if not section or not (missing or not_a_subclass):
        return None
    if missing:
        path = missing.group(1)
    else:
        value = given.group(1).strip() if given else ""
        dict_path = re.fullmatch(r"\{'class_path': '([\w.]+)'.*\}", value)
        path = dict_path.group(1) if dict_path else value
        if not re.fullmatch(r"[\w.]+", path):
            return None
    key = section.group(1)
    known, imports = _known_classes(base.group(1) if base else None, path)
    module_name = path.rpartition(".")[0]
    close = [p for p in _closest(path, known, by_name=imports or not module_name) if p != path]
    where = _in_file(args, f"{key}.class_path", path)
    if missing:
        head = f"unknown class path {path!r} for {key}{where}"
    else:
        head = f"{path!r} is not a {not_a_subclass.group(1)}, which {key} needs{where}"
    if close:
        quoted = [repr(path) for path in close]
        either = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        return f"{head}; did you mean {either}?"
    names = sorted(p for p in known if not module_name or p.startswith("wide_lightning."))
    return head + (f"; the known ones are {', '.join(names)}." if names else ".")


def _explain_lines(lines: list[str], class_path: str | None = None, key: str | None = None,
                   args: Sequence[str] = ()) -> list[str]:
    """Sentences for a (nested) jsonargparse message; ``class_path``/``key`` are where it applies."""
    text = "\n".join(lines)
    match = re.search(r"Problem with given class_path '([\w.]+)'", text)
    if match:
        class_path = match.group(1)
    options = re.findall(r"Option '(\w+)' is not accepted|[Kk]ey ['\"]([\w.]+)['\"] is not expected", text)
    if options and class_path:
        return [unknown_option((a or b).split(".")[-1], class_path) for a, b in options]
    return _sentences(_tree(lines), key, None, args)


def _with_file(sentence: str, args: Sequence[str]) -> str:
    """A class's own check (``lr must be ..., got nan.``) with the config file that gave the value, if one did."""
    match = re.fullmatch(r"(\w+) must be .*, got (.+)\.", sentence)
    key = _key_named(args, match.group(1), match.group(2)) if match else None
    where = _in_file(args, key, match.group(2)) if key else ""
    return f"{sentence[:-1]}{where}." if where else sentence


def explain(error: BaseException, args: Sequence[str] = ()) -> str:
    """The sentences a person needs for ``error`` (a user error), most specific first, in a few lines.

    ``args`` are the command's arguments: a value that came from a ``--config`` file names that file.
    """
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
    if (unknown := _unknown_class(text, args)) is not None:
        return unknown
    if "Errors:" in text or "is not accepted" in text or "is not expected" in text or "Got value:" in text:
        sentences = list(dict.fromkeys(_explain_lines(text.splitlines(), args=args)))  # unique, in order
        if sentences:
            return " ".join(_with_file(sentence, args) for sentence in sentences)
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
        message = explain(error, args)
        if rewrite is not None:
            message = rewrite(message)
        sys.stderr.write(f"{program}: error ({DEBUG_ENV}=1 or --debug shows the traceback):\n{message}\n")
        raise SystemExit(2) from None


def exit_for_people(program: str, message: str) -> NoReturn:
    """End a command on a user error without LightningCLI's parser (the reports): ``program: message`` on stderr
    and exit status 2, as :func:`run_for_people` does (status 1 is a bug's).

    The ``SystemExit`` says the sentence too (``str(exit)``), for a caller in Python; its ``code`` is 2.
    """
    sentence = f"{program}: {message}"
    sys.stderr.write(sentence + "\n")
    stop = SystemExit(sentence)
    stop.code = 2
    raise stop
