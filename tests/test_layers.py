"""The import rules of the server's layers (docs/architecture.md), read from the
source with `ast` (every import statement, also those inside functions and
under TYPE_CHECKING):

1. Only `server/state/` imports the Redis client or a database driver.
2. `server/core/` imports nothing that does I/O: no Redis or database driver, no
   network, server framework, process or file-system module (the list below).
   It may read environment variables and, when asked, a file through `os`,
   `pathlib` and `tomllib`: the settings file and the shop key file.
3. A layer imports only itself and the layers below it:
   core < state < realtime < features < web.

Modules that break a rule today are listed in ALLOWLIST with the step that removes
them. The list may only shrink: the test also fails when a listed import is gone,
so whoever fixes one deletes its entry."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

SERVER = Path(__file__).resolve().parent.parent / "server"

STORAGE_DRIVERS: Final = frozenset({"redis", "aiosqlite", "sqlite3", "asyncpg"})
IO_MODULES: Final = STORAGE_DRIVERS | frozenset({
    "asyncio", "socket", "ssl", "selectors", "subprocess", "multiprocessing", "signal",
    "http", "urllib", "httpx", "httptools", "starlette", "uvicorn", "websockets", "uvloop",
    "shutil", "tempfile", "fcntl", "mmap", "io", "ctypes",
})

LAYERS: Final = ("core", "state", "realtime", "features", "web")
# The modules at the top of server/ and the layer they belong to: `__init__` and
# `__main__` are the package (only the version: core) and the `python -m server`
# entry (the top).
TOP_LEVEL: Final = {
    "server": "core",
    "server.__main__": "web",
}

# (module, imported module) -> why it is still allowed. To be emptied by the next
# step (splitting show.py into features over one state layer), except where noted.
ALLOWLIST: Final[dict[tuple[str, str], str]] = {
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SERVER.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.add(name)
            if name == "server" or (node.level and not node.module):
                # `from server import handshake`: the names may be modules.
                found.update(f"{name}.{alias.name}" for alias in node.names
                             if (SERVER.parent / name.replace(".", "/") / alias.name).exists()
                             or (SERVER.parent / name.replace(".", "/")
                                 / f"{alias.name}.py").exists())
    return found


def _layer(module: str) -> str | None:
    """The layer of a server module, or None for a module outside the server."""
    if module != "server" and not module.startswith("server."):
        return None
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    for name in (module, ".".join(parts[:2])):
        if name in TOP_LEVEL:
            return TOP_LEVEL[name]
    raise AssertionError(f"{module}: a module of no layer; put it in a layer's folder")


def _violations() -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for path in sorted(SERVER.rglob("*.py")):
        module = _module_name(path)
        layer = _layer(module)
        assert layer is not None
        for imported in sorted(_imports(path, module)):
            root = imported.split(".")[0]
            if root in STORAGE_DRIVERS and layer != "state":
                found[(module, imported)] = "a storage driver outside server/state/"
            elif layer == "core" and root in IO_MODULES:
                found[(module, imported)] = "an I/O module in server/core/"
            target = _layer(imported)
            if target is not None and LAYERS.index(target) > LAYERS.index(layer):
                found[(module, imported)] = f"{layer} imports from {target} (a higher layer)"
    return found


def test_every_server_module_belongs_to_a_layer() -> None:
    for path in SERVER.rglob("*.py"):
        assert _layer(_module_name(path)) is not None


def test_layers_import_only_what_their_rules_allow() -> None:
    new = {k: why for k, why in _violations().items() if k not in ALLOWLIST}
    assert not new, "imports that break the layer rules (docs/architecture.md):\n" + \
        "\n".join(f"  {m} imports {i}: {why}" for (m, i), why in sorted(new.items()))


def test_the_allowlist_only_shrinks() -> None:
    gone = sorted(set(ALLOWLIST) - set(_violations()))
    assert not gone, "these allowlisted imports are gone; delete their ALLOWLIST entries:\n" + \
        "\n".join(f"  {m} imports {i}" for m, i in gone)


def test_the_rules_catch_what_they_should(tmp_path: Path) -> None:
    # The checker itself: a fake core module that does I/O and reaches up a layer.
    source = ("import socket\nfrom redis.asyncio import Redis\n"
              "def f() -> None:\n    from server.features import show\n")
    fake = tmp_path / "fake.py"
    fake.write_text(source, encoding="utf-8")
    imported = _imports(fake, "server.core.fake")
    assert {"socket", "redis.asyncio", "server.features"} <= imported
    assert _layer("server.features") == "features"
    assert _layer("server.core.fake") == "core"
