"""Stack traces produced by the real runtimes at test time (python3, java, node, go).

A generated program has failure *sites*: site `i` lives in module `shop/<m>` as
function `handle_<i>` (Java: method `Shop<m>.handle<i>`), calls a helper that
throws one of the runtime's exception types, optionally wrapped in a second one
(a chained cause). `shift` pads every module at the top so each throwing line
moves, as a deploy that edited code above it would. A case is (site, variant): the
variant changes the exception message (ids, names), never the site.

Used by tests/test_exceptions_*.py and bench/exceptions.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SEPARATOR = "=====CASE====="
MODULES = ("orders", "cart", "billing")
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")

BINARIES = {"python": "python3", "java": "javac", "node": "node", "go": "go"}


def require(runtime: str) -> str:
    """Path of the runtime's tool. Missing: a failure under CI (env CI set), a skip
    on a developer machine."""
    binary = shutil.which(BINARIES[runtime])
    if binary is None and runtime == "go" and os.access("/usr/local/go/bin/go", os.X_OK):
        os.environ["PATH"] += os.pathsep + "/usr/local/go/bin"  # the official tarball
        binary = shutil.which("go")
    if binary is None:
        message = f"`{BINARIES[runtime]}` is not installed (tests/services/install.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


@dataclass(frozen=True)
class Site:
    index: int
    module: str
    kind: int  # which exception the helper throws
    wrap: bool  # rethrown wrapped (a chained cause)


def make_sites(n: int) -> list[Site]:
    return [Site(i, MODULES[i % len(MODULES)], (i * 7 + i // 3) % 5, i % 4 == 3) for i in range(n)]


def message_of(variant: int) -> tuple[int, str]:
    return 1000 + variant * 37, NAMES[variant % len(NAMES)]


# -- Python -------------------------------------------------------------------------

_PY_RAISE = (
    "raise ValueError(f'order {{oid}} for {{who}} is invalid')",
    "raise KeyError(f'user-{{oid}}')",
    "return {{}}['k' + str(oid)]",  # a real KeyError from the runtime
    "return len(oid)  # TypeError from the runtime",
    "return oid // (oid - oid)  # ZeroDivisionError from the runtime",
)


def _python_sources(sites: list[Site], shift: int) -> dict[str, str]:
    files: dict[str, list[str]] = {m: ["# padding\n" * shift] for m in MODULES}
    for s in sites:
        body = _PY_RAISE[s.kind].replace("{{", "{").replace("}}", "}")
        src = files[s.module]
        src.append(f"\n\ndef helper_{s.index}(oid, who):\n    x = oid + 1\n    {body}\n")
        if s.wrap:
            src.append(
                f"\n\ndef handle_{s.index}(oid, who):\n    try:\n"
                f"        helper_{s.index}(oid, who)\n"
                f"    except Exception as exc:\n"
                f"        raise RuntimeError(f'handling {{oid}} failed') from exc\n"
            )
        else:
            src.append(
                f"\n\ndef handle_{s.index}(oid, who):\n    return helper_{s.index}(oid, who)\n"
            )
    out = {f"shop/{m}.py": "".join(v) for m, v in files.items()}
    out["shop/__init__.py"] = ""
    calls = "\n".join(
        f"    {s.index}: lambda o, w: {s.module}.handle_{s.index}(o, w)," for s in sites
    )
    out["main.py"] = (
        "import sys, traceback\n"
        f"from shop import {', '.join(MODULES)}\n"
        f"SITES = {{\n{calls}\n}}\n\n"
        "def dispatch(site, oid, who):\n    return SITES[site](oid, who)\n\n"
        "uncaught = sys.argv[1] == 'uncaught'\n"
        "for case in sys.argv[2].split(','):\n"
        "    site, oid, who = case.split(':')\n"
        "    if uncaught:\n        dispatch(int(site), int(oid), who)\n"
        "    try:\n        dispatch(int(site), int(oid), who)\n"
        "    except Exception:\n"
        f"        traceback.print_exc()\n        print({SEPARATOR!r}, file=sys.stderr)\n"
    )
    return out


# -- Java -------------------------------------------------------------------------------

_JAVA_THROW = (
    'throw new IllegalArgumentException("order " + oid + " for " + who + " is invalid");',
    'throw new IllegalStateException("user-" + oid);',
    "Object o = null; if (oid > 0) { o.hashCode(); } return;  // a real NPE",
    'throw new UnsupportedOperationException("no route for " + who);',
    "int z = oid - oid; System.out.print(oid / z); return;  // a real ArithmeticException",
)


def _java_class(module: str) -> str:
    return "Shop" + module.capitalize()


def _java_sources(sites: list[Site], shift: int) -> dict[str, str]:
    files: dict[str, list[str]] = {
        m: ["package shop;\n", "// padding\n" * shift, f"public class {_java_class(m)} {{\n"]
        for m in MODULES
    }
    for s in sites:
        src = files[s.module]
        src.append(
            f"    static void helper{s.index}(int oid, String who) {{\n"
            f"        int x = oid + 1;\n        {_JAVA_THROW[s.kind]}\n    }}\n"
        )
        if s.wrap:
            src.append(
                f"    public static void handle{s.index}(int oid, String who) {{\n"
                f"        try {{ helper{s.index}(oid, who); }}\n"
                f"        catch (RuntimeException e) {{\n"
                f'            throw new RuntimeException("handling " + oid + " failed", e);\n'
                f"        }}\n    }}\n"
            )
        else:
            src.append(
                f"    public static void handle{s.index}(int oid, String who) {{\n"
                f"        helper{s.index}(oid, who);\n    }}\n"
            )
    out = {f"shop/{_java_class(m)}.java": "".join(v) + "}\n" for m, v in files.items()}
    cases = "\n".join(
        f"            case {s.index}: {_java_class(s.module)}.handle{s.index}(oid, who); break;"
        for s in sites
    )
    out["shop/Main.java"] = (
        "package shop;\n\npublic class Main {\n"
        "    static void dispatch(int site, int oid, String who) {\n"
        f"        switch (site) {{\n{cases}\n        }}\n    }}\n"
        "    public static void main(String[] args) {\n"
        '        boolean uncaught = args[0].equals("uncaught");\n'
        '        for (String c : args[1].split(",")) {\n'
        '            String[] p = c.split(":");\n'
        "            if (uncaught)\n"
        "                dispatch(Integer.parseInt(p[0]), Integer.parseInt(p[1]), p[2]);\n"
        "            try { dispatch(Integer.parseInt(p[0]), Integer.parseInt(p[1]), p[2]); }\n"
        "            catch (RuntimeException e) {\n"
        f'                e.printStackTrace(); System.err.println("{SEPARATOR}");\n'
        "            }\n        }\n    }\n}\n"
    )
    return out


# -- Node.js ----------------------------------------------------------------------------

_NODE_THROW = (
    "throw new RangeError(`order ${oid} for ${who} is invalid`);",
    "throw new Error(`user-${oid}`);",
    "return undefined[oid];  // a real TypeError",
    "return JSON.parse(`{${who}`);  // a real SyntaxError",
    "throw new TypeError(`no route for ${who}`);",
)


def _node_sources(sites: list[Site], shift: int) -> dict[str, str]:
    files: dict[str, list[str]] = {m: ["// padding\n" * shift] for m in MODULES}
    exports: dict[str, list[str]] = {m: [] for m in MODULES}
    for s in sites:
        src = files[s.module]
        src.append(
            f"\nfunction helper{s.index}(oid, who) {{\n  const x = oid + 1;\n"
            f"  {_NODE_THROW[s.kind]}\n}}\n"
        )
        if s.wrap:
            src.append(
                f"function handle{s.index}(oid, who) {{\n  try {{\n    helper{s.index}(oid, who);\n"
                f"  }} catch (e) {{\n"
                f"    throw new Error(`handling ${{oid}} failed`, {{ cause: e }});\n"
                f"  }}\n}}\n"
            )
        else:
            src.append(
                f"function handle{s.index}(oid, who) {{\n  return helper{s.index}(oid, who);\n}}\n"
            )
        exports[s.module].append(f"handle{s.index}")
    out = {
        f"shop/{m}.js": "".join(v) + f"module.exports = {{ {', '.join(exports[m])} }};\n"
        for m, v in files.items()
    }
    requires = "\n".join(f"const {m} = require('./shop/{m}.js');" for m in MODULES)
    table = ",\n".join(f"  {s.index}: (o, w) => {s.module}.handle{s.index}(o, w)" for s in sites)
    out["main.js"] = (
        f"{requires}\nconst SITES = {{\n{table}\n}};\n"
        "function dispatch(site, oid, who) { return SITES[site](oid, who); }\n"
        "const uncaught = process.argv[2] === 'uncaught';\n"
        "for (const c of process.argv[3].split(',')) {\n"
        "  const [site, oid, who] = c.split(':');\n"
        "  if (uncaught) dispatch(Number(site), Number(oid), who);\n"
        "  try { dispatch(Number(site), Number(oid), who); }\n"
        f"  catch (e) {{ console.error(e); console.error({SEPARATOR!r}); }}\n"
        "}\n"
    )
    return out


# -- Go ---------------------------------------------------------------------------------

_GO_PANIC = (
    'panic(fmt.Sprintf("order %d for %s is invalid", oid, who))',
    "var m map[string]int\n\tm[who] = oid  // a real nil-map panic",
    "xs := []int{1, 2}\n\tfmt.Sprint(xs[oid%7+5])  // a real index panic",
    "var p *struct{ n int }\n\tif oid > 0 {\n\t\tfmt.Sprint(p.n)  // a real nil dereference\n\t}",
    "z := oid - oid\n\tfmt.Sprint(oid / z)  // a real divide by zero",
)


def _go_sources(sites: list[Site], shift: int) -> dict[str, str]:
    files: dict[str, list[str]] = {
        m: ["package main\n", "// padding\n" * shift, 'import "fmt"\n\nvar _ = fmt.Sprint\n']
        for m in MODULES
    }
    for s in sites:
        name = s.module.capitalize()
        src = files[s.module]
        src.append(
            f"\nfunc helper{name}{s.index}(oid int, who string) {{\n\tx := oid + 1\n\t_ = x\n"
            f"\t{_GO_PANIC[s.kind]}\n}}\n"
            f"\nfunc handle{name}{s.index}(oid int, who string) {{\n"
            f"\thelper{name}{s.index}(oid, who)\n}}\n"
        )
    out = {f"{m}.go": "".join(v) for m, v in files.items()}
    table = "\n".join(f"\t{s.index}: handle{s.module.capitalize()}{s.index}," for s in sites)
    out["main.go"] = (
        'package main\n\nimport (\n\t"os"\n\t"strconv"\n\t"strings"\n)\n\n'
        f"var sites = map[int]func(int, string){{\n{table}\n}}\n\n"
        "func dispatch(site, oid int, who string) { sites[site](oid, who) }\n\n"
        'func main() {\n\tp := strings.Split(os.Args[2], ":")\n'
        "\tsite, _ := strconv.Atoi(p[0])\n\toid, _ := strconv.Atoi(p[1])\n"
        "\tdispatch(site, oid, p[2])\n}\n"
    )
    out["go.mod"] = "module example.com/shop\n\ngo 1.21\n"
    return out


SOURCES = {
    "python": _python_sources,
    "java": _java_sources,
    "node": _node_sources,
    "go": _go_sources,
}


def write(runtime: str, root: Path, sites: list[Site], shift: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in SOURCES[runtime](sites, shift).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-mod=mod")
    env["GOTRACEBACK"] = "all"
    env.setdefault("GOCACHE", str(Path.home() / ".cache" / "go-build"))
    return env


def build(runtime: str, root: Path) -> list[str]:
    """Compile if needed; the command that runs the program (mode and cases follow)."""
    require(runtime)
    if runtime == "python":
        return ["python3", "-B", str(root / "main.py")]
    if runtime == "node":
        return ["node", str(root / "main.js")]
    if runtime == "java":
        sources = [str(p) for p in sorted((root / "shop").glob("*.java"))]
        subprocess.run(["javac", "-d", str(root / "classes"), *sources], check=True, cwd=root)
        return [
            "java",
            "-Xshare:auto",
            "-XX:TieredStopAtLevel=1",
            "-cp",
            str(root / "classes"),
            "shop.Main",
        ]
    subprocess.run(["go", "build", "-o", "shop.bin", "."], check=True, cwd=root, env=_env())
    return [str(root / "shop.bin")]


def run_cases(command: list[str], runtime: str, cases: list[tuple[int, int]]) -> list[str]:
    """One trace per (site, variant), caught and printed the way the runtime prints
    an uncaught one (Go: one real panic per process)."""
    args = [f"{site}:{oid}:{who}" for site, v in cases for oid, who in [message_of(v)]]
    if runtime == "go":
        out = []
        for arg in args:
            proc = subprocess.run(
                [*command, "uncaught", arg], capture_output=True, text=True, env=_env()
            )
            out.append(proc.stderr.strip("\n"))
        return out
    proc = subprocess.run([*command, "caught", ",".join(args)], capture_output=True, text=True)
    traces = [t.strip("\n") for t in proc.stderr.split(SEPARATOR)]
    traces = [t for t in traces if t]
    if len(traces) != len(cases):
        raise AssertionError(
            f"{runtime}: {len(traces)} traces for {len(cases)} cases:\n{proc.stderr[:2000]}"
        )
    return traces


def run_uncaught(command: list[str], case: tuple[int, int]) -> str:
    """The runtime's own uncaught-exception output for one case (process exits != 0)."""
    oid, who = message_of(case[1])
    proc = subprocess.run(
        [*command, "uncaught", f"{case[0]}:{oid}:{who}"], capture_output=True, text=True, env=_env()
    )
    assert proc.returncode != 0, proc.stderr
    return proc.stderr
