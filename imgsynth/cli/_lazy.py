"""Start-up helpers: sub-commands built on demand, and Typer's help renderer without its unused imports.

``imgsynth --help`` needs each command's name and help text, not its options: building every
command's Click parameters (Typer reads each signature and evaluates its annotations) cost about
60 ms. :class:`LazyGroup` builds a command when it is looked up, and gives the top-level help
listing light stand-ins carrying the same name, help and panel.

Typer's ``rich_utils`` imports ``rich.markdown`` (markdown-it) and ``rich.traceback`` (Pygments)
at module level, about 80 ms, for the ``markdown`` markup mode and pretty tracebacks; imgsynth
uses neither (``rich_markup_mode="rich"``, ``pretty_exceptions_enable=False``).
:class:`LightRichUtils` (see :func:`install`) loads it with stand-ins for those two names that
import the real class on first use, so the output is unchanged.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import inspect
import sys
import types
from typing import Any, Callable

import typer
from typer.core import TyperCommand, TyperGroup

# name -> function registering that command (or group) on the Typer it is given, in help order
Registrar = Callable[[typer.Typer], None]


class LazyGroup(TyperGroup):
    """A Typer group whose sub-commands come from ``registrars``, built the first time each is asked for."""

    registrars: dict[str, Registrar] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.registrars) + [n for n in self.commands if n not in self.registrars]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in self.registrars:
            if self._listing:
                return _stand_in(cmd_name, self.registrars[cmd_name])
            self.commands[cmd_name] = build_command(cmd_name, self.registrars[cmd_name], self.rich_markup_mode)
        return self.commands.get(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.registrars and args[0] not in self.commands:
            # unknown name: Typer's "did you mean" looks at self.commands, so list every name there
            for name, register in self.registrars.items():
                self.commands.setdefault(name, _stand_in(name, register))
        return super().resolve_command(ctx, args)


def _scratch(register: Registrar, rich_markup_mode: Any = None) -> typer.Typer:
    """A Typer holding only what ``register`` adds, with a callback so that it always makes a group."""
    scratch = typer.Typer(add_completion=False, rich_markup_mode=rich_markup_mode)
    scratch.callback()(_no_options)
    register(scratch)
    return scratch


def _no_options() -> None:
    """The scratch group's callback."""


def build_command(name: str, register: Registrar, rich_markup_mode: Any) -> Any:
    """The Click command ``register`` defines, built by Typer as it builds an eager group's commands."""
    return typer.main.get_command(_scratch(register, rich_markup_mode)).commands[name]


def _stand_in(name: str, register: Registrar) -> TyperCommand:
    """A parameter-less command with the name, help, panel and flags the real one will have."""
    scratch = _scratch(register)
    for info in scratch.registered_commands:
        if (info.name or "") == name:
            help_text = inspect.cleandoc(info.help) if info.help is not None else inspect.getdoc(info.callback)
            return TyperCommand(name=name, help=help_text, short_help=info.short_help, hidden=info.hidden,
                                deprecated=info.deprecated, rich_help_panel=info.rich_help_panel)
    for group_info in scratch.registered_groups:
        if group_info.name == name:
            info = typer.main.solve_typer_info_defaults(group_info)
            return TyperCommand(name=name, help=info.help, short_help=info.short_help, hidden=info.hidden,
                                deprecated=info.deprecated, rich_help_panel=info.rich_help_panel)
    raise KeyError(name)


class _Deferred:
    """Stand-in for a class of a module not imported yet: constructing it (or calling a classmethod) imports it."""

    _module = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _real(cls)(*args, **kwargs)

    @classmethod
    def from_exception(cls, *args: Any, **kwargs: Any) -> Any:  # rich.traceback.Traceback.from_exception
        return _real(cls).from_exception(*args, **kwargs)


def _real(stand_in: type) -> Any:
    return getattr(importlib.import_module(stand_in._module), stand_in.__name__)


_DEFERRED = {"rich.markdown": "Markdown", "rich.traceback": "Traceback"}


class _LightLoader(importlib.abc.Loader):
    """Runs ``typer.rich_utils`` with stand-ins for ``_DEFERRED`` in ``sys.modules``, removed right after.

    The stand-ins live on only in ``typer.rich_utils``' namespace; any other ``import rich.markdown``
    gets the real module (a module found in ``sys.modules`` is never set on its package).
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        for name, cls in _DEFERRED.items():
            stub = types.ModuleType(name)
            setattr(stub, cls, type(cls, (_Deferred,), {"_module": name, "__module__": __name__}))
            sys.modules[name] = stub
        try:
            self.loader.exec_module(module)
        except ImportError:  # a Typer that imports more from these modules: load it as it is
            for name in _DEFERRED:
                sys.modules.pop(name, None)
            self.loader.exec_module(module)
        finally:
            for name in _DEFERRED:
                if not hasattr(sys.modules.get(name), "__file__"):
                    sys.modules.pop(name, None)


class LightRichUtils(importlib.abc.MetaPathFinder):
    """Finds ``typer.rich_utils`` as usual and loads it through :class:`_LightLoader`.

    Steps aside when ``rich.markdown`` or ``rich.traceback`` is already imported (nothing to save).
    """

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "typer.rich_utils" or any(m in sys.modules for m in _DEFERRED):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _LightLoader(spec.loader)
        return spec


def install() -> None:
    """Put :class:`LightRichUtils` first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, LightRichUtils) for f in sys.meta_path):
        sys.meta_path.insert(0, LightRichUtils())
